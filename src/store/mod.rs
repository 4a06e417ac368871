//! Where local users live: the [`UserStore`] trait the application injects, and the
//! implementations shipped with the crate ([`MemoryStore`], and [`SqliteStore`] behind the
//! `sqlite` feature).
//!
//! # Object safety
//!
//! [`UserStore`] uses `async fn`-style methods that return `impl Future + Send` (no
//! `async_trait`), so it is **not** dyn-compatible: you cannot write `Box<dyn UserStore>`.
//! You do not need to: [`JitLayerBuilder::store`](crate::JitLayerBuilder::store) takes any
//! `impl UserStore` and erases it internally behind one `Arc`, so the layer itself stays a
//! plain, non-generic type. The stores shipped here are cheap handles (`Clone` shares the
//! same pool or map), so keep a clone for your own use; make yours the same way.

mod app;
mod canonical;
pub(crate) mod domain;
pub(crate) mod invalidation;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod refusal;
pub(crate) mod replay;
pub(crate) mod session_store;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_sessions;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub(crate) use app::AnyUser;
#[cfg(test)]
pub(crate) use app::LoadAppUser;
pub use app::{AppUserLoader, AppUsers, NoApp};
pub use canonical::canonical;
pub use memory::{MemoryStore, StoreCounters};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
pub use refusal::{Refusal, RefusalKind};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;
pub(crate) use types::now_unix;
pub use types::{
    GroupGrants, Identity, IdentityKey, LinkedIdentity, LoginStamp, Profile, ProfileChanges, User,
    UserId,
};

/// A boxed error from a store backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
///
/// The provisioning logic relies on the three conflict variants to stay correct under
/// concurrency: a store must report a duplicate identity as [`StoreError::IdentityExists`]
/// (the provisioner then reads the winner's row), a duplicate username as
/// [`StoreError::UsernameTaken`] and a second link of one user at one provider as
/// [`StoreError::LinkConflict`]. A constraint of the application's own answers
/// [`StoreError::Refused`] (`409` or `403` with the application's code). Everything else is an
/// outage or a bug of the backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` was called for an identity that is already linked to a user (a concurrent
    /// first login won the race). Nothing was written.
    #[error("the identity is already linked to a user")]
    IdentityExists,
    /// The username (compared in its [`canonical`] form) is held by another local user.
    /// Nothing was written.
    #[error("the username `{0}` is already taken by another user")]
    UsernameTaken(String),
    /// `link` was called for a user that is already linked to another identity of the same
    /// provider (a user has at most one identity per provider). Nothing was written.
    #[error("the user is already linked to another identity of this provider")]
    LinkConflict,
    /// The user to update does not exist (any more).
    #[error("no such user")]
    NotFound,
    /// The application's store refused the write by a rule of its own (an email held by a
    /// password account, say): the login is answered `409` or `403` with the refusal's code,
    /// never `503`. Nothing was written.
    #[error("the user store refused: {0}")]
    Refused(Refusal),
    /// The backend could not be reached or timed out: the request gets a 503.
    #[error("the user store is unavailable")]
    Unavailable(#[source] BoxError),
    /// Any other backend failure (a bug, a corrupt row).
    #[error("the user store failed")]
    Backend(#[source] BoxError),
    /// The store's code panicked: `500`.
    #[error("the user store failed unexpectedly")]
    Panicked,
}

impl StoreError {
    /// Wraps any error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        Self::Unavailable(err.into())
    }

    /// A copy of this error for another waiter of a shared failure (the source is kept as
    /// text: error sources are not cloneable).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::IdentityExists => Self::IdentityExists,
            Self::UsernameTaken(n) => Self::UsernameTaken(n.clone()),
            Self::LinkConflict => Self::LinkConflict,
            Self::NotFound => Self::NotFound,
            Self::Refused(r) => Self::Refused(r.clone()),
            Self::Unavailable(e) => Self::unavailable(e.to_string()),
            Self::Backend(e) => Self::backend(e.to_string()),
            Self::Panicked => Self::Panicked,
        }
    }

    /// Wraps any error as [`StoreError::Backend`].
    pub fn backend(err: impl Into<BoxError>) -> Self {
        Self::Backend(err.into())
    }
}

/// The persistence the layer needs.
///
/// Implementations must make [`create`](UserStore::create) atomic (the user row and the
/// identity link are written together or not at all) and must enforce, in the store itself
/// (a unique index, not a check before the write):
///
/// - uniqueness of the identity key `(provider, subject)`: [`StoreError::IdentityExists`];
/// - uniqueness of the username in its [`canonical`] form, so `Admin`, fullwidth `ａｄｍｉｎ`
///   and `admin` are one name: [`StoreError::UsernameTaken`];
/// - at most one identity per `(user, provider)`: [`StoreError::LinkConflict`].
///
/// That uniqueness is the final guard behind the layer's in-process coalescing of concurrent
/// first logins and links. [`update_from_login`](UserStore::update_from_login) applies a
/// login's changes to the row as it is inside the store's transaction and drops an update
/// older than one already applied for that identity. `jit_provision::testing::store_contract`
/// (feature `test-util`) is the executable contract: run it against your store.
///
/// See the [module documentation](self) on object safety.
///
/// # Example
///
/// ```
/// use jit_provision::store::{Identity, MemoryStore, Profile, UserStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let identity = Identity::new("corp", "https://idp.example.com", "248289761001");
/// let user = store.create(&identity, &Profile::new("jane")).await?;
/// let found = store.find_by_identity(&identity.key()).await?;
/// assert_eq!(found.map(|u| u.id), Some(user.id));
/// # Ok::<_, jit_provision::store::StoreError>(())
/// # }).unwrap();
/// ```
pub trait UserStore: Send + Sync + 'static {
    /// The user linked to this identity, if any.
    fn find_by_identity(
        &self,
        key: &IdentityKey,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The user with this id, if any.
    fn find_by_id(
        &self,
        id: UserId,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// The user holding this username, compared in the [`canonical`] form (so `ＢＯＢ` finds
    /// `bob`), if any.
    fn find_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// Every user with this email, compared in the [`canonical`] form (for linking by email;
    /// more than one means the link is ambiguous and is refused).
    fn find_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Vec<User>, StoreError>> + Send;

    /// Creates a user from `profile` and links `identity` to it, atomically. A rule of the
    /// application's own (an email that belongs to a password account) refuses with
    /// [`StoreError::Refused`], writing nothing: the login gets the [`Refusal`]'s `409` or
    /// `403` and code.
    fn create(
        &self,
        identity: &Identity,
        profile: &Profile,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    /// Links `identity` to an existing user ([`StoreError::IdentityExists`] when the identity
    /// is linked already, [`StoreError::LinkConflict`] when the user already has another
    /// identity of this provider, [`StoreError::NotFound`] when the user is gone).
    fn link(
        &self,
        identity: &Identity,
        user: UserId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies `changes` to the user and returns the updated user (a local edit).
    fn update(
        &self,
        id: UserId,
        changes: &ProfileChanges,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    /// Applies the changes a login of `key` at `at` brought to its user, in one transaction
    /// with reading the row ([`ProfileChanges::apply_to`] on the row as stored) and with the
    /// check that no later login of this identity was applied already. `Ok(None)`, nothing
    /// written, when one was (a delayed background update must not overwrite a newer one);
    /// the same stamp again is applied again (a retry). [`StoreError::NotFound`] when the
    /// identity is not linked (any more).
    fn update_from_login(
        &self,
        key: &IdentityKey,
        at: LoginStamp,
        changes: &ProfileChanges,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// Records a login of this identity at `at` (Unix seconds).
    fn record_login(
        &self,
        key: &IdentityKey,
        at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The identities linked to a user.
    fn identities_of(
        &self,
        user: UserId,
    ) -> impl Future<Output = Result<Vec<LinkedIdentity>, StoreError>> + Send;

    /// Every identity of one provider, oldest first (for listing and deprovisioning).
    fn identities_by_provider(
        &self,
        provider: &str,
    ) -> impl Future<Output = Result<Vec<LinkedIdentity>, StoreError>> + Send;

    /// Locks or unlocks a user. A locked user cannot log in; logins never unlock.
    fn set_locked(
        &self,
        id: UserId,
        locked: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a user and its identity links.
    fn delete(&self, id: UserId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where the layer keeps the sessions of this store's users unless
    /// [`JitLayerBuilder::session_store`](crate::JitLayerBuilder::session_store) names one:
    /// the stores of this crate answer themselves (same database, or same memory), so
    /// sessions live as long as the users do. Default `None`: the layer then keeps sessions
    /// in memory (they end when the process does). A store wrapping one of this crate's
    /// should forward it.
    fn session_store(&self) -> Option<session_store::SessionStoreHandle> {
        None
    }

    /// The loader of the application's own users, when this store has an application part
    /// ([`AppUsers`], e.g. [`SqliteStore::with_app`](crate::store::SqliteStore::with_app)):
    /// the layer registers it, and handlers then take `CurrentUser<AppUser>`. Default
    /// `None`. A store wrapping one of this crate's should forward it.
    fn app_users(&self) -> Option<AppUserLoader> {
        None
    }
}

/// Names the users linked more than once at one provider, from `(user_id, provider, count)`
/// rows, for the error of a migration that cannot add the one-link-per-provider index.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn twice_linked(rows: &[(i64, String, i64)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let users: Vec<String> = rows
        .iter()
        .map(|(user, provider, n)| format!("user {user} has {n} identities of `{provider}`"))
        .collect();
    format!(
        "; a user may be linked to one identity per provider, but {}: delete the links that \
         are not legitimate from jit_identities and start again",
        users.join(", ")
    )
}

/// The error of a backfill that found two usernames with one canonical form.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn one_name_twice(id: i64, username: &str, holder: Option<(i64, String)>, key: &str) -> StoreError {
    let other = holder
        .map(|(id, name)| format!("`{name}` (user {id})"))
        .unwrap_or_else(|| "another username".to_owned());
    StoreError::backend(format!(
        "usernames `{username}` (user {id}) and {other} are one name in canonical form \
         `{key}`: rename or delete one of them, then start again"
    ))
}

/// Refuses a backfill batch of `(id, username)` rows in which two usernames have one
/// canonical form (the unique index would refuse the second; this names both).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn same_name_twice(rows: &[(i64, String)]) -> Result<(), StoreError> {
    let mut seen: std::collections::HashMap<String, (i64, &str)> = Default::default();
    for (id, username) in rows {
        let key = canonical(username);
        if let Some((first, name)) = seen.get(&key) {
            let holder = Some((*first, (*name).to_owned()));
            return Err(one_name_twice(*id, username, holder, &key));
        }
        seen.insert(key, (*id, username));
    }
    Ok(())
}

/// The dyn-compatible twin of [`UserStore`] the layer holds internally.
pub(crate) trait ErasedStore: Send + Sync + 'static {
    fn find_by_identity<'a>(
        &'a self,
        key: &'a IdentityKey,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, StoreResult<Option<User>>>;
    fn find_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
    fn find_by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, StoreResult<Vec<User>>>;
    fn create<'a>(
        &'a self,
        identity: &'a Identity,
        profile: &'a Profile,
    ) -> BoxFuture<'a, StoreResult<User>>;
    fn link<'a>(&'a self, identity: &'a Identity, user: UserId) -> BoxFuture<'a, StoreResult<()>>;
    fn update_from_login<'a>(
        &'a self,
        key: &'a IdentityKey,
        at: LoginStamp,
        changes: &'a ProfileChanges,
    ) -> BoxFuture<'a, StoreResult<Option<User>>>;
    fn record_login<'a>(&'a self, key: &'a IdentityKey, at: i64) -> BoxFuture<'a, StoreResult<()>>;
    fn identities_of(&self, user: UserId) -> BoxFuture<'_, StoreResult<Vec<LinkedIdentity>>>;
    fn identities_by_provider<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<LinkedIdentity>>>;
    fn set_locked(&self, id: UserId, locked: bool) -> BoxFuture<'_, StoreResult<()>>;
    fn delete(&self, id: UserId) -> BoxFuture<'_, StoreResult<()>>;
}

type StoreResult<T> = Result<T, StoreError>;

impl<S: UserStore> ErasedStore for S {
    fn find_by_identity<'a>(
        &'a self,
        key: &'a IdentityKey,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(contained(UserStore::find_by_identity(self, key)))
    }
    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, StoreResult<Option<User>>> {
        Box::pin(contained(UserStore::find_by_id(self, id)))
    }
    fn find_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(contained(UserStore::find_by_username(self, username)))
    }
    fn find_by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, StoreResult<Vec<User>>> {
        Box::pin(contained(UserStore::find_by_email(self, email)))
    }
    fn create<'a>(
        &'a self,
        identity: &'a Identity,
        profile: &'a Profile,
    ) -> BoxFuture<'a, StoreResult<User>> {
        Box::pin(contained(UserStore::create(self, identity, profile)))
    }
    fn link<'a>(&'a self, identity: &'a Identity, user: UserId) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(contained(UserStore::link(self, identity, user)))
    }
    fn update_from_login<'a>(
        &'a self,
        key: &'a IdentityKey,
        at: LoginStamp,
        changes: &'a ProfileChanges,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        Box::pin(contained(UserStore::update_from_login(
            self, key, at, changes,
        )))
    }
    fn record_login<'a>(&'a self, key: &'a IdentityKey, at: i64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(contained(UserStore::record_login(self, key, at)))
    }
    fn identities_of(&self, user: UserId) -> BoxFuture<'_, StoreResult<Vec<LinkedIdentity>>> {
        Box::pin(contained(UserStore::identities_of(self, user)))
    }
    fn identities_by_provider<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<LinkedIdentity>>> {
        Box::pin(contained(UserStore::identities_by_provider(self, provider)))
    }
    fn set_locked(&self, id: UserId, locked: bool) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(contained(UserStore::set_locked(self, id, locked)))
    }
    fn delete(&self, id: UserId) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(contained(UserStore::delete(self, id)))
    }
}

pub(crate) type SharedStore = Arc<dyn ErasedStore>;

/// The store did not answer in time; the call was dropped (a store must leave nothing
/// half-written when its future is dropped: a transaction that is never committed does
/// not). It is the source of the [`StoreError::Unavailable`] a request then fails with.
///
/// ```
/// use std::error::Error as _;
/// use std::time::Duration;
/// use jit_provision::store::{StoreError, StoreTimeout};
///
/// let err = StoreError::unavailable(StoreTimeout(Duration::from_secs(10)));
/// let timed_out = err.source().and_then(|s| s.downcast_ref::<StoreTimeout>());
/// assert_eq!(timed_out.map(|t| t.0), Some(Duration::from_secs(10)));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the user store did not answer within {0:?}")]
pub struct StoreTimeout(pub Duration);

/// Bounds every call of `inner` by `limit`: a call still running then is dropped and
/// answers [`StoreError::Unavailable`] with a [`StoreTimeout`] source (a `503`), so a hung
/// database cannot hold requests, and their connections, forever.
pub(crate) fn time_limited(inner: SharedStore, limit: Duration) -> SharedStore {
    Arc::new(TimeLimited { inner, limit })
}

struct TimeLimited {
    inner: SharedStore,
    limit: Duration,
}

impl TimeLimited {
    fn bound<'a, T: Send + 'a>(
        &self,
        operation: &'static str,
        work: BoxFuture<'a, StoreResult<T>>,
    ) -> BoxFuture<'a, StoreResult<T>> {
        bounded(self.limit, operation, work)
    }
}

/// Bounds one call of the store method `operation` by `limit`, and records its duration
/// (the `jit_store_call_duration_seconds` histogram).
pub(crate) fn bounded<'a, T: Send + 'a>(
    limit: Duration,
    operation: &'static str,
    work: BoxFuture<'a, StoreResult<T>>,
) -> BoxFuture<'a, StoreResult<T>> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(limit = ?limit, "a user store call timed out");
                Err(StoreError::unavailable(StoreTimeout(limit)))
            }
        };
        crate::metrics::store_call(operation, started.elapsed());
        result
    })
}

impl ErasedStore for TimeLimited {
    fn find_by_identity<'a>(
        &'a self,
        key: &'a IdentityKey,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.bound("find_by_identity", self.inner.find_by_identity(key))
    }
    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, StoreResult<Option<User>>> {
        self.bound("find_by_id", self.inner.find_by_id(id))
    }
    fn find_by_username<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.bound("find_by_username", self.inner.find_by_username(username))
    }
    fn find_by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, StoreResult<Vec<User>>> {
        self.bound("find_by_email", self.inner.find_by_email(email))
    }
    fn create<'a>(
        &'a self,
        identity: &'a Identity,
        profile: &'a Profile,
    ) -> BoxFuture<'a, StoreResult<User>> {
        self.bound("create", self.inner.create(identity, profile))
    }
    fn link<'a>(&'a self, identity: &'a Identity, user: UserId) -> BoxFuture<'a, StoreResult<()>> {
        self.bound("link", self.inner.link(identity, user))
    }
    fn update_from_login<'a>(
        &'a self,
        key: &'a IdentityKey,
        at: LoginStamp,
        changes: &'a ProfileChanges,
    ) -> BoxFuture<'a, StoreResult<Option<User>>> {
        self.bound(
            "update_from_login",
            self.inner.update_from_login(key, at, changes),
        )
    }
    fn record_login<'a>(&'a self, key: &'a IdentityKey, at: i64) -> BoxFuture<'a, StoreResult<()>> {
        self.bound("record_login", self.inner.record_login(key, at))
    }
    fn identities_of(&self, user: UserId) -> BoxFuture<'_, StoreResult<Vec<LinkedIdentity>>> {
        self.bound("identities_of", self.inner.identities_of(user))
    }
    fn identities_by_provider<'a>(
        &'a self,
        provider: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<LinkedIdentity>>> {
        self.bound(
            "identities_by_provider",
            self.inner.identities_by_provider(provider),
        )
    }
    fn set_locked(&self, id: UserId, locked: bool) -> BoxFuture<'_, StoreResult<()>> {
        self.bound("set_locked", self.inner.set_locked(id, locked))
    }
    fn delete(&self, id: UserId) -> BoxFuture<'_, StoreResult<()>> {
        self.bound("delete", self.inner.delete(id))
    }
}

/// Runs store code so that a panic in it becomes [`StoreError::Panicked`] (a `500`) for this
/// request instead of tearing down the connection's task; the layer keeps serving.
pub(crate) async fn contained<T>(work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!("the user store panicked");
            Err(StoreError::Panicked)
        }
    }
}
