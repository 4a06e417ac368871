//! Logout tokens of OpenID Connect Back-Channel Logout 1.0 (§2.4–2.6): the JWT an identity
//! provider posts to `{prefix}/{provider}/backchannel-logout` to end the sessions of a user or
//! of one of its own sessions.
//!
//! A token is accepted only when all of this holds (§2.6), checked in this order, each
//! failure with its own [`LogoutTokenError`]:
//!
//! - a compact JWS (not encrypted, no `crit` header), `alg` one of the asymmetric algorithms
//!   the ID token path accepts (never `none`, never HMAC), header `typ` absent or
//!   `logout+jwt` (`application/logout+jwt`, any case);
//! - a signature by a key of the provider's JWKS (the provider's one key cache: a `kid` it
//!   does not know refetches the set once, rate limited, as for ID tokens);
//! - `iss` is the provider's issuer, `aud` contains the client id;
//! - `iat` present, not in the future beyond `clock_skew_secs`, and not older than
//!   [`LOGOUT_TOKEN_MAX_AGE`] (so the replay record of its `jti` outlives every token it could stop);
//!   `exp`, when present, not past (give or take the skew);
//! - `events` is an object with the member `http://schemas.openid.net/event/backchannel-logout`
//!   whose value is a JSON object; `sid` and/or `sub` (non-empty strings); no `nonce`;
//! - `jti` present, and not recorded yet by the layer's replay guard (shared by every instance
//!   on a SQL database); a guard that cannot answer refuses the token (fail closed).
//!
//! The `jti` is recorded only once the sessions have ended, so an identity provider retrying
//! a token after a `503` (session store down) succeeds, while a token already accepted is
//! refused before it changes anything. The sessions a token ends are those created at or
//! before its `iat` give or take `clock_skew_secs` (the ones that existed when the provider
//! logged the user out), so even a replay racing the record of its `jti` cannot end a session
//! started well after the logout.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse, JwsSigningAlgorithm};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ALLOWED_ALGS;

/// The member of the `events` claim that makes a JWT a logout token (§2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The oldest logout token accepted (by its `iat`), beyond the clock skew: 10 minutes.
/// Identity providers send logout tokens at once; the bound lets the replay guard forget a
/// `jti` once no token carrying it could be accepted any more.
pub const LOGOUT_TOKEN_MAX_AGE: Duration = Duration::from_secs(600);

/// Why a logout token was refused. A refused token changes no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutTokenError {
    /// Not a compact JWS with a JSON header and a JSON object payload.
    #[error("the logout token is malformed")]
    Malformed,
    /// The header's `alg` is `none`, HMAC, or not an accepted algorithm.
    #[error("the logout token's signature algorithm is not allowed: {0}")]
    DisallowedAlgorithm(String),
    /// The header's `typ` is present and not `logout+jwt`.
    #[error("the logout token's type (typ) is not logout+jwt")]
    WrongType,
    /// No key of the provider matches the token's `kid` and algorithm, even after a refetch.
    #[error("no signing key of the issuer matches the logout token")]
    UnknownKey,
    /// The token names no `kid` and several keys could have signed it.
    #[error("the logout token names no key and the issuer publishes several")]
    AmbiguousKey,
    /// The signature does not verify.
    #[error("the logout token's signature is invalid")]
    BadSignature,
    /// `iss` is missing or not the provider's issuer.
    #[error("the logout token's issuer is not the provider's issuer")]
    Issuer,
    /// `aud` is missing or does not contain the client id.
    #[error("the logout token's audience does not contain the client id")]
    Audience,
    /// `iat` is missing or not a number.
    #[error("the logout token has no issue time (iat)")]
    MissingIssuedAt,
    /// `iat` is in the future beyond the clock skew.
    #[error("the logout token was issued in the future")]
    IssuedInFuture,
    /// `iat` is older than [`LOGOUT_TOKEN_MAX_AGE`] beyond the clock skew.
    #[error("the logout token is too old")]
    TooOld,
    /// `exp` is present and past (beyond the clock skew), or not a number.
    #[error("the logout token has expired")]
    Expired,
    /// `jti` is missing or empty.
    #[error("the logout token has no identifier (jti)")]
    MissingJti,
    /// The `jti` was accepted before: a replay.
    #[error("this logout token was already used")]
    Replayed,
    /// `events` is missing, or lacks the back-channel logout member with an object value.
    #[error("the logout token lacks the back-channel logout event")]
    MissingEvent,
    /// `nonce` is present (forbidden in a logout token, so an ID token cannot pass for one).
    #[error("the logout token carries a nonce")]
    NoncePresent,
    /// Neither `sid` nor `sub` is present (or they are not non-empty strings).
    #[error("the logout token names neither a session (sid) nor a subject (sub)")]
    MissingSidAndSub,
    /// The provider's discovery document or keys could not be loaded: `502`.
    #[error("the identity provider's keys could not be loaded: {0}")]
    KeysUnavailable(String),
    /// The replay guard could not record the `jti`: `503` (the token is refused, fail
    /// closed; the identity provider may retry).
    #[error("the replay guard is unavailable")]
    ReplayGuardUnavailable,
}

impl LogoutTokenError {
    /// The HTTP status: `400` for a bad token (§2.8), `502` when the provider's keys cannot
    /// be had, `503` when the replay guard cannot answer.
    ///
    /// ```
    /// use jit_provision::oidc::LogoutTokenError;
    /// assert_eq!(LogoutTokenError::Replayed.status(), 400);
    /// assert_eq!(LogoutTokenError::ReplayGuardUnavailable.status(), 503);
    /// ```
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code.
    ///
    /// ```
    /// use jit_provision::oidc::LogoutTokenError;
    /// assert_eq!(LogoutTokenError::NoncePresent.code(), "nonce_present");
    /// ```
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for LogoutTokenError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::KeysUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::ReplayGuardUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::Malformed => "malformed_logout_token",
            Self::DisallowedAlgorithm(_) => "disallowed_algorithm",
            Self::WrongType => "wrong_token_type",
            Self::UnknownKey => "unknown_key",
            Self::AmbiguousKey => "ambiguous_key",
            Self::BadSignature => "bad_signature",
            Self::Issuer => "wrong_issuer",
            Self::Audience => "wrong_audience",
            Self::MissingIssuedAt => "missing_iat",
            Self::IssuedInFuture => "issued_in_future",
            Self::TooOld => "logout_token_too_old",
            Self::Expired => "logout_token_expired",
            Self::MissingJti => "missing_jti",
            Self::Replayed => "replayed_jti",
            Self::MissingEvent => "missing_logout_event",
            Self::NoncePresent => "nonce_present",
            Self::MissingSidAndSub => "missing_sid_and_sub",
            Self::KeysUnavailable(_) => "idp_keys_unavailable",
            Self::ReplayGuardUnavailable => "replay_guard_unavailable",
        }
    }
}
/// What a valid logout token asks for: end the provider's session `sid`, or every session
/// of `sub`, or (both) that session of that subject.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LogoutRequest {
    pub(crate) sid: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) jti: String,
    /// `iat` (rounded down) plus the clock skew, Unix seconds: only sessions created at or
    /// before it end (those that existed when the provider logged out, by its clock give or
    /// take the skew; a session of ours created just before the logout is not missed when
    /// the provider's clock is behind ours).
    pub(crate) sessions_created_by: i64,
    /// When the replay record of `jti` may be forgotten (Unix seconds).
    pub(crate) replay_until: i64,
}

impl std::fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequest")
            .field("sid", &self.sid.is_some())
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: Value,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    #[serde(default)]
    enc: Option<Value>,
}

/// A logout token split and decoded, signature not yet checked.
struct Parsed<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    alg: CoreJwsSigningAlgorithm,
    kid: Option<String>,
    claims: Map<String, Value>,
}

fn decode(part: &str) -> Result<Vec<u8>, LogoutTokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| LogoutTokenError::Malformed)
}

/// Splits a compact JWS and checks its header (`alg`, `typ`, no `crit`, not a JWE).
fn parse(raw: &str) -> Result<Parsed<'_>, LogoutTokenError> {
    let raw = raw.trim();
    let (signing_input, signature) = raw.rsplit_once('.').ok_or(LogoutTokenError::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(LogoutTokenError::Malformed)?;
    if payload.contains('.') {
        // Five parts: an encrypted token, which this layer does not decrypt.
        return Err(LogoutTokenError::Malformed);
    }
    let header: JoseHeader =
        serde_json::from_slice(&decode(header)?).map_err(|_| LogoutTokenError::Malformed)?;
    if header.crit.is_some() || header.enc.is_some() {
        return Err(LogoutTokenError::Malformed);
    }
    let alg_name = header.alg.as_str().ok_or(LogoutTokenError::Malformed)?;
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(header.alg.clone())
        .map_err(|_| LogoutTokenError::DisallowedAlgorithm(alg_name.chars().take(16).collect()))?;
    if !ALLOWED_ALGS.contains(&alg) {
        return Err(LogoutTokenError::DisallowedAlgorithm(
            alg_name.chars().take(16).collect(),
        ));
    }
    if let Some(typ) = header.typ.as_deref()
        && crate::idp::media_type(typ) != "application/logout+jwt"
    {
        return Err(LogoutTokenError::WrongType);
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(payload)?).map_err(|_| LogoutTokenError::Malformed)?;
    Ok(Parsed {
        signing_input,
        signature: decode(signature)?,
        alg,
        kid: header.kid,
        claims,
    })
}

/// Checks the signature against the keys that fit the token's `kid` and algorithm.
fn verify_signature(token: &Parsed<'_>, keys: &CoreJsonWebKeySet) -> Result<(), LogoutTokenError> {
    let candidates: Vec<_> = keys
        .keys()
        .iter()
        .filter(|key| {
            token
                .kid
                .as_deref()
                .is_none_or(|kid| key.key_id().is_some_and(|k| k.as_str() == kid))
        })
        .filter(|key| key.key_use().is_none_or(|u| u.allows_signature()))
        .filter(|key| token.alg.key_type().as_ref() == Some(key.key_type()))
        .filter(|key| match key.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => true,
            JsonWebKeyAlgorithm::Algorithm(alg) => *alg == token.alg,
            _ => false,
        })
        .collect();
    let key = match candidates.as_slice() {
        [] => return Err(LogoutTokenError::UnknownKey),
        [key] => key,
        _ => return Err(LogoutTokenError::AmbiguousKey),
    };
    key.verify_signature(&token.alg, token.signing_input.as_bytes(), &token.signature)
        .map_err(|_| LogoutTokenError::BadSignature)
}

/// Checks the logout tokens of one provider (everything but the `jti` replay, which needs
/// the layer's guard, and the key refetch, which needs its cache).
#[derive(Debug, Clone)]
pub(crate) struct LogoutTokenValidator {
    issuer: String,
    client_id: String,
    skew: i64,
}

impl LogoutTokenValidator {
    pub(crate) fn new(issuer: &str, client_id: &str, clock_skew_secs: u64) -> Self {
        Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            skew: i64::try_from(clock_skew_secs).unwrap_or(i64::MAX / 4),
        }
    }

    /// Validates `raw` against `keys` at time `now` (Unix seconds).
    pub(crate) fn check(
        &self,
        raw: &str,
        keys: &CoreJsonWebKeySet,
        now: i64,
    ) -> Result<LogoutRequest, LogoutTokenError> {
        let token = parse(raw)?;
        verify_signature(&token, keys)?;
        self.check_claims(&token.claims, now)
    }

    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<LogoutRequest, LogoutTokenError> {
        use LogoutTokenError as E;
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(E::Issuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.client_id,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&self.client_id)),
            _ => false,
        };
        if !audience_ok {
            return Err(E::Audience);
        }
        let iat = claims
            .get("iat")
            .and_then(Value::as_f64)
            .ok_or(E::MissingIssuedAt)?;
        if iat > (now + self.skew) as f64 {
            return Err(E::IssuedInFuture);
        }
        let max_age = LOGOUT_TOKEN_MAX_AGE.as_secs() as i64;
        if iat < (now - self.skew - max_age) as f64 {
            return Err(E::TooOld);
        }
        match claims.get("exp") {
            None => {}
            Some(exp) => {
                let exp = exp.as_f64().ok_or(E::Expired)?;
                if exp < (now - self.skew) as f64 {
                    return Err(E::Expired);
                }
            }
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty())
            .ok_or(E::MissingJti)?;
        let event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT));
        if !event.is_some_and(Value::is_object) {
            return Err(E::MissingEvent);
        }
        if claims.contains_key("nonce") {
            return Err(E::NoncePresent);
        }
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let (sid, sub) = (text("sid"), text("sub"));
        if sid.is_none() && sub.is_none() {
            return Err(E::MissingSidAndSub);
        }
        Ok(LogoutRequest {
            sid,
            sub,
            jti: jti.to_owned(),
            sessions_created_by: (iat.floor() as i64).saturating_add(self.skew),
            replay_until: now + max_age + 2 * self.skew,
        })
    }
}

// The keys come from the development IdP's key generator (feature `dev-idp`).
#[cfg(all(test, feature = "dev-idp"))]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::dev_idp::{DevKeyType, SigningKey};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    /// The published test key (its JWK names it `test-key`) and an unpublished one.
    fn test_keys() -> &'static (SigningKey, SigningKey) {
        static KEYS: OnceLock<(SigningKey, SigningKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            (
                SigningKey::generate(DevKeyType::Rs256),
                SigningKey::generate(DevKeyType::Rs256),
            )
        })
    }

    fn test_jwk() -> String {
        let mut jwk = test_keys().0.jwk();
        jwk["kid"] = json!("test-key");
        jwk.to_string()
    }

    const ISSUER: &str = "https://idp.example.com";
    const CLIENT: &str = "app";

    fn keys() -> CoreJsonWebKeySet {
        serde_json::from_str(&format!("{{\"keys\": [{}]}}", test_jwk())).unwrap()
    }

    fn validator() -> LogoutTokenValidator {
        LogoutTokenValidator::new(ISSUER, CLIENT, 60)
    }

    fn now() -> i64 {
        crate::store::now_unix()
    }

    fn claims() -> Map<String, Value> {
        json!({
            "iss": ISSUER,
            "aud": CLIENT,
            "iat": now(),
            "jti": "jti-1",
            "sid": "sid-1",
            "sub": "alice",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn header(typ: Option<&str>) -> Header {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-key".into());
        header.typ = typ.map(str::to_owned);
        header
    }

    fn sign_with(header: &Header, claims: &Map<String, Value>, key: &SigningKey) -> String {
        crate::install_jwt_backend();
        jsonwebtoken::encode(header, claims, key.encoding()).unwrap()
    }

    fn sign(claims: &Map<String, Value>) -> String {
        sign_with(&header(Some("logout+jwt")), claims, &test_keys().0)
    }

    fn check(token: &str) -> Result<LogoutRequest, LogoutTokenError> {
        validator().check(token, &keys(), now())
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Result<LogoutRequest, LogoutTokenError> {
        let mut c = claims();
        f(&mut c);
        check(&sign(&c))
    }

    #[test]
    fn a_valid_token_names_its_session_and_subject() {
        let request = check(&sign(&claims())).unwrap();
        assert_eq!(request.sid.as_deref(), Some("sid-1"));
        assert_eq!(request.sub.as_deref(), Some("alice"));
        assert_eq!(request.jti, "jti-1");
        assert!(request.replay_until >= now() + LOGOUT_TOKEN_MAX_AGE.as_secs() as i64);
        // It ends the sessions created by its iat, give or take the skew.
        let t = now() - 100;
        let request = with(|c| drop(c.insert("iat".into(), json!(t)))).unwrap();
        assert_eq!(request.sessions_created_by, t + 60);
        // sid alone, sub alone, an audience list, an exp in the future.
        assert!(with(|c| drop(c.remove("sub"))).unwrap().sub.is_none());
        assert!(with(|c| drop(c.remove("sid"))).unwrap().sid.is_none());
        assert!(with(|c| drop(c.insert("aud".into(), json!(["other", CLIENT])))).is_ok());
        assert!(with(|c| drop(c.insert("exp".into(), json!(now() + 120)))).is_ok());
        // A non-empty event object is fine too.
        assert!(
            with(|c| drop(c.insert(
                "events".into(),
                json!({ BACKCHANNEL_LOGOUT_EVENT: { "x": 1 }, "other": 2 })
            )))
            .is_ok()
        );
    }

    #[test]
    fn typ_is_logout_jwt_when_present() {
        for typ in [
            None,
            Some("logout+jwt"),
            Some("application/logout+jwt"),
            Some("Logout+JWT"),
        ] {
            let token = sign_with(&header(typ), &claims(), &test_keys().0);
            assert!(check(&token).is_ok(), "{typ:?}");
        }
        for typ in ["JWT", "at+jwt", "application/jwt", ""] {
            let token = sign_with(&header(Some(typ)), &claims(), &test_keys().0);
            assert_eq!(check(&token), Err(LogoutTokenError::WrongType), "{typ:?}");
        }
    }

    #[test]
    fn a_bad_signature_or_unknown_key_is_refused() {
        let token = sign_with(&header(None), &claims(), &test_keys().1);
        assert_eq!(check(&token), Err(LogoutTokenError::BadSignature));
        let mut unknown = header(None);
        unknown.kid = Some("not-published".into());
        let token = sign_with(&unknown, &claims(), &test_keys().0);
        assert_eq!(check(&token), Err(LogoutTokenError::UnknownKey));
        // A payload swapped under a valid signature.
        let good = sign(&claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut evil = claims();
        evil.insert("sub".into(), json!("bob"));
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        parts[1] = &payload;
        assert_eq!(check(&parts.join(".")), Err(LogoutTokenError::BadSignature));
    }

    #[test]
    fn alg_none_hmac_and_unknown_algorithms_are_refused() {
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        let payload = b64(Value::Object(claims()));
        for alg in ["none", "HS256", "XX999"] {
            let token = format!(
                "{}.{payload}.",
                b64(json!({ "alg": alg, "typ": "logout+jwt" }))
            );
            assert_eq!(
                check(&token),
                Err(LogoutTokenError::DisallowedAlgorithm(alg.into())),
                "{alg}"
            );
        }
        crate::install_jwt_backend();
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(
            check(&hs),
            Err(LogoutTokenError::DisallowedAlgorithm("HS256".into()))
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        let good = sign(&claims());
        let (h, rest) = good.split_once('.').unwrap();
        for token in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c".into(),
            format!("{good}.x.y"),
            format!("{h}.!!!.sig"),
            format!("{}.{rest}", b64(json!({ "alg": "RS256", "crit": ["exp"] }))),
            format!(
                "{}.{rest}",
                b64(json!({ "alg": "RSA-OAEP", "enc": "A256GCM" }))
            ),
            format!("{h}.{}.c2ln", b64(json!(["not", "an", "object"]))),
        ] {
            assert_eq!(check(&token), Err(LogoutTokenError::Malformed), "{token}");
        }
    }

    #[test]
    fn iss_and_aud_must_be_the_providers() {
        use LogoutTokenError as E;
        assert_eq!(
            with(|c| drop(c.insert("iss".into(), json!("https://evil")))),
            Err(E::Issuer)
        );
        assert_eq!(with(|c| drop(c.remove("iss"))), Err(E::Issuer));
        assert_eq!(
            with(|c| drop(c.insert("aud".into(), json!("other")))),
            Err(E::Audience)
        );
        assert_eq!(
            with(|c| drop(c.insert("aud".into(), json!(["a", "b"])))),
            Err(E::Audience)
        );
        assert_eq!(with(|c| drop(c.remove("aud"))), Err(E::Audience));
    }

    #[test]
    fn times_are_checked_with_the_skew() {
        use LogoutTokenError as E;
        let t = now();
        assert_eq!(with(|c| drop(c.remove("iat"))), Err(E::MissingIssuedAt));
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!("now")))),
            Err(E::MissingIssuedAt)
        );
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!(t + 3600)))),
            Err(E::IssuedInFuture)
        );
        assert!(with(|c| drop(c.insert("iat".into(), json!(t + 30)))).is_ok());
        assert_eq!(
            with(|c| drop(c.insert("iat".into(), json!(t - 3600)))),
            Err(E::TooOld)
        );
        assert!(with(|c| drop(c.insert("iat".into(), json!(t - 500)))).is_ok());
        assert_eq!(
            with(|c| drop(c.insert("exp".into(), json!(t - 3600)))),
            Err(E::Expired)
        );
        assert_eq!(
            with(|c| drop(c.insert("exp".into(), json!("later")))),
            Err(E::Expired)
        );
        assert!(with(|c| drop(c.insert("exp".into(), json!(t - 30)))).is_ok());
    }

    #[test]
    fn jti_events_nonce_sid_and_sub_are_checked() {
        use LogoutTokenError as E;
        assert_eq!(with(|c| drop(c.remove("jti"))), Err(E::MissingJti));
        assert_eq!(
            with(|c| drop(c.insert("jti".into(), json!("")))),
            Err(E::MissingJti)
        );
        assert_eq!(with(|c| drop(c.remove("events"))), Err(E::MissingEvent));
        assert_eq!(
            with(|c| drop(c.insert("events".into(), json!({})))),
            Err(E::MissingEvent)
        );
        assert_eq!(
            with(|c| drop(c.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })))),
            Err(E::MissingEvent)
        );
        assert_eq!(
            with(|c| drop(c.insert("events".into(), json!([BACKCHANNEL_LOGOUT_EVENT])))),
            Err(E::MissingEvent)
        );
        assert_eq!(
            with(|c| drop(c.insert("nonce".into(), json!("n")))),
            Err(E::NoncePresent)
        );
        assert_eq!(
            with(|c| {
                c.remove("sid");
                c.remove("sub");
            }),
            Err(E::MissingSidAndSub)
        );
        assert_eq!(
            with(|c| {
                c.insert("sid".into(), json!(""));
                c.insert("sub".into(), json!(42));
            }),
            Err(E::MissingSidAndSub)
        );
    }

    #[test]
    fn every_error_has_a_distinct_code_and_a_status() {
        use LogoutTokenError as E;
        let all = [
            E::Malformed,
            E::DisallowedAlgorithm("none".into()),
            E::WrongType,
            E::UnknownKey,
            E::AmbiguousKey,
            E::BadSignature,
            E::Issuer,
            E::Audience,
            E::MissingIssuedAt,
            E::IssuedInFuture,
            E::TooOld,
            E::Expired,
            E::MissingJti,
            E::Replayed,
            E::MissingEvent,
            E::NoncePresent,
            E::MissingSidAndSub,
            E::KeysUnavailable("down".into()),
            E::ReplayGuardUnavailable,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(E::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(
            all[..17]
                .iter()
                .all(|e| e.status() == StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn a_token_without_kid_needs_an_unambiguous_key() {
        let mut h = header(Some("logout+jwt"));
        h.kid = None;
        let token = sign_with(&h, &claims(), &test_keys().0);
        assert!(check(&token).is_ok(), "one key: it is the one");
        let two: CoreJsonWebKeySet = serde_json::from_str(&format!(
            "{{\"keys\": [{}, {}]}}",
            test_jwk(),
            test_jwk().replace("test-key", "second")
        ))
        .unwrap();
        assert_eq!(
            validator().check(&token, &two, now()),
            Err(LogoutTokenError::AmbiguousKey)
        );
    }
}
