//! Real `nats-server` processes for tests, examples and benchmarks (feature `testing`): one
//! JetStream node, or a JetStream cluster of several nodes joined by routes, each on free
//! loopback ports with its store in a temporary directory, killed (`SIGKILL`, as `kill -9`)
//! when dropped.
//!
//! ```no_run
//! # async fn run() {
//! use telehook_nats::{NatsQueue, testing::NatsCluster};
//!
//! let mut cluster = NatsCluster::start(3).await.unwrap();
//! let queue = NatsQueue::builder(cluster.urls())
//!     .name("mybot")
//!     .replicas(3)
//!     .partitions(3)
//!     .connect()
//!     .await
//!     .unwrap();
//! cluster.kill(1); // kill -9 one node
//! cluster.restart(1).await.unwrap(); // the same node, its store and ports kept
//! # drop(queue);
//! # }
//! ```
//!
//! The server binary is the path in the environment variable `NATS_SERVER`, else
//! `nats-server` on the `PATH` or in `/usr/sbin` (Debian: `apt-get install nats-server`; 2.9 or
//! later).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The binary could not be run.
    #[error("cannot run {binary} ({source}); install it: apt-get install -y nats-server")]
    Spawn {
        /// The binary tried.
        binary: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// No free port, or a temporary directory could not be made.
    #[error("local resources: {0}")]
    Io(#[from] std::io::Error),
    /// The server(s) did not get ready (JetStream answering) in time.
    #[error("nats-server did not get ready within {0:?}")]
    NotReady(Duration),
}

fn binary() -> String {
    if let Ok(binary) = std::env::var("NATS_SERVER") {
        return binary;
    }
    // Debian installs it in /usr/sbin, which is not on every user's PATH.
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file())
    });
    if !on_path && std::path::Path::new("/usr/sbin/nats-server").is_file() {
        return "/usr/sbin/nats-server".to_owned();
    }
    "nats-server".to_owned()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One node: its ports, its store, its process.
#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    cluster_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self, cluster: Option<(&str, &[u16])>) -> Result<(), StartError> {
        let mut command = Command::new(binary());
        command
            .args(["-a", "127.0.0.1", "-js", "-n", &self.name])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let (Some((cluster_name, ports)), Some(own)) = (cluster, self.cluster_port) {
            let routes: Vec<String> = ports
                .iter()
                .filter(|p| **p != own)
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            command
                .args(["--cluster_name", cluster_name])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{own}"))
                .arg("--routes")
                .arg(routes.join(","));
        }
        let child = command.spawn().map_err(|source| StartError::Spawn {
            binary: binary(),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn temp_dir(label: &str) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "telehook-nats-{label}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// How long a start waits for JetStream to answer.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Waits until JetStream answers on `url` (for a cluster: a meta leader is elected).
async fn ready(urls: &[String], within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let attempt = async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_millis(500))
                .connect(urls)
                .await
                .ok()?;
            // The account's JetStream info: an error (no meta leader yet) until it is ready.
            let answer = client
                .request("$JS.API.INFO", bytes::Bytes::new())
                .await
                .ok()?;
            let text = String::from_utf8_lossy(&answer.payload);
            (text.contains("account_info_response") && !text.contains("\"error\"")).then_some(())
        };
        if tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A single JetStream `nats-server` on a free loopback port; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    node: Node,
}

impl NatsServer {
    /// Starts one and waits until JetStream answers.
    pub async fn start() -> Result<Self, StartError> {
        let mut last = None;
        for _ in 0..5 {
            let mut node = Node {
                name: "n0".to_owned(),
                port: free_port()?,
                cluster_port: None,
                dir: temp_dir("single")?,
                child: None,
            };
            node.spawn(None)?;
            if ready(&[node.url()], READY_WITHIN).await {
                return Ok(Self { node });
            }
            // Most likely another process took the port first: try other ports.
            node.kill();
            let _ = std::fs::remove_dir_all(&node.dir);
            last = Some(StartError::NotReady(READY_WITHIN));
        }
        Err(last.unwrap_or(StartError::NotReady(READY_WITHIN)))
    }

    /// Its URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// Kills it (`SIGKILL`); its store stays for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.node.kill();
        self.node.spawn(None)?;
        if ready(&[self.node.url()], READY_WITHIN).await {
            Ok(())
        } else {
            Err(StartError::NotReady(READY_WITHIN))
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.node.kill();
        let _ = std::fs::remove_dir_all(&self.node.dir);
    }
}

/// A JetStream cluster of `n` `nats-server` nodes on loopback, joined by routes; each node
/// killed when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    name: String,
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl NatsCluster {
    /// Starts `nodes` nodes (3 for replicas 3) and waits until JetStream answers.
    pub async fn start(nodes: usize) -> Result<Self, StartError> {
        let nodes = nodes.max(1);
        let dir = temp_dir("cluster")?;
        let name = format!("telehook-{}", std::process::id());
        let mut cluster = Self {
            name,
            nodes: Vec::with_capacity(nodes),
            dir,
        };
        for i in 0..nodes {
            let node_dir = cluster.dir.join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir)?;
            cluster.nodes.push(Node {
                name: format!("n{i}"),
                port: free_port()?,
                cluster_port: Some(free_port()?),
                dir: node_dir,
                child: None,
            });
        }
        let ports = cluster.cluster_ports();
        for node in &mut cluster.nodes {
            node.spawn(Some((&cluster.name, &ports)))?;
        }
        if !ready(&cluster.urls(), READY_WITHIN).await {
            return Err(StartError::NotReady(READY_WITHIN));
        }
        // Every node must see the meta leader, not just one.
        for node in &cluster.nodes {
            if !ready(&[node.url()], READY_WITHIN).await {
                return Err(StartError::NotReady(READY_WITHIN));
            }
        }
        Ok(cluster)
    }

    fn cluster_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter_map(|n| n.cluster_port).collect()
    }

    /// The client URLs of all nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> Option<String> {
        self.nodes.get(i).map(Node::url)
    }

    /// The node whose server name is `name` (as a stream's leader is named, e.g. by
    /// `NatsQueue::stream_leader`).
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: [`start`](Self::start) makes at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether node `i` is running (it was not killed, and did not exit).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes
            .get_mut(i)
            .is_some_and(|n| n.child.is_some() && !n.exited())
    }

    /// Kills node `i` with `SIGKILL` (`kill -9`); its store stays for [`restart`](Self::restart).
    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.kill();
        }
    }

    /// Stops node `i` without killing it (`SIGSTOP`): it holds its connections and answers
    /// nothing, as a stalled or partitioned server does, until [`resume`](Self::resume).
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Lets node `i` run again after [`pause`](Self::pause) (`SIGCONT`).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&mut self, i: usize, signal: &str) {
        let Some(pid) = self
            .nodes
            .get(i)
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
        else {
            return;
        };
        // util-linux's kill(1), on every Debian system: no libc binding needed for a test aid.
        let _ = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status();
    }

    /// Starts node `i` again with its ports and store, and waits until it answers.
    pub async fn restart(&mut self, i: usize) -> Result<(), StartError> {
        let ports = self.cluster_ports();
        let name = self.name.clone();
        let Some(node) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        node.kill();
        node.spawn(Some((&name, &ports)))?;
        let url = node.url();
        if ready(&[url], READY_WITHIN).await {
            Ok(())
        } else {
            Err(StartError::NotReady(READY_WITHIN))
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
