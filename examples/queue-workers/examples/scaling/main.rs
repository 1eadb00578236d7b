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

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{Load, LoadConfig, NatsCluster, Node};
use telehook_core::{Context, HandlerError, Update};
use telehook_queue::{QueueBackend, SqliteQueue};

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

/// Column names.
const EMBEDDED: &str = "embedded (SQLite)";
const NATS: &str = "NATS JetStream (3 nodes, R3)";

/// The table: row → column → cell.
#[derive(Default)]
struct Table {
    rows: Vec<String>,
    cells: BTreeMap<(String, &'static str), String>,
}

impl Table {
    fn set(&mut self, row: &str, column: &'static str, cell: String) {
        if !self.rows.iter().any(|r| r == row) {
            self.rows.push(row.into());
        }
        println!("{row} [{column}]: {cell}");
        self.cells.insert((row.into(), column), cell);
    }

    fn markdown(&self) -> String {
        let mut s = format!("| | {EMBEDDED} | {NATS} |\n| --- | --- | --- |\n");
        for row in &self.rows {
            let cell = |c: &'static str| {
                self.cells
                    .get(&(row.clone(), c))
                    .cloned()
                    .unwrap_or_else(|| "not run".into())
            };
            s.push_str(&format!(
                "| {row} | {} | {} |\n",
                cell(EMBEDDED),
                cell(NATS)
            ));
        }
        s
    }
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

fn throughput_row(partitions: u32, n: u64) -> String {
    format!(
        "enqueue → handled, {} worker{}, {} updates, 3 runs (updates/s)",
        partitions,
        if partitions == 1 { "" } else { "s" },
        thousands(n as f64)
    )
}

/// `min – max` of `values`, with thousands separators.
fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{} – {}", thousands(min), thousands(max))
}

/// `12345.6` → `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const OVERLOAD_ROW: &str = "RSS under sustained overload (queue capacity 20,000, a slow worker, posts as fast as acknowledged): webhook / worker";

fn ack_row(n: u64) -> String {
    format!(
        "acknowledge latency over HTTP, {} updates, 1,000 chats, 64 connections: p50 / p99 (acks/s)",
        thousands(n as f64)
    )
}

fn fault_row(what: &str, cycles: u32) -> String {
    format!(
        "`kill -9` {what} × {cycles}, 1,000 chats: acknowledged / lost / order violations / duplicate runs / resume after a kill, median / max over the kills (ms)"
    )
}

/// The NATS node row: kills one at a time, each once the cluster is healthy again (default),
/// or every 4 s, overlapping (`--overlap`).
fn nats_node_row(overlap: bool, cycles: u32) -> String {
    if overlap {
        fault_row(
            "a NATS node (of 3), a kill every 4 s whether or not the cluster recovered (`--overlap`: kills overlap)",
            cycles,
        )
    } else {
        format!(
            "`kill -9` a NATS node (of 3) × {cycles}, the next kill once the cluster is healthy again, 1,000 chats: acknowledged / lost / order violations / duplicate runs / resume after a kill, median / p90 / max over the kills (ms)"
        )
    }
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

fn percentile_ms(latencies: &mut [Duration], p: f64) -> f64 {
    latencies.sort_unstable();
    harness::percentile(latencies, p).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn throughput<B: QueueBackend>(queue: B, n: u64) -> f64 {
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

async fn ack_latency(options: &Options, dir: &Path, url: &str, n: u64) -> String {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Worker,
    Webhook,
    NatsNode,
}

/// `cycles` kills of one process while 1,000 chats send 1,000 updates/s in all, over two
/// webhook processes (round-robin) and two worker processes (leases of 2 s); the killed
/// process is started again after 300 ms (a supervisor's restart).
async fn faults(
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

/// The webhook's queue holds at most 20,000 updates and the worker is slow (20 ms a run, 4 at
/// once per partition): the load generator posts as fast as it can for 30 s, the queue fills,
/// enqueues are refused (`500`), Telegram retries. RSS sampled every 500 ms.
async fn overload(options: &Options, dir: &Path, url: &str) -> String {
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

/// Rewrites one row of the table between the `figures` markers of `path` — the row labelled
/// `row`, else a new one after the last row of the same fault (`| \`kill -9\` a NATS node`…),
/// else at the table's end — keeping the other rows and the row's cells not measured now;
/// and under the table a note `Row “…”: note` (replaced if there).
fn write_row(path: &Path, table: &Table, row: &str, note: &str) {
    const BEGIN: &str = "<!-- figures:begin -->";
    const END: &str = "<!-- figures:end -->";
    let text = std::fs::read_to_string(path).expect("the figures file");
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{} has no {BEGIN} … {END} markers", path.display());
    };
    let mut lines: Vec<String> = text[b + BEGIN.len()..e]
        .lines()
        .map(str::to_owned)
        .collect();
    let label = format!("| {row} | ");
    let old: Option<Vec<String>> = lines.iter().find(|l| l.starts_with(&label)).map(|l| {
        l[label.len()..]
            .trim_end_matches(" |")
            .split(" | ")
            .map(str::to_owned)
            .collect()
    });
    let cell = |column: &'static str, i: usize| {
        table
            .cells
            .get(&(row.to_owned(), column))
            .cloned()
            .or_else(|| old.as_ref().and_then(|o| o.get(i).cloned()))
            .unwrap_or_else(|| "not run".into())
    };
    let line = format!("{label}{} | {} |", cell(EMBEDDED, 0), cell(NATS, 1));
    if let Some(at) = lines.iter().position(|l| l.starts_with(&label)) {
        lines[at] = line;
    } else {
        let fault = row.split(" × ").next().unwrap_or(row);
        let fault = fault.split(", ").next().unwrap_or(fault);
        let same = lines
            .iter()
            .rposition(|l| l.starts_with(&format!("| {fault}")));
        let last = lines.iter().rposition(|l| l.starts_with("| "));
        match same.or(last) {
            Some(at) => lines.insert(at + 1, line),
            None => lines.push(line),
        }
    }
    // The notes: a list after the table, separated from it by a blank line.
    let short = row.split(", 1,000 chats").next().unwrap_or(row);
    let prefix = format!("- Row “{short}”:");
    let note = format!("{prefix} {note}.");
    if let Some(at) = lines.iter().position(|l| l.starts_with(&prefix)) {
        lines[at] = note;
    } else {
        let last_row = lines.iter().rposition(|l| l.starts_with("| ")).unwrap_or(0);
        if lines.get(last_row + 1).is_none_or(|l| !l.is_empty()) {
            lines.insert(last_row + 1, String::new());
        }
        let notes_end = lines[last_row + 2..]
            .iter()
            .position(|l| !l.starts_with("- Row “"))
            .map_or(lines.len(), |p| last_row + 2 + p);
        lines.insert(notes_end, note);
    }
    let mut inner = lines.join("\n");
    inner.push('\n');
    let updated = format!("{}{BEGIN}{inner}{}", &text[..b], &text[e..]);
    std::fs::write(path, updated).expect("write the figures");
}

/// Replaces what is between `<!-- figures:begin -->` and `<!-- figures:end -->` in `path`.
fn write_between_markers(path: &Path, markdown: &str) {
    const BEGIN: &str = "<!-- figures:begin -->";
    const END: &str = "<!-- figures:end -->";
    let text = std::fs::read_to_string(path).expect("the figures file");
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{} has no {BEGIN} … {END} markers", path.display());
    };
    let updated = format!("{}{BEGIN}\n{markdown}{}", &text[..b], &text[e..]);
    std::fs::write(path, updated).expect("write the figures");
}
