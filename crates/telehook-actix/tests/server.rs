//! `telehook_actix::server` on a real loopback socket: `Expect: 100-continue` is answered only
//! after the secret passed, a stalled body gets `408`, and a refused request whose body was
//! left unread is closed after its answer.

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

/// A head with a chunked body, and part of the first chunk: then the client stalls.
fn chunked_partial(secret: Option<&str>, expect: bool) -> String {
    let secret = secret
        .map(|secret| format!("X-Telegram-Bot-Api-Secret-Token: {secret}\r\n"))
        .unwrap_or_default();
    let expect = if expect {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    format!(
        "POST /telegram HTTP/1.1\r\nHost: x\r\n{secret}{expect}Transfer-Encoding: chunked\r\n\r\n\
         5\r\n{{\"upd"
    )
}

/// Sends `request` and stalls (never closes its side); returns everything the server sent
/// until it closed the connection. Bounded: a server that keeps the connection fails the test.
async fn answer_then_close(address: std::net::SocketAddr, request: String) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = vec![0; 1024];
    loop {
        let read = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server kept the connection after answering: {}",
                    String::from_utf8_lossy(&answer)
                )
            });
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_refused_with_close(answer: &str, status: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

/// A client without the secret cannot hold a connection: actix-http keeps a connection whose
/// chunked body was left unread to read the rest of it, forever, unless the answer still holds
/// the body when it is sent.
#[actix_web::test]
async fn a_refused_chunked_request_is_closed_after_its_401() {
    let address = start(&webhook());
    let answer = answer_then_close(address, chunked_partial(None, false)).await;
    assert_refused_with_close(&answer, "401");
}

#[actix_web::test]
async fn a_refused_chunked_request_with_expect_is_closed_after_its_401() {
    let address = start(&webhook());
    let answer = answer_then_close(address, chunked_partial(Some("wrong"), true)).await;
    assert_refused_with_close(&answer, "401");
}

#[actix_web::test]
async fn a_wrong_method_with_a_chunked_body_is_closed_after_its_405() {
    let address = start(&webhook());
    let request = chunked_partial(Some(SECRET), false).replacen("POST", "PUT", 1);
    let answer = answer_then_close(address, request).await;
    assert_refused_with_close(&answer, "405");
}

#[actix_web::test]
async fn a_stalled_chunked_body_is_closed_after_its_408() {
    let address = start(&webhook());
    let answer = answer_then_close(address, chunked_partial(Some(SECRET), false)).await;
    assert_refused_with_close(&answer, "408");
}

/// `handle` (through `webhook_service`) in actix-web's own `HttpServer` closes too.
#[actix_web::test]
async fn plain_http_server_closes_a_refused_chunked_request() {
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
    let answer = answer_then_close(address, chunked_partial(None, false)).await;
    assert_refused_with_close(&answer, "401");
}

/// Many stalled clients without the secret, more than `max_connections`: each is refused and
/// closed, and a valid update sent after them is still answered.
#[actix_web::test]
async fn a_valid_update_is_answered_while_refused_clients_stall() {
    const STALLED: usize = 50;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let webhook = webhook();
    let for_app = webhook.clone();
    let server = telehook_actix::server(
        move || {
            App::new().service(telehook_actix::webhook_service(
                "/telegram",
                for_app.clone(),
            ))
        },
        &webhook,
        "/telegram",
        listener,
        &ServerConfig::default().workers(1).max_connections(16),
    )
    .unwrap();
    actix_web::rt::spawn(server);
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(chunked_partial(None, false).as_bytes())
            .await
            .unwrap();
        stalled.push(stream);
    }
    let mut valid = TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /telegram HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    valid.write_all(request.as_bytes()).await.unwrap();
    let answer = read_some(&mut valid).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Every stalled client got its refusal and was closed.
    for mut stream in stalled {
        let mut answer = Vec::new();
        let mut buf = vec![0; 1024];
        loop {
            match tokio::time::timeout(BOUND, stream.read(&mut buf))
                .await
                .expect("closed")
            {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        assert_refused_with_close(&String::from_utf8_lossy(&answer), "401");
    }
}
