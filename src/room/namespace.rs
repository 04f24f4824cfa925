//! Namespaces: a name, a Rust message type, options and a publish hook, and the
//! type-erased form the hub keeps them in.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RoomState, publish_typed};
use crate::auth::Identity;
use crate::hub::Hub;
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
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            client_publish: true,
            presence: true,
            max_subscribers: 10_000,
            max_payload: 64 * 1024,
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

type Hook<M> = Arc<dyn Fn(&PublishContext<'_>, M) -> Result<M, Refusal> + Send + Sync>;

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
            .field("hook", &self.hook.is_some())
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
    /// A hook run on every client publish after it decoded into `M`: return the message
    /// to broadcast (possibly changed) or a [`Refusal`]. Server publishes skip it.
    pub fn on_publish(
        mut self,
        hook: impl Fn(&PublishContext<'_>, M) -> Result<M, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
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
    /// Decodes a client publish into the namespace type, runs the hook, and publishes
    /// it. Returns the number of connections it was queued for.
    fn client_publish(
        &self,
        hub: &Hub,
        room: &RoomState,
        ctx: &PublishContext<'_>,
        data: serde_json::Value,
    ) -> Result<usize, Refusal>;
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
        hub: &Hub,
        room: &RoomState,
        ctx: &PublishContext<'_>,
        data: serde_json::Value,
    ) -> Result<usize, Refusal> {
        let msg: M = serde_json::from_value(data).map_err(|e| {
            Refusal::invalid(format!(
                "data does not fit {}: {}",
                short_type_name::<M>(),
                crate::protocol::clip(&e.to_string(), crate::protocol::QUOTE_CHARS * 3)
            ))
        })?;
        let msg = match &self.hook {
            Some(hook) => {
                let msg = hook(ctx, msg)?;
                // The hook may have grown the message (a display name stamped in, a
                // rewrite): the limit holds for what is broadcast, not what came in.
                let size = crate::protocol::encoded_len(&msg);
                if size > self.options.max_payload {
                    return Err(Refusal {
                        code: ErrorCode::TooLarge,
                        message: format!(
                            "the message as published is {size} bytes, the limit for {} is {}",
                            crate::protocol::quote(ctx.room),
                            self.options.max_payload
                        ),
                    });
                }
                msg
            }
            None => msg,
        };
        publish_typed(hub, room, Some(&ctx.identity.user_id), msg)
            .map_err(|e| Refusal::invalid(format!("cannot encode message: {e}")))
    }
}

/// The last path segment of a type name, for error messages.
fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}
