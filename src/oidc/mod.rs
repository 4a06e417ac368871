//! OpenID Connect relying party: discovery, the authorization request (state, nonce, PKCE
//! S256), the code exchange, and ID token validation with the `openidconnect` crate.

mod http;
mod jwks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreGenderClaim,
    CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    Scope, SignatureVerificationError, TokenResponse, UserInfoError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub(crate) use self::http::HttpClient;
pub use self::http::HttpError;
use self::jwks::{JwksCache, Refetch};
use crate::config::{ProviderConfig, ResponseMode, TokenAuth};
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
    /// `nonce` is missing or differs from the one sent.
    #[error("the ID token's nonce does not match the login")]
    Nonce,
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
    /// The token endpoint refused the code (`invalid_grant`, ...): `401`.
    #[error("the identity provider refused the authorization code: {0}")]
    TokenRejected(String),
    /// The token endpoint could not be reached or answered nonsense: `502`.
    #[error("the token endpoint failed: {0}")]
    TokenEndpoint(String),
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
        use ::http::StatusCode;
        match self {
            Self::Discovery(_) | Self::TokenEndpoint(_) | Self::NoIdToken | Self::UserInfo(_) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Authorization { .. }
            | Self::IssuerMismatch
            | Self::TokenRejected(_)
            | Self::IdToken(_)
            | Self::UserInfoSubject => StatusCode::UNAUTHORIZED,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Discovery(_) => "idp_discovery_failed",
            Self::Authorization { .. } => "idp_refused_login",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::TokenRejected(_) => "code_rejected",
            Self::TokenEndpoint(_) => "token_endpoint_failed",
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

type DiscoveredClient = CoreClient<
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

struct Discovered {
    client: DiscoveredClient,
    jwks: JwksCache,
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
}

/// One configured OpenID Connect provider, discovered lazily and rediscovered after a failure.
pub(crate) struct OidcProvider {
    pub id: String,
    pub config: ProviderConfig,
    redirect_uri: RedirectUrl,
    issuer: IssuerUrl,
    validator: IdTokenValidator,
    http: HttpClient,
    discovered: std::sync::RwLock<Option<Arc<Discovered>>>,
    discovering: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    pub(crate) fn new(
        id: String,
        config: ProviderConfig,
        redirect_uri: String,
        http_timeout: Duration,
    ) -> Result<Self, String> {
        let redirect_uri =
            RedirectUrl::new(redirect_uri).map_err(|e| format!("redirect URI: {e}"))?;
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| format!("issuer: {e}"))?;
        let validator = IdTokenValidator::new(&config)?;
        Ok(Self {
            id,
            config,
            redirect_uri,
            issuer,
            validator,
            http: HttpClient::new(http_timeout),
            discovered: std::sync::RwLock::new(None),
            discovering: tokio::sync::Mutex::new(()),
        })
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.read_discovered() {
            return Ok(d);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(d) = self.read_discovered() {
            return Ok(d);
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                let detail = describe_discovery_error(&e);
                tracing::warn!(provider = %self.id, error = %detail, "OpenID Connect discovery failed");
                OidcError::Discovery(detail)
            })?;
        let jwks_url = metadata.jwks_uri().clone();
        let initial = metadata.jwks().clone();
        let mut client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        if self.config.token_auth == TokenAuth::Post {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        let discovered = Arc::new(Discovered {
            client,
            jwks: JwksCache::new(
                jwks_url,
                initial,
                Duration::from_secs(self.config.jwks_min_refetch_secs),
            ),
        });
        *self.discovered.write().unwrap_or_else(|e| e.into_inner()) = Some(discovered.clone());
        tracing::info!(provider = %self.id, "OpenID Connect provider discovered");
        Ok(discovered)
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

    /// Checks the RFC 9207 `iss` parameter of an authorization response, when present.
    pub(crate) fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), OidcError> {
        match iss {
            Some(iss) if iss != self.issuer.as_str() => Err(OidcError::IssuerMismatch),
            _ => Ok(()),
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
            .map_err(|e| match e {
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
            })?;
        let raw = response.id_token().ok_or(OidcError::NoIdToken)?.to_string();
        let mut claims = self.verify_id_token(&d, &raw, &nonce).await?;
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
        if self.config.userinfo {
            let extra = self
                .userinfo(&d, response.access_token().clone(), &subject)
                .await?;
            for (name, value) in extra {
                claims.entry(name).or_insert(value);
            }
        }
        Ok(VerifiedLogin {
            identity: Identity::new(self.id.clone(), issuer, subject),
            claims: Claims(claims),
        })
    }

    /// Validates an ID token; on an unknown key, refetches the issuer's keys once (rate
    /// limited) and tries again.
    async fn verify_id_token(
        &self,
        d: &Discovered,
        raw: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let token = FullIdToken::from_str(raw).map_err(|_| IdTokenError::Malformed)?;
        let nonce = Nonce::new(nonce.to_owned());
        let keys = d.jwks.current();
        match self.validator.check(&token, &keys, &nonce) {
            Err(IdTokenError::UnknownKey) => match d.jwks.refetch(&self.http, &keys).await {
                Refetch::Fetched => Ok(self.validator.check(&token, &d.jwks.current(), &nonce)?),
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
/// (asymmetric algorithms only), `iss`, `aud` (plus trusted audiences), `azp`, `exp` and `iat`
/// with the configured skew, and `nonce`. The layer adds key refetching around it; this type
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
            client_id: ClientId::new(config.client_id.clone()),
            issuer: IssuerUrl::new(config.issuer.clone()).map_err(|e| format!("issuer: {e}"))?,
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
        self.check(&token, &keys.0, &Nonce::new(nonce.to_owned()))
    }

    fn check(
        &self,
        token: &FullIdToken,
        keys: &CoreJsonWebKeySet,
        nonce: &Nonce,
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
        match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(IdTokenError::Malformed),
        }
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
