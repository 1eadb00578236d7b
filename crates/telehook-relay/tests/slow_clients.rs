//! Slow and stalled clients against a real relay on loopback: header-read (and idle
//! keep-alive) timeout, body-read time limit (408), and the connection limit (503, JSON).

mod common;

use std::time::Duration;

use common::{TestRelay, test_config};
use telehook_relay::RelayConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for "the relay closed it": far above the configured timeouts, far below forever.
const BOUND: Duration = Duration::from_secs(15);

fn strict() -> RelayConfig {
    RelayConfig {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..test_config()
    }
}

/// Reads until the relay closes the connection; returns what it sent. Panics after [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the relay kept the connection open: {}",
        String::from_utf8_lossy(&seen)
    );
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let relay = TestRelay::sqlite(strict()).await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    read_until_closed(&mut stream).await;
}

#[tokio::test]
async fn a_slowloris_trickling_headers_is_closed() {
    let relay = TestRelay::sqlite(strict()).await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    stream
        .write_all(b"GET /c HTTP/1.1\r\nhost: relay\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    // Writing fails once the relay has closed (reset) the connection.
    assert!(
        tokio::time::timeout(BOUND, trickle).await.is_ok(),
        "a client trickling header lines kept its connection"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_after_its_idle_time() {
    let relay = TestRelay::sqlite(strict()).await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n")
        .await
        .unwrap();
    let seen = read_until_closed(&mut stream).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_stores_nothing() {
    let relay = TestRelay::sqlite(strict()).await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    stream
        .write_all(b"POST /c HTTP/1.1\r\nhost: relay\r\ncontent-length: 100\r\n\r\n{\"update_id\":")
        .await
        .unwrap();
    let seen = read_until_closed(&mut stream).await;
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen}");
    let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (json["ok"].clone(), json["error_code"].clone()),
        (false.into(), 408.into())
    );
    let http = common::Http::new();
    assert_eq!(http.get(&relay.url("/c")).await.json()["ts"], 0);
}

#[tokio::test]
async fn connections_over_the_limit_get_a_json_503_and_room_comes_back() {
    let relay = TestRelay::sqlite(RelayConfig {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..test_config()
    })
    .await;
    let first = TcpStream::connect(relay.addr).await.unwrap();
    let second = TcpStream::connect(relay.addr).await.unwrap();
    // The relay accepts in order; once a third is refused, the first two hold both places.
    let mut third = TcpStream::connect(relay.addr).await.unwrap();
    let seen = read_until_closed(&mut third).await;
    assert!(seen.starts_with("HTTP/1.1 503"), "{seen}");
    assert!(
        seen.to_ascii_lowercase().contains("retry-after: 1"),
        "{seen}"
    );
    let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["error_code"], 503);
    drop((first, second));
    let mut served = false;
    for _ in 0..200 {
        let mut stream = TcpStream::connect(relay.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: relay\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        if read_until_closed(&mut stream)
            .await
            .starts_with("HTTP/1.1 200")
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "closed connections give their place back");
}
