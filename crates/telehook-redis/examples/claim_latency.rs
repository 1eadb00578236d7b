//! What the shared guard costs a delivery: the claim and the finish (two Redis round trips)
//! that wrap every handler run, sequentially and with 64 deliveries at once.
//!
//! ```text
//! redis-server --port 6399 --save '' --appendonly no &
//! cargo run --release -p telehook-redis --example claim_latency -- redis://127.0.0.1:6399/
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use telehook_core::guard::{Outcome, RunResult};
use telehook_core::{RedeliveryStore, UpdateKey};
use telehook_redis::RedisStore;

const UPDATES: u64 = 20_000;
const CONCURRENCY: u64 = 64;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn one(store: &RedisStore, id: u64) -> Duration {
    let key = UpdateKey::new(id, format!("{{\"update_id\":{id}}}").as_bytes());
    let started = Instant::now();
    store.claim(key).await.expect("claim");
    store
        .finish(key, RunResult::Done(Outcome::Handled { reply: None }))
        .await
        .expect("finish");
    started.elapsed()
}

fn report(label: &str, mut samples: Vec<Duration>, total: Duration) {
    samples.sort_unstable();
    eprintln!(
        "{label}: {} claim+finish, p50 {:?}, p99 {:?}, {:.0}/s",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len() as f64 / total.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos());
    let store = Arc::new(
        RedisStore::builder(url)
            .key_prefix(format!("latency-{run}-{}:", std::process::id()))
            .build()
            .expect("store"),
    );

    let started = Instant::now();
    let mut samples = Vec::with_capacity(UPDATES as usize);
    for id in 0..UPDATES {
        samples.push(one(&store, id).await);
    }
    report("sequential", samples, started.elapsed());

    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..CONCURRENCY {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut id = UPDATES + lane;
            while id < 2 * UPDATES {
                samples.push(one(&store, id).await);
                id += CONCURRENCY;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("lane"));
    }
    report("64 at once", samples, started.elapsed());
}
