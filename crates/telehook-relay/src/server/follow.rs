//! Following a channel: replay from storage, then live updates, without gaps or duplicates.
//! Shared by Server-Sent Events and WebSocket subscriptions.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::state::Shared;
use crate::channel::ChannelName;
use crate::store::{StoredUpdate, Wake};

/// One item of a followed channel.
#[derive(Debug, Clone)]
pub(crate) enum Followed {
    /// An update, in order.
    Update(StoredUpdate),
    /// Retention dropped `missed` updates before this point; the follower is now at `ts`.
    Missed { missed: u64, ts: u64 },
    /// The follower's `ts` was above the channel's count (counts never go backwards, so the
    /// storage was replaced); the follower starts again from the start of the channel.
    Reset { ts: u64 },
}

/// Streams `channel` after `ts` into `out`, mapped by `map`, until `out` closes, the relay
/// shuts down or storage fails. `wake` must be subscribed before this is called.
pub(crate) async fn follow<T: Send + 'static>(
    shared: Arc<Shared>,
    channel: ChannelName,
    mut ts: u64,
    mut wake: watch::Receiver<Wake>,
    out: mpsc::Sender<T>,
    map: impl Fn(Followed) -> T + Send + 'static,
) {
    let limit = shared.config.max_updates_per_response.max(1);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let fast = wake.borrow_and_update().page_after(ts, limit);
        let page = match fast {
            Some(page) => page,
            None => match shared.store.read(&channel, ts, limit).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(%channel, error = %e, "reading a followed channel failed; ending the stream");
                    return;
                }
            },
        };
        if ts > page.total {
            tracing::warn!(%channel, ts, total = page.total, "follower ts above the channel's count; replaying from the start");
            ts = 0;
            if out.send(map(Followed::Reset { ts })).await.is_err() {
                return;
            }
            continue;
        }
        let missed = page.missed(ts);
        if missed > 0 {
            ts += missed;
            if out
                .send(map(Followed::Missed { missed, ts }))
                .await
                .is_err()
            {
                return;
            }
        }
        let full = page.updates.len() >= limit;
        for update in page.updates {
            if update.seq <= ts {
                continue;
            }
            ts = update.seq;
            if out.send(map(Followed::Update(update))).await.is_err() {
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
            () = out.closed() => return,
        }
    }
}
