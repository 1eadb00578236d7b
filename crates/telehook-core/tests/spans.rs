//! One `tracing` span per update, carrying `update_id`, kind and sequence key, around the
//! handler's own events: what tracing-opentelemetry turns into a trace.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// One span's fields, as `(name, value)`.
type SpanFields = Vec<(String, String)>;

/// What the layer saw: each `telehook.update` span's fields, and for each event the name of
/// the span it happened in.
#[derive(Default, Clone)]
struct Seen {
    spans: Arc<Mutex<Vec<SpanFields>>>,
    events_in: Arc<Mutex<Vec<Option<String>>>>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

struct Recorder(Seen);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: LayerContext<'_, S>) {
        if attrs.metadata().name() == "telehook.update" {
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.spans.lock().unwrap().push(fields);
        }
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        let mut spans = self.0.spans.lock().unwrap();
        if let Some(last) = spans.last_mut() {
            values.record(&mut Fields(last));
        }
    }

    fn on_event(&self, _: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let span = ctx.lookup_current().map(|s| s.name().to_owned());
        self.0.events_in.lock().unwrap().push(span);
    }
}

#[test]
fn each_update_gets_a_span_with_its_id_kind_and_sequence_key() {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(Recorder(seen.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let webhook = Webhook::builder()
                .build(|_: Update, _: Context| async {
                    tracing::info!("inside the handler");
                    Ok::<_, HandlerError>(())
                })
                .unwrap();
            let body = Bytes::from_static(
                br#"{"update_id":77,"message":{"message_id":1,"date":0,"chat":{"id":42,"type":"private"},"text":"hi"}}"#,
            );
            let response = webhook
                .handle_bytes(RequestHead::new("POST", |_| None), body)
                .await;
            assert_eq!(response.status(), 200);
        });
    });
    let spans = seen.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let fields: std::collections::HashMap<_, _> = spans[0].iter().cloned().collect();
    assert_eq!(fields.get("update_id").map(String::as_str), Some("77"));
    assert_eq!(fields.get("kind").map(String::as_str), Some("\"message\""));
    assert_eq!(
        fields.get("sequence_key").map(String::as_str),
        Some("chat:42")
    );
    let events_in = seen.events_in.lock().unwrap().clone();
    assert!(
        events_in.contains(&Some("telehook.update".to_owned())),
        "the handler's event is inside the update's span: {events_in:?}"
    );
}
