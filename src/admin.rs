//! Administration: the layer's lifecycle methods and an optional admin router
//! (`GET /admin/jit-users`, `POST /admin/jit-preview`, and the HTML "test your mapping" page
//! `/admin/jit-test`) behind a guard the application supplies.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::CurrentUser;
use crate::config::PRIMARY_DOMAIN;
use crate::events::{LockReason, ProvisioningEvent};
use crate::failure::escape_html;
use crate::invalidation::Invalidation;
use crate::layer::JitLayer;
use crate::mapping::Claims;
use crate::policy::{Deprovision, JitUser, Preview, PreviewAction};
use crate::provision::ProvisionError;
use crate::session::{EndReason, SessionError, SessionRecord};
use crate::store::{Identity, UserId};

impl JitLayer {
    /// What a login with `claims` at `provider` would produce — the user, its domain, its
    /// groups, or the refusal, with the [trace](crate::mapping::Trace) of every decision —
    /// without writing anything. With a `subject`, the existing user of that identity is
    /// compared too.
    ///
    /// ```
    /// # use jit_provision::{Claims, JitLayer, ProviderConfig, store::MemoryStore, policy::PreviewAction};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .provider("corp", ProviderConfig::new("https://login.example.com", "app"))
    ///     .store(MemoryStore::new())
    ///     .build()
    ///     .unwrap();
    /// let claims = Claims(serde_json::json!({"preferred_username": "jane"}).as_object().unwrap().clone());
    /// let preview = layer.preview("corp", None, &claims).await.unwrap();
    /// assert!(matches!(preview.action, PreviewAction::Create));
    /// assert_eq!(preview.profile.unwrap().username, "jane");
    /// assert_eq!(preview.trace.0[0].claims, ["preferred_username"]);
    /// # });
    /// ```
    pub async fn preview(
        &self,
        provider: &str,
        subject: Option<&str>,
        claims: &Claims,
    ) -> Result<Preview, ProvisionError> {
        let shared = self.shared();
        let policy = shared
            .provisioner
            .policy(provider)
            .ok_or_else(|| ProvisionError::UnknownProvider(provider.to_owned()))?;
        let identity = subject.map(|s| Identity::new(provider, "", s));
        Ok(shared
            .provisioner
            .preview(policy, identity.as_ref(), claims)
            .await)
    }

    /// The users linked to `provider`, with the first and last login of that identity,
    /// oldest first, across every user-store domain.
    pub async fn jit_users(&self, provider: &str) -> Result<Vec<JitUser>, ProvisionError> {
        let shared = self.shared();
        if shared.provisioner.policy(provider).is_none() {
            return Err(ProvisionError::UnknownProvider(provider.to_owned()));
        }
        let mut users = Vec::new();
        for domain in shared.users.domains() {
            for identity in domain.store.identities_by_provider(provider).await? {
                if let Some(user) = domain.store.find_by_id(identity.user_id).await? {
                    users.push(JitUser {
                        domain: domain.name.to_string(),
                        user,
                        identity,
                    });
                }
            }
        }
        users.sort_by_key(|u| u.identity.first_login_at);
        Ok(users)
    }

    /// Disables (locks) or deletes every user linked to `provider`, for a provider being
    /// removed; returns how many. Every instance drops the users from its caches (through the
    /// invalidation bus when there is one), and each is reported as an event. The provider
    /// may already be gone from the configuration.
    pub async fn deprovision(
        &self,
        provider: &str,
        action: Deprovision,
    ) -> Result<u64, ProvisionError> {
        let shared = self.shared();
        let mut count = 0;
        for domain in shared.users.domains() {
            for identity in domain.store.identities_by_provider(provider).await? {
                let id = identity.user_id;
                match action {
                    Deprovision::Disable => domain.store.set_locked(id, true).await?,
                    Deprovision::Delete => domain.store.delete(id).await?,
                }
                shared
                    .sessions
                    .end_for_user(&domain.name, id, EndReason::UserLocked)
                    .await
                    .map_err(|SessionError::Store(e)| ProvisionError::Store(e))?;
                shared
                    .users
                    .announce(Invalidation::User {
                        domain: domain.name.to_string(),
                        id,
                    })
                    .await;
                shared
                    .events
                    .emit(ProvisioningEvent::Deprovisioned {
                        provider: provider.to_owned(),
                        domain: domain.name.to_string(),
                        user_id: id,
                        deleted: action == Deprovision::Delete,
                    })
                    .await;
                count += 1;
            }
        }
        Ok(count)
    }

    /// The live sessions of a user (not ended, not expired), oldest first: when and where
    /// each started, when it was last seen (to the minute), its provider.
    ///
    /// ```
    /// # use jit_provision::{JitLayer, store::{MemoryStore, UserId}};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let layer = JitLayer::builder().public_url("https://app.example.com").store(MemoryStore::new()).build().unwrap();
    /// assert!(layer.sessions_of("PRIMARY", UserId(1)).await.unwrap().is_empty());
    /// assert_eq!(layer.end_sessions("PRIMARY", UserId(1)).await.unwrap(), 0);
    /// # });
    /// ```
    pub async fn sessions_of(
        &self,
        domain: &str,
        user_id: UserId,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        self.shared().sessions.list(domain, user_id).await
    }

    /// Ends every session of a user, in the session store and on every instance (through
    /// the invalidation bus when there is one); how many were live.
    pub async fn end_sessions(&self, domain: &str, user_id: UserId) -> Result<usize, SessionError> {
        self.shared()
            .sessions
            .end_for_user(domain, user_id, EndReason::Everywhere)
            .await
    }

    /// Locks a user of the primary user-store domain (an administrator's decision): it cannot
    /// log in, its sessions end at their next request on every instance (through the
    /// invalidation bus when there is one), and a [`ProvisioningEvent::Locked`] is delivered
    /// (with [`LockReason::Admin`]) so the application can revoke its own tokens. Unlock in the
    /// store ([`UserStore::set_locked`](crate::store::UserStore::set_locked)); logins never
    /// unlock.
    ///
    /// ```
    /// # use jit_provision::{JitLayer, store::{Identity, MemoryStore, Profile, UserStore}};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// let layer = JitLayer::builder()
    ///     .public_url("https://app.example.com")
    ///     .store(store.clone())
    ///     .build()
    ///     .unwrap();
    /// let jane = store.create(&Identity::new("corp", "https://idp", "1"), &Profile::new("jane")).await?;
    /// layer.lock_user(jane.id).await?;
    /// assert!(store.find_by_id(jane.id).await?.unwrap().locked);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn lock_user(&self, id: UserId) -> Result<(), ProvisionError> {
        self.lock_domain_user(PRIMARY_DOMAIN, id).await
    }

    /// [`lock_user`](Self::lock_user) for a user of another user-store domain.
    pub async fn lock_domain_user(&self, domain: &str, id: UserId) -> Result<(), ProvisionError> {
        let shared = self.shared();
        let store = &shared
            .users
            .domain(domain)
            .ok_or_else(|| ProvisionError::UnknownDomain(domain.chars().take(64).collect()))?
            .store;
        store.set_locked(id, true).await?;
        tracing::info!(domain, user_id = %id, "an administrator locked a user");
        shared
            .users
            .announce(Invalidation::User {
                domain: domain.to_owned(),
                id,
            })
            .await;
        // The lock is checked at each request anyway; ending the records makes it hold for
        // the sessions themselves too (an unlock does not revive them).
        if let Err(err) = shared
            .sessions
            .end_for_user(domain, id, EndReason::UserLocked)
            .await
        {
            tracing::warn!(domain, user_id = %id, error = %err, "could not end the sessions of a locked user");
        }
        shared
            .events
            .emit(ProvisioningEvent::Locked {
                provider: None,
                domain: domain.to_owned(),
                user_id: id,
                reason: LockReason::Admin,
            })
            .await;
        Ok(())
    }

    /// An admin router: `GET /admin/jit-users?provider=ID` lists the provider's users with
    /// their login times; `POST /admin/jit-preview` with `{"provider", "subject"?, "claims"}`
    /// answers a dry run in JSON (with its [trace](crate::mapping::Trace));
    /// `GET /admin/jit-users/{id}/sessions?domain=D` lists a user's live sessions and
    /// `POST /admin/jit-users/{id}/sessions/end?domain=D` ends them all (`{"ended": n}`;
    /// `domain` defaults to `PRIMARY`);
    /// `GET /admin/jit-test` is an HTML "test your mapping" page: paste claims (JSON) or a
    /// SAML attribute list (`name = value` lines), pick a provider, and see the profile, the
    /// action and the trace (a dry run: nothing is written). Anonymous requests get `401`;
    /// users for whom `guard` says no get `403`. Merge it into your router *inside* the
    /// layer:
    ///
    /// ```no_run
    /// # use axum::Router;
    /// # fn wire(jit: jit_provision::JitLayer) {
    /// let admin = jit.admin_router(|user| user.groups.contains("admins"));
    /// let app: Router = Router::new().merge(admin).layer(jit);
    /// # let _ = app; }
    /// ```
    pub fn admin_router<G>(&self, guard: G) -> Router
    where
        G: Fn(&CurrentUser) -> bool + Send + Sync + 'static,
    {
        let state = AdminState {
            layer: self.clone(),
            guard: Arc::new(guard),
        };
        Router::new()
            .route("/admin/jit-users", get(list))
            .route("/admin/jit-users/{id}/sessions", get(user_sessions))
            .route(
                "/admin/jit-users/{id}/sessions/end",
                post(end_user_sessions),
            )
            .route("/admin/jit-preview", post(preview))
            .route("/admin/jit-test", get(test_page).post(test_mapping))
            .with_state(state)
    }
}

type Guard = Arc<dyn Fn(&CurrentUser) -> bool + Send + Sync>;

#[derive(Clone)]
struct AdminState {
    layer: JitLayer,
    guard: Guard,
}

fn denied(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

fn failure(err: ProvisionError) -> Response {
    (
        err.status(),
        Json(serde_json::json!({ "error": err.code(), "message": err.to_string() })),
    )
        .into_response()
}

/// `None` when the guard lets the user in, else the refusal.
fn refusal(state: &AdminState, user: Option<&CurrentUser>) -> Option<Response> {
    match user {
        None => Some(denied(StatusCode::UNAUTHORIZED, "login_required")),
        Some(user) if !(state.guard)(user) => Some(denied(StatusCode::FORBIDDEN, "forbidden")),
        Some(_) => None,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    provider: String,
}

async fn list(
    State(state): State<AdminState>,
    user: Option<CurrentUser>,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Some(response) = refusal(&state, user.as_ref()) {
        return response;
    }
    match state.layer.jit_users(&query.provider).await {
        Ok(users) => Json(users).into_response(),
        Err(err) => failure(err),
    }
}

#[derive(Deserialize)]
struct DomainQuery {
    #[serde(default = "primary")]
    domain: String,
}

fn primary() -> String {
    crate::config::PRIMARY_DOMAIN.to_owned()
}

fn session_failure(err: SessionError) -> Response {
    (
        err.status(),
        Json(serde_json::json!({ "error": err.code(), "message": err.to_string() })),
    )
        .into_response()
}

/// A session as the admin router shows it (no tokens).
#[derive(serde::Serialize)]
struct SessionView {
    id: String,
    provider: String,
    subject: String,
    idp_session: Option<String>,
    created_at: i64,
    last_seen: i64,
    expires_at: i64,
    idle_timeout_secs: Option<u64>,
}

impl From<SessionRecord> for SessionView {
    fn from(r: SessionRecord) -> Self {
        Self {
            id: r.id,
            provider: r.provider,
            subject: r.subject,
            idp_session: r.idp_session,
            created_at: r.created_at,
            last_seen: r.last_seen,
            expires_at: r.expires_at,
            idle_timeout_secs: r.idle_timeout_secs,
        }
    }
}

async fn user_sessions(
    State(state): State<AdminState>,
    user: Option<CurrentUser>,
    Path(id): Path<i64>,
    Query(query): Query<DomainQuery>,
) -> Response {
    if let Some(response) = refusal(&state, user.as_ref()) {
        return response;
    }
    match state.layer.sessions_of(&query.domain, UserId(id)).await {
        Ok(sessions) => Json(
            sessions
                .into_iter()
                .map(SessionView::from)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(err) => session_failure(err),
    }
}

async fn end_user_sessions(
    State(state): State<AdminState>,
    user: Option<CurrentUser>,
    Path(id): Path<i64>,
    Query(query): Query<DomainQuery>,
    headers: HeaderMap,
) -> Response {
    // A state-changing route a browser could be led to post to from another site.
    if let Err(err) = state.layer.shared().site.check_same_origin(&headers) {
        return denied(err.status(), err.code());
    }
    if let Some(response) = refusal(&state, user.as_ref()) {
        return response;
    }
    match state.layer.end_sessions(&query.domain, UserId(id)).await {
        Ok(ended) => Json(serde_json::json!({ "ended": ended })).into_response(),
        Err(err) => session_failure(err),
    }
}

#[derive(Deserialize)]
struct PreviewRequest {
    provider: String,
    subject: Option<String>,
    claims: Claims,
}

async fn preview(
    State(state): State<AdminState>,
    user: Option<CurrentUser>,
    Json(request): Json<PreviewRequest>,
) -> Response {
    if let Some(response) = refusal(&state, user.as_ref()) {
        return response;
    }
    match state
        .layer
        .preview(
            &request.provider,
            request.subject.as_deref(),
            &request.claims,
        )
        .await
    {
        Ok(preview) => Json(preview).into_response(),
        Err(err) => failure(err),
    }
}

/// The "test your mapping" form as posted.
#[derive(Deserialize)]
struct TestForm {
    provider: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    claims: String,
}

async fn test_page(State(state): State<AdminState>, user: Option<CurrentUser>) -> Response {
    if let Some(response) = refusal(&state, user.as_ref()) {
        return response;
    }
    html(StatusCode::OK, &test_form(&state.layer, None, ""))
}

async fn test_mapping(
    State(state): State<AdminState>,
    user: Option<CurrentUser>,
    Form(form): Form<TestForm>,
) -> Response {
    if let Some(response) = refusal(&state, user.as_ref()) {
        return response;
    }
    let page = |status, result: &str| html(status, &test_form(&state.layer, Some(&form), result));
    let claims = match parse_claims(&form.claims) {
        Ok(claims) => claims,
        Err(reason) => {
            let result = format!("<p class=\"error\">{}</p>", escape_html(&reason));
            return page(StatusCode::BAD_REQUEST, &result);
        }
    };
    let subject = Some(form.subject.trim()).filter(|s| !s.is_empty());
    match state.layer.preview(&form.provider, subject, &claims).await {
        Ok(preview) => page(StatusCode::OK, &render_preview(&preview)),
        Err(err) => {
            let result = format!("<p class=\"error\">{}</p>", escape_html(&err.to_string()));
            page(err.status(), &result)
        }
    }
}

/// Claims pasted into the form: a JSON object, or SAML attribute lines `name = value` (a
/// name given several times becomes an array; blank lines and `#` comments are skipped).
fn parse_claims(text: &str) -> Result<Claims, String> {
    let text = text.trim();
    if text.starts_with('{') {
        return serde_json::from_str(text)
            .map_err(|e| format!("the claims are not a JSON object: {e}"));
    }
    let mut claims = serde_json::Map::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(" = ")
            .or_else(|| line.split_once('='))
            .ok_or_else(|| format!("line {}: expected `name = value`", number + 1))?;
        let (name, value) = (
            name.trim(),
            serde_json::Value::String(value.trim().to_owned()),
        );
        if name.is_empty() {
            return Err(format!("line {}: the attribute name is empty", number + 1));
        }
        match claims.get_mut(name) {
            None => {
                claims.insert(name.to_owned(), value);
            }
            Some(serde_json::Value::Array(values)) => values.push(value),
            Some(first) => *first = serde_json::Value::Array(vec![first.take(), value]),
        }
    }
    Ok(Claims(claims))
}

fn html(status: StatusCode, body: &str) -> Response {
    let mut response = (status, axum::response::Html(body.to_owned())).into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut http::HeaderMap, name, value| {
        headers.insert(name, http::HeaderValue::from_static(value));
    };
    set(headers, http::header::CACHE_CONTROL, "no-store");
    set(
        headers,
        http::header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    );
    set(headers, http::header::X_FRAME_OPTIONS, "DENY");
    response
}

/// The page: the form (filled with what was posted) and the result, already escaped.
fn test_form(layer: &JitLayer, form: Option<&TestForm>, result: &str) -> String {
    let mut providers: Vec<&String> = layer.shared().provisioner.provider_ids().collect();
    providers.sort();
    let chosen = form.map(|f| f.provider.as_str());
    let options: String = providers
        .iter()
        .map(|id| {
            let selected = if chosen == Some(id.as_str()) {
                " selected"
            } else {
                ""
            };
            let id = escape_html(id);
            format!("<option value=\"{id}\"{selected}>{id}</option>")
        })
        .collect();
    let subject = escape_html(form.map_or("", |f| f.subject.as_str()));
    let claims = escape_html(form.map_or("", |f| f.claims.as_str()));
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Test your mapping</title>\
         <style>body{{font-family:sans-serif;margin:2em}}textarea{{width:100%;height:14em}}\
         td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}table{{border-collapse:collapse}}\
         .error{{color:#a00}}</style></head><body><h1>Test your mapping</h1>\
         <p>Paste claims as a JSON object, or a SAML attribute list (<code>name = value</code> \
         lines). This is a dry run: nothing is written.</p>\
         <form method=\"post\" action=\"jit-test\"><p><label>Provider <select name=\"provider\">{options}</select></label> \
         <label>Subject (optional, to compare with its user) <input name=\"subject\" value=\"{subject}\"></label></p>\
         <p><textarea name=\"claims\">{claims}</textarea></p><p><button>Test</button></p></form>\
         <section id=\"result\">{result}</section></body></html>"
    )
}

/// A dry run as HTML: the action, the profile, the preview-only values and the trace.
fn render_preview(preview: &Preview) -> String {
    let action = match &preview.action {
        PreviewAction::Create => "create a user".to_owned(),
        PreviewAction::Link { .. } => "link to an existing user".to_owned(),
        PreviewAction::Update { .. } => "update the existing user".to_owned(),
        PreviewAction::Unchanged => "nothing changes".to_owned(),
        PreviewAction::Refuse { code, reason } => format!("refuse: {code} ({reason})"),
    };
    let mut out = format!(
        "<h2>Action</h2><p id=\"action\">{}</p><pre>{}</pre>",
        escape_html(&action),
        pretty(&preview.action)
    );
    if let Some(profile) = &preview.profile {
        out.push_str(&format!(
            "<h2>Profile</h2><pre id=\"profile\">{}</pre>",
            pretty(profile)
        ));
    }
    if !preview.preview_only.is_empty() {
        out.push_str(&format!(
            "<h2>Not written (ownership <code>never</code>)</h2><pre>{}</pre>",
            pretty(&preview.preview_only)
        ));
    }
    out.push_str("<h2>Trace</h2><table id=\"trace\"><tr><th>Target</th><th>Rule</th><th>Claims</th><th>Verdict</th></tr>");
    for decision in &preview.trace.0 {
        let target = serde_json::to_value(&decision.target).unwrap_or_default();
        let target = match (target["kind"].as_str(), target["name"].as_str()) {
            (Some(kind), Some(name)) => format!("{kind} {name}"),
            (Some(kind), None) => kind.to_owned(),
            _ => String::new(),
        };
        let verdict = serde_json::to_value(decision.verdict).unwrap_or_default();
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&target),
            escape_html(&decision.rule),
            escape_html(&decision.claims.join(", ")),
            escape_html(verdict.as_str().unwrap_or_default()),
        ));
    }
    out.push_str("</table>");
    out
}

/// Pretty JSON, escaped for HTML.
fn pretty(value: &impl serde::Serialize) -> String {
    escape_html(&serde_json::to_string_pretty(value).unwrap_or_default())
}
