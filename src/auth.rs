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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::{self, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::SystemTime;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Map, Value};

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
    /// [`Authenticator::authorize`] and the application.
    pub claims: Map<String, Value>,
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
            claims: Map::new(),
            expires_at: None,
        }
    }

    /// Replaces the claims.
    pub fn with_claims(mut self, claims: Map<String, Value>) -> Self {
        self.claims = claims;
        self
    }

    /// Adds (or replaces) one claim.
    pub fn with_claim(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(key.into(), value.into());
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

/// The parts of the upgrade request an [`Authenticator`] may look at.
///
/// Its `Debug` output leaves out the query string and header values, which carry
/// tokens and cookies, so the request can be logged safely.
#[derive(Clone)]
pub struct AuthRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer_addr: Option<SocketAddr>,
}

impl AuthRequest {
    /// A request with these parts and no known peer address.
    pub fn new(method: Method, uri: Uri, headers: HeaderMap) -> Self {
        AuthRequest {
            method,
            uri,
            headers,
            peer_addr: None,
        }
    }

    /// Copies the method, URI and headers of an `http` request (the body is not used).
    pub fn from_request<B>(req: &http::Request<B>) -> Self {
        AuthRequest::new(
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
        )
    }

    /// Sets the address of the TCP peer (which may be a proxy).
    pub fn with_peer_addr(mut self, peer_addr: SocketAddr) -> Self {
        self.peer_addr = Some(peer_addr);
        self
    }

    /// The request method (`GET` for a WebSocket upgrade).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target: path and query.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw (still percent-encoded) query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, if it is present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The TCP peer's address, if the server knows it. Behind a proxy this is the proxy;
    /// the client's own address is then in a header the proxy sets.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The first query parameter called `name`, percent-decoded (`+` is a space, as in
    /// HTML forms and `URLSearchParams`). A parameter without `=` has the empty value.
    /// Malformed escapes are kept as written and invalid UTF-8 becomes U+FFFD, the way
    /// browsers decode URLs.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value).into_owned())
    }

    /// The value of cookie `name` (from any `Cookie` header), without surrounding double
    /// quotes and not decoded further.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
            })
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim_start();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }

    /// The client's token: the bearer token if there is one, else the `token` query
    /// parameter (browsers cannot set headers on a WebSocket). `Sec-WebSocket-Protocol`
    /// is deliberately not used: it is for protocol names, and proxies log it.
    pub fn token(&self) -> Option<String> {
        match self.bearer_token() {
            Some(token) => Some(token.to_owned()),
            None => self.query_param("token").filter(|t| !t.is_empty()),
        }
    }
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("method", &self.method)
            .field("path", &self.uri.path())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes and `+`; borrows when there is nothing to decode.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Why a connection was refused before the upgrade.
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

/// Lets everyone in as a guest: user id `guest-<16 random hex digits>`, a new one per
/// connection, the claim `"guest": true`, and the name from `?name=` if it is sane
/// (1 to 32 characters after trimming, no control or bidi-override characters) or else
/// `"Guest"`. For demos, and for public rooms combined with
/// [`authorize_with`](Authenticator::authorize_with).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AllowAnonymous {}

impl AllowAnonymous {
    /// The guest authenticator.
    pub fn new() -> Self {
        AllowAnonymous {}
    }
}

/// Longest accepted guest name, in characters: enough for a name, too short to abuse
/// other users' screens.
const MAX_GUEST_NAME_CHARS: usize = 32;

/// `name` trimmed, if it is fit to show other users.
fn sane_name(name: &str) -> Option<&str> {
    let name = name.trim();
    let len = name.chars().count();
    let ok = (1..=MAX_GUEST_NAME_CHARS).contains(&len)
        && !name.chars().any(|c| c.is_control() || is_invisible(c));
    ok.then_some(name)
}

/// Zero-width and bidi-control characters: they let a name pass for another one.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

impl Authenticator for AllowAnonymous {
    fn authenticate(
        &self,
        req: &AuthRequest,
    ) -> impl Future<Output = Result<Identity, AuthRejection>> + Send {
        let name = req
            .query_param("name")
            .as_deref()
            .and_then(sane_name)
            .unwrap_or("Guest")
            .to_owned();
        let user_id = format!("guest-{:016x}", rand::random::<u64>());
        future::ready(Ok(Identity::new(user_id, name).with_claim("guest", true)))
    }
}

/// A fixed table of tokens, each mapped to an identity: for services, tests and small
/// deployments.
///
/// A missing token and an unknown one are both HTTP 401 (`"missing token"`,
/// `"invalid token"`): either way the client has to come back with a valid credential,
/// and 403 is kept for valid credentials that may not connect. An identity whose
/// [`expires_at`](Identity::expires_at) has passed is refused with 401 `"token
/// expired"`. `Debug` output shows how many tokens there are, never the tokens.
#[derive(Clone, Default)]
pub struct StaticTokens {
    /// Lookups go through the hash of the token (randomly keyed SipHash), so timing
    /// reveals nothing useful about how close a guess is.
    tokens: HashMap<String, Identity>,
}

impl StaticTokens {
    /// An empty table (which refuses everyone).
    pub fn new() -> Self {
        StaticTokens::default()
    }

    /// Adds `token`, builder style.
    pub fn with(mut self, token: impl Into<String>, identity: Identity) -> Self {
        self.insert(token, identity);
        self
    }

    /// Adds `token`, returning the identity it replaced. An empty token never matches.
    pub fn insert(&mut self, token: impl Into<String>, identity: Identity) -> Option<Identity> {
        self.tokens.insert(token.into(), identity)
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn check(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
        let token = req
            .token()
            .ok_or_else(|| AuthRejection::Unauthorized("missing token".into()))?;
        let identity = self
            .tokens
            .get(&token)
            .ok_or_else(|| AuthRejection::Unauthorized("invalid token".into()))?;
        if identity.is_expired(SystemTime::now()) {
            return Err(AuthRejection::Unauthorized("token expired".into()));
        }
        Ok(identity.clone())
    }
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl<T: Into<String>> FromIterator<(T, Identity)> for StaticTokens {
    fn from_iter<I: IntoIterator<Item = (T, Identity)>>(iter: I) -> Self {
        StaticTokens {
            tokens: iter.into_iter().map(|(t, id)| (t.into(), id)).collect(),
        }
    }
}

impl Authenticator for StaticTokens {
    fn authenticate(
        &self,
        req: &AuthRequest,
    ) -> impl Future<Output = Result<Identity, AuthRejection>> + Send {
        future::ready(self.check(req))
    }
}

#[cfg(feature = "jwt")]
pub use jwt::{JwtAuth, JwtKeyError};

#[cfg(feature = "jwt")]
mod jwt {
    use std::fmt;
    use std::future::{self, Future};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::{Map, Value};

    use super::{AuthRejection, AuthRequest, Authenticator, Identity};

    /// Verifies JSON Web Tokens signed with HS256 (shared secret) or RS256 (RSA key pair;
    /// the hub only needs the public key).
    ///
    /// - `sub` is required and becomes [`Identity::user_id`]; the `name` claim becomes
    ///   the display name (falling back to `sub`); every claim is kept in
    ///   [`Identity::claims`].
    /// - `exp` is required and honoured: an expired token is refused with 401, and the
    ///   hub closes the connection when it expires ([`Identity::expires_at`]). `nbf` is
    ///   checked when present.
    /// - Only the configured algorithm is accepted, so a token cannot pick a weaker one
    ///   (`none`, or HS256 keyed with the RSA public key).
    /// - `aud` and `iss` are checked only if configured with [`audience`](Self::audience)
    ///   and [`issuer`](Self::issuer), and are then required. Until an audience is
    ///   configured a token's `aud` is ignored (refusing every token that has one would
    ///   break common identity providers): configure one whenever the same issuer or
    ///   secret also mints tokens for other services.
    /// - Leeway defaults to 0 seconds: the hub enforces expiry itself on its own clock,
    ///   so issuers should mint tokens with the lifetime they mean; see
    ///   [`leeway`](Self::leeway) for clock skew.
    ///
    /// Every failure is a 401 with a short reason (`"token expired"`, `"invalid
    /// token"`, ...) that reveals nothing about the key.
    pub struct JwtAuth {
        key: DecodingKey,
        validation: Validation,
    }

    /// The key given to [`JwtAuth::rs256_pem`] could not be read.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("invalid RSA public key: {reason}")]
    pub struct JwtKeyError {
        reason: String,
    }

    impl JwtAuth {
        /// Verifies HS256 tokens with a shared secret (use at least 32 random bytes).
        pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
            JwtAuth::with_key(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS256)
        }

        /// Verifies RS256 tokens with an RSA public key in PEM form (`BEGIN PUBLIC KEY`
        /// or `BEGIN RSA PUBLIC KEY`).
        pub fn rs256_pem(public_key_pem: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
            let key =
                DecodingKey::from_rsa_pem(public_key_pem.as_ref()).map_err(|e| JwtKeyError {
                    reason: e.to_string(),
                })?;
            Ok(JwtAuth::with_key(key, Algorithm::RS256))
        }

        fn with_key(key: DecodingKey, algorithm: Algorithm) -> Self {
            let mut validation = Validation::new(algorithm);
            validation.set_required_spec_claims(&["exp", "sub"]);
            validation.leeway = 0;
            validation.validate_nbf = true;
            validation.validate_aud = false;
            JwtAuth { key, validation }
        }

        /// Requires `aud` to name one of `audience`.
        pub fn audience<I, S>(mut self, audience: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.validation.aud = Some(audience.into_iter().map(Into::into).collect());
            self.validation.validate_aud = true;
            self.validation.required_spec_claims.insert("aud".into());
            self
        }

        /// Requires `iss` to be one of `issuers`.
        pub fn issuer<I, S>(mut self, issuers: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.validation.iss = Some(issuers.into_iter().map(Into::into).collect());
            self.validation.required_spec_claims.insert("iss".into());
            self
        }

        /// Accepts tokens up to `leeway` (whole seconds) past `exp` or before `nbf`, for
        /// clock skew between issuer and hub. The connection is then closed at
        /// `exp + leeway`.
        pub fn leeway(mut self, leeway: Duration) -> Self {
            self.validation.leeway = leeway.as_secs();
            self
        }

        /// Verifies `token` and builds the identity it names.
        pub fn verify(&self, token: &str) -> Result<Identity, AuthRejection> {
            let data =
                jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
                    .map_err(|e| AuthRejection::Unauthorized(reason(e.kind()).into()))?;
            let claims = data.claims;
            let invalid = || AuthRejection::Unauthorized("invalid token".into());
            let user_id = match claims.get("sub") {
                Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
                _ => return Err(invalid()),
            };
            let name = match claims.get("name") {
                Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
                _ => user_id.clone(),
            };
            // `exp` passed validation, so it is a number; it may be a float. An `exp`
            // too far in the future for `SystemTime` just never expires.
            let exp = claims.get("exp").and_then(|v| {
                v.as_u64().or_else(|| {
                    v.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f as u64)
                })
            });
            let expires_at = exp
                .and_then(|s| s.checked_add(self.validation.leeway))
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)));
            Ok(Identity {
                user_id,
                name,
                claims,
                expires_at,
            })
        }

        fn check(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
            let token = req
                .token()
                .ok_or_else(|| AuthRejection::Unauthorized("missing token".into()))?;
            let identity = self.verify(&token)?;
            // `jsonwebtoken` lets a token through in its expiry second; the hub would
            // close it at once, so refuse it here instead.
            if identity.is_expired(SystemTime::now()) {
                return Err(AuthRejection::Unauthorized("token expired".into()));
            }
            Ok(identity)
        }
    }

    /// The client-facing reason for a verification failure.
    fn reason(kind: &ErrorKind) -> &'static str {
        match kind {
            ErrorKind::ExpiredSignature => "token expired",
            ErrorKind::ImmatureSignature => "token not yet valid",
            ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
            ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => {
                "token not issued for this service"
            }
            _ => "invalid token",
        }
    }

    impl fmt::Debug for JwtAuth {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("JwtAuth")
                .field("algorithms", &self.validation.algorithms)
                .field("audience", &self.validation.aud)
                .field("issuer", &self.validation.iss)
                .field("leeway", &self.validation.leeway)
                .finish_non_exhaustive()
        }
    }

    impl Authenticator for JwtAuth {
        // RSA verification takes tens of microseconds: cheap enough to run inline on
        // the connection's task.
        fn authenticate(
            &self,
            req: &AuthRequest,
        ) -> impl Future<Output = Result<Identity, AuthRejection>> + Send {
            future::ready(self.check(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::HeaderValue;
    use serde_json::json;

    // Not a glob: `DynAuthenticator` in scope would make `.authenticate()` on concrete
    // authenticators ambiguous. Methods of `dyn DynAuthenticator` need no import.
    use super::{
        Action, AllowAnonymous, AuthRejection, AuthRequest, Authenticator, HeaderMap, Identity,
        Map, Method, StaticTokens, StatusCode, SystemTime,
    };

    fn req(uri: &str, headers: &[(&'static str, &str)]) -> AuthRequest {
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
        let id = id.with_claims(Map::new());
        assert!(id.claims.is_empty());
    }

    #[test]
    fn query_params_are_percent_decoded() {
        let r = req(
            "/ws?a=1&name=J%C3%A9r%C3%B4me+L%27H&plus=%2B&bad=100%zz%2&bin=%FF&flag&a=2&k%65y=v",
            &[],
        );
        assert_eq!(r.query_param("a").as_deref(), Some("1"), "first one wins");
        assert_eq!(r.query_param("name").as_deref(), Some("Jérôme L'H"));
        assert_eq!(r.query_param("plus").as_deref(), Some("+"));
        assert_eq!(r.query_param("bad").as_deref(), Some("100%zz%2"));
        assert_eq!(r.query_param("bin").as_deref(), Some("\u{FFFD}"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("key").as_deref(), Some("v"));
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(req("/ws", &[]).query_param("a"), None);
        assert_eq!(r.path(), "/ws");
    }

    #[test]
    fn cookies() {
        let r = req(
            "/",
            &[
                ("cookie", "theme=dark; session=abc123 ;quoted=\"q v\""),
                ("cookie", "late=1"),
            ],
        );
        assert_eq!(r.cookie("session"), Some("abc123"));
        assert_eq!(r.cookie("theme"), Some("dark"));
        assert_eq!(r.cookie("quoted"), Some("q v"));
        assert_eq!(r.cookie("late"), Some("1"));
        assert_eq!(r.cookie("sess"), None);
        assert_eq!(req("/", &[]).cookie("session"), None);
    }

    #[test]
    fn bearer_tokens() {
        let bearer = |v: &str| {
            req("/", &[("authorization", v)])
                .bearer_token()
                .map(str::to_owned)
        };
        assert_eq!(bearer("Bearer abc.def").as_deref(), Some("abc.def"));
        assert_eq!(bearer("bearer   abc").as_deref(), Some("abc"));
        assert_eq!(bearer("BEARER abc ").as_deref(), Some("abc"));
        assert_eq!(bearer("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(req("/", &[]).bearer_token(), None);
    }

    #[test]
    fn token_prefers_the_header_then_the_query() {
        let both = req(
            "/?token=from-query",
            &[("authorization", "Bearer from-header")],
        );
        assert_eq!(both.token().as_deref(), Some("from-header"));
        let query = req("/?token=a%2Bb", &[]);
        assert_eq!(query.token().as_deref(), Some("a+b"));
        assert_eq!(req("/?token=", &[]).token(), None);
        let subprotocol = req("/", &[("sec-websocket-protocol", "wshub.v1, secret")]);
        assert_eq!(subprotocol.token(), None);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let r = req(
            "/ws?token=s3cret",
            &[
                ("authorization", "Bearer s3cret"),
                ("cookie", "session=s3cret"),
            ],
        )
        .with_peer_addr("127.0.0.1:9".parse().unwrap());
        let debug = format!("{r:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(
            debug.contains("authorization") && debug.contains("127.0.0.1:9"),
            "{debug}"
        );
        assert_eq!(r.peer_addr(), Some("127.0.0.1:9".parse().unwrap()));

        let tokens = StaticTokens::new().with("s3cret", Identity::new("u", "U"));
        assert!(!format!("{tokens:?}").contains("s3cret"));
    }

    #[test]
    fn from_http_request() {
        let http_req = http::Request::get("/ws?x=1")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        let r = AuthRequest::from_request(&http_req);
        assert_eq!(r.method(), Method::GET);
        assert_eq!(r.query(), Some("x=1"));
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert_eq!(r.uri().path(), "/ws");
        assert_eq!(r.headers().len(), 1);
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
    async fn anonymous_guests() {
        let auth = AllowAnonymous::new();
        let a = auth.authenticate(&req("/", &[])).await.unwrap();
        let b = auth.authenticate(&req("/", &[])).await.unwrap();
        assert_ne!(a.user_id, b.user_id);
        let hex = a.user_id.strip_prefix("guest-").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.name, "Guest");
        assert_eq!(a.claim("guest"), Some(&json!(true)));
        assert_eq!(a.expires_at, None);

        let named = |q: &str| {
            let auth = auth.clone();
            let r = req(&format!("/?name={q}"), &[]);
            async move { auth.authenticate(&r).await.unwrap().name }
        };
        assert_eq!(named("%20Zo%C3%AB%20").await, "Zoë");
        assert_eq!(named("").await, "Guest");
        assert_eq!(named("+++").await, "Guest");
        assert_eq!(named("a%0Ab").await, "Guest", "control character");
        assert_eq!(named("%E2%80%AEevil").await, "Guest", "bidi override");
        assert_eq!(named(&"x".repeat(33)).await, "Guest");
        assert_eq!(named(&"é".repeat(32)).await, "é".repeat(32));
    }

    #[tokio::test]
    async fn static_tokens() {
        let auth: StaticTokens = [
            ("t-ann", Identity::new("ann", "Ann")),
            (
                "t-old",
                Identity::new("old", "Old").with_expiry(SystemTime::now() - Duration::from_secs(1)),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(auth.len(), 2);

        let ok = auth
            .authenticate(&req("/", &[("authorization", "Bearer t-ann")]))
            .await
            .unwrap();
        assert_eq!((ok.user_id.as_str(), ok.name.as_str()), ("ann", "Ann"));
        let ok = auth.authenticate(&req("/?token=t-ann", &[])).await.unwrap();
        assert_eq!(ok.user_id, "ann");

        let err = auth.authenticate(&req("/", &[])).await.unwrap_err();
        assert_eq!(err, AuthRejection::Unauthorized("missing token".into()));
        let err = auth
            .authenticate(&req("/?token=nope", &[]))
            .await
            .unwrap_err();
        assert_eq!(err, AuthRejection::Unauthorized("invalid token".into()));
        let err = auth
            .authenticate(&req("/?token=t-old", &[]))
            .await
            .unwrap_err();
        assert_eq!(err, AuthRejection::Unauthorized("token expired".into()));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
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

    #[cfg(feature = "jwt")]
    mod jwt {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        use serde_json::{Value, json};

        use super::req;
        use crate::auth::{AuthRejection, Authenticator, JwtAuth};

        const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

        fn now() -> u64 {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        }

        fn hs256(claims: &Value, secret: &[u8]) -> String {
            encode(
                &Header::new(Algorithm::HS256),
                claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        }

        fn sign_rs256(claims: &Value) -> String {
            let key = EncodingKey::from_rsa_pem(TEST_PRIVATE_PEM.as_bytes()).unwrap();
            encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
        }

        fn rejection(auth: &JwtAuth, token: &str) -> String {
            auth.verify(token).unwrap_err().message().to_owned()
        }

        #[tokio::test]
        async fn hs256_valid_token() {
            let exp = now() + 600;
            let token = hs256(
                &json!({"sub": "u42", "name": "Ann", "exp": exp, "role": "mod"}),
                SECRET,
            );
            let auth = JwtAuth::hs256(SECRET);
            let r = req("/", &[("authorization", &format!("Bearer {token}"))]);
            let id = auth.authenticate(&r).await.unwrap();
            assert_eq!((id.user_id.as_str(), id.name.as_str()), ("u42", "Ann"));
            assert_eq!(id.claim("role"), Some(&json!("mod")));
            assert_eq!(id.claim("exp"), Some(&json!(exp)));
            assert_eq!(id.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));

            // From the query string too, and the name falls back to `sub`.
            let token = hs256(&json!({"sub": "u7", "exp": exp}), SECRET);
            let id = auth
                .authenticate(&req(&format!("/?token={token}"), &[]))
                .await
                .unwrap();
            assert_eq!(id.name, "u7");
        }

        #[tokio::test]
        async fn hs256_failures() {
            let auth = JwtAuth::hs256(SECRET);
            let exp = now() + 600;
            let expired = hs256(&json!({"sub": "u", "exp": now() - 10}), SECRET);
            assert_eq!(rejection(&auth, &expired), "token expired");
            let forged = hs256(
                &json!({"sub": "u", "exp": exp}),
                b"not-the-secret-not-the-secret!!!",
            );
            assert_eq!(rejection(&auth, &forged), "invalid token");
            let no_exp = hs256(&json!({"sub": "u"}), SECRET);
            assert_eq!(rejection(&auth, &no_exp), "token lacks a required claim");
            let no_sub = hs256(&json!({"exp": exp}), SECRET);
            assert_eq!(rejection(&auth, &no_sub), "token lacks a required claim");
            let empty_sub = hs256(&json!({"sub": "", "exp": exp}), SECRET);
            assert_eq!(rejection(&auth, &empty_sub), "invalid token");
            let early = hs256(&json!({"sub": "u", "exp": exp, "nbf": now() + 300}), SECRET);
            assert_eq!(rejection(&auth, &early), "token not yet valid");
            assert_eq!(rejection(&auth, "garbage"), "invalid token");
            assert_eq!(rejection(&auth, ""), "invalid token");
            // `alg: none` is never accepted.
            let unsigned = format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                forged.split('.').nth(1).unwrap()
            );
            assert_eq!(rejection(&auth, &unsigned), "invalid token");

            let err = auth.authenticate(&req("/", &[])).await.unwrap_err();
            assert_eq!(err, AuthRejection::Unauthorized("missing token".into()));
            let r = req(&format!("/?token={expired}"), &[]);
            assert_eq!(auth.authenticate(&r).await.unwrap_err().status(), 401);
        }

        #[test]
        fn leeway_accepts_recently_expired_tokens() {
            let exp = now() - 10;
            let token = hs256(&json!({"sub": "u", "exp": exp}), SECRET);
            let auth = JwtAuth::hs256(SECRET).leeway(Duration::from_secs(60));
            let id = auth.verify(&token).unwrap();
            assert_eq!(
                id.expires_at,
                Some(UNIX_EPOCH + Duration::from_secs(exp + 60))
            );
        }

        #[test]
        fn audience_and_issuer() {
            let exp = now() + 600;
            let auth = JwtAuth::hs256(SECRET)
                .audience(["chat"])
                .issuer(["https://id.example"]);
            let good = hs256(
                &json!({"sub": "u", "exp": exp, "aud": "chat", "iss": "https://id.example"}),
                SECRET,
            );
            assert!(auth.verify(&good).is_ok());
            let wrong_aud = hs256(
                &json!({"sub": "u", "exp": exp, "aud": "billing", "iss": "https://id.example"}),
                SECRET,
            );
            assert_eq!(
                rejection(&auth, &wrong_aud),
                "token not issued for this service"
            );
            let wrong_iss = hs256(
                &json!({"sub": "u", "exp": exp, "aud": "chat", "iss": "https://evil"}),
                SECRET,
            );
            assert_eq!(
                rejection(&auth, &wrong_iss),
                "token not issued for this service"
            );
            let no_aud = hs256(
                &json!({"sub": "u", "exp": exp, "iss": "https://id.example"}),
                SECRET,
            );
            assert_eq!(rejection(&auth, &no_aud), "token lacks a required claim");

            // Without configuration, `aud` and `iss` are not checked.
            let plain = JwtAuth::hs256(SECRET);
            assert!(plain.verify(&wrong_aud).is_ok());
            let debug = format!("{auth:?}");
            assert!(
                debug.contains("chat") && !debug.contains("0123456789"),
                "{debug}"
            );
        }

        #[test]
        fn rs256_tokens() {
            let exp = now() + 600;
            let token = sign_rs256(&json!({"sub": "u9", "name": "Nine", "exp": exp}));
            let auth = JwtAuth::rs256_pem(TEST_PUBLIC_PEM).unwrap();
            let id = auth.verify(&token).unwrap();
            assert_eq!((id.user_id.as_str(), id.name.as_str()), ("u9", "Nine"));

            let expired = sign_rs256(&json!({"sub": "u9", "exp": now() - 10}));
            assert_eq!(rejection(&auth, &expired), "token expired");

            let other = JwtAuth::rs256_pem(OTHER_PUBLIC_PEM).unwrap();
            assert_eq!(rejection(&other, &token), "invalid token");

            // Algorithm confusion: HS256 keyed with the public key must not pass.
            let confused = hs256(
                &json!({"sub": "admin", "exp": exp}),
                TEST_PUBLIC_PEM.as_bytes(),
            );
            assert_eq!(rejection(&auth, &confused), "invalid token");
            // Nor may an HS256 verifier accept an RS256 token.
            assert_eq!(rejection(&JwtAuth::hs256(SECRET), &token), "invalid token");

            let err = JwtAuth::rs256_pem("not a key").unwrap_err();
            assert!(err.to_string().starts_with("invalid RSA public key"));
        }

        // A throwaway key pair made with `openssl genrsa 2048` for tests only
        // (`tests/keys/`, shared with the integration tests).
        const TEST_PRIVATE_PEM: &str = include_str!("../tests/keys/test_rsa.pem");

        const TEST_PUBLIC_PEM: &str = include_str!("../tests/keys/test_rsa_pub.pem");

        const OTHER_PUBLIC_PEM: &str = include_str!("../tests/keys/other_rsa_pub.pem");
    }
}
