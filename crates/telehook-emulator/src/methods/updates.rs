//! getUpdates and the webhook methods: setWebhook, deleteWebhook, getWebhookInfo.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::{boolean, int, string, string_list};
use crate::answer::{Fail, Success};
use crate::params::Input;
use crate::state::{BotCell, BotState, Shared, WebhookConfig};

// ---- getUpdates ---------------------------------------------------------------------------------

/// The longest long poll the official server holds (tdlib/telegram-bot-api `Client.h`).
const LONG_POLL_MAX_TIMEOUT: i64 = 50;

const CONFLICT_WEBHOOK: &str = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const CONFLICT_OTHER_POLL: &str = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running";

pub(super) async fn get_updates(
    shared: &Arc<Shared>,
    bot: &Arc<BotCell>,
    params: &Map<String, Value>,
) -> Result<Success, Fail> {
    let offset = int(params, "offset").unwrap_or(0);
    // Clamped, not refused, as the official server does (`get_integer_arg`): `limit` to 1–100
    // (default 100), `timeout` to 0–50 s (`LONG_POLL_MAX_TIMEOUT`).
    let limit = usize::try_from(int(params, "limit").unwrap_or(100).clamp(1, 100)).unwrap_or(100);
    let timeout = u64::try_from(
        int(params, "timeout")
            .unwrap_or(0)
            .clamp(0, LONG_POLL_MAX_TIMEOUT),
    )
    .unwrap_or(0);
    let allowed_updates = string_list(params, "allowed_updates")?;

    let mut changed = bot.subscribe();
    let generation = {
        let mut state = bot.state();
        if state.webhook.is_some() {
            return Err(Fail::new(409, CONFLICT_WEBHOOK));
        }
        if let Some(kinds) = allowed_updates {
            state.allowed_updates = Some(kinds);
        }
        confirm(&mut state, offset);
        state.poll_generation += 1;
        state.poll_generation
    };
    // Wakes an earlier getUpdates still waiting, which then answers 409.
    bot.bump();
    let deadline = shared.timing.deadline(Duration::from_secs(timeout));
    let mut shutdown = shared.shutdown.subscribe();
    let mut parked: Option<Parked<'_>> = None;
    loop {
        changed.borrow_and_update();
        {
            let state = bot.state();
            if state.poll_generation != generation {
                return Err(Fail::new(409, CONFLICT_OTHER_POLL));
            }
            if state.webhook.is_some() {
                return Err(Fail::new(409, CONFLICT_WEBHOOK));
            }
            if !state.pending.is_empty() || Instant::now() >= deadline {
                let updates: Vec<Value> = state
                    .pending
                    .iter()
                    .take(limit)
                    .map(|u| u.json.clone())
                    .collect();
                return Ok(Value::Array(updates).into());
            }
        }
        if parked.is_none() {
            parked = Some(Parked::new(bot));
        }
        tokio::select! {
            _ = changed.changed() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(json!([]).into()),
        }
    }
}

/// Counts a long poll as waiting while it lives (also when the client goes away mid-poll).
struct Parked<'a>(&'a BotCell);

impl<'a> Parked<'a> {
    fn new(bot: &'a BotCell) -> Self {
        bot.state().long_polls_waiting += 1;
        bot.bump();
        Self(bot)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.state().long_polls_waiting -= 1;
    }
}

/// How far past the queue's tail an offset may be before the official server calls it "in the
/// future" (tdlib `TQueue::get`: `from_id > tail_id + 10`).
const FUTURE_SLACK: u64 = 10;
/// How far behind the tail an offset may be before it is "in the past" (tdlib `TQueue::get`:
/// `from_id < tail_id - 2 * MAX_QUEUE_EVENTS`, with `MAX_QUEUE_EVENTS` = 1 000 000).
const PAST_SLACK: u64 = 2_000_000;

/// Applies getUpdates' `offset` as the official server does (tdlib/telegram-bot-api,
/// `Client::do_get_updates`, and tdlib's `TQueue::get`):
/// - a negative offset keeps only the last `-offset` updates;
/// - a positive offset within reach of the queue (at most 10 past its tail, the next
///   `update_id` to be given) confirms every update below it;
/// - an offset "in the future" (more than 10 past the tail, e.g. the bot's old offset after
///   `update_id`s were reset by a quiet week) or "in the past" (2 000 000 below) is ignored:
///   the answer starts at the head of the queue and nothing is confirmed.
///
/// Returns true if the offset was ignored.
pub(crate) fn confirm(state: &mut BotState, offset: i64) -> bool {
    if offset > 0 {
        let offset = offset.unsigned_abs();
        let tail = state.next_update_id;
        if offset > tail.saturating_add(FUTURE_SLACK) || offset < tail.saturating_sub(PAST_SLACK) {
            tracing::debug!(
                offset,
                tail,
                "getUpdates offset out of the queue's reach: answered from the head, nothing confirmed"
            );
            return true;
        }
        while state.pending.front().is_some_and(|u| u.update_id < offset) {
            if let Some(update) = state.pending.pop_front() {
                state.retries.remove(&update.update_id);
            }
        }
    } else if offset < 0 {
        let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
        while state.pending.len() > keep {
            if let Some(update) = state.pending.pop_front() {
                state.retries.remove(&update.update_id);
            }
        }
    }
    false
}

// ---- webhook -----------------------------------------------------------------------------------

pub(super) fn set_webhook(state: &mut BotState, input: &Input) -> Result<Success, Fail> {
    let params = &input.params;
    let url = string(params, "url").unwrap_or_default();
    if url.is_empty() {
        return Ok(delete_webhook(state, params));
    }
    check_webhook_url(&url)?;
    let certificate = input
        .file_param("certificate")
        .map(|part| part.bytes.as_ref());
    let client = crate::tls::delivery_client(certificate)?;
    let secret_token = string(params, "secret_token").filter(|s| !s.is_empty());
    if let Some(secret) = &secret_token {
        if secret.len() > 256 {
            return Err(Fail::bad_request("secret token is too long"));
        }
        if !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Fail::bad_request(
                "secret token contains unallowed characters",
            ));
        }
    }
    // Telegram clamps max_connections to 1..=100 rather than refusing other values.
    let max_connections =
        usize::try_from(int(params, "max_connections").unwrap_or(40).clamp(1, 100)).unwrap_or(40);
    let allowed_updates = string_list(params, "allowed_updates")?;
    if boolean(params, "drop_pending_updates") {
        state.drop_pending();
    }
    if let Some(kinds) = allowed_updates {
        state.allowed_updates = Some(kinds);
    }
    let unchanged = state.webhook.as_ref().is_some_and(|hook| {
        hook.url == url
            && hook.secret_token == secret_token
            && hook.max_connections == max_connections
    });
    if state.webhook.as_ref().is_none_or(|hook| hook.url != url) {
        state.last_error = None;
    }
    tracing::info!(
        max_connections,
        has_secret_token = secret_token.is_some(),
        "webhook set"
    );
    state.webhook = Some(WebhookConfig {
        url,
        client,
        has_custom_certificate: certificate.is_some(),
        secret_token,
        max_connections,
    });
    Ok(Success {
        result: json!(true),
        description: Some(if unchanged {
            "Webhook is already set"
        } else {
            "Webhook was set"
        }),
    })
}

/// Accepts what Telegram accepts, plus `http://` on a loopback address (the emulator's one
/// departure, so tests need no TLS).
fn check_webhook_url(url: &str) -> Result<(), Fail> {
    let parsed =
        reqwest::Url::parse(url).map_err(|_| Fail::bad_request("invalid webhook URL specified"))?;
    let Some(host) = parsed.host_str() else {
        return Err(Fail::bad_request("invalid webhook URL specified"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "http" if loopback => Ok(()),
        "https"
            if matches!(parsed.port_or_known_default(), Some(80 | 88 | 443 | 8443)) || loopback =>
        {
            Ok(())
        }
        "https" => Err(Fail::bad_request(
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        )),
        _ => Err(Fail::bad_request(
            "bad webhook: HTTPS url must be provided for webhook",
        )),
    }
}

pub(super) fn delete_webhook(state: &mut BotState, params: &Map<String, Value>) -> Success {
    if boolean(params, "drop_pending_updates") {
        state.drop_pending();
    }
    let was_set = state.webhook.take().is_some();
    if was_set {
        tracing::info!("webhook deleted");
    }
    Success {
        result: json!(true),
        description: Some(if was_set {
            "Webhook was deleted"
        } else {
            "Webhook is already deleted"
        }),
    }
}

pub(crate) fn webhook_info(state: &BotState) -> Value {
    let mut info = json!({
        "url": state.webhook.as_ref().map_or("", |hook| hook.url.as_str()),
        "has_custom_certificate": state.webhook.as_ref().is_some_and(|hook| hook.has_custom_certificate),
        "pending_update_count": state.pending.len(),
    });
    if let Some((date, message)) = &state.last_error {
        info["last_error_date"] = json!(date);
        info["last_error_message"] = json!(message);
    }
    if let Some(hook) = &state.webhook {
        info["max_connections"] = json!(hook.max_connections);
        // The address deliveries go to, as the official server reports what it resolved.
        let ip = reqwest::Url::parse(&hook.url)
            .ok()
            .and_then(|url| {
                url.host_str()
                    .map(|h| h.trim_matches(['[', ']']).to_owned())
            })
            .filter(|host| host.parse::<std::net::IpAddr>().is_ok())
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        info["ip_address"] = json!(ip);
        if let Some(kinds) = &state.allowed_updates {
            info["allowed_updates"] = json!(kinds);
        }
    }
    info
}
