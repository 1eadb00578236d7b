//! The fault harness's parts, shared by `examples/scaling` (the figures in docs/scaling.md) and
//! `tests/faults.rs` (a few `kill -9` cycles on every CI run): processes of the example binary
//! on free loopback ports, a 3-node nats-server cluster, a load generator that plays Telegram,
//! and the checker that reads every process's run log.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each user takes the parts it needs"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The secret the load generator sends and the webhooks check.
pub const SECRET: &str = "scaling-harness-secret";

/// Nanoseconds since the Unix epoch: the run logs' clock, comparable across processes.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A free loopback port (bound and released; a start retries if another process took it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until `port` accepts connections; false if `child` exited first or 10 s passed.
pub fn wait_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The path of `queue-workers` (the example's binary) next to the running executable:
/// `target/<profile>/queue-workers` for `target/<profile>/examples/scaling`.
pub fn sibling_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("examples") || d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("a target directory");
    profile.join("queue-workers")
}

/// Resident set size and its peak (`VmRSS`, `VmHWM`) of a live process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// One process of the example binary in one role, restartable; killed (`SIGKILL`) on drop.
pub struct Node {
    /// A name for logs and run-log files.
    pub name: String,
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The webhook's port (none for a worker).
    pub port: Option<u16>,
    /// Whether each start writes a run log.
    record: bool,
    starts: u32,
    child: Option<Child>,
}

impl Node {
    /// A process of `bin` with `env`, its files in `dir`; `webhook`: it listens on a port;
    /// `record`: its handler runs are logged to `dir/runs-<name>-<start>.log`.
    pub fn new(
        name: &str,
        bin: &Path,
        dir: &Path,
        env: &[(&str, String)],
        webhook: bool,
        record: bool,
    ) -> Self {
        Self {
            name: name.into(),
            bin: bin.into(),
            dir: dir.into(),
            env: env.iter().map(|(k, v)| ((*k).into(), v.clone())).collect(),
            port: webhook.then(free_port),
            record,
            starts: 0,
            child: None,
        }
    }

    /// Starts the process (and, for a webhook, waits until it listens; a port taken meanwhile
    /// picks another).
    pub fn start(&mut self) {
        for _ in 0..10 {
            self.starts += 1;
            let mut command = Command::new(&self.bin);
            command
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("RUST_LOG", "warn")
                .env("TELEHOOK_SECRET", SECRET)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let stderr = std::fs::File::create(self.dir.join(format!("{}.stderr", self.name)))
                .map_or(Stdio::null(), Stdio::from);
            command.stderr(stderr);
            if let Some(port) = self.port {
                command.env("PORT", port.to_string());
            }
            if self.record {
                command.env(
                    "RUN_LOG",
                    self.dir
                        .join(format!("runs-{}-{}.log", self.name, self.starts)),
                );
            }
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
            match self.port {
                None => {
                    self.child = Some(child);
                    return;
                }
                Some(port) => {
                    if wait_listening(&mut child, port) {
                        self.child = Some(child);
                        return;
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    self.port = Some(free_port());
                }
            }
        }
        panic!("{} did not start", self.name);
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SIGTERM` and wait (up to 20 s, then `kill -9`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The live process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The webhook's address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A 3-node nats-server cluster with JetStream on loopback; each node restartable with its
/// store kept.
pub struct NatsCluster {
    /// Client ports.
    pub ports: Vec<u16>,
    /// HTTP monitoring ports (`-m`): `/healthz`, `/jsz`.
    pub monitor_ports: Vec<u16>,
    cluster_ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

/// The nats-server program: `NATS_SERVER`, else on PATH, else Debian's `/usr/sbin/nats-server`.
pub fn nats_server_program() -> String {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return p;
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file())
    });
    if on_path {
        "nats-server".into()
    } else {
        "/usr/sbin/nats-server".into()
    }
}

impl NatsCluster {
    /// Starts `nodes` nodes in `dir`.
    pub fn start(dir: &Path, nodes: usize) -> Self {
        let mut cluster = Self {
            ports: (0..nodes).map(|_| free_port()).collect(),
            monitor_ports: (0..nodes).map(|_| free_port()).collect(),
            cluster_ports: (0..nodes).map(|_| free_port()).collect(),
            dir: dir.into(),
            children: (0..nodes).map(|_| None).collect(),
        };
        for i in 0..nodes {
            cluster.spawn(i);
        }
        for i in 0..nodes {
            let port = cluster.ports[i];
            let child = cluster.children[i].as_mut().expect("started");
            assert!(wait_listening(child, port), "nats node {i} did not start");
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .cluster_ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
            .collect();
        let store = self.dir.join(format!("nats-{i}"));
        // Appended to: a restart keeps the log of the node's earlier lives.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("nats-{i}.log")))
            .map_or(Stdio::null(), Stdio::from);
        let child = Command::new(nats_server_program())
            .args(["-a", "127.0.0.1", "-p", &self.ports[i].to_string()])
            .args(["-m", &self.monitor_ports[i].to_string()])
            .args([
                "-n",
                &format!("n{i}"),
                "-js",
                "-sd",
                &store.display().to_string(),
            ])
            .args(["--cluster_name", "telehook"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", self.cluster_ports[i]),
            ])
            .args(["--routes", &routes.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server ({e}): apt-get install nats-server")
            });
        self.children[i] = Some(child);
    }

    /// `nats://...` URL of each node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect()
    }

    /// `nats://...` URLs of every node, comma-separated (the example's `QUEUE_URL`).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `kill -9` node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts node `i` with its store and waits until it listens.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        let port = self.ports[i];
        let child = self.children[i].as_mut().expect("started");
        assert!(wait_listening(child, port), "nats node {i} did not restart");
    }

    /// Whether node `i` is running, answers `200` on `/healthz` (the server's own check: in
    /// contact with the meta leader), and, in `/jsz`, every stream and consumer it knows has a
    /// leader, and every one it leads has each replica current or at most [`MAX_LAG`] entries
    /// behind. (A follower's view of the other replicas is stale, and `/healthz` stays `200`
    /// while a restarted replica is still thousands of entries behind: measured here.)
    pub async fn node_healthy(&self, i: usize) -> bool {
        if self.children[i].is_none() {
            return false;
        }
        let port = self.monitor_ports[i];
        if !matches!(http_get(port, "/healthz").await, Some((200, _))) {
            return false;
        }
        match http_get(port, "/jsz?accounts=true&streams=true&consumers=true").await {
            Some((200, body)) => replicas_caught_up(&body, &format!("n{i}")),
            _ => false,
        }
    }

    /// Whether every node is [healthy](Self::node_healthy).
    pub async fn healthy(&self) -> bool {
        for i in 0..self.children.len() {
            if !self.node_healthy(i).await {
                return false;
            }
        }
        true
    }
}

/// How many entries behind its leader a replica may be and still count as caught up: under
/// load a healthy follower is a few entries behind; a restarted one catching up, thousands.
pub const MAX_LAG: u64 = 500;

/// In a `/jsz` answer of node `me`: every `"cluster"` object (of a stream or a consumer) names
/// a leader, and in those `me` leads, every replica is `"current": true` or at most
/// [`MAX_LAG`] behind.
pub fn replicas_caught_up(jsz: &str, me: &str) -> bool {
    let mut rest = jsz;
    while let Some(at) = rest.find("\"cluster\":") {
        rest = &rest[at + "\"cluster\":".len()..];
        let Some(open) = rest.find('{') else {
            return false;
        };
        // The object, up to its matching brace.
        let mut depth = 0;
        let mut end = None;
        for (k, c) in rest[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return false;
        };
        let object = &rest[open..=end];
        rest = &rest[end..];
        let compact: String = object.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(leader) = compact
            .split_once("\"leader\":\"")
            .and_then(|(_, l)| l.split('"').next())
            .filter(|l| !l.is_empty())
        else {
            return false;
        };
        if leader != me {
            continue;
        }
        let Some((_, replicas)) = compact.split_once("\"replicas\":[") else {
            continue;
        };
        for replica in replicas.split('}') {
            if !replica.contains("\"name\":") {
                continue;
            }
            let current = replica.contains("\"current\":true");
            let lag: u64 = replica
                .split_once("\"lag\":")
                .and_then(|(_, l)| {
                    l.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|d| d.parse().ok())
                })
                .unwrap_or(0);
            if !current && lag > MAX_LAG {
                return false;
            }
        }
    }
    true
}

/// The status and body (its first 4 MiB) of `GET path` on a loopback port (`None`: no answer
/// within 2 s).
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        conn.take(4 << 20).read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok())?;
        let body = answer
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// The latest modification time (ns since the epoch) of the `runs-*.log` files in `dir`:
/// when a handler last ran, without reading the logs.
pub fn last_run_write(dir: &Path) -> u128 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("runs-") && name.ends_with(".log")
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .filter_map(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .max()
        .unwrap_or(0)
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
    }
}

/// A 3-node cluster in `dir` whose queue streams exist (as the example's processes open them:
/// 3 replicas, 3 partitions, a 2 s lease), so the processes started next find JetStream ready.
pub async fn nats_cluster(dir: &Path) -> NatsCluster {
    let cluster = NatsCluster::start(dir, 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let opened = telehook_nats::NatsQueue::builder(cluster.urls())
            .replicas(3)
            .partitions(3)
            .lease(Duration::from_secs(2))
            .connect()
            .await;
        match opened {
            Ok(_) => return cluster,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for JetStream: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("JetStream did not come up on the cluster: {e}"),
        }
    }
}

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

/// One handler run, as a worker logged it.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// The update's `update_id`.
    pub update_id: u64,
    /// The chat id.
    pub chat: i64,
    /// The chat's sequence number (`message_id`).
    pub seq: u64,
    /// When it ran (ns since the epoch).
    pub at: u128,
}

/// Every run in the `runs-*.log` files of `dir` (a line cut short by a kill is skipped).
pub fn read_runs(dir: &Path) -> Vec<Run> {
    let mut runs = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return runs;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("runs-") && name.ends_with(".log")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 4 {
                continue;
            }
            if let (Ok(update_id), Ok(chat), Ok(seq), Ok(at)) =
                (f[0].parse(), f[1].parse(), f[2].parse(), f[3].parse())
            {
                runs.push(Run {
                    update_id,
                    chat,
                    seq,
                    at,
                });
            }
        }
    }
    runs.sort_by_key(|r| r.at);
    runs
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Check {
    /// Updates acknowledged to the load generator.
    pub acked: usize,
    /// Handler runs in all.
    pub runs: usize,
    /// Acknowledged updates that never ran.
    pub lost: Vec<u64>,
    /// Runs out of their chat's order: a chat's update running before an earlier one of the
    /// chat ran, or an earlier one running again after a later one ran.
    pub order_violations: Vec<String>,
    /// Runs of an update that had run before.
    pub duplicates: usize,
}

/// Checks the runs against what was acknowledged.
pub fn check(acked: &[Acked], runs: &[Run]) -> Check {
    let ran: HashSet<u64> = runs.iter().map(|r| r.update_id).collect();
    let mut lost: Vec<u64> = acked
        .iter()
        .map(|a| a.update_id)
        .filter(|id| !ran.contains(id))
        .collect();
    lost.sort_unstable();
    let mut seen: HashMap<i64, (u64, u64, HashSet<u64>)> = HashMap::new(); // contiguous, max, set
    let mut order_violations = Vec::new();
    let mut duplicates = 0;
    for run in runs {
        let (contiguous, max, set) = seen.entry(run.chat).or_default();
        if !set.insert(run.seq) {
            duplicates += 1;
            if run.seq < *max {
                order_violations.push(format!(
                    "chat {}: update {} (#{}) ran again after #{max}",
                    run.chat, run.update_id, run.seq
                ));
            }
            continue;
        }
        if run.seq != *contiguous + 1 {
            order_violations.push(format!(
                "chat {}: #{} ran before #{}",
                run.chat,
                run.seq,
                *contiguous + 1
            ));
        }
        *max = (*max).max(run.seq);
        while set.contains(&(*contiguous + 1)) {
            *contiguous += 1;
        }
    }
    Check {
        acked: acked.len(),
        runs: runs.len(),
        lost,
        order_violations,
        duplicates,
    }
}

/// Waits (up to `limit`) until every acknowledged update ran; returns the runs.
pub async fn drained(dir: &Path, acked: &[Acked], limit: Duration) -> Vec<Run> {
    let want: HashSet<u64> = acked.iter().map(|a| a.update_id).collect();
    let deadline = Instant::now() + limit;
    loop {
        let runs = read_runs(dir);
        let ran: HashSet<u64> = runs.iter().map(|r| r.update_id).collect();
        if want.is_subset(&ran) || Instant::now() >= deadline {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// For a kill at `kill` (ns): how long the updates it held up waited after it — the
/// acknowledged-but-not-yet-run updates (their first run after the kill), and the updates
/// being posted (their acknowledgement after the kill). The longest of each, in ms.
pub fn resume_after(kill: u128, acked: &[Acked], first_run: &HashMap<u64, u128>) -> (f64, f64) {
    let mut run_wait: u128 = 0;
    let mut ack_wait: u128 = 0;
    for a in acked {
        if a.acked_at <= kill {
            if let Some(&at) = first_run.get(&a.update_id)
                && at > kill
            {
                run_wait = run_wait.max(at - kill);
            }
        } else if a.first_sent <= kill {
            ack_wait = ack_wait.max(a.acked_at - kill);
        }
    }
    (run_wait as f64 / 1e6, ack_wait as f64 / 1e6)
}

/// For a kill at `kill` (ns): how long after it the first handler run (of any update) and the
/// first acknowledgement (of any update) came, in ms; `None` if none came.
pub fn first_after(kill: u128, acked: &[Acked], runs: &[Run]) -> (Option<f64>, Option<f64>) {
    let run = runs.iter().map(|r| r.at).filter(|&at| at > kill).min();
    let ack = acked
        .iter()
        .map(|a| a.acked_at)
        .filter(|&at| at > kill)
        .min();
    let ms = |t: Option<u128>| t.map(|t| (t - kill) as f64 / 1e6);
    (ms(run), ms(ack))
}

/// The first run of each update.
pub fn first_runs(runs: &[Run]) -> HashMap<u64, u128> {
    let mut first = HashMap::new();
    for r in runs {
        first.entry(r.update_id).or_insert(r.at);
    }
    first
}

/// `p`-th percentile (0–100) of sorted `values`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// Runs per update, for the duplicate count's explanation: how many updates ran `n` times.
pub fn runs_histogram(runs: &[Run]) -> BTreeMap<usize, usize> {
    let mut per: HashMap<u64, usize> = HashMap::new();
    for r in runs {
        *per.entry(r.update_id).or_default() += 1;
    }
    let mut hist = BTreeMap::new();
    for n in per.into_values() {
        *hist.entry(n).or_default() += 1;
    }
    hist
}

/// A fresh temporary directory for one run.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "telehook-scaling-{tag}-{}-{}",
        std::process::id(),
        now_ns() % 1_000_000_000
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
