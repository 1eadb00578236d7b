//! [`BotHandle`]: the test API for one bot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{EmulatorError, WaitTimeout};
use crate::model::{Chat, DeliveryAttempt, Fault, Injected, PlannedFault, RecordedCall, User};
use crate::state::{BotCell, BotState, FaultRule, MAX_UPDATE_ID, Shared, lock, unix_now};

/// Bots one emulator serves.
const MAX_BOTS: usize = 1_000;

/// Fault plans kept per bot (the oldest goes first).
const MAX_PLANNED_FAULTS: usize = 1_000;

/// Serves a bot with `token` (the emulator's and the HTTP test API's `add_bot`).
pub(crate) fn add_bot_to(shared: &Arc<Shared>, token: String) -> Result<BotHandle, EmulatorError> {
    let bot_id = parse_token(&token).ok_or(EmulatorError::InvalidToken)?;
    let cell = {
        let mut bots = lock(&shared.bots);
        if bots.values().any(|bot| bot.id == bot_id) {
            return Err(EmulatorError::DuplicateBot { bot_id });
        }
        if bots.len() >= MAX_BOTS {
            return Err(EmulatorError::TooManyBots { max: MAX_BOTS });
        }
        let cell = Arc::new(BotCell::new(bot_id));
        bots.insert(token, Arc::clone(&cell));
        cell
    };
    tokio::spawn(crate::webhook::run(Arc::clone(shared), Arc::clone(&cell)));
    Ok(BotHandle::from_parts(Arc::clone(shared), cell))
}

fn parse_token(token: &str) -> Option<i64> {
    let (id, secret) = token.split_once(':')?;
    let valid_secret = !secret.is_empty()
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_secret || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().filter(|id| *id > 0)
}

/// The test API for one bot: inject updates as users would, read what the bot did, plan faults.
#[derive(Clone)]
pub struct BotHandle {
    shared: Arc<Shared>,
    bot: Arc<BotCell>,
}

impl fmt::Debug for BotHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotHandle")
            .field("bot_id", &self.bot.id)
            .finish_non_exhaustive()
    }
}

impl BotHandle {
    pub(crate) fn from_parts(shared: Arc<Shared>, bot: Arc<BotCell>) -> Self {
        Self { shared, bot }
    }

    /// The bot's user id.
    pub fn bot_id(&self) -> i64 {
        self.bot.id
    }

    /// The bot's `User` object, as `getMe` returns it.
    pub fn bot_user(&self) -> Value {
        self.bot.user_json()
    }

    // ---- injecting updates ----------------------------------------------------------------

    /// Queues an update of `kind` (e.g. `"message"`, `"poll"`, or a kind the emulator does not
    /// know) with this payload, giving it the next `update_id`. Chats in the payload become
    /// known, so the bot can send to them.
    pub fn inject(&self, kind: &str, payload: Value) -> Injected {
        let injected =
            self.bot
                .state()
                .inject(kind, payload, &self.shared.timing, &self.shared.limits);
        tracing::debug!(
            bot_id = self.bot.id,
            update_id = injected.update_id,
            kind,
            "update injected"
        );
        self.bot.bump();
        injected
    }

    /// `from` sends `text` to the bot in its private chat.
    pub fn private_text(&self, from: &User, text: &str) -> Injected {
        self.send_text(&Chat::private(from), from, text)
    }

    /// `from` writes `text` in `chat` (private, group, supergroup). Texts starting with `/`
    /// carry a `bot_command` entity, as Telegram adds.
    pub fn send_text(&self, chat: &Chat, from: &User, text: &str) -> Injected {
        let message = self.new_message(chat, Some(from), text);
        self.inject("message", message)
    }

    /// A post in a channel.
    pub fn channel_post(&self, chat: &Chat, text: &str) -> Injected {
        let message = self.new_message(chat, None, text);
        self.inject("channel_post", message)
    }

    fn new_message(&self, chat: &Chat, from: Option<&User>, text: &str) -> Value {
        let mut state = self.bot.state();
        let chat_json = chat.to_json();
        state.remember_chat(&chat_json, &self.shared.limits);
        let message_id = state.next_message_id(chat.id).unwrap_or(1);
        let mut message = json!({ "message_id": message_id, "date": unix_now(), "chat": chat_json, "text": text });
        if let Some(from) = from {
            message["from"] = from.to_json();
        } else {
            message["sender_chat"] = chat_json;
        }
        if text.starts_with('/') {
            let command = text.split_whitespace().next().unwrap_or(text);
            message["entities"] = json!([{ "type": "bot_command", "offset": 0, "length": command.encode_utf16().count() }]);
        }
        message
    }

    /// `from` presses an inline keyboard button with `callback_data` = `data` under `message`
    /// (a message the bot sent, e.g. [`RecordedCall::result`]).
    pub fn press_button(&self, from: &User, message: &Value, data: &str) -> Injected {
        let id = self.bot.state().new_query_id(&self.shared.limits);
        let chat_instance = format!(
            "-{}",
            message
                .pointer("/chat/id")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .unsigned_abs()
        );
        self.inject(
            "callback_query",
            json!({ "id": id, "from": from.to_json(), "message": message, "chat_instance": chat_instance, "data": data }),
        )
    }

    /// `from` types `@bot query` in a chat (an inline query).
    pub fn inline_query(&self, from: &User, query: &str) -> Injected {
        let id = self.bot.state().new_query_id(&self.shared.limits);
        self.inject(
            "inline_query",
            json!({ "id": id, "from": from.to_json(), "query": query, "offset": "" }),
        )
    }

    /// Makes the next update's `update_id` jump to `update_id`, lower or higher than the last.
    ///
    /// Telegram documents that when a bot gets no updates for at least a week, the next
    /// `update_id` is chosen at random instead of growing by one (Bot API, [Update]): a bot
    /// that kept its old offset then asks from "the future", and getUpdates answers from the
    /// head of the queue without confirming anything, as the official server does (see the
    /// crate docs). Returns the `update_id` the next update would have had. Ids are at most
    /// 2147483647; after that one the next update gets 1.
    ///
    /// [Update]: https://core.telegram.org/bots/api#update
    pub fn set_next_update_id(&self, update_id: u64) -> Result<u64, EmulatorError> {
        if !(1..=MAX_UPDATE_ID).contains(&update_id) {
            return Err(EmulatorError::InvalidUpdateId { update_id });
        }
        let previous = self
            .bot
            .state()
            .set_next_update_id(update_id)
            .map_err(|pending| EmulatorError::UpdateIdBelowPending { update_id, pending })?;
        tracing::info!(
            bot_id = self.bot.id,
            previous,
            next = update_id,
            "update_id jumps"
        );
        self.bot.bump();
        Ok(previous)
    }

    /// The `update_id` the next injected update gets.
    pub fn next_update_id(&self) -> u64 {
        self.bot.state().next_update_id
    }

    // ---- reading what happened ---------------------------------------------------------------

    /// Every recorded call still kept (see [`crate::Limits::max_recorded_calls`]), oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.bot.state().calls.iter().cloned().collect()
    }

    /// The recorded calls of `method` (case-insensitive), oldest first.
    pub fn calls_to(&self, method: &str) -> Vec<RecordedCall> {
        calls_to(&self.bot.state(), method)
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.bot.state().calls.clear();
    }

    /// The delivery log: every webhook delivery attempt still kept, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.bot.state().deliveries.iter().cloned().collect()
    }

    /// `getWebhookInfo`, as the bot would read it.
    pub fn webhook_info(&self) -> Value {
        crate::methods::webhook_info(&self.bot.state())
    }

    /// A message the emulator keeps (one a user sent in an update, or the bot sent), as it
    /// is now (after edits); `None` once deleted or evicted (see [`crate::Limits`]).
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<Value> {
        self.bot
            .state()
            .messages
            .get(&(chat_id, message_id))
            .cloned()
    }

    /// The bytes of a file the bot sent (by its `file_id`), as the download route serves them.
    pub fn file_bytes(&self, file_id: &str) -> Option<Vec<u8>> {
        self.bot
            .state()
            .files
            .get(file_id)
            .map(|f| f.bytes.to_vec())
    }

    pub(crate) fn file_by_path(&self, path: &str) -> Option<(axum::body::Bytes, Option<String>)> {
        self.bot
            .state()
            .files
            .by_path(path)
            .map(|f| (f.bytes.clone(), f.mime_type.clone()))
    }

    /// Updates waiting for getUpdates or for delivery.
    pub fn pending_update_count(&self) -> usize {
        self.bot.state().pending.len()
    }

    /// Updates dropped because the pending queue was full.
    pub fn dropped_update_count(&self) -> u64 {
        self.bot.state().dropped_updates
    }

    /// getUpdates calls parked in a long poll now.
    pub fn long_polls_waiting(&self) -> usize {
        self.bot.state().long_polls_waiting
    }

    /// `wait_for_*` calls, and `…/wait` requests of the test API, waiting now.
    pub fn waits_waiting(&self) -> usize {
        self.bot.state().waits_waiting
    }

    /// Waits until at least `n` calls (of any method) have been recorded since the start;
    /// returns the recorded calls.
    pub async fn wait_for_calls(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedCall>, WaitTimeout> {
        let n = n as u64;
        self.wait_for(timeout, &format!("{n} calls"), |state| {
            (state.calls_total >= n).then(|| state.calls.iter().cloned().collect())
        })
        .await
    }

    /// Waits until at least `n` calls of `method` (case-insensitive) are recorded; returns them.
    pub async fn wait_for_calls_to(
        &self,
        method: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedCall>, WaitTimeout> {
        self.wait_for(timeout, &format!("{n} calls to {method}"), |state| {
            let calls = calls_to(state, method);
            (calls.len() >= n).then_some(calls)
        })
        .await
    }

    /// Waits until at least `n` delivery attempts are logged; returns the log.
    pub async fn wait_for_deliveries(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<DeliveryAttempt>, WaitTimeout> {
        let n = n as u64;
        self.wait_for(timeout, &format!("{n} delivery attempts"), |state| {
            (state.deliveries_total >= n).then(|| state.deliveries.iter().cloned().collect())
        })
        .await
    }

    /// Waits until update `update_id` was delivered (a 2xx); returns that attempt.
    pub async fn wait_for_delivered(
        &self,
        update_id: u64,
        timeout: Duration,
    ) -> Result<DeliveryAttempt, WaitTimeout> {
        self.wait_for(
            timeout,
            &format!("the delivery of update {update_id}"),
            |state| {
                state
                    .deliveries
                    .iter()
                    .find(|d| d.update_id == update_id && d.is_delivered())
                    .cloned()
            },
        )
        .await
    }

    /// Waits until a getUpdates call is parked in a long poll (waiting for updates).
    pub async fn wait_for_long_poll(&self, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_for(timeout, "a waiting getUpdates", |state| {
            (state.long_polls_waiting > 0).then_some(())
        })
        .await
    }

    /// Waits until no update is pending or in flight.
    pub async fn wait_until_idle(&self, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_for(timeout, "no pending update", |state| {
            (state.pending.is_empty() && state.in_flight.is_empty()).then_some(())
        })
        .await
    }

    async fn wait_for<T>(
        &self,
        timeout: Duration,
        waited_for: &str,
        mut check: impl FnMut(&BotState) -> Option<T>,
    ) -> Result<T, WaitTimeout> {
        let deadline = tokio::time::Instant::from_std(crate::config::instant_after(timeout));
        let mut changed = self.bot.subscribe();
        let mut shutdown = self.shared.shutdown.subscribe();
        let _waiting = Waiting::new(&self.bot);
        loop {
            changed.borrow_and_update();
            {
                let state = self.bot.state();
                if let Some(found) = check(&state) {
                    return Ok(found);
                }
                let stopping = *shutdown.borrow_and_update();
                if stopping || tokio::time::Instant::now() >= deadline {
                    let seen = summary(&state);
                    return Err(WaitTimeout {
                        waited_for: waited_for.to_owned(),
                        timeout,
                        seen: if stopping {
                            format!("{seen}; the emulator is stopping")
                        } else {
                            seen
                        },
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::timeout_at(deadline, changed.changed()) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    // ---- faults --------------------------------------------------------------------------------

    /// Plays `fault` for the next `times` calls of `method` (case-insensitive; `"*"` = any),
    /// whether they come over HTTP or as webhook replies. Faults are used in the order planned;
    /// at most 1 000 plans are kept (the oldest goes first).
    pub fn inject_fault(&self, method: &str, times: usize, fault: Fault) {
        if times == 0 {
            return;
        }
        let mut state = self.bot.state();
        if state.faults.len() >= MAX_PLANNED_FAULTS {
            tracing::warn!(
                bot_id = self.bot.id,
                "{MAX_PLANNED_FAULTS} faults are planned: the oldest plan is dropped"
            );
            state.faults.pop_front();
        }
        state.faults.push_back(FaultRule {
            method: method.to_owned(),
            remaining: times,
            fault,
        });
    }

    /// The faults still planned, in the order they are used.
    pub fn planned_faults(&self) -> Vec<PlannedFault> {
        self.bot
            .state()
            .faults
            .iter()
            .map(|rule| PlannedFault {
                method: rule.method.clone(),
                remaining: rule.remaining,
                fault: rule.fault.clone(),
            })
            .collect()
    }

    /// Removes every planned fault.
    pub fn clear_faults(&self) {
        self.bot.state().faults.clear();
    }
}

/// Counts a `wait_for_*` as waiting while it lives.
struct Waiting<'a>(&'a BotCell);

impl<'a> Waiting<'a> {
    fn new(bot: &'a BotCell) -> Self {
        bot.state().waits_waiting += 1;
        Self(bot)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state().waits_waiting -= 1;
    }
}

fn calls_to(state: &BotState, method: &str) -> Vec<RecordedCall> {
    state
        .calls
        .iter()
        .filter(|c| c.method.eq_ignore_ascii_case(method))
        .cloned()
        .collect()
}

fn summary(state: &BotState) -> String {
    let methods: Vec<&str> = state
        .calls
        .iter()
        .rev()
        .take(10)
        .rev()
        .map(|c| c.method.as_str())
        .collect();
    format!(
        "{} calls (last: {:?}), {} delivery attempts, {} pending updates, last webhook error {:?}",
        state.calls_total,
        methods,
        state.deliveries_total,
        state.pending.len(),
        state.last_error.as_ref().map(|(_, message)| message)
    )
}
