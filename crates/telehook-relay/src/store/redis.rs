//! A shared store on Redis, so several relay instances behind one load balancer serve the same
//! channels and a POST to any instance wakes waiters on all of them.
//!
//! Per channel: a counter (`{prefix}:{channel}:n`) and a Stream (`{prefix}:{channel}:s`) whose
//! entry IDs are `{seq}-0`. Appends and reads are Lua scripts, so each is atomic. After an
//! append, the script publishes `"{channel} {seq}"` on `{prefix}:wake`; every instance
//! subscribes to it and wakes its local waiters. Durability is Redis's own (configure AOF).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Appended, Batch, NewUpdate, Notifier, Page, Store, StoreFuture, StoredUpdate, Wake};
use crate::channel::ChannelName;
use crate::config::StoreLimits;
use crate::error::StoreError;

/// Appends one update. KEYS: counter, stream, live-channel index, update_id index, remembered
/// channels, floor. ARGV: channel, body, max updates, max age (ms), max channels, wake-up pub/sub
/// channel, update_id (or ''), key prefix. Returns {seq, 1 if a redelivery}, or {-1, 0} when the
/// channel limit is reached.
///
/// The counter never expires with the channel's updates, so a count never goes backwards; at
/// most 2 × max channels counters are kept, and forgetting one raises the floor new counters
/// start from above it.
const APPEND: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_age = tonumber(ARGV[4])
local max_channels = tonumber(ARGV[5])
local cutoff = now - max_age
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) and redis.call('ZCARD', KEYS[3]) >= max_channels then
  return {-1, 0}
end
for _ = 1, 100 do
  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
  if #head == 0 or tonumber(head[1][2][2]) >= cutoff then break end
  redis.call('XDEL', KEYS[2], head[1][1])
end
if ARGV[7] ~= '' then
  local seq = redis.call('ZSCORE', KEYS[4], ARGV[7])
  if seq then
    local e = redis.call('XRANGE', KEYS[2], seq .. '-0', seq .. '-0')
    if #e > 0 and e[1][2][4] == ARGV[2] then
      return {tonumber(seq), 1}
    end
  end
end
local n
if redis.call('EXISTS', KEYS[1]) == 0 then
  n = tonumber(redis.call('GET', KEYS[6]) or '0') + 1
  redis.call('SET', KEYS[1], n)
  redis.call('DEL', KEYS[2], KEYS[4])
else
  n = redis.call('INCR', KEYS[1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], n .. '-0', 't', now, 'u', ARGV[2])
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[4], n, ARGV[7]) end
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. string.match(head[1][1], '^(%d+)'))
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZADD', KEYS[5], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], max_age)
redis.call('PEXPIRE', KEYS[4], max_age)
local excess = redis.call('ZCARD', KEYS[5]) - 2 * max_channels
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[5], excess)
  local floor = tonumber(redis.call('GET', KEYS[6]) or '0')
  for i = 1, #old, 2 do
    local key = ARGV[8] .. ':' .. old[i] .. ':n'
    local c = tonumber(redis.call('GET', key) or '0')
    if c > floor then floor = c end
    redis.call('DEL', key)
  end
  redis.call('SET', KEYS[6], floor)
end
redis.call('PUBLISH', ARGV[6], n .. ' ' .. ARGV[1])
return {n, 0}
";

/// Reads a page. KEYS: counter, stream, floor. ARGV: after, limit, max age (ms), max bytes
/// (bodies + one separator each; at least one body is returned).
/// Returns {total, first_retained, seqs, bodies}.
const READ: &str = r"
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local total = tonumber(redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[3]) or '0')
local first = total + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
local seqs, bodies = {}, {}
local start = math.max(tonumber(ARGV[1]), first - 1)
if start < total then
  local entries = redis.call('XRANGE', KEYS[2], (start + 1) .. '-0', '+', 'COUNT', tonumber(ARGV[2]))
  local budget = tonumber(ARGV[4])
  local used = 0
  for _, e in ipairs(entries) do
    local seq = tonumber(string.match(e[1], '^(%d+)'))
    if tonumber(e[2][2]) < cutoff then
      first = seq + 1
    else
      used = used + #e[2][4] + 1
      if #bodies > 0 and used > budget then break end
      table.insert(seqs, seq)
      table.insert(bodies, e[2][4])
    end
  end
end
return {total, first, seqs, bodies}
";

/// Where and how a [`RedisStore`] connects.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and pub/sub channel; instances sharing channels use the same prefix.
    pub prefix: String,
    /// Retention and channel bounds.
    pub limits: StoreLimits,
}

/// Redis-backed [`Store`] shared by several relay instances.
#[derive(Debug)]
pub struct RedisStore {
    conn: ConnectionManager,
    append: redis::Script,
    read: redis::Script,
    prefix: String,
    limits: StoreLimits,
    notifier: Arc<Notifier>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl RedisStore {
    /// Connects, subscribes to wake-ups from other instances (before returning, so none is lost)
    /// and returns the store.
    ///
    /// The command connection is re-established by itself when it drops (Redis restarted, the
    /// connection killed): reconnection attempts back off exponentially from 100 ms to 2 s;
    /// meanwhile requests are answered 503 with `Retry-After`.
    pub async fn connect(
        options: RedisOptions,
        notifier: Arc<Notifier>,
    ) -> Result<Self, StoreError> {
        options.limits.validate()?;
        let client = redis::Client::open(options.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(3)
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let wake_channel = format!("{}:wake", options.prefix);
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&wake_channel).await?;
        let listener = tokio::spawn(listen(client, wake_channel, pubsub, notifier.clone()));
        Ok(Self {
            conn,
            append: redis::Script::new(APPEND),
            read: redis::Script::new(READ),
            prefix: options.prefix,
            limits: options.limits,
            notifier,
            listener,
        })
    }

    fn keys(&self, channel: &ChannelName) -> (String, String) {
        (
            format!("{}:{channel}:n", self.prefix),
            format!("{}:{channel}:s", self.prefix),
        )
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

/// Receives wake-ups from all instances; when the link drops, reconnects with exponential
/// backoff and jitter (backon: 100 ms doubling to 10 s), then wakes every local waiter, since
/// wake-ups may have been lost meanwhile.
async fn listen(
    client: redis::Client,
    wake_channel: String,
    first: redis::aio::PubSub,
    notifier: Arc<Notifier>,
) {
    use backon::BackoffBuilder;
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times();
    let mut pubsub = Some(first);
    let mut pauses = backoff.build();
    loop {
        let current = match pubsub.take() {
            Some(p) => p,
            None => {
                let connected = async {
                    let mut p = client.get_async_pubsub().await?;
                    p.subscribe(&wake_channel).await?;
                    Ok::<_, redis::RedisError>(p)
                }
                .await;
                match connected {
                    Ok(p) => {
                        tracing::info!("redis wake-up subscription restored");
                        notifier.wake_all();
                        pauses = backoff.build();
                        p
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis wake-up subscription failed; retrying");
                        let pause = pauses.next().unwrap_or(Duration::from_secs(10));
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                }
            }
        };
        let mut messages = current.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            let Some((total, name)) = payload.split_once(' ') else {
                continue;
            };
            let (Ok(channel), Ok(total)) = (ChannelName::parse(name), total.parse::<u64>()) else {
                continue;
            };
            notifier.publish(
                &channel,
                Wake {
                    total,
                    latest: None,
                    exact: false,
                },
            );
        }
        tracing::warn!("redis wake-up subscription lost; reconnecting");
    }
}

impl RedisStore {
    fn read_within<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let (count_key, stream_key) = self.keys(channel);
            let mut conn = self.conn.clone();
            let (total, first_retained, seqs, bodies): (u64, u64, Vec<u64>, Vec<String>) = self
                .read
                .key(&count_key)
                .key(&stream_key)
                .key(self.key("floor"))
                .arg(after)
                .arg(limit)
                .arg(super::millis(self.limits.retention.max_age))
                .arg(u64::try_from(max_bytes).unwrap_or(u64::MAX))
                .invoke_async(&mut conn)
                .await?;
            if seqs.len() != bodies.len() {
                return Err(StoreError::Corrupt(format!(
                    "stream {stream_key} returned unpaired entries"
                )));
            }
            let updates = seqs
                .into_iter()
                .zip(bodies)
                .map(|(seq, body)| StoredUpdate {
                    seq,
                    json: Arc::from(body),
                })
                .collect();
            Ok(Page {
                total,
                first_retained,
                updates,
            })
        })
    }
}

impl Store for RedisStore {
    fn append(&self, channel: ChannelName, update: NewUpdate) -> StoreFuture<'_, Appended> {
        Box::pin(async move {
            let (count_key, stream_key) = self.keys(&channel);
            let mut conn = self.conn.clone();
            let (seq, duplicate): (i64, i64) = self
                .append
                .key(&count_key)
                .key(&stream_key)
                .key(self.key("channels"))
                .key(format!("{}:{channel}:i", self.prefix))
                .key(self.key("known"))
                .key(self.key("floor"))
                .arg(channel.as_str())
                .arg(&update.json)
                .arg(self.limits.retention.max_updates)
                .arg(super::millis(self.limits.retention.max_age))
                .arg(self.limits.max_channels)
                .arg(self.key("wake"))
                .arg(
                    update
                        .update_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                )
                .arg(&self.prefix)
                .invoke_async(&mut conn)
                .await?;
            if seq < 0 {
                return Err(StoreError::TooManyChannels {
                    limit: self.limits.max_channels,
                });
            }
            let seq = seq as u64;
            if duplicate == 1 {
                return Ok(Appended {
                    seq,
                    duplicate: true,
                });
            }
            let updates = vec![StoredUpdate {
                seq,
                json: Arc::from(update.json),
            }];
            self.notifier.publish(
                &channel,
                Wake {
                    total: seq,
                    latest: Some(Arc::new(Batch { updates })),
                    // Other instances append too; their wake-ups arrive through Redis, maybe late.
                    exact: false,
                },
            );
            Ok(Appended {
                seq,
                duplicate: false,
            })
        })
    }

    /// Stops reading at the byte budget inside Redis, so a page never holds more than it.
    fn read_bounded<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'a, Page> {
        self.read_within(channel, after, limit, max_bytes)
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Writes a probe key: fails while Redis is unreachable or refuses writes (out of
    /// memory, read-only replica, failed persistence).
    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let () = redis::cmd("SET")
                .arg(self.key("health"))
                .arg(super::now_ms())
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    }
}
