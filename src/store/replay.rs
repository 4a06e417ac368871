//! The implementation behind [`crate::replay`] (documented there); it lives beside the
//! stores, which implement its trait.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::StoreError;
use crate::expiring::{ExpiringSet, Inserted};

/// Remembers one-time values until they expire.
///
/// `first_use` must be atomic: of many concurrent calls with one key, across every instance
/// sharing the guard, exactly one may return `true`.
///
/// ```
/// use std::time::Duration;
/// use jit_provision::replay::{MemoryReplayGuard, ReplayGuard};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let guard = MemoryReplayGuard::new();
/// assert!(guard.first_use("state:abc", Duration::from_secs(60)).await.unwrap());
/// assert!(!guard.first_use("state:abc", Duration::from_secs(60)).await.unwrap());
/// # });
/// ```
pub trait ReplayGuard: Send + Sync + 'static {
    /// Records `key` as used for `ttl`; `true` when it had not been used (or its record
    /// expired), `false` for a replay.
    fn first_use(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether `key` is recorded and its record has not expired, without recording it: for a
    /// value that is recorded only once what it allows has succeeded (a back-channel logout
    /// token's `jti`, recorded after its sessions ended, so a retry after a failure works
    /// while a replay of a recorded token is refused before it changes anything).
    ///
    /// The provided implementation answers `false` (not known): the back-channel logout then
    /// still refuses a replay through [`first_use`](Self::first_use), after re-ending only
    /// the sessions created before the token's `iat`. The crate's guards answer for real.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jit_provision::replay::{MemoryReplayGuard, ReplayGuard};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let guard = MemoryReplayGuard::new();
    /// assert!(!guard.was_used("jti:1").await.unwrap());
    /// assert!(guard.first_use("jti:1", Duration::from_secs(60)).await.unwrap());
    /// assert!(guard.was_used("jti:1").await.unwrap());
    /// # });
    /// ```
    fn was_used(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = key;
        async { Ok(false) }
    }
}

impl<G: ReplayGuard> ReplayGuard for Arc<G> {
    fn first_use(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).first_use(key, ttl)
    }

    fn was_used(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).was_used(key)
    }
}

/// The dyn-compatible twin the layer holds.
pub(crate) trait ErasedGuard: Send + Sync + 'static {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn was_used<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl<G: ReplayGuard> ErasedGuard for G {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(ReplayGuard::first_use(self, key, ttl))
    }
    fn was_used<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(ReplayGuard::was_used(self, key))
    }
}

/// The capacity of [`MemoryReplayGuard::new`].
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// A [`ReplayGuard`] in process memory: right for one instance. Several instances need a
/// shared guard such as the SQL stores'.
///
/// It holds at most its capacity of values, each until its own expiry, and never forgets a
/// live one to make room: when it is full of live values a new one is refused with
/// [`ReplayGuardFull`] (the login answers `503 replay_guard_full`; nothing is written and no
/// session is issued) until values expire. A replayed value is refused whether or not the
/// guard is full.
///
/// ```
/// use std::time::Duration;
/// use jit_provision::replay::{MemoryReplayGuard, ReplayGuard, ReplayGuardFull};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let guard = MemoryReplayGuard::with_capacity(1);
/// let ttl = Duration::from_secs(60);
/// assert!(guard.first_use("state:a", ttl).await.unwrap());
/// let full = guard.first_use("state:b", ttl).await.unwrap_err();
/// assert!(ReplayGuardFull::is(&full));
/// assert!(!guard.first_use("state:a", ttl).await.unwrap(), "still a replay");
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryReplayGuard {
    seen: Arc<ExpiringSet<()>>,
}

impl std::fmt::Debug for MemoryReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayGuard")
            .field("entries", &self.seen.len())
            .field("capacity", &self.seen.capacity())
            .finish()
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReplayGuard {
    /// A guard holding up to [`DEFAULT_CAPACITY`] (a million) live values.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A guard holding up to `capacity` live values.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: Arc::new(ExpiringSet::new(capacity)),
        }
    }
}

impl ReplayGuard for MemoryReplayGuard {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        match self.seen.insert(key, ttl, ()) {
            Inserted::New => Ok(true),
            Inserted::Present => Ok(false),
            Inserted::Full => {
                tracing::error!(
                    capacity = self.seen.capacity(),
                    "the replay guard is full of live one-time values: refusing logins until some expire"
                );
                Err(StoreError::unavailable(ReplayGuardFull))
            }
        }
    }

    async fn was_used(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.seen.contains(key))
    }
}

/// The source of the [`StoreError::Unavailable`] a [`MemoryReplayGuard`] answers when it is
/// full: the request gets `503 replay_guard_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many logins are in progress; please try again in a few minutes")]
#[non_exhaustive]
pub struct ReplayGuardFull;

impl ReplayGuardFull {
    /// Whether `err` is a full replay guard's refusal.
    pub fn is(err: &StoreError) -> bool {
        match err {
            StoreError::Unavailable(source) => source.downcast_ref::<Self>().is_some(),
            _ => false,
        }
    }
}
