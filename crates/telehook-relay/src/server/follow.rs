//! Following a channel: replay from storage, then live updates, without gaps or duplicates.
//! Shared by Server-Sent Events and WebSocket subscriptions.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

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

/// An item queued for a stream, holding its share of the stream's byte budget until it is
/// written out (dropped).
#[derive(Debug)]
pub(crate) struct Queued<T> {
    pub(crate) item: T,
    pub(crate) bytes: Option<OwnedSemaphorePermit>,
}

/// The byte budget of one stream's queue: updates wait for room before they are queued, so a
/// stream (all subscriptions of a WebSocket together) never queues more than
/// [`crate::RelayConfig::max_response_bytes`] of updates.
pub(crate) fn queue_budget(shared: &Shared) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        shared
            .config
            .max_response_bytes
            .clamp(1, Semaphore::MAX_PERMITS),
    ))
}

/// Streams `channel` after `ts` into `out`, mapped by `map`, until `out` closes, the relay
/// shuts down or storage fails. `wake` must be subscribed before this is called. Each read
/// from storage holds at most `max_response_bytes` of updates, and the updates queued in
/// `out` at most the `budget` semaphore's permits (one per byte).
pub(crate) async fn follow<T: Send + 'static>(
    shared: Arc<Shared>,
    channel: ChannelName,
    mut ts: u64,
    mut wake: watch::Receiver<Wake>,
    out: mpsc::Sender<Queued<T>>,
    budget: Arc<Semaphore>,
    map: impl Fn(Followed) -> T + Send + 'static,
) {
    let limit = shared.config.max_updates_per_response.max(1);
    let max_bytes = shared.config.max_response_bytes;
    let unqueued = |item| Queued { item, bytes: None };
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let fast = wake
            .borrow_and_update()
            .page_after(ts, limit)
            .map(|p| p.within(max_bytes));
        let page = match fast {
            Some(page) => page,
            None => match shared
                .store
                .read_bounded(&channel, ts, limit, max_bytes)
                .await
            {
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
            if out
                .send(unqueued(map(Followed::Reset { ts })))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let missed = page.missed(ts);
        if missed > 0 {
            ts += missed;
            if out
                .send(unqueued(map(Followed::Missed { missed, ts })))
                .await
                .is_err()
            {
                return;
            }
        }
        // A page cut short by the limit or the byte budget: read on at once.
        let full = page.updates.len() >= limit || page.next_ts() < page.total;
        for update in page.updates {
            if update.seq <= ts {
                continue;
            }
            let cost = update
                .json
                .len()
                .clamp(1, shared.config.max_response_bytes.max(1));
            let cost = u32::try_from(cost).unwrap_or(u32::MAX);
            let bytes = tokio::select! {
                permit = budget.clone().acquire_many_owned(cost) => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = out.closed() => return,
                _ = shutdown.changed() => return,
            };
            ts = update.seq;
            let item = Queued {
                item: map(Followed::Update(update)),
                bytes: Some(bytes),
            };
            if out.send(item).await.is_err() {
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

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::store::{NewUpdate, Notifier, Store};
    use crate::{RelayConfig, SqliteStore, StoreLimits};

    #[tokio::test]
    async fn a_stream_queues_no_more_than_its_byte_budget() {
        let dir = std::env::temp_dir().join(format!(
            "telehook-relay-follow-budget-{}",
            std::process::id()
        ));
        let notifier = Arc::new(Notifier::new(100, 100));
        let store = SqliteStore::open(&dir, StoreLimits::default(), notifier).unwrap();
        let channel = ChannelName::parse("fat").unwrap();
        for i in 0..20 {
            let json = format!(r#"{{"update_id":{i},"pad":"{}"}}"#, "x".repeat(980));
            store
                .append(
                    channel.clone(),
                    NewUpdate {
                        json,
                        update_id: Some(i),
                    },
                )
                .await
                .unwrap();
        }
        let config = RelayConfig {
            max_body_bytes: 4096,
            max_response_bytes: 4096 + crate::config::RESPONSE_ENVELOPE_BYTES,
            ..RelayConfig::default()
        };
        let relay = crate::Relay::new(Arc::new(store), config);
        let shared = relay.shared.clone();
        let wake = shared.store.notifier().subscribe(&channel).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let budget = queue_budget(&shared);
        tokio::spawn(follow(shared, channel, 0, wake, tx, budget, |f| f));
        // Nobody reads: the follower fills the queue up to the byte budget, then waits.
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            rx.len() <= 4,
            "{} updates of 1 KiB queued with a 4 KiB budget",
            rx.len()
        );
        let mut seqs = Vec::new();
        while seqs.len() < 20 {
            if let Followed::Update(u) = rx.recv().await.unwrap().item {
                seqs.push(u.seq);
            }
        }
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
