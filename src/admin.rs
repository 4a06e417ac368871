//! Administration: the layer's lifecycle methods and an optional JSON admin router
//! (`GET /admin/jit-users`, `POST /admin/jit-preview`) behind a guard the application
//! supplies.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;

use crate::CurrentUser;
use crate::events::ProvisioningEvent;
use crate::invalidation::Invalidation;
use crate::layer::JitLayer;
use crate::mapping::Claims;
use crate::policy::{Deprovision, JitUser, Preview};
use crate::provision::ProvisionError;
use crate::store::Identity;

impl JitLayer {
    /// What a login with `claims` at `provider` would produce — the user, its domain, its
    /// groups, or the refusal — without writing anything. With a `subject`, the existing user
    /// of that identity is compared too.
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
            .policies
            .get(provider)
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
        if !shared.policies.contains_key(provider) {
            return Err(ProvisionError::UnknownProvider(provider.to_owned()));
        }
        let mut users = Vec::new();
        for domain in shared.provisioner.domains() {
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
        for domain in shared.provisioner.domains() {
            for identity in domain.store.identities_by_provider(provider).await? {
                let id = identity.user_id;
                match action {
                    Deprovision::Disable => domain.store.set_locked(id, true).await?,
                    Deprovision::Delete => domain.store.delete(id).await?,
                }
                shared
                    .provisioner
                    .announce(Invalidation::User {
                        domain: domain.name.to_string(),
                        id,
                    })
                    .await;
                shared
                    .provisioner
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

    /// A JSON admin router: `GET /admin/jit-users?provider=ID` lists the provider's users with
    /// their login times; `POST /admin/jit-preview` with `{"provider", "subject"?, "claims"}`
    /// answers a dry run. Anonymous requests get `401`; users for whom `guard` says no get
    /// `403`. Merge it into your router *inside* the layer:
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
            .route("/admin/jit-preview", post(preview))
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
