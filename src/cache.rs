//! The in-memory user caches (moka): by identity, for logins, and by user, for sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::config::CacheConfig;
use crate::expiring::{ExpiringSet, Inserted};
use crate::invalidation::Invalidation;
use crate::store::{IdentityKey, User, UserId, now_unix};

/// A user in one user-store domain: the key of the session cache.
pub(crate) type UserKey = (Arc<str>, UserId);

/// The caches, and the sessions ended at logout. Every write to a user through the layer
/// refreshes both user entries; a logout drops the session's user; a change made directly in
/// the store is seen after the TTL, or at once when an invalidation bus carries it.
#[derive(Clone)]
pub(crate) struct UserCache {
    pub(crate) by_identity: Cache<(Arc<str>, IdentityKey), Arc<User>>,
    pub(crate) by_id: Cache<UserKey, Arc<User>>,
    /// Sessions ended by logout.
    revoked: Arc<RevokedSessions>,
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
    pub(crate) fn new(config: &CacheConfig, max_revoked_sessions: u64) -> Self {
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
            revoked: Arc::new(RevokedSessions::new(max_revoked_sessions)),
            sessions: Cache::builder()
                .max_capacity(config.max_users)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Whether this session (its id and issue time) was ended by a logout, here or at
    /// another instance.
    pub(crate) fn is_revoked(&self, session_id: &str, issued_at: i64) -> bool {
        self.revoked.contains(session_id, issued_at)
    }

    /// Applies an invalidation (ours or another instance's) to this instance's caches.
    pub(crate) async fn apply(&self, event: &Invalidation) {
        match event {
            Invalidation::User { domain, id } => self.forget(domain, *id).await,
            Invalidation::Session {
                id,
                issued_at,
                expires_at,
            } => self.revoked.insert(id, *issued_at, *expires_at),
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

/// The sessions ended by logout, each until it would have expired anyway: an exact set of at
/// most `capacity` ids (no admission policy, nothing live forgotten) and a watermark.
///
/// When a revocation does not fit (the set is full of live entries), the set fails closed:
/// every session issued at or before the newest issue time it holds or is asked to hold is
/// refused from then on (the watermark), and the set starts empty. Those users log in again;
/// no revoked session is ever accepted again.
pub(crate) struct RevokedSessions {
    /// Session id -> its issue time (Unix seconds).
    set: ExpiringSet<i64>,
    /// Sessions issued at or before this (Unix seconds) are refused.
    ended_up_to: AtomicI64,
    /// Whether any session was ever revoked here: until then the lookups are skipped.
    any: AtomicBool,
}

impl RevokedSessions {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            set: ExpiringSet::new(usize::try_from(capacity).unwrap_or(usize::MAX)),
            ended_up_to: AtomicI64::new(i64::MIN),
            any: AtomicBool::new(false),
        }
    }

    /// Whether the session `id`, issued at `issued_at`, was revoked.
    pub(crate) fn contains(&self, id: &str, issued_at: i64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        // The set first: a full set raises the watermark before it empties itself.
        self.set.contains(id) || issued_at <= self.ended_up_to.load(Ordering::Acquire)
    }

    /// Records that session `id` (issued at `issued_at`, expiring at `expires_at`) ended.
    pub(crate) fn insert(&self, id: &str, issued_at: i64, expires_at: i64) {
        let remaining = expires_at.saturating_sub(now_unix());
        if remaining <= 0 {
            // Expired: refused for that already.
            return;
        }
        self.any.store(true, Ordering::Release);
        if issued_at <= self.ended_up_to.load(Ordering::Acquire) {
            return;
        }
        let ttl = Duration::from_secs(remaining.unsigned_abs());
        if self.set.insert(id, ttl, issued_at) != Inserted::Full {
            return;
        }
        self.set.clear_after(|held| {
            let newest = held.copied().fold(issued_at, i64::max);
            self.ended_up_to.fetch_max(newest, Ordering::AcqRel);
            tracing::error!(
                capacity = self.set.capacity(),
                ended_up_to = newest,
                "the revoked-session set is full: every session issued up to the newest revoked one is ended"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoke(set: &RevokedSessions, id: &str, issued_at: i64) {
        set.insert(id, issued_at, now_unix() + 3600);
    }

    #[test]
    fn nothing_is_revoked_until_a_logout() {
        let set = RevokedSessions::new(4);
        assert!(!set.contains("a", i64::MIN));
        revoke(&set, "a", 100);
        assert!(set.contains("a", 100));
        assert!(!set.contains("b", 100));
    }

    #[test]
    fn a_full_set_forgets_no_revoked_session() {
        let set = RevokedSessions::new(2);
        revoke(&set, "a", 100);
        revoke(&set, "b", 300);
        // Full: "c" does not fit, so every session issued up to 300 ends.
        revoke(&set, "c", 200);
        for (id, issued_at) in [("a", 100), ("b", 300), ("c", 200), ("other", 250)] {
            assert!(set.contains(id, issued_at), "{id} accepted again");
        }
        assert!(!set.contains("later", 301));
        // The set started empty: later revocations are exact again.
        revoke(&set, "d", 400);
        assert!(set.contains("d", 400));
        assert!(!set.contains("e", 400));
        assert_eq!(set.set.len(), 1);
    }

    #[test]
    fn an_expired_session_takes_no_room() {
        let set = RevokedSessions::new(1);
        set.insert("gone", 100, now_unix() - 1);
        revoke(&set, "a", 200);
        assert!(set.contains("a", 200));
        assert!(!set.contains("x", 150), "no watermark was needed");
    }
}
