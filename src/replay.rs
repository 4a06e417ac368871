//! One-time values that must be used at most once (OIDC `state`, and later SAML assertion
//! ids): the [`ReplayGuard`] trait, an in-memory guard for one instance, and the SQL stores'
//! guards for several instances on one database.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use moka::Expiry;
use moka::future::Cache;

use crate::store::StoreError;

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
}

impl<G: ReplayGuard> ReplayGuard for Arc<G> {
    fn first_use(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).first_use(key, ttl)
    }
}

/// The dyn-compatible twin the layer holds.
pub(crate) trait ErasedGuard: Send + Sync + 'static {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl<G: ReplayGuard> ErasedGuard for G {
    fn first_use<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(ReplayGuard::first_use(self, key, ttl))
    }
}

struct PerEntry;

impl Expiry<String, Duration> for PerEntry {
    fn expire_after_create(&self, _key: &String, ttl: &Duration, _at: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

/// A [`ReplayGuard`] in process memory (moka): right for one instance. Several instances
/// need a shared guard such as the PostgreSQL store's.
#[derive(Clone)]
pub struct MemoryReplayGuard {
    seen: Cache<String, Duration>,
}

impl std::fmt::Debug for MemoryReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayGuard")
            .field("entries", &self.seen.entry_count())
            .finish()
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReplayGuard {
    /// A guard holding up to a million values.
    pub fn new() -> Self {
        Self {
            seen: Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(PerEntry)
                .build(),
        }
    }
}

impl ReplayGuard for MemoryReplayGuard {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self
            .seen
            .entry(key.to_owned())
            .or_insert(ttl)
            .await
            .is_fresh())
    }
}
