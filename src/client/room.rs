//! One followed room as the client task knows it ([`RoomState`]): the position to
//! re-join from, the replay in progress, and the dedupe of stored messages.

use std::sync::Arc;

use serde_json::Value;

use super::queue::{RawEvent, RoomShared};
use crate::protocol::StreamPosition;
use crate::protocol::{Presence, PresenceCount, PresenceDiff};

/// The fields of a successful join reply's `data` that matter here.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct JoinReply {
    pub(crate) presence: Option<Presence>,
    pub(crate) position: Option<StreamPosition>,
    pub(crate) recovered: Option<bool>,
    pub(crate) replayed: u64,
    /// A big room's count (`None`: the room is small).
    pub(crate) count: Option<PresenceCount>,
}

/// The replayed messages still expected after a join reply, and the position the
/// room is at once they have arrived.
#[derive(Debug)]
struct Replay {
    left: u64,
    then: Option<StreamPosition>,
    /// Keep the later of the current position and `then` (a recovered join), rather
    /// than taking `then` as it is.
    keep_later: bool,
}

/// What the client task keeps of a room it follows.
#[derive(Debug)]
pub(crate) struct RoomState {
    /// Tells this following of the room from a later one of the same name (replies
    /// to a join of a room left since are ignored).
    pub(crate) generation: u64,
    /// Sent with every join, the first and the re-joins.
    pub(crate) meta: Option<Value>,
    /// `history` of every join: recent messages to replay when no position is known
    /// or recovery fails.
    pub(crate) history: Option<u64>,
    pub(crate) shared: Arc<RoomShared>,
    /// The position of the last stored message received, or of the last join reply
    /// if later: what a re-join asks to continue from (`since`).
    position: Option<StreamPosition>,
    /// The room was joined on an earlier connection (or the application gave a
    /// position): each new join reply says whether anything was missed.
    resuming: bool,
    replay: Option<Replay>,
}

impl RoomState {
    pub(crate) fn new(
        generation: u64,
        meta: Option<Value>,
        history: Option<u64>,
        since: Option<StreamPosition>,
        shared: Arc<RoomShared>,
    ) -> Self {
        shared.set_position(since.clone());
        RoomState {
            generation,
            meta,
            history,
            shared,
            resuming: since.is_some(),
            position: since,
            replay: None,
        }
    }

    /// The position to re-join from.
    pub(crate) fn since(&self) -> Option<&StreamPosition> {
        self.position.as_ref()
    }

    /// The connection ended: a replay in progress will not finish on it.
    pub(crate) fn connection_lost(&mut self) {
        self.replay = None;
    }

    /// A `message` of this room arrived: queues it, unless it is a duplicate (a `seq`
    /// at or below the last one received, in the same epoch). `false`: nobody reads
    /// the room any more.
    pub(crate) fn on_message(
        &mut self,
        seq: Option<u64>,
        epoch: Option<String>,
        from: Option<String>,
        data: Value,
    ) -> bool {
        if let (Some(s), Some(e)) = (seq, epoch.as_deref()) {
            let duplicate = self
                .position
                .as_ref()
                .is_some_and(|p| *p.epoch == *e && s <= p.seq);
            if !duplicate {
                self.position = Some(StreamPosition::new(s, e));
            }
            // Replayed messages count whether or not they were new to us: the server
            // counted them.
            if let Some(replay) = self.replay.as_mut() {
                replay.left = replay.left.saturating_sub(1);
                if replay.left == 0 {
                    self.finish_replay();
                }
            }
            self.shared.set_position(self.position.clone());
            if duplicate {
                return !self.shared.is_abandoned();
            }
        }
        self.shared.push(RawEvent::Message {
            seq,
            epoch,
            from,
            data,
        })
    }

    /// A successful reply to a join of this room (the first, or a re-join). Queues
    /// what the application must hear: whether anything was missed (when resuming),
    /// and the new presence snapshot (on a re-join).
    pub(crate) fn on_joined(&mut self, reply: JoinReply) {
        let rejoin = self.resuming;
        self.resuming = true;
        if let Some(presence) = reply.presence.clone() {
            self.shared.set_presence(presence);
        }
        self.shared.set_count(reply.count);
        if rejoin {
            let event = match reply.recovered {
                Some(true) => RawEvent::Recovered {
                    position: reply.position.clone(),
                    replayed: reply.replayed,
                },
                // `false`, or no answer at all (a server or namespace without history,
                // or no position to ask from): the application must not assume
                // continuity.
                _ => RawEvent::NotRecovered {
                    position: reply.position.clone(),
                    replayed: reply.replayed,
                },
            };
            self.shared.push(event);
            self.shared
                .push(RawEvent::PresenceReset(reply.presence.unwrap_or_default()));
        }
        let recovered = reply.recovered == Some(true);
        if !recovered && rejoin {
            // The old position is worthless now (another epoch, or a gap): replayed
            // history must not be mistaken for duplicates of it.
            self.position = None;
        }
        self.replay = Some(Replay {
            left: reply.replayed,
            then: reply.position,
            keep_later: recovered,
        });
        if reply.replayed == 0 {
            self.finish_replay();
        }
        self.shared.set_position(self.position.clone());
    }

    fn finish_replay(&mut self) {
        let Some(replay) = self.replay.take() else {
            return;
        };
        let Some(then) = replay.then else {
            return;
        };
        self.position = match self.position.take() {
            Some(current)
                if replay.keep_later && current.epoch == then.epoch && current.seq > then.seq =>
            {
                Some(current)
            }
            _ => Some(then),
        };
    }

    pub(crate) fn on_presence_diff(&mut self, diff: PresenceDiff) -> bool {
        self.shared.apply_diff(&diff);
        self.shared.push(RawEvent::PresenceDiff(diff))
    }

    /// A big room's `presence_count` (the first after a small room grew big says it
    /// is big now).
    pub(crate) fn on_presence_count(&mut self, count: PresenceCount) -> bool {
        self.shared.set_count(Some(count));
        self.shared.push(RawEvent::PresenceCount(count))
    }

    /// A big room is small again: its whole presence replaces the view.
    pub(crate) fn on_presence_state(&mut self, presence: Presence) -> bool {
        self.shared.set_count(None);
        self.shared.set_presence(presence.clone());
        self.shared.push(RawEvent::PresenceReset(presence))
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use serde_json::json;

    use super::super::queue::Popped;
    use super::*;

    fn room(since: Option<StreamPosition>) -> RoomState {
        RoomState::new(1, None, None, since, RoomShared::new(16))
    }

    /// The seqs of the messages queued so far, and the other events by name.
    fn drain(r: &RoomState) -> Vec<String> {
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(p)) = r.shared.poll_next(&mut cx) {
            out.push(match p {
                Popped::Lagged(n) => format!("lagged {n}"),
                Popped::Event(RawEvent::Message { seq, .. }) => format!("msg {seq:?}"),
                Popped::Event(RawEvent::Recovered { replayed, .. }) => {
                    format!("recovered {replayed}")
                }
                Popped::Event(RawEvent::NotRecovered { replayed, .. }) => {
                    format!("not recovered {replayed}")
                }
                Popped::Event(RawEvent::PresenceReset(_)) => "presence reset".into(),
                Popped::Event(other) => format!("{other:?}"),
            });
        }
        out
    }

    fn futures_noop_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }

    fn msg(r: &mut RoomState, seq: u64, epoch: &str) {
        assert!(r.on_message(Some(seq), Some(epoch.into()), None, json!({})));
    }

    fn reply(seq: u64, epoch: &str, recovered: Option<bool>, replayed: u64) -> JoinReply {
        JoinReply {
            presence: Some(Presence::new()),
            position: Some(StreamPosition::new(seq, epoch)),
            recovered,
            replayed,
            count: None,
        }
    }

    #[test]
    fn duplicates_within_an_epoch_are_dropped() {
        let mut r = room(None);
        r.on_joined(reply(2, "e1", None, 0));
        msg(&mut r, 3, "e1");
        msg(&mut r, 3, "e1");
        msg(&mut r, 2, "e1");
        msg(&mut r, 4, "e1");
        // A new epoch starts over at 1: nothing is a duplicate of the old one.
        msg(&mut r, 1, "e2");
        assert_eq!(drain(&r), ["msg Some(3)", "msg Some(4)", "msg Some(1)"]);
        assert_eq!(r.since(), Some(&StreamPosition::new(1, "e2")));
        assert_eq!(r.shared.position(), Some(StreamPosition::new(1, "e2")));
    }

    #[test]
    fn ephemeral_messages_are_never_deduplicated() {
        let mut r = room(None);
        r.on_joined(reply(5, "e", None, 0));
        assert!(r.on_message(None, None, None, json!(1)));
        assert!(r.on_message(None, None, None, json!(1)));
        assert_eq!(drain(&r), ["msg None", "msg None"]);
        assert_eq!(r.since(), Some(&StreamPosition::new(5, "e")));
    }

    #[test]
    fn a_first_join_takes_the_position_after_its_history() {
        let mut r = room(None);
        r.on_joined(reply(10, "e", None, 2));
        assert_eq!(r.since(), None, "not before the replayed messages");
        msg(&mut r, 9, "e");
        msg(&mut r, 10, "e");
        assert_eq!(r.since(), Some(&StreamPosition::new(10, "e")));
        // No recovery event on a first join: there was nothing to recover.
        assert_eq!(drain(&r), ["msg Some(9)", "msg Some(10)"]);
    }

    #[test]
    fn a_recovered_rejoin_replays_then_continues() {
        let mut r = room(None);
        r.on_joined(reply(42, "e", None, 0));
        r.connection_lost();
        r.on_joined(reply(45, "e", Some(true), 3));
        for seq in [43, 44, 45, 46] {
            msg(&mut r, seq, "e");
        }
        assert_eq!(
            drain(&r),
            [
                "recovered 3",
                "presence reset",
                "msg Some(43)",
                "msg Some(44)",
                "msg Some(45)",
                "msg Some(46)"
            ]
        );
        assert_eq!(r.since(), Some(&StreamPosition::new(46, "e")));
    }

    #[test]
    fn a_failed_recovery_is_said_and_its_history_is_not_taken_for_duplicates() {
        let mut r = room(None);
        r.on_joined(reply(50, "old", None, 0));
        r.connection_lost();
        // The stream restarted in another epoch; the join asked for history.
        r.on_joined(reply(2, "new", Some(false), 2));
        msg(&mut r, 1, "new");
        msg(&mut r, 2, "new");
        assert_eq!(
            drain(&r),
            [
                "not recovered 2",
                "presence reset",
                "msg Some(1)",
                "msg Some(2)"
            ]
        );
        // Same epoch but a position ahead of the stream: its history still arrives.
        r.connection_lost();
        r.position = Some(StreamPosition::new(90, "new"));
        r.on_joined(reply(3, "new", Some(false), 2));
        msg(&mut r, 2, "new");
        msg(&mut r, 3, "new");
        assert_eq!(
            drain(&r),
            [
                "not recovered 2",
                "presence reset",
                "msg Some(2)",
                "msg Some(3)"
            ]
        );
        assert_eq!(r.since(), Some(&StreamPosition::new(3, "new")));
    }

    #[test]
    fn a_rejoin_without_an_answer_about_recovery_is_not_recovered() {
        // A server without history: no seq, no `recovered`.
        let mut r = room(None);
        r.on_joined(JoinReply::default());
        r.connection_lost();
        r.on_joined(JoinReply::default());
        assert_eq!(drain(&r), ["not recovered 0", "presence reset"]);
        assert_eq!(r.since(), None);
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_says_how_many() {
        let mut r = RoomState::new(1, None, None, None, RoomShared::new(2));
        for seq in 1..=5 {
            msg(&mut r, seq, "e");
        }
        assert_eq!(drain(&r), ["lagged 3", "msg Some(4)", "msg Some(5)"]);
        // The position is what the client received, not what the application read.
        assert_eq!(r.since(), Some(&StreamPosition::new(5, "e")));
        r.shared.abandon();
        assert!(!r.on_message(Some(6), Some("e".into()), None, json!({})));
    }
}
