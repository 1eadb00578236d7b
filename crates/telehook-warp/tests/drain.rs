//! Graceful shutdown on a real loopback socket with warp's own graceful server and `Drain`:
//! an update in flight when the signal comes is answered and its handler finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use telehook_core::{Context, HandlerError, Update, Webhook};
use telehook_warp::Drain;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use warp::Filter as _;

const BODY: &str = r#"{"update_id":3,"message":{"chat":{"id":1},"text":"hi"}}"#;
const BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warp_graceful_with_drain_answers_the_update_in_flight() {
    let finished = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = oneshot::channel();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let flag = finished.clone();
    let webhook = Webhook::builder()
        .build(move |_: Update, _: Context| {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let flag = flag.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                flag.store(true, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let routes = warp::path!("telegram").and(telehook_warp::webhook(webhook.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain::new(&webhook, Duration::from_secs(10));
    let signal = drain.signal(async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        let serve = warp::serve(routes)
            .incoming(listener)
            .graceful(signal)
            .run();
        drain.run(serve).await.1
    });
    let answer = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "POST /telegram HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0; 512];
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    started.await.unwrap();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(BOUND, server)
        .await
        .expect("stopped")
        .unwrap();
    let answer = answer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(finished.load(Ordering::SeqCst));
    assert!(report.is_clean(), "{report:?}");
}
