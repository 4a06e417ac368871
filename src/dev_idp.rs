//! A small OpenID Connect identity provider for development, demos and tests (feature
//! `dev-idp`, off by default). **Never use it in production**: it logs in whoever asks.
//!
//! It serves discovery, a JWKS, an authorization endpoint with a login page where you pick a
//! preset user or type one (subject, username, email, name, groups), a token endpoint
//! (authorization code with PKCE S256, single-use codes) and userinfo. It signs ES256 with a
//! P-256 key generated at start (in well under a millisecond, even in an unoptimized debug
//! build; [`DevKeyType::Rs256`] signs RS256 with an RSA key, which takes seconds to generate
//! there), can rotate keys, lets tests rewrite every ID token it issues
//! ([`DevIdp::on_id_token`]) and every token response ([`DevIdp::on_token_response`]) to
//! exercise each validation failure, can leave out the RFC 9207 `iss` parameter it advertises
//! ([`DevIdp::send_iss_parameter`]), and can make its discovery document, token endpoint or key
//! set slow or failing ([`DevIdp::set_discovery_fault`], [`DevIdp::set_token_fault`],
//! [`DevIdp::set_jwks_fault`]), and its userinfo endpoint too ([`DevIdp::set_userinfo_fault`]). It keeps no state per login beyond the authorization codes
//! waiting for their exchange (60 s at most) and the IdP sessions (`sid`) of the ID tokens it
//! issued; access tokens are self-contained. Every login is a new IdP session with a random
//! `sid`, unless the user's claims carry one (a string: that `sid`; `null`: none at all).
//!
//! Logout: discovery names an `end_session_endpoint` (`{issuer}/end_session`, RP-Initiated
//! Logout 1.0) that ends the IdP session of its `id_token_hint` and sends the browser back
//! to a registered [`post_logout_redirect_uri`](DevClient::post_logout_redirect_uri) with
//! `state`; [`DevIdp::logout_user`] (or `POST {issuer}/admin/logout` with `sub=...`) ends a
//! user's IdP sessions and posts a back-channel logout token to every client with a
//! [`backchannel_logout_uri`](DevClient::backchannel_logout_uri); and
//! [`DevIdp::sign_logout_token`] forges logout tokens for tests.
//!
//! ```no_run
//! use jit_provision::dev_idp::{DevClient, DevIdp};
//! # async fn run() -> std::io::Result<()> {
//! let idp = DevIdp::builder()
//!     .client(DevClient::new("demo", "demo-secret").redirect_uri("http://127.0.0.1:3000/auth/dev/callback"))
//!     .start("127.0.0.1:0")
//!     .await?;
//! println!("issuer: {}", idp.issuer());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::failure::escape_html;

/// A client (relying party) the development IdP accepts.
#[derive(Debug, Clone)]
pub struct DevClient {
    id: String,
    secret: String,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    backchannel_logout_uri: Option<String>,
}

impl DevClient {
    /// A confidential client with no redirect URI yet.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
        }
    }

    /// Registers a redirect URI (compared exactly).
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    /// Registers a `post_logout_redirect_uri` (RP-Initiated Logout, compared exactly): the
    /// end-session endpoint sends the browser back only to one of these.
    ///
    /// ```
    /// use jit_provision::dev_idp::DevClient;
    /// let client = DevClient::new("demo", "demo-secret")
    ///     .redirect_uri("http://127.0.0.1:3000/auth/dev/callback")
    ///     .post_logout_redirect_uri("http://127.0.0.1:3000/auth/logout/done")
    ///     .backchannel_logout_uri("http://127.0.0.1:3000/auth/dev/backchannel-logout");
    /// # let _ = client;
    /// ```
    pub fn post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uris.push(uri.into());
        self
    }

    /// Registers the client's `backchannel_logout_uri`: [`DevIdp::logout_user`] posts
    /// logout tokens there.
    pub fn backchannel_logout_uri(mut self, uri: impl Into<String>) -> Self {
        self.backchannel_logout_uri = Some(uri.into());
        self
    }
}

/// A user offered on the login page. Its claims are what the ID token carries.
#[derive(Debug, Clone)]
pub struct DevUser {
    /// The `sub` claim.
    pub subject: String,
    /// Every other claim (`preferred_username`, `email`, `groups`, ...).
    pub claims: Map<String, Value>,
}

impl DevUser {
    /// A user with the usual claims.
    ///
    /// ```
    /// let u = jit_provision::dev_idp::DevUser::new("1001", "alice", "alice@example.com", "Alice Example", &["staff"]);
    /// assert_eq!(u.claims["preferred_username"], "alice");
    /// ```
    pub fn new(subject: &str, username: &str, email: &str, name: &str, groups: &[&str]) -> Self {
        let claims = json!({
            "preferred_username": username,
            "email": email,
            "email_verified": true,
            "name": name,
            "groups": groups,
        });
        Self {
            subject: subject.to_owned(),
            claims: claims.as_object().cloned().unwrap_or_default(),
        }
    }
}

/// An ID token about to be signed, handed to the hook of [`DevIdp::on_id_token`].
#[derive(Debug, Clone)]
pub struct IdTokenDraft {
    /// The JOSE header (the current key's `alg`, ES256 or RS256, and its `kid` by default).
    pub header: Header,
    /// The claims.
    pub claims: Map<String, Value>,
    /// How to sign.
    pub signer: Signer,
}

/// How the development IdP signs a drafted ID token.
#[derive(Debug, Clone)]
pub enum Signer {
    /// With the current signing key (the default).
    Current,
    /// With another key (for example one not published in the JWKS, or a HMAC secret).
    Key(EncodingKey),
    /// Not at all: this exact text is the ID token (for `alg: none` and other forgeries).
    Raw(String),
}

type Hook = Arc<dyn Fn(&mut IdTokenDraft) + Send + Sync>;
type TokenResponseHook = Arc<dyn Fn(&mut Map<String, Value>) + Send + Sync>;

/// The kind of key a [`DevIdp`] signs its ID tokens (and [`DevIdp::sign_jwt`] tokens) with.
///
/// ```
/// use jit_provision::dev_idp::{DevIdp, DevKeyType};
/// assert_eq!(DevKeyType::default(), DevKeyType::Es256);
/// let builder = DevIdp::builder().key_type(DevKeyType::Rs256);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DevKeyType {
    /// ECDSA P-256, `alg` ES256 (the default): fast to generate in any build. The layer's
    /// OpenID Connect logins accept it; bearer tokens need `"ES256"` in
    /// [`BearerConfig::algorithms`](crate::config::BearerConfig::algorithms).
    #[default]
    Es256,
    /// RSA 2048, `alg` RS256, what most identity providers sign with. Generating it takes
    /// seconds in an unoptimized build unless `rsa` and `num-bigint-dig` are optimized
    /// (see the README's development IdP notes).
    Rs256,
}

enum KeyPair {
    Ec(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A signing key with its `kid` (also the unit tests' key generator).
pub(crate) struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    pair: KeyPair,
    encoding: EncodingKey,
}

impl SigningKey {
    pub(crate) fn generate(kind: DevKeyType) -> Self {
        let kid = crate::session::random_token(8);
        match kind {
            DevKeyType::Es256 => {
                let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                let der = secret.to_pkcs8_der().expect("encoding a P-256 key");
                Self {
                    kid,
                    algorithm: Algorithm::ES256,
                    encoding: EncodingKey::from_ec_der(der.as_bytes()),
                    pair: KeyPair::Ec(secret),
                }
            }
            DevKeyType::Rs256 => {
                let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                    .expect("generating an RSA key");
                let der = private.to_pkcs1_der().expect("encoding an RSA key");
                Self {
                    kid,
                    algorithm: Algorithm::RS256,
                    encoding: EncodingKey::from_rsa_der(der.as_bytes()),
                    pair: KeyPair::Rsa(Box::new(private)),
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// A JOSE header for this key: its `alg` and `kid`.
    fn header(&self) -> Header {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header
    }

    pub(crate) fn jwk(&self) -> Value {
        match &self.pair {
            KeyPair::Ec(secret) => {
                let point = secret.public_key().to_encoded_point(false);
                let (x, y) = (point.x().expect("an affine point"), point.y());
                json!({
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                    "x": B64.encode(x),
                    "y": B64.encode(y.expect("an uncompressed point")),
                })
            }
            KeyPair::Rsa(private) => {
                let public = private.to_public_key();
                json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                    "n": B64.encode(public.n().to_bytes_be()),
                    "e": B64.encode(public.e().to_bytes_be()),
                })
            }
        }
    }

    fn public_key_pem(&self) -> String {
        let pem = match &self.pair {
            KeyPair::Ec(secret) => secret
                .public_key()
                .to_public_key_pem(p256::pkcs8::LineEnding::LF),
            KeyPair::Rsa(private) => private
                .to_public_key()
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF),
        };
        pem.expect("PEM encoding")
    }
}

/// How long an authorization code may wait for its exchange.
const CODE_TTL: Duration = Duration::from_secs(60);
/// The lifetime of access tokens (`expires_in`).
const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Most codes waiting for their exchange at once.
const MAX_PENDING: u64 = 1_000_000;
/// The lifetime of refresh tokens: a working day.
const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// A way to make the discovery document ([`DevIdp::set_discovery_fault`]), the token endpoint
/// ([`DevIdp::set_token_fault`]), the JWKS ([`DevIdp::set_jwks_fault`]) or userinfo
/// ([`DevIdp::set_userinfo_fault`]) misbehave, to see
/// how an application copes with a slow or failing identity provider.
///
/// ```
/// use std::time::Duration;
/// use jit_provision::dev_idp::EndpointFault;
/// let slow = EndpointFault::Delay(Duration::from_secs(30));
/// assert_ne!(slow, EndpointFault::Unavailable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointFault {
    /// Answer only after this delay (then normally).
    Delay(Duration),
    /// Answer `503 Service Unavailable` with an HTML page, as a proxy in front of a down
    /// server does.
    Unavailable,
    /// Answer `200 OK` with a body that is not JSON.
    Garbage,
}

struct IssuedCode {
    client_id: String,
    /// The IdP session of this login (the ID token's `sid`); `None`: the user's claims say
    /// `"sid": null`, an IdP that names no sessions.
    sid: Option<String>,
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: String,
    claims: Map<String, Value>,
    issued: Instant,
}

struct Inner {
    issuer: String,
    clients: Vec<DevClient>,
    users: Vec<DevUser>,
    /// Published keys; the first one signs.
    keys: RwLock<Vec<Arc<SigningKey>>>,
    /// The kind of key generated at start and at each rotation.
    key_type: DevKeyType,
    /// Codes not yet exchanged; they expire after [`CODE_TTL`], so abandoned logins do not
    /// pile up.
    codes: moka::future::Cache<String, Arc<IssuedCode>>,
    /// Refresh tokens not yet used, with the login they continue: each is single use (the
    /// refresh answers a new one: rotation).
    refresh_tokens: moka::future::Cache<String, Arc<IssuedCode>>,
    /// Key of the access tokens: HS256 JWTs carrying the userinfo claims, which only this
    /// IdP reads back, so it keeps no state per token.
    access_token_key: (EncodingKey, jsonwebtoken::DecodingKey),
    hook: RwLock<Option<Hook>>,
    token_response_hook: RwLock<Option<TokenResponseHook>>,
    discovery_fault: RwLock<Option<EndpointFault>>,
    token_fault: RwLock<Option<EndpointFault>>,
    jwks_fault: RwLock<Option<EndpointFault>>,
    userinfo_fault: RwLock<Option<EndpointFault>>,
    /// Discovery says `authorization_response_iss_parameter_supported: true` (RFC 9207).
    advertise_iss: AtomicBool,
    /// Authorization responses carry `iss`.
    send_iss: AtomicBool,
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
    token_requests: AtomicU64,
    userinfo_requests: AtomicU64,
    id_token_ttl: Duration,
    /// The IdP sessions ID tokens were issued for (until logged out).
    sessions: RwLock<Vec<DevSession>>,
    /// Posts logout tokens to the clients.
    http: reqwest::Client,
}

/// An IdP session: a login of `subject` at `client_id`, named `sid` in its ID tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DevSession {
    sid: String,
    subject: String,
    client_id: String,
}

/// Most IdP sessions remembered for back-channel logout (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// A running development identity provider. Dropping it does not stop the server task;
/// call [`DevIdp::shutdown`] for that.
#[derive(Clone)]
pub struct DevIdp {
    inner: Arc<Inner>,
    shutdown: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// Configures a [`DevIdp`].
#[derive(Debug, Default)]
#[must_use]
pub struct DevIdpBuilder {
    clients: Vec<DevClient>,
    users: Vec<DevUser>,
    key_type: DevKeyType,
}

impl DevIdpBuilder {
    /// Registers a client.
    pub fn client(mut self, client: DevClient) -> Self {
        self.clients.push(client);
        self
    }

    /// Offers a preset user on the login page.
    pub fn user(mut self, user: DevUser) -> Self {
        self.users.push(user);
        self
    }

    /// The kind of signing key (default [`DevKeyType::Es256`]); rotations generate the
    /// same kind.
    pub fn key_type(mut self, key_type: DevKeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Binds `addr` (use a loopback address) and serves in a background task.
    pub async fn start(self, addr: &str) -> std::io::Result<DevIdp> {
        if !crate::install_jwt_backend() {
            return Err(std::io::Error::other(crate::ConfigError::NoJwtBackend));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let inner = Arc::new(Inner {
            issuer: format!("http://{local}"),
            clients: self.clients,
            users: self.users,
            keys: RwLock::new(vec![Arc::new(SigningKey::generate(self.key_type))]),
            key_type: self.key_type,
            refresh_tokens: moka::future::Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(REFRESH_TOKEN_TTL)
                .build(),
            codes: moka::future::Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(CODE_TTL)
                .build(),
            access_token_key: {
                let secret = crate::session::random_token(32);
                (
                    EncodingKey::from_secret(secret.as_bytes()),
                    jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
                )
            },
            hook: RwLock::new(None),
            token_response_hook: RwLock::new(None),
            discovery_fault: RwLock::new(None),
            token_fault: RwLock::new(None),
            jwks_fault: RwLock::new(None),
            userinfo_fault: RwLock::new(None),
            advertise_iss: AtomicBool::new(true),
            send_iss: AtomicBool::new(true),
            discovery_fetches: AtomicU64::new(0),
            jwks_fetches: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            userinfo_requests: AtomicU64::new(0),
            id_token_ttl: Duration::from_secs(300),
            sessions: RwLock::new(Vec::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client with these settings always builds"),
        });
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let idp = DevIdp {
            inner: inner.clone(),
            shutdown: shutdown.clone(),
        };
        let app = router(inner);
        tokio::spawn(async move {
            let stop = async move { shutdown.notified().await };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %err, "development IdP stopped");
            }
        });
        Ok(idp)
    }
}

impl DevIdp {
    /// Starts configuring a development IdP.
    pub fn builder() -> DevIdpBuilder {
        DevIdpBuilder::default()
    }

    /// The issuer URL (`http://127.0.0.1:PORT`).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        self.shutdown.notify_one();
    }

    /// Rewrites every ID token issued from now on (tests use it to forge bad tokens).
    pub fn on_id_token(&self, hook: impl Fn(&mut IdTokenDraft) + Send + Sync + 'static) {
        *self.inner.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Removes the ID token hook.
    pub fn clear_id_token_hook(&self) {
        *self.inner.hook.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Rewrites every successful token response from now on, after its ID token is signed
    /// (tests use it for a wrong `token_type`, an `id_token` that is no JWT, ...).
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// idp.on_token_response(|response| {
    ///     response.insert("token_type".into(), "N_A".into());
    /// });
    /// // ... the relying party must refuse the response before using its access token ...
    /// idp.clear_token_response_hook();
    /// # }
    /// ```
    pub fn on_token_response(
        &self,
        hook: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static,
    ) {
        *self
            .inner
            .token_response_hook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Removes the token response hook.
    pub fn clear_token_response_hook(&self) {
        *self
            .inner
            .token_response_hook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether discovery advertises `authorization_response_iss_parameter_supported: true`
    /// (RFC 9207). Default `true`.
    pub fn advertise_iss_parameter(&self, advertise: bool) {
        self.inner.advertise_iss.store(advertise, Ordering::SeqCst);
    }

    /// Whether authorization responses carry the RFC 9207 `iss` parameter. Default `true`;
    /// `false` while [advertising](Self::advertise_iss_parameter) it is the response a
    /// mix-up attacker would forward, which a relying party must refuse.
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// idp.send_iss_parameter(false);
    /// // ... callbacks now lack `iss` although discovery promises it: refused ...
    /// # }
    /// ```
    pub fn send_iss_parameter(&self, send: bool) {
        self.inner.send_iss.store(send, Ordering::SeqCst);
    }

    /// Generates a new signing key. With `keep_old`, the previous keys stay published (a
    /// rollover); without, only the new key is published.
    pub fn rotate_key(&self, keep_old: bool) {
        let key = Arc::new(SigningKey::generate(self.inner.key_type));
        let mut keys = self.inner.keys.write().unwrap_or_else(|e| e.into_inner());
        if !keep_old {
            keys.clear();
        }
        keys.insert(0, key);
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner())[0]
            .kid
            .clone()
    }

    /// The current signing key's public key as PEM (SPKI), e.g. to forge an HS256 token
    /// "signed" with it.
    pub fn public_key_pem(&self) -> String {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner())[0].public_key_pem()
    }

    /// Signs `claims` as a JWT with the current key (ES256, or RS256 with
    /// [`DevKeyType::Rs256`]) (its `kid` in the header) and
    /// `typ: JWT`, the type of an ID token (bearer authentication refuses it unless its
    /// `token_types` accept `JWT`; see [`sign_access_token`](Self::sign_access_token)).
    /// `iss` is not added for you.
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// let token = idp.sign_jwt(serde_json::json!({ "iss": idp.issuer(), "sub": "svc-1",
    ///     "aud": "api", "exp": 4102444800i64 }));
    /// # let _ = token; }
    /// ```
    pub fn sign_jwt(&self, claims: Value) -> String {
        self.sign_typed("JWT", claims)
    }

    /// Signs `claims` like [`sign_jwt`](Self::sign_jwt) but typed `at+jwt`: an RFC 9068
    /// access token for testing bearer authentication.
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// let token = idp.sign_access_token(serde_json::json!({ "iss": idp.issuer(),
    ///     "sub": "svc-1", "aud": "api", "exp": 4102444800i64 }));
    /// # let _ = token; }
    /// ```
    pub fn sign_access_token(&self, claims: Value) -> String {
        self.sign_typed("at+jwt", claims)
    }

    /// Signs `claims` like [`sign_jwt`](Self::sign_jwt) but typed `logout+jwt`: a
    /// back-channel logout token, for testing a relying party's checks with forged ones
    /// (nothing is added to `claims`; [`logout_token_claims`](Self::logout_token_claims)
    /// makes a valid set).
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// let mut claims = idp.logout_token_claims("demo", Some("1001"), None);
    /// claims["nonce"] = "n".into(); // forbidden in a logout token
    /// let token = idp.sign_logout_token(claims);
    /// # let _ = token; }
    /// ```
    pub fn sign_logout_token(&self, claims: Value) -> String {
        self.sign_typed("logout+jwt", claims)
    }

    /// The claims of a valid logout token for `client_id` about `subject` and/or IdP
    /// session `sid`: `iss`, `aud`, `iat`, `exp` (2 minutes), a random `jti` and the
    /// back-channel logout event.
    pub fn logout_token_claims(
        &self,
        client_id: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Value {
        logout_claims(&self.inner, client_id, subject, sid)
    }

    /// The IdP sessions (`sid`s) of `subject` that ID tokens were issued for and that are
    /// not logged out yet, oldest first.
    pub fn sessions_of(&self, subject: &str) -> Vec<String> {
        let sessions = self
            .inner
            .sessions
            .read()
            .unwrap_or_else(|e| e.into_inner());
        sessions
            .iter()
            .filter(|s| s.subject == subject)
            .map(|s| s.sid.clone())
            .collect()
    }

    /// Logs `subject` out at the IdP, as an administrator ending a user's sessions would:
    /// each of its IdP sessions ends, and every client with a
    /// [`backchannel_logout_uri`](DevClient::backchannel_logout_uri) that had one of them
    /// gets a logout token (`sub` and `sid`) posted to it. Returns how many were answered
    /// `200`; the others are logged. Also at `POST {issuer}/admin/logout` with the form field
    /// `sub` (it answers the count as JSON), for demos and browser tests.
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// let delivered = idp.logout_user("1001").await;
    /// # let _ = delivered; }
    /// ```
    pub async fn logout_user(&self, subject: &str) -> usize {
        logout_subject(&self.inner, subject).await
    }

    fn sign_typed(&self, typ: &str, claims: Value) -> String {
        sign_typed(&self.inner, typ, &claims)
    }

    /// The current signing key: its `kid` and private key, to go on signing with it (through
    /// [`Signer::Key`] and the `kid` in the header) after [`rotate_key(false)`](Self::rotate_key)
    /// withdrew it from the JWKS, as with a key the IdP revoked.
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// use jit_provision::dev_idp::Signer;
    /// let (kid, key) = idp.signing_key();
    /// idp.rotate_key(false);
    /// idp.on_id_token(move |draft| {
    ///     draft.header.kid = Some(kid.clone());
    ///     draft.signer = Signer::Key(key.clone());
    /// });
    /// # }
    /// ```
    pub fn signing_key(&self) -> (String, EncodingKey) {
        let key = self.inner.keys.read().unwrap_or_else(|e| e.into_inner())[0].clone();
        (key.kid.clone(), key.encoding.clone())
    }

    /// A fresh RSA key (sign RS256 with it) that the JWKS does not publish, for signing
    /// forged tokens.
    pub fn unpublished_key() -> EncodingKey {
        SigningKey::generate(DevKeyType::Rs256).encoding
    }

    /// How often the JWKS was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How often the discovery document was fetched (answered or failed).
    pub fn discovery_fetches(&self) -> u64 {
        self.inner.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Makes the discovery document misbehave from now on (`None`: behave again).
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// use jit_provision::dev_idp::EndpointFault;
    /// idp.set_discovery_fault(Some(EndpointFault::Unavailable));
    /// // ... a relying party that has not discovered this IdP yet cannot start a login ...
    /// idp.set_discovery_fault(None);
    /// # }
    /// ```
    pub fn set_discovery_fault(&self, fault: Option<EndpointFault>) {
        *self
            .inner
            .discovery_fault
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Makes the token endpoint misbehave from now on (`None`: behave again).
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// use std::time::Duration;
    /// use jit_provision::dev_idp::EndpointFault;
    /// idp.set_token_fault(Some(EndpointFault::Delay(Duration::from_secs(30))));
    /// // ... a login now waits for the layer's IdP timeout and fails with a 502 ...
    /// idp.set_token_fault(None);
    /// # }
    /// ```
    pub fn set_token_fault(&self, fault: Option<EndpointFault>) {
        *self
            .inner
            .token_fault
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Makes the JWKS endpoint misbehave from now on (`None`: behave again).
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// use jit_provision::dev_idp::EndpointFault;
    /// idp.set_jwks_fault(Some(EndpointFault::Unavailable));
    /// // ... tokens signed with a key the layer already has still log in; a new key
    /// // cannot be fetched, so its logins fail with a 502 ...
    /// idp.set_jwks_fault(None);
    /// # }
    /// ```
    pub fn set_jwks_fault(&self, fault: Option<EndpointFault>) {
        *self
            .inner
            .jwks_fault
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Makes the userinfo endpoint misbehave from now on (`None`: behave again).
    ///
    /// ```no_run
    /// # async fn run(idp: jit_provision::dev_idp::DevIdp) {
    /// use jit_provision::dev_idp::EndpointFault;
    /// idp.set_userinfo_fault(Some(EndpointFault::Unavailable));
    /// // ... a login or refresh that reads userinfo now fails with a 502 ...
    /// idp.set_userinfo_fault(None);
    /// # }
    /// ```
    pub fn set_userinfo_fault(&self, fault: Option<EndpointFault>) {
        *self
            .inner
            .userinfo_fault
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// How many token requests were served.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// How many userinfo requests were served (with a valid access token or not).
    pub fn userinfo_requests(&self) -> u64 {
        self.inner.userinfo_requests.load(Ordering::SeqCst)
    }

    /// The form fields a browser posts to `/authorize` to log in as `user` for an
    /// authorization request URL, as a test would submit the login page.
    pub fn approve_form(authorize_url: &str, user: &DevUser) -> Vec<(String, String)> {
        let url = url::Url::parse(authorize_url).expect("an absolute URL");
        let mut fields: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| REQUEST_PARAMS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        fields.push(("sub".into(), user.subject.clone()));
        fields.push((
            "claims".into(),
            Value::Object(user.claims.clone()).to_string(),
        ));
        fields
    }
}

const REQUEST_PARAMS: [&str; 9] = [
    "client_id",
    "code_challenge_method",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "response_mode",
];

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize_page).post(approve))
        .route("/token", axum::routing::post(token))
        .route("/userinfo", get(userinfo))
        .route("/end_session", get(end_session).post(end_session_form))
        .route("/admin/logout", axum::routing::post(admin_logout))
        .with_state(inner)
}

async fn discovery(State(idp): State<Arc<Inner>>) -> Response {
    idp.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(failed) = misbehave(&idp.discovery_fault).await {
        return failed;
    }
    let i = &idp.issuer;
    let alg = match idp.key_type {
        DevKeyType::Es256 => "ES256",
        DevKeyType::Rs256 => "RS256",
    };
    let iss_supported = idp.advertise_iss.load(Ordering::SeqCst);
    axum::Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "authorization_response_iss_parameter_supported": iss_supported,
        "end_session_endpoint": format!("{i}/end_session"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    }))
    .into_response()
}

async fn jwks(State(idp): State<Arc<Inner>>) -> Response {
    idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(failed) = misbehave(&idp.jwks_fault).await {
        return failed;
    }
    let keys: Vec<Value> = idp
        .keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|k| k.jwk())
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, msg.to_owned()).into_response()
}

/// Checks an authorization request: known client, registered redirect URI, code flow, PKCE.
fn check_request(idp: &Inner, params: &HashMap<String, String>) -> Result<(), &'static str> {
    let client_id = params.get("client_id").map(String::as_str).unwrap_or("");
    let Some(client) = idp.clients.iter().find(|c| c.id == client_id) else {
        return Err("unknown client_id");
    };
    let redirect = params.get("redirect_uri").map(String::as_str).unwrap_or("");
    if !client.redirect_uris.iter().any(|r| r == redirect) {
        return Err("redirect_uri is not registered for this client");
    }
    if params.get("response_type").map(String::as_str) != Some("code") {
        return Err("only response_type=code is supported");
    }
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err("PKCE with code_challenge_method=S256 is required");
    }
    if params.get("code_challenge").is_none_or(|c| c.len() < 43) {
        return Err("code_challenge is required");
    }
    Ok(())
}

async fn authorize_page(
    State(idp): State<Arc<Inner>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Err(reason) = check_request(&idp, &params) {
        return bad_request(reason);
    }
    let hidden: String = REQUEST_PARAMS
        .iter()
        .filter_map(|k| params.get(*k).map(|v| (k, v)))
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape_html(v)
            )
        })
        .collect();
    let presets: String = idp
        .users
        .iter()
        .map(|u| {
            let claims = Value::Object(u.claims.clone()).to_string();
            let label = u
                .claims
                .get("preferred_username")
                .and_then(Value::as_str)
                .unwrap_or(&u.subject);
            format!(
                "<form method=\"post\" action=\"/authorize\">{hidden}\
                 <input type=\"hidden\" name=\"sub\" value=\"{}\">\
                 <input type=\"hidden\" name=\"claims\" value=\"{}\">\
                 <button type=\"submit\" data-user=\"{}\">Log in as {}</button></form>",
                escape_html(&u.subject),
                escape_html(&claims),
                escape_html(label),
                escape_html(label),
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Development IdP</title>\
         <style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto}}label{{display:block;margin:.4rem 0}}\
         input[type=text]{{width:100%}}</style></head><body>\
         <h1>Development identity provider</h1>\
         <p>Not for production: this IdP logs in whoever you say.</p>\
         <h2>Pick a user</h2>{presets}\
         <h2>Or type one</h2>\
         <form method=\"post\" action=\"/authorize\" id=\"custom\">{hidden}\
         <label>Subject (sub) <input type=\"text\" name=\"sub\" required></label>\
         <label>Username <input type=\"text\" name=\"preferred_username\"></label>\
         <label>Email <input type=\"text\" name=\"email\"></label>\
         <label>Name <input type=\"text\" name=\"name\"></label>\
         <label>Groups (comma separated) <input type=\"text\" name=\"groups\"></label>\
         <label><input type=\"checkbox\" name=\"email_verified\" value=\"true\"> email verified</label>\
         <button type=\"submit\">Log in</button></form></body></html>"
    ))
    .into_response()
}

/// The login form was submitted: issue a code and send the browser back to the client.
async fn approve(
    State(idp): State<Arc<Inner>>,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    if let Err(reason) = check_request(&idp, &params) {
        return bad_request(reason);
    }
    let Some(subject) = params.get("sub").filter(|s| !s.trim().is_empty()) else {
        return bad_request("sub is required");
    };
    let mut claims = match params.get("claims") {
        Some(json) => match serde_json::from_str::<Map<String, Value>>(json) {
            Ok(map) => map,
            Err(_) => return bad_request("claims must be a JSON object"),
        },
        None => Map::new(),
    };
    for field in ["preferred_username", "email", "name"] {
        if let Some(v) = params.get(field).filter(|v| !v.is_empty()) {
            claims.insert(field.into(), Value::String(v.clone()));
        }
    }
    if let Some(groups) = params.get("groups") {
        let list: Vec<Value> = groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(|g| Value::String(g.to_owned()))
            .collect();
        claims.insert("groups".into(), Value::Array(list));
    }
    if params.contains_key("email") || params.contains_key("email_verified") {
        let verified = params.get("email_verified").map(String::as_str) == Some("true");
        claims.insert("email_verified".into(), Value::Bool(verified));
    }
    claims.insert("sub".into(), Value::String(subject.clone()));
    let code = crate::session::random_token(24);
    let redirect_uri = params["redirect_uri"].clone();
    idp.codes
        .insert(
            code.clone(),
            Arc::new(IssuedCode {
                client_id: params["client_id"].clone(),
                sid: login_sid(&claims),
                redirect_uri: redirect_uri.clone(),
                nonce: params.get("nonce").cloned(),
                code_challenge: params["code_challenge"].clone(),
                claims,
                issued: Instant::now(),
            }),
        )
        .await;
    let mut response_params = vec![("code", code.as_str())];
    if idp.send_iss.load(Ordering::SeqCst) {
        response_params.push(("iss", idp.issuer.as_str()));
    }
    if let Some(state) = params.get("state") {
        response_params.push(("state", state));
    }
    if params.get("response_mode").map(String::as_str) == Some("form_post") {
        let inputs: String = response_params
            .iter()
            .map(|(k, v)| {
                format!(
                    "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                    escape_html(v)
                )
            })
            .collect();
        return Html(format!(
            "<!doctype html><html><body onload=\"document.forms[0].submit()\">\
             <form method=\"post\" action=\"{}\">{inputs}<noscript><button>Continue</button></noscript></form>\
             </body></html>",
            escape_html(&redirect_uri)
        ))
        .into_response();
    }
    let mut target = url::Url::parse(&redirect_uri).expect("registered URIs are absolute");
    target.query_pairs_mut().extend_pairs(response_params);
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    /// The `refresh_token` grant's.
    refresh_token: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Applies the fault set for an endpoint: waits for a delay, or answers for it.
async fn misbehave(fault: &RwLock<Option<EndpointFault>>) -> Option<Response> {
    let fault = *fault.read().unwrap_or_else(|e| e.into_inner());
    match fault? {
        EndpointFault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        EndpointFault::Unavailable => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html("<html><body><h1>503 Service Unavailable</h1></body></html>"),
            )
                .into_response(),
        ),
        EndpointFault::Garbage => Some(
            (
                [(header::CONTENT_TYPE, "application/json")],
                "<html>not json",
            )
                .into_response(),
        ),
    }
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// The client credentials from HTTP Basic or the form.
fn client_credentials(headers: &HeaderMap, form: &TokenRequest) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        return Some((unescape(id), unescape(secret)));
    }
    Some((form.client_id.clone()?, form.client_secret.clone()?))
}

async fn token(
    State(idp): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    idp.token_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(failed) = misbehave(&idp.token_fault).await {
        return failed;
    }
    let Some((client_id, secret)) = client_credentials(&headers, &form) else {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if !idp
        .clients
        .iter()
        .any(|c| c.id == client_id && c.secret == secret)
    {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let issued = match form.grant_type.as_str() {
        "authorization_code" => {
            // Single use: the code is gone whatever happens next.
            let issued = idp.codes.remove(&form.code).await;
            let Some(issued) = issued else {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let challenge = form
                .code_verifier
                .as_deref()
                .map(|v| B64.encode(Sha256::digest(v.as_bytes())));
            if issued.client_id != client_id
                || issued.redirect_uri != form.redirect_uri
                || issued.issued.elapsed() > CODE_TTL
                || challenge.as_deref() != Some(issued.code_challenge.as_str())
            {
                return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            issued
        }
        // Single use too: the answer carries the next one.
        "refresh_token" => match form.refresh_token.as_ref() {
            Some(token) => match idp.refresh_tokens.remove(token).await {
                Some(issued) if issued.client_id == client_id => issued,
                _ => return token_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            },
            None => return token_error(StatusCode::BAD_REQUEST, "invalid_request"),
        },
        _ => return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    };
    let now = crate::store::now_unix();
    let mut claims = issued.claims.clone();
    claims.insert("iss".into(), json!(idp.issuer));
    claims.insert("aud".into(), json!(client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + idp.id_token_ttl.as_secs() as i64));
    if let Some(nonce) = &issued.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    claims.remove("sid");
    if let Some(sid) = &issued.sid {
        claims.insert("sid".into(), json!(sid));
        if let Some(subject) = issued.claims.get("sub").and_then(Value::as_str) {
            remember_session(&idp, sid, subject, &client_id);
        }
    }
    let id_token = match sign_id_token(&idp, claims) {
        Ok(t) => t,
        Err(_) => return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    let access_token = match jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &AccessToken {
            exp: now + ACCESS_TOKEN_TTL.as_secs() as i64,
            claims: issued.claims.clone(),
        },
        &idp.access_token_key.0,
    ) {
        Ok(t) => t,
        Err(_) => return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    let mut response = Map::new();
    response.insert("access_token".into(), json!(access_token));
    response.insert("token_type".into(), json!("Bearer"));
    response.insert("expires_in".into(), json!(ACCESS_TOKEN_TTL.as_secs()));
    response.insert("id_token".into(), json!(id_token));
    let refresh_token = crate::session::random_token(32);
    idp.refresh_tokens
        .insert(refresh_token.clone(), issued.clone())
        .await;
    response.insert("refresh_token".into(), json!(refresh_token));
    let hook = idp
        .token_response_hook
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(hook) = hook {
        hook(&mut response);
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(Value::Object(response)),
    )
        .into_response()
}

/// What an access token carries (only this IdP reads it).
#[derive(serde::Serialize, Deserialize)]
struct AccessToken {
    exp: i64,
    claims: Map<String, Value>,
}

fn sign_id_token(
    idp: &Inner,
    claims: Map<String, Value>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let key = idp.keys.read().unwrap_or_else(|e| e.into_inner())[0].clone();
    let header = key.header();
    let mut draft = IdTokenDraft {
        header,
        claims,
        signer: Signer::Current,
    };
    let hook = idp.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(hook) = hook {
        hook(&mut draft);
    }
    match draft.signer {
        Signer::Current => jsonwebtoken::encode(&draft.header, &draft.claims, &key.encoding),
        Signer::Key(other) => jsonwebtoken::encode(&draft.header, &draft.claims, &other),
        Signer::Raw(text) => Ok(text),
    }
}

async fn userinfo(State(idp): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    idp.userinfo_requests.fetch_add(1, Ordering::SeqCst);
    if let Some(failed) = misbehave(&idp.userinfo_fault).await {
        return failed;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let claims = token.and_then(|t| {
        jsonwebtoken::decode::<AccessToken>(t, &idp.access_token_key.1, &validation).ok()
    });
    match claims {
        Some(token) => axum::Json(token.claims.claims).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response(),
    }
}

/// Signs `claims` as a JWT of type `typ` with the current key (its `kid` in the header).
fn sign_typed(idp: &Inner, typ: &str, claims: &Value) -> String {
    let key = idp.keys.read().unwrap_or_else(|e| e.into_inner())[0].clone();
    let mut header = key.header();
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("signing with the IdP's key")
}

/// The IdP session of a login: the `sid` of the user's claims when it is a string (tests pick
/// one), none when it is `null`, else a random one.
fn login_sid(claims: &Map<String, Value>) -> Option<String> {
    match claims.get("sid") {
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(Value::Null) => None,
        _ => Some(crate::session::random_token(16)),
    }
}

/// Records an IdP session for back-channel logout (once per `sid`).
fn remember_session(idp: &Inner, sid: &str, subject: &str, client_id: &str) {
    let mut sessions = idp.sessions.write().unwrap_or_else(|e| e.into_inner());
    if sessions.iter().any(|s| s.sid == sid) {
        return;
    }
    if sessions.len() >= MAX_SESSIONS {
        sessions.remove(0);
    }
    sessions.push(DevSession {
        sid: sid.to_owned(),
        subject: subject.to_owned(),
        client_id: client_id.to_owned(),
    });
}

fn logout_claims(idp: &Inner, client_id: &str, subject: Option<&str>, sid: Option<&str>) -> Value {
    let now = crate::store::now_unix();
    let mut claims = json!({
        "iss": idp.issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 120,
        "jti": crate::session::random_token(16),
        "events": { crate::oidc::BACKCHANNEL_LOGOUT_EVENT: {} },
    });
    if let Some(subject) = subject {
        claims["sub"] = json!(subject);
    }
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    claims
}

/// Ends every IdP session of `subject` and posts a logout token for each to its client.
async fn logout_subject(idp: &Inner, subject: &str) -> usize {
    let ended: Vec<DevSession> = {
        let mut sessions = idp.sessions.write().unwrap_or_else(|e| e.into_inner());
        let (ended, kept) = sessions.drain(..).partition(|s| s.subject == subject);
        *sessions = kept;
        ended
    };
    let mut delivered = 0;
    for session in ended {
        let Some(uri) = idp
            .clients
            .iter()
            .find(|c| c.id == session.client_id)
            .and_then(|c| c.backchannel_logout_uri.clone())
        else {
            continue;
        };
        let claims = logout_claims(idp, &session.client_id, Some(subject), Some(&session.sid));
        let token = sign_typed(idp, "logout+jwt", &claims);
        match idp
            .http
            .post(&uri)
            .form(&[("logout_token", token)])
            .send()
            .await
        {
            Ok(response) if response.status() == StatusCode::OK => delivered += 1,
            Ok(response) => {
                tracing::warn!(client = %session.client_id, status = %response.status(), "the client refused the logout token");
            }
            Err(err) => {
                tracing::warn!(client = %session.client_id, error = %err.without_url(), "could not deliver the logout token");
            }
        }
    }
    delivered
}

#[derive(Deserialize)]
struct AdminLogout {
    sub: String,
}

async fn admin_logout(State(idp): State<Arc<Inner>>, Form(form): Form<AdminLogout>) -> Response {
    let delivered = logout_subject(&idp, &form.sub).await;
    axum::Json(json!({ "delivered": delivered })).into_response()
}

async fn end_session(
    State(idp): State<Arc<Inner>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    end_session_with(&idp, &params)
}

async fn end_session_form(
    State(idp): State<Arc<Inner>>,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    end_session_with(&idp, &params)
}

/// RP-Initiated Logout 1.0 §2–3: the IdP session named by the `id_token_hint` (an ID token
/// this IdP signed, possibly expired) ends; the browser goes back to a registered
/// `post_logout_redirect_uri` with `state`, or sees a "logged out" page.
fn end_session_with(idp: &Inner, params: &HashMap<String, String>) -> Response {
    let hint = match params.get("id_token_hint") {
        Some(token) => match verify_own_id_token(idp, token) {
            Some(claims) => Some(claims),
            None => return bad_request("id_token_hint is not an ID token of this IdP"),
        },
        None => None,
    };
    let hint_client = hint
        .as_ref()
        .and_then(|c| c.get("aud"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let client_id = params.get("client_id").cloned().or(hint_client.clone());
    if let (Some(given), Some(hinted)) = (params.get("client_id"), &hint_client)
        && given != hinted
    {
        return bad_request("client_id does not match the id_token_hint");
    }
    let redirect = match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let Some(client) = client_id
                .as_deref()
                .and_then(|id| idp.clients.iter().find(|c| c.id == id))
            else {
                return bad_request("post_logout_redirect_uri needs a client_id or id_token_hint");
            };
            if !client.post_logout_redirect_uris.iter().any(|r| r == uri) {
                return bad_request("post_logout_redirect_uri is not registered for this client");
            }
            Some(uri.clone())
        }
        None => None,
    };
    if let Some(sid) = hint
        .as_ref()
        .and_then(|c| c.get("sid"))
        .and_then(Value::as_str)
    {
        let mut sessions = idp.sessions.write().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|s| s.sid != sid);
    }
    match redirect {
        Some(uri) => {
            let mut target = url::Url::parse(&uri).expect("registered URIs are absolute");
            if let Some(state) = params.get("state") {
                target.query_pairs_mut().append_pair("state", state);
            }
            Redirect::to(target.as_str()).into_response()
        }
        None => Html(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Logged out</title></head>\
             <body><h1>You are logged out of the development IdP</h1></body></html>",
        )
        .into_response(),
    }
}

/// The claims of an ID token this IdP signed with one of its published keys (expiry not
/// checked: an `id_token_hint` may have expired).
fn verify_own_id_token(idp: &Inner, token: &str) -> Option<Map<String, Value>> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let key = idp
        .keys
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|k| k.kid == kid)?
        .clone();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk()).ok()?;
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
    let mut validation = jsonwebtoken::Validation::new(key.algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[&idp.issuer]);
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
        .ok()
        .map(|d| d.claims)
}
