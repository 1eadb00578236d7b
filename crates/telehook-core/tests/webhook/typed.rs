//! Handlers taking their own update type or `serde_json::Value`: one parse, as strict as the
//! validator's.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use telehook_core::{Context, HandlerError, RequestHead, SequenceKey, Update, UpdateType, Webhook};

use super::post;

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
