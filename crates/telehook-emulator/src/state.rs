//! What the emulator keeps per bot, shared by the HTTP server, the delivery engine and the
//! test API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::{Limits, Timing};
use crate::files::FileStore;
use crate::model::{
    DeliveryAttempt, Fault, Injected, Lane, OPT_IN_KINDS, RecordedCall, lane, lifetime,
};

/// The largest `update_id`: Telegram's are 32-bit (tdlib `TQueue::EventId`).
pub(crate) const MAX_UPDATE_ID: u64 = i32::MAX as u64;

/// Everything one emulator serves.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) bots: Mutex<HashMap<String, Arc<BotCell>>>,
    pub(crate) timing: Timing,
    pub(crate) limits: Limits,
    /// Becomes true when the emulator shuts down; every task watches it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Becomes true when the HTTP server has stopped (every open request answered).
    pub(crate) closed: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn bot(&self, token: &str) -> Option<Arc<BotCell>> {
        lock(&self.bots).get(token).cloned()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One bot: its identity, its state, and a signal bumped on every change.
#[derive(Debug)]
pub(crate) struct BotCell {
    pub(crate) id: i64,
    pub(crate) username: String,
    state: Mutex<BotState>,
    changed: watch::Sender<u64>,
}

impl BotCell {
    pub(crate) fn new(id: i64) -> Self {
        Self {
            id,
            username: format!("telehook_{id}_bot"),
            state: Mutex::new(BotState::default()),
            changed: watch::Sender::new(0),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, BotState> {
        lock(&self.state)
    }

    /// Wakes everything waiting on this bot (long polls, the delivery engine, test waiters).
    pub(crate) fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The bot's own `User` object.
    pub(crate) fn user_json(&self) -> Value {
        json!({
            "id": self.id,
            "is_bot": true,
            "first_name": "telehook emulator",
            "username": self.username,
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": true,
        })
    }
}

/// A queued update.
#[derive(Debug, Clone)]
pub(crate) struct StoredUpdate {
    pub(crate) update_id: u64,
    pub(crate) json: Value,
    pub(crate) lane: Lane,
    /// When an undelivered webhook update is dropped.
    pub(crate) expires_at: Instant,
}

/// The webhook as set by setWebhook.
#[derive(Debug, Clone)]
pub(crate) struct WebhookConfig {
    pub(crate) url: String,
    /// Delivers to `url`; trusts the uploaded certificate, if any.
    pub(crate) client: reqwest::Client,
    pub(crate) has_custom_certificate: bool,
    pub(crate) secret_token: Option<String>,
    pub(crate) max_connections: usize,
}

/// Retry bookkeeping of an update whose delivery failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryState {
    pub(crate) failures: u32,
    pub(crate) next_at: Instant,
    pub(crate) cap: Duration,
}

#[derive(Debug)]
pub(crate) struct FaultRule {
    pub(crate) method: String,
    pub(crate) remaining: usize,
    pub(crate) fault: Fault,
}

#[derive(Debug)]
pub(crate) struct KnownChat {
    pub(crate) json: Value,
    pub(crate) next_message_id: i64,
}

#[derive(Debug)]
pub(crate) struct BotState {
    pub(crate) next_update_id: u64,
    pub(crate) pending: VecDeque<StoredUpdate>,
    pub(crate) dropped_updates: u64,
    /// Set by getUpdates or setWebhook; `None` = Telegram's default.
    pub(crate) allowed_updates: Option<Vec<String>>,
    pub(crate) webhook: Option<WebhookConfig>,
    pub(crate) last_error: Option<(i64, String)>,
    /// Bumped by every getUpdates; an older one still waiting sees the change and gets a 409.
    pub(crate) poll_generation: u64,
    /// getUpdates calls parked in a long poll right now.
    pub(crate) long_polls_waiting: usize,
    /// `wait_for_*` calls (and the test API's `…/wait` requests) waiting now.
    pub(crate) waits_waiting: usize,
    pub(crate) in_flight: HashMap<Lane, u64>,
    pub(crate) retries: HashMap<u64, RetryState>,
    pub(crate) chats: HashMap<i64, KnownChat>,
    pub(crate) open_queries: VecDeque<String>,
    pub(crate) next_query_id: u64,
    pub(crate) calls: VecDeque<RecordedCall>,
    pub(crate) calls_total: u64,
    pub(crate) deliveries: VecDeque<DeliveryAttempt>,
    pub(crate) deliveries_total: u64,
    pub(crate) faults: VecDeque<FaultRule>,
    /// Messages by (chat id, message id), for edits, copies and forwards; oldest first in
    /// `message_order`.
    pub(crate) messages: HashMap<(i64, i64), Value>,
    pub(crate) message_order: VecDeque<(i64, i64)>,
    /// Users seen in updates, by id.
    pub(crate) users: HashMap<i64, Value>,
    /// Members banned by banChatMember: (chat id, user id) → until_date.
    pub(crate) bans: HashMap<(i64, i64), i64>,
    /// setMyCommands, by (scope, language_code).
    pub(crate) commands: HashMap<(String, String), Value>,
    pub(crate) files: FileStore,
}

impl Default for BotState {
    fn default() -> Self {
        Self {
            next_update_id: 1,
            pending: VecDeque::new(),
            dropped_updates: 0,
            allowed_updates: None,
            webhook: None,
            last_error: None,
            poll_generation: 0,
            long_polls_waiting: 0,
            waits_waiting: 0,
            in_flight: HashMap::new(),
            retries: HashMap::new(),
            chats: HashMap::new(),
            open_queries: VecDeque::new(),
            next_query_id: 1,
            calls: VecDeque::new(),
            calls_total: 0,
            deliveries: VecDeque::new(),
            deliveries_total: 0,
            faults: VecDeque::new(),
            messages: HashMap::new(),
            message_order: VecDeque::new(),
            users: HashMap::new(),
            bans: HashMap::new(),
            commands: HashMap::new(),
            files: FileStore::default(),
        }
    }
}

fn push_bounded<T>(buffer: &mut VecDeque<T>, item: T, cap: usize) {
    if cap == 0 {
        return;
    }
    while buffer.len() >= cap {
        buffer.pop_front();
    }
    buffer.push_back(item);
}

impl BotState {
    /// True if an update of `kind` passes the current `allowed_updates`.
    pub(crate) fn allows(&self, kind: &str) -> bool {
        match &self.allowed_updates {
            Some(kinds) if !kinds.is_empty() => kinds.iter().any(|k| k == kind),
            _ => !OPT_IN_KINDS.contains(&kind),
        }
    }

    /// Queues an update of `kind`, giving it the next `update_id` (1 after 2147483647).
    pub(crate) fn inject(
        &mut self,
        kind: &str,
        payload: Value,
        timing: &Timing,
        limits: &Limits,
    ) -> Injected {
        let update_id = self.next_update_id;
        // update_ids are 32-bit (tdlib `TQueue::EventId`); past the top they start again
        // from 1, as Telegram restarts them after a quiet week.
        self.next_update_id = if update_id >= MAX_UPDATE_ID {
            tracing::warn!(update_id, "update_id reached 2147483647: the next one is 1");
            1
        } else {
            update_id + 1
        };
        if let Some(chat) = payload
            .get("chat")
            .or_else(|| payload.pointer("/message/chat"))
        {
            self.remember_chat(chat, limits);
        }
        self.remember_payload(kind, &payload, limits);
        let key = lane(update_id, kind, &payload);
        let mut update = serde_json::Map::new();
        update.insert("update_id".into(), json!(update_id));
        update.insert(kind.to_owned(), payload);
        let update = Value::Object(update);
        let queued = self.allows(kind);
        if queued {
            if limits.max_pending_updates > 0
                && self.pending.len() >= limits.max_pending_updates
                && let Some(dropped) = self.pending.pop_front()
            {
                self.retries.remove(&dropped.update_id);
                self.dropped_updates += 1;
                tracing::warn!(
                    update_id = dropped.update_id,
                    "pending updates are full: the oldest was dropped"
                );
            }
            if limits.max_pending_updates > 0 {
                self.pending.push_back(StoredUpdate {
                    update_id,
                    json: update.clone(),
                    lane: key,
                    expires_at: timing.deadline(lifetime(kind)),
                });
            }
        }
        Injected {
            update_id,
            update,
            queued,
        }
    }

    /// Makes the next update get `update_id`, lower or higher than the last one, as Telegram
    /// does after a bot got no updates for a week. Refused while an update at or above `next` is
    /// pending: the ids of a queue only grow.
    pub(crate) fn set_next_update_id(&mut self, next: u64) -> Result<u64, u64> {
        if let Some(last) = self.pending.back().map(|u| u.update_id)
            && last >= next
        {
            return Err(last);
        }
        let previous = self.next_update_id;
        self.next_update_id = next;
        Ok(previous)
    }

    /// Remembers what an injected update shows: its users, its message, its query id.
    fn remember_payload(&mut self, kind: &str, payload: &Value, limits: &Limits) {
        for pointer in ["/from", "/user", "/message/from"] {
            if let Some(user) = payload.pointer(pointer) {
                self.remember_user(user, limits);
            }
        }
        let message = match kind {
            "message" | "edited_message" | "channel_post" | "edited_channel_post" => Some(payload),
            _ => None,
        };
        if let Some(message) = message {
            self.remember_message(message, limits);
        }
        if matches!(
            kind,
            "callback_query" | "inline_query" | "shipping_query" | "pre_checkout_query"
        ) && let Some(id) = payload.get("id").and_then(Value::as_str)
            && !self.open_queries.iter().any(|q| q == id)
        {
            push_bounded(
                &mut self.open_queries,
                id.to_owned(),
                limits.max_open_queries,
            );
        }
    }

    pub(crate) fn remember_user(&mut self, user: &Value, limits: &Limits) {
        let Some(id) = user.get("id").and_then(Value::as_i64) else {
            return;
        };
        if !self.users.contains_key(&id) && self.users.len() >= limits.max_known_chats {
            let Some(evicted) = self.users.keys().next().copied() else {
                return;
            };
            self.users.remove(&evicted);
        }
        self.users.insert(id, user.clone());
    }

    /// Keeps a message for later edits, copies and forwards.
    pub(crate) fn remember_message(&mut self, message: &Value, limits: &Limits) {
        let (Some(chat), Some(id)) = (
            message.pointer("/chat/id").and_then(Value::as_i64),
            message.get("message_id").and_then(Value::as_i64),
        ) else {
            return;
        };
        if limits.max_stored_messages == 0 {
            return;
        }
        if self.messages.insert((chat, id), message.clone()).is_none() {
            self.message_order.push_back((chat, id));
        }
        if let Some(known) = self.chats.get_mut(&chat) {
            known.next_message_id = known.next_message_id.max(id.saturating_add(1));
        }
        while self.message_order.len() > limits.max_stored_messages {
            if let Some(oldest) = self.message_order.pop_front() {
                self.messages.remove(&oldest);
            }
        }
    }

    pub(crate) fn forget_message(&mut self, chat: i64, id: i64) -> bool {
        self.messages.remove(&(chat, id)).is_some()
    }

    pub(crate) fn remember_chat(&mut self, chat: &Value, limits: &Limits) {
        let Some(id) = chat.get("id").and_then(Value::as_i64) else {
            return;
        };
        if let Some(known) = self.chats.get_mut(&id) {
            known.json = chat.clone();
            return;
        }
        if self.chats.len() >= limits.max_known_chats {
            let Some(evicted) = self.chats.keys().next().copied() else {
                return;
            };
            self.chats.remove(&evicted);
        }
        self.chats.insert(
            id,
            KnownChat {
                json: chat.clone(),
                next_message_id: 1,
            },
        );
    }

    /// The next message id in chat `id` (message ids count per chat).
    pub(crate) fn next_message_id(&mut self, id: i64) -> Option<i64> {
        let chat = self.chats.get_mut(&id)?;
        let message_id = chat.next_message_id;
        chat.next_message_id = chat.next_message_id.saturating_add(1);
        Some(message_id)
    }

    pub(crate) fn new_query_id(&mut self, limits: &Limits) -> String {
        let id = format!("4382{:012}", self.next_query_id);
        self.next_query_id += 1;
        push_bounded(&mut self.open_queries, id.clone(), limits.max_open_queries);
        id
    }

    /// Answers a callback or inline query; false if it is unknown or already answered.
    pub(crate) fn close_query(&mut self, id: &str) -> bool {
        match self.open_queries.iter().position(|q| q == id) {
            Some(at) => {
                self.open_queries.remove(at);
                true
            }
            None => false,
        }
    }

    pub(crate) fn record_call(&mut self, mut call: RecordedCall, limits: &Limits) {
        call.seq = self.calls_total;
        self.calls_total += 1;
        push_bounded(&mut self.calls, call, limits.max_recorded_calls);
    }

    pub(crate) fn record_delivery(&mut self, attempt: DeliveryAttempt, limits: &Limits) {
        self.deliveries_total += 1;
        push_bounded(&mut self.deliveries, attempt, limits.max_delivery_log);
    }

    /// Forgets every pending update (drop_pending_updates).
    pub(crate) fn drop_pending(&mut self) {
        self.pending.clear();
        self.retries.clear();
    }

    /// Takes the fault planned for the next call of `method`, if any.
    pub(crate) fn take_fault(&mut self, method: &str) -> Option<Fault> {
        let at = self
            .faults
            .iter()
            .position(|rule| rule.method == "*" || rule.method.eq_ignore_ascii_case(method))?;
        let rule = &mut self.faults[at];
        let fault = rule.fault.clone();
        rule.remaining -= 1;
        if rule.remaining == 0 {
            self.faults.remove(at);
        }
        Some(fault)
    }
}
