//! Serde-deserializable configuration, so an application can load it from TOML, JSON or the
//! environment; [`JitLayerBuilder`](crate::JitLayerBuilder) builds the same thing in code.
//!
//! ```
//! # #[cfg(feature = "dev-idp")] {
//! let config: jit_provision::JitConfig = serde_json::from_value(serde_json::json!({
//!     "public_url": "https://app.example.com",
//!     "providers": {
//!         "corp": {
//!             "issuer": "https://login.example.com",
//!             "client_id": "app",
//!             "client_secret": "s3cret",
//!             "mapping": { "groups": { "claim": "groups" } }
//!         }
//!     }
//! })).unwrap();
//! assert_eq!(config.path_prefix, "/auth");
//! assert_eq!(config.providers["corp"].mode, jit_provision::config::ProvisioningMode::CreateAndUpdate);
//! # }
//! ```
//!
//! # Durations
//!
//! Every duration of the configuration is a whole number of seconds, in a key ending in
//! `_secs` (`session.ttl_secs`, `idp_timeout_secs`, ...). The builder's setters for the same
//! settings take a [`Duration`](std::time::Duration): the two time limits
//! ([`idp_timeout`](crate::JitLayerBuilder::idp_timeout),
//! [`store_timeout`](crate::JitLayerBuilder::store_timeout)) keep it exactly, the others are
//! rounded down to whole seconds.
//!
//! # Configuration and builder
//!
//! Every setting is a key of [`JitConfig`]; the [builder](crate::JitLayerBuilder) has a
//! setter for each as well, plus what a file cannot hold (stores, hooks, keys as values).
//! A setter called on the builder wins over [`JitLayerBuilder::config`](crate::JitLayerBuilder::config)
//! whichever is called first; see there.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::mapping::admission::{AdmissionConfig, ClaimRuleConfig, GroupsMode};
pub use crate::mapping::roles::{RoleCondition, RoleRuleConfig, RolesConfig, RolesMode};
pub use crate::mapping::{AbsentGroups, GroupsConfig, MappingConfig};

/// The whole configuration of a [`JitLayer`](crate::JitLayer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JitConfig {
    /// The application's external base URL (scheme, host, port), e.g. `https://app.example.com`.
    /// Redirect URIs are `{public_url}{path_prefix}/{provider}/callback`.
    pub public_url: String,
    /// Path prefix of the layer's own endpoints. Default `/auth`.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// Session and cookie settings.
    #[serde(default)]
    pub session: SessionConfig,
    /// User cache settings.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The trusted identity providers, by id. The id appears in URLs and in the identity key.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Username policies of the user-store domains, by name (`PRIMARY` and those given to
    /// [`JitLayerBuilder::domain_store`](crate::JitLayerBuilder::domain_store)). A domain
    /// without an entry gets [`DomainPolicy::default`].
    #[serde(default)]
    pub domains: BTreeMap<String, DomainPolicy>,
    /// Time limit of every request to an identity provider (discovery, keys, tokens,
    /// userinfo, SAML metadata), in seconds. Default 10.
    #[serde(default = "default_idp_timeout")]
    pub idp_timeout_secs: u64,
    /// Time limit of every call to a user store, in seconds. Default 10 (above the SQL stores'
    /// own 5 s pool and lock waits). See
    /// [`JitLayerBuilder::store_timeout`](crate::JitLayerBuilder::store_timeout).
    #[serde(default = "default_store_timeout")]
    pub store_timeout_secs: u64,
}

fn default_prefix() -> String {
    "/auth".to_owned()
}
fn default_idp_timeout() -> u64 {
    10
}
fn default_store_timeout() -> u64 {
    10
}

impl JitConfig {
    /// A configuration with defaults for everything but the public URL.
    ///
    /// ```
    /// let c = jit_provision::JitConfig::new("https://app.example.com");
    /// assert!(c.session.secure);
    /// ```
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            path_prefix: default_prefix(),
            session: SessionConfig::default(),
            cache: CacheConfig::default(),
            providers: BTreeMap::new(),
            domains: BTreeMap::new(),
            idp_timeout_secs: default_idp_timeout(),
            store_timeout_secs: default_store_timeout(),
        }
    }
}

/// A string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// What a handler's [`CurrentUser`](crate::CurrentUser) extractor answers when nobody is
/// logged in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "provider")]
pub enum Unauthenticated {
    /// `401 Unauthorized` for every request (the default).
    #[default]
    Status,
    /// For HTML navigations (`Accept: text/html`, `GET`), a `303` redirect to the login of
    /// this provider with `return_to` set to the requested path; `401` for everything else.
    RedirectToLogin(String),
}

/// Session cookie settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Base64 (standard or URL-safe) of at least 64 random bytes: the key that encrypts and
    /// authenticates the session and pending-login cookies. Every app instance must share it.
    /// When absent a random key is generated at start (sessions then die with the process).
    /// This key seals every new cookie.
    pub key: Option<Secret>,
    /// Keys that still open cookies but no longer seal them (same format as `key`): to
    /// rotate, put the old `key` here and a new one in `key`; remove it once the sessions
    /// it sealed have expired (`ttl_secs` later). Default: none.
    pub previous_keys: Vec<Secret>,
    /// Mark cookies `Secure` (default `true`). Turn off only for plain-http development on
    /// localhost; the layer refuses to build with `secure = false` and a non-loopback
    /// `public_url`, and with `secure = true` and a plain `http://` `public_url` (browsers
    /// drop `Secure` cookies there, so no login could finish).
    pub secure: bool,
    /// Session lifetime in seconds (absolute, from login: the cap whatever the activity).
    /// Default 8 hours.
    pub ttl_secs: u64,
    /// Idle timeout in seconds: a session with no request for this long ends (on top of
    /// `ttl_secs`). `0` (the default): none. Each instance tracks requests in memory and writes
    /// the last one to the session store at most once a minute, so across instances the idle
    /// check is precise to about a minute: choose a timeout of several minutes there.
    pub idle_timeout_secs: u64,
    /// How long a session record is served from this instance's memory before it is read
    /// from the session store again, in seconds. Default: `cache.ttl_secs`. With an
    /// invalidation bus every instance drops an ended session at once; without one, this is
    /// how long another instance may still accept a session ended elsewhere (if it had it
    /// cached).
    pub record_cache_ttl_secs: Option<u64>,
    /// Lifetime of a pending login (from login start to callback) in seconds. Default 600.
    pub login_ttl_secs: u64,
    /// Session cookie name. Default `jit_session` (with the `__Host-` prefix when secure).
    pub cookie_name: String,
    /// What the extractor answers when nobody is logged in.
    pub unauthenticated: Unauthenticated,
    /// Deprecated, no effect: ended sessions are kept in the session store (their records),
    /// not in a bounded in-memory set. Still accepted so existing configurations load.
    pub max_revoked_sessions: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            key: None,
            previous_keys: Vec::new(),
            max_revoked_sessions: 1_000_000,
            secure: true,
            ttl_secs: 8 * 3600,
            idle_timeout_secs: 0,
            record_cache_ttl_secs: None,
            login_ttl_secs: 600,
            cookie_name: "jit_session".to_owned(),
            unauthenticated: Unauthenticated::Status,
        }
    }
}

/// User cache settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long a loaded user is served from memory before it is read again, in seconds.
    /// This bounds how long a change made directly in the store (a lock, say) takes to be
    /// seen by sessions. Default 60.
    pub ttl_secs: u64,
    /// Most users held in memory. Default 100 000.
    pub max_users: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 60,
            max_users: 100_000,
        }
    }
}

/// How the identity provider returns the authorization response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Query parameters on a `GET` to the callback (the default).
    #[default]
    Query,
    /// A cross-site `POST` of an HTML form to the callback (`response_mode=form_post`).
    FormPost,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    /// `client_secret_basic` (the default).
    #[default]
    Basic,
    /// `client_secret_post`.
    Post,
}

/// One trusted identity provider: OpenID Connect or SAML 2.0 (feature `saml`), by its
/// [`protocol`](Self::protocol). The provisioning policy is the same for both.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ProviderWire", into = "ProviderWire")]
#[non_exhaustive]
pub struct ProviderConfig {
    /// The protocol and what identifies the provider in it: OpenID Connect's issuer and
    /// client id, or a SAML section. In a file: `issuer` and `client_id` keys, or a `saml`
    /// table (never both).
    pub protocol: Protocol,
    /// The client secret (absent for a public client using PKCE alone).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// Scopes to request. Default `openid email profile`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// What logins may do to local users. Default `create_and_update`.
    #[serde(default)]
    pub mode: ProvisioningMode,
    /// Wait for provisioning before answering the login (default `true`). With `false`, a
    /// returning user's attribute sync runs in a background task with retries, and the login
    /// answers at once; a first login still waits, since the session needs the local user.
    #[serde(default = "yes")]
    pub blocking: bool,
    /// Linking an unknown identity to an existing local account. Default: never.
    #[serde(default)]
    pub linking: LinkingConfig,
    /// The user-store domain users of this provider live in. Default: the primary domain.
    #[serde(default)]
    pub domain: DomainRule,
    /// How the authorization response comes back. Default `query`.
    #[serde(default)]
    pub response_mode: ResponseMode,
    /// Client authentication at the token endpoint. Default `basic`.
    #[serde(default)]
    pub token_auth: TokenAuth,
    /// Fetch the userinfo endpoint after the token exchange and merge its claims (its `sub`
    /// must match the ID token's). ID-token claims win over userinfo claims. Default `false`.
    #[serde(default)]
    pub userinfo: bool,
    /// Keep the access token, the refresh token and the access token's expiry of each login
    /// in its session record (sealed with the session key ring, never logged), for calling
    /// APIs on the user's behalf. The ID token is kept in any case (for logout at the
    /// provider). Default `false`.
    #[serde(default)]
    pub store_tokens: bool,
    /// With `store_tokens`: the access token an
    /// [`IdpAccessToken`](crate::IdpAccessToken) hands out is refreshed (with the refresh
    /// token) once it expires within this many seconds, at most half its lifetime. Default 60.
    #[serde(default = "default_refresh_margin")]
    pub token_refresh_margin_secs: u64,
    /// With `store_tokens`: at every refresh of a session's tokens, read the claims again (the
    /// refresh response's ID token, validated as at login with the same subject; without
    /// one, userinfo) and run the same provisioning update as at login, so a group removed or
    /// a user disabled at the provider takes effect without a new login; a login the policy
    /// now refuses ends the session. Default `false`.
    #[serde(default)]
    pub resync_on_refresh: bool,
    /// Allowed clock difference with the provider, in seconds, for `exp`, `iat` and `nbf`.
    /// Default 60.
    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
    /// Audiences besides our client id that may appear in `aud`. With several audiences the
    /// token must carry `azp` equal to our client id. Default none.
    #[serde(default)]
    pub trusted_audiences: Vec<String>,
    /// Least time between two JWKS refetches caused by an unknown `kid`, and before a failed
    /// key fetch is retried, in seconds. Default 30.
    #[serde(default = "default_refetch")]
    pub jwks_min_refetch_secs: u64,
    /// How long the discovery document (endpoints, RFC 9207 support) is used before it is
    /// fetched again, in seconds (at least 1). While the provider cannot be reached the cached
    /// document goes on serving. Default 3600.
    #[serde(default = "default_discovery_ttl")]
    pub discovery_ttl_secs: u64,
    /// How long the provider's signing keys are used before they are fetched again, in
    /// seconds (at least 1): a key the provider removed stops being accepted at most this
    /// long later, as long as the key set can be fetched. While it cannot, the cached keys go
    /// on serving (a failed fetch is retried after `jwks_min_refetch_secs`). Default 300.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_secs: u64,
    /// After a failed discovery with nothing cached, how long logins of this provider answer
    /// `502` at once before discovery is tried again, in seconds (at least 1); a failed
    /// refresh of a cached document is retried after it too. Default 5.
    #[serde(default = "default_discovery_retry")]
    pub discovery_retry_secs: u64,
    /// A human name for login pages. Default: the provider id.
    #[serde(default)]
    pub display_name: Option<String>,
    /// How claims become a local user.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// Who may be provisioned: email domains, required groups, claim-value rules, checked at
    /// every login before anything is written
    /// ([`mapping::admission`](crate::mapping::admission)). Default: everyone.
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Roles derived from claims and groups by ordered rules
    /// ([`mapping::roles`](crate::mapping::roles)). Default: none (this provider does not
    /// manage roles).
    #[serde(default)]
    pub roles: Option<RolesConfig>,
    /// Accept `Authorization: Bearer` JWTs from this issuer (for APIs). Default: off.
    #[serde(default)]
    pub bearer: Option<BearerConfig>,
    /// Answer OpenID Connect Back-Channel Logout 1.0 at
    /// `POST {public_url}{path_prefix}/{provider}/backchannel-logout`: the identity provider
    /// posts a signed logout token there (register that URI as the client's
    /// `backchannel_logout_uri`), and the sessions it names end on every instance. Default
    /// `false` (the endpoint answers `404`).
    #[serde(default)]
    pub backchannel_logout: bool,
    /// OpenID Connect RP-Initiated Logout 1.0: `POST {path_prefix}/logout` of a session of
    /// this provider, once the local session is ended, sends the browser to the provider's
    /// `end_session_endpoint` (from discovery; without one, the logout stays local) with
    /// `id_token_hint`, `client_id`, `state` and `post_logout_redirect_uri`, so the user is
    /// logged out at the provider too. Register the post-logout redirect URI
    /// (`{public_url}{path_prefix}/logout/done` unless `post_logout_redirect_path` says
    /// otherwise) at the provider. The ID token is kept in the server-side session record
    /// for it. Default `false`.
    #[serde(default)]
    pub rp_initiated_logout: bool,
    /// The same-origin path the provider sends the browser back to after an RP-initiated
    /// logout, e.g. `/signed-out`; the application's handler there may do anything, the
    /// layer checks nothing on it. Default: none, `{path_prefix}/logout/done`, where the
    /// layer checks the logout's `state` and redirects to the logout's `return_to`.
    #[serde(default)]
    pub post_logout_redirect_path: Option<String>,
    /// Answer OpenID Connect Front-Channel Logout 1.0 at
    /// `GET {public_url}{path_prefix}/{provider}/frontchannel-logout` (register it as the
    /// client's `frontchannel_logout_uri`): the provider loads it in an iframe, and it ends
    /// the session named by `iss` and `sid` (both or neither; both required when the
    /// provider's discovery says `frontchannel_logout_session_supported`), else the session
    /// of the browser's cookie.
    /// The page may be framed by the provider's origin only. Default `false`.
    #[serde(default)]
    pub frontchannel_logout: bool,
}

/// [`ProviderConfig`] as configuration files spell it: `issuer` and `client_id` for OpenID
/// Connect, a `saml` section for SAML (the format before [`Protocol`] existed, still the
/// format of files).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderWire {
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    client_id: String,
    #[cfg(feature = "saml")]
    #[serde(default)]
    saml: Option<crate::saml::SamlConfig>,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default = "default_scopes")]
    scopes: Vec<String>,
    #[serde(default)]
    mode: ProvisioningMode,
    #[serde(default = "yes")]
    blocking: bool,
    #[serde(default)]
    linking: LinkingConfig,
    #[serde(default)]
    domain: DomainRule,
    #[serde(default)]
    response_mode: ResponseMode,
    #[serde(default)]
    token_auth: TokenAuth,
    #[serde(default)]
    userinfo: bool,
    #[serde(default)]
    store_tokens: bool,
    #[serde(default = "default_refresh_margin")]
    token_refresh_margin_secs: u64,
    #[serde(default)]
    resync_on_refresh: bool,
    #[serde(default = "default_skew")]
    clock_skew_secs: u64,
    #[serde(default)]
    trusted_audiences: Vec<String>,
    #[serde(default = "default_refetch")]
    jwks_min_refetch_secs: u64,
    #[serde(default = "default_discovery_ttl")]
    discovery_ttl_secs: u64,
    #[serde(default = "default_jwks_ttl")]
    jwks_ttl_secs: u64,
    #[serde(default = "default_discovery_retry")]
    discovery_retry_secs: u64,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    mapping: MappingConfig,
    #[serde(default)]
    admission: AdmissionConfig,
    #[serde(default)]
    roles: Option<RolesConfig>,
    #[serde(default)]
    bearer: Option<BearerConfig>,
    #[serde(default)]
    backchannel_logout: bool,
    #[serde(default)]
    rp_initiated_logout: bool,
    #[serde(default)]
    post_logout_redirect_path: Option<String>,
    #[serde(default)]
    frontchannel_logout: bool,
}

impl TryFrom<ProviderWire> for ProviderConfig {
    type Error = String;
    fn try_from(w: ProviderWire) -> Result<Self, String> {
        #[cfg(feature = "saml")]
        let protocol = match w.saml {
            Some(_) if !w.issuer.is_empty() || !w.client_id.is_empty() => {
                return Err(
                    "a provider is OpenID Connect (`issuer` and `client_id`) or SAML (a `saml` table), not both"
                        .into(),
                );
            }
            Some(saml) => Protocol::Saml(saml),
            None => Protocol::Oidc {
                issuer: w.issuer,
                client_id: w.client_id,
            },
        };
        #[cfg(not(feature = "saml"))]
        let protocol = Protocol::Oidc {
            issuer: w.issuer,
            client_id: w.client_id,
        };
        Ok(Self {
            protocol,
            client_secret: w.client_secret,
            scopes: w.scopes,
            mode: w.mode,
            blocking: w.blocking,
            linking: w.linking,
            domain: w.domain,
            response_mode: w.response_mode,
            token_auth: w.token_auth,
            userinfo: w.userinfo,
            store_tokens: w.store_tokens,
            token_refresh_margin_secs: w.token_refresh_margin_secs,
            resync_on_refresh: w.resync_on_refresh,
            clock_skew_secs: w.clock_skew_secs,
            trusted_audiences: w.trusted_audiences,
            jwks_min_refetch_secs: w.jwks_min_refetch_secs,
            discovery_ttl_secs: w.discovery_ttl_secs,
            jwks_ttl_secs: w.jwks_ttl_secs,
            discovery_retry_secs: w.discovery_retry_secs,
            display_name: w.display_name,
            mapping: w.mapping,
            admission: w.admission,
            roles: w.roles,
            bearer: w.bearer,
            backchannel_logout: w.backchannel_logout,
            rp_initiated_logout: w.rp_initiated_logout,
            post_logout_redirect_path: w.post_logout_redirect_path,
            frontchannel_logout: w.frontchannel_logout,
        })
    }
}

impl From<ProviderConfig> for ProviderWire {
    fn from(p: ProviderConfig) -> Self {
        let (issuer, client_id) = match &p.protocol {
            Protocol::Oidc { issuer, client_id } => (issuer.clone(), client_id.clone()),
            #[cfg(feature = "saml")]
            Protocol::Saml(_) => (String::new(), String::new()),
        };
        Self {
            issuer,
            client_id,
            #[cfg(feature = "saml")]
            saml: match p.protocol {
                Protocol::Saml(saml) => Some(saml),
                Protocol::Oidc { .. } => None,
            },
            client_secret: p.client_secret,
            scopes: p.scopes,
            mode: p.mode,
            blocking: p.blocking,
            linking: p.linking,
            domain: p.domain,
            response_mode: p.response_mode,
            token_auth: p.token_auth,
            userinfo: p.userinfo,
            store_tokens: p.store_tokens,
            token_refresh_margin_secs: p.token_refresh_margin_secs,
            resync_on_refresh: p.resync_on_refresh,
            clock_skew_secs: p.clock_skew_secs,
            trusted_audiences: p.trusted_audiences,
            jwks_min_refetch_secs: p.jwks_min_refetch_secs,
            discovery_ttl_secs: p.discovery_ttl_secs,
            jwks_ttl_secs: p.jwks_ttl_secs,
            discovery_retry_secs: p.discovery_retry_secs,
            display_name: p.display_name,
            mapping: p.mapping,
            admission: p.admission,
            roles: p.roles,
            bearer: p.bearer,
            backchannel_logout: p.backchannel_logout,
            rp_initiated_logout: p.rp_initiated_logout,
            post_logout_redirect_path: p.post_logout_redirect_path,
            frontchannel_logout: p.frontchannel_logout,
        }
    }
}

/// The protocol of a provider, with what identifies the provider in it.
///
/// ```
/// use jit_provision::{ProviderConfig, config::Protocol};
/// let p: ProviderConfig = toml::from_str(r#"
///     issuer = "https://login.example.com"
///     client_id = "app"
/// "#).unwrap();
/// assert!(matches!(&p.protocol, Protocol::Oidc { client_id, .. } if client_id == "app"));
/// assert_eq!(p.issuer(), "https://login.example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OpenID Connect (keys `issuer` and `client_id`).
    Oidc {
        /// The issuer identifier; discovery is fetched from
        /// `{issuer}/.well-known/openid-configuration` and the ID token's `iss` must equal it
        /// exactly. Required.
        issuer: String,
        /// The client id registered at the provider. Required.
        client_id: String,
    },
    /// SAML 2.0 (a `saml` table).
    #[cfg(feature = "saml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "saml")))]
    Saml(crate::saml::SamlConfig),
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn yes() -> bool {
    true
}
fn default_skew() -> u64 {
    60
}
fn default_refresh_margin() -> u64 {
    60
}
fn default_refetch() -> u64 {
    30
}
fn default_discovery_ttl() -> u64 {
    3600
}
fn default_discovery_retry() -> u64 {
    5
}

impl ProviderConfig {
    /// A provider with defaults for everything but issuer and client id.
    ///
    /// ```
    /// use jit_provision::ProviderConfig;
    /// let p = ProviderConfig::new("https://login.example.com", "app").client_secret("s3cret");
    /// assert_eq!(p.scopes, ["openid", "email", "profile"]);
    /// ```
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            protocol: Protocol::Oidc {
                issuer: issuer.into(),
                client_id: client_id.into(),
            },
            client_secret: None,
            scopes: default_scopes(),
            mode: ProvisioningMode::CreateAndUpdate,
            blocking: true,
            linking: LinkingConfig::default(),
            domain: DomainRule::default(),
            response_mode: ResponseMode::Query,
            token_auth: TokenAuth::Basic,
            userinfo: false,
            store_tokens: false,
            token_refresh_margin_secs: default_refresh_margin(),
            resync_on_refresh: false,
            clock_skew_secs: default_skew(),
            trusted_audiences: Vec::new(),
            jwks_min_refetch_secs: default_refetch(),
            discovery_ttl_secs: default_discovery_ttl(),
            jwks_ttl_secs: default_jwks_ttl(),
            discovery_retry_secs: default_discovery_retry(),
            display_name: None,
            mapping: MappingConfig::default(),
            admission: AdmissionConfig::default(),
            roles: None,
            bearer: None,
            backchannel_logout: false,
            rp_initiated_logout: false,
            post_logout_redirect_path: None,
            frontchannel_logout: false,
        }
    }

    /// Accepts bearer JWTs from this issuer.
    pub fn bearer(mut self, bearer: BearerConfig) -> Self {
        self.bearer = Some(bearer);
        self
    }

    /// A SAML 2.0 provider.
    ///
    /// ```
    /// # #[cfg(feature = "saml")] {
    /// use jit_provision::{ProviderConfig, saml::SamlConfig};
    /// let p = ProviderConfig::saml(SamlConfig::from_metadata_file("idp-metadata.xml"));
    /// assert!(p.issuer().is_empty() && p.saml_config().is_some());
    /// # }
    /// ```
    #[cfg(feature = "saml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "saml")))]
    pub fn saml(config: crate::saml::SamlConfig) -> Self {
        let mut provider = Self::new("", "");
        provider.protocol = Protocol::Saml(config);
        provider
    }

    /// The OpenID Connect issuer; `""` for a SAML provider.
    pub fn issuer(&self) -> &str {
        match &self.protocol {
            Protocol::Oidc { issuer, .. } => issuer,
            #[cfg(feature = "saml")]
            Protocol::Saml(_) => "",
        }
    }

    /// The OpenID Connect client id; `""` for a SAML provider.
    pub fn client_id(&self) -> &str {
        match &self.protocol {
            Protocol::Oidc { client_id, .. } => client_id,
            #[cfg(feature = "saml")]
            Protocol::Saml(_) => "",
        }
    }

    /// The SAML settings of a SAML provider.
    #[cfg(feature = "saml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "saml")))]
    pub fn saml_config(&self) -> Option<&crate::saml::SamlConfig> {
        match &self.protocol {
            Protocol::Saml(saml) => Some(saml),
            Protocol::Oidc { .. } => None,
        }
    }

    /// The SAML settings of a SAML provider, to change them.
    #[cfg(feature = "saml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "saml")))]
    pub fn saml_config_mut(&mut self) -> Option<&mut crate::saml::SamlConfig> {
        match &mut self.protocol {
            Protocol::Saml(saml) => Some(saml),
            Protocol::Oidc { .. } => None,
        }
    }

    /// Sets the client secret.
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Sets the provisioning mode.
    pub fn mode(mut self, mode: ProvisioningMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets account linking.
    pub fn linking(mut self, linking: LinkingConfig) -> Self {
        self.linking = linking;
        self
    }

    /// Sets the response mode.
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = mode;
        self
    }

    /// Sets the human name shown on login pages.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Sets the claim mapping.
    pub fn mapping(mut self, mapping: MappingConfig) -> Self {
        self.mapping = mapping;
        self
    }

    /// Sets the admission rules.
    ///
    /// ```
    /// use jit_provision::{ProviderConfig, config::AdmissionConfig};
    /// let mut admission = AdmissionConfig::default();
    /// admission.email_domains = Some(vec!["example.com".into()]);
    /// let p = ProviderConfig::new("https://login.example.com", "app").admission(admission);
    /// assert!(p.admission.email_domains.is_some());
    /// ```
    pub fn admission(mut self, admission: AdmissionConfig) -> Self {
        self.admission = admission;
        self
    }

    /// Sets the role rules.
    ///
    /// ```
    /// use jit_provision::{ProviderConfig, config::RolesConfig};
    /// let roles: RolesConfig = toml::from_str(r#"default = "viewer""#).unwrap();
    /// let p = ProviderConfig::new("https://login.example.com", "app").roles(roles);
    /// assert_eq!(p.roles.unwrap().default.as_deref(), Some("viewer"));
    /// ```
    pub fn roles(mut self, roles: RolesConfig) -> Self {
        self.roles = Some(roles);
        self
    }
}

/// How bearer JWTs (API access tokens) from a provider are validated, and what their calls
/// may do to local users.
///
/// A bearer call provisions like a login, but more narrowly: it never links to an existing
/// local account and never updates a user's attributes unless [`link`](Self::link) and
/// [`update_attributes`](Self::update_attributes) say so (a client-credentials token carries
/// none of a person's claims).
///
/// ```
/// let b = jit_provision::config::BearerConfig::new(["https://api.example.com"]);
/// assert_eq!(b.algorithms, ["RS256"]);
/// assert_eq!(b.token_types, ["at+jwt"]);
/// assert!(!b.link && !b.update_attributes);
///
/// // An IdP whose access tokens say `typ: JWT`:
/// let b: jit_provision::config::BearerConfig = toml::from_str(r#"
///     audiences = ["https://api.example.com"]
///     token_types = ["at+jwt", "JWT"]
/// "#).unwrap();
/// assert_eq!(b.token_types, ["at+jwt", "JWT"]);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BearerConfig {
    /// Accepted `aud` values; at least one must appear in the token. Required.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms. Default `["RS256"]`. Only asymmetric algorithms are
    /// allowed (RS*, PS*, ES256, ES384, EdDSA): `none` and HMAC are refused at build time.
    #[serde(default = "default_bearer_algs")]
    pub algorithms: Vec<String>,
    /// Accepted values of the JWT header `typ` (RFC 9068 §4), compared as media types: case
    /// insensitive, `application/` implied (`at+jwt` accepts `application/at+jwt` too);
    /// `""` accepts a token without `typ`. Default `["at+jwt"]`, which keeps ID tokens (typed
    /// `JWT`) out. For an IdP that types its access tokens `JWT`, use `["at+jwt", "JWT"]`,
    /// and then keep [`audiences`](Self::audiences) apart from every client id of the
    /// issuer: the audience is all that tells its ID tokens from its access tokens. Must not
    /// be empty.
    #[serde(default = "default_token_types")]
    pub token_types: Vec<String>,
    /// Where the keys are; default: the `jwks_uri` of the issuer's discovery document.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Claims that must be present besides `iss`, `sub`, `aud` and `exp` (always required).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// How long fetched keys are used before they are fetched again, in seconds. A key the
    /// issuer removed stops being accepted at most this long (plus the token cache TTL) later.
    /// Default 300.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_secs: u64,
    /// How long a verified token is remembered (never past its `exp`), in seconds, so repeated
    /// calls skip the signature check. Default 60.
    #[serde(default = "default_token_ttl")]
    pub token_cache_ttl_secs: u64,
    /// Mapping for API clients, when it differs from the provider's login mapping (machine
    /// clients often have no `preferred_username`; map `client_id` or `sub` instead).
    #[serde(default)]
    pub mapping: Option<MappingConfig>,
    /// Let a bearer token of an unknown subject link to an existing local account by the
    /// provider's [`linking`](ProviderConfig::linking) rule. Default `false`: the bearer path
    /// never links, whatever `linking` says (a taken username is then `409 username_taken`).
    #[serde(default)]
    pub link: bool,
    /// Let bearer calls sync mapped attributes (email, name, groups, ...) of an existing user,
    /// as the provider's [`mode`](ProviderConfig::mode) allows. Default `false`: bearer calls
    /// create unknown users (when the mode creates) and never change known ones, so a token
    /// without email claims cannot blank a user's email.
    #[serde(default)]
    pub update_attributes: bool,
}

fn default_bearer_algs() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_token_types() -> Vec<String> {
    vec!["at+jwt".into()]
}
fn default_jwks_ttl() -> u64 {
    300
}
fn default_token_ttl() -> u64 {
    60
}

impl BearerConfig {
    /// Bearer validation for these audiences, with defaults for the rest.
    pub fn new<I, S>(audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            audiences: audiences.into_iter().map(Into::into).collect(),
            algorithms: default_bearer_algs(),
            token_types: default_token_types(),
            jwks_uri: None,
            required_claims: Vec::new(),
            jwks_ttl_secs: default_jwks_ttl(),
            token_cache_ttl_secs: default_token_ttl(),
            mapping: None,
            link: false,
            update_attributes: false,
        }
    }
}

/// What logins of a provider may do to local users (WSO2's "provisioning" modes, Atlassian's
/// "create users on login" / "update users on login").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisioningMode {
    /// No provisioning: only users already linked to this provider log in (unchanged); an
    /// unknown one gets a `403`.
    Off,
    /// Create unknown users; never touch them afterwards.
    CreateOnly,
    /// Create unknown users and sync their mapped attributes at every login (the default).
    #[default]
    CreateAndUpdate,
    /// Only sync users already linked; an unknown one gets a `403`.
    UpdateOnly,
}

impl ProvisioningMode {
    /// Whether unknown users are created.
    pub fn creates(self) -> bool {
        matches!(self, Self::CreateOnly | Self::CreateAndUpdate)
    }

    /// Whether known users are updated.
    pub fn updates(self) -> bool {
        matches!(self, Self::CreateAndUpdate | Self::UpdateOnly)
    }
}

/// How an unknown identity may be linked to an existing local account instead of creating
/// one. **Linking is account takeover when the matched attribute is not proven**: anyone
/// who controls an account at the provider with that username or email gets the local
/// account. Enable it only for providers you trust to assert these values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LinkingConfig {
    /// What to match on. Default `none`.
    pub by: LinkBy,
    /// Trust this provider's email addresses even without `email_verified: true` (for a
    /// corporate IdP that owns the mail domain). Default `false`: linking by email then needs
    /// `email_verified` to be the boolean `true`.
    pub trust_email: bool,
}

impl LinkingConfig {
    /// Linking by `by`, trusting emails only with `email_verified: true`.
    ///
    /// ```
    /// use jit_provision::config::{LinkBy, LinkingConfig};
    /// let linking = LinkingConfig::new(LinkBy::Email).trust_email(true);
    /// assert!(linking.trust_email);
    /// ```
    pub fn new(by: LinkBy) -> Self {
        Self {
            by,
            trust_email: false,
        }
    }

    /// Sets [`trust_email`](Self::trust_email).
    pub fn trust_email(mut self, trust: bool) -> Self {
        self.trust_email = trust;
        self
    }
}

/// What account linking matches on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkBy {
    /// Never link (the default).
    #[default]
    None,
    /// The mapped username equals an existing local username exactly (a name that only folds
    /// to it, see [`canonical`](crate::store::canonical), is not linked and is then taken).
    Username,
    /// The asserted email equals (up to ASCII case) the email of exactly one local user (found
    /// by the [`canonical`](crate::store::canonical) form), and the email is verified (see
    /// [`LinkingConfig::trust_email`]).
    Email,
}

/// Which user-store domain a provider's users go to (WSO2's "provision to user store
/// domain").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainRule {
    /// Always this domain (`PRIMARY` is the store given to `.store(...)`).
    Fixed(String),
    /// The domain named in the mapped username, `DOMAIN/user`; without a prefix, `PRIMARY`.
    /// The prefix is removed from the stored username.
    FromUsername,
}

impl Default for DomainRule {
    fn default() -> Self {
        Self::Fixed(PRIMARY_DOMAIN.to_owned())
    }
}

pub use crate::store::domain::PRIMARY_DOMAIN;

/// The username policy of a user-store domain: a username that breaks it is refused with
/// `403` and nothing is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DomainPolicy {
    /// Characters allowed in a username. Default: letters, digits and `._@+-`.
    pub allowed_chars: String,
    /// Shortest username. Default 1.
    pub min_length: usize,
    /// Longest username. Default 64.
    pub max_length: usize,
    /// Lower-case usernames before checking and storing. Default `false`. (Uniqueness never
    /// depends on it: usernames are unique in their [`canonical`](crate::store::canonical)
    /// form, so `Jane` and `jane` are one name either way.)
    pub lowercase: bool,
}

impl Default for DomainPolicy {
    fn default() -> Self {
        Self {
            allowed_chars: "._@+-".into(),
            min_length: 1,
            max_length: 64,
            lowercase: false,
        }
    }
}

impl DomainPolicy {
    /// Applies the policy: the username to store, or why it is refused.
    ///
    /// ```
    /// let policy = jit_provision::config::DomainPolicy::default();
    /// assert_eq!(policy.check("jane.doe").as_deref(), Ok("jane.doe"));
    /// assert!(policy.check("jane doe").is_err());
    /// ```
    pub fn check(&self, username: &str) -> Result<String, String> {
        let name = if self.lowercase {
            username.to_lowercase()
        } else {
            username.to_owned()
        };
        let length = name.chars().count();
        if length < self.min_length || length > self.max_length {
            return Err(format!(
                "must have {} to {} characters",
                self.min_length, self.max_length
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !c.is_alphanumeric() && !self.allowed_chars.contains(*c))
        {
            return Err(format!("may not contain `{}`", bad.escape_default()));
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_keys_make_an_oidc_provider_and_serialize_back_to_them() {
        let p: ProviderConfig =
            toml::from_str("issuer = \"https://i.example\"\nclient_id = \"app\"").unwrap();
        assert_eq!(
            p.protocol,
            Protocol::Oidc {
                issuer: "https://i.example".into(),
                client_id: "app".into()
            }
        );
        let back = toml::Value::try_from(&p).unwrap();
        assert_eq!(back["issuer"].as_str(), Some("https://i.example"));
        assert_eq!(back["client_id"].as_str(), Some("app"));
        assert!(back.get("protocol").is_none() && back.get("saml").is_none());
        let again: ProviderConfig = back.try_into().unwrap();
        assert_eq!(again.protocol, p.protocol);
    }

    #[test]
    fn unknown_provider_keys_are_still_refused() {
        let err = toml::from_str::<ProviderConfig>("issuer = \"https://i\"\nscope = []")
            .unwrap_err()
            .to_string();
        assert!(err.contains("scope"), "{err}");
    }

    #[cfg(feature = "saml")]
    #[test]
    fn a_saml_table_makes_a_saml_provider_and_not_with_an_issuer() {
        let saml = "[saml]\nidp_metadata_url = \"https://idp.example/metadata\"";
        let p: ProviderConfig = toml::from_str(saml).unwrap();
        assert!(matches!(p.protocol, Protocol::Saml(_)));
        assert_eq!((p.issuer(), p.client_id()), ("", ""));
        let back: ProviderConfig = toml::Value::try_from(&p).unwrap().try_into().unwrap();
        assert_eq!(back.protocol, p.protocol);
        let err = toml::from_str::<ProviderConfig>(&format!("issuer = \"https://i\"\n{saml}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
    }
}
