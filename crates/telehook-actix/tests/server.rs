//! `telehook_actix::server` on a real loopback socket: `Expect: 100-continue` is answered only
//! after the secret passed, and a stalled body gets `408`.

use std::time::Duration;

use actix_web::{App, HttpServer};
use telehook_actix::ServerConfig;
use telehook_core::{Context, HandlerError, Update, Webhook};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SECRET: &str = "s3cr3t_T0ken-for-tests";
const BODY: &str = r#"{"update_id":3,"message":{"chat":{"id":1},"text":"hi"}}"#;
/// A bound for each read, so a broken server fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(20);

fn webhook() -> Webhook {
    Webhook::builder()
        .secret_token(SECRET)
        .body_read_timeout(Duration::from_millis(300))
        .build(|_: Update, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap()
}

fn start(webhook: &Webhook) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let for_app = webhook.clone();
    let server = telehook_actix::server(
        move || {
            App::new().service(telehook_actix::webhook_service(
                "/telegram",
                for_app.clone(),
            ))
        },
        webhook,
        "/telegram",
        listener,
        &ServerConfig::default().workers(1),
    )
    .unwrap();
    actix_web::rt::spawn(server);
    address
}

/// Sends a head with `Expect: 100-continue` and returns what the server says before any body.
async fn expect_continue(address: std::net::SocketAddr, secret: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {secret}\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let first = read_some(&mut stream).await;
    (stream, first)
}

async fn read_some(stream: &mut TcpStream) -> String {
    let mut buf = vec![0; 1024];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[actix_web::test]
async fn a_wrong_secret_gets_401_instead_of_100_continue() {
    let address = start(&webhook());
    let (_stream, first) = expect_continue(address, "wrong-secret").await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    assert!(!first.contains("100 Continue"), "{first}");
}

#[actix_web::test]
async fn the_right_secret_gets_100_continue_and_then_the_answer() {
    let address = start(&webhook());
    let (mut stream, first) = expect_continue(address, SECRET).await;
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    stream.write_all(BODY.as_bytes()).await.unwrap();
    let mut answer = first;
    while !answer.contains("HTTP/1.1 200") {
        let more = read_some(&mut stream).await;
        assert!(!more.is_empty(), "closed before the answer: {answer}");
        answer.push_str(&more);
    }
}

/// Why `server` exists: actix-web's `HttpServer` answers `100 Continue` before any route (and
/// so the secret check) runs, and has no hook to change that.
#[actix_web::test]
async fn plain_http_server_continues_before_the_secret_is_checked() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let webhook = webhook();
    let server = HttpServer::new(move || {
        App::new().service(telehook_actix::webhook_service(
            "/telegram",
            webhook.clone(),
        ))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    let (_stream, first) = expect_continue(address, "wrong-secret").await;
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
}

#[actix_web::test]
async fn a_stalled_body_gets_408() {
    let address = start(&webhook());
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&BODY.as_bytes()[..10]).await.unwrap();
    let answer = read_some(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
