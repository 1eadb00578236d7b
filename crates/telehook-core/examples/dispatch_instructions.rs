//! Runs `N` dispatches of one kind, for counting instructions with callgrind (the count does
//! not depend on the machine's load, unlike the criterion figures of `benches/dispatch.rs`).
//!
//! ```text
//! cargo build --release -p telehook-core --example dispatch_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/dispatch_instructions <mode> <n>
//! ```
//!
//! Modes: `direct` (parse the body into the echo's own struct and call the echo, as a bare
//! handler does), `webhook` (the same echo, taking that struct as its update type, through the
//! dispatcher), `webhook-update` (an echo taking the light `Update` view through the
//! dispatcher). Every mode builds a fresh compact body per dispatch (a new `update_id`, so the
//! redelivery guard runs its real path). Instructions per dispatch = (count at `n` − count at
//! 0) / `n`; the dispatcher's overhead = `webhook` − `direct`. `benches/dispatch-instructions.sh`
//! runs it all and prints the table.

#![allow(missing_docs)]

#[path = "../benches/support/echo.rs"]
mod echo;

use std::hint::black_box;

use bytes::Bytes;
use telehook_core::{Context, HandlerError, RequestHead, Update, Webhook};

const SECRET: &str = "s3cr3t_T0ken-for-tests";

async fn echo_update(update: Update, ctx: Context) -> Result<(), HandlerError> {
    let Some(chat_id) = update.chat_id() else {
        return Ok(());
    };
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

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "webhook".into());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let template = echo::compact(&echo::fixture());
    let body = |id: u64| Bytes::from(template.replacen("100000001", &id.to_string(), 1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let headers = [("x-telegram-bot-api-secret-token", SECRET)];
    let head = || {
        RequestHead::new("POST", |name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        })
    };
    let builder = Webhook::builder().secret_token(SECRET);
    let webhook = match mode.as_str() {
        "direct" => None,
        "webhook" => Some(builder.build(echo::echo).expect("webhook")),
        "webhook-update" => Some(builder.build(echo_update).expect("webhook")),
        other => panic!("unknown mode {other:?}: direct | webhook | webhook-update"),
    };
    runtime.block_on(async {
        for id in 1..=n {
            let body = body(id);
            match &webhook {
                None => {
                    let update: echo::EchoUpdate =
                        serde_json::from_slice(&body).expect("an update");
                    let ctx = Context::detached(update.update_id);
                    echo::echo(update, ctx).await.expect("handler");
                }
                Some(webhook) => {
                    let response = webhook.handle_bytes(head(), body).await;
                    assert_eq!(response.status(), 200);
                    black_box(response);
                }
            }
        }
    });
}
