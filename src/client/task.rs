//! The client task: one per client, the only owner of the socket. It connects,
//! reconnects by the close-code policy with backoff, and in between serves the
//! handles' commands (queued while offline, sent once connected). The connection
//! itself, frames in and out, is in [`session`](super::session).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::connect::{Connector, Transport};
use super::error::{BoxError, ClientError, Disconnect, TokenReason};
use super::event::{ClientEvent, ConnectionState};
use super::options::ClientOptions;
use super::policy::{Next, next_step};
use super::queue::RoomShared;
use super::room::RoomState;
use crate::protocol::StreamPosition;

/// A token provider, erased.
pub(crate) type TokenFn = dyn Fn(TokenReason) -> futures_core::future::BoxFuture<'static, Result<String, BoxError>>
    + Send
    + Sync;

/// Where the token comes from.
#[derive(Clone)]
pub(crate) enum TokenSource {
    None,
    Static(String),
    Provider(Arc<TokenFn>),
}

/// A handle's `join`: the room, what to send with the join, where its events go.
pub(crate) struct JoinCommand {
    pub(crate) room: String,
    pub(crate) generation: u64,
    pub(crate) meta: Option<Value>,
    pub(crate) history: Option<u64>,
    pub(crate) since: Option<StreamPosition>,
    pub(crate) shared: Arc<RoomShared>,
    pub(crate) reply: oneshot::Sender<Result<(), ClientError>>,
}

/// What a handle asks of the task.
pub(crate) enum Command {
    Join(JoinCommand),
    /// Stop following a room (`reply: None`: the subscription was dropped).
    Leave {
        room: String,
        generation: u64,
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    },
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Value, ClientError>>,
    },
    /// An ephemeral publish, fire and forget: sent now or never.
    Fire {
        room: String,
        data: Value,
    },
    Close,
}

/// An op that gets a reply.
pub(crate) enum Request {
    Publish {
        room: String,
        data: Value,
    },
    Call {
        method: String,
        data: Value,
    },
    PresencePage {
        room: String,
        after: Option<String>,
        limit: Option<usize>,
    },
}

/// A room the client follows: its state and what the task alone needs of it.
pub(crate) struct Followed {
    pub(crate) state: RoomState,
    /// The application's `join` call, until the first reply.
    pub(crate) waiter: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// A re-join refused with `rate_limited` is sent again at this time.
    pub(crate) retry_at: Option<tokio::time::Instant>,
}

/// A request sent on the current connection, by id.
pub(crate) enum Pending {
    Join { room: String, generation: u64 },
    Leave(Option<oneshot::Sender<Result<(), ClientError>>>),
    Request(oneshot::Sender<Result<Value, ClientError>>),
}

/// How the client stopped.
enum Terminal {
    Closed,
    GaveUp { reason: Disconnect, attempts: u32 },
}

/// The client task's state.
pub(crate) struct Task {
    pub(crate) connector: Connector,
    pub(crate) token: TokenSource,
    pub(crate) options: ClientOptions,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) rng: StdRng,
    /// The rooms the application follows, by name.
    pub(crate) rooms: HashMap<String, Followed>,
    /// Requests sent on the current connection, by id.
    pub(crate) pending: HashMap<u64, Pending>,
    /// Requests made while offline, sent once connected (unless their caller gave up
    /// on them meanwhile). Bounded by the handles' request semaphore.
    pub(crate) queued: VecDeque<(Request, oneshot::Sender<Result<Value, ClientError>>)>,
    pub(crate) next_id: u64,
}

impl Task {
    pub(crate) fn new(
        connector: Connector,
        token: TokenSource,
        options: ClientOptions,
        commands: mpsc::Receiver<Command>,
        state: watch::Sender<ConnectionState>,
        events: broadcast::Sender<ClientEvent>,
        rng: StdRng,
    ) -> Self {
        Task {
            connector,
            token,
            options,
            commands,
            state,
            events,
            rng,
            rooms: HashMap::new(),
            pending: HashMap::new(),
            queued: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Runs the client until it is closed or gives up.
    pub(crate) async fn run(mut self) {
        let terminal = self.connect_loop().await;
        self.finish(terminal);
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        tracing::debug!(?state, "wshub client");
        // No receiver is fine: nobody listens to events.
        let _ = self.events.send(ClientEvent::State(state.clone()));
        self.state.send_replace(state);
    }

    pub(crate) fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    async fn connect_loop(&mut self) -> Terminal {
        let mut token = match &self.token {
            TokenSource::Static(t) => Some(t.clone()),
            _ => None,
        };
        let mut need =
            matches!(self.token, TokenSource::Provider(_)).then_some(TokenReason::Initial);
        // The current token was accepted (a `welcome` came with it) at least once: a
        // 401 for it later means it went stale, not that it was never good.
        let mut accepted = false;
        // Failed attempts in a row; a `welcome` resets it.
        let mut failures: u32 = 0;
        loop {
            if let Some(why) = need.take() {
                let TokenSource::Provider(provider) = &self.token else {
                    unreachable!("a token is asked for only with a provider");
                };
                let asked = tokio::time::timeout(self.options.handshake.timeout, provider(why));
                match self.offline(asked).await {
                    None => return Terminal::Closed,
                    Some(Ok(Ok(t))) => {
                        token = Some(t);
                        accepted = false;
                    }
                    Some(Ok(Err(e))) => {
                        let reason = Disconnect::Token(Arc::from(e));
                        return Terminal::GaveUp {
                            reason,
                            attempts: failures,
                        };
                    }
                    Some(Err(_)) => {
                        let e: BoxError = "the token provider did not answer in time".into();
                        let reason = Disconnect::Token(Arc::from(e));
                        return Terminal::GaveUp {
                            reason,
                            attempts: failures,
                        };
                    }
                }
            }

            self.set_state(ConnectionState::Connecting {
                attempt: failures + 1,
            });
            let attempt = self.connector.clone().connect(token.clone());
            let (reason, welcomed) = match self.offline(attempt).await {
                None => return Terminal::Closed,
                Some(Err(reason)) => (reason, false),
                Some(Ok(transport)) => {
                    let end = match transport {
                        Transport::Plain(ws) => self.session(*ws).await,
                        #[cfg(feature = "tls")]
                        Transport::Tls(ws) => self.session(*ws).await,
                    };
                    match end {
                        None => return Terminal::Closed,
                        Some(ended) => ended,
                    }
                }
            };
            self.connection_lost();
            if welcomed {
                failures = 0;
                accepted = true;
            } else {
                failures = failures.saturating_add(1);
            }
            tracing::debug!(%reason, failures, "wshub client disconnected");

            match next_step(&reason) {
                Next::GiveUp => {
                    return Terminal::GaveUp {
                        reason,
                        attempts: failures,
                    };
                }
                Next::NewToken(why) => {
                    let renewable = matches!(self.token, TokenSource::Provider(_))
                        && (why == TokenReason::Expired || accepted);
                    if !renewable {
                        return Terminal::GaveUp {
                            reason,
                            attempts: failures,
                        };
                    }
                    need = Some(why);
                    self.set_state(ConnectionState::Disconnected {
                        reason,
                        retry_in: Duration::ZERO,
                    });
                }
                Next::Retry => {
                    if self
                        .options
                        .backoff
                        .max_attempts
                        .is_some_and(|max| failures >= max)
                    {
                        return Terminal::GaveUp {
                            reason,
                            attempts: failures,
                        };
                    }
                    let delay = self.options.backoff.delay(failures + 1, &mut self.rng);
                    self.set_state(ConnectionState::Disconnected {
                        reason,
                        retry_in: delay,
                    });
                    if self.offline(tokio::time::sleep(delay)).await.is_none() {
                        return Terminal::Closed;
                    }
                }
            }
        }
    }

    /// Runs `fut` (which borrows nothing of the task) while serving commands as an
    /// offline client does. `None`: the application closed the client meanwhile.
    async fn offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Close) => return None,
                    Some(cmd) => self.command_offline(cmd),
                },
            }
        }
    }

    fn command_offline(&mut self, cmd: Command) {
        match cmd {
            Command::Join(join) => {
                self.follow(join);
            }
            Command::Leave {
                room,
                generation,
                reply,
            } => {
                // No connection, so no membership on the server to end.
                self.unfollow(&room, generation);
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::Request { request, reply } => self.queued.push_back((request, reply)),
            // Ephemeral: now or never.
            Command::Fire { .. } => {}
            Command::Close => unreachable!("handled by the caller"),
        }
    }

    /// Starts following `join.room`; `false` (and the waiter told) if it is followed
    /// already.
    pub(crate) fn follow(&mut self, join: JoinCommand) -> bool {
        let JoinCommand {
            room,
            generation,
            meta,
            history,
            since,
            shared,
            reply,
        } = join;
        if let Some(f) = self.rooms.get(&room) {
            if !f.state.shared.is_abandoned() {
                let _ = reply.send(Err(ClientError::AlreadyJoined(room)));
                return false;
            }
            // A dropped subscription whose leave could not be queued: the new one takes
            // its place (the server answers a join of a room it is in with a snapshot).
            self.rooms.remove(&room);
        }
        let state = RoomState::new(generation, meta, history, since, shared);
        self.rooms.insert(
            room,
            Followed {
                state,
                waiter: Some(reply),
                retry_at: None,
            },
        );
        true
    }

    /// Stops following `room` (if this generation of it is followed): its
    /// subscription ends. `true` if it was followed.
    pub(crate) fn unfollow(&mut self, room: &str, generation: u64) -> bool {
        match self.rooms.get(room) {
            Some(f) if f.state.generation == generation => {
                if let Some(f) = self.rooms.remove(room) {
                    f.state.shared.end();
                }
                true
            }
            _ => false,
        }
    }

    /// The connection ended: requests in flight fail (they may have taken effect, and
    /// are not sent twice), joins will be sent again on the next connection.
    fn connection_lost(&mut self) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Request(reply) => {
                    let _ = reply.send(Err(ClientError::ConnectionLost));
                }
                // Closing the connection left the room as well.
                Pending::Leave(Some(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                Pending::Leave(None) | Pending::Join { .. } => {}
            }
        }
        for f in self.rooms.values_mut() {
            f.state.connection_lost();
            f.retry_at = None;
        }
    }

    /// The client stopped: everyone waiting is told why, every subscription ends.
    fn finish(mut self, terminal: Terminal) {
        let state = match &terminal {
            Terminal::Closed => ConnectionState::Closed,
            Terminal::GaveUp { reason, attempts } => {
                tracing::warn!(%reason, attempts, "wshub client gave up");
                ConnectionState::GaveUp {
                    reason: reason.clone(),
                    attempts: *attempts,
                }
            }
        };
        let error = || match &terminal {
            Terminal::Closed => ClientError::Closed,
            Terminal::GaveUp { reason, .. } => ClientError::GaveUp(reason.clone()),
        };
        // The state first: a handle whose request fails below may read it.
        self.set_state(state);
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Join(join) => {
                    let _ = join.reply.send(Err(error()));
                }
                Command::Leave {
                    reply: Some(reply), ..
                } => {
                    let _ = reply.send(Ok(()));
                }
                Command::Request { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                _ => {}
            }
        }
        for (_, reply) in self.queued.drain(..) {
            let _ = reply.send(Err(error()));
        }
        for (_, pending) in self.pending.drain() {
            if let Pending::Request(reply) = pending {
                let _ = reply.send(Err(error()));
            }
        }
        for (_, f) in self.rooms.drain() {
            if let Some(waiter) = f.waiter {
                let _ = waiter.send(Err(error()));
            }
            f.state.shared.end();
        }
    }
}
