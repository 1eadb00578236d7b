//! Test harness: real relays on 127.0.0.1, a pooled HTTP client, temporary data directories.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use telehook_relay::{Notifier, Relay, RelayConfig, SqliteStore, Store, StoreLimits};
use tokio::sync::oneshot;

pub mod redis_server;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "telehook-relay-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay served in-process on an ephemeral loopback port.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub relay: Relay,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub dir: Option<TempDir>,
}

/// Relay settings for tests: no rate limit unless a test sets one.
pub fn test_config() -> RelayConfig {
    RelayConfig {
        rate_limit: None,
        ..RelayConfig::default()
    }
}

impl TestRelay {
    pub async fn sqlite(config: RelayConfig) -> Self {
        Self::sqlite_with(config, StoreLimits::default()).await
    }

    pub async fn sqlite_with(config: RelayConfig, limits: StoreLimits) -> Self {
        let dir = TempDir::new("sqlite");
        let notifier = Arc::new(Notifier::new(config.max_waiters_per_channel, 1_000));
        let store = SqliteStore::open(dir.path(), limits, notifier).unwrap();
        let mut relay = Self::serve(Arc::new(store), config).await;
        relay.dir = Some(dir);
        relay
    }

    pub async fn serve(store: Arc<dyn Store>, config: RelayConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = Relay::new(store, config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            relay,
            stop: Some(stop),
            task: Some(task),
            dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Self { client }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let response = self
            .client
            .request(builder.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn post(&self, url: &str, body: &str) -> Answer {
        self.send(
            Method::POST,
            url,
            &[("content-type", "application/json")],
            body.to_owned(),
        )
        .await
    }

    /// Opens an SSE stream and returns its response for reading frames.
    pub async fn open(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> hyper::Response<hyper::body::Incoming> {
        let mut builder = Request::builder().method(Method::GET).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        self.client
            .request(builder.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap()
    }
}

/// Reads Server-Sent Events from a response body.
pub struct SseReader {
    body: hyper::body::Incoming,
    buffer: String,
}

/// One event: (event name, id, data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseReader {
    pub fn new(response: hyper::Response<hyper::body::Incoming>) -> Self {
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event (comments/keep-alives skipped), or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: None,
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        event.data.push_str(v.trim_start());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = Some(v.trim_start().to_owned());
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("SSE frame in time")?;
            let frame = frame.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

/// The ordinal `i` encoded as an update body.
pub fn update(i: u64) -> String {
    format!(r#"{{"update_id":{i},"message":{{"text":"n{i}"}}}}"#)
}
