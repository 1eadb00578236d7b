//! `kill -9` of one of two worker processes on the embedded queue (leases of 1 s: the other
//! takes its partitions over), a few cycles, while 100 chats send
//! updates the way Telegram does (each chat's next update only after a `2xx` for the previous
//! one, retried until acknowledged): every acknowledged update runs, and each chat's updates
//! run in order; the same with a NATS node killed instead. The long version with 1,000 chats and 20 cycles per fault is
//! `benches/scaling/run.sh` (the figures in docs/scaling.md).

#[path = "../examples/scaling/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::{Load, LoadConfig, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_worker_loses_nothing_acknowledged_and_keeps_chat_order() {
    let dir = harness::temp_dir("ci-kill-worker");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_queue-workers"));
    let url = format!("sqlite:{}", dir.join("queue.sqlite3").display());
    let env = |role: &str| {
        vec![
            ("QUEUE_URL", url.clone()),
            ("ROLE", role.to_owned()),
            ("PARTITIONS", "4".to_owned()),
            ("LEASE_MS", "1000".to_owned()),
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
        rate: 300.0,
        connections: 16,
        total: 0,
    });
    for cycle in 0..4 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let worker = &mut workers[cycle % 2];
        worker.kill9();
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker.start();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await;
    let runs = harness::drained(&dir, &report.acked, Duration::from_secs(20)).await;
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
        check.acked >= 300,
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
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same on NATS JetStream: a 3-node cluster, the stream with 3 replicas; one node is
/// `kill -9`ed and restarted twice while 100 chats send updates through a webhook process to
/// two worker processes → nothing acknowledged lost, chat order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_nats_node_loses_nothing_acknowledged_and_keeps_chat_order() {
    let dir = harness::temp_dir("ci-kill-nats");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_queue-workers"));
    let mut cluster = harness::nats_cluster(&dir).await;
    let url = cluster.url();
    let env = |role: &str| {
        vec![
            ("QUEUE_URL", url.clone()),
            ("ROLE", role.to_owned()),
            ("PARTITIONS", "3".to_owned()),
            ("LEASE_MS", "2000".to_owned()),
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
        rate: 200.0,
        connections: 16,
        total: 0,
    });
    for node in 0..2 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        cluster.kill9(node);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        cluster.restart(node);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let report = load.stop().await;
    let runs = harness::drained(&dir, &report.acked, Duration::from_secs(30)).await;
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
        check.acked >= 200,
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
