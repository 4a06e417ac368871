//! Test harness: a development IdP and an axum app wrapped in the JitLayer, both on
//! loopback, and a cookie-keeping HTTP client that follows redirects by hand like a browser.
#![allow(dead_code)]

pub mod bearer;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod session_contract;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use jit_provision::dev_idp::{DevClient, DevIdp, DevKeyType, DevUser};
use jit_provision::store::{
    Identity, IdentityKey, LinkedIdentity, LoginStamp, MemoryStore, Profile, ProfileChanges,
    Refusal, StoreError, User, UserId, UserStore,
};
use jit_provision::{CurrentUser, JitLayer, JitLayerBuilder, MappingConfig, ProviderConfig};
use reqwest::StatusCode;

pub const CLIENT_ID: &str = "test-app";
pub const CLIENT_SECRET: &str = "test-secret";

/// What a [`SwitchableStore`] does wrong in one operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// The store's code panics.
    Panic,
    /// The call never returns (a hung database).
    Hang,
}

/// An application's own rule checked before a `create`: a refusal, or `None` to go on.
pub type CreateRule = Arc<dyn Fn(&MemoryStore, &Profile) -> Option<Refusal> + Send + Sync>;

/// A MemoryStore that can be switched into an outage (of everything, or of updates only),
/// made to panic or hang in one operation, or given a rule of the application's own that
/// refuses some creations.
#[derive(Clone, Default)]
pub struct SwitchableStore {
    pub inner: MemoryStore,
    pub down: Arc<AtomicBool>,
    pub updates_down: Arc<AtomicBool>,
    fault: Arc<Mutex<Option<(Fault, &'static str)>>>,
    create_rule: Arc<Mutex<Option<CreateRule>>>,
}

impl SwitchableStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes the operation named (`"*"`: every one) panic or hang; `None` heals it.
    pub fn set_fault(&self, fault: Option<(Fault, &'static str)>) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Refuses every `create` `rule` answers a [`Refusal`] for (writing nothing), as an
    /// application's store enforcing a constraint of its own would.
    pub fn refuse_create_when(
        &self,
        rule: impl Fn(&MemoryStore, &Profile) -> Option<Refusal> + Send + Sync + 'static,
    ) {
        *self.create_rule.lock().unwrap() = Some(Arc::new(rule));
    }

    async fn enter(&self, op: &'static str) -> Result<(), StoreError> {
        let fault = *self.fault.lock().unwrap();
        match fault {
            Some((Fault::Panic, at)) if at == "*" || at == op => {
                panic!("a bug in the application's store")
            }
            Some((Fault::Hang, at)) if at == "*" || at == op => std::future::pending::<()>().await,
            _ => {}
        }
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("simulated outage"))
        } else {
            Ok(())
        }
    }
}

impl UserStore for SwitchableStore {
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
        self.enter("find_by_identity").await?;
        self.inner.find_by_identity(key).await
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.enter("find_by_id").await?;
        self.inner.find_by_id(id).await
    }
    async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
        self.enter("create").await?;
        let rule = self.create_rule.lock().unwrap().clone();
        if let Some(refusal) = rule.and_then(|rule| rule(&self.inner, profile)) {
            return Err(refusal.into());
        }
        self.inner.create(identity, profile).await
    }
    async fn update(&self, id: UserId, changes: &ProfileChanges) -> Result<User, StoreError> {
        self.enter("update").await?;
        if self.updates_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("simulated update outage"));
        }
        self.inner.update(id, changes).await
    }
    async fn update_from_login(
        &self,
        key: &IdentityKey,
        at: LoginStamp,
        changes: &ProfileChanges,
    ) -> Result<Option<User>, StoreError> {
        // A login's update: faults named "update" hit it too.
        self.enter("update").await?;
        if self.updates_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("simulated update outage"));
        }
        self.inner.update_from_login(key, at, changes).await
    }
    async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.enter("find_by_username").await?;
        self.inner.find_by_username(username).await
    }
    async fn find_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        self.enter("find_by_email").await?;
        self.inner.find_by_email(email).await
    }
    async fn link(&self, identity: &Identity, user: UserId) -> Result<(), StoreError> {
        self.enter("link").await?;
        self.inner.link(identity, user).await
    }
    async fn record_login(&self, key: &IdentityKey, at: i64) -> Result<(), StoreError> {
        self.enter("record_login").await?;
        self.inner.record_login(key, at).await
    }
    async fn identities_of(&self, user: UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.enter("identities_of").await?;
        self.inner.identities_of(user).await
    }
    async fn identities_by_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.enter("identities_by_provider").await?;
        self.inner.identities_by_provider(provider).await
    }
    async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
        self.enter("set_locked").await?;
        self.inner.set_locked(id, locked).await
    }
    async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        self.enter("delete").await?;
        self.inner.delete(id).await
    }
    fn session_store(&self) -> Option<jit_provision::session::SessionStoreHandle> {
        self.inner.session_store()
    }
}

pub struct TestApp {
    pub base: String,
    pub idp: DevIdp,
    pub store: SwitchableStore,
    pub layer: JitLayer,
    pub client: reqwest::Client,
}

pub fn alice() -> DevUser {
    DevUser::new(
        "sub-alice",
        "alice",
        "alice@example.com",
        "Alice",
        &["staff"],
    )
}

pub fn bob() -> DevUser {
    DevUser::new("sub-bob", "bob", "bob@example.com", "Bob", &["staff"])
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn me(user: CurrentUser) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "groups": user.groups,
        "roles": user.roles,
        "provider": user.auth.provider,
        "subject": user.auth.subject,
    }))
}

pub fn default_provider(issuer: &str) -> ProviderConfig {
    ProviderConfig::new(issuer, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .mapping({
            let mut built = MappingConfig::default();
            built.groups = Some(jit_provision::config::GroupsConfig::from_claim("groups"));
            built
        })
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|p| p, |b| b).await
    }

    /// Starts an IdP and an app; `provider` and `builder` adjust the configuration.
    pub async fn start_with(
        provider: impl FnOnce(ProviderConfig) -> ProviderConfig,
        builder: impl FnOnce(JitLayerBuilder) -> JitLayerBuilder,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        // RS256, what most IdPs sign with, and bearer's default algorithm (the tests that
        // start their own IdP get its ES256 default).
        let idp = DevIdp::builder()
            .key_type(DevKeyType::Rs256)
            .client(
                DevClient::new(CLIENT_ID, CLIENT_SECRET)
                    .redirect_uri(format!("{base}/auth/dev/callback"))
                    .post_logout_redirect_uri(format!("{base}/auth/logout/done"))
                    .backchannel_logout_uri(format!("{base}/auth/dev/backchannel-logout")),
            )
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let store = SwitchableStore::default();
        let layer = builder(
            JitLayer::builder()
                .public_url(&base)
                .insecure_cookies_for_localhost()
                .provider("dev", provider(default_provider(idp.issuer())))
                .store(store.clone()),
        )
        .build()
        .unwrap();
        let admin = layer.admin_router(|user| user.groups.contains("admins"));
        let app = Router::new()
            .merge(admin)
            .route(
                "/welcome",
                get(
                    |pending: Option<axum::Extension<jit_provision::prompt::PendingPrompt>>| async move {
                        axum::Json(pending.map(|p| p.0.request.profile.username.clone()))
                    },
                ),
            )
            .route(
                "/api/reports",
                get(|| async { "reports" })
                    .route_layer(jit_provision::bearer::RequireScope::new("reports:read")),
            )
            .route("/me", get(me))
            .route(
                "/",
                get(|user: Option<CurrentUser>| async move {
                    match user {
                        Some(u) => format!("hello {}", u.username),
                        None => "hello stranger".to_owned(),
                    }
                }),
            )
            .layer(layer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            idp,
            store,
            layer,
            client: browser(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts a login at the app; returns the IdP authorization URL.
    pub async fn start_login(&self, client: &reqwest::Client, return_to: &str) -> String {
        let response = client
            .get(self.url(&format!("/auth/dev/login?return_to={return_to}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND, "login start");
        location(&response)
    }

    /// Submits the IdP login page for `user`; returns the IdP's response (a redirect to the
    /// callback, or the form_post page).
    pub async fn approve(
        &self,
        client: &reqwest::Client,
        authorize_url: &str,
        user: &DevUser,
    ) -> reqwest::Response {
        let form = DevIdp::approve_form(authorize_url, user);
        client
            .post(format!("{}/authorize", self.idp.issuer()))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// The callback URL the IdP sends the browser to, after approving `user`.
    pub async fn callback_url(&self, client: &reqwest::Client, user: &DevUser) -> String {
        let authorize = self.start_login(client, "/me").await;
        let response = self.approve(client, &authorize, user).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "IdP approval");
        location(&response)
    }

    /// A whole login with `client`; returns the app's answer to the callback.
    pub async fn login_with(&self, client: &reqwest::Client, user: &DevUser) -> reqwest::Response {
        let callback = self.callback_url(client, user).await;
        client.get(callback).send().await.unwrap()
    }

    /// A whole login with the harness's own browser.
    pub async fn login(&self, user: &DevUser) -> reqwest::Response {
        self.login_with(&self.client, user).await
    }

    pub async fn me(&self) -> reqwest::Response {
        self.me_with(&self.client).await
    }

    pub async fn me_with(&self, client: &reqwest::Client) -> reqwest::Response {
        client.get(self.url("/me")).send().await.unwrap()
    }

    pub async fn logout(&self) -> reqwest::Response {
        self.client
            .post(self.url("/auth/logout"))
            .send()
            .await
            .unwrap()
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in {response:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `Set-Cookie` headers of a response.
pub fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `name=value` pairs a response sets, as one `Cookie` header: what a browser sends back
/// (the pending-login cookie and the binder cookie of a login start, say).
pub fn cookie_header(response: &reqwest::Response) -> String {
    set_cookies(response)
        .iter()
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Asserts a refused request: `status`, no session cookie, and the error `code` in the body.
pub async fn assert_refused(response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "expected {status} {code}");
    assert!(!sets_session(&response), "{code}: a session was issued");
    assert_eq!(error_code(response).await, code);
}

/// True when the response sets a non-empty session cookie.
pub fn sets_session(response: &reqwest::Response) -> bool {
    set_cookies(response)
        .iter()
        .any(|c| c.contains("jit_session=") && !c.contains("jit_session=;"))
}

pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

/// Seconds since the Unix epoch, for token claims.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every [`ProvisioningEvent`](jit_provision::events::ProvisioningEvent) a layer delivered.
pub type Events = Arc<Mutex<Vec<jit_provision::events::ProvisioningEvent>>>;

/// The recorded events of one kind (`"locked"`, `"logged_out"`, ...), as JSON.
pub fn events_of(events: &Events, kind: &str) -> Vec<serde_json::Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["event"] == kind)
        .collect()
}

/// A builder step that records every event into `events`.
pub fn recording(
    events: &Events,
) -> impl Fn(jit_provision::JitLayerBuilder) -> jit_provision::JitLayerBuilder + use<> {
    let events = events.clone();
    move |b: jit_provision::JitLayerBuilder| {
        let events = events.clone();
        b.on_event(move |e: &jit_provision::events::ProvisioningEvent| {
            events.lock().unwrap().push(e.clone())
        })
    }
}

/// The README's prompt hook: asks for consent and lets the user pick another username.
pub struct ChooseUsername;

impl jit_provision::prompt::ProvisionPrompt for ChooseUsername {
    fn before_create(&self, _: &jit_provision::prompt::PromptRequest) -> Option<String> {
        Some("/welcome".into())
    }
    fn resume(
        &self,
        req: &jit_provision::prompt::PromptRequest,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<Profile, String> {
        if form.get("consent").map(String::as_str) != Some("yes") {
            return Err("consent is required".into());
        }
        let mut profile = req.profile.clone();
        if let Some(name) = form.get("username").filter(|n| !n.is_empty()) {
            profile.username = name.clone();
        }
        Ok(profile)
    }
}

/// The `name=value` pair of the session cookie a response sets.
pub fn session_pair(response: &reqwest::Response) -> String {
    set_cookies(response)
        .into_iter()
        .find(|c| c.starts_with("jit_session=") && !c.starts_with("jit_session=;"))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A client that keeps no cookies and follows no redirects: the test carries cookies itself.
pub fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET /me` at `app` with only this cookie.
pub async fn me_with_cookie(app: &TestApp, pair: &str) -> StatusCode {
    plain()
        .get(app.url("/me"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap()
        .status()
}

/// Deletes a test's SQLite files when dropped.
pub struct TempFile(pub std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A new SQLite file in the temporary directory (removed with the guard).
pub async fn sqlite_file() -> (TempFile, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "jit-sessions-{}-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        now()
    ));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    (TempFile(path), url)
}

/// The id of the user whose session cookie `pair` is (from `/me`).
pub async fn user_id(app: &TestApp, pair: &str) -> jit_provision::store::UserId {
    let me: serde_json::Value = plain()
        .get(app.url("/me"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jit_provision::store::UserId(me["id"].as_i64().unwrap())
}
