//! [`JitLayer`] and its builder.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::time::Duration;

use tower_layer::Layer;

use crate::config::PRIMARY_DOMAIN;
use crate::config::{DomainPolicy, JitConfig, ProviderConfig, Unauthenticated};
use crate::directory::{Directory, Domain};
use crate::events::{EventSink, Events};
use crate::invalidation::{Invalidation, InvalidationBus, InvalidationSigner, SignedBus};
use crate::mapping::GroupResolver;
use crate::metrics::Metrics;
use crate::oidc::OidcProvider;
use crate::prompt::ProvisionPrompt;
use crate::provision::{Hooks, Policy, Provisioned, Provisioner};
use crate::replay::{ErasedGuard, MemoryReplayGuard, ReplayGuard};
use crate::service::JitService;
use crate::session::UserCache;
use crate::session::{
    CookieCodec, LoginFlow, SessionKey, SessionStore, SessionStoreHandle, Sessions,
};
use crate::state::{Idps, Shared, Site};
use crate::store::{SharedStore, UserStore};

/// Why a layer could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No store was given to the builder.
    #[error("a user store is required: call `.store(...)`")]
    MissingStore,
    /// `public_url` is not an absolute http(s) URL of an origin (no path, query or fragment;
    /// mount the app at the root of its origin, or use `path_prefix` for the layer's paths).
    #[error(
        "public_url `{0}` must be an http or https origin with no path, like `https://app.example.com`"
    )]
    PublicUrl(String),
    /// `path_prefix` must start with `/`, must not end with `/`, and must be a plain path.
    #[error("path_prefix `{0}` must look like `/auth`")]
    PathPrefix(String),
    /// `session.key` is not base64 of at least 64 bytes.
    #[error("session.key must be base64 of at least 64 random bytes")]
    SessionKey,
    /// An entry of `session.previous_keys` (by index) is not base64 of at least 64 bytes.
    #[error("session.previous_keys[{0}] must be base64 of at least 64 random bytes")]
    PreviousSessionKey(usize),
    /// `session.secure = false` with a public URL that is not plain-http loopback.
    #[error(
        "session.secure = false is only allowed for a plain http://localhost or loopback public_url"
    )]
    InsecureCookies,
    /// A plain `http://` `public_url` with `session.secure = true` (the default): browsers
    /// neither store nor send `Secure` cookies (nor `__Host-` ones) for a plain-http origin,
    /// so no login could finish. A SAML ACS needs them most: its cross-site POST carries the
    /// pending login only in a `SameSite=None; Secure` cookie.
    #[error(
        "public_url `{0}` is plain http, but session.secure = true (the default) makes every cookie `Secure`, which browsers refuse on http: serve https, or set `session.secure = false` (JitLayerBuilder::insecure_cookies_for_localhost) for a plain-http localhost or loopback public_url"
    )]
    SecureCookiesOnHttp(String),
    /// A provider id is not made of `[A-Za-z0-9_-]`.
    #[error("provider id `{0}` may only hold letters, digits, `-` and `_`")]
    ProviderId(String),
    /// A user-store domain is misconfigured.
    #[error("{0}")]
    Domain(String),
    /// An invalidation bus (several instances) with no session store: the user store keeps
    /// no sessions ([`UserStore::session_store`](crate::store::UserStore::session_store) is
    /// `None`) and none was given, so each instance would keep its own in memory and a user
    /// would be logged out whenever the load balancer picks another instance.
    #[error(
        "an invalidation bus is configured (several instances) but the user store keeps no sessions: pass a shared one with `.session_store(...)`"
    )]
    BusWithoutSessionStore,
    /// An invalidation bus needs a tokio runtime: build the layer inside one.
    #[error("an invalidation bus needs a running tokio runtime: build the layer inside it")]
    NoRuntime,
    /// A `bearer` section is invalid.
    #[error("{0}")]
    Bearer(String),
    /// jsonwebtoken has no crypto backend: built without the `rust-crypto` feature, and the
    /// application neither installed a `jsonwebtoken::crypto::CryptoProvider` before building
    /// the layer nor enabled exactly one jsonwebtoken backend feature.
    #[error(
        "jsonwebtoken has no crypto backend: enable jit-provision's `rust-crypto` feature (on by \
         default), or install a provider with `jsonwebtoken::crypto::CryptoProvider::install_default` \
         before building the layer"
    )]
    NoJwtBackend,
    /// A provider's settings are invalid.
    #[error("provider `{id}`: {reason}")]
    Provider {
        /// The provider id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// Applies every verified invalidation from the bus to this layer's caches, until the layer
/// is dropped.
async fn follow(
    mut events: BoxStream<'static, Invalidation>,
    shared: Weak<Shared>,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        let event = tokio::select! {
            _ = stop.notified() => return,
            event = events.next() => event,
        };
        let (Some(event), Some(shared)) = (event, shared.upgrade()) else {
            return;
        };
        tracing::debug!(?event, "invalidation received");
        shared.users.cache().apply(&event).await;
    }
}

/// A [`tower::Layer`](tower_layer::Layer) that adds OpenID Connect login with just-in-time
/// provisioning to a service.
///
/// It answers `GET {prefix}/{provider}/login`, `GET|POST {prefix}/{provider}/callback` and
/// `POST {prefix}/logout` itself, and on every other request attaches the logged-in
/// [`CurrentUser`](crate::CurrentUser) (if any) to the request extensions before calling the
/// inner service. Its errors are responses, so under axum no `HandleErrorLayer` is needed.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use jit_provision::{CurrentUser, JitLayer, ProviderConfig, store::MemoryStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let jit = JitLayer::builder()
///     .public_url("https://app.example.com")
///     .provider("corp", ProviderConfig::new("https://login.example.com", "app").client_secret("s3cret"))
///     .store(MemoryStore::new())
///     .build()?;
///
/// let app: Router = Router::new()
///     .route("/me", get(|user: CurrentUser| async move { user.username.clone() }))
///     .layer(jit);
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct JitLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for JitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitLayer")
            .field("prefix", &self.shared.site.prefix)
            .field(
                "providers",
                &self.shared.idps.oidc.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl JitLayer {
    /// Starts a builder.
    pub fn builder() -> JitLayerBuilder {
        JitLayerBuilder::default()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Builds a layer from a configuration and a store.
    ///
    /// ```
    /// use jit_provision::{JitConfig, JitLayer, store::MemoryStore};
    /// let layer = JitLayer::from_config(JitConfig::new("https://app.example.com"), MemoryStore::new());
    /// assert!(layer.is_ok());
    /// ```
    pub fn from_config(config: JitConfig, store: impl UserStore) -> Result<Self, ConfigError> {
        JitLayerBuilder::default()
            .config(config)
            .store(store)
            .build()
    }

    /// The redirect URI to register at provider `id`'s IdP:
    /// `{public_url origin}{path_prefix}/{id}/callback`. `None` for an unknown provider.
    ///
    /// ```
    /// # use jit_provision::{JitLayer, ProviderConfig, store::MemoryStore};
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .provider("corp", ProviderConfig::new("https://login.example.com", "app"))
    ///     .store(MemoryStore::new())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.redirect_uri("corp").as_deref(), Some("https://app.example.com/auth/corp/callback"));
    /// ```
    pub fn redirect_uri(&self, id: &str) -> Option<String> {
        self.shared
            .idps
            .oidc
            .get(id)
            .map(|p| p.redirect_uri().to_owned())
    }

    /// The SAML service provider of provider `id` (feature `saml`), `None` for an unknown or
    /// OpenID Connect provider: what to register at the IdP (its
    /// [`acs_url`](crate::saml::SamlServiceProvider::acs_url),
    /// [`sp_entity_id`](crate::saml::SamlServiceProvider::sp_entity_id) and
    /// [`metadata_url`](crate::saml::SamlServiceProvider::metadata_url)), its metadata XML.
    ///
    /// ```
    /// # use jit_provision::{JitLayer, ProviderConfig, saml::SamlConfig, store::MemoryStore};
    /// let saml = SamlConfig::from_metadata_url("https://idp.example.com/metadata");
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .provider("corp", ProviderConfig::saml(saml))
    ///     .store(MemoryStore::new())
    ///     .build()
    ///     .unwrap();
    /// let sp = layer.saml_provider("corp").unwrap();
    /// assert_eq!(sp.acs_url(), "https://app.example.com/auth/corp/acs");
    /// assert_eq!(sp.sp_entity_id(), "https://app.example.com/auth/corp/metadata");
    /// assert_eq!(sp.metadata_url(), sp.sp_entity_id());
    /// assert!(layer.redirect_uri("corp").is_none());
    /// ```
    #[cfg(feature = "saml")]
    pub fn saml_provider(&self, id: &str) -> Option<&crate::saml::SamlServiceProvider> {
        self.shared.idps.saml.get(id).map(|sp| &**sp)
    }

    /// The back-channel logout URI to register at provider `id`'s IdP as the client's
    /// `backchannel_logout_uri`: `{public_url origin}{path_prefix}/{id}/backchannel-logout`.
    /// `None` for an unknown provider or one without
    /// [`backchannel_logout`](crate::ProviderConfig::backchannel_logout).
    ///
    /// ```
    /// # use jit_provision::{JitLayer, ProviderConfig, store::MemoryStore};
    /// let mut corp = ProviderConfig::new("https://login.example.com", "app");
    /// corp.backchannel_logout = true;
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .provider("corp", corp)
    ///     .store(MemoryStore::new())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(
    ///     layer.backchannel_logout_uri("corp").as_deref(),
    ///     Some("https://app.example.com/auth/corp/backchannel-logout")
    /// );
    /// ```
    pub fn backchannel_logout_uri(&self, id: &str) -> Option<String> {
        self.logout_uri(id, |c| c.backchannel_logout, "backchannel-logout")
    }

    /// The front-channel logout URI to register at provider `id`'s IdP as the client's
    /// `frontchannel_logout_uri`: `{public_url origin}{path_prefix}/{id}/frontchannel-logout`.
    /// `None` for an unknown provider or one without
    /// [`frontchannel_logout`](crate::ProviderConfig::frontchannel_logout).
    pub fn frontchannel_logout_uri(&self, id: &str) -> Option<String> {
        self.logout_uri(id, |c| c.frontchannel_logout, "frontchannel-logout")
    }

    /// The `post_logout_redirect_uri` to register at provider `id`'s IdP for RP-initiated
    /// logout: `{public_url origin}{path_prefix}/logout/done`, or the origin and the
    /// provider's `post_logout_redirect_path`. `None` for an unknown provider or one without
    /// [`rp_initiated_logout`](crate::ProviderConfig::rp_initiated_logout).
    ///
    /// ```
    /// # use jit_provision::{JitLayer, ProviderConfig, store::MemoryStore};
    /// let mut corp = ProviderConfig::new("https://login.example.com", "app");
    /// corp.rp_initiated_logout = true;
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .provider("corp", corp)
    ///     .store(MemoryStore::new())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(
    ///     layer.post_logout_redirect_uri("corp").as_deref(),
    ///     Some("https://app.example.com/auth/logout/done")
    /// );
    /// ```
    pub fn post_logout_redirect_uri(&self, id: &str) -> Option<String> {
        let provider = self.shared.idps.oidc.get(id)?;
        provider
            .config
            .rp_initiated_logout
            .then(|| self.shared.site.post_logout_redirect_uri(provider))
    }

    /// `{origin}{prefix}/{id}/{action}` of an OpenID Connect provider with the logout
    /// `enabled`.
    fn logout_uri(
        &self,
        id: &str,
        enabled: fn(&ProviderConfig) -> bool,
        action: &str,
    ) -> Option<String> {
        let config = &self.shared.idps.oidc.get(id)?.config;
        enabled(config).then(|| self.shared.site.endpoint(id, action))
    }

    /// Provisions the user of an identity validated elsewhere (a custom flow, an import), with
    /// provider `id`'s mapping and JIT setting, exactly as a login would: find, create or
    /// update, through the same caches.
    pub async fn provision(
        &self,
        id: &str,
        identity: &crate::store::Identity,
        claims: &crate::Claims,
    ) -> Result<(Arc<crate::store::User>, crate::Outcome), crate::ProvisionError> {
        let policy = self
            .shared
            .provisioner
            .policy(id)
            .ok_or_else(|| crate::ProvisionError::UnknownProvider(id.to_owned()))?;
        match self
            .shared
            .provisioner
            .provision(policy, identity, claims, None)
            .await?
        {
            Provisioned::Done { user, outcome, .. } => Ok((user, outcome)),
            Provisioned::Prompt { .. } => Err(crate::ProvisionError::PromptRefused(
                "this provider prompts before creating users: log in through the browser".into(),
            )),
        }
    }

    /// The layer's counters (shared by every clone and every service it made).
    ///
    /// ```
    /// # use jit_provision::{JitLayer, store::MemoryStore};
    /// let layer = JitLayer::builder().public_url("https://app.example.com").store(MemoryStore::new()).build().unwrap();
    /// assert_eq!(layer.metrics().logins, 0);
    /// ```
    pub fn metrics(&self) -> crate::MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Ends every cached view of a user: call after changing or locking it in the store
    /// yourself, so the change is seen at the next request rather than after the cache TTL.
    pub async fn forget_user(&self, id: crate::store::UserId) {
        self.forget_domain_user(PRIMARY_DOMAIN, id).await;
    }

    /// [`forget_user`](Self::forget_user) for a user of another user-store domain.
    pub async fn forget_domain_user(&self, domain: &str, id: crate::store::UserId) {
        self.shared
            .users
            .announce(crate::invalidation::Invalidation::User {
                domain: domain.to_owned(),
                id,
            })
            .await;
    }
}

impl<S> Layer<S> for JitLayer {
    type Service = JitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JitService::new(inner, self.shared.clone())
    }
}

/// Builds a [`JitLayer`]: start from [`JitLayer::builder`], load a [`JitConfig`] and/or set
/// settings one by one, give a store and the other runtime objects, then
/// [`build`](JitLayerBuilder::build).
///
/// # Precedence
///
/// The builder is a [`JitConfig`] plus runtime objects. A setting given by a
/// setter (`.public_url(..)`, `.session_ttl(..)`, `.provider(id, ..)`, ...) wins over the
/// same setting of [`config`](Self::config), whether it is called before or after it; what
/// no setter sets comes from the configuration (or its default). A second `.config(..)`
/// replaces the first one, not the setters.
///
/// ```
/// use std::time::Duration;
/// use jit_provision::{JitConfig, JitLayer, ProviderConfig, store::MemoryStore};
/// let layer = JitLayer::builder()
///     .public_url("http://127.0.0.1:3000")
///     .insecure_cookies_for_localhost()
///     .provider("dev", ProviderConfig::new("http://127.0.0.1:9000", "demo"))
///     .session_ttl(Duration::from_secs(3600))
///     // Later, but the setters above still hold: public_url, cookies, provider and TTL.
///     .config(JitConfig::new("https://ignored.example.com"))
///     .store(MemoryStore::new())
///     .build()
///     .unwrap();
/// assert_eq!(layer.redirect_uri("dev").unwrap(), "http://127.0.0.1:3000/auth/dev/callback");
/// ```
#[must_use]
#[derive(Default)]
pub struct JitLayerBuilder {
    /// The configuration given to [`config`](Self::config), if any.
    config: Option<JitConfig>,
    /// What the setters set: it wins over `config`.
    set: Explicit,
    store: Option<SharedStore>,
    /// The user store's session store, if it has one.
    store_sessions: Option<SessionStoreHandle>,
    session_store: Option<SessionStoreHandle>,
    domain_stores: Vec<(String, SharedStore)>,
    /// The application users' loaders of the stores, by domain (`CurrentUser<AppUser>`).
    app_loaders: HashMap<String, crate::store::AppUserLoader>,
    sinks: Vec<Arc<dyn EventSink>>,
    prompts: HashMap<String, Arc<dyn ProvisionPrompt>>,
    resolvers: HashMap<String, Arc<dyn GroupResolver>>,
    replay: Option<Arc<dyn ErasedGuard>>,
    bus: Option<Arc<dyn InvalidationBus>>,
    session_key: Option<SessionKey>,
    previous_session_keys: Vec<SessionKey>,
}

/// The settings given to the builder's setters, applied over its [`JitConfig`] at build.
#[derive(Debug, Default)]
struct Explicit {
    public_url: Option<String>,
    path_prefix: Option<String>,
    providers: std::collections::BTreeMap<String, ProviderConfig>,
    domains: std::collections::BTreeMap<String, DomainPolicy>,
    secure: Option<bool>,
    session_ttl_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    record_cache_ttl_secs: Option<u64>,
    login_ttl_secs: Option<u64>,
    cookie_name: Option<String>,
    max_revoked_sessions: Option<u64>,
    cache_ttl_secs: Option<u64>,
    max_users: Option<u64>,
    unauthenticated: Option<Unauthenticated>,
    idp_timeout: Option<Duration>,
    store_timeout: Option<Duration>,
}

/// The time limits the layer runs with.
#[derive(Clone, Copy)]
struct Timeouts {
    idp: Duration,
    store: Duration,
}

impl Explicit {
    /// The configuration with these settings over it.
    fn apply(self, mut config: JitConfig) -> (JitConfig, Timeouts) {
        fn put<T>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        put(&mut config.public_url, self.public_url);
        put(&mut config.path_prefix, self.path_prefix);
        config.providers.extend(self.providers);
        config.domains.extend(self.domains);
        let session = &mut config.session;
        put(&mut session.secure, self.secure);
        put(&mut session.ttl_secs, self.session_ttl_secs);
        put(&mut session.idle_timeout_secs, self.idle_timeout_secs);
        if self.record_cache_ttl_secs.is_some() {
            session.record_cache_ttl_secs = self.record_cache_ttl_secs;
        }
        put(&mut session.login_ttl_secs, self.login_ttl_secs);
        put(&mut session.cookie_name, self.cookie_name);
        put(&mut session.max_revoked_sessions, self.max_revoked_sessions);
        put(&mut session.unauthenticated, self.unauthenticated);
        put(&mut config.cache.ttl_secs, self.cache_ttl_secs);
        put(&mut config.cache.max_users, self.max_users);
        let timeouts = Timeouts {
            idp: self
                .idp_timeout
                .unwrap_or(Duration::from_secs(config.idp_timeout_secs)),
            store: self
                .store_timeout
                .unwrap_or(Duration::from_secs(config.store_timeout_secs)),
        };
        config.idp_timeout_secs = timeouts.idp.as_secs();
        config.store_timeout_secs = timeouts.store.as_secs();
        (config, timeouts)
    }
}

impl std::fmt::Debug for JitLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitLayerBuilder")
            .field("config", &self.config)
            .field("set", &self.set)
            .field("has_store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl JitLayerBuilder {
    /// The configuration: every setting no setter of this builder sets comes from it (see
    /// [precedence](Self#precedence)); a later call replaces an earlier one.
    pub fn config(mut self, config: JitConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The application's external base URL (`public_url`).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.set.public_url = Some(url.into());
        self
    }

    /// The path prefix of the layer's endpoints (`path_prefix`, default `/auth`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.set.path_prefix = Some(prefix.into());
        self
    }

    /// Adds a provider, or replaces the configuration's provider of this id
    /// (`providers.<id>`).
    pub fn provider(mut self, id: impl Into<String>, provider: ProviderConfig) -> Self {
        self.set.providers.insert(id.into(), provider);
        self
    }

    /// The username policy of a user-store domain (`domains.<name>`), replacing the
    /// configuration's one for that domain.
    ///
    /// ```
    /// # use jit_provision::{JitLayer, config::DomainPolicy, store::MemoryStore};
    /// let mut policy = DomainPolicy::default();
    /// policy.lowercase = true;
    /// let builder = JitLayer::builder()
    ///     .store(MemoryStore::new())
    ///     .domain_policy(jit_provision::config::PRIMARY_DOMAIN, policy);
    /// # let _ = builder;
    /// ```
    pub fn domain_policy(mut self, domain: impl Into<String>, policy: DomainPolicy) -> Self {
        self.set.domains.insert(domain.into(), policy);
        self
    }

    /// The user store.
    pub fn store(mut self, store: impl UserStore) -> Self {
        self.store_sessions = store.session_store();
        self.app_loaders.remove(PRIMARY_DOMAIN);
        if let Some(loader) = store.app_users() {
            self.app_loaders.insert(PRIMARY_DOMAIN.to_owned(), loader);
        }
        self.store = Some(Arc::new(store));
        self
    }

    /// Registers another user-store domain (WSO2's secondary user stores): providers whose
    /// [`DomainRule`](crate::config::DomainRule) names `name` provision into `store`.
    pub fn domain_store(mut self, name: impl Into<String>, store: impl UserStore) -> Self {
        let name = name.into();
        if let Some(loader) = store.app_users() {
            self.app_loaders.insert(name.clone(), loader);
        }
        self.domain_stores.push((name, Arc::new(store)));
        self
    }

    /// Delivers every [`ProvisioningEvent`](crate::events::ProvisioningEvent) (created,
    /// updated with the diff, linked, rejected, ...) to `sink`, for audit or outbound
    /// provisioning. May be called several times.
    pub fn on_event(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Runs `hook` before a user of `provider` is created (consent, choose a username, set a
    /// password); see [`prompt`](crate::prompt).
    pub fn prompt(mut self, provider: impl Into<String>, hook: impl ProvisionPrompt) -> Self {
        self.prompts.insert(provider.into(), Arc::new(hook));
        self
    }

    /// Fetches the full group list of a user of `provider` when its identity provider sends
    /// a group overage (Entra ID's `_claim_names` / `hasgroups`) instead of the groups; see
    /// [`GroupResolver`]. Without one, an overage keeps the user's grants as they are.
    pub fn group_resolver(
        mut self,
        provider: impl Into<String>,
        resolver: impl GroupResolver,
    ) -> Self {
        self.resolvers.insert(provider.into(), Arc::new(resolver));
        self
    }

    /// Where one-time values (OIDC `state`, SAML assertion ids) are remembered. Default: a
    /// [`MemoryReplayGuard`] of a million values, right for one instance; several instances
    /// need a shared guard (the SQL stores are guards). A full memory guard refuses new
    /// logins (`503 replay_guard_full`) rather than forget a value:
    ///
    /// ```
    /// # use jit_provision::{JitLayer, replay::MemoryReplayGuard, store::MemoryStore};
    /// let builder = JitLayer::builder()
    ///     .store(MemoryStore::new())
    ///     .replay_guard(MemoryReplayGuard::with_capacity(100_000));
    /// # let _ = builder;
    /// ```
    pub fn replay_guard(mut self, guard: impl ReplayGuard) -> Self {
        self.replay = Some(Arc::new(guard));
        self
    }

    /// Carries cache invalidations (user changed, session ended) between instances; the layer
    /// follows it from a background task. Default: none (one instance). The layer signs what
    /// it sends with a key derived from its session key and drops what does not verify, so
    /// every instance must share the session keys. The instances must share a session store
    /// too (the user store's, or [`session_store`](Self::session_store)): without one,
    /// [`build`](Self::build) fails with [`ConfigError::BusWithoutSessionStore`].
    pub fn invalidation_bus(mut self, bus: impl InvalidationBus) -> Self {
        self.bus = Some(Arc::new(bus));
        self
    }

    /// The key sealing the cookies (overrides `session.key` of the configuration). It also
    /// opens them, as do the [previous keys](Self::previous_session_key).
    pub fn session_key(mut self, key: SessionKey) -> Self {
        self.session_key = Some(key);
        self
    }

    /// A key that still opens cookies (and verifies invalidations) but no longer seals them,
    /// after those of `session.previous_keys`; may be called several times. To rotate the
    /// session key, make the old one a previous key and seal with a new one: nobody is
    /// logged out. Drop the old key once its sessions have expired (a session TTL later).
    ///
    /// ```
    /// # use jit_provision::{JitLayer, session::SessionKey, store::MemoryStore};
    /// let (old, new) = (SessionKey::generate(), SessionKey::generate());
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .session_key(new)
    ///     .previous_session_key(old)
    ///     .store(MemoryStore::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn previous_session_key(mut self, key: SessionKey) -> Self {
        self.previous_session_keys.push(key);
        self
    }

    /// Cookies without `Secure`, for plain-http development on a loopback `public_url` only.
    pub fn insecure_cookies_for_localhost(mut self) -> Self {
        self.set.secure = Some(false);
        self
    }

    /// Session lifetime (`session.ttl_secs`, default 8 hours).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.set.session_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// Lifetime of a pending login, from its start to the callback (`session.login_ttl_secs`,
    /// default 10 minutes).
    pub fn login_ttl(mut self, ttl: Duration) -> Self {
        self.set.login_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// Session cookie name (`session.cookie_name`, default `jit_session`, with the `__Host-`
    /// prefix when secure).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.set.cookie_name = Some(name.into());
        self
    }

    /// Idle timeout of sessions (`session.idle_timeout_secs`; default none, and
    /// `Duration::ZERO` is none): a session with no request for this long ends, before its
    /// absolute [`session_ttl`](Self::session_ttl).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use jit_provision::{JitLayer, store::MemoryStore};
    /// let builder = JitLayer::builder()
    ///     .store(MemoryStore::new())
    ///     .session_idle_timeout(Duration::from_secs(30 * 60));
    /// # let _ = builder;
    /// ```
    pub fn session_idle_timeout(mut self, idle: Duration) -> Self {
        self.set.idle_timeout_secs = Some(idle.as_secs());
        self
    }

    /// How long a session record is served from memory before it is read again
    /// (`session.record_cache_ttl_secs`; default the [cache TTL](Self::cache_ttl)). Without
    /// an invalidation bus, the longest another instance may still accept a session ended
    /// elsewhere.
    pub fn session_record_cache_ttl(mut self, ttl: Duration) -> Self {
        self.set.record_cache_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// Where sessions are kept (default: the user store's own, see
    /// [`UserStore::session_store`]; else memory). Sessions in the store hold across
    /// restarts and between instances: a logout is a logout everywhere.
    ///
    /// ```
    /// # use jit_provision::{JitLayer, session::MemorySessionStore, store::MemoryStore};
    /// let builder = JitLayer::builder()
    ///     .store(MemoryStore::new())
    ///     .session_store(MemorySessionStore::new());
    /// # let _ = builder;
    /// ```
    pub fn session_store(mut self, store: impl SessionStore) -> Self {
        self.session_store = Some(SessionStoreHandle::new(store));
        self
    }

    /// Deprecated, no effect (`session.max_revoked_sessions`): ended sessions are kept in
    /// the session store.
    pub fn max_revoked_sessions(mut self, max: u64) -> Self {
        self.set.max_revoked_sessions = Some(max);
        self
    }

    /// How long a user stays in the in-memory cache (`cache.ttl_secs`, default 60 s).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.set.cache_ttl_secs = Some(ttl.as_secs());
        self
    }

    /// Most users held in the in-memory cache (`cache.max_users`, default 100 000).
    pub fn cache_max_users(mut self, max: u64) -> Self {
        self.set.max_users = Some(max);
        self
    }

    /// What the extractor answers when nobody is logged in (`session.unauthenticated`).
    pub fn unauthenticated(mut self, action: crate::config::Unauthenticated) -> Self {
        self.set.unauthenticated = Some(action);
        self
    }

    /// Time limit of every request to an identity provider (`idp_timeout_secs`, default
    /// 10 s).
    pub fn idp_timeout(mut self, timeout: Duration) -> Self {
        self.set.idp_timeout = Some(timeout);
        self
    }

    /// Time limit of every call to a user store (`store_timeout_secs`, default 10 s, above the SQL stores' own
    /// 5 s pool and lock waits). A call still running then is dropped, and the request gets a
    /// `503` ([`StoreError::Unavailable`](crate::store::StoreError::Unavailable) with a
    /// [`StoreTimeout`](crate::store::StoreTimeout) source): no session, nothing cached. Your
    /// store's futures must therefore leave nothing half-written when dropped, which a
    /// transaction that is never committed guarantees.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use jit_provision::{JitLayer, store::MemoryStore};
    /// let builder = JitLayer::builder()
    ///     .store(MemoryStore::new())
    ///     .store_timeout(Duration::from_secs(3));
    /// # let _ = builder;
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.set.store_timeout = Some(timeout);
        self
    }

    /// Checks the configuration and builds the layer. Providers are discovered lazily, at
    /// their first login, so an identity provider that is down does not stop the application
    /// from starting.
    pub fn build(self) -> Result<JitLayer, ConfigError> {
        if !crate::install_jwt_backend() {
            return Err(ConfigError::NoJwtBackend);
        }
        let (config, timeouts) = self
            .set
            .apply(self.config.unwrap_or_else(|| JitConfig::new("")));
        let store = self.store.ok_or(ConfigError::MissingStore)?;
        let (public, origin, prefix) = validate_urls(&config)?;
        let (key, previous_keys) = session_keys(
            self.session_key,
            self.previous_session_keys,
            &config,
            self.bus.is_some(),
        )?;
        check_references(&config, &self.resolvers)?;
        // One HTTP client (one connection pool) for every identity-provider request.
        let http = crate::idp::HttpClient::new(timeouts.idp);
        let BuiltProviders {
            mut oidc,
            policies,
            #[cfg(feature = "saml")]
            saml,
        } = build_providers(&config, &origin, &prefix, &http)?;
        let codec = CookieCodec::new(&key, &previous_keys, config.session.secure);
        let bus = self
            .bus
            .map(|bus| SignedBus::new(bus, InvalidationSigner::new(&key, &previous_keys)));
        let domains = build_domains(&config, store, self.domain_stores, timeouts.store)?;
        let bearer = build_bearer(&config, &http, &mut oidc)?;
        let cache = UserCache::new(&config.cache, config.session.record_cache_ttl_secs);
        let metrics = Arc::new(Metrics::default());
        let users = Directory::new(domains, cache.clone(), bus.clone(), metrics.clone());
        let session_store = self.session_store.or(self.store_sessions);
        let sessions = build_sessions(session_store, &config, &codec, &cache, &bus, timeouts)?;
        let context = Arc::new(crate::extract::AuthContext {
            prefix: prefix.clone(),
            unauthenticated: config.session.unauthenticated.clone(),
            bearer: bearer.is_some(),
            app_users: crate::extract::AppUsersContext {
                loaders: self.app_loaders,
                cache: Some((cache.app_users.clone(), cache.user_invalidations.clone())),
                timeout: timeouts.store,
            },
        });
        let events = Events::new(self.sinks);
        let replay = self
            .replay
            .unwrap_or_else(|| Arc::new(MemoryReplayGuard::new()));
        let flow = LoginFlow::new(
            codec,
            !self.prompts.is_empty(),
            replay,
            config.session.login_ttl_secs,
            prefix.clone(),
        );
        let provisioner = Provisioner::new(
            users.clone(),
            policies,
            sessions.clone(),
            metrics.clone(),
            events.clone(),
            Hooks {
                prompts: self.prompts,
                resolvers: self.resolvers,
            },
        );
        let shared = Arc::new(Shared {
            site: Site {
                prefix,
                origin: public.origin(),
            },
            idps: Idps {
                oidc,
                #[cfg(feature = "saml")]
                saml,
                bearer,
            },
            users,
            provisioner,
            sessions,
            flow,
            events,
            metrics,
            context,
            refresher: crate::tokens::Refresher::new(),
            stop: Arc::new(tokio::sync::Notify::new()),
        });
        if let Some(bus) = bus {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
            // Subscribed here, not in the task: what is sent once `build()` returns reaches
            // this layer even before the task first runs.
            let events = bus.subscribe();
            runtime.spawn(follow(events, Arc::downgrade(&shared), shared.stop.clone()));
        }
        Ok(JitLayer { shared })
    }
}

/// The step of [`JitLayerBuilder::build`] that checks what names a provider: the provider
/// `session.unauthenticated` redirects to, and those with a group resolver.
fn check_references(
    config: &JitConfig,
    resolvers: &HashMap<String, Arc<dyn GroupResolver>>,
) -> Result<(), ConfigError> {
    if let Unauthenticated::RedirectToLogin(provider) = &config.session.unauthenticated
        && !config.providers.contains_key(provider)
    {
        return Err(ConfigError::Provider {
            id: provider.clone(),
            reason: "session.unauthenticated redirects to it, but it is not configured".into(),
        });
    }
    if let Some(id) = resolvers
        .keys()
        .find(|id| !config.providers.contains_key(*id))
    {
        return Err(ConfigError::Provider {
            id: id.clone(),
            reason: "a group resolver is registered for it, but it is not configured".into(),
        });
    }
    Ok(())
}

/// The step of [`JitLayerBuilder::build`] that makes the bearer-token verifier, if any
/// provider accepts bearer tokens. An issuer whose bearer tokens are verified has one key
/// cache, read by its login and logout tokens too.
fn build_bearer(
    config: &JitConfig,
    http: &crate::idp::HttpClient,
    oidc: &mut HashMap<String, Arc<OidcProvider>>,
) -> Result<Option<crate::bearer::Bearer>, ConfigError> {
    let bearer =
        crate::bearer::Bearer::new(&config.providers, http.clone(), config.cache.max_users)
            .map_err(ConfigError::Bearer)?;
    if let Some(bearer) = &bearer {
        for provider in oidc.values_mut() {
            let keys = bearer.key_source(provider.config.issuer());
            if let (Some(provider), Some(keys)) = (Arc::get_mut(provider), keys) {
                provider.share_keys(keys);
            }
        }
    }
    Ok(bearer)
}

/// The step of [`JitLayerBuilder::build`] that makes the user-store domains: the primary
/// store and each named one, time-limited, with the configured username policies; every
/// domain a provider or a policy names must have a store.
fn build_domains(
    config: &JitConfig,
    primary: SharedStore,
    named: Vec<(String, SharedStore)>,
    store_timeout: Duration,
) -> Result<HashMap<Arc<str>, Arc<Domain>>, ConfigError> {
    let mut domains = HashMap::new();
    for (name, store) in std::iter::once((PRIMARY_DOMAIN.to_owned(), primary)).chain(named) {
        let name: Arc<str> = Arc::from(name);
        let policy = config.domains.get(&*name).cloned().unwrap_or_default();
        let domain = Domain {
            name: name.clone(),
            store: crate::store::time_limited(store, store_timeout),
            policy,
        };
        if domains.insert(name.clone(), Arc::new(domain)).is_some() {
            return Err(ConfigError::Domain(format!(
                "the domain `{name}` is registered twice"
            )));
        }
    }
    for (id, provider) in &config.providers {
        if let crate::config::DomainRule::Fixed(name) = &provider.domain
            && !domains.contains_key(name.as_str())
        {
            return Err(ConfigError::Provider {
                id: id.clone(),
                reason: format!(
                    "its domain `{name}` has no store: call .domain_store(\"{name}\", ...)"
                ),
            });
        }
    }
    if let Some(name) = config
        .domains
        .keys()
        .find(|d| !domains.contains_key(d.as_str()))
    {
        return Err(ConfigError::Domain(format!(
            "domains.{name} has a policy but no store: call .domain_store(\"{name}\", ...)"
        )));
    }
    Ok(domains)
}

/// The step of [`JitLayerBuilder::build`] that makes the sessions over the given session
/// store, or over one in memory (refused with a bus: other instances would not see them).
fn build_sessions(
    store: Option<SessionStoreHandle>,
    config: &JitConfig,
    codec: &CookieCodec,
    cache: &UserCache,
    bus: &Option<SignedBus>,
    timeouts: Timeouts,
) -> Result<Sessions, ConfigError> {
    let store = match store {
        Some(store) => store,
        // Sessions in one instance's memory would not hold on the others.
        None if bus.is_some() => return Err(ConfigError::BusWithoutSessionStore),
        None => {
            tracing::warn!(
                "no session store: sessions are kept in memory, so they end when the process does and are not seen by other instances"
            );
            SessionStoreHandle::new(crate::session::MemorySessionStore::new())
        }
    };
    Ok(Sessions::new(
        // A token refresh waits for the session's lock (another refresh of it, up to a
        // request to the provider), then runs one request to the provider under it.
        store.time_limited(timeouts.store, (timeouts.store + timeouts.idp) * 2),
        codec.clone(),
        codec.name(&config.session.cookie_name, true),
        config.session.ttl_secs,
        config.session.idle_timeout_secs,
        cache.clone(),
        bus.clone(),
    ))
}

fn is_loopback_http(url: &url::Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// The first step of [`JitLayerBuilder::build`]: the public URL (an origin), the path prefix,
/// and the cookie settings they allow. Returns the public URL, its origin and the prefix.
fn validate_urls(config: &JitConfig) -> Result<(url::Url, String, String), ConfigError> {
    let public = url::Url::parse(&config.public_url)
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .ok_or_else(|| ConfigError::PublicUrl(config.public_url.clone()))?;
    let origin = public.origin().ascii_serialization();
    let prefix = config.path_prefix.clone();
    if !prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.contains(['?', '#', '\\'])
        || prefix.contains("//")
    {
        return Err(ConfigError::PathPrefix(prefix));
    }
    if !config.session.secure && !is_loopback_http(&public) {
        return Err(ConfigError::InsecureCookies);
    }
    if config.session.secure && public.scheme() == "http" {
        return Err(ConfigError::SecureCookiesOnHttp(config.public_url.clone()));
    }
    Ok((public, origin, prefix))
}

/// The step of [`JitLayerBuilder::build`] that settles the session keys: the one given, or
/// the configured one, or a generated one (with a warning); then the previous keys of the
/// configuration followed by those `added` by the builder.
fn session_keys(
    given: Option<SessionKey>,
    added: Vec<SessionKey>,
    config: &JitConfig,
    has_bus: bool,
) -> Result<(SessionKey, Vec<SessionKey>), ConfigError> {
    let key = match (given, &config.session.key) {
        (Some(key), _) => key,
        (None, Some(text)) => {
            SessionKey::from_base64(text.expose()).ok_or(ConfigError::SessionKey)?
        }
        (None, None) => {
            tracing::warn!(
                "no session key configured: generated one; sessions end when the process does and are not shared between instances"
            );
            if has_bus {
                tracing::warn!(
                    "no session key configured: the other instances cannot verify this one's invalidations, nor this one theirs"
                );
            }
            SessionKey::generate()
        }
    };
    let mut previous_keys = config
        .session
        .previous_keys
        .iter()
        .enumerate()
        .map(|(i, text)| {
            SessionKey::from_base64(text.expose()).ok_or(ConfigError::PreviousSessionKey(i))
        })
        .collect::<Result<Vec<_>, _>>()?;
    previous_keys.extend(added);
    Ok((key, previous_keys))
}

/// The providers of a layer, as [`build_providers`] makes them.
struct BuiltProviders {
    oidc: HashMap<String, Arc<OidcProvider>>,
    policies: HashMap<String, Arc<Policy>>,
    #[cfg(feature = "saml")]
    saml: HashMap<String, Arc<crate::saml::SamlServiceProvider>>,
}

/// The step of [`JitLayerBuilder::build`] that checks every provider section and builds its
/// policy and its OpenID Connect or SAML side, all sharing `http`.
fn build_providers(
    config: &JitConfig,
    origin: &str,
    prefix: &str,
    http: &crate::idp::HttpClient,
) -> Result<BuiltProviders, ConfigError> {
    let mut providers = HashMap::new();
    let mut policies = HashMap::new();
    #[cfg(feature = "saml")]
    let mut saml_providers = HashMap::new();
    for (id, provider) in &config.providers {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::ProviderId(id.clone()));
        }
        let policy = Policy::new(id, provider, None).map_err(|reason| ConfigError::Provider {
            id: id.clone(),
            reason,
        })?;
        policies.insert(id.clone(), Arc::new(policy));
        #[cfg(feature = "saml")]
        if let Some(saml) = provider.saml_config() {
            let sp = crate::saml::SamlServiceProvider::new(
                id.clone(),
                saml.clone(),
                format!("{origin}{prefix}/{id}/acs"),
                format!("{origin}{prefix}/{id}/metadata"),
            )
            .map_err(|e| ConfigError::Provider {
                id: id.clone(),
                reason: e.to_string(),
            })?;
            sp.use_http(http.clone());
            saml_providers.insert(id.clone(), Arc::new(sp));
            if provider.backchannel_logout
                || provider.rp_initiated_logout
                || provider.frontchannel_logout
            {
                return Err(ConfigError::Provider {
                    id: id.clone(),
                    reason: "backchannel_logout, rp_initiated_logout and frontchannel_logout are OpenID Connect settings".into(),
                });
            }
            continue;
        }
        if provider.issuer().is_empty() || provider.client_id().is_empty() {
            return Err(ConfigError::Provider {
                id: id.clone(),
                reason: "an OpenID Connect provider needs `issuer` and `client_id` (or a `saml` section)".into(),
            });
        }
        if let Some(path) = &provider.post_logout_redirect_path
            && crate::session::check_return_to(path).is_err()
        {
            return Err(ConfigError::Provider {
                id: id.clone(),
                reason: format!(
                    "post_logout_redirect_path `{}` must be a same-origin path like `/signed-out`",
                    path.chars().take(64).collect::<String>()
                ),
            });
        }
        let redirect = format!("{origin}{prefix}/{id}/callback");
        let oidc = OidcProvider::new(id.clone(), provider.clone(), redirect, http.clone())
            .map_err(|reason| ConfigError::Provider {
                id: id.clone(),
                reason,
            })?;
        providers.insert(id.clone(), Arc::new(oidc));
    }
    Ok(BuiltProviders {
        oidc: providers,
        policies,
        #[cfg(feature = "saml")]
        saml: saml_providers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn file_config() -> JitConfig {
        let mut config = JitConfig::new("https://from-config.example.com");
        config.path_prefix = "/config".into();
        config.session.ttl_secs = 111;
        config.session.login_ttl_secs = 222;
        config.session.cookie_name = "from_config".into();
        config.cache.ttl_secs = 333;
        config.cache.max_users = 444;
        config.idp_timeout_secs = 5;
        config.store_timeout_secs = 6;
        config.providers.insert(
            "corp".into(),
            ProviderConfig::new("https://config-idp.example.com", "config-client"),
        );
        config.providers.insert(
            "other".into(),
            ProviderConfig::new("https://other.example.com", "other"),
        );
        config
    }

    /// Setters called before `.config(..)` and after it both win over it; what they do not
    /// set comes from the configuration.
    #[test]
    fn setters_win_over_the_config_in_either_order() {
        let set = |b: JitLayerBuilder| {
            b.public_url("https://from-setter.example.com")
                .session_ttl(Duration::from_secs(7))
                .cookie_name("from_setter")
                .cache_max_users(9)
                .idp_timeout(Duration::from_millis(1500))
                .provider(
                    "corp",
                    ProviderConfig::new("https://setter-idp.example.com", "setter-client"),
                )
        };
        let before = set(JitLayer::builder()).config(file_config());
        let after = set(JitLayer::builder().config(file_config()));
        for builder in [before, after] {
            let (config, timeouts) = builder.set.apply(builder.config.unwrap());
            assert_eq!(config.public_url, "https://from-setter.example.com");
            assert_eq!(config.session.ttl_secs, 7);
            assert_eq!(config.session.cookie_name, "from_setter");
            assert_eq!(config.cache.max_users, 9);
            assert_eq!(timeouts.idp, Duration::from_millis(1500));
            assert_eq!(
                config.providers["corp"].issuer(),
                "https://setter-idp.example.com"
            );
            // Not set by a setter: the configuration's.
            assert_eq!(config.path_prefix, "/config");
            assert_eq!(config.session.login_ttl_secs, 222);
            assert_eq!(config.cache.ttl_secs, 333);
            assert_eq!(timeouts.store, Duration::from_secs(6));
            assert_eq!(
                config.providers["other"].issuer(),
                "https://other.example.com"
            );
        }
    }

    /// The built layer runs with the merged settings (the setters' URL and provider, the
    /// configuration's prefix), not with the last `.config(..)` alone.
    #[test]
    fn a_built_layer_keeps_setters_given_before_the_config() {
        let layer = JitLayer::builder()
            .public_url("https://from-setter.example.com")
            .provider(
                "corp",
                ProviderConfig::new("https://setter-idp.example.com", "setter-client"),
            )
            .config(file_config())
            .store(MemoryStore::new())
            .build()
            .unwrap();
        assert_eq!(
            layer.redirect_uri("corp").unwrap(),
            "https://from-setter.example.com/config/corp/callback"
        );
        assert!(layer.redirect_uri("other").is_some());
    }

    /// Every identity-provider request of a layer (OIDC discovery, tokens and keys, bearer
    /// keys, SAML metadata) goes through the one client `build` makes; SAML metadata keeps
    /// its own time limit per request.
    #[tokio::test(flavor = "current_thread")]
    async fn a_layer_builds_one_http_client() {
        let built = || crate::idp::http::BUILT.with(|n| n.get());
        let before = built();
        let mut builder = JitLayer::builder()
            .public_url("http://localhost:3000")
            .insecure_cookies_for_localhost()
            .provider(
                "corp",
                ProviderConfig::new("https://idp.example.com", "client").bearer(
                    crate::config::BearerConfig::new(["https://api.example.com"]),
                ),
            )
            .provider(
                "other",
                ProviderConfig::new("https://other.example.com", "other"),
            );
        #[cfg(feature = "saml")]
        {
            builder = builder.provider(
                "saml",
                ProviderConfig::saml(crate::saml::SamlConfig::from_metadata_url(
                    "http://127.0.0.1:9/metadata",
                )),
            );
        }
        builder = builder.store(MemoryStore::new());
        let layer = builder.build().unwrap();
        assert_eq!(built() - before, 1, "one client for the whole layer");
        #[cfg(feature = "saml")]
        {
            let sp = layer.saml_provider("saml").unwrap();
            // Nothing listens there: the load fails, through the layer's client.
            assert!(sp.load_metadata().await.is_err());
            assert_eq!(built() - before, 1, "SAML metadata uses the layer's client");
        }
        drop(layer);
    }

    /// Without setters the configuration is taken whole, timeouts from their keys.
    #[test]
    fn config_alone_gives_every_setting() {
        let builder = JitLayer::builder().config(file_config());
        let (config, timeouts) = builder.set.apply(builder.config.unwrap());
        assert_eq!(config.public_url, "https://from-config.example.com");
        assert_eq!(config.session.cookie_name, "from_config");
        assert_eq!(timeouts.idp, Duration::from_secs(5));
        assert_eq!(timeouts.store, Duration::from_secs(6));
        let builder = JitLayer::builder();
        let (_, timeouts) = builder.set.apply(JitConfig::new(""));
        assert_eq!(
            (timeouts.idp, timeouts.store),
            (Duration::from_secs(10), Duration::from_secs(10))
        );
    }

    #[test]
    fn insecure_cookies_refused_for_a_public_origin() {
        let err = JitLayer::builder()
            .public_url("http://app.example.com")
            .insecure_cookies_for_localhost()
            .store(MemoryStore::new())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InsecureCookies));
    }

    #[test]
    fn secure_cookies_refused_on_plain_http() {
        for url in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "http://app.example.com",
        ] {
            let err = JitLayer::builder()
                .public_url(url)
                .store(MemoryStore::new())
                .build()
                .unwrap_err();
            assert!(
                matches!(err, ConfigError::SecureCookiesOnHttp(_)),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("session.secure = false"), "{err}");
        }
        // What the message advises works on loopback.
        JitLayer::builder()
            .public_url("http://127.0.0.1:3000")
            .insecure_cookies_for_localhost()
            .store(MemoryStore::new())
            .build()
            .expect("plain http on loopback without Secure cookies");
    }

    #[test]
    fn bad_prefix_and_provider_id_refused() {
        let err = JitLayer::builder()
            .public_url("https://app.example.com")
            .path_prefix("/auth/")
            .store(MemoryStore::new())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::PathPrefix(_)));
        let err = JitLayer::builder()
            .public_url("https://app.example.com")
            .provider("a/b", ProviderConfig::new("https://idp", "c"))
            .store(MemoryStore::new())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::ProviderId(_)));
    }

    #[test]
    fn public_url_must_be_an_origin_and_redirect_target_must_exist() {
        for url in [
            "https://app.example.com/app",
            "https://a.example?x=1",
            "ftp://a.example",
        ] {
            let err = JitLayer::builder()
                .public_url(url)
                .store(MemoryStore::new())
                .build()
                .unwrap_err();
            assert!(matches!(err, ConfigError::PublicUrl(_)), "{url}");
        }
        let err = JitLayer::builder()
            .public_url("https://app.example.com")
            .unauthenticated(Unauthenticated::RedirectToLogin("typo".into()))
            .store(MemoryStore::new())
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Provider { ref id, .. } if id == "typo"));
    }

    #[test]
    fn store_is_required() {
        let err = JitLayer::builder()
            .public_url("https://app.example.com")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingStore));
    }
}
