//! RPC: methods the application registers with [`HubBuilder::rpc`], which a client
//! calls with the `call` op and which answer it with exactly one `reply`.
//!
//! A method is an async function from a typed request to a typed response. The hub
//! erases the types once, at registration ([`ErasedMethod`]): decoding the request,
//! running the handler and encoding the response happen in the call's own task, so a
//! slow method never holds up its connection's reads and writes.
//!
//! [`HubBuilder::rpc`]: crate::HubBuilder::rpc

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Hub;
use crate::BoxFuture;
use crate::auth::Identity;
use crate::protocol::{self, ErrorCode};
use crate::room::Refusal;

/// What an RPC handler knows about its caller.
///
/// Built by the hub for every call; read it through its methods. Marked
/// `#[non_exhaustive]` and with private fields so that more can be added (the
/// connection's own handle and per-connection data, for instance) without breaking
/// handlers written today.
#[derive(Clone)]
#[non_exhaustive]
pub struct RpcContext {
    pub(crate) hub: Hub,
    pub(crate) identity: Arc<Identity>,
    pub(crate) conn_id: u64,
    pub(crate) peer: Option<SocketAddr>,
}

impl fmt::Debug for RpcContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcContext")
            .field("user", &self.identity.user_id)
            .field("conn_id", &self.conn_id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl RpcContext {
    /// The hub the call came in on: to look rooms up ([`Hub::rooms`]), publish, or
    /// read presence while answering.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The calling connection, with its typed per-connection data (set, for instance,
    /// by [`HubBuilder::on_connect`](crate::HubBuilder::on_connect)), its rooms and its
    /// server-side controls. `None` once the connection has closed (a call may
    /// outlive its connection by a moment).
    pub fn connection(&self) -> Option<crate::Connection> {
        self.hub.connection(self.conn_id)
    }

    /// Who is calling, as the authenticator said.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The calling connection's id: the `conn_id` of its `welcome` and presence metas.
    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }

    /// The caller's address as the hub's limits see it (the TCP peer, or the client a
    /// trusted proxy named); `None` over a stream without one.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// Why an RPC handler refused a call: sent to the caller as a failed `reply` with this
/// code and message.
///
/// ```
/// use wshub::{ErrorCode, RpcError};
/// let e = RpcError::forbidden("admins only");
/// assert_eq!(e.code, ErrorCode::Forbidden);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    /// The error code the client sees.
    pub code: ErrorCode,
    /// A message for people (the client shows or logs it); at most 256 characters
    /// reach the client.
    pub message: String,
}

impl RpcError {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
    /// Refuse as `forbidden`: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// Refuse as `invalid_data`: the request is well-typed but not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidData, message)
    }
    /// Refuse as `not_found`: what the request names does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// Fail as `internal`: the server could not answer (a database is down, say).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl From<Refusal> for RpcError {
    fn from(r: Refusal) -> Self {
        RpcError::new(r.code, r.message)
    }
}

/// The answer of one call, before the reply envelope: the response encoded as JSON
/// text, or an error.
pub(crate) type CallResult = Result<String, RpcError>;

/// A registered method with its request and response types erased.
pub(crate) type ErasedMethod =
    Arc<dyn Fn(RpcContext, Value) -> BoxFuture<CallResult> + Send + Sync>;

/// Wraps a typed handler: the request is decoded from the call's `data` (a mismatch is
/// `invalid_data`, without running the handler) and the response encoded to JSON text.
pub(crate) fn erase<Req, Resp, F, Fut>(name: &str, handler: F) -> ErasedMethod
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(RpcContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, RpcError>> + Send + 'static,
{
    let name: Arc<str> = Arc::from(name);
    Arc::new(move |ctx, data| {
        let fut = serde_json::from_value::<Req>(data)
            .map(|req| handler(ctx, req))
            .map_err(|e| {
                RpcError::invalid(format!(
                    "data does not fit the request of {}: {}",
                    protocol::quote(&name),
                    protocol::clip(&e.to_string(), protocol::QUOTE_CHARS * 3)
                ))
            });
        let name = name.clone();
        Box::pin(async move {
            let resp = fut?.await?;
            serde_json::to_string(&resp).map_err(|e| {
                tracing::warn!(method = %name, error = %e, "rpc response does not serialize");
                RpcError::internal("the response could not be encoded")
            })
        })
    })
}

/// Runs one call of `method` (named `name`) to its end: cut at the hub's
/// [`rpc_timeout`](crate::HubConfig::rpc_timeout) (`timeout`), and the response
/// refused when over [`max_rpc_response`](crate::HubConfig::max_rpc_response) bytes
/// (`too_large`). Returns the response as JSON text.
pub(crate) async fn run(
    method: ErasedMethod,
    name: &str,
    ctx: RpcContext,
    data: Value,
) -> CallResult {
    let config = ctx.hub.config();
    let (timeout, max) = (config.rpc_timeout, config.max_rpc_response);
    // The timer is the call's own, created when the call starts and dropped with it:
    // it lives only as long as a call is in flight (at most `max_rpc_in_flight` per
    // connection), not for the life of the connection.
    let text = match tokio::time::timeout(timeout, method(ctx, data)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(RpcError::new(
                ErrorCode::Timeout,
                format!(
                    "{} did not answer within {} ms",
                    protocol::quote(name),
                    timeout.as_millis()
                ),
            ));
        }
    };
    if text.len() > max {
        return Err(RpcError::new(
            ErrorCode::TooLarge,
            format!(
                "the response of {} is {} bytes, the limit is {max}",
                protocol::quote(name),
                text.len()
            ),
        ));
    }
    Ok(text)
}
