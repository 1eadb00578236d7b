//! Dispatcher behaviour that is not about HTTP: configuration checks, secrets in `Debug`,
//! draining, handler update types.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use telehook_core::{
    BuildError, Context, HandlerError, RequestHead, SequenceKey, Update, UpdateType, Webhook,
};

fn ok_handler(_: Update, _: Context) -> std::future::Ready<Result<(), HandlerError>> {
    std::future::ready(Ok(()))
}

fn post(
    webhook: &Webhook,
    body: &str,
) -> impl std::future::Future<Output = telehook_core::WebhookResponse> {
    webhook.handle_bytes(
        RequestHead::new("POST", |_| None),
        Bytes::from(body.to_owned()),
    )
}

#[test]
fn secret_tokens_outside_telegrams_rule_are_build_errors() {
    let long = "a".repeat(257);
    for bad in ["", "has space", "ünïcode", "semi;colon", long.as_str()] {
        let err = Webhook::builder()
            .secret_token(bad)
            .build(ok_handler)
            .unwrap_err();
        assert!(
            matches!(err, BuildError::InvalidSecretToken(_)),
            "{bad:?}: {err}"
        );
        // What `main` returning the error prints (`Debug`) names the set, the length and
        // the rule's source, not only "outside the allowed set".
        let debug = format!("{err:?}");
        for rule in [
            "A-Z a-z 0-9 _ -",
            "1-256",
            "core.telegram.org/bots/api#setwebhook",
        ] {
            assert!(debug.contains(rule), "{bad:?}: {debug}");
        }
        if !bad.is_empty() {
            assert!(
                !err.to_string().contains(bad),
                "the error repeats the secret: {err}"
            );
        }
    }
    for good in ["a", "A-z_0-9", &"b".repeat(256)] {
        Webhook::builder()
            .secret_token(good)
            .build(ok_handler)
            .unwrap();
    }
}

#[test]
fn zero_limits_are_build_errors() {
    let zero_timeout = Webhook::builder()
        .timeout(Duration::ZERO)
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(zero_timeout, BuildError::Zero("timeout"));
    let zero_body = Webhook::builder()
        .max_body_bytes(0)
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(zero_body, BuildError::Zero("max_body_bytes"));
    let zero_attempts = Webhook::builder()
        .error_policy(telehook_core::ErrorPolicy::BoundedRetry { max_attempts: 0 })
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(zero_attempts, BuildError::Zero("error_policy max_attempts"));
}

/// A handler that fails every update and only works under `Acknowledge`.
struct NeedsAcknowledge;

impl telehook_core::UpdateHandler for NeedsAcknowledge {
    async fn handle(&self, _: Update, _: Context) -> Result<(), HandlerError> {
        Err("always fails".into())
    }

    fn required_error_policy(&self) -> Option<telehook_core::ErrorPolicy> {
        Some(telehook_core::ErrorPolicy::Acknowledge)
    }
}

#[tokio::test]
async fn a_handlers_required_error_policy_applies_when_none_is_set() {
    let webhook = Webhook::builder().build(NeedsAcknowledge).unwrap();
    // Under the default (bounded retry) the first failure would be a 500.
    let response = post(&webhook, r#"{"update_id":1,"message":{"chat":{"id":1}}}"#).await;
    assert_eq!(response.status(), 200, "acknowledged on the first failure");
    // Setting the same policy explicitly is fine.
    let same = Webhook::builder()
        .error_policy(telehook_core::ErrorPolicy::Acknowledge)
        .build(NeedsAcknowledge);
    assert!(same.is_ok());
    // The erased handler (as polling and the relay hold it) says the same.
    let erased = telehook_core::ErasedHandler::new(NeedsAcknowledge);
    assert_eq!(
        erased.required_error_policy(),
        Some(telehook_core::ErrorPolicy::Acknowledge)
    );
    assert_eq!(
        telehook_core::ErasedHandler::new(ok_handler).required_error_policy(),
        None
    );
}

#[test]
fn another_error_policy_than_the_handler_requires_is_a_build_error() {
    use telehook_core::ErrorPolicy;
    let err = Webhook::builder()
        .error_policy(ErrorPolicy::Retry)
        .build(NeedsAcknowledge)
        .unwrap_err();
    assert_eq!(
        err,
        BuildError::ErrorPolicyConflict {
            configured: ErrorPolicy::Retry,
            required: ErrorPolicy::Acknowledge,
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("Retry") && text.contains("Acknowledge"),
        "{text}"
    );
    // Through an ErasedHandler too.
    let err = Webhook::builder()
        .error_policy(ErrorPolicy::default())
        .build(telehook_core::ErasedHandler::new(NeedsAcknowledge))
        .unwrap_err();
    assert!(matches!(err, BuildError::ErrorPolicyConflict { .. }));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let builder = Webhook::builder().secret_token("TopSecretValue_123");
    assert!(!format!("{builder:?}").contains("TopSecretValue_123"));
    let webhook = builder.build(ok_handler).unwrap();
    let debug = format!("{webhook:?}");
    assert!(!debug.contains("TopSecretValue_123"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

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

#[derive(Deserialize)]
struct MyUpdate {
    update_id: u64,
    message: Option<MyMessage>,
}

#[derive(Deserialize)]
struct MyMessage {
    text: Option<String>,
}

impl UpdateType for MyUpdate {
    fn update_id(&self) -> u64 {
        self.update_id
    }
}

#[tokio::test]
async fn handlers_can_take_their_own_update_type() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let webhook = Webhook::builder()
        .build(move |update: MyUpdate, _: Context| {
            let tx = tx.clone();
            async move {
                tx.send((update.update_id, update.message.and_then(|m| m.text)))
                    .await?;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let response = post(
        &webhook,
        r#"{"update_id":3,"message":{"text":"hey","chat":{"id":1}}}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(rx.recv().await, Some((3, Some("hey".to_owned()))));
}

#[tokio::test]
async fn an_update_that_does_not_fit_the_handlers_type_is_a_handler_failure() {
    #[derive(Deserialize)]
    struct Strict {
        update_id: u64,
        #[allow(dead_code)]
        message: StrictMessage,
    }
    #[derive(Deserialize)]
    struct StrictMessage {
        #[allow(dead_code)]
        text: String,
    }
    impl UpdateType for Strict {
        fn update_id(&self) -> u64 {
            self.update_id
        }
    }
    let webhook = Webhook::builder()
        .build(|_: Strict, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    let response = post(&webhook, r#"{"update_id":4,"poll":{"id":"p"}}"#).await;
    assert_eq!(response.status(), 500);
    let error = response
        .error()
        .expect("an error for the error channel")
        .to_string();
    assert!(error.contains("does not fit the handler's type"), "{error}");
}

#[tokio::test]
async fn handlers_can_take_serde_json_values() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let webhook = Webhook::builder()
        .build(move |update: serde_json::Value, _: Context| {
            let tx = tx.clone();
            async move {
                tx.send(update.sequence_key()).await?;
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    let response = post(
        &webhook,
        r#"{"update_id":5,"callback_query":{"id":"x","from":{"id":77}}}"#,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(rx.recv().await, Some(Some(SequenceKey::User(77))));
}

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

#[test]
fn a_zero_body_read_timeout_is_a_build_error() {
    let err = Webhook::builder()
        .body_read_timeout(Duration::ZERO)
        .build(ok_handler)
        .unwrap_err();
    assert_eq!(err, BuildError::Zero("body_read_timeout"));
}

#[tokio::test]
async fn every_refusal_carries_a_typed_reason_matching_its_answer() {
    use telehook_core::Rejection;
    let webhook = Webhook::builder()
        .secret_token("right_token")
        .max_body_bytes(64)
        .build(ok_handler)
        .unwrap();
    let send = |method: &'static str,
                secret: Option<&'static str>,
                length: Option<&'static str>,
                body: &'static str| {
        webhook.handle_bytes(
            RequestHead::new(method, move |name| match name {
                "x-telegram-bot-api-secret-token" => secret.map(str::as_bytes),
                "content-length" => length.map(str::as_bytes),
                _ => None,
            }),
            Bytes::from_static(body.as_bytes()),
        )
    };
    let long = "x".repeat(100).leak();
    let cases = [
        (
            send("GET", Some("right_token"), None, "{}").await,
            Rejection::MethodNotAllowed,
        ),
        (
            send("POST", Some("wrong"), None, "{}").await,
            Rejection::WrongSecretToken,
        ),
        (
            send("POST", Some("right_token"), Some("12x"), "{}").await,
            Rejection::InvalidContentLength,
        ),
        (
            send("POST", Some("right_token"), None, long).await,
            Rejection::PayloadTooLarge { limit: 64 },
        ),
    ];
    for (response, expected) in cases {
        assert_eq!(response.rejection(), Some(&expected));
        assert_eq!(response.status(), expected.status());
        assert_eq!(response.body(), expected.body_text().as_bytes());
        assert!(response.error().is_none());
    }
    let response = send("POST", Some("right_token"), None, r#"{"update_id":0}"#).await;
    assert!(matches!(
        response.rejection(),
        Some(Rejection::NotAnUpdate(_))
    ));
    assert_eq!(response.status(), 400);
    let ok = send("POST", Some("right_token"), None, r#"{"update_id":5}"#).await;
    assert_eq!((ok.status(), ok.rejection()), (http::StatusCode::OK, None));
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

/// What a typed handler saw: `update_id` and text, per run.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(u64, Option<String>)>>>;

/// A typed handler that counts its runs and reports what it saw.
fn counting_typed_webhook() -> (Webhook, Seen) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let webhook = Webhook::builder()
        .build(move |update: MyUpdate, _: Context| {
            let log = std::sync::Arc::clone(&log);
            async move {
                let text = update.message.and_then(|m| m.text);
                log.lock().unwrap().push((update.update_id, text));
                Ok::<_, HandlerError>(())
            }
        })
        .unwrap();
    (webhook, seen)
}

#[tokio::test]
async fn a_typed_handler_gets_400_for_bodies_that_are_not_updates() {
    let (webhook, seen) = counting_typed_webhook();
    for body in [
        "not json",
        r#"[1,{"text":"x"}]"#,
        r#"{"update_id":0,"message":{"text":"x"}}"#,
        r#"{"message":{"text":"x"}}"#,
        r#"{"update_id":-1}"#,
        r#"{"update_id":1} trailing"#,
        r#"{"update_id":1,"update_id":2}"#,
    ] {
        let response = post(&webhook, body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert!(response.rejection().is_some(), "{body}");
    }
    // Invalid UTF-8 in a field the type ignores: JSON text is UTF-8, so not an update.
    let response = webhook
        .handle_bytes(
            RequestHead::new("POST", |_| None),
            Bytes::from_static(b"{\"update_id\":3,\"poll\":{\"id\":\"\xff\"}}"),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(seen.lock().unwrap().is_empty(), "the handler never ran");
}

#[tokio::test]
async fn a_typed_handler_runs_on_bodies_in_any_key_order_once_per_update() {
    let (webhook, seen) = counting_typed_webhook();
    // Keys in another order than Telegram's, whitespace, an escaped key: one parse still
    // gives the value, and the validator the facts.
    let bodies = [
        r#"{"message":{"text":"a"},"update_id":7}"#,
        " {\n \"update_id\" : 8 , \"message\" : {\"text\":\"b\"} } ",
        r#"{"update_id":9,"mess\u0061ge":{"text":"c"}}"#,
    ];
    for body in bodies {
        assert_eq!(post(&webhook, body).await.status(), 200, "{body}");
    }
    // A redelivery (the same bytes) is answered by the guard without a second run; the same
    // id with another body is another update (Telegram reuses ids after a quiet week).
    assert_eq!(post(&webhook, bodies[0]).await.status(), 200);
    let reused = r#"{"update_id":7,"message":{"text":"new"}}"#;
    assert_eq!(post(&webhook, reused).await.status(), 200);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (7, Some("a".to_owned())),
            (8, Some("b".to_owned())),
            (9, Some("c".to_owned())),
            (7, Some("new".to_owned())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_typed_handlers_timeout_event_names_the_kind_and_the_chat() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&events);
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(1))
        .on_timeout(telehook_core::OnTimeout::custom(move |event| {
            log.lock()
                .unwrap()
                .push((event.update_id, event.kind.clone(), event.chat_id));
            telehook_core::TimeoutAction::Throw
        }))
        .build(|_: MyUpdate, _: Context| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    let response = post(
        &webhook,
        r#"{"update_id":11,"message":{"text":"x","chat":{"id":-42}}}"#,
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        *events.lock().unwrap(),
        [(11, Some("message".to_owned()), Some(-42))]
    );
}

/// Bodies a typed handler once took with 200 while the validator refuses them (C's differential
/// fuzzer, issue 14): the one parse must be as strict as `Update::from_bytes`.
#[tokio::test]
async fn a_typed_parse_refuses_what_the_validator_refuses() {
    let (webhook, seen) = counting_typed_webhook();
    let float_edge = r#"{"update_id":1,"message":{"text":"a","location":{"latitude":1.7976931348623158e308,"longitude":0}}}"#;
    let long_integer = format!(
        r#"{{"update_id":2,"message":{{"text":"a","n":{}}}}}"#,
        "9".repeat(310)
    );
    for body in [float_edge, long_integer.as_str()] {
        assert_eq!(
            post(&webhook, body).await.status(),
            Update::from_bytes(body.to_owned()).map_or(400, |_| 200),
            "{body}"
        );
    }
    let values = Webhook::builder()
        .build(|_: serde_json::Value, _: Context| async { Ok::<_, HandlerError>(()) })
        .unwrap();
    for body in [
        r#"{"update_id":5,"message":{"text":"a"},"message":{"text":"b"}}"#,
        r#"{"update_id":6,"messcge":{"text":"a"},"message":{"text":"b"}}"#,
        r#"{"update_id":7,"update_id":7}"#,
        r#"{"$serde_json::private::RawValue":"1","update_id":8}"#,
    ] {
        assert!(Update::from_bytes(body.to_owned()).is_err(), "{body}");
        assert_eq!(post(&values, body).await.status(), 400, "{body}");
        assert_eq!(post(&webhook, body).await.status(), 400, "{body}");
    }
    assert!(seen.lock().unwrap().is_empty(), "the handler never ran");
}

/// A handler like telehook-queue's `EnqueueHandler`: its update must not be acknowledged
/// before its run ends. It waits `run_for` (paused time in the tests), then succeeds.
struct AckAfterRun {
    run_for: Duration,
}

impl telehook_core::UpdateHandler for AckAfterRun {
    async fn handle(&self, _: Update, _: Context) -> Result<(), HandlerError> {
        tokio::time::sleep(self.run_for).await;
        Ok(())
    }

    fn acknowledge_only_after_run(&self) -> bool {
        true
    }
}

#[test]
fn on_timeout_return_is_a_build_error_for_a_handler_acknowledged_only_after_its_run() {
    let handler = || AckAfterRun {
        run_for: Duration::ZERO,
    };
    let err = Webhook::builder()
        .on_timeout(telehook_core::OnTimeout::Return)
        .build(handler())
        .unwrap_err();
    assert_eq!(err, BuildError::AcknowledgeBeforeRunEnds);
    assert!(err.to_string().contains("OnTimeout::Throw"), "{err}");
    // Forwarded through the erased form too.
    let erased = telehook_core::ErasedHandler::new(handler());
    assert!(erased.acknowledge_only_after_run());
    assert_eq!(
        Webhook::builder()
            .on_timeout(telehook_core::OnTimeout::Return)
            .build(erased)
            .unwrap_err(),
        BuildError::AcknowledgeBeforeRunEnds
    );
    // Throw (the default) and a custom callback build.
    assert!(Webhook::builder().build(handler()).is_ok());
    assert!(
        Webhook::builder()
            .on_timeout(telehook_core::OnTimeout::custom(|_| {
                telehook_core::TimeoutAction::Return
            }))
            .build(handler())
            .is_ok()
    );
    // Other handlers may still return early.
    assert!(
        Webhook::builder()
            .on_timeout(telehook_core::OnTimeout::Return)
            .build(ok_handler)
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_return_counts_as_throw_for_a_handler_acknowledged_only_after_its_run() {
    let webhook = Webhook::builder()
        .timeout(Duration::from_secs(1))
        .on_timeout(telehook_core::OnTimeout::custom(|_| {
            telehook_core::TimeoutAction::Return
        }))
        .build(AckAfterRun {
            run_for: Duration::from_secs(5),
        })
        .unwrap();
    let response = post(&webhook, r#"{"update_id":1}"#).await;
    assert_eq!(response.status(), 503);
    assert!(matches!(
        response.error(),
        Some(telehook_core::WebhookError::Timeout { update_id: 1, .. })
    ));
    // The redelivery waiting for the same run is not acknowledged early either.
    let response = post(&webhook, r#"{"update_id":1}"#).await;
    assert_eq!(response.status(), 503);
    assert!(webhook.drain(Duration::from_secs(10)).await);
}

#[test]
fn max_in_flight_above_its_limit_is_a_build_error_not_a_panic() {
    for value in [
        telehook_core::MAX_IN_FLIGHT_LIMIT + 1,
        u32::MAX as usize + 1,
        usize::MAX,
    ] {
        let err = Webhook::builder()
            .max_in_flight(value)
            .build(ok_handler)
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::TooLarge {
                name: "max_in_flight",
                value,
                max: telehook_core::MAX_IN_FLIGHT_LIMIT,
            }
        );
        assert!(err.to_string().contains("1..="), "{err}");
    }
    assert_eq!(
        Webhook::builder()
            .max_in_flight(0)
            .build(ok_handler)
            .unwrap_err(),
        BuildError::Zero("max_in_flight")
    );
    assert!(
        Webhook::builder()
            .max_in_flight(telehook_core::MAX_IN_FLIGHT_LIMIT)
            .build(ok_handler)
            .is_ok()
    );
}

#[test]
fn a_redelivery_guard_capacity_above_its_limit_is_a_build_error() {
    for capacity in [telehook_core::guard::MAX_CAPACITY + 1, usize::MAX] {
        let err = Webhook::builder()
            .redelivery_guard(capacity, Duration::from_secs(60))
            .build(ok_handler)
            .unwrap_err();
        assert_eq!(
            err,
            BuildError::TooLarge {
                name: "redelivery_guard capacity",
                value: capacity,
                max: telehook_core::guard::MAX_CAPACITY,
            }
        );
    }
}

#[test]
fn a_memory_store_caps_its_capacity_instead_of_panicking_on_first_use() {
    // Lowered to MAX_CAPACITY (the slot table, allocated whole on the first finished run,
    // would otherwise overflow).
    let store = telehook_core::MemoryStore::new(usize::MAX, Duration::from_secs(60));
    let shown = format!("{store:?}");
    assert!(
        shown.contains(&format!("capacity: {}", telehook_core::guard::MAX_CAPACITY)),
        "{shown}"
    );
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
