//! Graceful shutdown on a real loopback socket: with `axum::serve(..).with_graceful_shutdown`
//! and `Drain`, and with `telehook_axum::serve`, an update in flight when the signal comes is
//! answered and its handler finishes; the deadline bounds the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use telehook_axum::{Drain, RouterExt as _, ServeConfig, ShutdownReport};
use telehook_core::{Context, HandlerError, Update, Webhook};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

const BODY: &str = r#"{"update_id":3,"message":{"chat":{"id":1},"text":"hi"}}"#;
const BOUND: Duration = Duration::from_secs(20);

/// A webhook whose handler takes `delay`, and a flag set when it finished; `started` fires
/// when it begins.
fn slow(delay: Duration) -> (Webhook, Arc<AtomicBool>, oneshot::Receiver<()>) {
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = oneshot::channel();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let flag = finished.clone();
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(600))
        .build(move |_: Update, _: Context| {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let flag = flag.clone();
            async move {
                tokio::time::sleep(delay).await;
                flag.store(true, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    (webhook, finished, started)
}

/// Posts one update; the status line, or `None` if the connection closed without an answer.
async fn post(address: std::net::SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 512];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    answer
        .lines()
        .next()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
}

/// Serves with `axum::serve` and `Drain`; signals once the handler started.
async fn with_axum_serve(
    delay: Duration,
    deadline: Duration,
) -> (
    ShutdownReport,
    tokio::task::JoinHandle<Option<String>>,
    bool,
) {
    let (webhook, finished, started) = slow(delay);
    let app = Router::new().telegram_webhook("/telegram", webhook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(&webhook, deadline);
    let signal = drain.signal(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(signal);
        drain.run(serve).await.1
    });
    let answer = tokio::spawn(post(address));
    started.await.unwrap();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(BOUND, server)
        .await
        .expect("stopped")
        .unwrap();
    (report, answer, finished.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_with_drain_answers_the_update_in_flight() {
    let (report, answer, finished) =
        with_axum_serve(Duration::from_millis(300), Duration::from_secs(10)).await;
    assert_eq!(answer.await.unwrap().as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(finished, "the handler finished before the server returned");
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_with_drain_stops_at_the_deadline() {
    let (report, answer, finished) =
        with_axum_serve(Duration::from_secs(600), Duration::from_millis(200)).await;
    answer.abort();
    assert!(!finished);
    assert!(report.server_cut, "{report:?}");
    assert_eq!(report.runs_unfinished, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telehook_axum_serve_answers_the_update_in_flight() {
    let (webhook, finished, started) = slow(Duration::from_millis(300));
    let app = Router::new().telegram_webhook("/telegram", webhook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        telehook_axum::serve(
            listener,
            app,
            &webhook,
            async move {
                let _ = stopped.await;
            },
            &ServeConfig::default().shutdown_deadline(Duration::from_secs(10)),
        )
        .await
    });
    let answer = tokio::spawn(post(address));
    started.await.unwrap();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(BOUND, server)
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(answer.await.unwrap().as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(finished.load(Ordering::SeqCst));
    assert!(report.is_clean(), "{report:?}");
}
