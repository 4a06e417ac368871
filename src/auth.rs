//! The auth value types (a leaf module): the logged-in user and how a request was
//! authenticated.

use std::ops::Deref;
use std::sync::Arc;

use crate::store::User;

/// The logged-in local user, attached to the request extensions by the
/// [`JitLayer`](crate::JitLayer).
///
/// As an axum extractor it rejects anonymous requests with `401` (or a redirect to the
/// login page, see [`Unauthenticated`](crate::Unauthenticated)); take `Option<CurrentUser>` for pages that serve
/// both. Without axum, read it with `request.extensions().get::<CurrentUser>()`.
///
/// # The application's own user
///
/// With a store that has an application part
/// ([`SqliteStore::with_app`](crate::store::SqliteStore::with_app), `PostgresStore::with_app`),
/// take `CurrentUser<AppUser>` (`AppUser` being [`AppUsers::User`](crate::store::AppUsers::User)):
/// the layer loads the application's user of the logged-in crate user
/// ([`AppUsers::find`](crate::store::AppUsers::find)), caches it by the crate's user id and
/// drops it whenever the layer drops that user (a lock, a logout, a change, an invalidation
/// from another instance). An application user that is gone answers `401` like an anonymous
/// request; a type the store does not load answers `500` (`app_user_type`, see
/// [`LoginRequired::app_error`](crate::LoginRequired::app_error)); a failing store `503` (`500` for a panic). `CurrentUser` alone is
/// `CurrentUser<User>`, the crate's user.
///
/// ```
/// use jit_provision::CurrentUser;
///
/// async fn profile(user: CurrentUser) -> String {
///     format!("{} via {}", user.username, user.auth.provider)
/// }
///
/// async fn home(user: Option<CurrentUser>) -> String {
///     match user {
///         Some(user) => format!("hello {}", user.username),
///         None => "hello stranger".to_owned(),
///     }
/// }
/// # let _ = (profile, home);
/// ```
#[derive(Debug)]
pub struct CurrentUser<U = User> {
    /// The local user: the crate's [`User`], or the application's own.
    pub user: Arc<U>,
    /// How this request was authenticated: provider, subject, times, session or bearer.
    pub auth: Arc<AuthInfo>,
}

impl<U> Clone for CurrentUser<U> {
    fn clone(&self) -> Self {
        Self {
            user: self.user.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthInfo {
    /// The provider id.
    pub provider: String,
    /// The user-store domain of the user (`PRIMARY` unless configured otherwise).
    pub domain: String,
    /// The subject at that provider.
    pub subject: String,
    /// Login time (session) or token issue time (bearer), Unix seconds.
    pub issued_at: i64,
    /// End of the session or of the token, Unix seconds.
    pub expires_at: i64,
    /// Session cookie or bearer token.
    pub method: AuthMethod,
}

/// The credential a request came with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum AuthMethod {
    /// The layer's encrypted session cookie, after an interactive login.
    Session,
    /// An `Authorization: Bearer` JWT.
    Bearer {
        /// Its scopes (`scope` or `scp`).
        scopes: Vec<String>,
        /// The client it was issued to (`azp` or `client_id`), when it says.
        client_id: Option<String>,
    },
}

impl<U> Deref for CurrentUser<U> {
    type Target = U;
    fn deref(&self) -> &U {
        &self.user
    }
}
