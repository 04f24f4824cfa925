//! A Redis backplane (feature `redis`): many hub processes ("nodes") serve one set of
//! rooms. A message published on any node, by a client or from Rust, reaches the
//! room's members on every node in the same per-room order, and room history lives
//! in Redis, so a client that drops from one node recovers on another.
//!
//! ```no_run
//! use wshub::redis::{RedisBackplane, RedisOptions};
//! use wshub::{Hub, Namespace};
//!
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Chat { text: String }
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backplane = RedisBackplane::new("redis://127.0.0.1:6379/", RedisOptions::default())?;
//! let hub = Hub::builder()
//!     .namespace(Namespace::<Chat>::new("chat"))
//!     .backplane(backplane)
//!     .build();
//! # let _ = hub; Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **One bus.** Every node subscribes to one channel (`{prefix}:bus`). A publish is
//!   not fanned out by the node that received it: it goes to Redis, and every node,
//!   this one included, fans out what comes back from the bus, encoded once per node.
//!   Redis orders the bus, so every node sees a room's messages in the same order.
//! - **Append and publish in one script.** In a namespace with history, one Lua
//!   script assigns the `seq` (the epoch lives in Redis too), stores the frame in the
//!   room's stream (`XADD`, bounded by count with `MAXLEN` and by age with
//!   `XTRIM MINID`) and `PUBLISH`es it: bus order is `seq` order, and no message is
//!   on the bus without being stored.
//! - **Each node checks continuity.** A node remembers, per room, the position its
//!   members have everything through. A message one past it is delivered; one it has
//!   already is dropped (a join's replay got it first); a gap (the bus dropped, a
//!   queue overflowed) is filled from the stored history, and if that is not possible
//!   (the history is gone: Redis restarted) the room's members are closed with 1013,
//!   so they re-join and are told `recovered: false`. Continuity loss is never hidden.
//! - **Failures.** A publish while Redis is unreachable (or while this node's
//!   subscription is down) fails: [`HistoryError::Unavailable`], `unavailable` on the
//!   wire. The subscription reconnects by itself with backoff and resubscribes; every
//!   room is then checked as above. Nothing queues while Redis is down: commands fail
//!   at once, the bus-to-hub queue and each room's inbox are bounded.
//!
//! The client crate is redis-rs (`redis`): maintained by the Redis project, tokio
//! support, a multiplexed connection manager that reconnects by itself, and
//! server-side scripts (`EVALSHA`, reloaded on `NOSCRIPT`). The subscription uses its
//! plain async `PubSub` under a loop of our own, so the hub knows exactly when the bus
//! was lost and regained (it must then check every room's continuity).

mod bus;
mod history;
mod presence;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use bus::{BusEvent, BusMessage};
pub use history::RedisHistory;
pub(crate) use presence::PresenceEvent;

use crate::history::{HistoryError, HistoryLimits};
use crate::protocol::EncodedMessage;

/// Settings of a [`RedisBackplane`]. Every field has a default that suits a local
/// Redis; build with `RedisOptions::default()` and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key and channel, so that several applications (or test runs)
    /// share one Redis. Default: `"wshub"`.
    pub prefix: String,
    /// How long one command (a publish, a history read) may take before it fails
    /// with `unavailable`. Default: 2 s: far above a healthy round trip, short enough
    /// that a client's request is answered while it still waits.
    pub command_timeout: Duration,
    /// How long a publish waits for its own message to come back from the bus to
    /// count this node's deliveries. Past it the publish still succeeds (the message
    /// is stored and published) with `delivered: 0`. Default: 2 s.
    pub echo_timeout: Duration,
    /// Messages received from the bus and not yet taken by the hub. The subscription
    /// waits when it is full (Redis then buffers, up to its own pubsub output limit,
    /// after which it drops the subscription and the rooms are checked). Default:
    /// 8,192.
    pub bus_capacity: usize,
    /// Messages waiting for one room's fan-out on this node (while a join holds the
    /// room's turn). Over it the room is checked against history instead. Default:
    /// 1,024.
    pub room_inbox: usize,
    /// First wait before resubscribing after the bus dropped; doubled each failure.
    /// Default: 100 ms.
    pub reconnect_min: Duration,
    /// Longest wait between resubscription attempts. Default: 5 s.
    pub reconnect_max: Duration,
    /// How long a node's presence entries outlive its last heartbeat (sent every
    /// third of this). A node that dies without a goodbye has its users leave every
    /// room within `presence_ttl` plus one reconciliation period (a third of it), so
    /// at most 4/3 of it: 20 s by default. Default: 15 s: a few missed heartbeats
    /// (a busy Redis, a GC pause elsewhere) do not make a live node's users flicker.
    pub presence_ttl: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "wshub".to_owned(),
            command_timeout: Duration::from_secs(2),
            echo_timeout: Duration::from_secs(2),
            bus_capacity: 8192,
            room_inbox: 1024,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            presence_ttl: Duration::from_secs(15),
        }
    }
}

/// Why a [`RedisBackplane`] could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL is not a Redis URL (`redis://host:port/db`).
    #[error("invalid Redis URL: {0}")]
    Url(String),
}

/// A Redis backplane: attach it with
/// [`HubBuilder::backplane`](crate::HubBuilder::backplane). A cheap `Clone` handle.
///
/// Creating one does not connect: the hub connects when it is built, and keeps
/// reconnecting while Redis is unreachable.
#[derive(Clone)]
pub struct RedisBackplane(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) client: ::redis::Client,
    pub(crate) history: RedisHistory,
    pub(crate) options: RedisOptions,
    /// This node's id on the bus, random: a node knows its own messages.
    pub(crate) node: u64,
    next_publish: AtomicU64,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &format_args!("{:016x}", self.0.node))
            .field("prefix", &self.0.options.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// A backplane on the Redis at `url` (`redis://host:port/db`). Call inside a tokio
    /// runtime; nothing is connected yet.
    pub fn new(url: &str, options: RedisOptions) -> Result<Self, RedisError> {
        let client = ::redis::Client::open(url).map_err(|e| RedisError::Url(e.to_string()))?;
        let history = RedisHistory::with_client(client.clone(), &options)
            .map_err(|e| RedisError::Url(e.to_string()))?;
        Ok(RedisBackplane(Arc::new(Inner {
            client,
            history,
            node: rand::random(),
            next_publish: AtomicU64::new(1),
            options: options.clone(),
        })))
    }

    /// The history store the backplane uses (the hub's, once attached).
    pub fn history(&self) -> RedisHistory {
        self.0.history.clone()
    }

    /// The bus channel's name.
    pub(crate) fn channel(&self) -> String {
        format!("{}:bus", self.0.options.prefix)
    }

    pub(crate) fn options(&self) -> &RedisOptions {
        &self.0.options
    }

    pub(crate) fn node(&self) -> u64 {
        self.0.node
    }

    /// A fresh id for one of this node's publishes (its echo is matched by it).
    pub(crate) fn next_publish_id(&self) -> u64 {
        self.0.next_publish.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts the subscription task: it connects, subscribes, forwards what the bus
    /// carries to the returned receiver, and reconnects with backoff. It ends when
    /// the receiver is dropped.
    pub(crate) fn subscribe(&self) -> tokio::sync::mpsc::Receiver<BusEvent> {
        bus::spawn(self.clone())
    }

    /// Stores `msg` in `room`'s stream and publishes it on the bus, in one script:
    /// returns its position.
    pub(crate) async fn append_publish(
        &self,
        room: &str,
        msg: &EncodedMessage,
        limits: HistoryLimits,
        publish_id: u64,
    ) -> Result<(u64, Arc<str>), HistoryError> {
        let header = bus::header_prefix(self.0.node, publish_id);
        self.0
            .history
            .append_script(room, msg, limits, Some((&self.channel(), &header)))
            .await
    }

    /// Publishes a message that is not stored (ephemeral, or a namespace without
    /// history) on the bus.
    pub(crate) async fn publish_plain(
        &self,
        room: &str,
        frame: &str,
        publish_id: u64,
    ) -> Result<(), HistoryError> {
        let payload = bus::encode(self.0.node, publish_id, room, None, frame);
        self.0.history.publish(&self.channel(), payload).await
    }
}
