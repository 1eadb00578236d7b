//! Runner throughput with a no-op handler: from an in-memory source (with and without
//! per-chat ordering) and from the Bot API emulator over loopback HTTP.
//!
//! `cargo bench -p telehook-polling --bench runner`

#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use telehook_core::{Context, HandlerError, Update};
use telehook_polling::{MemorySource, RunnerConfig};
use tokio::sync::Notify;

const UPDATES: usize = 20_000;
const CHATS: u64 = 200;

fn updates(n: usize) -> Vec<Update> {
    (1..=n as u64)
        .map(|id| {
            let chat = 1_000 + id % CHATS;
            let body = format!(
                r#"{{"update_id":{id},"message":{{"message_id":{id},"date":0,"chat":{{"id":{chat},"type":"private"}},"text":"x"}}}}"#
            );
            Update::from_bytes(body).expect("update")
        })
        .collect()
}

async fn run_once(updates: Vec<Update>, config: RunnerConfig) -> Duration {
    let n = updates.len();
    let count = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let (handler_count, handler_done, stop_done) = (count.clone(), done.clone(), done.clone());
    let started = Instant::now();
    let report = telehook_polling::run(
        MemorySource::new(updates),
        move |_: Update, _: Context| {
            if handler_count.fetch_add(1, Ordering::Relaxed) + 1 == n {
                handler_done.notify_one();
            }
            std::future::ready(Ok::<_, HandlerError>(()))
        },
        config,
        async move { stop_done.notified().await },
    )
    .await
    .expect("runner");
    assert_eq!(report.handled as usize, n);
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("runner_noop_handler");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.sample_size(20);
    let template = updates(UPDATES);

    for (name, ordered) in [("memory_per_chat_order", true), ("memory_no_order", false)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut config = RunnerConfig::default();
                    config.concurrency = 64;
                    if !ordered {
                        config.key_fn = Arc::new(|_: &Update| None);
                    }
                    total += runtime.block_on(run_once(template.clone(), config));
                }
                total
            });
        });
    }
    group.finish();

    // From the emulator: real getUpdates over loopback HTTP, 100 updates per call.
    let mut group = c.benchmark_group("runner_noop_handler_emulator");
    const HTTP_UPDATES: usize = 2_000;
    group.throughput(Throughput::Elements(HTTP_UPDATES as u64));
    group.sample_size(10);
    group.bench_function("emulator_per_chat_order", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += runtime.block_on(async {
                    let token = "1:bench";
                    let emu = telehook_emulator::Emulator::builder()
                        .bot(token)
                        .limits(telehook_emulator::Limits::default().max_recorded_calls(100))
                        .start()
                        .await
                        .expect("emulator");
                    let tg = emu.bot(token).expect("bot");
                    for i in 0..HTTP_UPDATES as i64 {
                        tg.private_text(
                            &telehook_emulator::User::new(1 + i % CHATS as i64, "B"),
                            "x",
                        );
                    }
                    let bot = telehook_api::Bot::builder(token)
                        .base_url(emu.base_url())
                        .build();
                    let count = Arc::new(AtomicUsize::new(0));
                    let done = Arc::new(Notify::new());
                    let (hc, hd, sd) = (count.clone(), done.clone(), done.clone());
                    let started = Instant::now();
                    telehook_polling::Polling::new(bot)
                        .concurrency(64)
                        .run(
                            move |_: Update, _: Context| {
                                if hc.fetch_add(1, Ordering::Relaxed) + 1 == HTTP_UPDATES {
                                    hd.notify_one();
                                }
                                std::future::ready(Ok::<_, HandlerError>(()))
                            },
                            async move { sd.notified().await },
                        )
                        .await
                        .expect("polling");
                    let elapsed = started.elapsed();
                    emu.shutdown();
                    elapsed
                });
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
