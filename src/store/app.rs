//! [`AppUsers`]: the small core of an application with its own users table.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Profile, ProfileChanges, StoreError, UserId};

/// The application's own users: the small core an application with its own users table
/// implements.
///
/// The application keeps its own user type and id (a `Uuid`, an `i64`, a `String`, ...) in its
/// own table; the crate keeps everything else in **its own `jit_`-prefixed tables** on the
/// application's pool: identity links, the groups and roles each provider granted, the
/// provider-managed attributes, lock state, login times and order, sessions. Each crate row
/// (`jit_users`) names the application's user in its `app_id` column.
///
/// The application implements only what only it can do:
///
/// - [`id`](AppUsers::id) and [`username`](AppUsers::username) of one of its users;
/// - [`find`](AppUsers::find) a user by id (on its own pool: what
///   [`CurrentUser<AppUser>`](crate::CurrentUser) loads);
/// - [`create`](AppUsers::create) a user from the mapped [`Profile`] and
///   [`apply`](AppUsers::apply) mapped [`ProfileChanges`] to one, both **inside the crate's
///   transaction**: `conn` is the connection of that transaction, so the application's insert
///   and the crate's identity link commit together or not at all (a joined transaction: a
///   crash, an error or a panic anywhere before the commit leaves neither row);
/// - for linking, [`find_by_username`](AppUsers::find_by_username) and
///   [`find_by_verified_email`](AppUsers::find_by_verified_email) (default: nothing found).
///
/// A rule of the application's own refuses with [`StoreError::Refused`] (an email held by a
/// password account): the login is answered `409` or `403` with the application's code.
///
/// Plug it into the ready-made SQL stores:
/// [`SqliteStore::with_app`](crate::store::SqliteStore::with_app) (and
/// `PostgresStore::with_app` with the `postgres` feature).
///
/// `Conn` is the connection type of the store's transactions: `sqlx::SqliteConnection` for
/// [`SqliteStore`](crate::store::SqliteStore), `sqlx::PgConnection` for `PostgresStore`.
#[cfg_attr(feature = "sqlite", doc = include_str!("app_example.md"))]
pub trait AppUsers<Conn>: Send + Sync + 'static {
    /// The application's user.
    type User: Clone + Send + Sync + 'static;
    /// The application's user id, kept by the crate as text (`Display`, parsed back with
    /// `FromStr`) in `jit_users.app_id`.
    type Id: Clone + Eq + Hash + Display + FromStr + Send + Sync + 'static;

    /// The id of `user`.
    fn id(user: &Self::User) -> Self::Id;

    /// The username of `user`, which the crate mirrors in its own row (for its unique index
    /// and the admin pages).
    fn username(user: &Self::User) -> String;

    /// The user with this id, on the application's own pool (`None` when it is gone: the
    /// session is then refused).
    fn find(
        &self,
        id: &Self::Id,
    ) -> impl Future<Output = Result<Option<Self::User>, StoreError>> + Send;

    /// Creates the application's user from the mapped profile, on `conn`: the crate's open
    /// transaction, committed with the identity link. Refuse with [`StoreError::Refused`] by
    /// a rule of the application's own; any error rolls the whole creation back.
    fn create(
        &self,
        conn: &mut Conn,
        profile: &Profile,
    ) -> impl Future<Output = Result<Self::User, StoreError>> + Send;

    /// Applies a login's (or a local edit's) mapped changes to the application's user, on
    /// `conn`, the crate's open transaction that also writes its own row. The crate keeps
    /// groups, roles and managed attributes itself; copy what the application has columns
    /// for (typically `email` and `display_name`).
    fn apply(
        &self,
        conn: &mut Conn,
        id: &Self::Id,
        changes: &ProfileChanges,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The application's user holding this username, for linking by username. Default:
    /// none.
    fn find_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Self::User>, StoreError>> + Send {
        let _ = username;
        async { Ok(None) }
    }

    /// The application's users whose **verified** email this is, for linking by email (more
    /// than one: the link is ambiguous and refused). Default: none.
    fn find_by_verified_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Vec<Self::User>, StoreError>> + Send {
        let _ = email;
        async { Ok(Vec::new()) }
    }
}

/// No application part: the ready-made stores' default, which keep their users entirely in
/// the crate's tables (`app_id` stays `NULL`). It has no values.
#[derive(Debug, Clone, Copy)]
pub enum NoApp {}

#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unused_macros)
)]
macro_rules! no_app {
    ($conn:ty) => {
        impl AppUsers<$conn> for NoApp {
            type User = ();
            type Id = String;
            fn id(_: &()) -> String {
                String::new()
            }
            fn username(_: &()) -> String {
                String::new()
            }
            async fn find(&self, _: &String) -> Result<Option<()>, StoreError> {
                match *self {}
            }
            async fn create(&self, _: &mut $conn, _: &Profile) -> Result<(), StoreError> {
                match *self {}
            }
            async fn apply(
                &self,
                _: &mut $conn,
                _: &String,
                _: &ProfileChanges,
            ) -> Result<(), StoreError> {
                match *self {}
            }
        }
    };
}

#[cfg(feature = "sqlite")]
no_app!(sqlx::SqliteConnection);
#[cfg(feature = "postgres")]
no_app!(sqlx::PgConnection);

/// An application user of any type, as the loader hands it out.
pub(crate) type AnyUser = Arc<dyn Any + Send + Sync>;

/// Loads an application's own user by the crate's [`UserId`], for
/// [`CurrentUser<AppUser>`](crate::CurrentUser): what a store with an application part
/// registers with the layer through [`UserStore::app_users`](super::UserStore::app_users).
/// Made by the crate's SQL stores; a store wrapping one of them forwards it.
#[derive(Clone)]
pub struct AppUserLoader {
    pub(crate) inner: Arc<dyn LoadAppUser>,
}

impl std::fmt::Debug for AppUserLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppUserLoader")
            .field("user_type", &self.inner.type_name())
            .finish()
    }
}

impl AppUserLoader {
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn new(inner: impl LoadAppUser) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The name of the user type it loads.
    pub fn user_type(&self) -> &'static str {
        self.inner.type_name()
    }
}

/// The erased loader behind [`AppUserLoader`].
pub(crate) trait LoadAppUser: Send + Sync + 'static {
    /// The application's user of the crate's user `id`; `None` when either is gone.
    fn load(&self, id: UserId) -> BoxFuture<'_, Result<Option<AnyUser>, StoreError>>;
    fn user_type_id(&self) -> std::any::TypeId;
    fn type_name(&self) -> &'static str;
}

/// Parses an `app_id` column back into the application's id.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn parse_app_id<I: FromStr>(text: &str) -> Result<I, StoreError> {
    text.parse().map_err(|_| {
        StoreError::backend(format!(
            "jit_users.app_id `{text}` is not a valid id of the application's users"
        ))
    })
}
