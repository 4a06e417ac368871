//! OpenID Connect relying party: discovery (cached for a TTL, kept while the provider is
//! down), the authorization request (state, nonce, PKCE S256), the RFC 9207 `iss` check, the
//! code exchange, and ID token validation with the `openidconnect` crate.

mod logout_token;
mod refresh;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType,
    CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreSubjectIdentifierType,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthorizationCode,
    ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken, EmptyAdditionalClaims,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, GenderClaim, IdToken, IssuerUrl,
    JweContentEncryptionAlgorithm, JwsSigningAlgorithm, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse, TokenResponse,
    UserInfoError,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub(crate) use self::logout_token::LogoutRequest;
pub(crate) use self::logout_token::LogoutTokenValidator;
pub use self::logout_token::{BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_MAX_AGE, LogoutTokenError};
use crate::config::{ProviderConfig, ResponseMode, TokenAuth};
pub(crate) use crate::idp::HttpClient;
use crate::idp::{JwksCache, KeySource, LoginKeys, Refetch, SharedKeys};
use crate::mapping::Claims;
use crate::store::Identity;

/// Why an ID token was refused. Every variant is a `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Not a well-formed signed JWT.
    #[error("the ID token is malformed")]
    Malformed,
    /// The signature algorithm is not allowed (`none`, HMAC, or not configured).
    #[error("the ID token's signature algorithm is not allowed: {0}")]
    DisallowedAlgorithm(String),
    /// No published key matches the token's `kid` and algorithm, even after a refetch.
    #[error("no signing key of the issuer matches the ID token")]
    UnknownKey,
    /// The token names no `kid` and several keys could have signed it.
    #[error("the ID token names no key and the issuer publishes several")]
    AmbiguousKey,
    /// The signature does not verify.
    #[error("the ID token's signature is invalid")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("the ID token's issuer is not the configured issuer")]
    Issuer,
    /// `aud` lacks our client id or carries an untrusted audience.
    #[error("the ID token's audience is wrong")]
    Audience,
    /// `azp` is missing with several audiences, or is not our client id.
    #[error("the ID token's authorized party is wrong")]
    AuthorizedParty,
    /// `exp` is in the past (beyond the allowed skew).
    #[error("the ID token has expired")]
    Expired,
    /// `iat` is in the future (beyond the allowed skew).
    #[error("the ID token was issued in the future")]
    IssuedInFuture,
    /// `nbf` is in the future (beyond the allowed skew): not valid yet (RFC 7519 §4.1.5).
    #[error("the ID token is not valid yet")]
    NotYetValid,
    /// `nonce` is missing or differs from the one sent.
    #[error("the ID token's nonce does not match the login")]
    Nonce,
    /// The ID token of a token refresh names another subject than the login's (OpenID
    /// Connect Core §12.2).
    #[error("the refreshed ID token names another subject")]
    Subject,
    /// Any other claim check failed.
    #[error("the ID token is invalid: {0}")]
    Other(String),
}

/// Why an OpenID Connect login failed at the protocol level.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// Discovery or the key set could not be fetched or is invalid: `502`.
    #[error("the identity provider's configuration could not be loaded: {0}")]
    Discovery(String),
    /// The identity provider answered the authorization request with an error: `401`.
    #[error("the identity provider refused the login: {error}")]
    Authorization {
        /// The `error` parameter.
        error: String,
    },
    /// The authorization response names another issuer (RFC 9207 `iss`): `401`.
    #[error("the authorization response comes from another issuer")]
    IssuerMismatch,
    /// The authorization response lacks `iss` although the provider's discovery document
    /// says it sends one (`authorization_response_iss_parameter_supported`, RFC 9207 §2.4):
    /// `401`.
    #[error("the authorization response does not name its issuer")]
    MissingIssuer,
    /// The token endpoint refused the code (`invalid_grant`, ...): `401`.
    #[error("the identity provider refused the authorization code: {0}")]
    TokenRejected(String),
    /// The token endpoint could not be reached or answered nonsense: `502`.
    #[error("the token endpoint failed: {0}")]
    TokenEndpoint(String),
    /// The token response's `token_type` is missing or not `Bearer` (OpenID Connect Core
    /// §3.1.3.3, RFC 6749 §7.1): `502`, the provider breaking the protocol. Nothing in the
    /// response was used.
    #[error("the token response is invalid: {0}")]
    InvalidTokenResponse(String),
    /// The token response carries no ID token: `502`.
    #[error("the token response carries no ID token")]
    NoIdToken,
    /// The ID token failed validation: `401`.
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    /// The userinfo endpoint failed: `502`.
    #[error("the userinfo endpoint failed: {0}")]
    UserInfo(String),
    /// The userinfo `sub` differs from the ID token's: `401`.
    #[error("the userinfo subject does not match the ID token")]
    UserInfoSubject,
}

impl OidcError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> ::http::StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for OidcError {
    fn status(&self) -> ::http::StatusCode {
        use ::http::StatusCode;
        match self {
            Self::Discovery(_)
            | Self::TokenEndpoint(_)
            | Self::InvalidTokenResponse(_)
            | Self::NoIdToken
            | Self::UserInfo(_) => StatusCode::BAD_GATEWAY,
            Self::Authorization { .. }
            | Self::IssuerMismatch
            | Self::MissingIssuer
            | Self::TokenRejected(_)
            | Self::IdToken(_)
            | Self::UserInfoSubject => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::Discovery(_) => "idp_discovery_failed",
            Self::Authorization { .. } => "idp_refused_login",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::MissingIssuer => "missing_issuer",
            Self::TokenRejected(_) => "code_rejected",
            Self::TokenEndpoint(_) => "token_endpoint_failed",
            Self::InvalidTokenResponse(_) => "invalid_token_response",
            Self::NoIdToken => "no_id_token",
            Self::IdToken(_) => "invalid_id_token",
            Self::UserInfo(_) => "userinfo_failed",
            Self::UserInfoSubject => "userinfo_subject_mismatch",
        }
    }
}
/// All claims of a token: the standard ones parsed by `openidconnect`, the rest kept here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}
impl AdditionalClaims for ExtraClaims {}

type FullIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The members of the discovery document that openidconnect's core metadata lacks: RFC 9207
/// and the logout specifications'.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IssParameterMetadata {
    /// The provider sends `iss` with every authorization response (RFC 9207 §3).
    #[serde(default, deserialize_with = "bool_or_string")]
    authorization_response_iss_parameter_supported: bool,
    /// Where RP-initiated logout sends the browser (RP-Initiated Logout 1.0 §2.1). A value
    /// that is not an absolute URL is ignored (as if absent).
    #[serde(default, deserialize_with = "url_or_nothing")]
    end_session_endpoint: Option<url::Url>,
    /// Front-channel logout requests carry `iss` and `sid` (Front-Channel Logout 1.0 §3).
    #[serde(default, deserialize_with = "bool_or_string")]
    frontchannel_logout_session_supported: bool,
}

/// An absolute http(s) URL, or `None` for anything else.
fn url_or_nothing<'de, D: Deserializer<'de>>(d: D) -> Result<Option<url::Url>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|s| url::Url::parse(s).ok())
        .filter(|u| matches!(u.scheme(), "https" | "http")))
}
impl AdditionalProviderMetadata for IssParameterMetadata {}

/// A JSON boolean, or the strings `"true"` / `"false"` some providers send instead (as the
/// crate's `accept-string-booleans` does for the core members); absent or `null` is `false`.
fn bool_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(serde::de::Error::custom("expected a boolean")),
    }
}

type DiscoveryDocument = ProviderMetadata<
    IssParameterMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The token endpoint's answer to the code exchange (RFC 6749 §5.1, OpenID Connect Core
/// §3.1.3.3). Unlike openidconnect's `CoreTokenResponse`, it keeps the ID token as sent, so a
/// malformed one is refused by the ID token validator (`401 invalid_id_token`) instead of
/// failing the whole response as unparsable (`502`), and it reads a missing `token_type` as an
/// unknown one, refused like any type but `Bearer`.
#[derive(Debug, Serialize, Deserialize)]
struct CodeTokenResponse {
    access_token: openidconnect::AccessToken,
    #[serde(default = "no_token_type", deserialize_with = "token_type_any_case")]
    token_type: CoreTokenType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<RefreshToken>,
    #[serde(
        rename = "scope",
        default,
        deserialize_with = "space_delimited",
        serialize_with = "space_joined",
        skip_serializing_if = "Option::is_none"
    )]
    scopes: Option<Vec<Scope>>,
    /// Any JSON value: only a string can be an ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<Value>,
}

fn no_token_type() -> CoreTokenType {
    CoreTokenType::Extension(String::new())
}

/// `token_type` is case-insensitive (RFC 6749 §5.1).
fn token_type_any_case<'de, D: Deserializer<'de>>(d: D) -> Result<CoreTokenType, D::Error> {
    let name = String::deserialize(d)?;
    Ok(if name.eq_ignore_ascii_case("bearer") {
        CoreTokenType::Bearer
    } else if name.eq_ignore_ascii_case("mac") {
        CoreTokenType::Mac
    } else {
        CoreTokenType::Extension(name)
    })
}

fn space_delimited<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Scope>>, D::Error> {
    let scope = Option::<String>::deserialize(d)?;
    Ok(scope.map(|s| {
        s.split_whitespace()
            .map(|s| Scope::new(s.to_owned()))
            .collect()
    }))
}

fn space_joined<S: serde::Serializer>(
    scopes: &Option<Vec<Scope>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let joined = scopes.as_ref().map(|scopes| {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    });
    joined.serialize(s)
}

impl OAuth2TokenResponse for CodeTokenResponse {
    type TokenType = CoreTokenType;
    fn access_token(&self) -> &openidconnect::AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &CoreTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

impl<AC, GC, JE, JS> TokenResponse<AC, GC, JE, JS> for CodeTokenResponse
where
    AC: AdditionalClaims,
    GC: GenderClaim,
    JE: JweContentEncryptionAlgorithm<KeyType = JS::KeyType>,
    JS: JwsSigningAlgorithm,
{
    /// Always `None`: the layer never takes openidconnect's parsed ID token; it validates the
    /// text of the `id_token` member, so no path can skip the validator.
    fn id_token(&self) -> Option<&IdToken<AC, GC, JE, JS>> {
        None
    }
}

type DiscoveredClient = Client<
    EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    CodeTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Asymmetric algorithms only: never `none`, never HMAC (whose key would be public).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// One discovery of a provider: its client, its keys, what it promised.
struct Discovered {
    client: DiscoveredClient,
    jwks: LoginKeys,
    /// Discovery said `authorization_response_iss_parameter_supported: true`.
    sends_iss: bool,
    /// The discovery document's `end_session_endpoint`.
    end_session: Option<url::Url>,
    /// Discovery said `frontchannel_logout_session_supported: true`.
    frontchannel_session: bool,
    /// When the document was fetched (it is refreshed after `discovery_ttl_secs`).
    fetched: Instant,
}

/// The secrets of one authorization request, kept in the pending-login cookie.
pub(crate) struct AuthRequest {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A login the identity provider vouched for.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedLogin {
    pub identity: Identity,
    pub claims: Claims,
    /// The session the login starts: the ID token's `sid` and the tokens to keep.
    pub session: crate::session::LoginSession,
}

/// One configured OpenID Connect provider, discovered lazily, rediscovered after its TTL
/// (the old document serving while the provider is down), and, after a failed discovery with
/// nothing cached, answering `502` at once for `discovery_retry_secs`.
pub(crate) struct OidcProvider {
    pub id: String,
    pub config: ProviderConfig,
    redirect_uri: RedirectUrl,
    issuer: IssuerUrl,
    validator: IdTokenValidator,
    logout_tokens: LogoutTokenValidator,
    http: HttpClient,
    /// The issuer's key source when its bearer tokens are verified too (one cache for both).
    shared_keys: Option<Arc<KeySource>>,
    discovered: std::sync::RwLock<Option<Arc<Discovered>>>,
    /// The last failed discovery: when, and why.
    failed: std::sync::RwLock<Option<(Instant, String)>>,
    discovering: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.config.issuer())
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    pub(crate) fn new(
        id: String,
        config: ProviderConfig,
        redirect_uri: String,
        http: HttpClient,
    ) -> Result<Self, String> {
        let redirect_uri =
            RedirectUrl::new(redirect_uri).map_err(|e| format!("redirect URI: {e}"))?;
        let issuer =
            IssuerUrl::new(config.issuer().to_owned()).map_err(|e| format!("issuer: {e}"))?;
        let validator = IdTokenValidator::new(&config)?;
        let logout_tokens =
            LogoutTokenValidator::new(issuer.as_str(), config.client_id(), config.clock_skew_secs);
        Ok(Self {
            id,
            config,
            redirect_uri,
            issuer,
            validator,
            logout_tokens,
            http,
            shared_keys: None,
            discovered: std::sync::RwLock::new(None),
            failed: std::sync::RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads login and logout token keys from `keys`, the issuer's bearer key source.
    pub(crate) fn share_keys(&mut self, keys: Arc<KeySource>) {
        self.shared_keys = Some(keys);
    }

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs.max(1))
    }

    /// The provider's discovery: the cached one while younger than `discovery_ttl_secs`, else
    /// a fresh one (the stale one while the provider cannot be reached).
    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        match self.read_discovered() {
            Some(d) if d.fetched.elapsed() < Self::secs(self.config.discovery_ttl_secs) => Ok(d),
            Some(stale) => Ok(self.rediscover(stale).await),
            None => self.discover_first().await,
        }
    }

    /// Refreshes a document past its TTL. The stale one serves while another task refreshes
    /// it, while the last attempt failed less than `discovery_retry_secs` ago, and when this
    /// attempt fails: a provider outage then costs one fetch per retry interval, and logins
    /// go on with what was known.
    async fn rediscover(&self, stale: Arc<Discovered>) -> Arc<Discovered> {
        if self.failed_recently().is_some() {
            return stale;
        }
        let Ok(_one_at_a_time) = self.discovering.try_lock() else {
            return stale;
        };
        match self.read_discovered() {
            Some(d) if !Arc::ptr_eq(&d, &stale) => d,
            _ => self.discover().await.unwrap_or(stale),
        }
    }

    /// The first discovery, one at a time. After a failure, every login answers the same
    /// `502` at once until `discovery_retry_secs` have passed, instead of queueing behind a
    /// fetch of its own.
    async fn discover_first(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(reason) = self.failed_recently() {
            return Err(OidcError::Discovery(reason));
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(d) = self.read_discovered() {
            return Ok(d);
        }
        if let Some(reason) = self.failed_recently() {
            return Err(OidcError::Discovery(reason));
        }
        self.discover().await
    }

    /// Why the last discovery failed, when that was less than `discovery_retry_secs` ago.
    fn failed_recently(&self) -> Option<String> {
        let failed = self.failed.read().unwrap_or_else(|e| e.into_inner());
        failed
            .as_ref()
            .filter(|(at, _)| at.elapsed() < Self::secs(self.config.discovery_retry_secs))
            .map(|(_, reason)| reason.clone())
    }

    /// Fetches the discovery document and the key set, and stores them; a failure is logged
    /// and remembered.
    async fn discover(&self) -> Result<Arc<Discovered>, OidcError> {
        let metadata = match DiscoveryDocument::discover_async(self.issuer.clone(), &self.http)
            .await
        {
            Ok(metadata) => metadata,
            Err(e) => {
                let detail = describe_discovery_error(&e);
                let cached = self.read_discovered().is_some();
                tracing::warn!(provider = %self.id, error = %detail, serving_cached = cached, "OpenID Connect discovery failed");
                *self.failed.write().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), detail.clone()));
                return Err(OidcError::Discovery(detail));
            }
        };
        let discovered = Arc::new(self.build(metadata));
        *self.discovered.write().unwrap_or_else(|e| e.into_inner()) = Some(discovered.clone());
        *self.failed.write().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!(provider = %self.id, "OpenID Connect provider discovered");
        Ok(discovered)
    }

    fn build(&self, metadata: DiscoveryDocument) -> Discovered {
        let sends_iss = metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let frontchannel_session = metadata
            .additional_metadata()
            .frontchannel_logout_session_supported;
        let jwks_url = metadata.jwks_uri().clone();
        let initial = metadata.jwks().clone();
        let mut client = DiscoveredClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id().to_owned()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        if self.config.token_auth == TokenAuth::Post {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Discovered {
            client,
            jwks: match &self.shared_keys {
                Some(source) => {
                    LoginKeys::Shared(SharedKeys::new(source.clone(), &jwks_url, &initial))
                }
                None => LoginKeys::Own(JwksCache::new(
                    jwks_url,
                    initial,
                    Duration::from_secs(self.config.jwks_min_refetch_secs),
                    Self::secs(self.config.jwks_ttl_secs),
                )),
            },
            sends_iss,
            end_session,
            frontchannel_session,
            fetched: Instant::now(),
        }
    }

    fn read_discovered(&self) -> Option<Arc<Discovered>> {
        self.discovered
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The redirect URI registered for this provider.
    pub(crate) fn redirect_uri(&self) -> &str {
        self.redirect_uri.as_str()
    }

    /// Builds the authorization request: fresh state, nonce and PKCE S256 challenge.
    pub(crate) async fn authorization_request(&self) -> Result<AuthRequest, OidcError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        request = request.set_pkce_challenge(challenge);
        if self.config.response_mode == ResponseMode::FormPost {
            request = request.add_extra_param("response_mode", "form_post");
        }
        let (url, state, nonce) = request.url();
        Ok(AuthRequest {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Checks the RFC 9207 `iss` parameter of an authorization response: when present it
    /// must be the issuer; when discovery says the provider sends it, it must be present
    /// (§2.4), or the response may come from another provider (a mix-up attack).
    pub(crate) async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), OidcError> {
        match iss {
            Some(iss) if iss != self.issuer.as_str() => Err(OidcError::IssuerMismatch),
            Some(_) => Ok(()),
            None if self.discovered().await?.sends_iss => Err(OidcError::MissingIssuer),
            None => Ok(()),
        }
    }

    /// Exchanges the code, validates the ID token, and merges userinfo when configured.
    pub(crate) async fn finish(
        &self,
        code: String,
        nonce: String,
        pkce_verifier: String,
    ) -> Result<VerifiedLogin, OidcError> {
        let d = self.discovered().await?;
        let response = d
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Discovery(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(token_request_error)?;
        check_token_type(response.token_type())?;
        let raw = match &response.id_token {
            None | Some(Value::Null) => return Err(OidcError::NoIdToken),
            Some(Value::String(raw)) => raw,
            Some(_) => return Err(IdTokenError::Malformed.into()),
        };
        let mut claims = self
            .verify_id_token(&d, raw, ExpectedNonce::Exactly(&nonce))
            .await?;
        // The IdP's session, from the verified ID token itself (never from userinfo).
        let idp_session = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        let mut tokens = crate::session::SessionTokens {
            id_token: Some(raw.clone()),
            ..Default::default()
        };
        if self.config.store_tokens {
            let now = crate::store::now_unix();
            tokens.access_token = Some(response.access_token().secret().clone());
            tokens.refresh_token = response.refresh_token().map(|t| t.secret().clone());
            tokens.expires_at = response.expires_in.map(|e| expiry(now, e));
            tokens.obtained_at = Some(now);
            tokens.nonce = Some(nonce.clone());
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(IdTokenError::Malformed)?
            .to_owned();
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(IdTokenError::Malformed)?
            .to_owned();
        self.add_userinfo(&d, &mut claims, response.access_token(), &subject)
            .await?;
        Ok(VerifiedLogin {
            identity: Identity::new(self.id.clone(), issuer, subject),
            claims: Claims(claims),
            session: crate::session::LoginSession {
                idp_session,
                tokens: Some(tokens),
            },
        })
    }

    /// The provider's `end_session_endpoint` (RP-Initiated Logout), from its discovery
    /// document; `None` when it publishes none.
    pub(crate) async fn end_session_endpoint(&self) -> Result<Option<url::Url>, OidcError> {
        Ok(self.discovered().await?.end_session.clone())
    }

    /// Whether the provider's front-channel logout requests carry `iss` and `sid`
    /// (discovery's `frontchannel_logout_session_supported`).
    pub(crate) async fn frontchannel_session_supported(&self) -> Result<bool, OidcError> {
        Ok(self.discovered().await?.frontchannel_session)
    }

    /// The issuer identifier.
    pub(crate) fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// Validates a back-channel logout token (module `logout_token`): signature with the
    /// provider's key cache (an unknown `kid` refetches it once, rate limited), claims, and
    /// last that the replay guard has not recorded its `jti`. Nothing is recorded here: the
    /// caller records the `jti` ([`record_logout_token`](Self::record_logout_token)) once the
    /// sessions have ended, so a token whose logout failed can be retried.
    pub(crate) async fn verify_logout_token(
        &self,
        raw: &str,
        replay: &dyn crate::replay::ErasedGuard,
    ) -> Result<LogoutRequest, LogoutTokenError> {
        let d = self
            .discovered()
            .await
            .map_err(|err| {
                // The detail (URLs, transport errors) is for the log, not for the caller, who
                // is not authenticated yet.
                tracing::error!(provider = %self.id, error = %err, "back-channel logout: the provider's discovery failed");
                LogoutTokenError::KeysUnavailable(
                    "the provider's discovery document could not be loaded".into(),
                )
            })?;
        let now = crate::store::now_unix();
        let keys = d.jwks.current(&self.http).await;
        let request = match self.logout_tokens.check(raw, &keys, now) {
            Err(LogoutTokenError::UnknownKey) => match d.jwks.refetch(&self.http, &keys).await {
                Refetch::Fetched => {
                    let keys = d.jwks.current(&self.http).await;
                    self.logout_tokens.check(raw, &keys, now)?
                }
                Refetch::TooSoon => return Err(LogoutTokenError::UnknownKey),
                Refetch::Failed => {
                    return Err(LogoutTokenError::KeysUnavailable(
                        "the logout token names an unknown key and the key set could not be refetched"
                            .into(),
                    ));
                }
            },
            other => other?,
        };
        match replay.was_used(&self.logout_jti_key(&request)).await {
            Ok(false) => Ok(request),
            Ok(true) => Err(LogoutTokenError::Replayed),
            Err(err) => {
                tracing::error!(provider = %self.id, error = %err, "the replay guard could not check a logout token's jti");
                Err(LogoutTokenError::ReplayGuardUnavailable)
            }
        }
    }

    /// Records the `jti` of a logout token whose sessions have ended (so a retry after a
    /// failure to end them was still possible): [`LogoutTokenError::Replayed`] when another
    /// delivery of it recorded it first.
    pub(crate) async fn record_logout_token(
        &self,
        request: &LogoutRequest,
        replay: &dyn crate::replay::ErasedGuard,
    ) -> Result<(), LogoutTokenError> {
        let ttl =
            Duration::from_secs((request.replay_until - crate::store::now_unix()).max(1) as u64);
        match replay.first_use(&self.logout_jti_key(request), ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(LogoutTokenError::Replayed),
            Err(err) => {
                tracing::error!(provider = %self.id, error = %err, "the replay guard could not record a logout token's jti");
                Err(LogoutTokenError::ReplayGuardUnavailable)
            }
        }
    }

    fn logout_jti_key(&self, request: &LogoutRequest) -> String {
        format!("logout-jti:{}:{}", self.id, request.jti)
    }

    /// With `userinfo` configured, adds the userinfo claims (its `sub` must be `subject`)
    /// that `claims` lack.
    async fn add_userinfo(
        &self,
        d: &Discovered,
        claims: &mut Map<String, Value>,
        access_token: &openidconnect::AccessToken,
        subject: &str,
    ) -> Result<(), OidcError> {
        if self.config.userinfo {
            let extra = self.userinfo(d, access_token.clone(), subject).await?;
            for (name, value) in extra {
                claims.entry(name).or_insert(value);
            }
        }
        Ok(())
    }

    /// Validates an ID token; on an unknown key, refetches the issuer's keys once (rate
    /// limited) and tries again.
    async fn verify_id_token(
        &self,
        d: &Discovered,
        raw: &str,
        nonce: ExpectedNonce<'_>,
    ) -> Result<Map<String, Value>, OidcError> {
        let token = FullIdToken::from_str(raw).map_err(|_| IdTokenError::Malformed)?;
        let keys = d.jwks.current(&self.http).await;
        match self.validator.check(&token, &keys, nonce) {
            Err(IdTokenError::UnknownKey) => match d.jwks.refetch(&self.http, &keys).await {
                Refetch::Fetched => {
                    let keys = d.jwks.current(&self.http).await;
                    Ok(self.validator.check(&token, &keys, nonce)?)
                }
                Refetch::TooSoon => Err(IdTokenError::UnknownKey.into()),
                // The token may be genuine, signed with a key we cannot fetch: the IdP's
                // failure (502), not the token's.
                Refetch::Failed => Err(OidcError::Discovery(
                    "the ID token names an unknown key and the key set could not be refetched"
                        .into(),
                )),
            },
            other => Ok(other?),
        }
    }

    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: openidconnect::AccessToken,
        subject: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let request = d
            .client
            .user_info(
                access_token,
                Some(openidconnect::SubjectIdentifier::new(subject.to_owned())),
            )
            .map_err(|_| OidcError::UserInfo("the provider has no userinfo endpoint".into()))?;
        let info: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                UserInfoError::ClaimsVerification(ClaimsVerificationError::InvalidSubject(_)) => {
                    OidcError::UserInfoSubject
                }
                other => OidcError::UserInfo(other.to_string()),
            })?;
        match serde_json::to_value(info) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(OidcError::UserInfo("unusable claims".into())),
        }
    }
}

/// The signing keys an ID token is checked against (a JWKS document).
#[derive(Debug, Clone)]
pub struct IdTokenKeys(CoreJsonWebKeySet);

impl IdTokenKeys {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json).map(Self)
    }
}

/// Validates ID tokens for one provider exactly as the layer's callback does: signature
/// (asymmetric algorithms only), `iss`, `aud` (plus trusted audiences), `azp`, `exp`, `iat`
/// and `nbf` with the configured skew, and `nonce`. The layer adds key refetching around it; this type
/// is public for custom flows and for measuring its cost.
///
/// ```
/// use jit_provision::ProviderConfig;
/// use jit_provision::oidc::{IdTokenError, IdTokenKeys, IdTokenValidator};
/// let validator = IdTokenValidator::new(&ProviderConfig::new("https://idp.example.com", "app")).unwrap();
/// let keys = IdTokenKeys::from_json(br#"{"keys": []}"#).unwrap();
/// assert_eq!(validator.validate("not-a-token", &keys, "n").unwrap_err(), IdTokenError::Malformed);
/// ```
#[derive(Clone)]
pub struct IdTokenValidator {
    client_id: ClientId,
    issuer: IssuerUrl,
    skew: chrono::Duration,
    trusted: Arc<Vec<String>>,
}

impl std::fmt::Debug for IdTokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenValidator")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

impl IdTokenValidator {
    /// A validator for tokens issued to `config.client_id` by `config.issuer`.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        Ok(Self {
            client_id: ClientId::new(config.client_id().to_owned()),
            issuer: IssuerUrl::new(config.issuer().to_owned())
                .map_err(|e| format!("issuer: {e}"))?,
            skew: chrono::Duration::seconds(config.clock_skew_secs as i64),
            trusted: Arc::new(config.trusted_audiences.clone()),
        })
    }

    /// Validates a compact-serialized ID token; returns all its claims.
    pub fn validate(
        &self,
        raw: &str,
        keys: &IdTokenKeys,
        nonce: &str,
    ) -> Result<Map<String, Value>, IdTokenError> {
        let token = FullIdToken::from_str(raw).map_err(|_| IdTokenError::Malformed)?;
        self.check(&token, &keys.0, ExpectedNonce::Exactly(nonce))
    }

    fn check(
        &self,
        token: &FullIdToken,
        keys: &CoreJsonWebKeySet,
        nonce: ExpectedNonce<'_>,
    ) -> Result<Map<String, Value>, IdTokenError> {
        let skew = self.skew;
        let trusted = self.trusted.clone();
        let verifier = CoreIdTokenVerifier::new_public_client(
            self.client_id.clone(),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(ALLOWED_ALGS)
        .set_other_audience_verifier_fn(move |aud| trusted.iter().any(|t| t == aud.as_str()))
        .set_time_fn(move || chrono::Utc::now() - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > chrono::Utc::now() + skew {
                Err("issued in the future".to_owned())
            } else {
                Ok(())
            }
        });
        let claims = token
            .claims(&verifier, nonce)
            .map_err(classify_claims_error)?;
        // OpenID Connect Core 3.1.3.7 steps 4 and 5, which openidconnect leaves to us.
        let client_id = self.client_id.as_str();
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != client_id => return Err(IdTokenError::AuthorizedParty),
            None if claims.audiences().len() > 1 => return Err(IdTokenError::AuthorizedParty),
            _ => {}
        }
        check_not_before(claims.additional_claims().rest.get("nbf"), self.skew)?;
        match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(IdTokenError::Malformed),
        }
    }
}

/// The nonce an ID token must carry.
#[derive(Debug, Clone, Copy)]
enum ExpectedNonce<'a> {
    /// The one the login sent.
    Exactly(&'a str),
    /// A token refresh's: none, or the login's (`None`: the login's is not known, so none).
    AbsentOr(Option<&'a str>),
}

impl openidconnect::NonceVerifier for ExpectedNonce<'_> {
    fn verify(self, nonce: Option<&Nonce>) -> Result<(), String> {
        use sha2::{Digest, Sha256};
        // Compared by digest, as openidconnect does: no timing side channel.
        let same = |sent: &str, got: &Nonce| {
            Sha256::digest(sent.as_bytes()) == Sha256::digest(got.secret().as_bytes())
        };
        match (self, nonce) {
            (Self::Exactly(sent), Some(got)) if same(sent, got) => Ok(()),
            (Self::Exactly(_), Some(_)) => Err("nonce mismatch".into()),
            (Self::Exactly(_), None) => Err("missing nonce claim".into()),
            (Self::AbsentOr(_), None) => Ok(()),
            (Self::AbsentOr(Some(sent)), Some(got)) if same(sent, got) => Ok(()),
            (Self::AbsentOr(_), Some(_)) => Err("nonce mismatch".into()),
        }
    }
}

/// The Unix time `expires_in` seconds after `now`.
fn expiry(now: i64, expires_in: u64) -> i64 {
    now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX))
}

/// A failed request to the token endpoint: a refusal of the grant or the client (`401`
/// [`OidcError::TokenRejected`], with the `error` code), else the endpoint's failure (`502`).
fn token_request_error<RE: std::error::Error + 'static>(
    err: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match err {
        RequestTokenError::ServerResponse(r) => match r.error() {
            CoreErrorResponseType::InvalidGrant
            | CoreErrorResponseType::InvalidClient
            | CoreErrorResponseType::UnauthorizedClient => {
                OidcError::TokenRejected(r.error().to_string())
            }
            other => OidcError::TokenEndpoint(other.to_string()),
        },
        RequestTokenError::Request(e) => OidcError::TokenEndpoint(e.to_string()),
        RequestTokenError::Parse(e, _) => {
            OidcError::TokenEndpoint(format!("unparsable token response at {}", e.path()))
        }
        RequestTokenError::Other(e) => OidcError::TokenEndpoint(e),
    }
}

/// RFC 7519 §4.1.5: a token must not be accepted before its `nbf` (a NumericDate, possibly
/// fractional), give or take the skew. openidconnect does not read the claim.
fn check_not_before(nbf: Option<&Value>, skew: chrono::Duration) -> Result<(), IdTokenError> {
    let Some(nbf) = nbf else {
        return Ok(());
    };
    let nbf = nbf.as_f64().ok_or(IdTokenError::Malformed)?;
    let latest = (chrono::Utc::now() + skew).timestamp() as f64;
    if nbf > latest {
        Err(IdTokenError::NotYetValid)
    } else {
        Ok(())
    }
}

/// OpenID Connect Core §3.1.3.3 and RFC 6749 §7.1: the access token must be a Bearer token
/// (any case). Checked before anything in the response is used.
fn check_token_type(token_type: &CoreTokenType) -> Result<(), OidcError> {
    match token_type {
        CoreTokenType::Bearer => Ok(()),
        CoreTokenType::Extension(name) if name.is_empty() => Err(OidcError::InvalidTokenResponse(
            "token_type is missing".into(),
        )),
        other => Err(OidcError::InvalidTokenResponse(format!(
            "token_type is `{}`, not Bearer",
            other.as_ref().chars().take(32).collect::<String>()
        ))),
    }
}

fn classify_claims_error(err: ClaimsVerificationError) -> IdTokenError {
    match err {
        ClaimsVerificationError::Expired(msg) if msg.contains("future") => {
            IdTokenError::IssuedInFuture
        }
        ClaimsVerificationError::Expired(_) => IdTokenError::Expired,
        ClaimsVerificationError::InvalidAudience(_) => IdTokenError::Audience,
        ClaimsVerificationError::InvalidIssuer(_) => IdTokenError::Issuer,
        ClaimsVerificationError::InvalidNonce(_) => IdTokenError::Nonce,
        ClaimsVerificationError::SignatureVerification(sig) => match sig {
            SignatureVerificationError::NoMatchingKey => IdTokenError::UnknownKey,
            SignatureVerificationError::AmbiguousKeyId(_) => IdTokenError::AmbiguousKey,
            SignatureVerificationError::DisallowedAlg(a)
            | SignatureVerificationError::UnsupportedAlg(a) => IdTokenError::DisallowedAlgorithm(a),
            SignatureVerificationError::NoSignature => {
                IdTokenError::DisallowedAlgorithm("none".into())
            }
            SignatureVerificationError::CryptoError(_) => IdTokenError::BadSignature,
            other => IdTokenError::Other(other.to_string()),
        },
        other => IdTokenError::Other(other.to_string()),
    }
}

fn describe_discovery_error<E: std::error::Error>(
    err: &openidconnect::DiscoveryError<E>,
) -> String {
    use openidconnect::DiscoveryError as D;
    match err {
        D::Request(e) => e.to_string(),
        D::Response(status, _, msg) => format!("HTTP {status}: {msg}"),
        D::Parse(e) => format!("unparsable document at {}", e.path()),
        D::Validation(msg) | D::Other(msg) => msg.clone(),
        D::UrlParse(e) => e.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn discovery(extra: Value) -> IssParameterMetadata {
        serde_json::from_value(extra).unwrap()
    }

    #[test]
    fn the_logout_members_are_read_and_a_bad_end_session_endpoint_is_ignored() {
        let meta = discovery(json!({
            "end_session_endpoint": "https://idp.example/logout",
            "frontchannel_logout_session_supported": "true",
        }));
        assert_eq!(
            meta.end_session_endpoint.map(String::from).as_deref(),
            Some("https://idp.example/logout")
        );
        assert!(meta.frontchannel_logout_session_supported);
        for bad in [json!("not a url"), json!("javascript:alert(1)"), json!(42)] {
            let meta = discovery(json!({ "end_session_endpoint": bad }));
            assert!(meta.end_session_endpoint.is_none(), "{bad}");
        }
        let none = discovery(json!({}));
        assert!(none.end_session_endpoint.is_none() && !none.frontchannel_logout_session_supported);
    }

    #[test]
    fn the_rfc_9207_member_reads_booleans_and_their_strings() {
        let supported = |v: Value| {
            discovery(json!({ "authorization_response_iss_parameter_supported": v }))
                .authorization_response_iss_parameter_supported
        };
        assert!(supported(json!(true)));
        assert!(supported(json!("true")));
        assert!(!supported(json!(false)));
        assert!(!supported(json!("false")));
        assert!(!supported(Value::Null));
        assert!(!discovery(json!({})).authorization_response_iss_parameter_supported);
        let odd = json!({ "authorization_response_iss_parameter_supported": 1 });
        assert!(serde_json::from_value::<IssParameterMetadata>(odd).is_err());
    }

    fn token_response(extra: Value) -> CodeTokenResponse {
        let mut response =
            json!({ "access_token": "at", "expires_in": 300, "scope": "openid email" });
        response
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(response).unwrap()
    }

    #[test]
    fn token_type_is_bearer_in_any_case_and_nothing_else() {
        for bearer in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let r = token_response(json!({ "token_type": bearer }));
            assert_eq!(r.token_type(), &CoreTokenType::Bearer);
            assert!(check_token_type(r.token_type()).is_ok());
        }
        for other in [
            json!({ "token_type": "N_A" }),
            json!({ "token_type": "MAC" }),
            json!({}),
        ] {
            let r = token_response(other);
            let err = check_token_type(r.token_type()).unwrap_err();
            assert_eq!(err.code(), "invalid_token_response");
            assert_eq!(err.status(), ::http::StatusCode::BAD_GATEWAY);
        }
        let r = token_response(json!({ "token_type": "Bearer" }));
        assert_eq!(r.expires_in(), Some(Duration::from_secs(300)));
        assert_eq!(r.scopes().unwrap().len(), 2);
    }

    #[test]
    fn the_id_token_member_is_kept_as_sent() {
        for id_token in [json!("not a jwt"), json!(42), json!({ "alg": "none" })] {
            let r = token_response(json!({ "token_type": "Bearer", "id_token": id_token }));
            assert_eq!(r.id_token.as_ref(), Some(&id_token));
        }
        assert!(
            token_response(json!({ "token_type": "Bearer" }))
                .id_token
                .is_none()
        );
    }

    #[test]
    fn nbf_is_refused_beyond_the_skew_only() {
        let skew = chrono::Duration::seconds(60);
        let now = chrono::Utc::now().timestamp();
        assert_eq!(check_not_before(None, skew), Ok(()));
        assert_eq!(check_not_before(Some(&json!(now - 3600)), skew), Ok(()));
        assert_eq!(check_not_before(Some(&json!(now + 30)), skew), Ok(()));
        assert_eq!(
            check_not_before(Some(&json!(now + 3600)), skew),
            Err(IdTokenError::NotYetValid)
        );
        assert_eq!(
            check_not_before(Some(&json!(now as f64 + 120.5)), skew),
            Err(IdTokenError::NotYetValid)
        );
        assert_eq!(
            check_not_before(Some(&json!("soon")), skew),
            Err(IdTokenError::Malformed)
        );
    }
}
