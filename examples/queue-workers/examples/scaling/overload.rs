//! Memory under sustained overload: a webhook and a slow worker, their RSS sampled while the
//! load generator posts as fast as it can into a full queue.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Options;
use crate::harness::{self, Load, LoadConfig, Node};
use crate::node_env;
use crate::table::thousands;

/// The webhook's queue holds at most 20,000 updates and the worker is slow (20 ms a run, 4 at
/// once per partition): the load generator posts as fast as it can for 30 s, the queue fills,
/// enqueues are refused (`500`), Telegram retries. RSS sampled every 500 ms.
pub(crate) async fn overload(options: &Options, dir: &Path, url: &str) -> String {
    let mut env = node_env(url, "webhook");
    env.push(("CAPACITY", "20000".into()));
    let mut webhook = Node::new("webhook", &options.bin, dir, &env, true, false);
    webhook.start();
    let mut env = node_env(url, "worker");
    env.push(("CAPACITY", "20000".into()));
    env.push(("HANDLER_DELAY_MS", "20".into()));
    env.retain(|(k, _)| *k != "CONCURRENCY");
    env.push(("CONCURRENCY", "4".into()));
    let mut worker = Node::new("worker", &options.bin, dir, &env, false, true);
    worker.start();
    let load = Load::start(LoadConfig {
        targets: vec![webhook.addr().expect("addr")],
        chats: 1_000,
        rate: 0.0,
        connections: 64,
        total: 0,
    });
    let seconds = if options.quick { 10 } else { 30 };
    let started = Instant::now();
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let w = webhook.pid().and_then(harness::rss_kib).map_or(0, |r| r.0);
        let k = worker.pid().and_then(harness::rss_kib).map_or(0, |r| r.0);
        samples.push((started.elapsed().as_secs_f64(), w, k));
    }
    let peak_w = webhook.pid().and_then(harness::rss_kib).map_or(0, |r| r.1);
    let peak_k = worker.pid().and_then(harness::rss_kib).map_or(0, |r| r.1);
    let report = load.stop().await;
    webhook.stop();
    worker.stop();
    let at = |t: f64| {
        samples
            .iter()
            .find(|s| s.0 >= t)
            .or(samples.last())
            .map_or((0, 0), |s| (s.1, s.2))
    };
    let (w5, k5) = at(5.0);
    let (wend, kend) = at(f64::MAX);
    eprintln!("overload RSS samples (s, webhook KiB, worker KiB): {samples:?}");
    format!(
        "webhook {:.1} MB at 5 s → {:.1} MB at {seconds} s, peak {:.1} MB; worker {:.1} → {:.1} MB, peak {:.1} MB; {} of {} posts refused (`500`, retried)",
        w5 as f64 / 1024.0,
        wend as f64 / 1024.0,
        peak_w as f64 / 1024.0,
        k5 as f64 / 1024.0,
        kend as f64 / 1024.0,
        peak_k as f64 / 1024.0,
        thousands(report.refused as f64),
        thousands(report.attempts as f64)
    )
}
