//! A 3-node nats-server cluster on loopback, its nodes killed and restarted one at a time, and
//! its health as the fault runs wait for it: `/healthz` and the replicas' lag in `/jsz`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{free_port, wait_listening};

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

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill9(i);
        }
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
