//! The load generator that plays Telegram: chats posting updates to the webhooks, each chat's
//! next update only after the previous one was acknowledged, retried until it is.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{SECRET, now_ns};

/// How the load generator plays Telegram.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Webhook addresses (path `/telegram`); attempts go round-robin over them (a balancer's
    /// job).
    pub targets: Vec<SocketAddr>,
    /// Chats sending updates.
    pub chats: u32,
    /// Updates per second over all chats; 0: as fast as the webhooks acknowledge.
    pub rate: f64,
    /// Requests in flight at once (Telegram's `max_connections`, default 40).
    pub connections: usize,
    /// Stop after this many updates were acknowledged (0: until stopped).
    pub total: u64,
}

/// One acknowledged update.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// Its `update_id`.
    pub update_id: u64,
    /// Its chat (index, 0-based).
    pub chat: u32,
    /// Its place in the chat (from 1): the message's `message_id`.
    pub seq: u64,
    /// When it was first posted (ns since the epoch).
    pub first_sent: u128,
    /// When the `2xx` came (ns since the epoch).
    pub acked_at: u128,
    /// How long the acknowledged attempt took.
    pub latency: Duration,
}

/// What a load run did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Acknowledged updates.
    pub acked: Vec<Acked>,
    /// Attempts that got an error status or no answer (retried).
    pub refused: u64,
    /// Attempts in all.
    pub attempts: u64,
    /// Wall time from the start to the stop.
    pub elapsed: Duration,
}

/// A running load generator.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked_count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<LoadReport>,
}

/// The chat id of chat index `chat` (private chats: the id is the user's).
pub fn chat_id(chat: u32) -> i64 {
    1_000_000 + i64::from(chat)
}

/// The update body for `chat`'s update number `seq` (from 1).
pub fn update_body(update_id: u64, chat: u32, seq: u64) -> String {
    let id = chat_id(chat);
    format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":{seq},"date":1700000000,"chat":{{"id":{id},"type":"private"}},"from":{{"id":{id},"is_bot":false,"first_name":"u"}},"text":"n{seq}"}}}}"#
    )
}

impl Load {
    /// Starts posting: each chat sends its next update only after the previous one was
    /// acknowledged (`2xx`), retrying an update (with backoff, on the next target) until it is.
    pub fn start(config: LoadConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_count = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run_load(
            config,
            Arc::clone(&stop),
            Arc::clone(&acked_count),
        ));
        Self {
            stop,
            acked_count,
            task,
        }
    }

    /// Updates acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked_count.load(Ordering::Relaxed)
    }

    /// Whether the run ended by itself (its `total` reached).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks every chat to stop after its update in flight is acknowledged (or 30 s passed),
    /// and returns the report.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load generator")
    }
}

async fn run_load(
    config: LoadConfig,
    stop: Arc<AtomicBool>,
    acked_count: Arc<AtomicU64>,
) -> LoadReport {
    let client = Client::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(config.connections.max(1)));
    let next_target = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let chats = config.chats.max(1);
    let interval =
        (config.rate > 0.0).then(|| Duration::from_secs_f64(f64::from(chats) / config.rate));
    let config = Arc::new(config);
    let tasks: Vec<_> = (0..chats)
        .map(|chat| {
            let (client, permits, next_target, refused, attempts, stop, acked_count, config) = (
                client.clone(),
                Arc::clone(&permits),
                Arc::clone(&next_target),
                Arc::clone(&refused),
                Arc::clone(&attempts),
                Arc::clone(&stop),
                Arc::clone(&acked_count),
                Arc::clone(&config),
            );
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut next_at = tokio::time::Instant::now()
                    + interval.map_or(Duration::ZERO, |i| {
                        i.mul_f64(f64::from(chat) / f64::from(chats))
                    });
                for seq in 1u64.. {
                    if stop.load(Ordering::Relaxed)
                        || (config.total > 0 && acked_count.load(Ordering::Relaxed) >= config.total)
                    {
                        break;
                    }
                    if interval.is_some() {
                        tokio::time::sleep_until(next_at).await;
                    }
                    let update_id = seq * u64::from(chats) + u64::from(chat);
                    let body = update_body(update_id, chat, seq);
                    let first_sent = now_ns();
                    let mut backoff = Duration::from_millis(20);
                    let give_up = Arc::new(AtomicBool::new(false));
                    let mut stopped_at: Option<Instant> = None;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            let at = *stopped_at.get_or_insert_with(Instant::now);
                            if at.elapsed() > Duration::from_secs(30) {
                                give_up.store(true, Ordering::Relaxed);
                                break;
                            }
                        }
                        let target = &config.targets[(next_target.fetch_add(1, Ordering::Relaxed)
                            as usize)
                            % config.targets.len()];
                        let permit = permits.acquire().await.expect("semaphore");
                        attempts.fetch_add(1, Ordering::Relaxed);
                        let asked = Instant::now();
                        let answer = client.post(*target, &body).await;
                        let latency = asked.elapsed();
                        drop(permit);
                        match answer {
                            Ok(status) if (200..300).contains(&status) => {
                                acked.push(Acked {
                                    update_id,
                                    chat,
                                    seq,
                                    first_sent,
                                    acked_at: now_ns(),
                                    latency,
                                });
                                acked_count.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            _ => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(Duration::from_millis(500));
                            }
                        }
                    }
                    if give_up.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(i) = interval {
                        next_at += i;
                        let now = tokio::time::Instant::now();
                        if next_at < now {
                            next_at = now;
                        }
                    }
                }
                acked
            })
        })
        .collect();
    let mut report = LoadReport::default();
    for task in tasks {
        report.acked.extend(task.await.expect("chat task"));
    }
    report.elapsed = started.elapsed();
    report.refused = refused.load(Ordering::Relaxed);
    report.attempts = attempts.load(Ordering::Relaxed);
    report
}

/// A minimal HTTP/1.1 client with keep-alive, as Telegram's: idle connections per target are
/// reused; a connection that fails is dropped (the attempt counts as refused and is retried).
#[derive(Clone, Default)]
struct Client {
    idle: Arc<std::sync::Mutex<HashMap<SocketAddr, Vec<BufReader<TcpStream>>>>>,
}

impl Client {
    async fn post(&self, target: SocketAddr, body: &str) -> std::io::Result<u16> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&target)
            .and_then(Vec::pop);
        let mut conn = match pooled {
            Some(conn) => conn,
            None => BufReader::new(TcpStream::connect(target).await?),
        };
        let exchange = async {
            let request = format!(
                "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {}\r\n\r\n{body}",
                queue_workers::WEBHOOK_PATH,
                body.len()
            );
            conn.get_mut().write_all(request.as_bytes()).await?;
            let mut line = String::new();
            conn.read_line(&mut line).await?;
            let status: u16 = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))?;
            let (mut length, mut close) = (0usize, false);
            loop {
                line.clear();
                if conn.read_line(&mut line).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                } else if lower.starts_with("connection:") && lower.contains("close") {
                    close = true;
                }
            }
            let mut skip = vec![0; length.min(1 << 20)];
            conn.read_exact(&mut skip).await?;
            Ok::<_, std::io::Error>((status, close))
        };
        let (status, close) = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if !close {
            self.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(target)
                .or_default()
                .push(conn);
        }
        Ok(status)
    }
}
