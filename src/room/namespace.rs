//! Namespaces: a name, a Rust message type, options and a publish hook, and the
//! type-erased form the hub keeps them in.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Publication, RoomState};
use crate::BoxFuture;
use crate::auth::Identity;
use crate::history::HistoryLimits;
use crate::protocol::ErrorCode;

/// What a room's message type must be: a serde type that can cross threads.
///
/// Implemented for every `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`
/// type; there is nothing to implement by hand.
pub trait RoomMessage: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> RoomMessage for T {}

/// Options of one namespace. Every field has a default; see each.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Whether clients may publish (`false`: server-publish only, a client publish is
    /// refused with `forbidden`). Default: `true`.
    pub client_publish: bool,
    /// Whether rooms track presence and send `presence_diff`s. Default: `true`.
    pub presence: bool,
    /// Most connections one room accepts; a join over it gets `room_full`.
    /// Default: 10,000.
    pub max_subscribers: usize,
    /// Largest `data` of one client publish, in bytes of JSON; over it the publish gets
    /// `too_large` (the frame limit of the hub closes with 1009 before that). Checked
    /// on what the client sent and again on what the publish hook returns, so a hook
    /// cannot make a message larger than the limit either.
    /// Default: 64 KiB.
    pub max_payload: usize,
    /// How much history each room keeps, for recovery and for joins that ask for
    /// recent messages (`PROTOCOL.md`, section 9); `None`: no history, messages carry
    /// no `seq` and a recovering join gets `recovered: false`.
    /// Default: `Some(HistoryLimits::default())`, 100 messages and 10 minutes per room.
    pub history: Option<HistoryLimits>,
    /// Rooms of this namespace with more users than this are big (`PROTOCOL.md`,
    /// section 6); `None`: the hub's
    /// [`HubConfig::presence_big_room`](crate::HubConfig::presence_big_room). Set it
    /// for rooms that should always be big (`Some(0)`: a live event's audience) or
    /// never (`Some(usize::MAX)`). Default: `None`.
    pub big_room: Option<usize>,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            client_publish: true,
            presence: true,
            max_subscribers: 10_000,
            max_payload: 64 * 1024,
            history: Some(HistoryLimits::default()),
            big_room: None,
        }
    }
}

/// Why a publish hook refused a message: sent to the publisher as an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code (`forbidden` or `invalid_data` are the usual ones).
    pub code: ErrorCode,
    /// A message for the client.
    pub message: String,
}

impl Refusal {
    /// Refuse as `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal {
            code: ErrorCode::Forbidden,
            message: message.into(),
        }
    }
    /// Refuse as `invalid_data`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal {
            code: ErrorCode::InvalidData,
            message: message.into(),
        }
    }
}

/// What a publish hook sees about a client publish.
#[derive(Debug)]
#[non_exhaustive]
pub struct PublishContext<'a> {
    /// The room published to.
    pub room: &'a str,
    /// The publisher.
    pub identity: &'a Identity,
    /// Whether the client marked the publish ephemeral.
    pub ephemeral: bool,
}

/// What an async publish hook ([`Namespace::on_publish_async`]) sees about a client
/// publish. Owned rather than borrowed, unlike [`PublishContext`], so the hook's future
/// can keep it across `.await`s.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AsyncPublishContext {
    /// The room published to.
    pub room: Arc<str>,
    /// The publisher.
    pub identity: Arc<Identity>,
    /// The publishing connection's id (the `conn_id` of its `welcome`).
    pub conn_id: u64,
    /// Whether the client marked the publish ephemeral.
    pub ephemeral: bool,
}

type SyncHook<M> = Arc<dyn Fn(&PublishContext<'_>, M) -> Result<M, Refusal> + Send + Sync>;
type AsyncHook<M> =
    Arc<dyn Fn(AsyncPublishContext, M) -> BoxFuture<Result<M, Refusal>> + Send + Sync>;

/// A namespace's publish hook: at most one, plain or async.
enum Hook<M> {
    Sync(SyncHook<M>),
    Async(AsyncHook<M>),
}

impl<M> Clone for Hook<M> {
    fn clone(&self) -> Self {
        match self {
            Hook::Sync(h) => Hook::Sync(h.clone()),
            Hook::Async(h) => Hook::Async(h.clone()),
        }
    }
}

/// A namespace: the rooms `NAME:*`, all carrying messages of type `M`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// use wshub::{Namespace, Refusal};
/// #[derive(Clone, Serialize, Deserialize)]
/// struct ChatMessage { text: String }
///
/// let chat = Namespace::<ChatMessage>::new("chat")
///     .max_subscribers(500)
///     .on_publish(|_ctx, msg| {
///         if msg.text.trim().is_empty() {
///             return Err(Refusal::invalid("empty message"));
///         }
///         Ok(ChatMessage { text: msg.text.trim().to_owned() })
///     });
/// ```
pub struct Namespace<M> {
    name: String,
    options: NamespaceOptions,
    hook: Option<Hook<M>>,
}

impl<M> fmt::Debug for Namespace<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<M>())
            .field("options", &self.options)
            .field(
                "hook",
                &match self.hook {
                    None => "none",
                    Some(Hook::Sync(_)) => "sync",
                    Some(Hook::Async(_)) => "async",
                },
            )
            .finish()
    }
}

impl<M: RoomMessage> Namespace<M> {
    /// The namespace `name`: rooms are named `name:anything`. `name` may not contain
    /// `:`.
    pub fn new(name: impl Into<String>) -> Self {
        Namespace {
            name: name.into(),
            options: NamespaceOptions::default(),
            hook: None,
        }
    }
    /// Replaces all options at once.
    pub fn options(mut self, options: NamespaceOptions) -> Self {
        self.options = options;
        self
    }
    /// Server-publish only: client publishes are refused with `forbidden`.
    pub fn server_only(mut self) -> Self {
        self.options.client_publish = false;
        self
    }
    /// Turns presence on or off.
    pub fn presence(mut self, on: bool) -> Self {
        self.options.presence = on;
        self
    }
    /// Rooms with more users than `users` are big ([`NamespaceOptions::big_room`]).
    pub fn big_room(mut self, users: usize) -> Self {
        self.options.big_room = Some(users);
        self
    }
    /// Most connections per room.
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.options.max_subscribers = n;
        self
    }
    /// Largest client publish payload, in bytes of JSON.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.options.max_payload = bytes;
        self
    }
    /// How much history each room keeps (default: 100 messages, 10 minutes).
    pub fn history(mut self, limits: HistoryLimits) -> Self {
        self.options.history = Some(limits);
        self
    }
    /// Keeps no history: messages carry no `seq`, nothing is replayed, and a
    /// recovering join gets `recovered: false`. For rooms whose messages are stale
    /// the moment they are sent (cursors, prices that the next message replaces).
    pub fn no_history(mut self) -> Self {
        self.options.history = None;
        self
    }
    /// A hook run on every client publish after it decoded into `M`: return the message
    /// to broadcast (possibly changed) or a [`Refusal`]. Server publishes skip it.
    /// Replaces an [`on_publish_async`](Self::on_publish_async) hook.
    pub fn on_publish(
        mut self,
        hook: impl Fn(&PublishContext<'_>, M) -> Result<M, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Hook::Sync(Arc::new(hook)));
        self
    }

    /// An async hook run on every client publish after it decoded into `M`, for checks
    /// that wait (a database, a moderation service): resolve to the message to
    /// broadcast (possibly changed) or a [`Refusal`]. Server publishes skip it.
    /// Replaces an [`on_publish`](Self::on_publish) hook.
    ///
    /// The publishes of one connection go through the hook one at a time, in the
    /// order they arrived, so they are broadcast in that order however long each check
    /// takes; other connections' publishes do not wait for them, and the connection
    /// keeps reading and answering its other ops meanwhile (so their replies may
    /// overtake a publish's). At most
    /// [`HubConfig::max_pending_publishes`](crate::HubConfig::max_pending_publishes)
    /// of a connection's publishes wait (over it: `rate_limited`); those still waiting
    /// when the connection closes are dropped. A check that takes longer than
    /// [`HubConfig::publish_hook_timeout`](crate::HubConfig::publish_hook_timeout)
    /// (10 s) is dropped and its publish answered `timeout`, not published; the next
    /// one is checked. The result is checked against
    /// [`max_payload`](NamespaceOptions::max_payload) again, as for `on_publish`.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// use wshub::{AsyncPublishContext, Namespace, Refusal};
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct ChatMessage { text: String }
    ///
    /// # async fn looks_like_spam(_: &str) -> bool { false }
    /// let chat = Namespace::<ChatMessage>::new("chat").on_publish_async(
    ///     |_ctx: AsyncPublishContext, msg: ChatMessage| async move {
    ///         if looks_like_spam(&msg.text).await {
    ///             return Err(Refusal::forbidden("looks like spam"));
    ///         }
    ///         Ok(msg)
    ///     },
    /// );
    /// ```
    pub fn on_publish_async<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(AsyncPublishContext, M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M, Refusal>> + Send + 'static,
    {
        self.hook = Some(Hook::Async(Arc::new(move |ctx, msg| {
            Box::pin(hook(ctx, msg))
        })));
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn erase(self) -> Arc<dyn ErasedNamespace> {
        Arc::new(TypedNamespace {
            options: self.options,
            hook: self.hook,
            _m: PhantomData::<fn() -> M>,
        })
    }
}

/// A namespace with its message type erased, so the hub can hold namespaces of
/// different types in one table.
pub(crate) trait ErasedNamespace: Send + Sync {
    fn options(&self) -> &NamespaceOptions;
    fn type_id(&self) -> TypeId;
    fn type_name(&self) -> &'static str;
    /// Decodes a client publish into the namespace type, runs the hook, and encodes the
    /// result for the hub to deliver.
    fn client_publish(
        &self,
        room: &RoomState,
        ctx: &PublishContext<'_>,
        data: serde_json::Value,
    ) -> Result<Publication, Refusal>;
    /// Whether client publishes go through an async hook, so must be queued
    /// ([`client_publish_async`](Self::client_publish_async)) rather than published at
    /// once ([`client_publish`](Self::client_publish)).
    fn has_async_hook(&self) -> bool;
    /// [`client_publish`](Self::client_publish) with the async hook: a future that
    /// decodes, awaits the hook, checks the size and encodes. Nothing happens until it
    /// is polled, so a queue of them runs in order.
    fn client_publish_async(
        &self,
        room: Arc<RoomState>,
        ctx: AsyncPublishContext,
        data: serde_json::Value,
    ) -> BoxFuture<Result<Publication, Refusal>>;
}

struct TypedNamespace<M> {
    options: NamespaceOptions,
    hook: Option<Hook<M>>,
    _m: PhantomData<fn() -> M>,
}

impl<M: RoomMessage> ErasedNamespace for TypedNamespace<M> {
    fn options(&self) -> &NamespaceOptions {
        &self.options
    }
    fn type_id(&self) -> TypeId {
        TypeId::of::<M>()
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<M>()
    }
    fn client_publish(
        &self,
        room: &RoomState,
        ctx: &PublishContext<'_>,
        data: serde_json::Value,
    ) -> Result<Publication, Refusal> {
        let msg = decode::<M>(data)?;
        let msg = match &self.hook {
            Some(Hook::Sync(hook)) => {
                let msg = hook(ctx, msg)?;
                check_hook_output(&msg, ctx.room, self.options.max_payload)?;
                msg
            }
            // Not reached: the session queues publishes to namespaces with an async
            // hook (`has_async_hook`). Refused rather than published unchecked.
            Some(Hook::Async(_)) => {
                return Err(Refusal {
                    code: ErrorCode::Internal,
                    message: "this room's publishes are checked asynchronously".into(),
                });
            }
            None => msg,
        };
        Publication::encode(room, Some(&ctx.identity.user_id), msg, ctx.ephemeral)
            .map_err(|e| Refusal::invalid(format!("cannot encode message: {e}")))
    }

    fn has_async_hook(&self) -> bool {
        matches!(self.hook, Some(Hook::Async(_)))
    }

    fn client_publish_async(
        &self,
        room: Arc<RoomState>,
        ctx: AsyncPublishContext,
        data: serde_json::Value,
    ) -> BoxFuture<Result<Publication, Refusal>> {
        let hook = self.hook.clone();
        let max_payload = self.options.max_payload;
        Box::pin(async move {
            let msg = decode::<M>(data)?;
            let user = ctx.identity.clone();
            let room_name = ctx.room.clone();
            let ephemeral = ctx.ephemeral;
            let msg = match hook {
                Some(Hook::Async(hook)) => {
                    let msg = hook(ctx, msg).await?;
                    check_hook_output(&msg, &room_name, max_payload)?;
                    msg
                }
                Some(Hook::Sync(hook)) => {
                    let sync_ctx = PublishContext {
                        room: &room_name,
                        identity: &user,
                        ephemeral: ctx.ephemeral,
                    };
                    let msg = hook(&sync_ctx, msg)?;
                    check_hook_output(&msg, &room_name, max_payload)?;
                    msg
                }
                None => msg,
            };
            Publication::encode(&room, Some(&user.user_id), msg, ephemeral)
                .map_err(|e| Refusal::invalid(format!("cannot encode message: {e}")))
        })
    }
}

/// Decodes a client publish's `data` into the namespace's type (`invalid_data`).
fn decode<M: RoomMessage>(data: serde_json::Value) -> Result<M, Refusal> {
    serde_json::from_value(data).map_err(|e| {
        Refusal::invalid(format!(
            "data does not fit {}: {}",
            short_type_name::<M>(),
            crate::protocol::clip(&e.to_string(), crate::protocol::QUOTE_CHARS * 3)
        ))
    })
}

/// Checks what a publish hook returned against the namespace's `max_payload`: the
/// hook may have grown the message (a display name stamped in, a rewrite), and the
/// limit holds for what is broadcast, not what came in.
fn check_hook_output<M: RoomMessage>(
    msg: &M,
    room: &str,
    max_payload: usize,
) -> Result<(), Refusal> {
    let size = crate::protocol::encoded_len(msg);
    if size > max_payload {
        return Err(Refusal {
            code: ErrorCode::TooLarge,
            message: format!(
                "the message as published is {size} bytes, the limit for {} is {max_payload}",
                crate::protocol::quote(room),
            ),
        });
    }
    Ok(())
}

/// The last path segment of a type name, for error messages.
fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}
