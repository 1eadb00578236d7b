//! `serve_with_config` on a real loopback socket: slow and stalled clients are cut off, and the
//! connection limit holds new connections back until one closes.

use std::time::Duration;

use telehook_core::{Context, HandlerError, Update, Webhook};
use telehook_hyper::ServeConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const BODY: &str = r#"{"update_id":3,"message":{"chat":{"id":1},"text":"hi"}}"#;
/// A bound for each wait, so a broken server fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(20);

async fn start(config: ServeConfig) -> std::net::SocketAddr {
    let webhook = Webhook::builder()
        .body_read_timeout(Duration::from_millis(300))
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        telehook_hyper::serve_with_config(
            listener,
            telehook_hyper::service(webhook.clone()),
            &webhook,
            std::future::pending(),
            &config,
        )
        .await
    });
    address
}

fn request(body: &str) -> String {
    format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        BODY.len()
    )
}

/// Reads until the server closes the connection (bounded); what it sent before.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slowloris_head_and_an_idle_connection_are_closed() {
    let address =
        start(ServeConfig::default().header_read_timeout(Duration::from_millis(200))).await;
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"POST /telegram HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(address).await.unwrap();
    read_to_close(&mut slow).await;
    read_to_close(&mut idle).await;
}

#[tokio::test]
async fn a_stalled_body_gets_408() {
    let address = start(ServeConfig::default()).await;
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(request(&BODY[..10]).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0; 512];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn the_connection_limit_holds_a_new_connection_until_one_closes() {
    let address = start(ServeConfig::default().max_connections(1)).await;
    let holder = TcpStream::connect(address).await.unwrap();
    // Let the server accept the holder first.
    let mut probe = TcpStream::connect(address).await.unwrap();
    probe.write_all(request(BODY).as_bytes()).await.unwrap();
    let mut buf = vec![0; 512];
    // Not answered while the holder keeps the only slot (a short look: a slow machine can only
    // make this pass, never fail).
    let early = tokio::time::timeout(Duration::from_millis(300), probe.read(&mut buf)).await;
    assert!(early.is_err(), "answered beyond the limit");
    drop(holder);
    let n = tokio::time::timeout(BOUND, probe.read(&mut buf))
        .await
        .expect("answered once the slot is free")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn expect_100_continue_without_the_secret_gets_401_not_100() {
    let webhook = Webhook::builder()
        .secret_token("s3cr3t_T0ken-for-tests")
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(telehook_hyper::serve(
        listener,
        webhook,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nX-Telegram-Bot-Api-Secret-Token: wrong\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 512];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}
