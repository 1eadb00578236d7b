//! A process-wide `tracing` subscriber that keeps recent events, so cases can assert on what
//! the dispatcher logged (the contract says what must be logged, not only what is answered).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// Events kept; older ones are dropped.
const CAPACITY: usize = 20_000;

/// One captured event.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its other fields, formatted.
    pub fields: BTreeMap<String, String>,
}

impl LogEvent {
    /// The field `name`, formatted, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

static EVENTS: OnceLock<Mutex<VecDeque<LogEvent>>> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

struct Recorder;

#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().to_owned(), text);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields
                .insert(field.name().to_owned(), value.to_owned());
        }
    }
}

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut events = events()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if events.len() == CAPACITY {
            events.pop_front();
        }
        events.push_back(LogEvent {
            level: *event.metadata().level(),
            message: fields.message,
            fields: fields.fields,
        });
    }
}

fn events() -> &'static Mutex<VecDeque<LogEvent>> {
    EVENTS.get_or_init(|| Mutex::new(VecDeque::new()))
}

/// Installs the capturing subscriber as the global default (once per process). Returns false
/// if another global subscriber was installed first, in which case log assertions fail.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Recorder);
        tracing::subscriber::set_global_default(subscriber).is_ok()
    })
}

/// Events with field `update_id` equal to `update_id`.
pub(crate) fn for_update(update_id: u64) -> Vec<LogEvent> {
    let id = update_id.to_string();
    let events = events()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    events
        .iter()
        .filter(|e| e.field("update_id") == Some(id.as_str()))
        .cloned()
        .collect()
}

/// Number of events seen so far (to look only at what a case caused).
pub(crate) fn mark() -> usize {
    events()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len()
}

/// Events after `mark` (approximate once the buffer wraps).
pub(crate) fn since(mark: usize) -> Vec<LogEvent> {
    let events = events()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    events
        .iter()
        .skip(mark.min(events.len()))
        .cloned()
        .collect()
}
