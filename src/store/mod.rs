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
//! plain, non-generic type. To keep a handle on the store in your application, pass an
//! `Arc<YourStore>`: `Arc<S>` implements `UserStore` whenever `S` does.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use memory::{MemoryStore, StoreCounters};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub(crate) use types::now_unix;
pub use types::{Identity, IdentityKey, Profile, ProfileChanges, User, UserId};

/// A boxed error from a store backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
///
/// The provisioning logic relies on the two conflict variants to stay correct under
/// concurrency: a store must report a duplicate identity as [`StoreError::IdentityExists`]
/// (the provisioner then reads the winner's row) and a duplicate username as
/// [`StoreError::UsernameTaken`]. Everything else is an outage or a bug of the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` was called for an identity that is already linked to a user (a concurrent
    /// first login won the race). Nothing was written.
    #[error("the identity is already linked to a user")]
    IdentityExists,
    /// The username is held by another local user. Nothing was written.
    #[error("the username `{0}` is already taken by another user")]
    UsernameTaken(String),
    /// The user to update does not exist (any more).
    #[error("no such user")]
    NotFound,
    /// The backend could not be reached or timed out: the request gets a 503.
    #[error("the user store is unavailable")]
    Unavailable(#[source] BoxError),
    /// Any other backend failure (a bug, a corrupt row, a panic in store code).
    #[error("the user store failed")]
    Backend(#[source] BoxError),
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
            Self::NotFound => Self::NotFound,
            Self::Unavailable(e) => Self::unavailable(e.to_string()),
            Self::Backend(e) => Self::backend(e.to_string()),
        }
    }

    /// Wraps any error as [`StoreError::Backend`].
    pub fn backend(err: impl Into<BoxError>) -> Self {
        Self::Backend(err.into())
    }
}

/// The persistence the layer needs: find a user by linked identity or by id, create a user
/// together with its first identity link, and apply changes to a user.
///
/// Implementations must make [`create`](UserStore::create) atomic (the user row and the
/// identity link are written together or not at all) and must enforce uniqueness of the
/// identity key `(provider, subject)` and of the username, reporting violations as
/// [`StoreError::IdentityExists`] and [`StoreError::UsernameTaken`]. That uniqueness is the
/// final guard behind the layer's in-process coalescing of concurrent first logins.
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

    /// Creates a user from `profile` and links `identity` to it, atomically.
    fn create(
        &self,
        identity: &Identity,
        profile: &Profile,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;

    /// Applies `changes` to the user and returns the updated user.
    fn update(
        &self,
        id: UserId,
        changes: &ProfileChanges,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;
}

impl<S: UserStore> UserStore for Arc<S> {
    fn find_by_identity(
        &self,
        key: &IdentityKey,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send {
        (**self).find_by_identity(key)
    }
    fn find_by_id(
        &self,
        id: UserId,
    ) -> impl Future<Output = Result<Option<User>, StoreError>> + Send {
        (**self).find_by_id(id)
    }
    fn create(
        &self,
        identity: &Identity,
        profile: &Profile,
    ) -> impl Future<Output = Result<User, StoreError>> + Send {
        (**self).create(identity, profile)
    }
    fn update(
        &self,
        id: UserId,
        changes: &ProfileChanges,
    ) -> impl Future<Output = Result<User, StoreError>> + Send {
        (**self).update(id, changes)
    }
}

/// The dyn-compatible twin of [`UserStore`] the layer holds internally.
pub(crate) trait ErasedStore: Send + Sync + 'static {
    fn find_by_identity<'a>(
        &'a self,
        key: &'a IdentityKey,
    ) -> BoxFuture<'a, Result<Option<User>, StoreError>>;
    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<User>, StoreError>>;
    fn create<'a>(
        &'a self,
        identity: &'a Identity,
        profile: &'a Profile,
    ) -> BoxFuture<'a, Result<User, StoreError>>;
    fn update<'a>(
        &'a self,
        id: UserId,
        changes: &'a ProfileChanges,
    ) -> BoxFuture<'a, Result<User, StoreError>>;
}

impl<S: UserStore> ErasedStore for S {
    fn find_by_identity<'a>(
        &'a self,
        key: &'a IdentityKey,
    ) -> BoxFuture<'a, Result<Option<User>, StoreError>> {
        Box::pin(UserStore::find_by_identity(self, key))
    }
    fn find_by_id(&self, id: UserId) -> BoxFuture<'_, Result<Option<User>, StoreError>> {
        Box::pin(UserStore::find_by_id(self, id))
    }
    fn create<'a>(
        &'a self,
        identity: &'a Identity,
        profile: &'a Profile,
    ) -> BoxFuture<'a, Result<User, StoreError>> {
        Box::pin(UserStore::create(self, identity, profile))
    }
    fn update<'a>(
        &'a self,
        id: UserId,
        changes: &'a ProfileChanges,
    ) -> BoxFuture<'a, Result<User, StoreError>> {
        Box::pin(UserStore::update(self, id, changes))
    }
}

pub(crate) type SharedStore = Arc<dyn ErasedStore>;
