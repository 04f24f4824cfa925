//! [`JwtAuth`]: JSON Web Tokens (HS256, RS256), with the `jwt` feature.

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
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
}

/// The key given to [`JwtAuth::rs256_pem`] could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RSA public key: {reason}")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
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
        let key = DecodingKey::from_rsa_pem(public_key_pem.as_ref()).map_err(|e| JwtKeyError {
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
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
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
            claims: claims.into(),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::{Value, json};

    use crate::auth::tests::req;
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
    const TEST_PRIVATE_PEM: &str = include_str!("../../tests/keys/test_rsa.pem");

    const TEST_PUBLIC_PEM: &str = include_str!("../../tests/keys/test_rsa_pub.pem");

    const OTHER_PUBLIC_PEM: &str = include_str!("../../tests/keys/other_rsa_pub.pem");
}
