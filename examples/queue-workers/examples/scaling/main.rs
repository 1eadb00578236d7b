//! The figures of docs/scaling.md, regenerated: starts and stops everything itself on free
//! loopback ports (webhook and worker processes of the `queue-workers` binary, a 3-node
//! nats-server cluster), measures, and writes ONE table between the `figures` markers of
//! docs/scaling.md (with the command, the date and the machine's load).
//!
//! `benches/scaling/run.sh [--quick] [--no-nats]` builds it and runs it; by hand:
//! `cargo build --release -p queue-workers --bins --examples &&
//!  target/release/examples/scaling [--quick] [--no-nats] [--no-embedded] [--only worker|webhook|nats-node]
//!  [--cycles N] [--overlap] [--out docs/scaling.md | --no-out]` (`SCALING_KEEP=1` keeps the temporary
//!  directories). With `--only`, only that row of the table (and a note under it naming the
//!  command, date and load) is rewritten; the other rows keep their figures.
//!
//! NATS node kills: by default each kill is measured on its own — node i is killed, restarted
//! 1 s later, and the next kill waits until the cluster is healthy again (an update was
//! acknowledged and one handled after the restart, every node answers `/healthz` and the
//! leader of each stream and consumer reports its replicas caught up in `/jsz`, twice in a row
//! 250 ms apart; then the workers' backlog is back under 1,000 updates; at most 120 s).
//! `--overlap` is the stress test instead: the next kill 3 s after each restart, whether or
//! not the restarted node caught up (kills overlap into one long outage).
//!
//! Measured: the webhook's acknowledge latency over HTTP (p50/p99); enqueue → handled
//! throughput on 1 and 3 workers; `kill -9` cycles of a worker, a webhook instance and a NATS
//! node while 1,000 chats send updates (acknowledged-and-lost, per-chat order violations,
//! duplicate runs, time to resume); peak RSS of a webhook and a worker under sustained overload.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark prints its table"
)]

mod faults;
mod harness;
mod overload;
mod table;
mod throughput;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faults::{Fault, faults};
use overload::overload;
use table::{
    EMBEDDED, NATS, OVERLOAD_ROW, Table, ack_row, fault_row, nats_node_row, range, throughput_row,
    write_between_markers, write_row,
};
use telehook_queue::SqliteQueue;
use throughput::{ack_latency, throughput};

#[derive(Clone)]
struct Options {
    bin: PathBuf,
    out: Option<PathBuf>,
    quick: bool,
    nats: bool,
    embedded: bool,
    /// Only this fault (`worker`, `webhook`, `nats-node`), NATS column, no other rows.
    only: Option<String>,
    cycles: u32,
    /// NATS node kills every 4 s, overlapping, instead of one at a time once healthy.
    overlap: bool,
    command: String,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        bin: harness::sibling_binary(),
        out: Some(PathBuf::from("docs/scaling.md")),
        quick: false,
        nats: true,
        embedded: true,
        only: None,
        cycles: 20,
        overlap: false,
        command: std::env::var("SCALING_COMMAND").unwrap_or_else(|_| {
            std::iter::once("target/release/examples/scaling".to_owned())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ")
        }),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-nats" => options.nats = false,
            "--no-embedded" => options.embedded = false,
            "--only" => {
                options.only = args.next();
                options.embedded = false;
            }
            "--cycles" => options.cycles = args.next().and_then(|n| n.parse().ok()).unwrap_or(20),
            "--bin" => options.bin = args.next().map(PathBuf::from).expect("--bin PATH"),
            "--out" => options.out = args.next().map(PathBuf::from),
            "--no-out" => options.out = None,
            "--overlap" => options.overlap = true,
            other => {
                eprintln!(
                    "unknown argument {other}; see the doc comment of examples/scaling/main.rs"
                );
                std::process::exit(2);
            }
        }
    }
    assert!(
        options.bin.is_file(),
        "{} is missing: cargo build --release -p queue-workers --bins",
        options.bin.display()
    );
    let load_before = loadavg();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (table, load_during) = runtime.block_on(async {
        let sampler = LoadSampler::start();
        let table = measure(&options).await;
        (table, sampler.stop().await)
    });
    let load_after = loadavg();
    let markdown = format!(
        "`{}` on {} ({} cores; load average {} before, {} after):\n\n{}",
        options.command,
        date(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before,
        load_after,
        table.markdown()
    );
    println!("\n{markdown}");
    println!("load average during the run (every 5 s): {load_during}");
    if let Some(out) = &options.out {
        if options.only.is_some() {
            let note = format!(
                "`{}` on {} (load average {} before, {} during, {} after)",
                options.command,
                date(),
                load_before,
                load_during,
                load_after
            );
            for row in &table.rows {
                write_row(out, &table, row, &note);
            }
        } else {
            write_between_markers(out, &markdown);
        }
        println!("written into {}", out.display());
    }
}

/// The 1-minute load average sampled every 5 s while the measurements run.
struct LoadSampler {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<Vec<f64>>,
}

impl LoadSampler {
    fn start() -> Self {
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut samples = Vec::new();
                loop {
                    if let Ok(l) = loadavg().parse() {
                        samples.push(l);
                    }
                    tokio::select! {
                        () = stop.notified() => return samples,
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// `min – max (median m, n samples)`.
    async fn stop(self) -> String {
        self.stop.notify_one();
        let mut samples = self.task.await.unwrap_or_default();
        samples.sort_by(f64::total_cmp);
        match (samples.first(), samples.last()) {
            (Some(min), Some(max)) => format!(
                "{min:.2} – {max:.2} (median {:.2}, {} samples)",
                harness::percentile(&samples, 50.0).unwrap_or(0.0),
                samples.len()
            ),
            _ => "?".into(),
        }
    }
}

async fn measure(options: &Options) -> Table {
    let mut table = Table::default();
    let n = if options.quick { 5_000 } else { 20_000 };
    if options.embedded {
        measure_embedded(options, &mut table, n).await;
    }
    if options.nats {
        measure_nats(options, &mut table, n).await;
    }
    table
}

/// The embedded column: each measurement on a fresh SQLite file.
async fn measure_embedded(options: &Options, table: &mut Table, n: u64) {
    // Throughput, in process (enqueue → handled, trivial handler), three runs each: a range.
    for partitions in [1, 3] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let dir = harness::temp_dir("throughput");
            let queue = SqliteQueue::builder(dir.join("q.sqlite3"))
                .partitions(partitions)
                .open()
                .expect("queue");
            rates.push(throughput(queue, n).await);
            remove(&dir);
        }
        table.set(&throughput_row(partitions, n), EMBEDDED, range(&rates));
    }
    // Acknowledge latency over HTTP: a webhook process and a worker process.
    {
        let dir = harness::temp_dir("ack");
        let url = format!("sqlite:{}", dir.join("q.sqlite3").display());
        let cell = ack_latency(options, &dir, &url, n).await;
        table.set(&ack_row(n), EMBEDDED, cell);
        remove(&dir);
    }
    // Faults.
    let cycles = options.cycles;
    {
        let dir = harness::temp_dir("kill-worker");
        let url = format!("sqlite:{}", dir.join("q.sqlite3").display());
        let cell = faults(options, &dir, &url, Fault::Worker, cycles, None).await;
        table.set(&fault_row("a worker", cycles), EMBEDDED, cell);
        remove(&dir);
    }
    {
        let dir = harness::temp_dir("kill-webhook");
        let url = format!("sqlite:{}", dir.join("q.sqlite3").display());
        let cell = faults(options, &dir, &url, Fault::Webhook, cycles, None).await;
        table.set(
            &fault_row("a webhook instance (of 2)", cycles),
            EMBEDDED,
            cell,
        );
        remove(&dir);
    }
    table.set(
        &nats_node_row(options.overlap, cycles),
        EMBEDDED,
        "n/a".into(),
    );
    // Memory under sustained overload.
    {
        let dir = harness::temp_dir("overload");
        let url = format!("sqlite:{}", dir.join("q.sqlite3").display());
        let cell = overload(options, &dir, &url).await;
        table.set(OVERLOAD_ROW, EMBEDDED, cell);
        remove(&dir);
    }
}

/// The NATS column: each measurement on a fresh 3-node cluster (its own stream, so update ids
/// never meet an earlier measurement's).
async fn measure_nats(options: &Options, table: &mut Table, n: u64) {
    if let Some(only) = &options.only {
        let (fault, what) = match only.as_str() {
            "worker" => (Fault::Worker, "a worker"),
            "webhook" => (Fault::Webhook, "a webhook instance (of 2)"),
            _ => (Fault::NatsNode, "a NATS node (of 3)"),
        };
        let dir = harness::temp_dir("nats-faults");
        let mut cluster = harness::nats_cluster(&dir).await;
        let url = cluster.url();
        let cell = faults(
            options,
            &dir,
            &url,
            fault,
            options.cycles,
            Some(&mut cluster),
        )
        .await;
        let row = if fault == Fault::NatsNode {
            table.set(
                &nats_node_row(options.overlap, options.cycles),
                EMBEDDED,
                "n/a".into(),
            );
            nats_node_row(options.overlap, options.cycles)
        } else {
            fault_row(what, options.cycles)
        };
        table.set(&row, NATS, cell);
        drop(cluster);
        remove(&dir);
        return;
    }
    for partitions in [1, 3] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let dir = harness::temp_dir("nats-throughput");
            let cluster = harness::nats_cluster(&dir).await;
            let queue = telehook_nats::NatsQueue::builder(cluster.urls())
                .replicas(3)
                .partitions(partitions)
                .connect()
                .await
                .expect("a NATS queue on the cluster");
            rates.push(throughput(queue, n).await);
            drop(cluster);
            remove(&dir);
        }
        table.set(&throughput_row(partitions, n), NATS, range(&rates));
    }
    {
        let dir = harness::temp_dir("nats-ack");
        let cluster = harness::nats_cluster(&dir).await;
        let cell = ack_latency(options, &dir, &cluster.url(), n).await;
        table.set(&ack_row(n), NATS, cell);
        drop(cluster);
        remove(&dir);
    }
    let cycles = options.cycles;
    for (fault, row) in [
        (Fault::Worker, fault_row("a worker", cycles)),
        (
            Fault::Webhook,
            fault_row("a webhook instance (of 2)", cycles),
        ),
        (Fault::NatsNode, nats_node_row(options.overlap, cycles)),
    ] {
        let dir = harness::temp_dir("nats-faults");
        let mut cluster = harness::nats_cluster(&dir).await;
        let url = cluster.url();
        let cell = faults(options, &dir, &url, fault, cycles, Some(&mut cluster)).await;
        table.set(&row, NATS, cell);
        drop(cluster);
        remove(&dir);
    }
    {
        let dir = harness::temp_dir("nats-overload");
        let cluster = harness::nats_cluster(&dir).await;
        let cell = overload(options, &dir, &cluster.url()).await;
        table.set(OVERLOAD_ROW, NATS, cell);
        drop(cluster);
        remove(&dir);
    }
}

fn node_env(url: &str, role: &str) -> Vec<(&'static str, String)> {
    vec![
        ("QUEUE_URL", url.to_owned()),
        ("ROLE", role.to_owned()),
        ("PARTITIONS", "3".into()),
        ("CONCURRENCY", "64".into()),
        (
            "LEASE_MS",
            std::env::var("SCALING_LEASE_MS").unwrap_or_else(|_| "2000".into()),
        ),
    ]
}

/// Removes a measurement's directory, unless `SCALING_KEEP` is set (then its process logs and
/// run logs stay for a look).
fn remove(dir: &Path) {
    if std::env::var_os("SCALING_KEEP").is_some() {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
