//! `kill -9` of one of two worker processes on the embedded queue (leases of 1 s: the other
//! takes its partitions over), a few cycles, while 100 chats send
//! updates the way Telegram does (each chat's next update only after a `2xx` for the previous
//! one, retried until acknowledged): every acknowledged update runs, and each chat's updates
//! run in order; the same with a NATS node killed instead. The long version with 1,000 chats and 20 cycles per fault is
//! `benches/scaling/run.sh` (the figures in docs/scaling.md).

#[path = "../examples/scaling/harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::{Load, LoadConfig, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_worker_loses_nothing_acknowledged_and_keeps_chat_order() {
    run(Scenario {
        tag: "ci-kill-worker",
        queue: Queue::Sqlite,
        partitions: 4,
        lease_ms: 1_000,
        rate: 300.0,
        victim: Victim::Worker,
        kills: 4,
        down: Duration::from_millis(200),
        tail: Duration::from_millis(500),
        drain: Duration::from_secs(20),
        min_acked: 300,
    })
    .await;
}

/// The same on NATS JetStream: a 3-node cluster, the stream with 3 replicas; one node is
/// `kill -9`ed and restarted twice while 100 chats send updates through a webhook process to
/// two worker processes → nothing acknowledged lost, chat order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_nats_node_loses_nothing_acknowledged_and_keeps_chat_order() {
    run(Scenario {
        tag: "ci-kill-nats",
        queue: Queue::Nats,
        partitions: 3,
        lease_ms: 2_000,
        rate: 200.0,
        victim: Victim::NatsNode,
        kills: 2,
        down: Duration::from_millis(1_000),
        tail: Duration::from_millis(1_500),
        drain: Duration::from_secs(30),
        min_acked: 200,
    })
    .await;
}

/// Where the updates are queued.
enum Queue {
    /// A SQLite file in the run's directory.
    Sqlite,
    /// A 3-node nats-server cluster started in the run's directory.
    Nats,
}

/// What each kill hits.
enum Victim {
    /// One of the two worker processes, in turn.
    Worker,
    /// NATS node 0, then node 1, … (needs [`Queue::Nats`]).
    NatsNode,
}

/// One fault run: what differs between the tests.
struct Scenario {
    /// Names the run's temporary directory.
    tag: &'static str,
    queue: Queue,
    /// The processes' `PARTITIONS`.
    partitions: u32,
    /// The workers' `LEASE_MS`.
    lease_ms: u64,
    /// Updates per second over the 100 chats.
    rate: f64,
    victim: Victim,
    /// How many kills, each after 1.5 s of load.
    kills: usize,
    /// How long the victim stays down before it is started again.
    down: Duration,
    /// Load after the last restart, before the load stops.
    tail: Duration,
    /// How long to wait for every acknowledged update to run.
    drain: Duration,
    /// Updates that must have been acknowledged for the run to count.
    min_acked: usize,
}

/// One webhook process and two worker processes (run logs on) of the example binary on
/// `url`, while 100 chats post updates at `scenario.rate` over 16 connections; `kills` times,
/// 1.5 s apart, the victim is `kill -9`ed and started again `down` later. Then: the load
/// stops, every acknowledged update must have run (within `drain`), and each chat's updates in
/// order.
async fn run(scenario: Scenario) {
    let dir = harness::temp_dir(scenario.tag);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_queue-workers"));
    let mut cluster = match scenario.queue {
        Queue::Sqlite => None,
        Queue::Nats => Some(harness::nats_cluster(&dir).await),
    };
    let url = match &cluster {
        None => format!("sqlite:{}", dir.join("queue.sqlite3").display()),
        Some(cluster) => cluster.url(),
    };
    let env = |role: &str| {
        vec![
            ("QUEUE_URL", url.clone()),
            ("ROLE", role.to_owned()),
            ("PARTITIONS", scenario.partitions.to_string()),
            ("LEASE_MS", scenario.lease_ms.to_string()),
        ]
    };
    let mut webhook = Node::new("webhook", &bin, &dir, &env("webhook"), true, false);
    webhook.start();
    let mut workers: Vec<Node> = (0..2)
        .map(|i| {
            Node::new(
                &format!("worker{i}"),
                &bin,
                &dir,
                &env("worker"),
                false,
                true,
            )
        })
        .collect();
    for worker in &mut workers {
        worker.start();
    }
    let load = Load::start(LoadConfig {
        targets: vec![webhook.addr().expect("a webhook address")],
        chats: 100,
        rate: scenario.rate,
        connections: 16,
        total: 0,
    });
    for kill in 0..scenario.kills {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        match scenario.victim {
            Victim::Worker => {
                let worker = &mut workers[kill % 2];
                worker.kill9();
                tokio::time::sleep(scenario.down).await;
                worker.start();
            }
            Victim::NatsNode => {
                let cluster = cluster.as_mut().expect("a NATS queue");
                cluster.kill9(kill);
                tokio::time::sleep(scenario.down).await;
                cluster.restart(kill);
            }
        }
    }
    tokio::time::sleep(scenario.tail).await;
    let report = load.stop().await;
    let runs = harness::drained(&dir, &report.acked, scenario.drain).await;
    let check = harness::check(&report.acked, &runs);
    webhook.stop();
    for worker in &mut workers {
        worker.stop();
    }
    eprintln!(
        "acknowledged {}, runs {}, lost {}, order violations {}, duplicate runs {}, refused posts {}",
        check.acked,
        check.runs,
        check.lost.len(),
        check.order_violations.len(),
        check.duplicates,
        report.refused
    );
    assert!(
        check.acked >= scenario.min_acked,
        "too few updates went through: {check:?}"
    );
    assert!(
        check.lost.is_empty(),
        "acknowledged and lost: {:?}",
        check.lost
    );
    assert!(
        check.order_violations.is_empty(),
        "order violations: {:?}",
        check.order_violations
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checker itself: a lost update, a chat's update running before the one before it, and a
/// repeat of an older update after a newer one are each seen.
#[test]
fn the_checker_sees_loss_reordering_and_repeats() {
    let acked = |update_id, chat, seq| harness::Acked {
        update_id,
        chat,
        seq,
        first_sent: 0,
        acked_at: 0,
        latency: Duration::ZERO,
    };
    let run = |update_id, seq, at| harness::Run {
        update_id,
        chat: harness::chat_id(0),
        seq,
        at,
    };
    let all = [
        acked(10, 0, 1),
        acked(20, 0, 2),
        acked(30, 0, 3),
        acked(40, 0, 4),
    ];
    // In order, #2 twice in a row (a rerun before the next): no violation, one duplicate.
    let fine = harness::check(
        &all[..3],
        &[run(10, 1, 1), run(20, 2, 2), run(20, 2, 3), run(30, 3, 4)],
    );
    assert!(
        fine.lost.is_empty() && fine.order_violations.is_empty(),
        "{fine:?}"
    );
    assert_eq!(fine.duplicates, 1);
    // #3 before #2, #1 again after #3, #4 never ran.
    let bad = harness::check(
        &all,
        &[run(10, 1, 1), run(30, 3, 2), run(20, 2, 3), run(10, 1, 4)],
    );
    assert_eq!(bad.lost, vec![40]);
    assert_eq!(bad.order_violations.len(), 2, "{:?}", bad.order_violations);
    assert_eq!(bad.duplicates, 1);
}
