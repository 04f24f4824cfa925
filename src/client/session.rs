//! One connection, driven by the client task: the rooms joined again (with `since`),
//! the queued requests sent, then frames in (replies, messages, presence) and
//! commands out until the connection ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::error::{ClientError, Disconnect, ServerError};
use super::event::{ClientEvent, ConnectionState};
use super::queue::RawEvent;
use super::task::{Command, Pending, Request, Task};
use super::wire::{self, Frame, Op};
use crate::protocol::ErrorCode;
use crate::ws::{CloseCode, Message, Outbound, PreparedMessage, SendError, WebSocket};

/// When a re-join refused with `rate_limited` (a client in many rooms re-joining all
/// at once, over the hub's 20-join burst) is sent again. The hub refills one join
/// every 200 ms by default; a second lets a few through per retry without a storm.
const REJOIN_RETRY: Duration = Duration::from_secs(1);

/// Why a session ended: the disconnect and whether the `welcome` had arrived; `None`
/// when the application closed the client.
pub(crate) type SessionEnd = Option<(Disconnect, bool)>;

impl Task {
    /// Runs one connection until it ends.
    ///
    /// The socket's `recv` future is polled to completion, never dropped half-way:
    /// commands and timers are served in a `select!` next to it (they send through the
    /// connection's [`Outbound`], which needs no access to the socket), so the engine's
    /// reads and closing handshake are never cut off.
    pub(crate) async fn session<S>(&mut self, mut ws: WebSocket<S>) -> SessionEnd
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let out = ws.outbound();
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.send_join(&room, &out);
        }
        self.send_queued(&out);

        let idle = self.options.idle_timeout;
        let mut welcomed = false;
        let mut closing = false;
        loop {
            let received = {
                let recv = ws.recv();
                tokio::pin!(recv);
                loop {
                    // A far-off instant stands in for "no timer": `select!` needs a future.
                    let far = Instant::now() + Duration::from_secs(86_400);
                    let retry_at = self.rooms.values().filter_map(|f| f.retry_at).min();
                    tokio::select! {
                        biased;
                        received = &mut recv => break received,
                        cmd = self.commands.recv(), if !closing => match cmd {
                            None | Some(Command::Close) => {
                                closing = true;
                                out.close(CloseCode::Normal, "");
                            }
                            Some(cmd) => self.command_online(cmd, &out),
                        },
                        () = tokio::time::sleep_until(out.last_seen() + idle), if !closing => {
                            if out.last_seen() + idle <= Instant::now() {
                                // Gone without a word: nothing queued will be read.
                                out.close_now(CloseCode::Away, "idle timeout");
                                return Some((Disconnect::IdleTimeout, welcomed));
                            }
                        }
                        () = tokio::time::sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => {
                            self.retry_joins(&out);
                        }
                    }
                }
            };
            match received {
                Ok(Some(Message::Text(text))) => self.on_frame(text.as_str(), &out, &mut welcomed),
                // Not part of wshub.v1.
                Ok(Some(Message::Binary(_))) => {}
                Ok(None) if closing => return None,
                Ok(None) => {
                    let reason = match ws.peer_close() {
                        Some(Some(frame)) => Disconnect::Close {
                            code: frame.code.into(),
                            reason: frame.reason.to_string(),
                        },
                        Some(None) => Disconnect::Close {
                            code: 1005,
                            reason: String::new(),
                        },
                        // Our own close went unanswered (we never close but on idle
                        // or on the application's request, handled above).
                        None => Disconnect::Error(Arc::new(crate::Error::ConnectionClosed)),
                    };
                    return Some((reason, welcomed));
                }
                Err(_) if closing => return None,
                Err(e) => return Some((Disconnect::Error(Arc::new(e)), welcomed)),
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Queues `text` on the connection.
    fn send_text(&self, out: &Outbound, text: String) -> Result<(), SendError> {
        let prepared = PreparedMessage::with_compression_level(
            Message::text(text),
            self.options.ws.compression_level,
        );
        out.try_send(&prepared)
    }

    /// Sends the join of a followed room: with its meta, `history`, and `since` when
    /// a position is known.
    fn send_join(&mut self, room: &str, out: &Outbound) {
        let id = self.next_id();
        let Some(f) = self.rooms.get_mut(room) else {
            return;
        };
        f.retry_at = None;
        if f.waiter.as_ref().is_some_and(|w| w.is_closed()) {
            // The application gave up on this join before it could be sent.
            let generation = f.state.generation;
            self.unfollow(room, generation);
            return;
        }
        let text = Op::Join {
            room,
            id,
            meta: f.state.meta.as_ref(),
            since: f.state.since(),
            history: f.state.history,
        }
        .encode();
        let generation = f.state.generation;
        match self.send_text(out, text) {
            Ok(()) => {
                self.pending.insert(
                    id,
                    Pending::Join {
                        room: room.to_owned(),
                        generation,
                    },
                );
            }
            // The server is not reading: try again in a while on this connection (a
            // closing one is replaced, and every room joined on the next).
            Err(_) => {
                if let Some(f) = self.rooms.get_mut(room) {
                    f.retry_at = Some(Instant::now() + REJOIN_RETRY);
                }
            }
        }
    }

    fn retry_joins(&mut self, out: &Outbound) {
        let now = Instant::now();
        let due: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, f)| f.retry_at.is_some_and(|at| at <= now))
            .map(|(room, _)| room.clone())
            .collect();
        for room in due {
            self.send_join(&room, out);
        }
    }

    /// Sends the requests made while offline, in order.
    fn send_queued(&mut self, out: &Outbound) {
        while let Some((request, reply)) = self.queued.pop_front() {
            self.send_request(request, reply, out);
        }
    }

    fn send_request(
        &mut self,
        request: Request,
        reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, ClientError>>,
        out: &Outbound,
    ) {
        if reply.is_closed() {
            // Its caller timed out or went away: a publish nobody waits for is not sent
            // late.
            return;
        }
        let id = self.next_id();
        let text = match &request {
            Request::Publish { room, data } => Op::Publish {
                room,
                data,
                id: Some(id),
                ephemeral: false,
            },
            Request::Call { method, data } => Op::Call { method, data, id },
            Request::PresencePage { room, after, limit } => Op::PresencePage {
                room,
                id,
                after: after.as_deref(),
                limit: *limit,
            },
        }
        .encode();
        match self.send_text(out, text) {
            Ok(()) => {
                self.pending.insert(id, Pending::Request(reply));
            }
            Err(SendError::Full) => {
                let _ = reply.send(Err(ClientError::QueueFull));
            }
            // The connection is closing: the next one sends it.
            Err(SendError::Closed) => self.queued.push_back((request, reply)),
        }
    }

    fn command_online(&mut self, cmd: Command, out: &Outbound) {
        match cmd {
            Command::Join(join) => {
                let room = join.room.clone();
                if self.follow(join) {
                    self.send_join(&room, out);
                }
            }
            Command::Leave {
                room,
                generation,
                reply,
            } => {
                if self.unfollow(&room, generation) {
                    let id = self.next_id();
                    if self
                        .send_text(out, Op::Leave { room: &room, id }.encode())
                        .is_ok()
                    {
                        self.pending.insert(id, Pending::Leave(reply));
                        return;
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Request { request, reply } => self.send_request(request, reply, out),
            Command::Fire { room, data } => {
                let op = Op::Publish {
                    room: &room,
                    data: &data,
                    id: None,
                    ephemeral: true,
                };
                // Fire and forget: a full queue drops it, like a lost packet.
                let _ = self.send_text(out, op.encode());
            }
            Command::Close => unreachable!("handled by the caller"),
        }
    }

    /// The application's subscription is gone: leave the room on the server too.
    fn forget(&mut self, room: &str, out: &Outbound) {
        let generation = match self.rooms.get(room) {
            Some(f) => f.state.generation,
            None => return,
        };
        self.command_online(
            Command::Leave {
                room: room.to_owned(),
                generation,
                reply: None,
            },
            out,
        );
    }

    fn on_frame(&mut self, text: &str, out: &Outbound, welcomed: &mut bool) {
        let frame = match Frame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(error = %e, "wshub client: unreadable server frame ignored");
                return;
            }
        };
        match frame.op.as_str() {
            "welcome" => {
                *welcomed = true;
                self.set_state(ConnectionState::Connected {
                    conn_id: frame.conn_id.unwrap_or_default(),
                    user: frame.user.unwrap_or_default(),
                });
            }
            "reply" => self.on_reply(frame, out),
            "message" => {
                let Some(room) = frame.room.as_deref() else {
                    return;
                };
                let Some(f) = self.rooms.get_mut(room) else {
                    return;
                };
                let data = frame.data.unwrap_or_default();
                if !f.state.on_message(frame.seq, frame.epoch, frame.from, data) {
                    let room = room.to_owned();
                    self.forget(&room, out);
                }
            }
            "presence_diff" => {
                let Some(room) = frame.room.clone() else {
                    return;
                };
                let Some(f) = self.rooms.get_mut(&room) else {
                    return;
                };
                if !f.state.on_presence_diff(frame.into_diff()) {
                    self.forget(&room, out);
                }
            }
            "presence_count" | "presence_state" => {
                let Some(room) = frame.room.clone() else {
                    return;
                };
                let Some(f) = self.rooms.get_mut(&room) else {
                    return;
                };
                let live = match (frame.count(), frame.presence) {
                    (Some(count), _) => f.state.on_presence_count(count),
                    (None, Some(presence)) => f.state.on_presence_state(presence),
                    (None, None) => true,
                };
                if !live {
                    self.forget(&room, out);
                }
            }
            "left" => {
                let Some(room) = frame.room.as_deref() else {
                    return;
                };
                if let Some(f) = self.rooms.remove(room) {
                    f.state.shared.push(RawEvent::Left {
                        reason: frame.reason.unwrap_or_default(),
                    });
                    f.state.shared.end();
                    if let Some(waiter) = f.waiter {
                        let _ = waiter.send(Err(ClientError::Server(ServerError::new(
                            "forbidden",
                            "the server took the connection out of the room",
                        ))));
                    }
                }
            }
            "joined" => {
                if let Some(room) = frame.room {
                    self.emit(ClientEvent::Joined { room });
                }
            }
            "direct" => self.emit(ClientEvent::Direct {
                from: frame.from,
                data: frame.data.unwrap_or_default(),
            }),
            "error" => {
                if let Some(error) = frame.error {
                    self.emit(ClientEvent::Error(error.into()));
                }
            }
            // A later addition to the protocol.
            _ => {}
        }
    }

    fn on_reply(&mut self, frame: Frame, out: &Outbound) {
        let Some(pending) = frame.id.and_then(|id| self.pending.remove(&id)) else {
            return;
        };
        match pending {
            Pending::Request(reply) => {
                let _ = reply.send(frame.into_result().map_err(ClientError::Server));
            }
            Pending::Leave(reply) => {
                let result = match frame.into_result() {
                    Ok(_) => Ok(()),
                    // Not a member is what a leave wants.
                    Err(e) if e.code() == Some(ErrorCode::NotJoined) => Ok(()),
                    Err(e) => Err(ClientError::Server(e)),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Pending::Join { room, generation } => {
                let Some(f) = self.rooms.get_mut(&room) else {
                    return;
                };
                if f.state.generation != generation {
                    return;
                }
                match frame.into_result() {
                    Ok(data) => {
                        f.state.on_joined(wire::join_reply(&data));
                        if let Some(waiter) = f.waiter.take()
                            && waiter.send(Ok(())).is_err()
                        {
                            // The application stopped waiting: nobody will read.
                            self.forget(&room, out);
                        }
                    }
                    Err(e) => {
                        if let Some(waiter) = f.waiter.take() {
                            // The application's own join: its caller gets the refusal.
                            self.unfollow(&room, generation);
                            let _ = waiter.send(Err(ClientError::Server(e)));
                        } else if e.code() == Some(ErrorCode::RateLimited) {
                            f.retry_at = Some(Instant::now() + REJOIN_RETRY);
                        } else {
                            f.state.shared.push(RawEvent::RejoinFailed(e));
                            self.unfollow(&room, generation);
                        }
                    }
                }
            }
        }
    }
}
