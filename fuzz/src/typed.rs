//! `typed`: an update deserialized into a handler's own type through telehook's public paths
//! (`UpdateType::from_update`, and a `Webhook` whose handler takes that type) against
//! `serde_json::from_slice::<T>` directly: same acceptance, equal values, same `update_id`.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use telehook_core::{
    Context, ErrorPolicy, HandlerError, RequestHead, SequenceKey, Update, UpdateType, Webhook,
};

use crate::model;
use crate::{Outcome, block_on, check};

/// What a hand-written handler would take: a few fields, the rest ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Small {
    /// `update_id`
    pub update_id: u64,
    /// `message`, if the update is one
    pub message: Option<SmallMessage>,
}

/// `message` of [`Small`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SmallMessage {
    /// `message_id`
    pub message_id: i64,
    /// `chat`
    pub chat: SmallChat,
    /// `text`
    pub text: Option<String>,
}

/// `message.chat` of [`Small`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SmallChat {
    /// `id`
    pub id: i64,
}

impl UpdateType for Small {
    fn update_id(&self) -> u64 {
        self.update_id
    }

    fn sequence_key(&self) -> Option<SequenceKey> {
        self.message.as_ref().map(|m| SequenceKey::Chat(m.chat.id))
    }
}

type Slot<T> = Arc<Mutex<Option<T>>>;

/// A webhook whose handler takes `T` and leaves what it got in the slot.
struct Typed<T> {
    webhook: Webhook,
    slot: Slot<T>,
}

impl<T: UpdateType + Sync> Typed<T> {
    fn new() -> Self {
        let slot: Slot<T> = Arc::new(Mutex::new(None));
        let into = Arc::clone(&slot);
        let webhook = Webhook::builder()
            // A type that does not fit is the handler's error: `Retry` makes it a stable 500.
            .error_policy(ErrorPolicy::Retry)
            // Forget every finished run at once, so a repeated input runs the handler again.
            .redelivery_guard(1, Duration::ZERO)
            .build(move |update: T, _ctx: Context| {
                let into = Arc::clone(&into);
                async move {
                    *into.lock().unwrap_or_else(|p| p.into_inner()) = Some(update);
                    Ok::<_, HandlerError>(())
                }
            })
            .expect("a valid configuration");
        Self { webhook, slot }
    }
}

struct Webhooks {
    value: Typed<Value>,
    small: Typed<Small>,
    frankenstein: Typed<frankenstein::updates::Update>,
    teloxide: Typed<teloxide_core::types::Update>,
}

thread_local! {
    static WEBHOOKS: Webhooks = Webhooks {
        value: Typed::new(),
        small: Typed::new(),
        frankenstein: Typed::new(),
        teloxide: Typed::new(),
    };
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Outcome {
    let verdict = model::reference(data);
    let update = Update::from_bytes(Bytes::copy_from_slice(data)).ok();
    check!(
        update.is_some() == verdict.update().is_some(),
        "acceptance: telehook {:?}, reference {verdict:?}",
        update
    );
    WEBHOOKS.with(|w| {
        case("serde_json::Value", data, update.as_ref(), &w.value, |_| {
            true
        })?;
        let is_message = update.as_ref().and_then(Update::kind) == Some("message");
        case("Small", data, update.as_ref(), &w.small, |_| is_message)?;
        case(
            "frankenstein::Update",
            data,
            update.as_ref(),
            &w.frankenstein,
            |_| true,
        )?;
        // teloxide reads a kind it does not know, or cannot read, as `UpdateKind::Error`
        // (its fallback), which has no chat: only its own kinds are compared.
        case(
            "teloxide::Update",
            data,
            update.as_ref(),
            &w.teloxide,
            |u: &teloxide_core::types::Update| {
                !matches!(u.kind, teloxide_core::types::UpdateKind::Error(_))
            },
        )
    })
}

/// One type: the direct parse, `from_update`, and the webhook must agree.
fn case<T>(
    name: &str,
    data: &[u8],
    update: Option<&Update>,
    typed: &Typed<T>,
    compare_key: impl Fn(&T) -> bool,
) -> Outcome
where
    T: UpdateType + Sync + PartialEq + Debug,
{
    let direct = serde_json::from_slice::<T>(data);
    let Some(update) = update else {
        return webhook_answer(name, data, typed, 400, None);
    };
    let through = T::from_update(update.clone());
    match (&direct, &through) {
        (Ok(a), Ok(b)) => {
            check!(a == b, "{name}: from_update {b:?} != serde_json {a:?}");
            check!(
                b.update_id() == update.update_id(),
                "{name}: update_id {} != {}",
                b.update_id(),
                update.update_id()
            );
            if compare_key(b) {
                check!(
                    b.sequence_key().as_ref() == update.sequence_key(),
                    "{name}: sequence_key {:?} != Update's {:?}",
                    b.sequence_key(),
                    update.sequence_key()
                );
            }
        }
        (Err(_), Err(_)) => {}
        (Ok(a), Err(e)) => {
            return Err(format!(
                "{name}: from_update refused ({e}), serde_json took {a:?}"
            ));
        }
        (Err(e), Ok(b)) => {
            return Err(format!(
                "{name}: from_update took {b:?}, serde_json refused ({e})"
            ));
        }
    }
    match direct {
        Ok(value) => webhook_answer(name, data, typed, 200, Some(value)),
        Err(_) => webhook_answer(name, data, typed, 500, None),
    }
}

/// Sends `data` to the typed webhook: the status must be `status`, and the handler must have
/// got `value` (or not run, for `None`).
fn webhook_answer<T: UpdateType + PartialEq + Debug>(
    name: &str,
    data: &[u8],
    typed: &Typed<T>,
    status: u16,
    value: Option<T>,
) -> Outcome {
    let head = RequestHead::new("POST", |_| None);
    let answer = block_on(
        typed
            .webhook
            .handle_bytes(head, Bytes::copy_from_slice(data)),
    );
    let got = typed.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    check!(
        answer.status().as_u16() == status,
        "{name} webhook: status {} (body {:?}), expected {status}",
        answer.status(),
        String::from_utf8_lossy(answer.body())
    );
    check!(
        got == value,
        "{name} webhook: handler got {got:?}, expected {value:?}"
    );
    Ok(())
}
