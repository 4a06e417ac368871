//! The auth value types (a leaf module): the logged-in user and how a request was
//! authenticated.

use std::ops::Deref;
use std::sync::Arc;

use crate::store::User;

/// The logged-in local user, attached to the request extensions by the
/// [`JitLayer`](crate::JitLayer).
///
/// As an axum extractor it rejects anonymous requests with `401` (or a redirect to the
/// login page, see [`Unauthenticated`](crate::Unauthenticated)); take `Option<CurrentUser>`
/// for pages that serve both. Without axum, read it with
/// `request.extensions().get::<CurrentUser>()`.
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
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The local user.
    pub user: Arc<User>,
    /// How this request was authenticated: provider, subject, times, session or bearer.
    pub auth: Arc<AuthInfo>,
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

impl Deref for CurrentUser {
    type Target = User;
    fn deref(&self) -> &User {
        &self.user
    }
}
