//! The [`CurrentUser`] extractor: the crate's [`User`], or (`CurrentUser<AppUser>`) the
//! application's own user of a store with an application part
//! ([`AppUsers`](crate::store::AppUsers)).

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

use crate::auth::CurrentUser;
use crate::config::Unauthenticated;
use crate::failure::Failure;
use crate::store::{AnyUser, AppUserLoader, StoreError, UserId};

/// Why `CurrentUser<AppUser>` could not give the application's user of a logged-in request
/// (see [`LoginRequired::app_error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppUserError {
    /// The user's store has no application part: `500`.
    #[error("CurrentUser<{wanted}>: the user store of this user has no application users")]
    NoAppUsers {
        /// The type the handler asked for.
        wanted: &'static str,
    },
    /// The store loads another type than the handler asked for: `500`.
    #[error("CurrentUser<{wanted}>: the user store loads `{loads}`, not `{wanted}`")]
    TypeMismatch {
        /// The type the handler asked for.
        wanted: &'static str,
        /// The type the store's application part loads.
        loads: &'static str,
    },
    /// Loading the application's user failed, timed out (the layer's
    /// [`store_timeout`](crate::JitLayerBuilder::store_timeout)) or panicked: `503`, or `500`
    /// for a panic (`store_unavailable`).
    #[error("loading the application's user failed")]
    Store(#[source] StoreError),
}

impl crate::failure::Failure for AppUserError {
    /// Like the layer's other store failures: `500` for a panic, `503` otherwise.
    fn status(&self) -> StatusCode {
        match self {
            Self::Store(StoreError::Panicked) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::NoAppUsers { .. } | Self::TypeMismatch { .. } => "app_user_type",
            Self::Store(_) => "store_unavailable",
        }
    }
}

/// The applications' users by the crate's user.
pub(crate) type AppUserCache = moka::future::Cache<(Arc<str>, UserId), AnyUser>;

/// The loaders of the applications' users by user-store domain, and their cache (the
/// `session::UserCache`'s, dropped with the crate's user).
#[derive(Clone)]
pub(crate) struct AppUsersContext {
    pub(crate) loaders: HashMap<String, AppUserLoader>,
    /// With the cache, the user cache's invalidation counter: read before a load, a load
    /// that an invalidation (a lock, a delete, a change) may have raced is not cached.
    pub(crate) cache: Option<(AppUserCache, Arc<std::sync::atomic::AtomicU64>)>,
    /// The bound of every load, the layer's store timeout.
    pub(crate) timeout: std::time::Duration,
}

impl std::fmt::Debug for AppUsersContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.loaders.iter()).finish()
    }
}

/// `current` itself when `U` is the crate's [`User`](crate::store::User).
fn crate_user<U: Send + Sync + 'static>(current: &CurrentUser) -> Option<CurrentUser<U>> {
    let any: AnyUser = current.user.clone();
    any.downcast::<U>().ok().map(|user| CurrentUser {
        user,
        auth: current.auth.clone(),
    })
}

/// The application's user `U` of the logged-in crate user `current`: `Ok(None)` when it is
/// gone. Called after [`crate_user`] found `U` is not the crate's user.
async fn app_user<U: Send + Sync + 'static>(
    context: Option<&AuthContext>,
    current: &CurrentUser,
) -> Result<Option<Arc<U>>, AppUserError> {
    let wanted = std::any::type_name::<U>();
    // Never the application's user of a locked crate user, whatever put it in the request
    // (the layer does not pass a locked user on; a cached or stale copy must not either).
    if current.user.locked {
        return Ok(None);
    }
    let domain = current.auth.domain.as_str();
    let apps = context.map(|c| &c.app_users);
    let Some((apps, loader)) = apps.and_then(|a| a.loaders.get(domain).map(|l| (a, l))) else {
        return Err(AppUserError::NoAppUsers { wanted });
    };
    let mismatch = || AppUserError::TypeMismatch {
        wanted,
        loads: loader.user_type(),
    };
    if loader.inner.user_type_id() != TypeId::of::<U>() {
        return Err(mismatch());
    }
    let id: UserId = current.user.id;
    let limit = apps.timeout;
    let load = async {
        let work = Box::pin(crate::store::contained(loader.inner.load(id)));
        match crate::store::bounded(limit, "find_app_user", work).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(None),
            Err(e) => Err(Some(e)),
        }
    };
    let loaded = match &apps.cache {
        Some((cache, invalidations)) => {
            use std::sync::atomic::Ordering;
            let key = (Arc::<str>::from(domain), id);
            match cache.get(&key).await {
                Some(user) => Ok(user),
                None => {
                    // Read before the load, checked before the insert (as the session
                    // records' `ReadMark`): an invalidation in between may have dropped an
                    // entry this load read before, so its result is used but not cached.
                    let mark = invalidations.load(Ordering::SeqCst);
                    let loaded = load.await;
                    if let Ok(user) = &loaded
                        && invalidations.load(Ordering::SeqCst) == mark
                    {
                        cache.insert(key, user.clone()).await;
                    }
                    loaded
                }
            }
        }
        None => load.await,
    };
    match loaded {
        Ok(user) => user.downcast::<U>().map(Some).map_err(|_| mismatch()),
        Err(None) => Ok(None),
        Err(Some(e)) => {
            tracing::error!(error = %e, "loading the application's user failed");
            Err(AppUserError::Store(e))
        }
    }
}

/// How the extractor rejects an anonymous request (placed in every request's extensions).
#[derive(Debug)]
pub(crate) struct AuthContext {
    pub(crate) prefix: String,
    pub(crate) unauthenticated: Unauthenticated,
    /// Bearer tokens are accepted: anonymous API requests get a `WWW-Authenticate: Bearer`.
    pub(crate) bearer: bool,
    /// The applications' own users, for `CurrentUser<AppUser>`.
    pub(crate) app_users: AppUsersContext,
}

/// The rejection of [`CurrentUser`]: `401`, or a `303` to the login page for a browser
/// navigation when so configured.
///
/// For `CurrentUser<AppUser>` of a logged-in request whose application user cannot be
/// loaded, it carries an [`AppUserError`] ([`app_error`](Self::app_error)) and answers `500`
/// or `503` instead.
#[derive(Debug)]
pub struct LoginRequired {
    login: Option<String>,
    html: bool,
    bearer: bool,
    failure: Option<AppUserError>,
}

impl LoginRequired {
    /// The status it answers with: `303` to the login page, else `401` (or the status of its
    /// [`app_error`](Self::app_error)).
    pub fn status(&self) -> StatusCode {
        if let Some(failure) = &self.failure {
            failure.status()
        } else if self.login.is_some() {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::UNAUTHORIZED
        }
    }

    /// Why the application's user of a logged-in request could not be given, when that is
    /// why it was refused.
    pub fn app_error(&self) -> Option<&AppUserError> {
        self.failure.as_ref()
    }

    fn failed(parts: &Parts, failure: AppUserError) -> Self {
        Self {
            login: None,
            html: crate::failure::wants_html(&parts.headers),
            bearer: false,
            failure: Some(failure),
        }
    }
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        if let Some(failure) = &self.failure {
            tracing::error!(error = %failure, "CurrentUser refused a logged-in request");
            let message = match failure {
                AppUserError::Store(_) => "the user store is unavailable",
                _ => "the application's user could not be loaded",
            };
            return crate::failure::render_as(failure.status(), failure.code(), message, self.html);
        }
        if let Some(location) = self.login {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
        let mut response = crate::failure::render_as(
            StatusCode::UNAUTHORIZED,
            "login_required",
            "you need to log in",
            self.html,
        );
        if self.bearer {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl<S: Send + Sync, U: Send + Sync + 'static> FromRequestParts<S> for CurrentUser<U> {
    type Rejection = LoginRequired;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(current) = parts.extensions.get::<CurrentUser>() {
            // The crate's own user: no await, so the extractor's future stays small.
            if let Some(user) = crate_user::<U>(current) {
                return Ok(user);
            }
            let current = current.clone();
            let context = parts.extensions.get::<Arc<AuthContext>>().map(|c| &**c);
            // Boxed: the load's states would otherwise be part of every handler's future.
            match Box::pin(app_user::<U>(context, &current)).await {
                Ok(Some(user)) => {
                    return Ok(CurrentUser {
                        user,
                        auth: current.auth,
                    });
                }
                // The application's user is gone: as if anonymous.
                Ok(None) => {}
                Err(failure) => return Err(LoginRequired::failed(parts, failure)),
            }
        }
        Err(login_required(parts))
    }
}

/// The rejection of an anonymous request.
fn login_required(parts: &Parts) -> LoginRequired {
    {
        let html = crate::failure::wants_html(&parts.headers);
        let context = parts.extensions.get::<Arc<AuthContext>>();
        let bearer = context.is_some_and(|c| c.bearer);
        let login = match context {
            Some(ctx) => match &ctx.unauthenticated {
                Unauthenticated::RedirectToLogin(provider)
                    if html && parts.method == Method::GET =>
                {
                    let target = parts
                        .uri
                        .path_and_query()
                        .map(|pq| pq.as_str())
                        .unwrap_or("/");
                    let encoded: String =
                        url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
                    Some(format!(
                        "{}/{provider}/login?return_to={encoded}",
                        ctx.prefix
                    ))
                }
                _ => None,
            },
            None => {
                tracing::error!("CurrentUser extracted on a route the JitLayer does not wrap");
                None
            }
        };
        LoginRequired {
            login,
            html,
            bearer,
            failure: None,
        }
    }
}

/// `None` for an anonymous request (or one whose application user is gone); refuses only
/// when the application's user cannot be loaded ([`LoginRequired::app_error`]).
impl<S: Send + Sync, U: Send + Sync + 'static> OptionalFromRequestParts<S> for CurrentUser<U> {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(current) = parts.extensions.get::<CurrentUser>() else {
            return Ok(None);
        };
        if let Some(user) = crate_user::<U>(current) {
            return Ok(Some(user));
        }
        let current = current.clone();
        let context = parts.extensions.get::<Arc<AuthContext>>().map(|c| &**c);
        match Box::pin(app_user::<U>(context, &current)).await {
            Ok(user) => Ok(user.map(|user| CurrentUser {
                user,
                auth: current.auth,
            })),
            Err(failure) => Err(LoginRequired::failed(parts, failure)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthInfo, AuthMethod};
    use crate::store::{LoadAppUser, User};

    /// Loads the same application user for every crate user.
    struct Always;

    impl LoadAppUser for Always {
        fn load(
            &self,
            _: UserId,
        ) -> futures_util::future::BoxFuture<'_, Result<Option<AnyUser>, StoreError>> {
            Box::pin(async { Ok(Some(Arc::new(7_u32) as AnyUser)) })
        }
        fn user_type_id(&self) -> TypeId {
            TypeId::of::<u32>()
        }
        fn type_name(&self) -> &'static str {
            "u32"
        }
    }

    fn context() -> AuthContext {
        AuthContext {
            prefix: "/auth".into(),
            unauthenticated: Default::default(),
            bearer: false,
            app_users: AppUsersContext {
                loaders: HashMap::from([("primary".to_owned(), AppUserLoader::new(Always))]),
                cache: None,
                timeout: std::time::Duration::from_secs(5),
            },
        }
    }

    fn current(locked: bool) -> CurrentUser {
        let mut user = User::new(UserId(1), "jane");
        user.locked = locked;
        CurrentUser {
            user: Arc::new(user),
            auth: Arc::new(AuthInfo {
                provider: "corp".into(),
                domain: "primary".into(),
                subject: "jane".into(),
                issued_at: 0,
                expires_at: 0,
                method: AuthMethod::Session,
            }),
        }
    }

    /// Loads the application user, and meanwhile an invalidation of it is applied.
    struct Raced(Arc<std::sync::atomic::AtomicU64>);

    impl LoadAppUser for Raced {
        fn load(
            &self,
            _: UserId,
        ) -> futures_util::future::BoxFuture<'_, Result<Option<AnyUser>, StoreError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(Some(Arc::new(7_u32) as AnyUser)) })
        }
        fn user_type_id(&self) -> TypeId {
            TypeId::of::<u32>()
        }
        fn type_name(&self) -> &'static str {
            "u32"
        }
    }

    #[tokio::test]
    async fn a_load_raced_by_an_invalidation_is_used_but_not_cached() {
        let cache = moka::future::Cache::new(10);
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut raced = context();
        raced.app_users.loaders = HashMap::from([(
            "primary".to_owned(),
            AppUserLoader::new(Raced(counter.clone())),
        )]);
        raced.app_users.cache = Some((cache.clone(), counter.clone()));
        let key = (Arc::<str>::from("primary"), UserId(1));
        let user = app_user::<u32>(Some(&raced), &current(false)).await;
        assert_eq!(user.unwrap().as_deref(), Some(&7));
        assert!(cache.get(&key).await.is_none(), "a raced load was cached");
        // Without an invalidation in between, the load is cached.
        let mut quiet = context();
        quiet.app_users.cache = Some((cache.clone(), counter));
        let user = app_user::<u32>(Some(&quiet), &current(false)).await;
        assert_eq!(user.unwrap().as_deref(), Some(&7));
        assert!(cache.get(&key).await.is_some());
    }

    #[tokio::test]
    async fn a_locked_crate_user_never_gets_its_application_user() {
        let context = context();
        let open = app_user::<u32>(Some(&context), &current(false)).await;
        assert_eq!(open.unwrap().as_deref(), Some(&7));
        let locked = app_user::<u32>(Some(&context), &current(true)).await;
        assert!(locked.unwrap().is_none());
    }
}
