//! The handler both dispatch benchmarks measure (`benches/dispatch.rs` with criterion,
//! `examples/dispatch_instructions.rs` under callgrind): an echo taking a small struct of its
//! own as its update type, the same work a hand-written handler does.

use serde::{Deserialize, Serialize};
use telehook_core::{Context, HandlerError, SequenceKey, UpdateType};

/// The part of an update the echo reads. `UpdateType` asks for an owned type.
#[derive(Deserialize)]
pub(crate) struct EchoUpdate {
    pub(crate) update_id: u64,
    pub(crate) message: Option<Message>,
}

#[derive(Deserialize)]
pub(crate) struct Message {
    pub(crate) chat: Chat,
    pub(crate) text: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Chat {
    pub(crate) id: i64,
}

impl UpdateType for EchoUpdate {
    fn update_id(&self) -> u64 {
        self.update_id
    }

    fn sequence_key(&self) -> Option<SequenceKey> {
        self.message.as_ref().map(|m| SequenceKey::Chat(m.chat.id))
    }
}

/// `sendMessage` as a webhook reply: `method` first, as a bare handler writes its answer.
#[derive(Serialize)]
pub(crate) struct SendMessage<'a> {
    pub(crate) chat_id: i64,
    pub(crate) text: &'a str,
}

/// Echoes the text. Through the dispatcher the answer goes out as the webhook reply; called
/// directly (no webhook) the handler serializes the same answer itself, as a bare framework
/// handler writes its response body, so both do the same work and the difference is the
/// dispatcher's.
pub(crate) async fn echo(update: EchoUpdate, ctx: Context) -> Result<(), HandlerError> {
    let Some(Message {
        chat,
        text: Some(text),
    }) = update.message
    else {
        return Ok(());
    };
    let params = SendMessage {
        chat_id: chat.id,
        text: &text,
    };
    if ctx.can_webhook_reply() {
        ctx.webhook_reply("sendMessage", params)?;
    } else {
        #[derive(Serialize)]
        struct Reply<'a> {
            method: &'static str,
            chat_id: i64,
            text: &'a str,
        }
        let body = serde_json::to_vec(&Reply {
            method: "sendMessage",
            chat_id: params.chat_id,
            text: params.text,
        })?;
        std::hint::black_box(body);
    }
    Ok(())
}

/// The fixture as Telegram sends it: compact JSON, no indentation.
pub(crate) fn compact(pretty: &str) -> String {
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

/// `message_text_private.json` from the conformance fixtures, as written (indented).
pub(crate) fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../telehook-conformance/fixtures/updates/message_text_private.json"
    );
    std::fs::read_to_string(path).expect("fixture message_text_private.json")
}
