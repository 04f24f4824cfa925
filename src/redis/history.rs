//! [`RedisHistory`]: room history in Redis, shared by every node.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::RedisOptions;
use crate::history::{
    HistoryError, HistoryLimits, HistoryQuery, HistoryRead, HistoryStore, StoreFuture,
    StoredMessage,
};
use crate::protocol::{EncodedMessage, StreamPosition};
use crate::ws::{Message, PreparedMessage};

/// KEYS: meta, stream. ARGV: head, tail, candidate epoch, max messages, max age (ms),
/// channel ('' for none), bus header prefix, room. Returns {seq, epoch}.
const APPEND: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local s = string.format('%d', seq)
local frame = ARGV[1] .. ',"seq":' .. s .. ',"epoch":"' .. epoch .. '",' .. ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', 's', s, 'f', frame)
redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', now - tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' ' .. s .. ' ' .. epoch .. ' ' .. #ARGV[8] .. '\n' .. ARGV[8] .. frame)
end
return {seq, epoch}
"#;

/// KEYS: meta, stream. ARGV: candidate epoch, max age (ms), mode ('after', 'last',
/// 'position'), then for 'after': since epoch, since seq, max; for 'last': n.
/// Returns {seq, epoch, complete (0/1), first seq, frame...}.
const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local top = tonumber(redis.call('HGET', KEYS[1], 'seq'))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', now - tonumber(ARGV[2])))
local out = {top, epoch, 1, 0}
local k = 0
if ARGV[3] == 'after' then
  local since = tonumber(ARGV[5])
  if ARGV[4] ~= epoch or since > top then out[3] = 0; return out end
  k = top - since
  if k == 0 then return out end
  if k > tonumber(ARGV[6]) then out[3] = 0; return out end
elseif ARGV[3] == 'last' then
  k = tonumber(ARGV[4])
end
if k == 0 then return out end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', k)
if #entries == 0 then
  if ARGV[3] == 'after' then out[3] = 0 end
  return out
end
local first = tonumber(entries[#entries][2][2])
if ARGV[3] == 'after' and (#entries ~= k or first ~= tonumber(ARGV[5]) + 1) then
  out[3] = 0
  return out
end
out[4] = first
for i = #entries, 1, -1 do
  out[#out + 1] = entries[i][2][4]
end
return out
"#;

/// Room history in Redis, shared by every node. A cheap `Clone` handle; use it alone
/// ([`HubBuilder::history_store`](crate::HubBuilder::history_store)) for history that
/// survives a restart of the hub, or through a
/// [`RedisBackplane`](super::RedisBackplane), which uses it.
///
/// Per room two keys: `{prefix}:m:{room}`, a hash with the stream's `epoch` and last
/// `seq`, and `{prefix}:h:{room}`, a Redis stream of `{s: seq, f: frame}` entries.
///
/// - **Atomic append.** One Lua script reads (or creates) the epoch, increments the
///   `seq`, builds the frame with its position, `XADD`s it and, for the backplane,
///   `PUBLISH`es it. Redis runs scripts one at a time, so two nodes never get the same
///   `seq`, and bus order is `seq` order.
/// - **Why a Redis stream** rather than a sorted set: its entry ids are times, so the
///   age bound is one `XTRIM MINID` (a sorted set by `seq` would need a second index by
///   time), and the count bound is `XADD MAXLEN`; `XREVRANGE .. COUNT k` reads the
///   last k entries, which are exactly the `seq`s after a position when none is
///   missing (checked).
/// - **The epoch lives in Redis**, created (random, made here and passed in) by the
///   first append or read of a room. Both keys expire `max_age` after the last append
///   or read: a stream whose messages all aged out and nobody touched is freed, and
///   comes back with a new epoch. A Redis restarted without persistence loses them,
///   and with them the epoch: clients are told `recovered: false`.
#[derive(Clone)]
pub struct RedisHistory(Arc<Inner>);

struct Inner {
    /// Multiplexed, reconnects by itself (with backoff) after a failed command.
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    append: redis::Script,
    read: redis::Script,
}

impl fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHistory")
            .field("prefix", &self.0.prefix)
            .finish_non_exhaustive()
    }
}

/// A fresh random epoch (16 hex digits), offered to a script that finds none.
fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn unavailable(e: impl fmt::Display) -> HistoryError {
    HistoryError::Unavailable(format!("redis: {e}"))
}

impl RedisHistory {
    /// History on the Redis at `url`, with `options`' prefix and command timeout. Call
    /// inside a tokio runtime; connects on first use.
    pub fn new(url: &str, options: &RedisOptions) -> Result<Self, redis::RedisError> {
        Self::with_client(redis::Client::open(url)?, options)
    }

    pub(crate) fn with_client(
        client: redis::Client,
        options: &RedisOptions,
    ) -> Result<Self, redis::RedisError> {
        // A failed command fails at once (no retries queued while Redis is down: the
        // caller answers `unavailable`); the manager reconnects in the background.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(options.reconnect_min)
            .set_max_delay(options.reconnect_max)
            .set_connection_timeout(Some(options.command_timeout))
            .set_response_timeout(Some(options.command_timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisHistory(Arc::new(Inner {
            conn,
            prefix: options.prefix.clone(),
            timeout: options.command_timeout,
            append: redis::Script::new(APPEND),
            read: redis::Script::new(READ),
        })))
    }

    fn keys(&self, room: &str) -> (String, String) {
        (
            format!("{}:m:{room}", self.0.prefix),
            format!("{}:h:{room}", self.0.prefix),
        )
    }

    /// Runs `fut` within the command timeout.
    async fn timed<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, HistoryError> {
        match tokio::time::timeout(self.0.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    /// The append script; with `bus` (channel, header prefix) it publishes too.
    pub(crate) async fn append_script(
        &self,
        room: &str,
        msg: &EncodedMessage,
        limits: HistoryLimits,
        bus: Option<(&str, &str)>,
    ) -> Result<(u64, Arc<str>), HistoryError> {
        let (meta, stream) = self.keys(room);
        let (head, tail) = msg.parts();
        let (channel, header) = bus.unwrap_or(("", ""));
        let mut conn = self.0.conn.clone();
        let mut inv = self.0.append.prepare_invoke();
        inv.key(meta)
            .key(stream)
            .arg(head)
            .arg(tail)
            .arg(new_epoch())
            .arg(limits.max_messages.max(1))
            .arg(age_ms(limits.max_age))
            .arg(channel)
            .arg(header)
            .arg(room);
        let (seq, epoch): (u64, String) = self.timed(inv.invoke_async(&mut conn)).await?;
        Ok((seq, Arc::from(epoch)))
    }

    /// Runs a prepared script within the command timeout.
    pub(crate) async fn run_script<T: redis::FromRedisValue>(
        &self,
        inv: redis::ScriptInvocation<'_>,
    ) -> Result<T, HistoryError> {
        let mut conn = self.0.conn.clone();
        self.timed(inv.invoke_async(&mut conn)).await
    }

    /// Runs one command within the command timeout.
    pub(crate) async fn run_cmd<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
    ) -> Result<T, HistoryError> {
        let mut conn = self.0.conn.clone();
        self.timed(cmd.query_async(&mut conn)).await
    }

    /// `PUBLISH channel payload`.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        payload: Vec<u8>,
    ) -> Result<(), HistoryError> {
        let mut conn = self.0.conn.clone();
        let _: i64 = self
            .timed(
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn read_script(
        &self,
        room: &str,
        query: &HistoryQuery,
        limits: HistoryLimits,
    ) -> Result<HistoryRead, HistoryError> {
        let (meta, stream) = self.keys(room);
        let mut conn = self.0.conn.clone();
        let mut inv = self.0.read.prepare_invoke();
        inv.key(meta)
            .key(stream)
            .arg(new_epoch())
            .arg(age_ms(limits.max_age));
        match query {
            HistoryQuery::After { since, max } => {
                inv.arg("after").arg(&*since.epoch).arg(since.seq).arg(*max);
            }
            HistoryQuery::Last(n) => {
                inv.arg("last").arg((*n).min(limits.max_messages));
            }
            HistoryQuery::Position => {
                inv.arg("position");
            }
        }
        let reply: Vec<redis::Value> = self.timed(inv.invoke_async(&mut conn)).await?;
        parse_read(reply)
    }
}

/// `max_age` in milliseconds, at least 1 (Redis refuses a zero expiry).
fn age_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The read script's reply: {seq, epoch, complete, first seq, frame...}.
fn parse_read(reply: Vec<redis::Value>) -> Result<HistoryRead, HistoryError> {
    let bad = || unavailable("unexpected reply to the read script");
    let mut it = reply.into_iter();
    let top: u64 = redis::from_redis_value(it.next().ok_or_else(bad)?).map_err(unavailable)?;
    let epoch: String = redis::from_redis_value(it.next().ok_or_else(bad)?).map_err(unavailable)?;
    let complete: i64 = redis::from_redis_value(it.next().ok_or_else(bad)?).map_err(unavailable)?;
    let first: u64 = redis::from_redis_value(it.next().ok_or_else(bad)?).map_err(unavailable)?;
    let epoch: Arc<str> = Arc::from(epoch);
    let mut messages = Vec::new();
    for (i, v) in it.enumerate() {
        let frame: String = redis::from_redis_value(v).map_err(unavailable)?;
        messages.push(StoredMessage {
            seq: first + i as u64,
            epoch: epoch.clone(),
            // Compressed lazily, once, if a member negotiated deflate.
            frame: PreparedMessage::new(Message::text(frame)),
        });
    }
    Ok(HistoryRead {
        position: StreamPosition::new(top, epoch),
        messages,
        complete: complete == 1,
    })
}

impl HistoryStore for RedisHistory {
    fn append<'a>(
        &'a self,
        room: &'a str,
        msg: &'a EncodedMessage,
        compression_level: u32,
        limits: HistoryLimits,
    ) -> StoreFuture<'a, Result<StoredMessage, HistoryError>> {
        Box::pin(async move {
            let (seq, epoch) = self.append_script(room, msg, limits, None).await?;
            // The same text the script stored: built here rather than sent back.
            let frame = msg.frame(Some((seq, &epoch)));
            Ok(StoredMessage {
                seq,
                epoch,
                frame: PreparedMessage::with_compression_level(
                    Message::text(frame),
                    compression_level,
                ),
            })
        })
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
        limits: HistoryLimits,
    ) -> StoreFuture<'a, Result<HistoryRead, HistoryError>> {
        Box::pin(async move { self.read_script(room, &query, limits).await })
    }
}
