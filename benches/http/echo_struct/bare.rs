//! The bare side of the struct benchmark, shared by every `<framework>-echo-bare-struct`
//! binary (included with `#[path]`): what a hand-written handler does with an update — parse
//! the body into a small struct that borrows from it (`update_id`, `message.chat.id`,
//! `message.text`) and serialize the webhook reply from a struct. Each binary keeps only its
//! framework's lines: the secret check, the body, the answer.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The part of an update the echo reads, borrowed from the body where it can be.
#[derive(Deserialize)]
struct EchoUpdate<'a> {
    /// Parsed (a body without it is refused) but not used by the echo.
    #[serde(rename = "update_id")]
    _update_id: u64,
    #[serde(borrow)]
    message: Option<Message<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    chat: Chat,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

/// The webhook reply: the same bytes as telehook's (`method` first, then the parameters).
#[derive(Serialize)]
struct Reply<'a> {
    method: &'static str,
    chat_id: i64,
    text: &'a str,
}

/// The answer's JSON for a text message, `None` (answer `200` without a body) for any other
/// update, `Err` (answer `400`) for a body that is not an update.
pub(crate) fn echo(body: &[u8]) -> Result<Option<Vec<u8>>, serde_json::Error> {
    let update = serde_json::from_slice::<EchoUpdate<'_>>(body)?;
    let Some(Message {
        chat,
        text: Some(text),
    }) = update.message
    else {
        return Ok(None);
    };
    let reply = Reply {
        method: "sendMessage",
        chat_id: chat.id,
        text: &text,
    };
    serde_json::to_vec(&reply).map(Some)
}

/// `PORT`, default 8080.
pub(crate) fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

/// `TELEHOOK_SECRET`, if set and not empty.
pub(crate) fn secret() -> Option<String> {
    std::env::var("TELEHOOK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
}
