//! The dispatcher's overhead per update (secret check, body read, parse, redelivery guard,
//! timeout guard, reply slot, spawn) against calling the same handler directly.
//!
//! `through_webhook_dispatcher` runs without a metrics recorder (every metric a no-op);
//! `through_webhook_dispatcher_with_prometheus_recorder` runs the same with
//! metrics-exporter-prometheus's recorder installed (thread-locally, for this function only),
//! its histograms drained by an upkeep thread as the exporter's own upkeep task would.
//!
//! `cargo bench -p telehook-core --bench dispatch`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};

const SECRET: &str = "s3cr3t_T0ken-for-tests";

fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../telehook-conformance/fixtures/updates/message_text_private.json"
    );
    std::fs::read_to_string(path).expect("fixture message_text_private.json")
}

/// The handler under test: reads what a typical handler reads and builds an answer. Through
/// the dispatcher the answer goes out as the webhook reply; called directly (no webhook, no
/// reply) it is only built, so both variants do the same handler work and the difference is the
/// dispatcher's, including the reply slot and the reply's serialization.
async fn handler(update: Update, ctx: Context) -> Result<(), HandlerError> {
    let chat_id = black_box(update.chat_id()).unwrap_or_default();
    let params = serde_json::json!({ "chat_id": chat_id, "text": "ok" });
    if ctx.can_webhook_reply() {
        ctx.webhook_reply("sendMessage", params)?;
    } else {
        black_box(params);
    }
    Ok(())
}

fn bench(c: &mut Criterion) {
    let pretty = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let webhook = Webhook::builder()
        .secret_token(SECRET)
        .build(handler)
        .expect("webhook");
    let headers = [("x-telegram-bot-api-secret-token", SECRET)];
    let next_id = AtomicU64::new(1);

    // The fixture file is indented for people; Telegram sends compact JSON. Both are measured.
    for (name, template) in [
        ("message_text_private", pretty.clone()),
        ("message_text_private_compact", compact(&pretty)),
    ] {
        // Each delivery gets a fresh update_id, so the redelivery guard runs its real path.
        let body = || {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            Bytes::from(template.replacen("100000001", &id.to_string(), 1))
        };
        let mut group = c.benchmark_group(name);
        group.bench_function("handler_called_directly", |b| {
            b.to_async(&runtime).iter_batched(
                || Update::from_bytes(body()).expect("update"),
                |update| async move {
                    let ctx = Context::detached(update.update_id());
                    handler(update, ctx).await.expect("handler");
                },
                BatchSize::SmallInput,
            );
        });
        let mut through = |b: &mut criterion::Bencher<'_, _>| {
            b.to_async(&runtime).iter_batched(
                body,
                |body| {
                    let head = RequestHead::new("POST", |name| {
                        headers
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.as_bytes())
                    });
                    let response = webhook.handle_bytes(head, body);
                    async move {
                        let response = response.await;
                        assert_eq!(response.status(), 200);
                        black_box(response);
                    }
                },
                BatchSize::SmallInput,
            );
        };
        group.bench_function("through_webhook_dispatcher", &mut through);
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let stop = Arc::new(AtomicBool::new(false));
        let upkeep = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    handle.run_upkeep();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                handle.render()
            })
        };
        metrics::with_local_recorder(&recorder, || {
            group.bench_function(
                "through_webhook_dispatcher_with_prometheus_recorder",
                &mut through,
            );
        });
        stop.store(true, Ordering::Relaxed);
        // With a filter that skips the recorder variant, nothing was recorded.
        let rendered = upkeep.join().expect("upkeep thread");
        assert!(
            rendered.is_empty() || rendered.contains("telehook_updates_received_total"),
            "the recorder saw the dispatches"
        );
        group.bench_function("parse_only", |b| {
            b.iter_batched(
                body,
                |body| black_box(Update::from_bytes(body).expect("update")),
                BatchSize::SmallInput,
            );
        });
        group.finish();
    }
}

/// The fixture as Telegram sends it: compact JSON, no indentation.
fn compact(pretty: &str) -> String {
    let mut out = String::with_capacity(pretty.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in pretty.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

criterion_group!(benches, bench);
criterion_main!(benches);
