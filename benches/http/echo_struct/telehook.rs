//! The telehook side of the struct benchmark, shared by every `<framework>-echo-struct`
//! binary (included with `#[path]`): the handler takes a small struct of its own as its
//! update type (`update_id`, `message.chat.id`, `message.text`; [`UpdateType`] implemented
//! for it) and answers with a webhook reply — the same work as the bare side
//! (`bare.rs`), the same answer bytes. Each binary keeps only its framework's lines: mounting
//! the webhook and serving.

use serde::{Deserialize, Serialize};
use telehook::{BuildError, Context, HandlerError, SequenceKey, UpdateType, Webhook};

/// The part of an update the echo reads. `UpdateType` asks for an owned type, so the text is
/// a `String` (the bare side borrows it from the body).
#[derive(Deserialize)]
struct EchoUpdate {
    update_id: u64,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    chat: Chat,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

impl UpdateType for EchoUpdate {
    fn update_id(&self) -> u64 {
        self.update_id
    }

    fn sequence_key(&self) -> Option<SequenceKey> {
        self.message.as_ref().map(|m| SequenceKey::Chat(m.chat.id))
    }
}

/// `sendMessage`'s parameters; telehook puts `"method":"sendMessage"` in front.
#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: i64,
    text: &'a str,
}

async fn echo(update: EchoUpdate, ctx: Context) -> Result<(), HandlerError> {
    let Some(Message {
        chat,
        text: Some(text),
    }) = update.message
    else {
        return Ok(());
    };
    ctx.webhook_reply(
        "sendMessage",
        SendMessage {
            chat_id: chat.id,
            text: &text,
        },
    )?;
    Ok(())
}

/// The echo's webhook, with the defaults, checking `TELEHOOK_SECRET` if it is set.
pub(crate) fn webhook() -> Result<Webhook, BuildError> {
    let mut builder = Webhook::builder();
    if let Some(secret) = std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
    {
        builder = builder.secret_token(secret);
    }
    builder.build(echo)
}

/// `PORT`, default 8080.
pub(crate) fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}
