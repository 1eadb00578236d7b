//! `kill -9` during a burst of POSTs loses no acknowledged update.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Http, TempDir};
use http::StatusCode;

struct Relay {
    child: Child,
    addr: String,
}

impl Relay {
    fn spawn(dir: &std::path::Path) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_telehook-relay"))
            .args(["--listen", &addr, "--rate-limit", "0", "--log", "warn"])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("relay binary starts");
        Self { child, addr }
    }

    async fn ready(&self, http: &Http) {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                assert_eq!(
                    http.get(&format!("http://{}/healthz", self.addr))
                        .await
                        .status,
                    StatusCode::OK
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("relay did not listen on {}", self.addr);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn post_raw(addr: &str, body: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "POST /burst HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let total = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("x-total-updates:")
            .map(|v| v.trim().to_owned())
    })?;
    total.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_update_survives_kill_9() {
    let dir = TempDir::new("kill9");
    let http = Http::new();
    let relay = Relay::spawn(dir.path());
    relay.ready(&http).await;

    // 8 writers post numbered updates until the relay dies under them.
    let addr = relay.addr.clone();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8u64 {
        let addr = addr.clone();
        writers.spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let body = format!(r#"{{"writer":{writer},"i":{i}}}"#);
                match post_raw(&addr, &body).await {
                    Some(seq) => acked.push((seq, body)),
                    None => break,
                }
            }
            acked
        });
    }
    // Let the burst run until enough updates were acknowledged, then kill -9 mid-burst.
    let mut relay = relay;
    tokio::time::sleep(Duration::from_millis(700)).await;
    relay.child.kill().expect("SIGKILL");
    relay.child.wait().unwrap();
    let mut acked = Vec::new();
    while let Some(done) = writers.join_next().await {
        acked.extend(done.unwrap());
    }
    assert!(
        acked.len() >= 50,
        "the burst was too short to prove anything: {} acks",
        acked.len()
    );

    let restarted = Relay::spawn(dir.path());
    restarted.ready(&http).await;
    let mut stored = Vec::new();
    let mut ts = 0;
    loop {
        let page = http
            .get(&format!("http://{}/burst?ts={ts}", restarted.addr))
            .await
            .json();
        let updates = page["updates"].as_array().unwrap().clone();
        if updates.is_empty() {
            break;
        }
        for (k, u) in updates.iter().enumerate() {
            stored.push((ts + k as u64 + 1, u.clone()));
        }
        ts = page["ts"].as_u64().unwrap();
    }
    // Every acknowledged update is stored at the seq it was acknowledged with.
    for (seq, body) in &acked {
        let expected: serde_json::Value = serde_json::from_str(body).unwrap();
        let got = stored.get((*seq - 1) as usize).map(|(_, b)| b);
        assert_eq!(
            got,
            Some(&expected),
            "acknowledged update #{seq} lost or moved"
        );
    }
    // And per writer, in the order it was sent.
    for writer in 0..8u64 {
        let order: Vec<u64> = stored
            .iter()
            .map(|(_, b)| b)
            .filter(|v| v["writer"] == writer)
            .map(|v| v["i"].as_u64().unwrap())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "writer {writer} out of order: {order:?}"
        );
    }
}
