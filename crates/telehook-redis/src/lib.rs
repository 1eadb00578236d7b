#![doc = include_str!("../README.md")]

mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use telehook_core::guard::{
    Claim, Outcome, RedeliveryStore, RunResult, StoreError, StoreFuture, UpdateKey,
};
use tokio::task::AbortHandle;

/// The default key prefix: every key the store writes starts with it.
pub const DEFAULT_KEY_PREFIX: &str = "telehook:guard:";

/// The default retention of an update's entry: 24 hours, as long as Telegram keeps an update
/// it could deliver again ("Updates … will not be kept longer than 24 hours",
/// <https://core.telegram.org/bots/api#getting-updates>; tdlib/telegram-bot-api
/// `Client::add_message_update` gives a message update `date + 86400` to live).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The default lease of a run in flight. The instance running the handler renews it every
/// third of the lease; if that instance dies, its claim lapses after at most this long and a
/// redelivery runs the update again (counted as one failed attempt).
pub const DEFAULT_IN_FLIGHT_LEASE: Duration = Duration::from_secs(30);

/// The default bound on each Redis call (connect included).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// The default longest pause between two looks at a run in flight, for a redelivery waiting
/// for it on another instance (the first looks come sooner: 5 ms, doubling).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What the store does when Redis is slow (a call exceeds the command timeout) or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRedisError {
    /// Refuse the delivery: the dispatcher answers `503` and Telegram delivers the update again
    /// later (<https://core.telegram.org/bots/api#setwebhook>: "In case of an unsuccessful
    /// request … we will repeatedly give up after a reasonable amount of attempts"). No update
    /// runs twice because of the outage; updates wait until Redis is back (Telegram keeps them
    /// up to 24 hours). The default.
    #[default]
    FailClosed,
    /// Handle the delivery anyway, unguarded: a claim Redis cannot answer becomes a first run.
    /// Updates keep flowing during an outage, but a redelivery landing on another instance may
    /// run the handler a second time.
    FailOpen,
}

/// A [`RedisStore`] that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Redis URL is not valid.
    #[error("invalid Redis URL")]
    Url(#[source] redis::RedisError),
    /// The connection manager could not be created.
    #[error("cannot create the Redis connection manager")]
    Connection(#[source] redis::RedisError),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Setting(&'static str),
}

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    key_prefix: String,
    retention: Duration,
    in_flight_lease: Duration,
    command_timeout: Duration,
    poll_interval: Duration,
    on_redis_error: OnRedisError,
}

impl RedisStoreBuilder {
    /// The prefix of every key, so that several bots share one Redis (default
    /// [`DEFAULT_KEY_PREFIX`]). Give each bot its own.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long an update's outcome is kept for redeliveries (default [`DEFAULT_RETENTION`],
    /// Telegram's whole redelivery window). Redis holds about 150 bytes per update plus the
    /// webhook reply, for this long.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long a claim survives without renewal (default [`DEFAULT_IN_FLIGHT_LEASE`]): the
    /// time after which an update whose instance died is run again.
    #[must_use]
    pub fn in_flight_lease(mut self, lease: Duration) -> Self {
        self.in_flight_lease = lease;
        self
    }

    /// The bound on every Redis call, connecting included (default
    /// [`DEFAULT_COMMAND_TIMEOUT`]). A call that exceeds it is a Redis error, handled by
    /// [`RedisStoreBuilder::on_redis_error`].
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The longest pause between two looks at a run in flight on another instance (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// What to do when Redis is slow or down (default [`OnRedisError::FailClosed`]).
    #[must_use]
    pub fn on_redis_error(mut self, policy: OnRedisError) -> Self {
        self.on_redis_error = policy;
        self
    }

    /// The store. It connects lazily and reconnects by itself, so it builds while Redis is
    /// down. Call it inside a Tokio runtime.
    pub fn build(self) -> Result<RedisStore, BuildError> {
        for (name, value) in [
            ("retention must be positive", self.retention),
            (
                "in_flight_lease must be at least 3 ms",
                self.in_flight_lease,
            ),
            ("command_timeout must be positive", self.command_timeout),
            ("poll_interval must be positive", self.poll_interval),
        ] {
            if value.is_zero() {
                return Err(BuildError::Setting(name));
            }
        }
        if self.in_flight_lease < Duration::from_millis(3) {
            return Err(BuildError::Setting("in_flight_lease must be at least 3 ms"));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(BuildError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2)
            .set_connection_timeout(Some(self.command_timeout))
            .set_response_timeout(Some(self.command_timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(BuildError::Connection)?;
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Ok(RedisStore {
            conn,
            scripts: Arc::new(scripts::Scripts::new()),
            config: Arc::new(self),
            instance: format!("{seed:016x}-{}", std::process::id()),
            next_claim: AtomicU64::new(0),
            running: Arc::new(Mutex::new(HashMap::new())),
        })
    }
}

/// A run this instance claimed: who it is in Redis and the task renewing its lease.
struct Running {
    owner: String,
    renewer: AbortHandle,
}

/// A [`RedeliveryStore`] on Redis, shared by every instance of a bot.
///
/// Each update is one Redis hash, `{prefix}{update_id}:{body hash}`, holding its state
/// (running, failed, handled, given up), the failed attempts so far, the webhook reply and
/// the lease of the run in flight. Claims and results are Lua scripts, so two instances never
/// both win a claim. A redelivery that finds the update running on another instance looks
/// at it again (5 ms, doubling up to the poll interval) until the run ends or the dispatcher's
/// timeout ends the wait. Every call is bounded by the command timeout; a failure follows
/// [`OnRedisError`].
pub struct RedisStore {
    conn: ConnectionManager,
    scripts: Arc<scripts::Scripts>,
    config: Arc<RedisStoreBuilder>,
    /// Random per store: tells this store's claims from other instances'.
    instance: String,
    next_claim: AtomicU64,
    /// Runs claimed here and not finished: bounded by the dispatcher's in-flight limit.
    running: Arc<Mutex<HashMap<UpdateKey, Running>>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.config.key_prefix)
            .field("retention", &self.config.retention)
            .field("in_flight_lease", &self.config.in_flight_lease)
            .field("command_timeout", &self.config.command_timeout)
            .field("on_redis_error", &self.config.on_redis_error)
            .field("running_here", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        for (_, running) in self.lock().drain() {
            running.renewer.abort();
        }
    }
}

/// An update's state as Redis holds it.
enum State {
    /// Nothing is known (never seen, expired, or Redis lost its data).
    Unknown,
    Running,
    Failed(u32),
    Handled(Option<Bytes>),
    GaveUp,
}

impl RedisStore {
    /// A builder for a store on the Redis at `url` (`redis://host:port/db`, `rediss://` for
    /// TLS if the `redis` crate's TLS feature is on).
    #[must_use]
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            retention: DEFAULT_RETENTION,
            in_flight_lease: DEFAULT_IN_FLIGHT_LEASE,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            on_redis_error: OnRedisError::default(),
        }
    }

    /// The policy applied when Redis is slow or down.
    pub fn on_redis_error(&self) -> OnRedisError {
        self.config.on_redis_error
    }

    /// The Redis key of an update.
    pub fn key_of(&self, key: UpdateKey) -> String {
        format!(
            "{}{}:{:016x}",
            self.config.key_prefix, key.update_id, key.body_hash
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UpdateKey, Running>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one script under the command timeout.
    async fn call<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: redis::ScriptInvocation<'_>,
        update_id: u64,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(
            self.config.command_timeout,
            invocation.invoke_async(&mut conn),
        )
        .await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::with_source(
                format!("Redis failed to {what} update {update_id}"),
                e,
            )),
            Err(_) => Err(StoreError::new(format!(
                "Redis did not answer within {:?} to {what} update {update_id}",
                self.config.command_timeout
            ))),
        }
    }

    async fn claim_in_redis(&self, key: UpdateKey) -> Result<Claim, StoreError> {
        let owner = format!(
            "{}-{}",
            self.instance,
            self.next_claim.fetch_add(1, Ordering::Relaxed)
        );
        let redis_key = self.key_of(key);
        let mut invocation = self.scripts.claim.key(&redis_key);
        invocation
            .arg(millis(self.config.in_flight_lease))
            .arg(&owner)
            .arg(millis(self.config.retention));
        let reply: Vec<Vec<u8>> = self.call("claim", invocation, key.update_id).await?;
        Ok(match parse_state(&reply, key.update_id)? {
            (State::Failed(failed_attempts), true) => {
                if failed_attempts > 0 {
                    tracing::debug!(
                        update_id = key.update_id,
                        failed_attempts,
                        "redelivery of a failed update: running it again"
                    );
                }
                self.start_renewing(key, redis_key, owner);
                Claim::Run { failed_attempts }
            }
            (State::Running, _) => Claim::InFlight,
            (State::Handled(reply), _) => Claim::Done(Outcome::Handled { reply }),
            (State::GaveUp, _) => Claim::Done(Outcome::GaveUp),
            (State::Failed(_) | State::Unknown, _) => {
                return Err(StoreError::new(format!(
                    "unexpected claim answer from Redis for update {}",
                    key.update_id
                )));
            }
        })
    }

    /// Renews the lease of a run claimed here every third of the lease until it finishes.
    fn start_renewing(&self, key: UpdateKey, redis_key: String, owner: String) {
        let conn = self.conn.clone();
        let scripts = Arc::clone(&self.scripts);
        let config = Arc::clone(&self.config);
        let task_owner = owner.clone();
        let renewer = tokio::spawn(async move {
            let period = config.in_flight_lease / 3;
            loop {
                tokio::time::sleep(period).await;
                let mut conn = conn.clone();
                let mut invocation = scripts.renew.key(&redis_key);
                invocation
                    .arg(millis(config.in_flight_lease))
                    .arg(&task_owner);
                match tokio::time::timeout(
                    config.command_timeout,
                    invocation.invoke_async::<i64>(&mut conn),
                )
                .await
                {
                    Ok(Ok(1)) => {}
                    Ok(Ok(_)) => {
                        tracing::warn!(
                            update_id = key.update_id,
                            "the claim of a running update lapsed (Redis lost it, or another \
                             instance took it over after a lease expired)"
                        );
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!(
                        update_id = key.update_id,
                        error = %e,
                        "cannot renew the claim of a running update; retrying"
                    ),
                    Err(_) => tracing::warn!(
                        update_id = key.update_id,
                        "Redis did not answer the renewal of a running update's claim; retrying"
                    ),
                }
            }
        })
        .abort_handle();
        if let Some(old) = self.lock().insert(key, Running { owner, renewer }) {
            old.renewer.abort();
        }
    }

    async fn finish_in_redis(&self, key: UpdateKey, result: RunResult) -> Result<(), StoreError> {
        let owner = match self.lock().remove(&key) {
            Some(running) => {
                running.renewer.abort();
                running.owner
            }
            None => String::new(),
        };
        let (state, failed_attempts, reply) = match result {
            RunResult::Done(Outcome::Handled { reply }) => ("handled", 0, reply),
            RunResult::Done(Outcome::GaveUp) => ("gaveup", 0, None),
            RunResult::Failed { failed_attempts } => ("failed", failed_attempts, None),
        };
        let mut invocation = self.scripts.finish.key(self.key_of(key));
        invocation
            .arg(state)
            .arg(failed_attempts)
            .arg(u8::from(reply.is_some()))
            .arg(reply.as_deref().unwrap_or_default())
            .arg(millis(self.config.retention))
            .arg(owner);
        let _: i64 = self
            .call("record the outcome of", invocation, key.update_id)
            .await?;
        Ok(())
    }

    async fn wait_in_redis(&self, key: UpdateKey) -> Result<RunResult, StoreError> {
        let redis_key = self.key_of(key);
        let mut pause = Duration::from_millis(5);
        loop {
            let invocation = self.scripts.peek.key(&redis_key);
            let reply: Vec<Vec<u8>> = self.call("look at", invocation, key.update_id).await?;
            match parse_state(&reply, key.update_id)?.0 {
                State::Running => {}
                State::Unknown => return Ok(RunResult::Failed { failed_attempts: 0 }),
                State::Failed(failed_attempts) => return Ok(RunResult::Failed { failed_attempts }),
                State::Handled(reply) => return Ok(RunResult::Done(Outcome::Handled { reply })),
                State::GaveUp => return Ok(RunResult::Done(Outcome::GaveUp)),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.config.poll_interval);
        }
    }
}

impl RedeliveryStore for RedisStore {
    fn claim(&self, key: UpdateKey) -> StoreFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            match self.claim_in_redis(key).await {
                Ok(claim) => Ok(claim),
                Err(e) if self.config.on_redis_error == OnRedisError::FailOpen => {
                    tracing::warn!(
                        update_id = key.update_id,
                        error = %e,
                        "Redis unavailable: handling the update unguarded (on_redis_error = FailOpen)"
                    );
                    Ok(Claim::Run { failed_attempts: 0 })
                }
                Err(e) => Err(e),
            }
        })
    }

    fn wait(&self, key: UpdateKey) -> StoreFuture<'_, Result<RunResult, StoreError>> {
        Box::pin(self.wait_in_redis(key))
    }

    fn finish(&self, key: UpdateKey, result: RunResult) -> StoreFuture<'_, Result<(), StoreError>> {
        Box::pin(self.finish_in_redis(key, result))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Reads a script's answer: the state, and whether the caller now holds the claim.
fn parse_state(reply: &[Vec<u8>], update_id: u64) -> Result<(State, bool), StoreError> {
    let bad = || {
        StoreError::new(format!(
            "unexpected answer from Redis for update {update_id}"
        ))
    };
    let number = |field: Option<&Vec<u8>>| -> Result<u32, StoreError> {
        field
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)
    };
    let tag = reply.first().ok_or_else(bad)?;
    Ok(match tag.as_slice() {
        b"none" => (State::Unknown, false),
        b"running" => (State::Running, false),
        b"run" => (State::Failed(number(reply.get(1))?), true),
        b"failed" => (State::Failed(number(reply.get(1))?), false),
        b"gaveup" => (State::GaveUp, false),
        b"handled" => {
            let reply = match (reply.get(1).map(Vec::as_slice), reply.get(2)) {
                (Some(b"1"), Some(body)) => Some(Bytes::copy_from_slice(body)),
                (Some(b"0"), _) => None,
                _ => return Err(bad()),
            };
            (State::Handled(reply), false)
        }
        _ => return Err(bad()),
    })
}
