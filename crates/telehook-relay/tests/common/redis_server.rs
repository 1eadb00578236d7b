//! A real `redis-server` per test, on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use telehook_relay::store::redis::{RedisOptions, RedisStore};
use telehook_relay::{Notifier, RelayConfig, StoreLimits};

use super::{TempDir, TestRelay, test_config};

pub struct RedisServer {
    child: Child,
    pub url: String,
    pub port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING. Tests run in parallel, so
    /// another test's server may take the port between our probe and redis-server's bind; then
    /// this server exits and we try another port.
    pub async fn start() -> Self {
        for _ in 0..10 {
            if let Some(server) = Self::try_start().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    async fn try_start() -> Option<Self> {
        let dir = TempDir::new("redis");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn(port, &dir);
        let mut server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
            port,
            dir,
        };
        server.ready().await.then_some(server)
    }

    /// Waits until the server answers PING; false when it exited (its port was taken).
    async fn ready(&mut self) -> bool {
        for _ in 0..500 {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if ping(self.port).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    /// Kills the server (as a crash would); its data is gone (no persistence in tests).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) {
        for _ in 0..50 {
            self.child = spawn(self.port, &self.dir);
            if self.ready().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    pub async fn relay(&self, limits: StoreLimits) -> TestRelay {
        self.relay_with(limits, test_config()).await
    }

    pub async fn relay_with(&self, limits: StoreLimits, config: RelayConfig) -> TestRelay {
        let notifier = Arc::new(Notifier::new(1_000, 1_000));
        let options = RedisOptions {
            url: self.url.clone(),
            prefix: "test".into(),
            limits,
        };
        let store = RedisStore::connect(options, notifier).await.unwrap();
        TestRelay::serve(Arc::new(store), config).await
    }
}

/// True when a Redis server on `port` answers `PING` with `+PONG`.
async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").await.is_ok()
        && stream.read_exact(&mut answer).await.is_ok()
        && &answer == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(port: u16, dir: &TempDir) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): the Redis tests need it on PATH; run `apt-get install -y redis-server`")
        })
}
