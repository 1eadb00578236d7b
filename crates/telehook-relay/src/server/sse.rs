//! Server-Sent Events: one event per update, resumable with `Last-Event-ID`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::follow::{Followed, follow, queue_budget};
use super::state::Shared;
use crate::channel::ChannelName;
use crate::error::RelayError;

/// Streams `channel` after `ts` as SSE.
pub(crate) fn sse(
    shared: Arc<Shared>,
    channel: ChannelName,
    ts: u64,
) -> Result<Response, RelayError> {
    let wake = shared.store.notifier().subscribe(&channel)?;
    let (tx, rx) = mpsc::channel(shared.config.ws_send_buffer.max(1));
    let budget = queue_budget(&shared);
    tokio::spawn(follow(shared, channel, ts, wake, tx, budget, |item| {
        Ok::<_, Infallible>(match item {
            Followed::Update(update) => Event::default()
                .id(update.seq.to_string())
                .data(&*update.json),
            Followed::Missed { missed, ts } => Event::default()
                .event("missed")
                .id(ts.to_string())
                .data(format!(r#"{{"missed":{missed},"ts":{ts}}}"#)),
            Followed::Reset { ts } => Event::default()
                .event("reset")
                .id(ts.to_string())
                .data(format!(r#"{{"ts":{ts}}}"#)),
        })
    }));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        // The item's share of the byte budget is released once the event is handed on.
        rx.recv().await.map(|queued| (queued.item, rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
