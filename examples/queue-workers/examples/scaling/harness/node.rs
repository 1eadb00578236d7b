//! One process of the example binary in one role (a webhook or a worker), restartable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{SECRET, free_port, wait_listening};

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
