//! The dispatcher's overhead per update (secret check, body read, parse, redelivery guard,
//! timeout guard, reply slot, response) against calling the same handler directly.
//!
//! The handler is `support/echo.rs`' echo on a small struct of its own (`EchoUpdate`):
//! `handler_called_directly` parses the body into it and calls the echo, which serializes its
//! `sendMessage` answer itself, as a bare framework handler does; `through_webhook_dispatcher`
//! sends the same body through the dispatcher to the same echo, which answers with a webhook
//! reply. The difference is the dispatcher's. `light_update_view_through_webhook_dispatcher`
//! runs an echo on the light `Update` view (the strict validator, then the handler's own
//! parse of `message.text`).
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

#[path = "support/echo.rs"]
mod echo;

use echo::{EchoUpdate, compact, fixture};

const SECRET: &str = "s3cr3t_T0ken-for-tests";

/// The echo on the light `Update` view: the chat from the view, the text parsed by the
/// handler from the raw bytes (borrowed).
async fn echo_update(update: Update, ctx: Context) -> Result<(), HandlerError> {
    #[derive(serde::Deserialize)]
    struct Text<'a> {
        #[serde(borrow)]
        message: Option<Msg<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        text: Option<std::borrow::Cow<'a, str>>,
    }
    let Some(chat_id) = update.chat_id() else {
        return Ok(());
    };
    let parsed: Text<'_> = serde_json::from_slice(update.raw())?;
    let text = parsed.message.and_then(|m| m.text).unwrap_or_default();
    ctx.webhook_reply(
        "sendMessage",
        echo::SendMessage {
            chat_id,
            text: &text,
        },
    )?;
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
        .build(echo::echo)
        .expect("webhook");
    let webhook_update = Webhook::builder()
        .secret_token(SECRET)
        .build(echo_update)
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
                body,
                |body| async move {
                    let update: EchoUpdate = serde_json::from_slice(&body).expect("update");
                    let ctx = Context::detached(update.update_id);
                    echo::echo(update, ctx).await.expect("handler");
                },
                BatchSize::SmallInput,
            );
        });
        let through_webhook = |webhook: &Webhook, b: &mut criterion::Bencher<'_, _>| {
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
        let mut through = |b: &mut criterion::Bencher<'_, _>| through_webhook(&webhook, b);
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
        group.bench_function("light_update_view_through_webhook_dispatcher", |b| {
            through_webhook(&webhook_update, b);
        });
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

criterion_group!(benches, bench);
criterion_main!(benches);
