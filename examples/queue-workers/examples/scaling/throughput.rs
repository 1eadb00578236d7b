//! The speed measurements: enqueue → handled throughput in process, and the webhook's
//! acknowledge latency over HTTP (a webhook process and a worker process).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use telehook_core::{Context, HandlerError, Update};
use telehook_queue::QueueBackend;

use crate::Options;
use crate::harness::{self, Load, LoadConfig, Node};
use crate::node_env;
use crate::table::thousands;

fn percentile_ms(latencies: &mut [Duration], p: f64) -> f64 {
    latencies.sort_unstable();
    harness::percentile(latencies, p).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

pub(crate) async fn throughput<B: QueueBackend>(queue: B, n: u64) -> f64 {
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (handled, done) = (Arc::clone(&handled), Arc::clone(&done));
        move |_update: Update, _ctx: Context| {
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == n {
                done.notify_one();
            }
            async { Ok::<_, HandlerError>(()) }
        }
    };
    let mut runner = telehook_polling::RunnerConfig::default();
    runner.concurrency = 64;
    let workers = tokio::spawn({
        let (queue, done) = (queue.clone(), Arc::clone(&done));
        async move {
            telehook_queue::run_workers(queue, handler, runner, async move {
                done.notified().await;
            })
            .await
        }
    });
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let enqueuers: Vec<_> = (0..64)
        .map(|_| {
            let (queue, next) = (queue.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let chat = (i % 1_000) as u32;
                    let body = harness::update_body(i + 1, chat, i / 1_000 + 1);
                    let update = Update::from_bytes(body.into_bytes()).expect("update");
                    queue.enqueue(&update).await.expect("enqueue");
                }
            })
        })
        .collect();
    for e in enqueuers {
        e.await.expect("enqueuer");
    }
    workers.await.expect("workers").expect("run");
    n as f64 / started.elapsed().as_secs_f64()
}

pub(crate) async fn ack_latency(options: &Options, dir: &Path, url: &str, n: u64) -> String {
    let mut webhook = Node::new(
        "webhook",
        &options.bin,
        dir,
        &node_env(url, "webhook"),
        true,
        false,
    );
    webhook.start();
    let mut worker = Node::new(
        "worker",
        &options.bin,
        dir,
        &node_env(url, "worker"),
        false,
        true,
    );
    worker.start();
    let load = Load::start(LoadConfig {
        targets: vec![webhook.addr().expect("addr")],
        chats: 1_000,
        rate: 0.0,
        connections: 64,
        total: n,
    });
    while !load.finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = load.stop().await;
    let mut latencies: Vec<Duration> = report.acked.iter().map(|a| a.latency).collect();
    let cell = format!(
        "{:.1} ms / {:.1} ms ({}/s)",
        percentile_ms(&mut latencies, 50.0),
        percentile_ms(&mut latencies, 99.0),
        thousands(report.acked.len() as f64 / report.elapsed.as_secs_f64())
    );
    webhook.stop();
    worker.stop();
    cell
}
