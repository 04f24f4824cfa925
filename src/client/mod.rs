//! A Rust client of `wshub.v1` that reconnects by itself and never loses a message
//! silently (feature `client`; `wss://` also needs `tls`).
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use wshub::client::{Client, RoomEvent};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Chat { text: String }
//!
//! # async fn run() -> Result<(), wshub::client::ClientError> {
//! let client = Client::builder("ws://127.0.0.1:8080/ws").token("secret-ann").build()?;
//! let mut lobby = client.join::<Chat>("chat:lobby").await?;
//! lobby.publish(&Chat { text: "hi".into() }).await?;
//! while let Some(event) = lobby.recv().await {
//!     match event {
//!         RoomEvent::Message(m) => println!("{:?}: {}", m.from, m.data.text),
//!         RoomEvent::NotRecovered { .. } => println!("(messages may be missing)"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## One task, cheap handles
//!
//! [`ClientBuilder::build`] spawns one task that owns the socket (on the crate's own
//! engine, [`crate::ws`]). [`Client`] and [`Subscription`] are handles that talk to it
//! through a bounded channel; `Client` is a cheap `Clone`. The task runs until
//! [`Client::close`], until it gives up (below), or until every handle is dropped.
//!
//! ## Reconnecting
//!
//! After a connection ends, the client waits a random time in `[0, min(cap, base *
//! 2^(n-1))]` before attempt `n` ([`Backoff`], "full jitter": the clients of a
//! restarted server come back spread out) and connects again, following PROTOCOL.md
//! section 8's close codes:
//!
//! | the server said | the client |
//! | --- | --- |
//! | close 1000, or 4000-4999 (a kick) | stops: [`ConnectionState::GaveUp`] |
//! | HTTP 401 at the upgrade | asks the token provider for a new token if the refused one had been accepted before (a restarted server with a new key), else stops |
//! | HTTP 403, or another 4xx but 408 and 429 | stops: retrying will not help |
//! | close 1008 `token expired` | asks the token provider ([`ClientBuilder::token_provider`]) for a new token, then reconnects at once; stops without a provider |
//! | anything else: 1001, 1006, 1011, 1013, 429, 5xx, refused TCP, timeouts, [`idle_timeout`](ClientOptions::idle_timeout) | retries with backoff, up to [`Backoff::max_attempts`] failures in a row |
//!
//! Each change is a [`ConnectionState`], readable with [`Client::state`] and sent as a
//! [`ClientEvent::State`] on [`Client::events`].
//!
//! ## Rooms across reconnects
//!
//! Every followed room is joined again on each new connection, with `since` set to
//! the position (`seq`, `epoch`) of the last stored message received (PROTOCOL.md
//! section 9), so the server sends only what was missed. A message whose `seq` is at
//! or below the last one received in the same epoch is dropped, so the application
//! sees each stored message exactly once and in order. Each re-join then says how it
//! went on the room's stream: [`RoomEvent::Recovered`] (nothing missed; the missed
//! messages follow), or [`RoomEvent::NotRecovered`] when the server cannot vouch for
//! continuity (history gone or never kept, another epoch, or no position to ask
//! from): never a silent gap. Presence is replaced by the re-join's snapshot
//! ([`RoomEvent::PresenceReset`]).
//!
//! ## Requests
//!
//! [`Client::publish`], [`Client::call`], [`Client::join`] and
//! [`Subscription::leave`] wait for their reply, at most
//! [`request_timeout`](ClientOptions::request_timeout) from the call. Made while the
//! client is offline, they are sent once it is connected again (after the re-joins); a
//! request whose caller stopped waiting is never sent late. A request in flight when
//! the connection ends fails with [`ClientError::ConnectionLost`] and is not sent
//! again (a publish may have been delivered: sending it twice could duplicate it).
//! Failed replies carry the protocol's code: [`ClientError::code`].
//!
//! ## When the application does not keep up
//!
//! Nothing the application fails to read can stall the connection. Each
//! [`Subscription`] buffers up to [`room_buffer`](ClientOptions::room_buffer) events;
//! past that the oldest are dropped and the next read is a [`RoomEvent::Lagged`] with
//! the count (the messages' `seq`s show the gap). Back-pressuring the socket instead
//! would hold up every other room and every reply behind one unread room, and end in
//! the server closing the connection as a slow consumer (1013). Likewise
//! [`Events`] keeps [`event_buffer`](ClientOptions::event_buffer) events. Requests are
//! bounded by [`max_pending_requests`](ClientOptions::max_pending_requests): one more
//! waits for a place.

mod builder;
mod connect;
mod error;
mod event;
mod options;
mod policy;
mod queue;
mod room;
mod session;
mod subscription;
mod task;
mod wire;

pub use crate::protocol::{PresenceCount, PresencePage, StreamPosition};
pub use builder::ClientBuilder;
pub use error::{BoxError, ClientError, Disconnect, ServerError, TokenReason};
pub use event::{ClientEvent, ConnectionState, Message, Published, RoomEvent};
pub use options::{Backoff, ClientOptions, TokenPlacement};
pub use subscription::Subscription;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot, watch};

use self::queue::RoomShared;
use self::task::{Command, JoinCommand, Request};
use self::wire::published;

/// A handle to a client: join rooms, publish, call, watch the connection. Cheap to
/// clone; every clone talks to the same connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// This handle's request timeout ([`Client::with_timeout`]).
    timeout: Duration,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
    /// Weak: the task holds the sender, so receivers end when the task does.
    events: broadcast::WeakSender<ClientEvent>,
    /// The receiver made before the task started, for the first caller of
    /// [`Client::events`], so it sees every event from the first attempt on.
    first_events: Mutex<Option<broadcast::Receiver<ClientEvent>>>,
    /// Places for requests waiting for a reply ([`ClientOptions::max_pending_requests`]).
    permits: Semaphore,
    room_buffer: usize,
    /// Tells successive subscriptions of one room apart.
    generations: AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.inner.state.borrow())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How to join a room: presence meta, recent history, a position to continue from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JoinOptions {
    /// The presence meta, a JSON object shown to the other members (sent with every
    /// join, re-joins included). Default: none (`{}`).
    pub meta: Option<Value>,
    /// Ask for the room's last `history` stored messages (PROTOCOL.md section 9),
    /// replayed after the join; also the fallback of a re-join that cannot recover.
    /// Default: none.
    pub history: Option<u64>,
    /// Continue from this position (one saved from [`Subscription::position`] or
    /// [`Message::position`] by an earlier run): the first join then already asks for
    /// what was missed, and says whether it all came. Default: none.
    pub since: Option<StreamPosition>,
}

impl JoinOptions {
    /// No meta, no history, no position.
    pub fn new() -> Self {
        JoinOptions::default()
    }

    /// Sets [`meta`](Self::meta).
    pub fn meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Sets [`history`](Self::history).
    pub fn history(mut self, messages: u64) -> Self {
        self.history = Some(messages);
        self
    }

    /// Sets [`since`](Self::since).
    pub fn since(mut self, position: StreamPosition) -> Self {
        self.since = Some(position);
        self
    }
}

impl Client {
    /// A builder for a client of the hub at `url` (`ws://` or `wss://`, with the path
    /// the application mounts the hub on).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    /// The connection's state now.
    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// Waits until the client is connected (`Ok`), or has stopped for good
    /// ([`ClientError::GaveUp`] with the reason, or [`ClientError::Closed`]).
    pub async fn connected(&self) -> Result<(), ClientError> {
        let mut state = self.inner.state.clone();
        match state
            .wait_for(|s| s.is_connected() || s.is_terminal())
            .await
        {
            Ok(s) => match &*s {
                ConnectionState::Connected { .. } => Ok(()),
                ConnectionState::GaveUp { reason, .. } => Err(ClientError::GaveUp(reason.clone())),
                _ => Err(ClientError::Closed),
            },
            Err(_) => Err(self.stopped()),
        }
    }

    /// Client-wide events: state changes, `direct` messages, bare errors. The first
    /// call gets every event since the client was built; later calls get those from
    /// the call on. Each receiver buffers
    /// [`event_buffer`](ClientOptions::event_buffer) events (then `Lagged`).
    pub fn events(&self) -> Events {
        let first = self
            .inner
            .first_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Events {
            rx: first.or_else(|| self.inner.events.upgrade().map(|tx| tx.subscribe())),
        }
    }

    /// A handle to the same client whose requests wait at most `timeout` for their
    /// reply.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// Joins `room` and follows it, its messages decoded into `M`: waits for the join's
    /// reply (the first one; the client joins again by itself after reconnects).
    /// Errors: the server's refusal ([`ClientError::Server`]: `not_found`,
    /// `forbidden`, `too_many_rooms`...), [`ClientError::AlreadyJoined`], a timeout.
    pub async fn join<M: DeserializeOwned>(
        &self,
        room: &str,
    ) -> Result<Subscription<M>, ClientError> {
        self.join_with(room, JoinOptions::default()).await
    }

    /// [`join`](Self::join) with presence meta, history or a position.
    pub async fn join_with<M: DeserializeOwned>(
        &self,
        room: &str,
        options: JoinOptions,
    ) -> Result<Subscription<M>, ClientError> {
        let shared = RoomShared::new(self.inner.room_buffer);
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        // Made first: if this future is dropped or times out, its `Drop` tells the task
        // to let the room go.
        let subscription = Subscription {
            room: room.to_owned(),
            generation,
            shared: shared.clone(),
            client: self.clone(),
            left: false,
            _type: PhantomData,
        };
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Join(JoinCommand {
            room: room.to_owned(),
            generation,
            meta: options.meta,
            history: options.history,
            since: options.since,
            shared,
            reply: tx,
        });
        self.round_trip(cmd, rx).await?;
        Ok(subscription)
    }

    /// Publishes `data` to `room` (which this client must have joined) and waits for
    /// the reply: how many connections it was delivered to and, in a room with history,
    /// where it was stored. Errors carry the protocol code: `not_joined`,
    /// `forbidden`, `too_large`, `invalid_data`, `rate_limited`...
    pub async fn publish<M: Serialize + ?Sized>(
        &self,
        room: &str,
        data: &M,
    ) -> Result<Published, ClientError> {
        let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
        let reply = self
            .request(Request::Publish {
                room: room.to_owned(),
                data,
            })
            .await?;
        Ok(published(&reply))
    }

    /// Publishes `data` to `room` as an ephemeral message (never stored, no `seq`:
    /// typing indicators, cursors), fire and forget: no reply, and a failure comes
    /// back, if at all, as a [`ClientEvent::Error`]. [`ClientError::NotConnected`]
    /// when offline: an ephemeral message is worthless late.
    pub async fn publish_ephemeral<M: Serialize + ?Sized>(
        &self,
        room: &str,
        data: &M,
    ) -> Result<(), ClientError> {
        let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
        if !self.inner.state.borrow().is_connected() {
            return Err(ClientError::NotConnected);
        }
        let cmd = Command::Fire {
            room: room.to_owned(),
            data,
        };
        match tokio::time::timeout(self.timeout, self.inner.commands.send(cmd)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.stopped()),
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    /// Calls method `method` the application registered on the server (PROTOCOL.md
    /// `call`) with `data`, and decodes its response into `R`. Errors: the method's or
    /// the server's refusal (`not_found`, `invalid_data`, `timeout`...),
    /// [`ClientError::Decode`], a timeout. A call in flight when the connection ends is
    /// not made again ([`ClientError::ConnectionLost`]).
    pub async fn call<Q: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        data: &Q,
    ) -> Result<R, ClientError> {
        let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
        let reply = self
            .request(Request::Call {
                method: method.to_owned(),
                data,
            })
            .await?;
        serde_json::from_value(reply).map_err(ClientError::Decode)
    }

    /// One page of `room`'s member list (`presence_page`, `PROTOCOL.md` section 4), in
    /// user id order: up to `limit` users (capped by the server, 100 by default) after
    /// cursor `after` (the `next` of the previous page; `None`: the first page), with
    /// the room's count. Every user present throughout the paging is on exactly one
    /// page. Errors: `not_joined` and the like, a timeout.
    pub async fn presence_page(
        &self,
        room: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<PresencePage, ClientError> {
        let reply = self
            .request(Request::PresencePage {
                room: room.to_owned(),
                after: after.map(str::to_owned),
                limit,
            })
            .await?;
        Ok(wire::presence_page(reply))
    }

    /// Closes the client: the connection is closed with 1000 (after what was queued),
    /// every subscription ends, and requests still waiting fail with
    /// [`ClientError::Closed`]. Returns once the client task has stopped.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Close).await;
        let mut state = self.inner.state.clone();
        let _ = state.wait_for(ConnectionState::is_terminal).await;
    }

    /// A request with a reply, holding one of the pending-request places meanwhile.
    async fn request(&self, request: Request) -> Result<Value, ClientError> {
        let work = async {
            let _place = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(|_| ClientError::Closed)?;
            let (tx, rx) = oneshot::channel();
            self.send_and_wait(Command::Request { request, reply: tx }, rx)
                .await
        };
        self.within_timeout(work).await
    }

    /// Sends `cmd` and waits for its reply on `rx`, within the request timeout.
    pub(crate) async fn round_trip<T>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.within_timeout(self.send_and_wait(cmd, rx)).await
    }

    async fn send_and_wait<T>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    async fn within_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// The error for a request the task will never answer: it has stopped.
    fn stopped(&self) -> ClientError {
        match &*self.inner.state.borrow() {
            ConnectionState::GaveUp { reason, .. } => ClientError::GaveUp(reason.clone()),
            _ => ClientError::Closed,
        }
    }
}

/// Client-wide events, from [`Client::events`].
#[derive(Debug)]
pub struct Events {
    rx: Option<broadcast::Receiver<ClientEvent>>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event before has
    /// been read. A receiver that fell behind gets [`ClientEvent::Lagged`] first.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        let rx = self.rx.as_mut()?;
        match rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(ClientEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}
