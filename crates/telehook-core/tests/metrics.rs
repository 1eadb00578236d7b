//! The metrics and the readiness flag, seen from outside: a real recorder (metrics-util's
//! `DebuggingRecorder`, installed globally in this test binary) after real dispatches.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use telehook_core::metric_names as names;
use telehook_core::{Context, ErrorPolicy, HandlerError, RequestHead, Update, Webhook};

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn update(id: u64, text: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"update_id":{id},"message":{{"message_id":1,"date":0,"chat":{{"id":42,"type":"private"}},"text":"{text}"}}}}"#
    ))
}

async fn post(webhook: &Webhook, secret: &str, body: Bytes) -> u16 {
    let head = RequestHead::new("POST", |name| {
        (name == telehook_core::SECRET_TOKEN_HEADER).then_some(secret.as_bytes())
    });
    webhook.handle_bytes(head, body).await.status().as_u16()
}

/// Every metric as `name{label=value,…}` → value (counters and gauges), or the number of
/// samples (histograms), added to what earlier snapshots saw (a snapshot drains the
/// recorder's values).
fn snapshot(
    snapshotter: &metrics_util::debugging::Snapshotter,
    totals: &mut HashMap<String, f64>,
) -> HashMap<String, f64> {
    for (name, value) in snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(samples) => samples.len() as f64,
            };
            (name, value)
        })
    {
        *totals.entry(name).or_default() += value;
    }
    totals.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_sees_every_outcome_of_real_dispatches() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder in this test binary");
    let mut totals = HashMap::new();

    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let webhook = Webhook::builder()
        .secret_token(SECRET)
        .timeout(Duration::from_millis(50))
        .error_policy(ErrorPolicy::BoundedRetry { max_attempts: 1 })
        .build(move |update: Update, _: Context| {
            let mut release = release_rx.clone();
            async move {
                match update.deserialize::<serde_json::Value>()?["message"]["text"].as_str() {
                    Some("fail") => Err(HandlerError::from("refused by the test handler")),
                    Some("panic") => panic!("the test handler panics"),
                    Some("slow") => {
                        // Held until the test has seen the timeout.
                        let _ = release.wait_for(|released| *released).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        })
        .unwrap();

    assert!(webhook.is_ready());
    assert_eq!(post(&webhook, SECRET, update(1, "hi")).await, 200);
    assert_eq!(
        post(&webhook, SECRET, update(1, "hi")).await,
        200,
        "redelivery"
    );
    assert_eq!(
        post(&webhook, SECRET, update(2, "fail")).await,
        200,
        "given up after 1"
    );
    assert_eq!(post(&webhook, SECRET, update(3, "panic")).await, 200);
    assert_eq!(post(&webhook, "wrong-secret", update(4, "hi")).await, 401);
    assert_eq!(post(&webhook, SECRET, Bytes::from_static(b"[]")).await, 400);
    assert_eq!(
        post(&webhook, SECRET, update(5, "slow")).await,
        503,
        "timeout"
    );
    let mid = snapshot(&snapshotter, &mut totals);
    assert_eq!(
        mid.get("telehook_handlers_in_flight{}"),
        Some(&1.0),
        "{mid:?}"
    );
    release_tx.send(true).unwrap();
    assert!(webhook.drain(Duration::from_secs(5)).await);
    assert!(!webhook.is_ready(), "not ready once draining");

    let seen = snapshot(&snapshotter, &mut totals);
    let expect = [
        (format!("{}{{kind=message}}", names::UPDATES_RECEIVED), 5.0),
        (format!("{}{{}}", names::UPDATES_HANDLED), 2.0),
        (
            format!("{}{{state=finished}}", names::REDELIVERIES_ABSORBED),
            1.0,
        ),
        (format!("{}{{cause=error}}", names::HANDLER_ERRORS), 1.0),
        (format!("{}{{cause=panic}}", names::HANDLER_ERRORS), 1.0),
        (format!("{}{{}}", names::UPDATES_GIVEN_UP), 2.0),
        (
            format!("{}{{reason=wrong_secret_token}}", names::REQUESTS_REFUSED),
            1.0,
        ),
        (
            format!("{}{{reason=not_an_update}}", names::REQUESTS_REFUSED),
            1.0,
        ),
        (format!("{}{{action=throw}}", names::HANDLER_TIMEOUTS), 1.0),
        (format!("{}{{}}", names::HANDLERS_IN_FLIGHT), 0.0),
        (format!("{}{{outcome=ok}}", names::HANDLER_DURATION), 2.0),
        (format!("{}{{outcome=error}}", names::HANDLER_DURATION), 1.0),
        (format!("{}{{outcome=panic}}", names::HANDLER_DURATION), 1.0),
    ];
    for (name, value) in expect {
        assert_eq!(seen.get(&name), Some(&value), "{name} in {seen:#?}");
    }
}
