//! One place for membership and fan-out: joining a connection to a room and taking it
//! out again, with the room's members, its presence and the connection's own room list
//! kept in step; and delivering what is published to a room ([`Hub::publish`]), with
//! the slow consumers a fan-out finds closed here, not by the room. The session (a client's `join` and `leave`), the server-side API
//! ([`Connection::join`](crate::Connection::join), [`Hub::join_user`],
//! [`Hub::remove_user_from_rooms`]) and disconnects all go through here, so a join from
//! Rust produces exactly the presence and diffs of a join from a client.
//!
//! Locks: a join takes the room's presence lock, then its member lock inside it (the
//! order every path uses), and the connection's room map only after both are released;
//! the two are never nested.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::Value;

use super::{ConnEntry, Hub};
use crate::history::{HistoryError, HistoryLimits, HistoryQuery, StoredMessage};
use crate::metrics::ReplayOutcome;
use crate::presence::{JoinInterest, PresenceSource, RoomPresence};
use crate::protocol::StreamPosition;
use crate::protocol::{self, ErrorCode, quote};
use crate::protocol::{PresenceCount, PresencePage};
use crate::room::{Publication, RoomState};
use crate::ws::{CloseCode, Outbound, SendError};

/// Why a server-side join or leave ([`Connection::join`](crate::Connection::join),
/// [`Hub::join_user`], [`Connection::leave`](crate::Connection::leave)) did not happen.
/// A client's own `join` and `leave` fail for the same reasons, answered with the
/// [`code`](Self::code) of each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// No namespace was declared for this room name (`NAMESPACE:room`).
    #[error("no such room: {}", quote(.0))]
    NotFound(String),
    /// The room has as many connections as its namespace's `max_subscribers`.
    #[error("{} is full", quote(.0))]
    RoomFull(String),
    /// The connection is in as many rooms as `max_rooms_per_connection` (the value).
    #[error("a connection may join at most {0} rooms")]
    TooManyRooms(usize),
    /// The presence meta is larger than `max_presence_meta`.
    #[error("presence meta is {len} bytes, the limit is {max}")]
    MetaTooLarge {
        /// Its size, as the hub encodes it.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The presence meta contains a control or bidirectional-formatting character
    /// (the value: its code point); such text would reach every member's page verbatim.
    #[error(
        "presence meta contains U+{0:04X}: control and bidirectional-formatting characters are not allowed"
    )]
    MetaUnsafeChar(u32),
    /// A leave from a room the connection is not in.
    #[error("not in {}", quote(.0))]
    NotJoined(String),
    /// The connection is closing or closed.
    #[error("connection closed")]
    Closed,
    /// The room's history store failed or is unreachable (the value says how); the
    /// join did not happen.
    #[error("history unavailable: {0}")]
    Unavailable(String),
}

impl MembershipError {
    /// The protocol error code a client's `join` or `leave` gets for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            MembershipError::NotFound(_) => ErrorCode::NotFound,
            MembershipError::RoomFull(_) => ErrorCode::RoomFull,
            MembershipError::TooManyRooms(_) => ErrorCode::TooManyRooms,
            MembershipError::MetaTooLarge { .. } => ErrorCode::TooLarge,
            MembershipError::MetaUnsafeChar(_) => ErrorCode::InvalidData,
            MembershipError::NotJoined(_) => ErrorCode::NotJoined,
            MembershipError::Closed => ErrorCode::BadRequest,
            MembershipError::Unavailable(_) => ErrorCode::Unavailable,
        }
    }
}

/// How a join is acknowledged to the connection, under the room's presence lock (so no
/// diff taken after the snapshot can reach the connection before it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum JoinAck {
    /// A client's `join` with this request id: a `reply` with the presence snapshot.
    Reply(u64),
    /// A join from the server: a `joined` message with the presence snapshot.
    Joined,
}

/// What a join asks of the room's history (`PROTOCOL.md`, section 9).
#[derive(Debug, Clone, Default)]
pub(crate) struct Replay {
    /// Recover every stored message after this position.
    pub(crate) since: Option<StreamPosition>,
    /// Send the last N stored messages (capped by `max_join_history`); also the
    /// fallback when `since` cannot be recovered.
    pub(crate) history: Option<u64>,
}

/// What a join read from the room's history, to send with its acknowledgement.
#[derive(Debug, Default)]
struct HistoryAck {
    /// The stream position once `replay` has been sent (`None`: the namespace keeps
    /// no history).
    position: Option<StreamPosition>,
    /// `Some` when the join asked to recover: whether everything after `since` follows.
    recovered: Option<bool>,
    /// The stored messages to send after the acknowledgement, in `seq` order.
    replay: Vec<StoredMessage>,
}

/// What a reply shows of a room's presence (see [`Hub::presence_for`]).
#[derive(Debug)]
pub(crate) enum Shown {
    /// A small room: all of it.
    All(crate::Presence),
    /// A big room: the count and the first page.
    Page(PresencePage),
}

impl Shown {
    /// The users shown.
    pub(crate) fn presence(&self) -> &crate::Presence {
        match self {
            Shown::All(p) => p,
            Shown::Page(page) => &page.presence,
        }
    }

    /// A big room's count.
    pub(crate) fn count(&self) -> Option<PresenceCount> {
        match self {
            Shown::All(_) => None,
            Shown::Page(page) => Some(page.count),
        }
    }

    /// A big room's next cursor.
    pub(crate) fn next(&self) -> Option<&str> {
        match self {
            Shown::All(_) => None,
            Shown::Page(page) => page.next.as_deref(),
        }
    }
}

/// Whether a join added the connection to the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// It was not in the room and now is.
    New,
    /// It was in the room already; nothing changed.
    Already,
}

/// What [`Room::publish`](crate::Room::publish) did: how many connections the message
/// was queued for, and where it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// How many connections it was queued for.
    pub delivered: usize,
    /// Its position in the room's stream; `None` for an ephemeral message or a
    /// namespace without history.
    pub position: Option<StreamPosition>,
}

impl Hub {
    /// Joins `entry` to `room` with presence `meta`, acknowledged as `ack` says, with
    /// the history `replay` asks for. The one join path: a client's `join` and every
    /// server-side join come here.
    ///
    /// In a namespace with history the join takes the room's turn (see
    /// [`RoomState::turn`]) before reading the store and keeps it until the replay is
    /// queued: publishes wait meanwhile, so the replay and the live stream meet with
    /// no gap and no duplicate.
    pub(crate) async fn join_conn(
        &self,
        entry: &Arc<ConnEntry>,
        room: &str,
        meta: Value,
        ack: JoinAck,
        replay: Replay,
    ) -> Result<Joined, MembershipError> {
        let ns = self
            .namespace_of(room)
            .ok_or_else(|| MembershipError::NotFound(room.to_owned()))?;
        check_meta(&meta, self.config().max_presence_meta)?;
        if entry.is_gone() || entry.outbound.is_closed() {
            return Err(MembershipError::Closed);
        }
        let max_rooms = self.config().max_rooms_per_connection;
        {
            let rooms = entry.rooms();
            if rooms.len() >= max_rooms && !rooms.contains_key(room) {
                return Err(MembershipError::TooManyRooms(max_rooms));
            }
        }
        let state = self.room_state(room, ns);
        let limits = state.ns.options().history;
        // Held until the acknowledgement and replay are queued.
        let _turn = match limits {
            Some(_) => Some(state.turn.lock().await),
            None => None,
        };
        // With a backplane, what the bus brought so far goes out first (the turn is
        // held: no drain runs beside this join).
        #[cfg(feature = "redis")]
        if _turn.is_some() && self.0.cluster.is_some() {
            self.drain_locked(&state).await;
        }
        let existing = entry.rooms().get(room).cloned();
        if let Some(state) = existing {
            // Joining twice is harmless: a client is answered with the current presence
            // and position (nothing replayed); a server join changes nothing and says
            // nothing.
            if let JoinAck::Reply(_) = ack {
                let history = self
                    .read_history(&state, limits, &Replay::default())
                    .await?;
                self.ack_existing(entry, &state, ack, &history);
            }
            return Ok(Joined::Already);
        }
        let history = match self.read_history(&state, limits, &replay).await {
            Ok(h) => h,
            Err(e) => {
                drop(_turn);
                drop(state);
                self.prune_room(room);
                return Err(e);
            }
        };
        // The members already here are brought to the position this join read, so
        // nothing at or below it reaches the new member twice.
        #[cfg(feature = "redis")]
        if let (Some(p), true) = (&history.position, self.0.cluster.is_some()) {
            self.align_with(&state, p).await;
        }
        let options = state.ns.options();
        // The room's first join on this node loads the other nodes' presence, so the
        // reply's snapshot has everyone.
        #[cfg(feature = "redis")]
        if options.presence
            && self.0.cluster.is_some()
            && !state.inbox.presence_loaded.load(Ordering::Acquire)
        {
            self.reconcile_presence(&state).await;
        }
        #[cfg(feature = "redis")]
        let mut cluster_meta = None;
        // Asked before the room's lock: the application's code never runs under it.
        let interest = match (&self.0.presence_interest, options.presence) {
            (Some(hook), true) => JoinInterest {
                watches: hook.watches(room, &entry.identity),
                featured: hook.featured(room, &entry.identity),
            },
            _ => JoinInterest::default(),
        };
        #[cfg(feature = "redis")]
        let featured = interest.featured;
        let announced = {
            let mut presence = state.presence_lock();
            {
                let mut members = state.members_mut();
                if members.conns.contains_key(&entry.id) {
                    // A concurrent join of the same connection (the client's own and one
                    // from the server) got here first.
                    drop(members);
                    drop(presence);
                    self.ack_existing(entry, &state, ack, &history);
                    return Ok(Joined::Already);
                }
                if members.conns.len() >= options.max_subscribers {
                    drop(members);
                    drop(presence);
                    drop(_turn);
                    drop(state);
                    self.prune_room(room);
                    return Err(MembershipError::RoomFull(room.to_owned()));
                }
                members.conns.insert(entry.id, entry.outbound.clone());
            }
            if options.presence {
                // Server fields, stamped next to the client's own meta.
                let mut stamped = crate::protocol::PresenceMeta::new(entry.id, meta)
                    .with_name(entry.identity.name.clone());
                if let Some(info) = self
                    .0
                    .presence_info
                    .as_ref()
                    .and_then(|f| f(&entry.identity))
                {
                    stamped = stamped.with_info(info);
                }
                #[cfg(feature = "redis")]
                if self.0.cluster.is_some() {
                    cluster_meta = Some(stamped.clone());
                }
                let announced = presence.join_entry(&entry.identity.user_id, stamped, interest);
                let shown = self.presence_for(&mut presence, &entry.identity.user_id);
                self.send_ack(entry, &state.name, Some(&shown), ack, &history);
                announced
            } else {
                self.send_ack(entry, &state.name, None, ack, &history);
                false
            }
        };
        drop(_turn);
        // The connection's own list, unless it has left every room for good meanwhile
        // (it disconnected): checked under the list's lock, which `leave_all` holds when
        // it marks the connection gone, so either this insert is seen and undone by
        // `leave_all` or the join is undone here.
        let added = {
            let mut rooms = entry.rooms();
            let gone = entry.is_gone();
            if !gone {
                rooms.insert(state.name.clone(), state.clone());
            }
            !gone
        };
        if !added {
            self.leave_room(entry, &state);
            drop(state);
            self.prune_room(room);
            return Err(MembershipError::Closed);
        }
        #[cfg(feature = "redis")]
        if let Some(meta) = cluster_meta {
            self.cluster_presence_joined(&state.name, entry, &meta, featured);
        }
        if announced {
            self.presence_changed(&state);
        }
        Ok(Joined::New)
    }

    /// Reads what a join needs from `room`'s history: its position, and the messages
    /// `replay` asks for. Call with the room's turn held.
    async fn read_history(
        &self,
        room: &RoomState,
        limits: Option<HistoryLimits>,
        replay: &Replay,
    ) -> Result<HistoryAck, MembershipError> {
        let Some(limits) = limits else {
            // No history: nothing to recover from, and nothing to send.
            if replay.since.is_some() {
                self.record_replay(ReplayOutcome::NotRecovered);
            }
            return Ok(HistoryAck {
                position: None,
                recovered: replay.since.as_ref().map(|_| false),
                replay: Vec::new(),
            });
        };
        let store = &self.0.history;
        let config = self.config();
        let unavailable = |e: HistoryError| MembershipError::Unavailable(e.to_string());
        let mut ack = HistoryAck::default();
        if let Some(since) = &replay.since {
            let read = store
                .read(
                    &room.name,
                    HistoryQuery::After {
                        since: since.clone(),
                        max: config.max_recovery,
                    },
                    limits,
                )
                .await
                .map_err(unavailable)?;
            // A replay over half the connection's queue would close it as a slow
            // consumer, and it would recover into the same close again: not a recovery.
            let bytes: usize = read.messages.iter().map(|m| m.frame.payload().len()).sum();
            let recovered = read.complete && bytes <= config.ws.max_queued_bytes / 2;
            self.record_replay(if recovered {
                ReplayOutcome::Recovered
            } else {
                ReplayOutcome::NotRecovered
            });
            ack.recovered = Some(recovered);
            ack.position = Some(read.position);
            if recovered {
                ack.replay = read.messages;
                return Ok(ack);
            }
        }
        let query = match replay.history {
            Some(n) if n > 0 => {
                // A fresh join's history; after a failed recovery it is the fallback,
                // counted as `not_recovered` above.
                if replay.since.is_none() {
                    self.record_replay(ReplayOutcome::History);
                }
                HistoryQuery::Last(
                    usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(config.max_join_history),
                )
            }
            _ if ack.position.is_some() => return Ok(ack),
            _ => HistoryQuery::Position,
        };
        let read = store
            .read(&room.name, query, limits)
            .await
            .map_err(unavailable)?;
        ack.position = Some(read.position);
        ack.replay = read.messages;
        Ok(ack)
    }

    /// Counts what a join got from the room's history.
    fn record_replay(&self, outcome: ReplayOutcome) {
        if let Some(metrics) = self.metrics() {
            metrics.replay(outcome);
        }
    }

    /// Acknowledges a join of a room `entry` is in already.
    fn ack_existing(
        &self,
        entry: &ConnEntry,
        state: &RoomState,
        ack: JoinAck,
        history: &HistoryAck,
    ) {
        if let JoinAck::Reply(_) = ack {
            let mut presence = state.presence_lock();
            let history = HistoryAck {
                position: history.position.clone(),
                recovered: None,
                replay: Vec::new(),
            };
            if state.ns.options().presence {
                let shown = self.presence_for(&mut presence, &entry.identity.user_id);
                self.send_ack(entry, &state.name, Some(&shown), ack, &history);
            } else {
                self.send_ack(entry, &state.name, None, ack, &history);
            }
        }
    }

    /// What a join or `presence` reply shows a connection of `member`: the whole room
    /// when it is small, the count and the first page when it is big. Call with the
    /// room's presence lock held (the reply is queued under it).
    pub(crate) fn presence_for(&self, presence: &mut RoomPresence, member: &str) -> Shown {
        if presence.is_big() {
            Shown::Page(presence.page(member, None, self.config().presence_page_size))
        } else {
            Shown::All(presence.snapshot_for_member(member))
        }
    }

    /// Queues a join's acknowledgement, then its replay.
    fn send_ack(
        &self,
        entry: &ConnEntry,
        room: &str,
        shown: Option<&Shown>,
        ack: JoinAck,
        history: &HistoryAck,
    ) {
        #[derive(Serialize)]
        struct ReplyData<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            presence: Option<&'a crate::Presence>,
            #[serde(skip_serializing_if = "Option::is_none")]
            count: Option<PresenceCount>,
            #[serde(skip_serializing_if = "Option::is_none")]
            next: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            seq: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            epoch: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovered: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            replayed: Option<usize>,
        }
        let position = history.position.as_ref();
        // The position the connection is at once the replay is in: the stream's,
        // which is the last replayed message's (the turn is held, nothing newer).
        let text = match ack {
            JoinAck::Reply(id) => protocol::try_encode_reply_ok(
                id,
                &ReplyData {
                    presence: shown.map(Shown::presence),
                    count: shown.and_then(Shown::count),
                    next: shown.and_then(Shown::next),
                    seq: position.map(|p| p.seq),
                    epoch: position.map(|p| &*p.epoch),
                    recovered: history.recovered,
                    replayed: position.map(|_| history.replay.len()),
                },
            )
            .expect("a join reply always encodes"),
            JoinAck::Joined => match shown {
                Some(Shown::Page(page)) => {
                    protocol::encode_joined_page(room, None, Some(page), position)
                }
                shown => protocol::encode_joined(room, shown.map(Shown::presence), position),
            },
        };
        self.send_text_to(entry, text);
        for msg in &history.replay {
            if let Err(SendError::Full) = entry.outbound.try_send(&msg.frame) {
                self.close_slow_consumer(entry.id, &entry.outbound);
                break;
            }
        }
    }

    /// Takes `entry` out of `room`. With `notice`, the connection is told with a `left`
    /// message carrying that reason (a leave decided by the server); a client's own
    /// `leave` is answered by its reply instead.
    pub(crate) fn leave_conn(
        &self,
        entry: &ConnEntry,
        room: &str,
        notice: Option<&str>,
    ) -> Result<(), MembershipError> {
        let state = entry
            .rooms()
            .remove(room)
            .ok_or_else(|| MembershipError::NotJoined(room.to_owned()))?;
        self.leave_room(entry, &state);
        if let Some(reason) = notice {
            // After the member list no longer holds the connection: nothing from the
            // room can follow the `left`.
            self.send_text_to(entry, protocol::encode_left(room, reason));
        }
        drop(state);
        self.prune_room(room);
        Ok(())
    }

    /// Takes `entry` out of every room it is in, for good: it is marked gone, and
    /// joins after this fail with [`MembershipError::Closed`].
    pub(crate) fn leave_all(&self, entry: &ConnEntry) {
        let rooms: Vec<_> = {
            let mut rooms = entry.rooms();
            entry.gone.store(true, Ordering::Release);
            rooms.drain().map(|(_, r)| r).collect()
        };
        for room in rooms {
            self.leave_room(entry, &room);
            let name = room.name.clone();
            drop(room);
            self.prune_room(&name);
        }
    }

    /// Removes `entry` from `room`'s members and presence; a user's last connection
    /// leaving is announced on the next presence tick.
    pub(crate) fn leave_room(&self, entry: &ConnEntry, room: &Arc<RoomState>) {
        let mut presence = room.presence_lock();
        room.members_mut().conns.remove(&entry.id);
        #[cfg(feature = "redis")]
        if room.ns.options().presence && self.0.cluster.is_some() {
            self.cluster_presence_left(&room.name, entry);
        }
        if room.ns.options().presence && presence.leave(&entry.identity.user_id, entry.id) {
            drop(presence);
            self.presence_changed(room);
        }
    }

    /// Queues one server message for `entry`; a connection whose queue is full is a slow
    /// consumer like any other (closed with 1013). May be called with a room's lock
    /// held (join replies are sent under the presence lock).
    pub(crate) fn send_text_to(&self, entry: &ConnEntry, text: String) {
        let msg = self.prepare(text);
        if let Err(SendError::Full) = entry.outbound.try_send(&msg) {
            self.close_slow_consumer(entry.id, &entry.outbound);
        }
    }

    /// Delivers `publication` to every member of `room` and its server-side
    /// subscribers: stored first (namespaces with history, unless ephemeral), encoded
    /// once, queued without waiting for anyone, slow consumers closed. The one publish
    /// path: client publishes and publishes from Rust both come here.
    ///
    /// In a namespace with history the room's turn is held from the append to the
    /// fan-out, so members get stored messages in `seq` order (ephemeral ones take the
    /// turn too, to keep a publisher's order). A store failure publishes nothing.
    pub(crate) async fn publish(
        &self,
        room: &RoomState,
        publication: Publication,
    ) -> Result<Published, HistoryError> {
        #[cfg(feature = "redis")]
        if self.0.cluster.is_some() {
            return self.cluster_publish(room, publication).await;
        }
        // Timed only when recorded: a clock read on each side of the publish.
        let started = self.metrics().map(|m| m.start_timer());
        let Publication {
            msg,
            ephemeral,
            typed,
        } = publication;
        let fanout;
        let mut position = None;
        match room.ns.options().history {
            Some(limits) => {
                let _turn = room.turn.lock().await;
                let frame = if ephemeral {
                    self.prepare(msg.frame(None))
                } else {
                    let level = self.config().ws.compression_level;
                    let stored = self
                        .0
                        .history
                        .append(&room.name, &msg, level, limits)
                        .await?;
                    position = Some(StreamPosition::new(stored.seq, stored.epoch));
                    stored.frame
                };
                fanout = room.broadcast(&frame);
                // Under the turn too, so server-side subscribers see `seq` order.
                if let Some(typed) = typed {
                    typed(position.clone());
                }
            }
            None => {
                fanout = room.broadcast(&self.prepare(msg.frame(None)));
                if let Some(typed) = typed {
                    typed(None);
                }
            }
        }
        self.drop_slow_consumers(fanout.slow);
        if let (Some(metrics), Some(started)) = (self.metrics(), started) {
            // Once per publish: the fan-out counted its deliveries as it went.
            metrics.published(room.metrics_ns, fanout.delivered, started);
        }
        Ok(Published {
            delivered: fanout.delivered,
            position,
        })
    }

    /// Closes the slow consumers a fan-out found (1013) and takes them out of their
    /// rooms at once. Call with no room lock held: leaving takes those locks.
    pub(crate) fn drop_slow_consumers(&self, slow: Vec<(u64, Outbound)>) {
        for (conn_id, out) in slow {
            if self.close_slow(conn_id, &out) {
                self.disconnect(conn_id);
            }
        }
    }

    /// [`drop_slow_consumers`](Self::drop_slow_consumers) for one connection, from a
    /// caller that may hold a room's lock: the leaving runs in a fresh task. Without a
    /// runtime (a send from a plain thread) the connection's own task leaves when its
    /// closing handshake ends.
    pub(crate) fn close_slow_consumer(&self, conn_id: u64, out: &Outbound) {
        if self.close_slow(conn_id, out)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let hub = self.clone();
            rt.spawn(async move { hub.disconnect(conn_id) });
        }
    }

    /// Closes a slow consumer with 1013, counted once. Returns whether this call
    /// closed it (a connection closing already is left alone).
    fn close_slow(&self, conn_id: u64, out: &Outbound) -> bool {
        if out.is_closed() {
            return false;
        }
        let queued_bytes = out.queued_bytes();
        out.close(CloseCode::Again, "slow consumer");
        self.0.slow_consumers.fetch_add(1, Ordering::Relaxed);
        // The user too: this runs in the publisher's task, outside the slow
        // connection's span. A map read, on a path taken once per slow consumer.
        let user = self
            .0
            .conns
            .get(&conn_id)
            .map(|e| e.identity.user_id.clone());
        tracing::info!(
            conn_id,
            user = user.as_deref().unwrap_or(""),
            code = 1013,
            queued_bytes,
            "closed slow consumer (1013)"
        );
        true
    }
}

/// Checks a presence meta before it is stored and relayed to every member: its size
/// as the hub encodes it (the bytes members receive), and no control or
/// bidirectional-formatting characters in its keys and strings (they would reach every
/// member's page verbatim).
pub(crate) fn check_meta(meta: &Value, max: usize) -> Result<(), MembershipError> {
    let len = protocol::encoded_len(meta);
    if len > max {
        return Err(MembershipError::MetaTooLarge { len, max });
    }
    if let Some(c) = find_unsafe_char(meta) {
        return Err(MembershipError::MetaUnsafeChar(u32::from(c)));
    }
    Ok(())
}

/// The first control or bidirectional-formatting character in `v`'s keys and strings.
fn find_unsafe_char(v: &Value) -> Option<char> {
    fn unsafe_char(s: &str) -> Option<char> {
        s.chars().find(|&c| is_unsafe_char(c))
    }
    match v {
        Value::String(s) => unsafe_char(s),
        Value::Array(items) => items.iter().find_map(find_unsafe_char),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| unsafe_char(k).or_else(|| find_unsafe_char(v))),
        _ => None,
    }
}

/// Controls (C0, DEL, C1) and the characters that change text direction or hide
/// (RLO, LRI, marks, isolates).
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unsafe_meta_characters_are_found_anywhere() {
        assert_eq!(find_unsafe_char(&json!({"name": "ann"})), None);
        assert_eq!(find_unsafe_char(&json!({"name": "José 山田"})), None);
        assert_eq!(
            find_unsafe_char(&json!({"name": "evil\u{202e}gnp.exe"})),
            Some('\u{202e}')
        );
        assert_eq!(
            find_unsafe_char(&json!({"a": [1, {"b\u{0007}": 2}]})),
            Some('\u{7}')
        );
        assert_eq!(find_unsafe_char(&json!(["\u{2067}"])), Some('\u{2067}'));
        assert_eq!(find_unsafe_char(&json!({"x": "\u{9f}"})), Some('\u{9f}'));
    }

    #[test]
    fn meta_errors_keep_the_reply_codes_and_messages() {
        // `{"name":"…"}`: 11 bytes around the 300.
        let e = check_meta(&json!({"name": "x".repeat(300)}), 256).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge);
        assert_eq!(
            e.to_string(),
            "presence meta is 311 bytes, the limit is 256"
        );
        let e = check_meta(&json!({"name": "a\u{202e}"}), 256).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidData);
        assert!(e.to_string().starts_with("presence meta contains U+202E"));
        assert_eq!(
            MembershipError::NotFound("nope:x".into()).to_string(),
            "no such room: \"nope:x\""
        );
    }
}
