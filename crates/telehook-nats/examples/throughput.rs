//! End-to-end throughput of a `NatsQueue` on a JetStream cluster: `N` updates over 1,000 chats
//! enqueued by 64 concurrent "deliveries" (each waits for the replicated acknowledgement, as a
//! webhook does) while the workers drain them with a trivial handler; on 1 and 3 workers
//! (partitions) through `run_workers`, and on 4 partitions shared by two "processes" through
//! `Workers` (leases), each with its own connection. Also the latency of one enqueue (what a
//! webhook's acknowledgement waits for) under that load.
//!
//! `cargo run --release -p telehook-nats --features testing --example throughput -- [N]
//! [--url nats://host:port,...] [--replicas R]`
//!
//! Without `--url` it starts a 3-node cluster on loopback (`nats-server` from the PATH or
//! `/usr/sbin`) and uses 3 replicas. Default N: 5,000.

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use telehook_core::{Context, HandlerError, Update};
use telehook_nats::NatsQueue;
use telehook_polling::RunnerConfig;
use telehook_queue::{QueueBackend, Workers, run_workers};

fn message(update_id: u64, chat: u64) -> Update {
    Update::from_bytes(format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{update_id},"date":1,"chat":{{"id":{chat},"type":"private"}},"text":"hi"}}}}"#
    ))
    .expect("valid update")
}

struct Setup {
    urls: Vec<String>,
    replicas: usize,
}

/// `processes` 0: `run_workers` on the deliveries' own handle; else that many `Workers`, each
/// on its own connection.
async fn measure(
    setup: &Setup,
    partitions: u32,
    processes: usize,
    total: u64,
) -> (Duration, Duration, Vec<Duration>) {
    let name = format!("bench_{}_{partitions}_{processes}", std::process::id());
    let open = || {
        NatsQueue::builder(setup.urls.clone())
            .name(name.clone())
            .partitions(partitions)
            .replicas(setup.replicas)
            .capacity(total + 1)
            .connect()
    };
    let queue = open().await.expect("connect");
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (handled, done) = (Arc::clone(&handled), Arc::clone(&done));
        move |_update: Update, _ctx: Context| {
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == total {
                done.notify_one();
            }
            async { Ok::<_, HandlerError>(()) }
        }
    };
    let mut config = RunnerConfig::default();
    config.concurrency = 64;
    let workers: Vec<_> = if processes == 0 {
        let (queue, done) = (queue.clone(), Arc::clone(&done));
        vec![tokio::spawn(async move {
            run_workers(queue, handler, config, async move { done.notified().await })
                .await
                .map(drop)
        })]
    } else {
        let stop = Arc::new(tokio::sync::Notify::new());
        let mut workers = Vec::new();
        for i in 0..processes {
            let (queue, stop, handler, config) = (
                open().await.expect("connect"),
                Arc::clone(&stop),
                handler.clone(),
                config.clone(),
            );
            workers.push(tokio::spawn(async move {
                Workers::new(queue)
                    .owner(format!("process-{i}"))
                    .lease(Duration::from_secs(3))
                    .run(handler, config, async move { stop.notified().await })
                    .await
                    .map(drop)
            }));
        }
        let done = Arc::clone(&done);
        workers.push(tokio::spawn(async move {
            done.notified().await;
            stop.notify_waiters();
            Ok(())
        }));
        workers
    };
    // The members settle on their shares before the load (`Workers` start with one tick).
    if processes > 1 {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(1));
    let producers: Vec<_> = (0..64)
        .map(|_| {
            let (queue, next) = (queue.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id > total {
                        break latencies;
                    }
                    let asked = Instant::now();
                    queue
                        .enqueue(&message(id, id % 1_000))
                        .await
                        .expect("enqueue");
                    latencies.push(asked.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total as usize);
    for p in producers {
        latencies.extend(p.await.expect("producer"));
    }
    latencies.sort();
    let enqueued = start.elapsed();
    for w in workers {
        w.await.expect("workers").expect("run");
    }
    let all = start.elapsed();
    (enqueued, all, latencies)
}

#[tokio::main]
async fn main() {
    let mut total: u64 = 5_000;
    let mut urls: Option<Vec<String>> = None;
    let mut replicas: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => {
                urls = args
                    .next()
                    .map(|u| u.split(',').map(str::to_owned).collect());
            }
            "--replicas" => replicas = args.next().and_then(|r| r.parse().ok()),
            n => total = n.parse().expect("N, --url or --replicas"),
        }
    }
    let cluster;
    let setup = match urls {
        Some(urls) => Setup {
            urls,
            replicas: replicas.unwrap_or(1),
        },
        None => {
            cluster = telehook_nats::testing::NatsCluster::start(3)
                .await
                .expect("a 3-node nats-server cluster");
            Setup {
                urls: cluster.urls(),
                replicas: replicas.unwrap_or(3),
            }
        }
    };
    println!(
        "replicas {}, {} node URL(s) given to the client",
        setup.replicas,
        setup.urls.len()
    );
    println!(
        "| workers (partitions) | processes | updates | all enqueued after | all handled after | end to end | enqueue p50 | enqueue p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (partitions, processes) in [(1, 0), (3, 0), (4, 2)] {
        let (enqueued, all, latencies) = measure(&setup, partitions, processes, total).await;
        let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        println!(
            "| {partitions} | {} | {total} | {:.2} s | {:.2} s | {:.0} updates/s | {:.2} ms | {:.2} ms |",
            if processes == 0 {
                "1 (`run_workers`)".to_owned()
            } else {
                format!("{processes} (`Workers`, a connection each)")
            },
            enqueued.as_secs_f64(),
            all.as_secs_f64(),
            total as f64 / all.as_secs_f64(),
            pct(50).as_secs_f64() * 1e3,
            pct(99).as_secs_f64() * 1e3,
        );
    }
}
