//! The acknowledge latency of the webhook in queue mode, over HTTP on loopback: `N` updates
//! (default 10,000) over 1,000 chats POSTed by 64 concurrent clients (one connection per
//! request), each timed from connecting to reading Telegram's `200`; 3 workers drain meanwhile.
//!
//! `cargo run --release -p queue-workers --example ack_latency -- [N]`

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use telehook_core::{Context, HandlerError, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post(addr: std::net::SocketAddr, body: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("queue-workers-ack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let queue = queue_workers::open_queue(&dir.join("q.sqlite3"), 3).expect("queue");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
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
    let server = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            let mut runner = telehook_polling::RunnerConfig::default();
            runner.concurrency = 64;
            queue_workers::run(listener, queue, None, handler, runner, async move {
                done.notified().await;
            })
            .await
        }
    });
    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut latencies: Vec<Duration> = Vec::new();
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id > total {
                        break latencies;
                    }
                    let body = format!(
                        r#"{{"update_id":{id},"message":{{"message_id":{id},"date":1,"chat":{{"id":{},"type":"private"}},"text":"hi"}}}}"#,
                        id % 1_000
                    );
                    let asked = Instant::now();
                    assert_eq!(post(addr, &body).await, 200);
                    latencies.push(asked.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.expect("client"));
    }
    let acked = started.elapsed();
    server.await.expect("server").expect("run");
    let all = started.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!("| updates | acknowledged | handled | ack p50 | ack p99 |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {total} | {:.0}/s | {:.0}/s | {:.2} ms | {:.2} ms |",
        total as f64 / acked.as_secs_f64(),
        total as f64 / all.as_secs_f64(),
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
