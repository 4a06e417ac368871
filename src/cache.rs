//! The in-memory user caches (moka): by identity, for logins, and by id, for sessions.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::config::CacheConfig;
use crate::invalidation::Invalidation;
use crate::store::{IdentityKey, User, UserId};

/// The caches, and the sessions ended at logout. Every write to a user through the layer
/// refreshes both user entries; a logout drops the session's user; a change made directly in
/// the store is seen after the TTL, or at once when an invalidation bus carries it.
#[derive(Clone)]
pub(crate) struct UserCache {
    pub(crate) by_identity: Cache<IdentityKey, Arc<User>>,
    pub(crate) by_id: Cache<UserId, Arc<User>>,
    /// Session ids ended by logout, until the session would have expired anyway.
    pub(crate) revoked_sessions: Cache<String, ()>,
}

impl UserCache {
    pub(crate) fn new(config: &CacheConfig, session_ttl: Duration) -> Self {
        let ttl = Duration::from_secs(config.ttl_secs.max(1));
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
            revoked_sessions: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(session_ttl)
                .build(),
        }
    }

    /// Applies an invalidation (ours or another instance's) to this instance's caches.
    pub(crate) async fn apply(&self, event: &Invalidation) {
        match event {
            Invalidation::User { id } => self.forget(*id).await,
            Invalidation::Session { id } => self.revoked_sessions.insert(id.clone(), ()).await,
            Invalidation::All => {
                self.by_id.invalidate_all();
                self.by_identity.invalidate_all();
            }
        }
    }

    /// Replaces the cached copies of a user after a write.
    pub(crate) async fn store(&self, key: Option<IdentityKey>, user: Arc<User>) {
        if let Some(key) = key {
            self.by_identity.insert(key, user.clone()).await;
        }
        self.by_id.insert(user.id, user).await;
    }

    /// Forgets a user (logout, lock, delete).
    pub(crate) async fn forget(&self, id: UserId) {
        self.by_id.invalidate(&id).await;
        // Identity entries of this user are few and short-lived; scan them out.
        if let Err(err) = self
            .by_identity
            .invalidate_entries_if(move |_, user| user.id == id)
        {
            tracing::error!(error = %err, "could not drop a user from the identity cache");
        }
    }
}
