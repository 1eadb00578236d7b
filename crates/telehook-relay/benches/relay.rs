//! Relay benchmark script: POST→waiter wake latency with 1,000 and 10,000 waiting clients,
//! durable ingest rate, and memory per waiting connection. Prints a markdown table and writes it
//! to `target/relay-bench.md` (or `$RELAY_BENCH_OUT`).
//!
//! Run: `cargo bench -p telehook-relay --bench relay`
//! The relay runs as a child process (the release binary), so its memory can be measured alone
//! and the file descriptors of clients and server are split between two processes.
#![allow(clippy::print_stdout, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

const ROUNDS: usize = 5;

struct Relay {
    child: Child,
    addr: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Relay {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("telehook-relay-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_telehook-relay"))
            .args([
                "--listen",
                &addr,
                "--rate-limit",
                "0",
                "--log",
                "warn",
                "--max-waiters-per-channel",
                "20000",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("relay binary");
        let relay = Self {
            child,
            addr,
            _dir: TempDir(dir),
        };
        for _ in 0..500 {
            if TcpStream::connect(&relay.addr).await.is_ok() {
                return relay;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("relay did not start");
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns the status line.
async fn read_response(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut status = String::new();
    reader.read_line(&mut status).await?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(status)
}

async fn post(
    writer: &mut OwnedWriteHalf,
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    channel: &str,
    body: &str,
) {
    let request = format!(
        "POST /{channel} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(request.as_bytes()).await.unwrap();
    let status = read_response(reader).await.unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct WakeResult {
    waiters: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    rss_per_waiter_bytes: f64,
}

async fn wake_latency(relay: &Relay, waiters: usize, channel: &str) -> WakeResult {
    let sent = Arc::new(AtomicUsize::new(0));
    let received: Arc<Mutex<Vec<Instant>>> =
        Arc::new(Mutex::new(Vec::with_capacity(waiters * ROUNDS)));
    let done = Arc::new(AtomicUsize::new(0));
    let rss_before = relay.rss_kib();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..waiters {
        let (addr, channel) = (relay.addr.clone(), channel.to_owned());
        let (sent, received, done) = (sent.clone(), received.clone(), done.clone());
        tasks.spawn(async move {
            let stream = loop {
                match TcpStream::connect(&addr).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            stream.set_nodelay(true).unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            for round in 0..ROUNDS {
                let request =
                    format!("GET /{channel}?ts={round}&sleep=60 HTTP/1.1\r\nhost: bench\r\n\r\n");
                write.write_all(request.as_bytes()).await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
                read_response(&mut reader).await.unwrap();
                received.lock().unwrap().push(Instant::now());
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let control = TcpStream::connect(&relay.addr).await.unwrap();
    control.set_nodelay(true).unwrap();
    let (read, mut write) = control.into_split();
    let mut reader = BufReader::new(read);
    let mut latencies = Vec::with_capacity(waiters * ROUNDS);
    let mut rss_waiting = 0;
    for round in 0..ROUNDS {
        while sent.load(Ordering::SeqCst) < waiters * (round + 1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the relay take every request in before the POST.
        tokio::time::sleep(Duration::from_millis(300 + waiters as u64 / 10)).await;
        if round == 0 {
            rss_waiting = relay.rss_kib();
        }
        let start = Instant::now();
        post(&mut write, &mut reader, channel, r#"{"update_id":1}"#).await;
        while done.load(Ordering::SeqCst) < waiters * (round + 1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut got = received.lock().unwrap();
        latencies.extend(got.drain(..).map(|t| t.duration_since(start)));
    }
    while tasks.join_next().await.is_some() {}
    latencies.sort();
    WakeResult {
        waiters,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().unwrap(),
        rss_per_waiter_bytes: (rss_waiting.saturating_sub(rss_before) as f64 * 1024.0)
            / waiters as f64,
    }
}

async fn ingest_rate(relay: &Relay, connections: usize, per_connection: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let addr = relay.addr.clone();
        tasks.spawn(async move {
            let stream = TcpStream::connect(&addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            for i in 0..per_connection {
                let body = format!(
                    r#"{{"update_id":{i},"message":{{"chat":{{"id":{c}}},"text":"hello"}}}}"#
                );
                post(&mut write, &mut reader, "ingest", &body).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (connections * per_connection) as f64 / start.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let relay = Relay::start().await;
        let small = wake_latency(&relay, 1_000, "wake1k").await;
        let large = wake_latency(&relay, 10_000, "wake10k").await;
        let ingest = ingest_rate(&relay, 64, 400).await;
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mut table = String::new();
        table.push_str(&format!(
            "Relay benchmark (SQLite store, WAL, synchronous=FULL; relay and clients on one machine, {cores} cores; {ROUNDS} rounds per row)\n\n"
        ));
        table.push_str("| measure | value | target |\n| --- | --- | --- |\n");
        for r in [&small, &large] {
            table.push_str(&format!("| wake latency p50, {} waiters | {} | |\n", r.waiters, ms(r.p50)));
            let target = if r.waiters == 1_000 { "< 5 ms" } else { "" };
            table.push_str(&format!("| wake latency p99, {} waiters | {} | {target} |\n", r.waiters, ms(r.p99)));
            table.push_str(&format!("| wake latency max, {} waiters | {} | |\n", r.waiters, ms(r.max)));
        }
        table.push_str(&format!("| durable ingest, 64 connections | {ingest:.0} updates/s | ≥ 10,000/s |\n"));
        for r in [&small, &large] {
            table.push_str(&format!(
                "| relay memory per waiting connection ({} waiters) | {:.1} KiB | < 16 KiB |\n",
                r.waiters,
                r.rss_per_waiter_bytes / 1024.0
            ));
        }
        println!("{table}");
        let out = std::env::var("RELAY_BENCH_OUT").unwrap_or_else(|_| {
            format!("{}/../../target/relay-bench.md", env!("CARGO_MANIFEST_DIR"))
        });
        if std::fs::write(&out, &table).is_ok() {
            println!("written to {out}");
        }
    });
}
