//! WebSocket: subscribe to several channels on one socket, each replayed then pushed live.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::follow::{Followed, Queued, follow, queue_budget};
use super::state::{Access, Shared};
use crate::channel::ChannelName;
use crate::error::RelayError;

/// Close code: a message was larger than the relay accepts (RFC 6455 §7.4.1).
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the peer broke the protocol (RFC 6455 §7.4.1).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// A command sent by a WebSocket client.
#[derive(Debug, Deserialize)]
struct WsCommand {
    command: String,
    channel: Option<String>,
    #[serde(default)]
    ts: u64,
    token: Option<String>,
}

/// `GET /ws`: upgrades to a WebSocket; a request that is no upgrade gets the JSON error.
pub(crate) async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return RelayError::BadParameter {
                name: "upgrade",
                reason: rejection.body_text(),
            }
            .into_response();
        }
    };
    let max = shared.config.ws_max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| ws_session(shared, socket))
}

async fn ws_session(shared: Arc<Shared>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Queued<String>>(shared.config.ws_send_buffer.max(1));
    // One byte budget for the updates queued by all subscriptions of this socket.
    let budget = queue_budget(&shared);
    let mut subscriptions: HashMap<ChannelName, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            let _ = sink.send(Message::Close(None)).await;
            break;
        }
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let reply = RelayError::BadParameter {
                            name: "message",
                            reason: "binary messages are not commands; send JSON as a text message"
                                .to_owned(),
                        }
                        .to_json();
                        if sink.send(Message::Text(reply.into())).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Err(e)) => {
                        // Say why the socket ends: 1009 for a message over the limit (RFC 6455
                        // §7.4.1), 1002 for anything else the protocol refused.
                        let text = e.to_string();
                        let code = if text.contains("too long") || text.contains("Space limit") {
                            CLOSE_TOO_BIG
                        } else {
                            CLOSE_PROTOCOL_ERROR
                        };
                        let reason = if code == CLOSE_TOO_BIG {
                            format!("message over {} bytes", shared.config.ws_max_message_bytes)
                        } else {
                            "protocol error".to_owned()
                        };
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                };
                let reply = ws_command(&shared, &text, &tx, &budget, &mut subscriptions);
                let reply = reply.unwrap_or_else(|e| e.to_json());
                if sink.send(Message::Text(reply.into())).await.is_err() {
                    break;
                }
            }
            Some(out) = rx.recv() => {
                let held = out.bytes;
                if sink.send(Message::Text(out.item.into())).await.is_err() {
                    break;
                }
                drop(held);
            }
            _ = shutdown.changed() => {}
        }
    }
    for (_, task) in subscriptions {
        task.abort();
    }
}

fn ws_command(
    shared: &Arc<Shared>,
    text: &str,
    tx: &mpsc::Sender<Queued<String>>,
    budget: &Arc<tokio::sync::Semaphore>,
    subscriptions: &mut HashMap<ChannelName, tokio::task::JoinHandle<()>>,
) -> Result<String, RelayError> {
    let command: WsCommand = serde_json::from_str(text).map_err(RelayError::BadJson)?;
    let channel = command.channel.as_deref().ok_or(RelayError::BadParameter {
        name: "channel",
        reason: "missing".to_owned(),
    })?;
    let channel = ChannelName::parse(channel)?;
    match command.command.as_str() {
        "subscribe" => {
            shared.authorize(&channel, Access::Read, command.token.as_deref())?;
            if !subscriptions.contains_key(&channel)
                && subscriptions.len() >= shared.config.ws_max_subscriptions
            {
                return Err(RelayError::TooManySubscriptions {
                    limit: shared.config.ws_max_subscriptions,
                });
            }
            let wake = shared.store.notifier().subscribe(&channel)?;
            let name = channel.to_string();
            let task = tokio::spawn(follow(
                shared.clone(),
                channel.clone(),
                command.ts,
                wake,
                tx.clone(),
                budget.clone(),
                move |item| {
                    let name = serde_json::Value::String(name.clone());
                    match item {
                        Followed::Update(u) => {
                            format!(r#"{{"channel":{name},"ts":{},"update":{}}}"#, u.seq, u.json)
                        }
                        Followed::Missed { missed, ts } => {
                            format!(r#"{{"channel":{name},"ts":{ts},"missed":{missed}}}"#)
                        }
                        Followed::Reset { ts } => {
                            format!(r#"{{"channel":{name},"ts":{ts},"reset":true}}"#)
                        }
                    }
                },
            ));
            if let Some(old) = subscriptions.insert(channel.clone(), task) {
                old.abort();
            }
            Ok(serde_json::json!({"ok": true, "command": "subscribe", "channel": channel.as_str(), "ts": command.ts})
                .to_string())
        }
        "unsubscribe" => {
            if let Some(task) = subscriptions.remove(&channel) {
                task.abort();
            }
            Ok(serde_json::json!({"ok": true, "command": "unsubscribe", "channel": channel.as_str()}).to_string())
        }
        other => Err(RelayError::BadParameter {
            name: "command",
            reason: format!("unknown command {other:?}"),
        }),
    }
}
