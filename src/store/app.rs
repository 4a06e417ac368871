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
    ///
    /// **The contract of the joined transaction**: write only through `conn`, and leave its
    /// transaction open. Never `COMMIT`, `ROLLBACK` or `BEGIN` on it (a nested
    /// `conn.begin()`, a savepoint of sqlx's, is fine), and never write the user through
    /// another connection or pool: that row would commit on its own, outside the crate's
    /// transaction. The crate detects the first (a savepoint around this call whose release
    /// fails: the creation is then an error that says so, though what the application
    /// already committed stays); it cannot see the second (on PostgreSQL it silently breaks
    /// atomicity; on SQLite it waits for the crate's write lock and fails).
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
    ///
    /// A user found here or by [`find_by_verified_email`](Self::find_by_verified_email) is
    /// *adopted*: the crate inserts its own row for it (keyed on `app_id`, idempotent; no
    /// email, groups, roles or identity, not locked), so that a link can name it. The
    /// provisioner asks only when the provider's linking policy links by username, or by an
    /// email the provider asserted verified (or is trusted for); a first login without
    /// linking never adopts. An admin preview of such a login may adopt too (and its
    /// username check does even without linking): harmless, as the row cannot log in, is
    /// the one a link would make, and keeps no copy of the application's email.
    fn find_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<Self::User>, StoreError>> + Send {
        let _ = username;
        async { Ok(None) }
    }

    /// The application's users whose **verified** email this is, for linking by email (more
    /// than one: the link is ambiguous and refused). Default: none.
    ///
    /// `email` comes in the crate's [`canonical`](super::canonical) form (NFKC, lower case):
    /// compare it with your column case-insensitively (`lower(email) = $1`). This is the only
    /// way the crate finds an application user by email, even one it created: the crate's
    /// copy of the email of its last login is never asked, so an address your user gave up
    /// links nobody.
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

/// The crate's user of an application user adopted for linking by `email`: the crate's row
/// keeps no email of its own (the application is the truth of its users' emails, and a copy
/// taken here would go stale when the application's user changes it), so the user found is
/// given the email the application vouched for, for this lookup only.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn vouched(mut user: super::User, email: Option<&str>) -> super::User {
    if user.email.is_none() {
        user.email = email.map(str::to_owned);
    }
    user
}

/// The error of an [`AppUsers::create`] that ended the crate's transaction itself.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn ended_transaction() -> StoreError {
    StoreError::backend(
        "AppUsers::create ended the crate's transaction (a COMMIT or ROLLBACK on its \
         connection): the application's user may be written without the crate's row",
    )
}

/// The application part of a SQL store, written once for SQLite and PostgreSQL: `$store`
/// (generic over its [`AppUsers`] `A`, in its field `app`) on `$db` whose connection is
/// `$conn`, with `$sql` turning a statement written with `$N` placeholders into the
/// database's, `$json` the store's six JSON columns (groups, attributes, IdP groups, IdP
/// attributes, roles, IdP roles), `user_from_row`, `classify` and `USER_COLUMNS` the store
/// module's, and `session_write_lock` (an async method of the store) its write lock.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unused_macros)
)]
macro_rules! sql_app_part {
    ($store:ident, $conn:ty, $db:ty, $sql:expr, $json:literal) => {
        impl<A: $crate::store::AppUsers<$conn>> $store<A> {
            /// The application's id of the crate's user `id` (`None` when the user is gone
            /// or has no application part); a stored id that does not parse as `A::Id` is an
            /// error, never a panic.
            pub async fn app_id_of(&self, id: UserId) -> Result<Option<A::Id>, StoreError> {
                let sql = $sql("SELECT app_id FROM jit_users WHERE id = $1");
                let text: Option<Option<String>> =
                    sqlx::query_scalar::<$db, _>(sqlx::AssertSqlSafe(sql))
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?;
                text.flatten()
                    .map(|t| super::app::parse_app_id(&t))
                    .transpose()
            }

            /// Creates the application's user on `tx` (the crate's open transaction):
            /// its id as stored and its username. A savepoint around the application's
            /// code tells when it ended the transaction itself (its `RELEASE` fails).
            async fn create_app_user(
                &self,
                tx: &mut $conn,
                profile: &Profile,
            ) -> Result<(Option<String>, String), StoreError> {
                let Some(app) = &self.app else {
                    return Ok((None, profile.username.clone()));
                };
                sqlx::query::<$db>("SAVEPOINT jit_app_create")
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                let user = app.create(tx, profile).await?;
                sqlx::query::<$db>("RELEASE SAVEPOINT jit_app_create")
                    .execute(&mut *tx)
                    .await
                    .map_err(|_| super::app::ended_transaction())?;
                Ok((Some(A::id(&user).to_string()), A::username(&user)))
            }

            /// Applies `changes` to the application's user of the crate's user `id`,
            /// inside `tx`.
            async fn apply_app(
                &self,
                tx: &mut $conn,
                id: UserId,
                changes: &ProfileChanges,
            ) -> Result<(), StoreError> {
                let Some(app) = &self.app else {
                    return Ok(());
                };
                let sql = $sql("SELECT app_id FROM jit_users WHERE id = $1");
                let text: Option<String> = sqlx::query_scalar::<$db, Option<String>>(
                    sqlx::AssertSqlSafe(sql),
                )
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?
                .flatten();
                match text {
                    Some(text) => {
                        let app_id = super::app::parse_app_id(&text)?;
                        app.apply(tx, &app_id, changes).await
                    }
                    None => Ok(()),
                }
            }

            /// The application's user holding `username` that has no crate row yet, adopted
            /// (for linking by username).
            async fn app_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
                let Some(app) = &self.app else {
                    return Ok(None);
                };
                match app.find_by_username(username).await? {
                    Some(found) => self.adopt(&found, None).await.map(Some),
                    None => Ok(None),
                }
            }

            /// Adds to `users` (the crate's holders of `email`) the application's users whose
            /// verified email it is, adopted (for linking by email).
            async fn app_by_email(
                &self,
                users: &mut Vec<User>,
                email: &str,
            ) -> Result<(), StoreError> {
                let Some(app) = &self.app else {
                    return Ok(());
                };
                for found in app.find_by_verified_email(&canonical(email)).await? {
                    let user = self.adopt(&found, Some(email)).await?;
                    if !users.iter().any(|u| u.id == user.id) {
                        users.push(user);
                    }
                }
                users.sort_by_key(|u| u.id);
                Ok(())
            }

            /// The crate's row of an application user found for linking, inserted when it
            /// has none (idempotent, keyed on `app_id`; no email, no groups, not locked), so
            /// it can be linked by the crate's [`UserId`].
            async fn adopt(
                &self,
                found: &A::User,
                email: Option<&str>,
            ) -> Result<User, StoreError> {
                let app_id = A::id(found).to_string();
                let username = A::username(found);
                {
                    let _write = self.session_write_lock().await;
                    let sql = $sql(&format!(
                        "INSERT INTO jit_users (username, email, display_name, {}, locked, \
                         created_at, updated_at, username_key, email_key, app_id) \
                         VALUES ($1, NULL, NULL, '[]', '{{}}', '{{}}', '[]', '[]', '{{}}', \
                         FALSE, $2, $2, $3, NULL, $4) \
                         ON CONFLICT (app_id) DO NOTHING",
                        $json
                    ));
                    let inserted = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                        .bind(&username)
                        .bind(now_unix())
                        .bind(canonical(&username))
                        .bind(&app_id)
                        .execute(&self.pool)
                        .await;
                    match inserted {
                        Ok(_) => {}
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                            return Err(StoreError::UsernameTaken(username));
                        }
                        Err(e) => return Err(classify(e)),
                    }
                }
                let sql = $sql(&format!(
                    "SELECT {USER_COLUMNS} FROM jit_users u WHERE u.app_id = $1"
                ));
                let row = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                    .bind(&app_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(classify)?;
                user_from_row(&row).map(|user| super::app::vouched(user, email))
            }
        }

        impl<A: $crate::store::AppUsers<$conn>> super::app::LoadAppUser for $store<A> {
            fn load(
                &self,
                id: UserId,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<Option<super::app::AnyUser>, StoreError>,
            > {
                Box::pin(async move {
                    let Some(app) = &self.app else {
                        return Ok(None);
                    };
                    let Some(app_id) = self.app_id_of(id).await? else {
                        return Ok(None);
                    };
                    Ok(app
                        .find(&app_id)
                        .await?
                        .map(|user| std::sync::Arc::new(user) as super::app::AnyUser))
                })
            }
            fn user_type_id(&self) -> std::any::TypeId {
                std::any::TypeId::of::<A::User>()
            }
            fn type_name(&self) -> &'static str {
                std::any::type_name::<A::User>()
            }
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) use sql_app_part;
