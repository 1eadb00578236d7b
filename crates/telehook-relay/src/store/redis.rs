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
use redis::aio::MultiplexedConnection;

use super::{Batch, Notifier, Page, Store, StoreFuture, StoredUpdate, Wake};
use crate::channel::ChannelName;
use crate::config::StoreLimits;
use crate::error::StoreError;

/// Appends one update. KEYS: counter, stream, channel index. ARGV: channel, body, max updates,
/// max age (ms), max channels, wake-up pub/sub channel. Returns the new seq, or -1 when the
/// channel limit is reached.
const APPEND: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_age = tonumber(ARGV[4])
local cutoff = now - max_age
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then
  return -1
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('DEL', KEYS[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], n .. '-0', 't', now, 'u', ARGV[2])
for _ = 1, 100 do
  local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
  if #head == 0 or tonumber(head[1][2][2]) >= cutoff then break end
  redis.call('XDEL', KEYS[2], head[1][1])
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], max_age)
redis.call('PEXPIRE', KEYS[2], max_age)
redis.call('PUBLISH', ARGV[6], ARGV[1] .. ' ' .. n)
return n
";

/// Reads a page. KEYS: counter, stream. ARGV: after, limit, max age (ms).
/// Returns {total, first_retained, seqs, bodies}.
const READ: &str = r"
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = total + 1
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.match(head[1][1], '^(%d+)')) end
local seqs, bodies = {}, {}
local start = math.max(tonumber(ARGV[1]), first - 1)
if start < total then
  local entries = redis.call('XRANGE', KEYS[2], (start + 1) .. '-0', '+', 'COUNT', tonumber(ARGV[2]))
  for _, e in ipairs(entries) do
    local seq = tonumber(string.match(e[1], '^(%d+)'))
    if tonumber(e[2][2]) < cutoff then
      first = seq + 1
    else
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
    conn: MultiplexedConnection,
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
    pub async fn connect(
        options: RedisOptions,
        notifier: Arc<Notifier>,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(options.url.as_str())?;
        let conn = client.get_multiplexed_async_connection().await?;
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
}

/// Receives wake-ups from all instances; reconnects with a growing pause when the link drops,
/// and then wakes every local waiter, since wake-ups may have been lost meanwhile.
async fn listen(
    client: redis::Client,
    wake_channel: String,
    first: redis::aio::PubSub,
    notifier: Arc<Notifier>,
) {
    let mut pubsub = Some(first);
    let mut pause = Duration::from_millis(100);
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
                        pause = Duration::from_millis(100);
                        p
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis wake-up subscription failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(10));
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
            let Some((name, total)) = payload.split_once(' ') else {
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

impl Store for RedisStore {
    fn append(&self, channel: ChannelName, json: String) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let (count_key, stream_key) = self.keys(&channel);
            let mut conn = self.conn.clone();
            let seq: i64 = self
                .append
                .key(&count_key)
                .key(&stream_key)
                .key(format!("{}:channels", self.prefix))
                .arg(channel.as_str())
                .arg(&json)
                .arg(self.limits.retention.max_updates)
                .arg(self.limits.retention.max_age.as_millis() as u64)
                .arg(self.limits.max_channels)
                .arg(format!("{}:wake", self.prefix))
                .invoke_async(&mut conn)
                .await?;
            if seq < 0 {
                return Err(StoreError::TooManyChannels {
                    limit: self.limits.max_channels,
                });
            }
            let seq = seq as u64;
            let updates = vec![StoredUpdate {
                seq,
                json: Arc::from(json),
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
            Ok(seq)
        })
    }

    fn read<'a>(
        &'a self,
        channel: &'a ChannelName,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let (count_key, stream_key) = self.keys(channel);
            let mut conn = self.conn.clone();
            let (total, first_retained, seqs, bodies): (u64, u64, Vec<u64>, Vec<String>) = self
                .read
                .key(&count_key)
                .key(&stream_key)
                .arg(after)
                .arg(limit)
                .arg(self.limits.retention.max_age.as_millis() as u64)
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

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
    }
}
