//! `GET /{channel}?ts=N&sleep=S`: long polling (or SSE when the client asks for it).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};

use super::extract::{ChannelPath, QueryPairs, query_pairs};
use super::sse::sse;
use super::state::{Access, Shared, bearer, json_response};
use crate::channel::ChannelName;
use crate::error::RelayError;
use crate::store::{Page, StoredUpdate};

/// The parameters of a long poll.
#[derive(Debug, PartialEq)]
pub(crate) struct PollParams {
    pub(crate) ts: u64,
    pub(crate) sleep: Duration,
    pub(crate) token: Option<String>,
}

/// Reads `ts`, `sleep` and `token` as the reference does: an empty or missing number is 0, a
/// negative `ts` is below every count (from the start), `sleep` is clamped to `0..=max_sleep`.
/// Text that is not a number at all is refused (400) rather than read as 0: the reference's
/// clients never send it, and a typo should not silently mean "from the start".
pub(crate) fn poll_params(
    pairs: Vec<(String, String)>,
    max_sleep: Duration,
) -> Result<PollParams, RelayError> {
    let mut params = PollParams {
        ts: 0,
        sleep: Duration::ZERO,
        token: None,
    };
    for (key, value) in pairs {
        let trimmed = value.trim();
        match key.as_str() {
            "ts" if trimmed.is_empty() => params.ts = 0,
            "ts" => {
                let ts: i64 = trimmed.parse().map_err(|_| RelayError::BadParameter {
                    name: "ts",
                    reason: format!("expected an integer, got {value:?}"),
                })?;
                params.ts = u64::try_from(ts).unwrap_or(0);
            }
            "sleep" if trimmed.is_empty() => params.sleep = Duration::ZERO,
            "sleep" => {
                let secs: f64 = trimmed.parse().unwrap_or(f64::NAN);
                if secs.is_nan() {
                    return Err(RelayError::BadParameter {
                        name: "sleep",
                        reason: format!("expected seconds, got {value:?}"),
                    });
                }
                let secs = secs.clamp(0.0, max_sleep.as_secs_f64());
                params.sleep = Duration::from_secs_f64(secs);
            }
            "token" => params.token = Some(value),
            _ => {}
        }
    }
    Ok(params)
}

/// The long-poll answer `{"ok":true,"ts":T,"missed":K,"reset":true,"updates":[…]}` (`missed`
/// only when K > 0, `reset` only when the client's `ts` was above the channel's count).
pub(crate) fn poll_body(ts: u64, missed: u64, reset: bool, updates: &[StoredUpdate]) -> String {
    let mut body =
        String::with_capacity(64 + updates.iter().map(|u| u.json.len() + 1).sum::<usize>());
    body.push_str(r#"{"ok":true,"ts":"#);
    body.push_str(&ts.to_string());
    if missed > 0 {
        body.push_str(r#","missed":"#);
        body.push_str(&missed.to_string());
    }
    if reset {
        body.push_str(r#","reset":true"#);
    }
    body.push_str(r#","updates":["#);
    for (i, update) in updates.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&update.json);
    }
    body.push_str("]}");
    body
}

/// `GET /{channel}` and `GET /{channel}/getUpdates`: long polling, or SSE when asked for.
pub(crate) async fn get_updates(
    State(shared): State<Arc<Shared>>,
    channel: ChannelPath,
    query: QueryPairs,
    headers: HeaderMap,
) -> Result<Response, RelayError> {
    let channel = channel.0?;
    let params = poll_params(query_pairs(query)?, shared.config.max_sleep)?;
    let token = bearer(&headers).or(params.token.as_deref());
    shared.authorize(&channel, Access::Read, token)?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        let last_event_id = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| RelayError::BadParameter {
                        name: "Last-Event-ID",
                        reason: format!("expected a non-negative integer, got {v:?}"),
                    })
            })
            .transpose()?;
        return sse(shared, channel, last_event_id.unwrap_or(params.ts));
    }
    long_poll(&shared, &channel, params.ts, params.sleep).await
}

/// One long poll counted in [`RELAY_QUEUE_DEPTH`](crate::metric_names::RELAY_QUEUE_DEPTH)
/// while it lives (dropped when it answers, or when the client disconnects).
struct WaitingPoll;

impl WaitingPoll {
    fn start() -> Self {
        metrics::gauge!(crate::metric_names::RELAY_QUEUE_DEPTH).increment(1.0);
        Self
    }
}

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        metrics::gauge!(crate::metric_names::RELAY_QUEUE_DEPTH).decrement(1.0);
    }
}

async fn long_poll(
    shared: &Shared,
    channel: &ChannelName,
    ts: u64,
    sleep: Duration,
) -> Result<Response, RelayError> {
    let limit = shared.config.max_updates_per_response.max(1);
    let budget = shared
        .config
        .max_response_bytes
        .saturating_sub(crate::config::RESPONSE_ENVELOPE_BYTES);
    // Subscribe before reading, so a commit between the read and the wait still wakes us.
    let mut wake = shared.store.notifier().subscribe(channel)?;
    let mut shutdown = shared.shutdown.subscribe();
    // `sleep` is clamped to `max_sleep`, but the config is a library value: never overflow.
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(sleep)
        .unwrap_or_else(|| now + Duration::from_secs(86_400));
    // A client that is up to date (the common case: it comes back with the `ts` it was just
    // given) waits without a storage read when the notifier knows the exact count.
    let known = wake
        .borrow_and_update()
        .page_after(ts, limit)
        .map(|p| p.within(budget));
    let mut page = match known {
        Some(page) => page,
        None => {
            shared
                .store
                .read_bounded(channel, ts, limit, budget)
                .await?
        }
    };
    // Counted in the queue-depth gauge from its first wait until it answers or the client goes.
    let mut waiting: Option<WaitingPoll> = None;
    loop {
        if ts > page.total || !page.updates.is_empty() || page.missed(ts) > 0 {
            break;
        }
        if *shutdown.borrow_and_update() {
            break;
        }
        waiting.get_or_insert_with(WaitingPoll::start);
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
        let fast = wake
            .borrow_and_update()
            .page_after(ts, limit)
            .map(|p| p.within(budget));
        page = match fast {
            Some(page) => page,
            None => {
                shared
                    .store
                    .read_bounded(channel, ts, limit, budget)
                    .await?
            }
        };
    }
    drop(wake);
    let body = if ts > page.total {
        // Counts never go backwards, so the storage was replaced (or the client's `ts` came
        // from elsewhere): answer from the start of what the channel holds, and say so.
        tracing::warn!(%channel, ts, total = page.total, "client ts above the channel's count; answering from the start");
        let from_start = if page.total == 0 {
            page
        } else {
            shared.store.read_bounded(channel, 0, limit, budget).await?
        };
        page_body(0, &from_start, true)
    } else {
        page_body(ts, &page, false)
    };
    Ok(json_response(StatusCode::OK, body))
}

fn page_body(ts: u64, page: &Page, reset: bool) -> String {
    poll_body(page.next_ts(), page.missed(ts), reset, &page.updates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &[(&str, &str)]) -> Result<PollParams, RelayError> {
        let pairs = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        poll_params(pairs, Duration::from_secs(60))
    }

    #[test]
    fn empty_missing_and_negative_numbers_read_as_the_reference_reads_them() {
        let zero = PollParams {
            ts: 0,
            sleep: Duration::ZERO,
            token: None,
        };
        assert_eq!(params(&[]).unwrap(), zero);
        assert_eq!(params(&[("ts", ""), ("sleep", "")]).unwrap(), zero);
        assert_eq!(params(&[("ts", "-5"), ("sleep", "-1")]).unwrap(), zero);
        assert_eq!(
            params(&[("sleep", "999")]).unwrap().sleep,
            Duration::from_secs(60)
        );
        assert_eq!(
            params(&[("sleep", "0.5")]).unwrap().sleep,
            Duration::from_millis(500)
        );
        assert_eq!(params(&[("ts", "7")]).unwrap().ts, 7);
    }

    #[test]
    fn text_that_is_no_number_is_refused() {
        for (k, v) in [
            ("ts", "abc"),
            ("ts", "1.5"),
            ("sleep", "x"),
            ("sleep", "NaN"),
        ] {
            assert!(params(&[(k, v)]).is_err(), "{k}={v}");
        }
    }
}
