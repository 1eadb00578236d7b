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
        let addr = free_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_telehook-relay"));
        command
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
            .arg(&dir);
        Self::spawn(command, addr, TempDir(dir)).await
    }

    /// The floor: this benchmark binary itself as a minimal server (see [`floor_server`]).
    async fn start_floor() -> Self {
        let addr = free_addr();
        let mut command = Command::new(std::env::current_exe().expect("own path"));
        command.env(FLOOR_ENV, &addr);
        let dir =
            std::env::temp_dir().join(format!("telehook-relay-bench-floor-{}", std::process::id()));
        Self::spawn(command, addr, TempDir(dir)).await
    }

    async fn spawn(mut command: Command, addr: String, dir: TempDir) -> Self {
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("server binary");
        let relay = Self {
            child,
            addr,
            _dir: dir,
        };
        for _ in 0..500 {
            if TcpStream::connect(&relay.addr).await.is_ok() {
                return relay;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server did not start");
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
        // A fresh connection per POST: an idle one would be closed by the relay's
        // header-read timeout while thousands of waiters connect. Connecting is not timed.
        let control = TcpStream::connect(&relay.addr).await.unwrap();
        control.set_nodelay(true).unwrap();
        let (read, mut write) = control.into_split();
        let mut reader = BufReader::new(read);
        // A new update each round (the same one again would be a redelivery, not stored).
        let body = format!(r#"{{"update_id":{round}}}"#);
        let start = Instant::now();
        post(&mut write, &mut reader, channel, &body).await;
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

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Set to an address, the benchmark binary runs [`floor_server`] there instead.
const FLOOR_ENV: &str = "RELAY_BENCH_FLOOR_SERVE";

/// The least a server can do for this benchmark, to show what the machine allows: raw tokio
/// sockets, no HTTP library, no storage. A POST bumps a counter; `GET /…?ts=N` is answered with a
/// fixed body once the counter passes N. Same client, same machine, same fan-out as the relay.
async fn floor_server(addr: String) {
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let (count, _) = tokio::sync::watch::channel(0u64);
    let count = Arc::new(count);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let count = count.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let mut changes = count.subscribe();
            loop {
                let mut request = String::new();
                if reader.read_line(&mut request).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                let answer = if request.starts_with("POST") {
                    count.send_modify(|n| *n += 1);
                    "{\"ok\":true}".to_owned()
                } else {
                    let ts: u64 = request
                        .split("ts=")
                        .nth(1)
                        .and_then(|v| v.split(['&', ' ']).next())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let Ok(now) = changes.wait_for(|n| *n > ts).await.map(|n| *n) else {
                        return;
                    };
                    format!("{{\"ok\":true,\"ts\":{now},\"updates\":[{{\"update_id\":1}}]}}")
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if write.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(addr) = std::env::var(FLOOR_ENV) {
        runtime.block_on(floor_server(addr));
        return;
    }
    runtime.block_on(async {
        // `RELAY_BENCH_QUICK=1`: the 10,000-waiter row only, to try a change quickly.
        if std::env::var_os("RELAY_BENCH_QUICK").is_some() {
            let relay = Relay::start().await;
            let large = wake_latency(&relay, 10_000, "wake10k").await;
            println!(
                "10000 waiters: p50 {} p99 {} max {}, {:.1} KiB per waiting connection",
                ms(large.p50),
                ms(large.p99),
                ms(large.max),
                large.rss_per_waiter_bytes / 1024.0
            );
            return;
        }
        // The floor first, in its own process, gone before the relay starts.
        let (floor_small, floor_large) = {
            // A fresh floor server per row: its counter is not per channel.
            let small = wake_latency(&Relay::start_floor().await, 1_000, "wake1k").await;
            let large = wake_latency(&Relay::start_floor().await, 10_000, "wake10k").await;
            (small, large)
        };
        let relay = Relay::start().await;
        let small = wake_latency(&relay, 1_000, "wake1k").await;
        let large = wake_latency(&relay, 10_000, "wake10k").await;
        let ingest = ingest_rate(&relay, 64, 400).await;
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mut table = String::new();
        table.push_str(&format!(
            "Relay benchmark (SQLite store, WAL, synchronous=FULL; relay and clients on one machine, {cores} cores; {ROUNDS} rounds per row)\n\n"
        ));
        table.push_str(
            "The floor column is the same client against a minimal server in its own process \
             (raw tokio sockets, no HTTP library, no storage, fixed answer): what this machine \
             allows at best.\n\n",
        );
        table.push_str("| measure | relay | floor | target |\n| --- | --- | --- | --- |\n");
        for (r, f) in [(&small, &floor_small), (&large, &floor_large)] {
            let n = r.waiters;
            table.push_str(&format!("| wake latency p50, {n} waiters | {} | {} | |\n", ms(r.p50), ms(f.p50)));
            let target = if n == 1_000 { "< 5 ms" } else { "" };
            table.push_str(&format!("| wake latency p99, {n} waiters | {} | {} | {target} |\n", ms(r.p99), ms(f.p99)));
            table.push_str(&format!("| wake latency max, {n} waiters | {} | {} | |\n", ms(r.max), ms(f.max)));
        }
        table.push_str(&format!("| durable ingest, 64 connections | {ingest:.0} updates/s | | ≥ 10,000/s |\n"));
        for (r, f) in [(&small, &floor_small), (&large, &floor_large)] {
            table.push_str(&format!(
                "| memory per waiting connection ({} waiters) | {:.1} KiB | {:.1} KiB | < 16 KiB |\n",
                r.waiters,
                r.rss_per_waiter_bytes / 1024.0,
                f.rss_per_waiter_bytes / 1024.0
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
