//! `Authorization: Bearer` JWTs for APIs: typed as access tokens (RFC 9068 `typ`), validated
//! with `jsonwebtoken` against the issuer's JWKS, provisioned just in time like a login
//! (without linking or attribute updates unless the bearer section turns them on), and
//! remembered by digest until `min(exp, TTL)` so repeated calls skip the signature check.

mod scope;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::Expiry;
use moka::future::Cache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use self::scope::{RequireScope, RequireScopeService};
use crate::auth::{AuthInfo, AuthMethod};
use crate::config::{BearerConfig, LinkingConfig, ProviderConfig, ProvisioningMode};
use crate::idp::HttpClient;
use crate::idp::media_type;
use crate::idp::{KeyError, KeySource};
use crate::mapping::Claims;
use crate::provision::{Policy, ProvisionError, Provisioned, Provisioner};
use crate::store::{Identity, UserId, now_unix};

/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a bearer token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// Not a JWT, or a header or claims that cannot be parsed.
    #[error("the token is malformed")]
    Malformed,
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("the token is too large")]
    TooLarge,
    /// No configured provider accepts bearer tokens from this `iss`.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// `alg` is not one the provider allows.
    #[error("the token's signature algorithm is not allowed")]
    DisallowedAlgorithm,
    /// The header `typ` is not one of the provider's `bearer.token_types` (an ID token, say):
    /// `401` with code `invalid_token_type`.
    #[error("the token is not an access token: its type (typ) is not accepted")]
    TokenType,
    /// The token names no `kid`.
    #[error("the token names no key")]
    MissingKeyId,
    /// No published key has the token's `kid`.
    #[error("no signing key of the issuer matches the token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// `iss` does not match exactly.
    #[error("the token's issuer is wrong")]
    Issuer,
    /// No accepted audience in `aud`.
    #[error("the token's audience is wrong")]
    Audience,
    /// A required claim is missing.
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    /// The issuer's keys cannot be fetched and none are cached: `503`.
    #[error("the issuer's signing keys are unavailable")]
    KeysUnavailable,
    /// The token is valid, but its user no longer exists (deleted since the token was
    /// first seen): `401` with code `unknown_user`; the next call with a new token provisions
    /// again.
    #[error("the token's user no longer exists")]
    UnknownUser,
    /// The token is valid but the user could not be provisioned.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

impl BearerError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code.
    ///
    /// ```
    /// use jit_provision::bearer::BearerError;
    /// assert_eq!(BearerError::TokenType.code(), "invalid_token_type");
    /// assert_eq!(BearerError::BadSignature.code(), "invalid_token");
    /// assert_eq!(BearerError::TokenType.status(), http::StatusCode::UNAUTHORIZED);
    /// ```
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }

    /// The RFC 6750 `WWW-Authenticate` challenge for this failure, when it has one.
    pub fn challenge(&self) -> Option<HeaderValue> {
        if self.status() != StatusCode::UNAUTHORIZED {
            return None;
        }
        // Our messages are plain ASCII without quotes or backslashes.
        HeaderValue::from_str(&format!(
            "Bearer error=\"invalid_token\", error_description=\"{self}\""
        ))
        .ok()
    }
}

impl crate::failure::Failure for BearerError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Provision(e) => e.status(),
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::KeysUnavailable => "idp_keys_unavailable",
            Self::TokenType => "invalid_token_type",
            Self::UnknownUser => "unknown_user",
            Self::Provision(e) => e.code(),
            _ => "invalid_token",
        }
    }
}
/// What the verified-token cache remembers: who the token is, not the token.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    pub(crate) user_id: UserId,
    pub(crate) domain: Arc<str>,
    pub(crate) auth: Arc<AuthInfo>,
    /// When the cache entry must go: `min(exp, now + TTL)`.
    valid_for: Duration,
}

struct UntilExpiry;

impl Expiry<[u8; 32], Arc<VerifiedToken>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<VerifiedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.valid_for)
    }
}

/// One provider's bearer settings, ready to verify.
struct Verifier {
    provider: String,
    issuer: String,
    config: BearerConfig,
    /// `bearer.token_types` as media types (see [`media_type`]).
    token_types: Vec<String>,
    policy: Arc<Policy>,
    leeway: u64,
    validation: Validation,
    keys: Arc<KeySource>,
}

/// All bearer verification of a layer.
pub(crate) struct Bearer {
    by_issuer: HashMap<String, Arc<Verifier>>,
    tokens: Cache<[u8; 32], Arc<VerifiedToken>>,
    http: HttpClient,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("issuers", &self.by_issuer.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The provider's `bearer.token_types` as media types; an empty list is refused.
fn token_types(id: &str, config: &BearerConfig) -> Result<Vec<String>, String> {
    if config.token_types.is_empty() {
        return Err(format!(
            "provider `{id}`: bearer.token_types must not be empty"
        ));
    }
    Ok(config.token_types.iter().map(|t| media_type(t)).collect())
}

/// The provisioning policy of the bearer path: the provider's, with linking and attribute
/// updates off unless the bearer section turns them on.
fn bearer_policy(
    id: &str,
    provider: &ProviderConfig,
    config: &BearerConfig,
) -> Result<Policy, String> {
    let mut policy = Policy::new(id, provider, config.mapping.as_ref())
        .map_err(|e| format!("provider `{id}`: {e}"))?;
    if !config.link {
        policy.linking = LinkingConfig::default();
    }
    if !config.update_attributes {
        policy.mode = match policy.mode {
            ProvisioningMode::CreateAndUpdate => ProvisioningMode::CreateOnly,
            ProvisioningMode::UpdateOnly => ProvisioningMode::Off,
            unchanged => unchanged,
        };
    }
    Ok(policy)
}

fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

impl Bearer {
    /// Prepares verification for every provider with a `bearer` section; `None` when none has.
    pub(crate) fn new(
        providers: &std::collections::BTreeMap<String, ProviderConfig>,
        http: HttpClient,
        max_tokens: u64,
    ) -> Result<Option<Self>, String> {
        let mut by_issuer = HashMap::new();
        for (id, provider) in providers {
            let Some(config) = &provider.bearer else {
                continue;
            };
            if config.audiences.is_empty() {
                return Err(format!(
                    "provider `{id}`: bearer.audiences must not be empty"
                ));
            }
            let algorithms = config
                .algorithms
                .iter()
                .map(|a| {
                    parse_algorithm(a).ok_or_else(|| {
                        format!("provider `{id}`: bearer algorithm `{a}` is not allowed (asymmetric algorithms only)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let first = *algorithms
                .first()
                .ok_or_else(|| format!("provider `{id}`: bearer.algorithms must not be empty"))?;
            let mut validation = Validation::new(first);
            validation.algorithms = algorithms;
            validation.set_issuer(&[provider.issuer()]);
            validation.set_audience(&config.audiences);
            validation.leeway = provider.clock_skew_secs;
            validation.validate_nbf = true;
            // jsonwebtoken only knows the registered claims; others are checked after decoding.
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            let verifier = Verifier {
                provider: id.clone(),
                issuer: provider.issuer().to_owned(),
                config: config.clone(),
                token_types: token_types(id, config)?,
                policy: Arc::new(bearer_policy(id, provider, config)?),
                leeway: provider.clock_skew_secs,
                validation,
                keys: Arc::new(KeySource::new(
                    provider.issuer().to_owned(),
                    config.jwks_uri.clone(),
                    Duration::from_secs(config.jwks_ttl_secs.max(1)),
                    Duration::from_secs(provider.jwks_min_refetch_secs),
                )),
            };
            if by_issuer
                .insert(provider.issuer().to_owned(), Arc::new(verifier))
                .is_some()
            {
                return Err(format!(
                    "two providers accept bearer tokens from the issuer `{}`",
                    provider.issuer()
                ));
            }
        }
        if by_issuer.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            by_issuer,
            tokens: Cache::builder()
                .max_capacity(max_tokens)
                .expire_after(UntilExpiry)
                .build(),
            http,
        }))
    }

    /// The key source of `issuer`'s bearer tokens, for its login and logout tokens to share;
    /// `None` without one, or when `bearer.jwks_uri` names keys of its own.
    pub(crate) fn key_source(&self, issuer: &str) -> Option<Arc<KeySource>> {
        self.by_issuer
            .get(issuer)
            .map(|v| v.keys.clone())
            .filter(|keys| !keys.has_configured_uri())
    }

    /// The token of an `Authorization: Bearer ...` header value.
    pub(crate) fn token_of(value: &HeaderValue) -> Option<&[u8]> {
        let value = value.as_bytes();
        let scheme = value.get(..7)?;
        scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| value[7..].trim_ascii())
    }

    /// Verifies a token and provisions its user; a token seen before (same digest, not expired)
    /// is answered from the cache without any signature check.
    pub(crate) async fn authenticate(
        &self,
        token: &[u8],
        provisioner: &Provisioner,
    ) -> Result<Arc<VerifiedToken>, BearerError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(BearerError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token).into();
        if let Some(hit) = self.tokens.get(&digest).await {
            provisioner.metrics().bearer_cached();
            return Ok(hit);
        }
        let verified = self
            .tokens
            .try_get_with(digest, self.verify_and_provision(token, provisioner))
            .await
            .map_err(unshare)?;
        Ok(verified)
    }

    /// A token not seen before: verified ([`verify`](Self::verify)), its claims read
    /// ([`Verifier::read_claims`]), its user provisioned ([`Verifier::provision`]), and what
    /// the cache keeps of it ([`Verifier::cache_entry`]).
    async fn verify_and_provision(
        &self,
        token: &[u8],
        provisioner: &Provisioner,
    ) -> Result<Arc<VerifiedToken>, BearerError> {
        let token = std::str::from_utf8(token).map_err(|_| BearerError::Malformed)?;
        let (verifier, claims) = self.verify(token).await?;
        let read = verifier.read_claims(&claims)?;
        let (user_id, domain) = verifier
            .provision(&read.subject, claims, provisioner)
            .await?;
        Ok(verifier.cache_entry(read, user_id, domain))
    }

    /// The token's verifier and its claims, once its signature holds under a key of its
    /// issuer and `jsonwebtoken` checked its algorithm, issuer, audience, `exp` and `nbf`.
    async fn verify(&self, token: &str) -> Result<(&Verifier, Map<String, Value>), BearerError> {
        let (verifier, kid) = self.verifier_for(token)?;
        let key = verifier.decoding_key(&self.http, &kid).await?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &verifier.validation)
            .map_err(classify)?;
        Ok((verifier, data.claims))
    }

    /// The verifier of the token's issuer, picked by the `iss` it claims (not yet verified:
    /// [`verify`](Self::verify) checks it with the signature), and the token's key id, once its
    /// header passes the checks that need no key: an accepted algorithm and type, a `kid`.
    fn verifier_for(&self, token: &str) -> Result<(&Verifier, String), BearerError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| BearerError::Malformed)?;
        #[derive(serde::Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        // Pick the provider by the (not yet verified) issuer; it is verified with the signature.
        let unverified: Issuer = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| BearerError::Malformed)?;
        let verifier = unverified
            .iss
            .and_then(|iss| self.by_issuer.get(&iss))
            .ok_or(BearerError::UnknownIssuer)?;
        if !verifier.validation.algorithms.contains(&header.alg) {
            return Err(BearerError::DisallowedAlgorithm);
        }
        // Checked on the unverified header: it only ever refuses, and an ID token then costs
        // no key fetch.
        if !verifier.accepts_type(header.typ.as_deref()) {
            return Err(BearerError::TokenType);
        }
        let kid = header.kid.ok_or(BearerError::MissingKeyId)?;
        Ok((verifier, kid))
    }
}

/// What a verified token's claims say besides those provisioning maps, checked: who, when,
/// for what (scopes and client).
struct ReadClaims {
    subject: String,
    /// `iat`, or when the token was verified for a token without one.
    issued_at: i64,
    expires_at: i64,
    /// When the token was verified, Unix seconds.
    now: i64,
    scopes: Vec<String>,
    client_id: Option<String>,
}

impl Verifier {
    /// Whether a token with this header `typ` is one of the accepted access-token types.
    fn accepts_type(&self, typ: Option<&str>) -> bool {
        let typ = media_type(typ.unwrap_or_default());
        self.token_types.contains(&typ)
    }

    /// The key of `kid` among the issuer's keys, fetching them when `kid` is not known yet.
    async fn decoding_key(&self, http: &HttpClient, kid: &str) -> Result<DecodingKey, BearerError> {
        let keys = self.keys.for_kid(http, kid).await.map_err(|e| match e {
            KeyError::Unknown => BearerError::UnknownKey,
            KeyError::Unavailable(reason) => {
                tracing::error!(provider = %self.provider, error = %reason, "bearer keys unavailable");
                BearerError::KeysUnavailable
            }
        })?;
        let jwk = keys.find(kid).ok_or(BearerError::UnknownKey)?;
        DecodingKey::from_jwk(jwk).map_err(|_| BearerError::UnknownKey)
    }

    /// Checks the claims `jsonwebtoken` does not (`bearer.required_claims`, an `iat` not in
    /// the future, a non-empty `sub`) and reads what the cache entry needs.
    fn read_claims(&self, claims: &Map<String, Value>) -> Result<ReadClaims, BearerError> {
        if let Some(missing) = self
            .config
            .required_claims
            .iter()
            .find(|c| claims.get(*c).is_none_or(Value::is_null))
        {
            return Err(BearerError::MissingClaim(missing.clone()));
        }
        let now = now_unix();
        let iat = claims.get("iat").and_then(Value::as_i64);
        if iat.is_some_and(|iat| iat > now + self.leeway as i64) {
            return Err(BearerError::IssuedInFuture);
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| BearerError::MissingClaim("sub".into()))?
            .to_owned();
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| BearerError::MissingClaim("exp".into()))?;
        let client_id = ["azp", "client_id"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .map(str::to_owned);
        Ok(ReadClaims {
            subject,
            issued_at: iat.unwrap_or(now),
            expires_at,
            now,
            scopes: scopes(claims),
            client_id,
        })
    }

    /// Maps the claims and provisions the token's user with the bearer policy, like a login:
    /// the user's id and domain. A provider that prompts new users refuses the token (a
    /// prompt needs the browser).
    async fn provision(
        &self,
        subject: &str,
        claims: Map<String, Value>,
        provisioner: &Provisioner,
    ) -> Result<(UserId, Arc<str>), BearerError> {
        let identity = Identity::new(&self.provider, &self.issuer, subject);
        let (user, domain, outcome) = match provisioner
            .provision(&self.policy, &identity, &Claims(claims), None)
            .await?
        {
            Provisioned::Done {
                user,
                domain,
                outcome,
            } => (user, domain, outcome),
            Provisioned::Prompt { .. } => {
                return Err(BearerError::Provision(ProvisionError::PromptRefused(
                    "this provider prompts new users: log in through the browser first".into(),
                )));
            }
        };
        provisioner.metrics().bearer_verified();
        tracing::debug!(provider = %self.provider, user_id = %user.id, outcome = ?outcome, "bearer token verified");
        Ok((user.id, domain))
    }

    /// What the cache keeps of a verified token of this user, until
    /// `min(exp, now + bearer.token_cache_ttl_secs)`.
    fn cache_entry(
        &self,
        read: ReadClaims,
        user_id: UserId,
        domain: Arc<str>,
    ) -> Arc<VerifiedToken> {
        let remaining = (read.expires_at - read.now).max(0) as u64;
        let ttl = self.config.token_cache_ttl_secs;
        Arc::new(VerifiedToken {
            user_id,
            domain: domain.clone(),
            auth: Arc::new(AuthInfo {
                provider: self.provider.clone(),
                domain: domain.to_string(),
                subject: read.subject,
                issued_at: read.issued_at,
                expires_at: read.expires_at,
                method: AuthMethod::Bearer {
                    scopes: read.scopes,
                    client_id: read.client_id,
                },
            }),
            valid_for: Duration::from_secs(remaining.min(ttl)),
        })
    }
}

/// Scopes from `scope` (space separated, RFC 9068) or `scp` (an array or a string).
fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let split = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(s)) => split(s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn classify(err: jsonwebtoken::errors::Error) -> BearerError {
    use jsonwebtoken::errors::ErrorKind as K;
    match err.kind() {
        K::InvalidSignature => BearerError::BadSignature,
        K::ExpiredSignature => BearerError::Expired,
        K::ImmatureSignature => BearerError::NotYetValid,
        K::InvalidIssuer => BearerError::Issuer,
        K::InvalidAudience => BearerError::Audience,
        K::MissingRequiredClaim(c) => BearerError::MissingClaim(c.clone()),
        K::InvalidAlgorithm | K::MissingAlgorithm => BearerError::DisallowedAlgorithm,
        K::InvalidRsaKey(_) | K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidKeyFormat => {
            BearerError::UnknownKey
        }
        _ => BearerError::Malformed,
    }
}

/// moka shares an init error between waiters behind an `Arc`; give each its own.
fn unshare(err: Arc<BearerError>) -> BearerError {
    match Arc::try_unwrap(err) {
        Ok(err) => err,
        Err(shared) => match &*shared {
            BearerError::Malformed => BearerError::Malformed,
            BearerError::TooLarge => BearerError::TooLarge,
            BearerError::UnknownIssuer => BearerError::UnknownIssuer,
            BearerError::DisallowedAlgorithm => BearerError::DisallowedAlgorithm,
            BearerError::TokenType => BearerError::TokenType,
            BearerError::MissingKeyId => BearerError::MissingKeyId,
            BearerError::UnknownKey => BearerError::UnknownKey,
            BearerError::UnknownUser => BearerError::UnknownUser,
            BearerError::BadSignature => BearerError::BadSignature,
            BearerError::Expired => BearerError::Expired,
            BearerError::NotYetValid => BearerError::NotYetValid,
            BearerError::IssuedInFuture => BearerError::IssuedInFuture,
            BearerError::Issuer => BearerError::Issuer,
            BearerError::Audience => BearerError::Audience,
            BearerError::MissingClaim(c) => BearerError::MissingClaim(c.clone()),
            BearerError::KeysUnavailable => BearerError::KeysUnavailable,
            BearerError::Provision(p) => BearerError::Provision(p.duplicate()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_compare_as_media_types() {
        assert_eq!(media_type("at+jwt"), "application/at+jwt");
        assert_eq!(media_type("application/AT+JWT"), "application/at+jwt");
        assert_eq!(media_type(" At+Jwt "), "application/at+jwt");
        assert_eq!(media_type("JWT"), "application/jwt");
        assert_eq!(media_type(""), "");
        assert_ne!(media_type("jwt"), media_type("at+jwt"));
    }

    #[test]
    fn an_empty_token_type_list_is_refused() {
        let mut config = BearerConfig::new(["api"]);
        assert_eq!(
            token_types("corp", &config).unwrap(),
            ["application/at+jwt"]
        );
        config.token_types.clear();
        assert!(token_types("corp", &config).is_err());
    }

    #[test]
    fn the_bearer_policy_neither_links_nor_updates_unless_told() {
        let mut provider = ProviderConfig::new("https://idp.example", "app");
        provider.linking.by = crate::config::LinkBy::Username;
        let mut config = BearerConfig::new(["api"]);
        let policy = bearer_policy("corp", &provider, &config).unwrap();
        assert_eq!(policy.linking.by, crate::config::LinkBy::None);
        assert_eq!(policy.mode, ProvisioningMode::CreateOnly);
        provider.mode = ProvisioningMode::UpdateOnly;
        let policy = bearer_policy("corp", &provider, &config).unwrap();
        assert_eq!(policy.mode, ProvisioningMode::Off);
        config.link = true;
        config.update_attributes = true;
        let policy = bearer_policy("corp", &provider, &config).unwrap();
        assert_eq!(policy.linking.by, crate::config::LinkBy::Username);
        assert_eq!(policy.mode, ProvisioningMode::UpdateOnly);
    }
}
