//! Draining, `wait_idle` and the in-flight limit: runs that outlive their timeout, deliveries
//! arriving while a drain is under way.

use std::time::Duration;

use bytes::Bytes;
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};

use super::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_runs_that_outlived_their_timeout() {
    // The run ends when the test says so, not after a sleep a loaded machine could outlast.
    let (release, wait) = tokio::sync::watch::channel(false);
    let webhook = Webhook::builder()
        .timeout(Duration::from_millis(20))
        .build(move |_: Update, _: Context| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|go| *go).await;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let response = post(&webhook, r#"{"update_id":1,"message":{"chat":{"id":1}}}"#).await;
    assert_eq!(response.status(), 503);
    assert_eq!(webhook.in_flight(), 1);
    assert!(
        !webhook.drain(Duration::from_millis(10)).await,
        "drain returned before the run ended"
    );
    release.send_replace(true);
    assert!(webhook.drain(Duration::from_secs(5)).await);
    assert_eq!(webhook.in_flight(), 0);
}

#[tokio::test]
async fn max_in_flight_answers_503_and_the_update_runs_on_redelivery() {
    let (release, wait) = tokio::sync::watch::channel(false);
    let webhook = Webhook::builder()
        .timeout(Duration::from_millis(20))
        .max_in_flight(1)
        .build(move |_: Update, _: Context| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|go| *go).await;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    assert_eq!(post(&webhook, r#"{"update_id":1}"#).await.status(), 503); // timed out, still running
    let overloaded = post(&webhook, r#"{"update_id":2}"#).await;
    assert_eq!(overloaded.status(), 503);
    assert!(matches!(
        overloaded.error(),
        Some(telehook_core::WebhookError::Overloaded {
            update_id: 2,
            limit: 1
        })
    ));
    release.send_replace(true);
    assert!(webhook.wait_idle(Duration::from_secs(5)).await);
    assert_eq!(post(&webhook, r#"{"update_id":2}"#).await.status(), 200);
}

#[tokio::test]
async fn once_draining_a_new_delivery_gets_503_and_does_not_run() {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    let webhook = Webhook::builder()
        .secret_token("s3cr3t")
        .build(move |_: Update, _: Context| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, HandlerError>(()) }
        })
        .unwrap();
    assert_eq!(
        post_with_secret(&webhook, r#"{"update_id":1}"#)
            .await
            .status(),
        200
    );
    webhook.begin_drain();
    assert!(!webhook.is_ready());
    let response = post_with_secret(&webhook, r#"{"update_id":2}"#).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.rejection(),
        Some(&telehook_core::Rejection::Draining)
    );
    // The head's checks come first: a wrong secret is still 401.
    assert_eq!(post(&webhook, r#"{"update_id":3}"#).await.status(), 401);
    assert!(webhook.drain(Duration::from_secs(5)).await);
    assert_eq!(
        post_with_secret(&webhook, r#"{"update_id":4}"#)
            .await
            .status(),
        503
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
}

fn post_with_secret(
    webhook: &Webhook,
    body: &str,
) -> impl std::future::Future<Output = telehook_core::WebhookResponse> {
    webhook.handle_bytes(
        RequestHead::new("POST", |name| {
            (name == "x-telegram-bot-api-secret-token").then_some(b"s3cr3t".as_slice())
        }),
        Bytes::from(body.to_owned()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_waits_for_runs_and_lets_new_deliveries_run() {
    let (release, gate) = tokio::sync::watch::channel(false);
    let webhook = Webhook::builder()
        .timeout(Duration::from_millis(20))
        .max_in_flight(2)
        .build(move |update: Update, _: Context| {
            let mut gate = gate.clone();
            async move {
                // Update 1 waits for the gate; the others finish at once.
                if update.update_id() == 1 {
                    let _ = gate.wait_for(|open| *open).await;
                }
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    assert!(
        webhook.wait_idle(Duration::from_secs(5)).await,
        "idle at start"
    );
    assert_eq!(post(&webhook, r#"{"update_id":1}"#).await.status(), 503); // still running
    assert!(!webhook.wait_idle(Duration::from_millis(10)).await);
    let waiter = {
        let webhook = webhook.clone();
        tokio::spawn(async move { webhook.wait_idle(Duration::from_secs(5)).await })
    };
    tokio::task::yield_now().await;
    // Unlike `drain`, a waiting `wait_idle` leaves room for new deliveries.
    assert_eq!(post(&webhook, r#"{"update_id":2}"#).await.status(), 200);
    assert_eq!(post(&webhook, r#"{"update_id":3}"#).await.status(), 200);
    release.send_replace(true);
    assert!(waiter.await.unwrap());
    assert_eq!(webhook.in_flight(), 0);
}

/// A body whose first chunk is sent at once and whose rest waits for `rest`; `reading` fires
/// when the dispatcher first asks for a chunk (so it passed the checks made before the body).
fn held_body(
    first: &'static str,
) -> (
    impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<&'static str>,
) {
    let (reading_tx, reading) = tokio::sync::oneshot::channel();
    let (rest_tx, rest) = tokio::sync::oneshot::channel::<&'static str>();
    let state = (0_u8, Some(reading_tx), Some(rest));
    let stream = futures_util::stream::unfold(state, move |(step, reading_tx, rest)| async move {
        match step {
            0 => {
                if let Some(tx) = reading_tx {
                    let _ = tx.send(());
                }
                let frame = http_body::Frame::data(Bytes::from_static(first.as_bytes()));
                Some((Ok(frame), (1, None, rest)))
            }
            1 => {
                let tail = rest?.await.ok()?;
                let frame = http_body::Frame::data(Bytes::from_static(tail.as_bytes()));
                Some((Ok(frame), (2, None, None)))
            }
            _ => None,
        }
    });
    (http_body_util::StreamBody::new(stream), reading, rest_tx)
}

#[tokio::test]
async fn a_delivery_whose_body_ends_after_drain_began_is_refused_and_never_runs() {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    let webhook = Webhook::builder()
        .build(move |_: Update, _: Context| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, HandlerError>(()) }
        })
        .unwrap();
    let (body, reading, rest) = held_body(r#"{"update_id":"#);
    let mut response = std::pin::pin!(webhook.handle(RequestHead::new("POST", |_| None), body));
    tokio::select! {
        _ = &mut response => panic!("answered before its body arrived"),
        _ = reading => {}
    }
    // No run in flight: the drain ends at once, and no run may start after it.
    assert!(webhook.drain(Duration::from_secs(5)).await);
    rest.send("1}").unwrap();
    let response = response.await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.rejection(),
        Some(&telehook_core::Rejection::Draining)
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(webhook.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn at_the_in_flight_limit_a_delivery_during_a_drain_gets_draining_not_overloaded() {
    let (release, wait) = tokio::sync::watch::channel(false);
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(1))
        .max_in_flight(1)
        .build(move |_: Update, _: Context| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|go| *go).await;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    // Update 1 outlives its timeout and holds the only permit.
    assert_eq!(post(&webhook, r#"{"update_id":1}"#).await.status(), 503);
    assert_eq!(webhook.in_flight(), 1);
    let (body, reading, rest) = held_body(r#"{"update_id":"#);
    let mut response = std::pin::pin!(webhook.handle(RequestHead::new("POST", |_| None), body));
    tokio::select! {
        _ = &mut response => panic!("answered before its body arrived"),
        _ = reading => {}
    }
    webhook.begin_drain();
    rest.send("2}").unwrap();
    let response = response.await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.rejection(),
        Some(&telehook_core::Rejection::Draining)
    );
    release.send_replace(true);
    assert!(webhook.drain(Duration::from_secs(5)).await);
}
