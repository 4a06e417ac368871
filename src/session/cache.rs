//! The in-memory caches (moka): users by identity, for logins, and by user, for sessions;
//! session cookies by sealed value; session records by id.

use std::hash::{Hash, Hasher};
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
    pub(crate) by_identity: Cache<(Arc<str>, IdentityKey), IdentityEntry>,
    pub(crate) by_id: Cache<UserKey, Arc<User>>,
    /// The applications' own users (`CurrentUser<AppUser>`), by the crate's user: dropped
    /// with it.
    pub(crate) app_users: Cache<UserKey, crate::store::AnyUser>,
    /// Counts the user invalidations ([`forget`](Self::forget), [`Invalidation::All`]),
    /// raised before each drops its entries: an application user loaded while it moved may
    /// have been read before the change and is not cached.
    pub(crate) user_invalidations: Arc<AtomicU64>,
    /// Session cookies already decrypted, by their exact sealed value (equality with a value
    /// we decrypted is as good as decrypting it again). Each holds its session's record once
    /// a request checked it ([`OpenedSession::record`]), so a hit is one lookup; the record's
    /// time checks still run at every request.
    pub(crate) sessions: Cache<SealedKey, Arc<OpenedSession>>,
    /// Session records by id (`session.record_cache_ttl_secs`): dropped when a session ends
    /// here or, through the bus, anywhere. A record leaving this cache for any reason (an
    /// end, a token write, eviction, expiry) is marked dropped
    /// ([`LiveSession::mark_dropped`]), so the opened cookie holding it stops using it at once.
    pub(crate) records: Cache<Arc<str>, Arc<LiveSession>>,
    /// Counts the record invalidations, raised before each drops its entry: a record read
    /// from the store while it moved may have been read before an end that the invalidation
    /// could not drop yet ([`record_invalidations`](Self::record_invalidations)).
    record_invalidations: Arc<AtomicU64>,
    /// Counts the [`Invalidation::All`]s: `invalidate_all` drops records lazily (no eviction
    /// notice at once), so a held record read before the last one is not used.
    record_epoch: Arc<AtomicU64>,
    /// `records`' TTL in seconds: a held record is used at most this long after its read.
    record_ttl_secs: i64,
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
    /// The session's record as last checked, live and matching this cookie (`None`: not
    /// checked yet). Used only while it is current ([`LiveSession::is_current`]): not
    /// dropped from `records`, read after the last [`Invalidation::All`] and within the
    /// record TTL.
    pub(crate) record: std::sync::Mutex<Option<Arc<LiveSession>>>,
}

/// A sealed session cookie value: the key of [`UserCache::sessions`]. It hashes only its
/// last [`SEALED_TAIL`] bytes, the end of the ciphertext and its authentication tag, which
/// every value we sealed has random (and an entry is made only for a value we sealed): a hit
/// does not hash the whole value through the cache's keyed hasher. Equality compares all of
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealedKey(pub(crate) String);

/// A sealed value looked up in [`UserCache::sessions`] without allocating its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealedRef<'a>(pub(crate) &'a str);

/// How many trailing bytes of a sealed value its cache key hashes: 24 base64 characters,
/// 144 bits of tag and ciphertext.
const SEALED_TAIL: usize = 24;

fn sealed_tail(sealed: &str) -> &[u8] {
    let bytes = sealed.as_bytes();
    &bytes[bytes.len().saturating_sub(SEALED_TAIL)..]
}

impl Hash for SealedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        SealedRef(&self.0).hash(state);
    }
}

impl Hash for SealedRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(sealed_tail(self.0));
    }
}

impl moka::Equivalent<SealedKey> for SealedRef<'_> {
    fn equivalent(&self, key: &SealedKey) -> bool {
        self.0 == key.0
    }
}

/// How an identity's cache entry came to be: what the lookup that filled it did. Only the
/// caller whose lookup filled the entry (moka's `is_fresh`) reads it as its own doing; a
/// coalesced waiter and a later hit found the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read from the store (or written back after an update).
    Found,
    /// The identity was linked to an existing local user.
    Linked,
    /// The user was created.
    Created,
}

/// A cached local user of an identity, and how the entry came to be.
#[derive(Debug, Clone)]
pub(crate) struct IdentityEntry {
    pub(crate) user: Arc<User>,
    pub(crate) origin: Origin,
}

/// What a record's store read happened after: the invalidations applied by then and the
/// limit of its cached life ([`UserCache::read_mark`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadMark {
    pub(crate) invalidations: u64,
    pub(crate) epoch: u64,
    /// Unix seconds: the read plus the record TTL.
    pub(crate) fresh_until: i64,
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
            app_users: Cache::builder()
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
                .eviction_listener(|_, live: Arc<LiveSession>, _| live.mark_dropped())
                .build(),
            user_invalidations: Arc::default(),
            record_invalidations: Arc::default(),
            record_epoch: Arc::default(),
            record_ttl_secs: i64::try_from(record_ttl.as_secs()).unwrap_or(i64::MAX),
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
                self.drop_record(id).await;
            }
            Invalidation::All => {
                self.record_invalidations.fetch_add(1, Ordering::SeqCst);
                self.record_epoch.fetch_add(1, Ordering::SeqCst);
                self.user_invalidations.fetch_add(1, Ordering::SeqCst);
                self.by_id.invalidate_all();
                self.app_users.invalidate_all();
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

    /// Taken before a record's store read (or write), for the [`LiveSession`] made of it.
    pub(crate) fn read_mark(&self, now: i64) -> ReadMark {
        ReadMark {
            invalidations: self.record_invalidations(),
            epoch: self.record_epoch(),
            fresh_until: now.saturating_add(self.record_ttl_secs),
        }
    }

    /// How many [`Invalidation::All`]s this instance applied so far.
    pub(crate) fn record_epoch(&self) -> u64 {
        self.record_epoch.load(Ordering::SeqCst)
    }

    /// Drops a record from the cache and marks it dropped (the eviction listener does too;
    /// marking here does not depend on when it runs).
    pub(crate) async fn drop_record(&self, id: &str) {
        if let Some(live) = self.records.remove(id).await {
            live.mark_dropped();
        }
    }

    /// Replaces the cached copies of a user after a write.
    pub(crate) async fn store(&self, domain: &Arc<str>, key: IdentityKey, user: Arc<User>) {
        self.by_identity
            .insert(
                (domain.clone(), key),
                IdentityEntry {
                    user: user.clone(),
                    origin: Origin::Found,
                },
            )
            .await;
        self.by_id.insert((domain.clone(), user.id), user).await;
    }

    /// Forgets a user (logout, lock, delete).
    pub(crate) async fn forget(&self, domain: &str, id: UserId) {
        let domain: Arc<str> = Arc::from(domain);
        self.user_invalidations.fetch_add(1, Ordering::SeqCst);
        self.by_id.invalidate(&(domain.clone(), id)).await;
        self.app_users.invalidate(&(domain.clone(), id)).await;
        // Identity entries of this user are few and short-lived; scan them out.
        if let Err(err) = self
            .by_identity
            .invalidate_entries_if(move |(d, _), entry| entry.user.id == id && *d == domain)
        {
            tracing::error!(error = %err, "could not drop a user from the identity cache");
        }
    }
}
