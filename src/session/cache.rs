//! The in-memory caches (moka): users by identity, for logins, and by user, for sessions;
//! session cookies by sealed value; session records by id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use super::LiveSession;
use crate::config::CacheConfig;
use crate::invalidation::{Invalidation, SignedBus};
use crate::store::{IdentityKey, User, UserId};

/// A user in one user-store domain: the key of the session cache.
pub(crate) type UserKey = (Arc<str>, UserId);

/// The caches. Every write to a user through the layer refreshes both user entries; a
/// logout drops the session's user and record; a change made directly in the store is seen
/// after the TTL, or at once when an invalidation bus carries it.
#[derive(Clone)]
pub(crate) struct UserCache {
    pub(crate) by_identity: Cache<(Arc<str>, IdentityKey), Arc<User>>,
    pub(crate) by_id: Cache<UserKey, Arc<User>>,
    /// Session cookies already decrypted, by their exact sealed value (equality with a value
    /// we decrypted is as good as decrypting it again). The record is still checked at every
    /// request.
    pub(crate) sessions: Cache<String, Arc<OpenedSession>>,
    /// Session records by id (`session.record_cache_ttl_secs`): dropped when a session ends
    /// here or, through the bus, anywhere.
    pub(crate) records: Cache<Arc<str>, Arc<LiveSession>>,
    /// Counts the record invalidations, raised before each drops its entry: a record read
    /// from the store while it moved may have been read before an end that the invalidation
    /// could not drop yet ([`record_invalidations`](Self::record_invalidations)).
    record_invalidations: Arc<AtomicU64>,
}

/// A decrypted session cookie.
#[derive(Debug)]
pub(crate) struct OpenedSession {
    /// The record id (the hash of the cookie's secret).
    pub(crate) id: Arc<str>,
    /// A cookie of an earlier release (no record was written at its login).
    pub(crate) legacy: bool,
    pub(crate) user_id: UserId,
    pub(crate) auth: Arc<crate::auth::AuthInfo>,
}

impl UserCache {
    pub(crate) fn new(config: &CacheConfig, record_ttl_secs: Option<u64>) -> Self {
        let ttl = Duration::from_secs(config.ttl_secs.max(1));
        let record_ttl = record_ttl_secs.map_or(ttl, |s| Duration::from_secs(s.max(1)));
        Self {
            by_identity: Cache::builder()
                .max_capacity(config.max_users)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            by_id: Cache::builder()
                .max_capacity(config.max_users)
                .time_to_live(ttl)
                .build(),
            sessions: Cache::builder()
                .max_capacity(config.max_users)
                .time_to_live(ttl)
                .build(),
            records: Cache::builder()
                .max_capacity(config.max_users)
                .time_to_live(record_ttl)
                .build(),
            record_invalidations: Arc::default(),
        }
    }

    /// Applies an invalidation here and sends it to the other instances, if there is a bus.
    /// A bus failure is logged: the other instances then catch up after their cache TTL.
    pub(crate) async fn announce(&self, bus: Option<&SignedBus>, event: Invalidation) {
        self.apply(&event).await;
        if let Some(bus) = bus
            && let Err(err) = bus.publish(event).await
        {
            tracing::warn!(error = %err, "could not publish a cache invalidation");
        }
    }

    /// Applies an invalidation (ours or another instance's) to this instance's caches.
    pub(crate) async fn apply(&self, event: &Invalidation) {
        match event {
            Invalidation::User { domain, id } => self.forget(domain, *id).await,
            Invalidation::Session { id } => {
                self.record_invalidations.fetch_add(1, Ordering::SeqCst);
                self.records.invalidate(id.as_str()).await;
            }
            Invalidation::All => {
                self.record_invalidations.fetch_add(1, Ordering::SeqCst);
                self.by_id.invalidate_all();
                self.by_identity.invalidate_all();
                self.records.invalidate_all();
            }
        }
    }

    /// How many record invalidations this instance applied so far: unchanged across a store
    /// read and the caching of what it read, no end was missed in between.
    pub(crate) fn record_invalidations(&self) -> u64 {
        self.record_invalidations.load(Ordering::SeqCst)
    }

    /// Replaces the cached copies of a user after a write.
    pub(crate) async fn store(&self, domain: &Arc<str>, key: IdentityKey, user: Arc<User>) {
        self.by_identity
            .insert((domain.clone(), key), user.clone())
            .await;
        self.by_id.insert((domain.clone(), user.id), user).await;
    }

    /// Forgets a user (logout, lock, delete).
    pub(crate) async fn forget(&self, domain: &str, id: UserId) {
        let domain: Arc<str> = Arc::from(domain);
        self.by_id.invalidate(&(domain.clone(), id)).await;
        // Identity entries of this user are few and short-lived; scan them out.
        if let Err(err) = self
            .by_identity
            .invalidate_entries_if(move |(d, _), user| user.id == id && *d == domain)
        {
            tracing::error!(error = %err, "could not drop a user from the identity cache");
        }
    }
}
