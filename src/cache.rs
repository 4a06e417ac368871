//! The in-memory user caches (moka): by identity, for logins, and by user, for sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::config::CacheConfig;
use crate::invalidation::Invalidation;
use crate::store::{IdentityKey, User, UserId};

/// A user in one user-store domain: the key of the session cache.
pub(crate) type UserKey = (Arc<str>, UserId);

/// The caches, and the sessions ended at logout. Every write to a user through the layer
/// refreshes both user entries; a logout drops the session's user; a change made directly in
/// the store is seen after the TTL, or at once when an invalidation bus carries it.
#[derive(Clone)]
pub(crate) struct UserCache {
    pub(crate) by_identity: Cache<(Arc<str>, IdentityKey), Arc<User>>,
    pub(crate) by_id: Cache<UserKey, Arc<User>>,
    /// Session ids ended by logout, until the session would have expired anyway.
    revoked_sessions: Cache<String, ()>,
    /// Whether any session was ever revoked here: until then the lookup is skipped.
    any_revoked: Arc<AtomicBool>,
    /// Session cookies already decrypted, by their exact sealed value (equality with a value
    /// we decrypted is as good as decrypting it again). Expiry and revocation are still
    /// checked at every request.
    pub(crate) sessions: Cache<String, Arc<OpenedSession>>,
}

/// A decrypted session cookie.
#[derive(Debug)]
pub(crate) struct OpenedSession {
    pub(crate) user_id: UserId,
    pub(crate) session_id: String,
    pub(crate) auth: Arc<crate::extract::AuthInfo>,
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
            any_revoked: Arc::default(),
            sessions: Cache::builder()
                .max_capacity(config.max_users)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Whether this session id was ended by a logout (here or at another instance).
    pub(crate) fn is_revoked(&self, session_id: &str) -> bool {
        self.any_revoked.load(Ordering::Acquire) && self.revoked_sessions.contains_key(session_id)
    }

    /// Applies an invalidation (ours or another instance's) to this instance's caches.
    pub(crate) async fn apply(&self, event: &Invalidation) {
        match event {
            Invalidation::User { domain, id } => self.forget(domain, *id).await,
            Invalidation::Session { id } => {
                self.revoked_sessions.insert(id.clone(), ()).await;
                self.any_revoked.store(true, Ordering::Release);
            }
            Invalidation::All => {
                self.by_id.invalidate_all();
                self.by_identity.invalidate_all();
            }
        }
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
