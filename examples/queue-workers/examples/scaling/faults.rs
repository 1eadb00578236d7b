//! The `kill -9` cycles: of a worker, a webhook instance or a NATS node while 1,000 chats send
//! updates, and what the checker found afterwards (lost, out of order, repeated; resume times).
//! NATS node kills wait, by default, until the cluster has settled before the next one.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Options;
use crate::harness::{self, Load, LoadConfig, NatsCluster, Node};
use crate::node_env;
use crate::table::thousands;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Worker,
    Webhook,
    NatsNode,
}

/// `cycles` kills of one process while 1,000 chats send 1,000 updates/s in all, over two
/// webhook processes (round-robin) and two worker processes (leases of 2 s); the killed
/// process is started again after 300 ms (a supervisor's restart).
pub(crate) async fn faults(
    options: &Options,
    dir: &Path,
    url: &str,
    fault: Fault,
    cycles: u32,
    mut cluster: Option<&mut NatsCluster>,
) -> String {
    let mut webhooks: Vec<Node> = (0..2)
        .map(|i| {
            Node::new(
                &format!("webhook{i}"),
                &options.bin,
                dir,
                &node_env(url, "webhook"),
                true,
                false,
            )
        })
        .collect();
    for w in &mut webhooks {
        w.start();
    }
    let mut workers: Vec<Node> = (0..2)
        .map(|i| {
            Node::new(
                &format!("worker{i}"),
                &options.bin,
                dir,
                &node_env(url, "worker"),
                false,
                true,
            )
        })
        .collect();
    for w in &mut workers {
        w.start();
    }
    let load = Load::start(LoadConfig {
        targets: webhooks.iter().filter_map(Node::addr).collect(),
        chats: 1_000,
        rate: if options.quick { 500.0 } else { 1_000.0 },
        connections: 64,
        total: 0,
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut kills: Vec<u128> = Vec::new();
    let (mut settles, mut drains): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut unsettled = 0;
    for cycle in 0..cycles {
        kills.push(harness::now_ns());
        match fault {
            Fault::Worker => {
                let w = &mut workers[(cycle % 2) as usize];
                w.kill9();
                tokio::time::sleep(Duration::from_millis(300)).await;
                w.start();
            }
            Fault::Webhook => {
                let w = &mut webhooks[(cycle % 2) as usize];
                w.kill9();
                tokio::time::sleep(Duration::from_millis(300)).await;
                w.start();
            }
            Fault::NatsNode => {
                let cluster = cluster.as_deref_mut().expect("a cluster");
                let i = (cycle % 3) as usize;
                cluster.kill9(i);
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                cluster.restart(i);
                if !options.overlap {
                    let kill = kills.last().copied().unwrap_or(0);
                    let (acked, restarted) = (load.acked(), harness::now_ns());
                    let (healthy, drained) =
                        settle(cluster, &load, acked, dir, kill, restarted).await;
                    eprintln!(
                        "kill {cycle} (node {i}): healthy again after {healthy:.0?} ms, backlog drained after {drained:.0?} ms"
                    );
                    settles.extend(healthy);
                    drains.extend(drained);
                    if drained.is_none() {
                        unsettled += 1;
                    }
                    continue;
                }
            }
        }
        // Long enough for the survivors to take the partitions over (a 2 s lease) and for
        // the restarted process to get its share back.
        tokio::time::sleep(Duration::from_millis(if fault == Fault::Webhook {
            1_000
        } else {
            3_000
        }))
        .await;
    }
    let report = load.stop().await;
    let runs = harness::drained(dir, &report.acked, Duration::from_secs(60)).await;
    let check = harness::check(&report.acked, &runs);
    let first = harness::first_runs(&runs);
    let (mut run_waits, mut ack_waits) = (Vec::new(), Vec::new());
    let (mut first_run_waits, mut first_ack_waits) = (Vec::new(), Vec::new());
    for &kill in &kills {
        let (r, a) = harness::resume_after(kill, &report.acked, &first);
        run_waits.push(r);
        ack_waits.push(a);
        let (r, a) = harness::first_after(kill, &report.acked, &runs);
        first_run_waits.extend(r);
        first_ack_waits.extend(a);
    }
    eprintln!("resume per kill (ms): run {run_waits:.0?}, ack {ack_waits:.0?}");
    eprintln!(
        "first after each kill (ms): run {first_run_waits:.0?}, ack {first_ack_waits:.0?}; healthy again {settles:.0?}, drained {drains:.0?}"
    );
    let spread3 = |waits: &mut Vec<f64>| {
        waits.sort_by(f64::total_cmp);
        format!(
            "{:.0} / {:.0} / {:.0}",
            harness::percentile(waits, 50.0).unwrap_or(0.0),
            harness::percentile(waits, 90.0).unwrap_or(0.0),
            waits.last().copied().unwrap_or(0.0)
        )
    };
    let spread = |waits: &mut Vec<f64>| {
        waits.sort_by(f64::total_cmp);
        format!(
            "{:.0} / {:.0}",
            harness::percentile(waits, 50.0).unwrap_or(0.0),
            waits.last().copied().unwrap_or(0.0)
        )
    };
    for w in webhooks.iter_mut().chain(workers.iter_mut()) {
        w.stop();
    }
    if !check.order_violations.is_empty() {
        eprintln!(
            "order violations (first 10): {:?}",
            &check.order_violations[..check.order_violations.len().min(10)]
        );
    }
    eprintln!("runs per update: {:?}", harness::runs_histogram(&runs));
    let resume = match fault {
        Fault::Webhook => format!("ack {}", spread(&mut ack_waits)),
        Fault::Worker => format!("run {}", spread(&mut run_waits)),
        Fault::NatsNode if options.overlap => format!(
            "run {}, ack {}",
            spread(&mut run_waits),
            spread(&mut ack_waits)
        ),
        Fault::NatsNode => format!(
            "first run after the kill {}, first `2xx` {}; every update held up: run {}, `2xx` {}; cluster healthy again {}, backlog drained {}{}",
            spread3(&mut first_run_waits),
            spread3(&mut first_ack_waits),
            spread3(&mut run_waits),
            spread3(&mut ack_waits),
            spread3(&mut settles),
            spread3(&mut drains),
            if unsettled > 0 {
                format!(
                    " ({unsettled} kills not settled within {} s)",
                    SETTLE_LIMIT.as_secs()
                )
            } else {
                String::new()
            }
        ),
    };
    format!(
        "{} / **{}** / **{}** / {} / {resume}",
        thousands(check.acked as f64),
        check.lost.len(),
        check.order_violations.len(),
        check.duplicates
    )
}

/// How long (at most) the next NATS node kill waits for the cluster to be healthy again.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Updates acknowledged but not yet run that still count as "no backlog": about one second
/// of the offered load.
const BACKLOG: usize = 1_000;

/// Waits (up to [`SETTLE_LIMIT`]) until, after a node killed at `kill` (ns) was restarted (at
/// `restarted`): an update was acknowledged (more than `acked_before`), a handler ran, and
/// every node is healthy — twice in a row, 250 ms apart; then until the workers have caught
/// up (at most [`BACKLOG`] acknowledged updates not yet run), so that the next kill's figures
/// are its own. Returns kill → healthy and kill → caught up in ms, `None` on time-out.
async fn settle(
    cluster: &NatsCluster,
    load: &Load,
    acked_before: u64,
    dir: &Path,
    kill: u128,
    restarted: u128,
) -> (Option<f64>, Option<f64>) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let ms = || (harness::now_ns() - kill) as f64 / 1e6;
    let mut in_a_row = 0;
    let mut healthy = None;
    while Instant::now() < deadline {
        let progress = load.acked() > acked_before && harness::last_run_write(dir) > restarted;
        if progress && cluster.healthy().await {
            in_a_row += 1;
            if in_a_row >= 2 {
                healthy = Some(ms());
                break;
            }
        } else {
            in_a_row = 0;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if healthy.is_none() {
        return (None, None);
    }
    while Instant::now() < deadline {
        let acked = load.acked() as usize;
        let ran: std::collections::HashSet<u64> = harness::read_runs(dir)
            .iter()
            .map(|r| r.update_id)
            .collect();
        if ran.len() + BACKLOG >= acked {
            return (healthy, Some(ms()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (healthy, None)
}
