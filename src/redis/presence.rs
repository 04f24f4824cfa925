//! Cluster-wide presence, the Redis side (feature `redis`): every node writes its
//! connections' presence entries to one hash per room and announces each change on
//! the bus; a node proves it is alive with a key that expires (a heartbeat).
//!
//! - `{prefix}:pr:{room}`: field `NODE:CONN` (the node in hex, the connection's id on
//!   it), value `FUSER\nMETA`: `F` is `+` if the user is featured in the room (the
//!   application's [`PresenceInterest`](crate::PresenceInterest) said so on the node
//!   that has the connection, where its whole identity is known) and `-` if not, then
//!   the user id and the entry as JSON, as the node stamped it.
//! - `{prefix}:alive:NODE`: set with an expiry of `presence_ttl`, refreshed every third
//!   of it. A node that stops (killed, cut off) lets it expire: the next
//!   reconciliation on any node drops its entries, and every node announces the
//!   leaves. A node that shuts down gracefully deletes it and says so on the bus.
//!
//! The narrow interface the hub uses: [`RedisBackplane::presence_join`],
//! [`presence_leave`](RedisBackplane::presence_leave),
//! [`presence_entries`](RedisBackplane::presence_entries),
//! [`heartbeat`](RedisBackplane::heartbeat), [`goodbye`](RedisBackplane::goodbye), and
//! the bus events [`PresenceEvent`].

use super::RedisBackplane;
use crate::history::HistoryError;

/// KEYS: the room's hash. ARGV: field, value, channel, bus payload. HSET + PUBLISH.
const JOIN: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#;

/// KEYS: the room's hash. ARGV: field, channel, bus payload. HDEL + PUBLISH.
const LEAVE: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"#;

/// KEYS: the room's hash. ARGV: the alive-key prefix. Drops the fields of nodes whose
/// alive key is gone, returns the others flat (field, value, ...).
const ENTRIES: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
local alive = {}
local out = {}
for i = 1, #all, 2 do
  local field = all[i]
  local node = string.match(field, '^([0-9a-f]+):')
  if node then
    if alive[node] == nil then
      alive[node] = redis.call('EXISTS', ARGV[1] .. node) == 1
    end
    if alive[node] then
      out[#out + 1] = field
      out[#out + 1] = all[i + 1]
    else
      redis.call('HDEL', KEYS[1], field)
    end
  end
end
return out
"#;

/// A presence change another node announced on the bus.
#[derive(Debug)]
pub(crate) enum PresenceEvent {
    /// Connection `conn` of node `node` joined `room` as `user` with entry `meta`
    /// (JSON); `featured`: what that node's interest hook said of the user.
    Join {
        node: u64,
        conn: u64,
        room: String,
        user: String,
        meta: String,
        featured: bool,
    },
    /// It left.
    Leave {
        node: u64,
        conn: u64,
        room: String,
        user: String,
    },
    /// Node `node` shut down: all its entries are gone.
    Gone { node: u64 },
}

/// One entry read from Redis.
#[derive(Debug)]
pub(crate) struct RemoteEntry {
    pub(crate) node: u64,
    pub(crate) conn: u64,
    pub(crate) user: String,
    /// The entry as JSON.
    pub(crate) meta: String,
    /// Whether the user is featured in the room (see the module docs).
    pub(crate) featured: bool,
}

/// Bus payloads: `PJ NODE CONN ROOM_LEN USER_LEN F\nROOMUSERMETA` (`F`: `+` featured,
/// `-` not), `PL NODE CONN ROOM_LEN USER_LEN -\nROOMUSER`, `PG NODE`.
fn encode(
    kind: &str,
    node: u64,
    conn: u64,
    room: &str,
    user: &str,
    meta: &str,
    featured: bool,
) -> String {
    format!(
        "{kind} {node:x} {conn} {} {} {}\n{room}{user}{meta}",
        room.len(),
        user.len(),
        flag(featured)
    )
}

/// The featured flag as written in a payload or a hash value.
fn flag(featured: bool) -> char {
    if featured { '+' } else { '-' }
}

/// Parses a presence payload (`None`: not one).
pub(crate) fn decode(text: &str) -> Option<PresenceEvent> {
    if let Some(node) = text.strip_prefix("PG ") {
        return Some(PresenceEvent::Gone {
            node: u64::from_str_radix(node, 16).ok()?,
        });
    }
    let (header, rest) = text.split_once('\n')?;
    let mut f = header.split(' ');
    let kind = f.next()?;
    let node = u64::from_str_radix(f.next()?, 16).ok()?;
    let conn = f.next()?.parse().ok()?;
    let room_len: usize = f.next()?.parse().ok()?;
    let user_len: usize = f.next()?.parse().ok()?;
    let featured = f.next() == Some("+");
    let (room, rest) = rest.split_at_checked(room_len)?;
    let (user, meta) = rest.split_at_checked(user_len)?;
    let (room, user) = (room.to_owned(), user.to_owned());
    match kind {
        "PJ" => Some(PresenceEvent::Join {
            node,
            conn,
            room,
            user,
            meta: meta.to_owned(),
            featured,
        }),
        "PL" => Some(PresenceEvent::Leave {
            node,
            conn,
            room,
            user,
        }),
        _ => None,
    }
}

impl RedisBackplane {
    fn presence_key(&self, room: &str) -> String {
        format!("{}:pr:{room}", self.0.options.prefix)
    }

    fn alive_prefix(&self) -> String {
        format!("{}:alive:", self.0.options.prefix)
    }

    fn field(&self, conn: u64) -> String {
        format!("{:x}:{conn}", self.0.node)
    }

    /// Writes this node's connection `conn` into `room`'s presence and announces it;
    /// `featured`: what this node's interest hook said of `user` in `room`.
    pub(crate) async fn presence_join(
        &self,
        room: &str,
        conn: u64,
        user: &str,
        meta: &str,
        featured: bool,
    ) -> Result<(), HistoryError> {
        let payload = encode("PJ", self.0.node, conn, room, user, meta, featured);
        let script = redis::Script::new(JOIN);
        let mut inv = script.prepare_invoke();
        inv.key(self.presence_key(room))
            .arg(self.field(conn))
            .arg(format!("{}{user}\n{meta}", flag(featured)))
            .arg(self.channel())
            .arg(payload);
        self.0.history.run_script(inv).await
    }

    /// Removes this node's connection `conn` from `room`'s presence and announces it.
    pub(crate) async fn presence_leave(
        &self,
        room: &str,
        conn: u64,
        user: &str,
    ) -> Result<(), HistoryError> {
        let payload = encode("PL", self.0.node, conn, room, user, "", false);
        let script = redis::Script::new(LEAVE);
        let mut inv = script.prepare_invoke();
        inv.key(self.presence_key(room))
            .arg(self.field(conn))
            .arg(self.channel())
            .arg(payload);
        self.0.history.run_script(inv).await
    }

    /// `room`'s entries on live nodes (this one's included); entries of nodes whose
    /// heartbeat expired are deleted on the way.
    pub(crate) async fn presence_entries(
        &self,
        room: &str,
    ) -> Result<Vec<RemoteEntry>, HistoryError> {
        let script = redis::Script::new(ENTRIES);
        let mut inv = script.prepare_invoke();
        inv.key(self.presence_key(room)).arg(self.alive_prefix());
        let flat: Vec<String> = self.0.history.run_script(inv).await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let Some((node, conn)) = pair[0].split_once(':') else {
                continue;
            };
            let Some((user, meta)) = pair[1].split_once('\n') else {
                continue;
            };
            let (featured, user) = match user.split_at_checked(1) {
                Some(("+", user)) => (true, user),
                Some(("-", user)) => (false, user),
                _ => continue,
            };
            let (Ok(node), Ok(conn)) = (u64::from_str_radix(node, 16), conn.parse()) else {
                continue;
            };
            out.push(RemoteEntry {
                node,
                conn,
                user: user.to_owned(),
                meta: meta.to_owned(),
                featured,
            });
        }
        Ok(out)
    }

    /// Says this node is alive for `presence_ttl` more.
    pub(crate) async fn heartbeat(&self) -> Result<(), HistoryError> {
        let ttl = u64::try_from(self.0.options.presence_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let cmd = redis::cmd("SET")
            .arg(format!("{}{:x}", self.alive_prefix(), self.0.node))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .clone();
        self.0.history.run_cmd::<()>(cmd).await
    }

    /// This node is leaving: its heartbeat is deleted (its entries are dropped by the
    /// next reconciliation anywhere) and every node is told at once.
    pub(crate) async fn goodbye(&self) -> Result<(), HistoryError> {
        let cmd = redis::cmd("DEL")
            .arg(format!("{}{:x}", self.alive_prefix(), self.0.node))
            .clone();
        self.0.history.run_cmd::<()>(cmd).await?;
        let payload = format!("PG {:x}", self.0.node).into_bytes();
        self.0.history.publish(&self.channel(), payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_events_round_trip() {
        for featured in [false, true] {
            let p = encode(
                "PJ",
                0xab,
                7,
                "chat:x",
                "ann",
                r#"{"conn_id":"7"}"#,
                featured,
            );
            match decode(&p).unwrap() {
                PresenceEvent::Join {
                    node,
                    conn,
                    room,
                    user,
                    meta,
                    featured: f,
                } => assert_eq!(
                    (node, conn, room.as_str(), user.as_str(), meta.as_str(), f),
                    (0xab, 7, "chat:x", "ann", r#"{"conn_id":"7"}"#, featured)
                ),
                other => panic!("{other:?}"),
            }
        }
        let p = encode("PL", 0xab, 7, "chat:x", "ann", "", false);
        assert!(matches!(
            decode(&p),
            Some(PresenceEvent::Leave { conn: 7, .. })
        ));
        assert!(matches!(
            decode("PG ff"),
            Some(PresenceEvent::Gone { node: 0xff })
        ));
        assert!(decode("PX 1 2 3 4\nabc").is_none());
    }
}
