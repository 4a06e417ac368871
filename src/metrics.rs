//! Counters of what the layer did, for dashboards and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every clone of a layer.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) logins: AtomicU64,
    pub(crate) login_failures: AtomicU64,
    pub(crate) users_created: AtomicU64,
    pub(crate) users_updated: AtomicU64,
    pub(crate) update_failures: AtomicU64,
    pub(crate) bearer_verified: AtomicU64,
    pub(crate) bearer_cache_hits: AtomicU64,
    pub(crate) bearer_failures: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            logins: get(&self.logins),
            login_failures: get(&self.login_failures),
            users_created: get(&self.users_created),
            users_updated: get(&self.users_updated),
            update_failures: get(&self.update_failures),
            bearer_verified: get(&self.bearer_verified),
            bearer_cache_hits: get(&self.bearer_cache_hits),
            bearer_failures: get(&self.bearer_failures),
        }
    }
}

/// A copy of the layer's counters at one moment ([`JitLayer::metrics`](crate::JitLayer::metrics)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Interactive logins that ended with a session.
    pub logins: u64,
    /// Interactive logins refused or failed.
    pub login_failures: u64,
    /// Users created just in time (logins and bearer tokens).
    pub users_created: u64,
    /// Users whose mapped attributes changed and were written.
    pub users_updated: u64,
    /// Background (non-blocking) updates that failed after their retries.
    pub update_failures: u64,
    /// Bearer tokens whose signature and claims were checked.
    pub bearer_verified: u64,
    /// Bearer requests answered from the verified-token cache (no signature check).
    pub bearer_cache_hits: u64,
    /// Bearer tokens refused.
    pub bearer_failures: u64,
}
