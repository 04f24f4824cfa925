//! Who is connecting, and what they may do.
//!
//! An [`Authenticator`] sees the upgrade request ([`AuthRequest`]: headers, query,
//! cookies, peer address) before the WebSocket handshake completes and either returns an
//! [`Identity`] or an [`AuthRejection`], which the hub sends as HTTP 401 or 403 instead of
//! upgrading. After that, [`Authenticator::authorize`] decides per room and [`Action`].
//!
//! Built in: [`AllowAnonymous`] (guests), [`StaticTokens`] (a fixed token table) and,
//! with the `jwt` feature, [`JwtAuth`] (HS256 or RS256 JSON Web Tokens). Any of them can
//! get a room policy with [`Authenticator::authorize_with`].
//!
//! Browsers cannot set headers on a WebSocket request, so tokens are read from
//! `Authorization: Bearer ..` first and from the `?token=` query parameter second
//! ([`AuthRequest::token`]). Query strings end up in access logs: prefer short-lived
//! tokens there.

mod builtin;
mod claims;
#[cfg(feature = "jwt")]
mod jwt;
mod request;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use http::StatusCode;
use serde_json::Value;

pub use builtin::{AllowAnonymous, StaticTokens};
pub use claims::Claims;
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuth, JwtKeyError};
pub use request::AuthRequest;

/// An authenticated user, as the hub and the application see them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Identity {
    /// Stable user id: the key of presence, the `from` of messages. A user's tabs and
    /// devices share it.
    pub user_id: String,
    /// Display name, shown to other users; not unique, not trusted for decisions.
    pub name: String,
    /// Everything else the authenticator knows (JWT claims, roles, tenant), for
    /// [`Authenticator::authorize`] and the application. Read it like a map
    /// (`identity.claims.get("role")`); it is a compact [`Claims`] rather than a
    /// `serde_json::Map` because every open connection keeps its identity.
    pub claims: Claims,
    /// When the credential stops being valid. The hub closes the connection then
    /// (close code 1008) so a revoked-by-expiry token does not live on in an open socket.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// An identity with no claims that never expires.
    pub fn new(user_id: impl Into<String>, name: impl Into<String>) -> Self {
        Identity {
            user_id: user_id.into(),
            name: name.into(),
            claims: Claims::new(),
            expires_at: None,
        }
    }

    /// Replaces the claims: a [`Claims`], or a `serde_json::Map`.
    pub fn with_claims(mut self, claims: impl Into<Claims>) -> Self {
        self.claims = claims.into();
        self
    }

    /// Adds (or replaces) one claim.
    pub fn with_claim(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(key, value);
        self
    }

    /// Sets the expiry.
    pub fn with_expiry(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// One claim, if present.
    pub fn claim(&self, key: &str) -> Option<&Value> {
        self.claims.get(key)
    }

    /// Whether the identity has expired at `now` (the expiry instant itself counts as
    /// expired, as RFC 7519 says for `exp`).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Why a connection was refused before the upgrade.
///
/// The message goes to the client in the refusal's body and into the hub's
/// `authentication failed` log event (at `info`, with the peer and the status): say
/// why ("invalid token", "token expired"), never quote the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No valid credential (missing, unknown, expired, bad signature): HTTP 401. The
    /// client may retry with a fresh token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A valid credential that may not connect (banned, wrong tenant): HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl AuthRejection {
    /// The HTTP status the upgrade request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthRejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AuthRejection::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The explanation, sent as the response body: keep it free of secrets.
    pub fn message(&self) -> &str {
        match self {
            AuthRejection::Unauthorized(m) | AuthRejection::Forbidden(m) => m,
        }
    }
}

/// What a connection wants to do in a room, for [`Authenticator::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Join the room: receive its messages and appear in its presence.
    Join,
    /// Publish a message to the room.
    Publish,
}

impl Action {
    /// The action's name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Publish => "publish",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides who may connect, and what they may do in which room.
///
/// `authenticate` runs once per connection, before the upgrade; it may do I/O (a
/// session store, an identity provider). `authorize` runs on every join and publish, so
/// it is synchronous and should only look at the identity: fetch what it needs during
/// `authenticate` and keep it in [`Identity::claims`].
///
/// ```
/// use wshub::auth::{Action, AuthRejection, AuthRequest, Authenticator, Identity};
///
/// struct ApiKeys;
///
/// impl Authenticator for ApiKeys {
///     async fn authenticate(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
///         match req.token().as_deref() {
///             Some("k-ann") => Ok(Identity::new("ann", "Ann").with_claim("admin", true)),
///             Some(_) => Err(AuthRejection::Unauthorized("unknown key".into())),
///             None => Err(AuthRejection::Unauthorized("missing token".into())),
///         }
///     }
///
///     fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool {
///         action == Action::Join || !room.starts_with("announce:")
///             || identity.claim("admin") == Some(&true.into())
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Identifies the client behind an upgrade request, or refuses it.
    fn authenticate(
        &self,
        req: &AuthRequest,
    ) -> impl Future<Output = Result<Identity, AuthRejection>> + Send;

    /// Whether `identity` may perform `action` in `room`. A refusal is answered with the
    /// `forbidden` error code; the connection stays open. Allows everything by default.
    fn authorize(&self, _identity: &Identity, _room: &str, _action: Action) -> bool {
        true
    }

    /// Adds a room policy: an action is allowed only if both this authenticator's
    /// `authorize` and `policy` allow it.
    fn authorize_with<F>(self, policy: F) -> Authorize<Self, F>
    where
        Self: Sized,
        F: Fn(&Identity, &str, Action) -> bool + Send + Sync + 'static,
    {
        Authorize {
            inner: self,
            policy,
        }
    }
}

/// An authenticator with an extra room policy; see [`Authenticator::authorize_with`].
pub struct Authorize<A, F> {
    inner: A,
    policy: F,
}

impl<A: fmt::Debug, F> fmt::Debug for Authorize<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<A, F> Authenticator for Authorize<A, F>
where
    A: Authenticator,
    F: Fn(&Identity, &str, Action) -> bool + Send + Sync + 'static,
{
    fn authenticate(
        &self,
        req: &AuthRequest,
    ) -> impl Future<Output = Result<Identity, AuthRejection>> + Send {
        self.inner.authenticate(req)
    }

    fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool {
        self.inner.authorize(identity, room, action) && (self.policy)(identity, room, action)
    }
}

/// The future returned by [`DynAuthenticator::authenticate`].
pub(crate) type AuthFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Identity, AuthRejection>> + Send + 'a>>;

/// The object-safe form of [`Authenticator`], so the hub can store any authenticator as
/// `Arc<dyn DynAuthenticator>` without being generic. The boxed future costs one
/// allocation per connection, next to a handshake that is nothing.
pub(crate) trait DynAuthenticator: Send + Sync + 'static {
    /// [`Authenticator::authenticate`], boxed.
    fn authenticate<'a>(&'a self, req: &'a AuthRequest) -> AuthFuture<'a>;
    /// [`Authenticator::authorize`].
    fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool;
    /// The concrete type's name, for `Debug` output and logs.
    fn type_name(&self) -> &'static str;
}

impl<A: Authenticator> DynAuthenticator for A {
    fn authenticate<'a>(&'a self, req: &'a AuthRequest) -> AuthFuture<'a> {
        Box::pin(Authenticator::authenticate(self, req))
    }

    fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool {
        Authenticator::authorize(self, identity, room, action)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<A>()
    }
}

impl fmt::Debug for dyn DynAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue, Method};
    use serde_json::json;

    // Not a glob: `DynAuthenticator` in scope would make `.authenticate()` on concrete
    // authenticators ambiguous. Methods of `dyn DynAuthenticator` need no import.
    use super::{
        Action, AllowAnonymous, AuthRejection, AuthRequest, Authenticator, Identity, StatusCode,
        SystemTime,
    };

    // Shared with the tests of `request`, `builtin` and `jwt`.
    pub(super) fn req(uri: &str, headers: &[(&'static str, &str)]) -> AuthRequest {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        AuthRequest::new(Method::GET, uri.parse().unwrap(), map)
    }

    #[test]
    fn identity_builders_and_expiry() {
        let now = SystemTime::now();
        let id = Identity::new("u1", "Ann")
            .with_claim("role", "admin")
            .with_expiry(now + Duration::from_secs(60));
        assert_eq!(id.claim("role"), Some(&json!("admin")));
        assert!(!id.is_expired(now));
        assert!(id.is_expired(now + Duration::from_secs(60)));
        assert!(!Identity::new("u", "n").is_expired(now));
        let id = id.with_claims(serde_json::Map::new());
        assert!(id.claims.is_empty());
    }

    #[test]
    fn rejection_statuses() {
        let r = AuthRejection::Unauthorized("missing token".into());
        assert_eq!(
            (r.status(), r.message()),
            (StatusCode::UNAUTHORIZED, "missing token")
        );
        let r = AuthRejection::Forbidden("banned".into());
        assert_eq!((r.status(), r.message()), (StatusCode::FORBIDDEN, "banned"));
        assert_eq!(r.to_string(), "forbidden: banned");
        assert_eq!(Action::Publish.to_string(), "publish");
    }

    #[tokio::test]
    async fn policies_and_the_dyn_wrapper() {
        let auth = AllowAnonymous::new().authorize_with(|id, room, action| {
            action == Action::Join || id.claim("guest").is_none() || room.starts_with("public:")
        });
        // The hub stores authenticators type-erased.
        let dyn_auth: Arc<dyn super::DynAuthenticator> = Arc::new(auth);
        assert!(format!("{dyn_auth:?}").contains("Authorize"));
        let guest = dyn_auth.authenticate(&req("/", &[])).await.unwrap();
        assert!(dyn_auth.authorize(&guest, "news", Action::Join));
        assert!(!dyn_auth.authorize(&guest, "news", Action::Publish));
        assert!(dyn_auth.authorize(&guest, "public:lobby", Action::Publish));
        let member = Identity::new("ann", "Ann");
        assert!(dyn_auth.authorize(&member, "news", Action::Publish));

        // Both policies must agree.
        struct NoPublish;
        impl Authenticator for NoPublish {
            async fn authenticate(&self, _: &AuthRequest) -> Result<Identity, AuthRejection> {
                Err(AuthRejection::Forbidden("closed".into()))
            }
            fn authorize(&self, _: &Identity, _: &str, action: Action) -> bool {
                action != Action::Publish
            }
        }
        let both: Arc<dyn super::DynAuthenticator> =
            Arc::new(NoPublish.authorize_with(|_, _, _| true));
        assert!(!both.authorize(&member, "public:x", Action::Publish));
        assert!(both.authorize(&member, "public:x", Action::Join));
        let err = both.authenticate(&req("/", &[])).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }
}
