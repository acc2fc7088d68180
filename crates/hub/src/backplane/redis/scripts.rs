//! The Lua scripts of the Redis backplane: each is one round trip, run
//! atomically by Redis (`EVALSHA`, falling back to `EVAL` once per
//! connection when the script cache was lost).
//!
//! Keys of a topic `T` (prefix `P`): `P:o:T` the offset counter, `P:e:T`
//! the epoch, `P:s:T` the stream (entry IDs `OFFSET-0`, field `m`: the
//! kind byte `t`/`b` then the payload), `P:p:T` presence (a hash node →
//! count); `P:n:NODE` says a node is alive; `P:c:T` is the channel.

use std::sync::LazyLock;

use redis::Script;

/// Publish: `KEYS` = counter, epoch, stream; `ARGV` = a fresh epoch (used
/// if the topic has none), the payload, the stream's max length (0: no
/// history), the counter's TTL (ms), the stream's TTL (ms), the channel.
/// Returns `{offset, epoch}`. The `PUBLISH` carries
/// `OFFSET:EPOCH:MILLIS:PAYLOAD` (`MILLIS`: Redis' clock, for the lag).
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));

/// The source of [`PUBLISH`] (the publish writer `SCRIPT LOAD`s it at the
/// head of every pipeline it sends, so its `EVALSHA`s never meet
/// `NOSCRIPT` and never need a retry that could reorder them).
pub(super) const PUBLISH_LUA: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SET', KEYS[2], epoch)
end
local ttl = tonumber(ARGV[4])
local off = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local maxlen = tonumber(ARGV[3])
if maxlen > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, off .. '-0', 'm', ARGV[2])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]))
end
local t = redis.call('TIME')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('PUBLISH', ARGV[6], off .. ':' .. epoch .. ':' .. ms .. ':' .. ARGV[2])
return {off, epoch}
"#;

/// History: `KEYS` = counter, epoch, stream; `ARGV` = a fresh epoch (the
/// topic gets it if it has none: a Redis that lost its data shows a new
/// epoch at once), the counter's TTL (ms), the first entry ID wanted (`-`
/// for none: position only), the epoch it must be in (empty: any).
/// Returns `{offset, epoch, entries}`.
pub(super) static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SET', KEYS[2], epoch, 'PX', tonumber(ARGV[2]))
  return {0, epoch, {}}
end
local off = tonumber(redis.call('GET', KEYS[1]) or '0')
local entries = {}
if ARGV[3] ~= '-' and (ARGV[4] == '' or ARGV[4] == epoch) then
  entries = redis.call('XRANGE', KEYS[3], ARGV[3], '+')
end
return {off, epoch, entries}
"#,
    )
});

/// Remote presence: `KEYS` = the topic's presence hash; `ARGV` = this
/// node's id, the prefix of the nodes' liveness keys. Sums the counts of
/// the other nodes that are alive, forgetting the dead.
pub(super) static PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local h = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 1, #h, 2 do
  local node = h[i]
  if node ~= ARGV[1] then
    if redis.call('EXISTS', ARGV[2] .. node) == 1 then
      sum = sum + tonumber(h[i + 1])
    else
      redis.call('HDEL', KEYS[1], node)
    end
  end
end
return sum
"#,
    )
});

/// Remove history: `KEYS` = counter, epoch, stream.
pub(super) static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"#,
    )
});
