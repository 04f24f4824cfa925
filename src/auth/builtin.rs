//! The built-in authenticators: [`AllowAnonymous`] for guests and [`StaticTokens`] for a
//! fixed token table.

use std::collections::HashMap;
use std::fmt;
use std::future::{self, Future};
use std::time::SystemTime;

use super::{AuthRejection, AuthRequest, Authenticator, Identity};

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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http::StatusCode;
    use serde_json::json;

    use super::{AllowAnonymous, StaticTokens};
    use crate::auth::tests::req;
    use crate::auth::{AuthRejection, Authenticator, Identity};

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
}
