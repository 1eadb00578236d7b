//! An invocation deadline from the platform (`InvocationDeadline`) and the extensions the
//! handler sees.

use std::time::Duration;

use bytes::Bytes;
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};

use super::post;

/// What a platform adapter attaches to a request (Lambda's request id, say).
#[derive(Clone, Debug, PartialEq)]
struct PlatformRequestId(&'static str);

#[tokio::test(start_paused = true)]
async fn an_invocation_deadline_shortens_the_timeout_and_the_handler_sees_it() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen_in_handler = seen.clone();
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(60))
        .build(move |_: Update, ctx: Context| {
            let seen = seen_in_handler.clone();
            async move {
                *seen.lock().unwrap() = Some((
                    ctx.extension::<PlatformRequestId>().cloned(),
                    ctx.deadline(),
                ));
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    let mut extensions = http::Extensions::new();
    extensions.insert(telehook_core::InvocationDeadline(deadline));
    extensions.insert(PlatformRequestId("req-1"));
    let response = webhook
        .handle_with_extensions(
            RequestHead::new("POST", |_| None),
            extensions,
            http_body_util::Full::new(Bytes::from_static(br#"{"update_id":1}"#)),
        )
        .await;
    // The handler needs 10 s and the configured timeout is 60 s: only the deadline answers.
    assert_eq!(response.status(), 503);
    let (request_id, handler_deadline) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(request_id, Some(PlatformRequestId("req-1")));
    assert!(handler_deadline.is_some_and(|d| d <= deadline));
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_configured_timeout_applies() {
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(60))
        .build(|_: Update, ctx: Context| async move {
            assert_eq!(ctx.extension::<PlatformRequestId>(), None);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    let response = post(&webhook, r#"{"update_id":1}"#).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_passed_answers_503_at_once() {
    let webhook = Webhook::builder()
        .build(|_: Update, _: Context| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    let mut extensions = http::Extensions::new();
    extensions.insert(telehook_core::InvocationDeadline(
        std::time::Instant::now() - Duration::from_millis(1),
    ));
    let response = webhook
        .handle_with_extensions(
            RequestHead::new("POST", |_| None),
            extensions,
            http_body_util::Full::new(Bytes::from_static(br#"{"update_id":2}"#)),
        )
        .await;
    assert_eq!(response.status(), 503);
}
