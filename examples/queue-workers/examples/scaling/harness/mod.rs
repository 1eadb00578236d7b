//! The fault harness's parts, shared by `examples/scaling` (the figures in docs/scaling.md) and
//! `tests/faults.rs` (a few `kill -9` cycles on every CI run): processes of the example binary
//! on free loopback ports ([`node`]), a 3-node nats-server cluster ([`nats`]), a load generator
//! that plays Telegram ([`load`]), and the checker that reads every process's run log
//! ([`checker`]). Their items are re-exported here; this file keeps the small helpers they share.

#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "each user takes the parts it needs (of the re-exports too)"
)]

mod checker;
mod load;
mod nats;
mod node;

pub use checker::{
    Check, Run, check, drained, first_after, first_runs, last_run_write, read_runs, resume_after,
    runs_histogram,
};
pub use load::{Acked, Load, LoadConfig, LoadReport, chat_id, update_body};
pub use nats::{
    MAX_LAG, NatsCluster, http_get, nats_cluster, nats_server_program, replicas_caught_up,
};
pub use node::Node;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// `p`-th percentile (0–100) of sorted `values`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
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
