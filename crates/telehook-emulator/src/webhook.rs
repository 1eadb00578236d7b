//! The webhook delivery engine: per-queue ordering, `max_connections`, retries, expiry, and
//! webhook replies, as Telegram's server does them (with every duration scaled).

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use crate::api::execute;
use crate::model::{DeliveryAttempt, DeliveryOutcome, Route};
use crate::params::{self, Input};
use crate::state::{BotCell, RetryState, Shared, StoredUpdate, WebhookConfig, unix_now};

use telehook_core::SECRET_TOKEN_HEADER;

/// Runs until the emulator shuts down: whenever the bot's state changes or a retry falls due,
/// starts the deliveries that may start.
pub(crate) async fn run(shared: Arc<Shared>, bot: Arc<BotCell>) {
    let mut changed = bot.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        changed.borrow_and_update();
        let wake_at = schedule(&shared, &bot);
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changed.changed() => {}
            () = sleep => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Starts every delivery that may start now; returns when to look again (a retry or an expiry).
fn schedule(shared: &Arc<Shared>, bot: &Arc<BotCell>) -> Option<Instant> {
    let mut expired_any = false;
    let wake_at = schedule_locked(shared, bot, &mut expired_any);
    if expired_any {
        bot.bump();
    }
    wake_at
}

fn schedule_locked(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    expired_any: &mut bool,
) -> Option<Instant> {
    let mut state = bot.state();
    let hook = state.webhook.clone()?;
    let now = Instant::now();
    let mut wake_at: Option<Instant> = None;
    let mut earliest = |at: Instant| wake_at = Some(wake_at.map_or(at, |w| w.min(at)));

    if shared.timing.expiry {
        let mut expired = Vec::new();
        let in_flight: HashSet<u64> = state.in_flight.values().copied().collect();
        state.pending.retain(|update| {
            let keep = update.expires_at > now || in_flight.contains(&update.update_id);
            if !keep {
                expired.push(update.clone());
            }
            keep
        });
        *expired_any = !expired.is_empty();
        for update in expired {
            tracing::warn!(update_id = update.update_id, queue = %update.lane, "webhook update expired undelivered");
            let attempt = state
                .retries
                .remove(&update.update_id)
                .map_or(0, |r| r.failures);
            state.record_delivery(
                DeliveryAttempt {
                    update_id: update.update_id,
                    sequence_key: update.lane.sequence_key(),
                    attempt,
                    outcome: DeliveryOutcome::Expired,
                    duration: Duration::ZERO,
                },
                &shared.limits,
            );
        }
        if let Some(first) = state.pending.iter().map(|u| u.expires_at).min() {
            earliest(first);
        }
    }

    let mut heads_seen = HashSet::new();
    let mut to_send = Vec::new();
    for update in &state.pending {
        if !heads_seen.insert(update.lane.clone()) || state.in_flight.contains_key(&update.lane) {
            continue;
        }
        if state.in_flight.len() + to_send.len() >= hook.max_connections {
            break;
        }
        match state.retries.get(&update.update_id) {
            Some(retry) if retry.next_at > now => earliest(retry.next_at),
            retry => to_send.push((update.clone(), retry.map_or(1, |r| r.failures + 1))),
        }
    }
    for (update, attempt) in to_send {
        state
            .in_flight
            .insert(update.lane.clone(), update.update_id);
        let (shared, bot, hook) = (Arc::clone(shared), Arc::clone(bot), hook.clone());
        tokio::spawn(async move {
            let mut shutdown = shared.shutdown.subscribe();
            tokio::select! {
                () = deliver(&shared, &bot, &hook, update, attempt) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
    wake_at
}

/// What a delivery's response said.
struct Response {
    status: u16,
    retry_after: Option<u64>,
    content_type: Option<String>,
    body: Vec<u8>,
}

async fn deliver(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    hook: &WebhookConfig,
    update: StoredUpdate,
    attempt: u32,
) {
    let started = Instant::now();
    tracing::debug!(update_id = update.update_id, queue = %update.lane, attempt, "delivering");
    let result = post(shared, hook, &update).await;
    let duration = started.elapsed();

    let outcome = match &result {
        Ok(response) if (200..300).contains(&response.status) => DeliveryOutcome::Delivered {
            status: response.status,
        },
        Ok(response) => DeliveryOutcome::Failed {
            status: Some(response.status),
            error: format!(
                "Wrong response from the webhook: {}",
                status_line(response.status)
            ),
        },
        Err(error) => DeliveryOutcome::Failed {
            status: None,
            error: error.clone(),
        },
    };

    // The webhook reply runs before the queue moves on, so its effects come before the next update's.
    if let (Ok(response), DeliveryOutcome::Delivered { .. }) = (&result, &outcome)
        && let Some((method, input)) = webhook_reply(response).await
    {
        let route = Route::WebhookReply {
            update_id: update.update_id,
        };
        let _ = execute(shared, bot, &method, input, route).await;
    }

    let mut state = bot.state();
    if state.in_flight.get(&update.lane) == Some(&update.update_id) {
        state.in_flight.remove(&update.lane);
    }
    match &outcome {
        DeliveryOutcome::Delivered { .. } => {
            state.pending.retain(|u| u.update_id != update.update_id);
            state.retries.remove(&update.update_id);
        }
        DeliveryOutcome::Failed { error, .. } => {
            tracing::warn!(update_id = update.update_id, queue = %update.lane, attempt, %error, "webhook delivery failed");
            state.last_error = Some((unix_now(), error.clone()));
            let retry_after = result.as_ref().ok().and_then(|r| r.retry_after);
            if state
                .pending
                .iter()
                .any(|u| u.update_id == update.update_id)
            {
                let timing = &shared.timing;
                let previous = state.retries.get(&update.update_id).copied();
                let failures = previous.map_or(1, |r| r.failures + 1);
                let cap = previous.map_or_else(
                    || random_between(timing.retry_cap_min, timing.retry_cap_max),
                    |r| r.cap,
                );
                let delay = match retry_after {
                    Some(secs) => Duration::from_secs(secs).min(timing.max_retry_after),
                    None => retry_delay(failures, cap),
                };
                let next_at = timing.deadline(delay);
                state.retries.insert(
                    update.update_id,
                    RetryState {
                        failures,
                        next_at,
                        cap,
                    },
                );
            }
        }
        DeliveryOutcome::Expired => {}
    }
    let entry = DeliveryAttempt {
        update_id: update.update_id,
        sequence_key: update.lane.sequence_key(),
        attempt,
        outcome,
        duration,
    };
    state.record_delivery(entry, &shared.limits);
    drop(state);
    bot.bump();
}

/// After the first failure the update is sent again at once; then 2, 4, 8 … s, up to `cap`.
fn retry_delay(failures: u32, cap: Duration) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let secs = 1u64.checked_shl(failures - 1).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(cap)
}

fn random_between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    #[allow(clippy::cast_precision_loss)]
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    low + (high - low).mul_f64(fraction)
}

fn status_line(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("{status} {reason}").trim_end().to_owned()
}

async fn post(
    shared: &Shared,
    hook: &WebhookConfig,
    update: &StoredUpdate,
) -> Result<Response, String> {
    let mut request = hook
        .client
        .post(&hook.url)
        .header(CONTENT_TYPE, "application/json")
        .body(update.json.to_string())
        .timeout(shared.timing.scale(shared.timing.webhook_timeout));
    if let Some(secret) = &hook.secret_token {
        request = request.header(SECRET_TOKEN_HEADER, secret);
    }
    let mut response = request.send().await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > shared.limits.max_body_bytes {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        retry_after,
        content_type,
        body,
    })
}

/// Words like those in Telegram's `last_error_message`.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "Read timeout expired".to_owned();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return "Connection refused".to_owned();
        }
        source = e.source();
    }
    if error.url().is_some_and(|u| u.scheme() == "https")
        && let Some(words) = crate::tls::describe(error)
    {
        return words.to_owned();
    }
    if error.is_connect() {
        return "Failed to connect".to_owned();
    }
    "Connection closed".to_owned()
}

/// The Bot API call in a delivery's response body, if there is one.
async fn webhook_reply(response: &Response) -> Option<(String, Input)> {
    let body = axum::body::Bytes::from(response.body.clone());
    let mut input = params::parse(None, response.content_type.as_deref(), body)
        .await
        .ok()?;
    let Value::String(method) = input.params.remove("method")? else {
        return None;
    };
    Some((method, input))
}
