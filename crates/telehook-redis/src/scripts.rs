//! The Lua scripts: each reads and changes one update's hash atomically.
//!
//! The hash's fields: `s` state (`run`, `failed`, `handled`, `gaveup`), `n` failed attempts,
//! `r` the webhook reply (only when handled with one), `l` the lease's end in Redis server
//! milliseconds and `o` the claim's owner (only while running). Time is Redis's own (`TIME`),
//! so instances with skewed clocks agree about leases.

/// Lua shared by the scripts: the server's clock in milliseconds, and the answer for a
/// final state.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function final(key, s)
  if s == 'handled' then
    local r = redis.call('HGET', key, 'r')
    if r then return {'handled', '1', r} end
    return {'handled', '0', ''}
  end
  if s == 'gaveup' then return {'gaveup'} end
  return nil
end
";

/// KEYS[1] the update; ARGV lease ms, owner, retention ms. Answers the final state, `running`
/// while another claim's lease holds, or `run` + failed attempts when the caller now holds
/// the claim. A lapsed lease (its instance died) counts as one failed attempt.
const CLAIM: &str = r"
local key = KEYS[1]
local s = redis.call('HGET', key, 's')
local done = final(key, s)
if done then return done end
local now = now_ms()
local n = tonumber(redis.call('HGET', key, 'n') or '0')
if s == 'run' then
  if tonumber(redis.call('HGET', key, 'l') or '0') > now then return {'running'} end
  n = n + 1
end
redis.call('HSET', key, 's', 'run', 'n', tostring(n), 'l', string.format('%d', now + tonumber(ARGV[1])), 'o', ARGV[2])
redis.call('PEXPIRE', key, ARGV[3])
return {'run', tostring(n)}
";

/// KEYS[1] the update; ARGV lease ms, owner. Extends the lease if the owner still holds the
/// claim: 1, else 0.
const RENEW: &str = r"
local key = KEYS[1]
if redis.call('HGET', key, 's') == 'run' and redis.call('HGET', key, 'o') == ARGV[2] then
  redis.call('HSET', key, 'l', string.format('%d', now_ms() + tonumber(ARGV[1])))
  return 1
end
return 0
";

/// KEYS[1] the update; ARGV state, failed attempts, has reply (`1`/`0`), reply, retention ms,
/// owner. A final state is never overwritten; a failure is recorded only by the claim's owner
/// (a run whose lease lapsed must not release the run that took over).
const FINISH: &str = r"
local key = KEYS[1]
local s = redis.call('HGET', key, 's')
if s == 'handled' or s == 'gaveup' then return 0 end
if ARGV[1] == 'failed' and s == 'run' and redis.call('HGET', key, 'o') ~= ARGV[6] then return 0 end
redis.call('HDEL', key, 'l', 'o', 'r')
redis.call('HSET', key, 's', ARGV[1], 'n', ARGV[2])
if ARGV[3] == '1' then redis.call('HSET', key, 'r', ARGV[4]) end
redis.call('PEXPIRE', key, ARGV[5])
return 1
";

/// KEYS[1] the update. Answers its state without changing it: final, `running` while the
/// lease holds, `failed` + attempts (also for a lapsed lease), `none` if unknown.
const PEEK: &str = r"
local key = KEYS[1]
local s = redis.call('HGET', key, 's')
if not s then return {'none'} end
local done = final(key, s)
if done then return done end
local n = redis.call('HGET', key, 'n') or '0'
if s == 'run' and tonumber(redis.call('HGET', key, 'l') or '0') > now_ms() then
  return {'running'}
end
return {'failed', n}
";

/// The scripts, loaded once per store (`EVALSHA`, falling back to `EVAL` after a restart).
pub(crate) struct Scripts {
    pub(crate) claim: redis::Script,
    pub(crate) renew: redis::Script,
    pub(crate) finish: redis::Script,
    pub(crate) peek: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{PRELUDE}{body}"));
        Self {
            claim: script(CLAIM),
            renew: script(RENEW),
            finish: script(FINISH),
            peek: script(PEEK),
        }
    }
}
