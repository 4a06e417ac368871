//! [`Sessions`]: issue, open and end server-side sessions. The record in the
//! [`SessionStore`](super::SessionStore) is the truth; the cookie carries the session's secret
//! and what the hot path needs; every instance caches records and drops them when the
//! invalidation bus says a session ended.
//!
//! Staleness: an instance without a bus sees a session ended elsewhere (another instance, the
//! store directly) once its cached record expires: `session.record_cache_ttl_secs` (default
//! `cache.ttl_secs`, 60 s). A record that is not cached is read from the store, so a session
//! this instance has not seen yet is checked at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use base64::Engine;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::{OpenedSession, UserCache};
use super::cache::{ReadMark, SealedKey, SealedRef};
use super::{CookieCodec, SameSite, cookies_named, random_token};
use crate::auth::{AuthInfo, AuthMethod};
use crate::invalidation::{Invalidation, SignedBus};
use crate::metrics::Metrics;
use crate::store::session_store::{
    EndReason, IdpSession, SealedTokens, SessionRecord, SessionStoreHandle,
};
use crate::store::{Identity, StoreError, UserId, now_unix};

/// `last_seen` is written to the store at most this often per session (seconds).
pub(crate) const TOUCH_INTERVAL_SECS: i64 = 60;

/// Records are purged this long after their absolute end (seconds): a day.
const PURGE_AFTER_SECS: i64 = 24 * 3600;

/// Why a session operation failed.
///
/// ```
/// use jit_provision::session::SessionError;
/// use jit_provision::store::StoreError;
/// let err = SessionError::from(StoreError::unavailable("down"));
/// assert_eq!((err.status().as_u16(), err.code()), (503, "session_store_unavailable"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session store failed or could not be reached.
    #[error("the session store failed")]
    Store(#[from] StoreError),
}

impl SessionError {
    /// The HTTP status: `503` when the store is unavailable, else `500`.
    pub fn status(&self) -> http::StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for SessionError {
    fn status(&self) -> http::StatusCode {
        match self {
            Self::Store(StoreError::Unavailable(_)) => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::Store(StoreError::Unavailable(_)) => "session_store_unavailable",
            Self::Store(_) => "session_store_failed",
        }
    }
}

/// What the session cookie carries, sealed: the session's secret and what the hot path
/// needs. (Cookies of earlier releases carry the older `SessionData` format, without
/// `v`.)
#[derive(Serialize, Deserialize)]
struct SessionCookie {
    /// 2 for this format; absent (0) in earlier releases' cookies.
    #[serde(rename = "v", default)]
    version: u8,
    #[serde(rename = "u")]
    user_id: UserId,
    #[serde(rename = "d", default = "primary")]
    domain: String,
    #[serde(rename = "p")]
    provider: String,
    #[serde(rename = "s")]
    subject: String,
    /// The secret; the record's id is its hash.
    #[serde(rename = "id")]
    secret: String,
    #[serde(rename = "iat")]
    issued_at: i64,
    #[serde(rename = "exp")]
    expires_at: i64,
}

fn primary() -> String {
    crate::config::PRIMARY_DOMAIN.to_owned()
}

/// The tokens of a login, kept (sealed) in its session record.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SessionTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The SAML NameID as asserted at login, for a Single Logout's `LogoutRequest`.
    #[cfg(feature = "saml")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml_name_id: Option<crate::saml::NameId>,
    /// When the access token was received, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obtained_at: Option<i64>,
    /// The login's nonce: an ID token of a refresh may carry it again, and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("id_token", &self.id_token.is_some())
            .field("access_token", &self.access_token.is_some())
            .field("refresh_token", &self.refresh_token.is_some())
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

/// What a login brings to its session besides the user.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoginSession {
    /// The IdP's session: OIDC `sid`, SAML `SessionIndex`.
    pub idp_session: Option<String>,
    pub tokens: Option<SessionTokens>,
}

/// A session record as cached on this instance, with the last request seen here.
#[derive(Debug)]
pub(crate) struct LiveSession {
    record: SessionRecord,
    /// `record.user_id` parsed once (`None`: not one of ours), so a request compares numbers.
    user_id: Option<UserId>,
    /// Last request seen by this instance, Unix seconds.
    last_seen: AtomicI64,
    /// The `last_seen` the store holds (written or read), Unix seconds.
    stored_seen: AtomicI64,
    /// What this instance had applied before the record was read (or written): when more
    /// record invalidations were applied by the time it is cached, an end may have
    /// overtaken the read ([`UserCache::record_invalidations`]).
    read_after: ReadMark,
    /// Set when this copy left the record cache (an end here or through the bus, a token
    /// write, eviction, expiry), or was never in it: an opened cookie holding it reads the
    /// cache (or the store) again.
    dropped: AtomicBool,
}

impl LiveSession {
    fn new(record: SessionRecord, read_after: ReadMark) -> Arc<Self> {
        let seen = record.last_seen;
        Arc::new(Self {
            read_after,
            user_id: record.user_id.parse().ok().map(UserId),
            record,
            last_seen: AtomicI64::new(seen),
            stored_seen: AtomicI64::new(seen),
            dropped: AtomicBool::new(false),
        })
    }

    /// Marks this copy as no longer the cached one (see [`is_current`](Self::is_current)).
    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::SeqCst);
    }

    /// Whether an opened cookie holding this copy may use it without looking the record up:
    /// it is still the cached one, read after the last [`Invalidation::All`] (`epoch`), and
    /// within the record TTL of its read.
    fn is_current(&self, now: i64, epoch: u64) -> bool {
        !self.dropped.load(Ordering::SeqCst)
            && self.read_after.epoch == epoch
            && now < self.read_after.fresh_until
    }
}

/// The record an opened cookie holds, when it is current.
fn held(session: &OpenedSession, now: i64, epoch: u64) -> Option<Arc<LiveSession>> {
    let held = session.record.lock().unwrap_or_else(|e| e.into_inner());
    held.as_ref()
        .filter(|live| live.is_current(now, epoch))
        .cloned()
}

/// What [`Sessions::open`] found.
pub(crate) enum Opened {
    /// No session cookie.
    None,
    /// A session cookie that no longer holds (or was not ours): the response deletes it.
    Stale,
    /// A live session.
    Live(Arc<OpenedSession>),
}

/// Issues, opens and ends sessions (one per layer; clones share it).
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    store: SessionStoreHandle,
    codec: CookieCodec,
    cookie_name: String,
    ttl_secs: i64,
    idle_secs: Option<u64>,
    cache: UserCache,
    bus: Option<SignedBus>,
    /// Last purge of long-expired records by this instance, Unix seconds.
    purged_at: AtomicI64,
}

/// The store id of a session secret: URL-safe base64 of its SHA-256.
pub(crate) fn record_id(secret: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

impl Sessions {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: SessionStoreHandle,
        codec: CookieCodec,
        cookie_name: String,
        ttl_secs: u64,
        idle_secs: u64,
        cache: UserCache,
        bus: Option<SignedBus>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                codec,
                cookie_name,
                ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
                idle_secs: (idle_secs > 0).then_some(idle_secs),
                cache,
                bus,
                purged_at: AtomicI64::new(now_unix()),
            }),
        }
    }

    /// A `Set-Cookie` value deleting the session cookie.
    pub(crate) fn clear_cookie(&self) -> String {
        self.inner
            .codec
            .clear(&self.inner.cookie_name, "/", SameSite::Lax)
    }

    /// Starts a session at login: writes its record and answers the `Set-Cookie` value.
    pub(crate) async fn issue(
        &self,
        domain: &str,
        user_id: UserId,
        identity: &Identity,
        login: LoginSession,
    ) -> Result<String, SessionError> {
        let inner = &*self.inner;
        let now = now_unix();
        let expires_at = now.saturating_add(inner.ttl_secs);
        let secret = random_token(32);
        let id = record_id(&secret);
        let tokens = login.tokens.map(|tokens| self.seal_tokens(&id, &tokens));
        let invalidations = inner.cache.read_mark(now);
        let record = SessionRecord::new(
            id.clone(),
            domain,
            user_id.to_string(),
            &identity.provider,
            &identity.subject,
            now,
            expires_at,
        )
        .with_idp_session(login.idp_session)
        .with_idle_timeout(inner.idle_secs)
        .with_tokens(tokens);
        if !inner.store.0.create_session(&record).await? {
            // 256 random bits collided: refuse rather than share a record.
            return Err(StoreError::backend("a session id was issued twice").into());
        }
        inner
            .cache
            .records
            .insert(
                Arc::from(id.as_str()),
                LiveSession::new(record, invalidations),
            )
            .await;
        self.purge_now_and_then(now);
        let cookie = SessionCookie {
            version: 2,
            user_id,
            domain: domain.to_owned(),
            provider: identity.provider.clone(),
            subject: identity.subject.clone(),
            secret,
            issued_at: now,
            expires_at,
        };
        let json = serde_json::to_string(&cookie).expect("plain struct serializes");
        let sealed = inner.codec.seal(&inner.cookie_name, &json);
        Ok(inner.codec.set(
            &inner.cookie_name,
            sealed,
            "/",
            SameSite::Lax,
            inner.ttl_secs,
        ))
    }

    /// At most once an hour per instance, in the background: deletes the records a day past
    /// their absolute end.
    fn purge_now_and_then(&self, now: i64) {
        let last = self.inner.purged_at.load(Ordering::Relaxed);
        if now - last < 3600
            || self
                .inner
                .purged_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            match store.0.purge_sessions(now - PURGE_AFTER_SECS).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "purged expired session records"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "could not purge expired sessions"),
            }
        });
    }

    /// Seals tokens for the record `id` (bound to it: a blob moved to another record does
    /// not open).
    fn seal_tokens(&self, id: &str, tokens: &SessionTokens) -> SealedTokens {
        let json = serde_json::to_string(tokens).expect("plain struct serializes");
        SealedTokens::from_stored(self.inner.codec.seal(&tokens_aad(id), &json))
    }

    /// The tokens of a record, opened with any key of the ring (for RP-initiated logout's
    /// `id_token_hint`, SAML Single Logout and API calls).
    pub(crate) fn tokens(&self, record: &SessionRecord) -> Option<SessionTokens> {
        let sealed = record.tokens.as_ref()?;
        let json = self
            .inner
            .codec
            .open_blob(&tokens_aad(&record.id), sealed.as_str())?;
        serde_json::from_str(&json).ok()
    }

    /// The tokens of a session, from its cached record (the store's when not cached).
    pub(crate) async fn session_tokens(
        &self,
        session: &OpenedSession,
    ) -> Result<Option<SessionTokens>, SessionError> {
        Ok(self
            .record(session)
            .await?
            .and_then(|live| self.tokens(&live.record)))
    }

    /// Runs `update` under the store's lock of session `id`
    /// ([`SessionStore::update_tokens`](super::SessionStore::update_tokens)): it gets the
    /// record as stored and its tokens opened, and answers the tokens to seal and store
    /// instead (`None`: leave them) and what it found. Afterwards this instance drops its
    /// copy of the record (the next request reads the store), and, when tokens were written,
    /// every other instance does too. `None` when there is no record of that id.
    pub(crate) async fn update_tokens<F, Fut, T>(
        &self,
        id: &str,
        update: F,
    ) -> Result<Option<T>, SessionError>
    where
        F: FnOnce(SessionRecord, Option<SessionTokens>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Option<SessionTokens>, T)> + Send + 'static,
        T: Send + 'static,
    {
        let this = self.clone();
        let found = Arc::new(std::sync::Mutex::new(None));
        let slot = found.clone();
        let wrote = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = wrote.clone();
        let record = self
            .inner
            .store
            .0
            .update_tokens(
                id,
                Box::new(move |record| {
                    Box::pin(async move {
                        let tokens = this.tokens(&record);
                        let (new, outcome) = update(record.clone(), tokens).await;
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                        let new = new?;
                        written.store(true, Ordering::Release);
                        Some(this.seal_tokens(&record.id, &new))
                    })
                }),
            )
            .await?;
        let Some(record) = record else {
            return Ok(None);
        };
        // Dropped, not replaced: the record was read under the lock, and an end waiting on
        // it may have ended it and dropped our copy since; the next request reads the store.
        // A last request the copy saw and the store did not is written first.
        if let Some(cached) = self.inner.cache.records.get(record.id.as_str()).await {
            let seen = cached.last_seen.load(Ordering::Acquire);
            if seen > record.last_seen
                && let Err(err) = self.inner.store.0.touch_session(&record.id, seen).await
            {
                tracing::warn!(error = %err, "could not record a session's last request");
            }
        }
        if wrote.load(Ordering::Acquire) {
            self.forget(std::iter::once(record.id.clone())).await;
        } else {
            self.inner.cache.drop_record(&record.id).await;
        }
        let outcome = found.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(outcome)
    }

    /// Decrypts and parses one session cookie value (no check of its record).
    fn unseal(&self, sealed: &str) -> Option<Arc<OpenedSession>> {
        let json = self.inner.codec.open(&self.inner.cookie_name, sealed)?;
        let cookie: SessionCookie = serde_json::from_str(&json).ok()?;
        Some(Arc::new(OpenedSession {
            id: Arc::from(record_id(&cookie.secret)),
            legacy: cookie.version == 0,
            user_id: cookie.user_id,
            auth: Arc::new(AuthInfo {
                provider: cookie.provider,
                domain: cookie.domain,
                subject: cookie.subject,
                issued_at: cookie.issued_at,
                expires_at: cookie.expires_at,
                method: AuthMethod::Session,
            }),
            record: std::sync::Mutex::new(None),
        }))
    }

    /// The session cookie of a request, decrypted (cached by sealed value), without checking
    /// its record. With several cookies of our name (cookie tossing from a sibling domain),
    /// only one we sealed counts.
    pub(crate) async fn cookie(
        &self,
        headers: &HeaderMap,
        metrics: Option<&Metrics>,
    ) -> Option<Option<Arc<OpenedSession>>> {
        let cache = &self.inner.cache.sessions;
        let mut values = cookies_named(headers, &self.inner.cookie_name).peekable();
        values.peek()?;
        for sealed in values {
            let cached = cache.get(&SealedRef(sealed)).await;
            if let Some(metrics) = metrics {
                metrics.session_cache(cached.is_some());
            }
            if let Some(session) = cached {
                return Some(Some(session));
            }
            if let Some(session) = self.unseal(sealed) {
                Box::pin(cache.insert(SealedKey(sealed.to_owned()), session.clone())).await;
                return Some(Some(session));
            }
        }
        Some(None)
    }

    /// The request's session, checked against its record: on a hit, the record the opened
    /// cookie holds (one cache lookup in all, no store read), else the cached record, else
    /// the store's.
    pub(crate) async fn open(
        &self,
        headers: &HeaderMap,
        metrics: &Metrics,
    ) -> Result<Opened, SessionError> {
        let session = match self.cookie(headers, Some(metrics)).await {
            None => return Ok(Opened::None),
            Some(None) => return Ok(Opened::Stale),
            Some(Some(session)) => session,
        };
        let now = now_unix();
        if session.auth.expires_at <= now {
            return Ok(Opened::Stale);
        }
        let live = match held(&session, now, self.inner.cache.record_epoch()) {
            Some(live) => live,
            None => {
                // Boxed, as the idle end below: a hit's future stays small.
                let Some(live) = Box::pin(self.record(&session)).await? else {
                    return Ok(Opened::Stale);
                };
                let record = &live.record;
                if record.domain != session.auth.domain
                    || live.user_id != Some(session.user_id)
                    || record.provider != session.auth.provider
                    || record.ended_at.is_some()
                {
                    return Ok(Opened::Stale);
                }
                // Held only while current: an invalidation marks it dropped, whenever it lands.
                *session.record.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
                live
            }
        };
        let record = &live.record;
        if record.expires_at <= now {
            return Ok(Opened::Stale);
        }
        if let Some(idle) = record.idle_timeout_secs {
            let seen = live.last_seen.load(Ordering::Acquire);
            if now >= seen.saturating_add(idle as i64)
                && !Box::pin(self.seen_elsewhere(&live, now)).await?
            {
                Box::pin(self.end(&record.id, EndReason::Idle)).await?;
                return Ok(Opened::Stale);
            }
        }
        // Written once a second at most (a read otherwise).
        if live.last_seen.load(Ordering::Acquire) < now {
            live.last_seen.fetch_max(now, Ordering::AcqRel);
        }
        self.touch(&live, now);
        Ok(Opened::Live(session))
    }

    /// Whether another instance saw the session recently enough (by the store's
    /// `last_seen`) that it is not idle after all; refreshes the cached record if so.
    async fn seen_elsewhere(&self, live: &LiveSession, now: i64) -> Result<bool, SessionError> {
        let Some(fresh) = self.inner.store.0.get_session(&live.record.id).await? else {
            return Ok(false);
        };
        if !fresh.is_live(now) {
            return Ok(false);
        }
        live.last_seen.fetch_max(fresh.last_seen, Ordering::AcqRel);
        live.stored_seen
            .fetch_max(fresh.last_seen, Ordering::AcqRel);
        Ok(true)
    }

    /// Writes `last_seen` to the store when the stored one is a minute old (in the
    /// background; one write per session per minute at most).
    fn touch(&self, live: &LiveSession, now: i64) {
        let stored = live.stored_seen.load(Ordering::Acquire);
        if now - stored < TOUCH_INTERVAL_SECS
            || live
                .stored_seen
                .compare_exchange(stored, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.inner.store.clone();
        let id = live.record.id.clone();
        tokio::spawn(async move {
            if let Err(err) = store.0.touch_session(&id, now).await {
                tracing::warn!(error = %err, "could not record a session's last request");
            }
        });
    }

    /// The cached record of a session, or the store's (adopting a cookie of an earlier
    /// release that has none: its secret is as good as a new one's; see
    /// [`adopt`](Self::adopt)). Concurrent misses share one store read. A record that an
    /// invalidation (an end, here or elsewhere) may have overtaken between its store read
    /// and its caching is dropped and read again.
    async fn record(
        &self,
        session: &OpenedSession,
    ) -> Result<Option<Arc<LiveSession>>, SessionError> {
        let records = &self.inner.cache.records;
        if let Some(live) = records.get(&session.id).await {
            return Ok(Some(live));
        }
        let store = &self.inner.store;
        let loaded = records
            .try_get_with(session.id.clone(), async {
                let invalidations = self.inner.cache.read_mark(now_unix());
                let found = store.0.get_session(&session.id).await?;
                let record = match found {
                    Some(record) => record,
                    None if session.legacy => self.adopt(session).await?,
                    None => return Err(None),
                };
                Ok(LiveSession::new(record, invalidations))
            })
            .await;
        match loaded {
            Ok(live)
                if self.inner.cache.record_invalidations() != live.read_after.invalidations =>
            {
                self.inner.cache.drop_record(&session.id).await;
                let invalidations = self.inner.cache.read_mark(now_unix());
                let found = store.0.get_session(&session.id).await?;
                // Not cached, so no invalidation would reach it: held, it is not used.
                Ok(found.map(|record| {
                    let live = LiveSession::new(record, invalidations);
                    live.mark_dropped();
                    live
                }))
            }
            Ok(live) => Ok(Some(live)),
            Err(shared) => match &*shared {
                None => Ok(None),
                Some(err) => {
                    tracing::error!(error = %err, "loading a session failed");
                    Err(err.duplicate().into())
                }
            },
        }
    }

    /// The current record of a request's session (cached or stored; ended ones too), e.g. for
    /// its tokens ([`tokens`](Self::tokens)) before a logout at the IdP. `None`: no cookie of
    /// ours, or no record.
    #[allow(dead_code)]
    pub(crate) async fn record_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<SessionRecord>, SessionError> {
        let Some(Some(session)) = self.cookie(headers, None).await else {
            return Ok(None);
        };
        Ok(self.record(&session).await?.map(|live| live.record.clone()))
    }

    /// Writes the record of a cookie of an earlier release and answers it as stored: ended
    /// when every session of its user was ended at or after the cookie was issued (log out
    /// everywhere, admin end-sessions, lock, deprovision), since that end found no record of
    /// it. The record is written before the end is read, so an end racing the adoption
    /// either ends the new record or is seen here.
    async fn adopt(&self, session: &OpenedSession) -> Result<SessionRecord, StoreError> {
        let store = &self.inner.store.0;
        store.create_session(&self.adopted(session)).await?;
        let user_id = session.user_id.to_string();
        let ended_at = store
            .sessions_ended_for_user_at(&session.auth.domain, &user_id)
            .await?;
        if let Some(at) = ended_at.filter(|at| session.auth.issued_at <= *at) {
            tracing::info!(
                user_id = session.user_id.0,
                "refused a session cookie of an earlier release: its user's sessions were ended after it was issued"
            );
            store
                .end_session(&session.id, at, EndReason::Everywhere)
                .await?;
        }
        store
            .get_session(&session.id)
            .await?
            .ok_or_else(|| StoreError::backend("an adopted session record vanished"))
    }

    /// The record of a cookie of an earlier release, from what it carries.
    fn adopted(&self, session: &OpenedSession) -> SessionRecord {
        SessionRecord::new(
            session.id.to_string(),
            &session.auth.domain,
            session.user_id.to_string(),
            &session.auth.provider,
            &session.auth.subject,
            session.auth.issued_at,
            session.auth.expires_at,
        )
        .with_idle_timeout(self.inner.idle_secs)
    }

    /// Ends one session in the store and on every instance; `true` when it was live.
    pub(crate) async fn end(&self, id: &str, reason: EndReason) -> Result<bool, SessionError> {
        let ended = self
            .inner
            .store
            .0
            .end_session(id, now_unix(), reason)
            .await?;
        self.forget(std::iter::once(id.to_owned())).await;
        Ok(ended)
    }

    /// Ends the session of a request's cookie (logout), adopting a record for a cookie of
    /// an earlier release so its end holds too. `None`: no cookie of ours.
    pub(crate) async fn end_cookie(
        &self,
        headers: &HeaderMap,
        reason: EndReason,
    ) -> Result<Option<Arc<OpenedSession>>, SessionError> {
        let Some(Some(session)) = self.cookie(headers, None).await else {
            return Ok(None);
        };
        if session.legacy {
            self.inner
                .store
                .0
                .create_session(&self.adopted(&session))
                .await?;
        }
        self.end(&session.id, reason).await?;
        Ok(Some(session))
    }

    /// Ends every session of a user, in the store and on every instance; how many.
    pub(crate) async fn end_for_user(
        &self,
        domain: &str,
        user_id: UserId,
        reason: EndReason,
    ) -> Result<usize, SessionError> {
        let ended = self
            .inner
            .store
            .0
            .end_sessions_for_user(domain, &user_id.to_string(), now_unix(), reason)
            .await?;
        let count = ended.len();
        self.forget(ended).await;
        Ok(count)
    }

    /// Ends the sessions of an identity provider's session (`sid` given: that IdP session
    /// of that provider; only `subject`: every session of provider and subject; both: both
    /// must match; neither: none), in the store and on every instance; how many. For the
    /// IdP-initiated logouts (back-channel, front-channel, SAML SLO).
    #[cfg_attr(not(feature = "saml"), allow(dead_code))] // SAML Single Logout.
    pub(crate) async fn end_by_idp_session(
        &self,
        provider: &str,
        sid: Option<&str>,
        subject: Option<&str>,
    ) -> Result<usize, SessionError> {
        self.end_selected(IdpSession::new(provider, sid, subject))
            .await
    }

    /// Ends the sessions `selection` selects ([`IdpSession::matches`]), in the store and on
    /// every instance; how many.
    pub(crate) async fn end_selected(
        &self,
        selection: IdpSession<'_>,
    ) -> Result<usize, SessionError> {
        if selection.sid.is_none() && selection.subject.is_none() {
            return Ok(0);
        }
        let ended = self
            .inner
            .store
            .0
            .end_sessions_by_idp_session(selection, now_unix(), EndReason::IdpLogout)
            .await?;
        let count = ended.len();
        self.forget(ended).await;
        Ok(count)
    }

    /// The live sessions of a user, oldest first.
    pub(crate) async fn list(
        &self,
        domain: &str,
        user_id: UserId,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        Ok(self
            .inner
            .store
            .0
            .list_sessions_for_user(domain, &user_id.to_string(), now_unix())
            .await?)
    }

    /// Drops ended sessions from every instance's cache.
    async fn forget(&self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            self.inner
                .cache
                .announce(self.inner.bus.as_ref(), Invalidation::Session { id })
                .await;
        }
    }
}

/// The associated data sealing the tokens of record `id`.
fn tokens_aad(id: &str) -> String {
    format!("jit-session-tokens.{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheConfig;
    use crate::session::{MemorySessionStore, SessionKey, SessionStore};

    fn sessions<S: SessionStore + Clone>(codec: CookieCodec, store: &S) -> Sessions {
        let cache = UserCache::new(&CacheConfig::default(), None);
        Sessions::new(
            SessionStoreHandle::new(store.clone()),
            codec,
            "jit_session".into(),
            3600,
            0,
            cache,
            None,
        )
    }

    fn tokens() -> SessionTokens {
        SessionTokens {
            id_token: Some("eyJ.the-id-token.sig".into()),
            access_token: Some("at".into()),
            refresh_token: None,
            expires_at: Some(42),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn tokens_sealed_under_a_previous_key_open_and_stay_bound_to_their_record() {
        let (old, new) = (SessionKey::generate(), SessionKey::generate());
        let store = MemorySessionStore::new();
        let before = sessions(CookieCodec::new(&old, &[], true), &store);
        let identity = Identity::new("corp", "https://idp", "sub");
        let login = LoginSession {
            idp_session: Some("sid-1".into()),
            tokens: Some(tokens()),
        };
        let set_cookie = before
            .issue("PRIMARY", UserId(7), &identity, login)
            .await
            .unwrap();
        assert!(set_cookie.starts_with("jit_session=2."), "{set_cookie}");
        let records = store
            .list_sessions_for_user("PRIMARY", "7", now_unix())
            .await
            .unwrap();
        let record = &records[0];
        assert_eq!(record.idp_session.as_deref(), Some("sid-1"));
        let sealed = record.tokens.as_ref().unwrap().as_str();
        assert!(!sealed.contains("the-id-token"));
        // Rotated: the new key seals, the old still opens.
        let rotated = sessions(
            CookieCodec::new(&new, std::slice::from_ref(&old), true),
            &store,
        );
        assert_eq!(rotated.tokens(record), Some(tokens()));
        let without_old = sessions(CookieCodec::new(&new, &[], true), &store);
        assert_eq!(without_old.tokens(record), None);
        // Moved to another record, the blob does not open.
        let mut moved = record.clone();
        moved.id = "another".into();
        assert_eq!(rotated.tokens(&moved), None);
    }

    #[tokio::test]
    async fn the_store_holds_the_hash_of_the_cookies_secret() {
        let key = SessionKey::generate();
        let codec = CookieCodec::new(&key, &[], true);
        let store = MemorySessionStore::new();
        let sessions = sessions(codec.clone(), &store);
        let identity = Identity::new("corp", "https://idp", "sub");
        let set_cookie = sessions
            .issue("PRIMARY", UserId(7), &identity, LoginSession::default())
            .await
            .unwrap();
        let sealed = set_cookie
            .split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .unwrap()
            .1;
        let json = codec.open("jit_session", sealed).unwrap();
        let cookie: SessionCookie = serde_json::from_str(&json).unwrap();
        assert_eq!(cookie.version, 2);
        // 256 random bits, as URL-safe base64.
        assert_eq!(cookie.secret.len(), 43);
        let id = record_id(&cookie.secret);
        assert_ne!(id, cookie.secret);
        let record = store.get_session(&id).await.unwrap().unwrap();
        assert_eq!(record.user_id, "7");
        assert!(store.get_session(&cookie.secret).await.unwrap().is_none());
    }

    /// A memory store that, once armed, ends the session through `ender` right after a
    /// store read answered it live: an end that overtakes the read before its caching.
    #[derive(Clone, Default)]
    struct Racing {
        inner: MemorySessionStore,
        ender: Arc<std::sync::OnceLock<Sessions>>,
        after_get: Arc<std::sync::atomic::AtomicBool>,
        after_update: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Racing {
        async fn race(&self, armed: &std::sync::atomic::AtomicBool, id: &str) {
            if armed.swap(false, Ordering::SeqCst) {
                let sessions = self.ender.get().unwrap();
                assert!(sessions.end(id, EndReason::Logout).await.unwrap());
            }
        }
    }

    impl crate::store::session_store::SessionStoreWrapper for Racing {
        type Inner = MemorySessionStore;

        fn inner(&self) -> &MemorySessionStore {
            &self.inner
        }

        async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
            let found = self.inner.get_session(id).await;
            self.race(&self.after_get, id).await;
            found
        }

        async fn update_tokens<'a>(
            &'a self,
            id: &'a str,
            update: super::super::TokensUpdate<'a>,
        ) -> Result<Option<SessionRecord>, StoreError> {
            // The record as read under the lock, as a SQL store answers it.
            let before = self.inner.get_session(id).await?;
            let written = self.inner.update_tokens(id, update).await?;
            self.race(&self.after_update, id).await;
            Ok(written.map(|written| SessionRecord {
                ended_at: before.and_then(|b| b.ended_at),
                ..written
            }))
        }
    }

    /// A live session in a [`Racing`] store: its layer and the request headers of its cookie.
    async fn racing() -> (Racing, Sessions, HeaderMap) {
        let store = Racing::default();
        let codec = CookieCodec::new(&SessionKey::generate(), &[], true);
        let sessions = sessions(codec, &store);
        store.ender.set(sessions.clone()).ok().unwrap();
        let identity = Identity::new("corp", "https://idp", "sub");
        let login = LoginSession {
            idp_session: None,
            tokens: Some(tokens()),
        };
        let set_cookie = sessions
            .issue("PRIMARY", UserId(7), &identity, login)
            .await
            .unwrap();
        let mut headers = HeaderMap::new();
        let pair = set_cookie.split(';').next().unwrap();
        headers.insert(http::header::COOKIE, pair.parse().unwrap());
        (store, sessions, headers)
    }

    fn id_of(opened: Opened) -> Arc<str> {
        match opened {
            Opened::Live(session) => session.id.clone(),
            _ => panic!("the session is not live"),
        }
    }

    /// An invalidation bus inside the process (as `tests/common/local_bus.rs`).
    struct LocalBus(tokio::sync::broadcast::Sender<crate::invalidation::SignedInvalidation>);

    impl crate::invalidation::InvalidationBus for LocalBus {
        fn publish(
            &self,
            message: crate::invalidation::SignedInvalidation,
        ) -> futures_util::future::BoxFuture<'_, Result<(), StoreError>> {
            let _ = self.0.send(message);
            Box::pin(async { Ok(()) })
        }
        fn subscribe(
            &self,
        ) -> futures_util::stream::BoxStream<'static, crate::invalidation::BusEvent> {
            use futures_util::StreamExt;
            futures_util::stream::unfold(self.0.subscribe(), |mut rx| async move {
                let message = rx.recv().await.ok()?;
                Some((crate::invalidation::BusEvent::Message(message), rx))
            })
            .boxed()
        }
    }

    /// The record the opened cookie of `headers` holds, if it is current.
    async fn held_by(sessions: &Sessions, headers: &HeaderMap) -> Option<Arc<LiveSession>> {
        let opened = sessions.cookie(headers, None).await??;
        held(&opened, now_unix(), sessions.inner.cache.record_epoch())
    }

    /// Two instances on one store and one bus (each its own caches), the headers of a
    /// session's cookie issued on the first, and the bus's verified events from now on.
    async fn two_instances() -> (
        Sessions,
        Sessions,
        HeaderMap,
        futures_util::stream::BoxStream<'static, Invalidation>,
    ) {
        let key = SessionKey::generate();
        let store = MemorySessionStore::new();
        let bus = SignedBus::new(
            Arc::new(LocalBus(tokio::sync::broadcast::channel(16).0)),
            crate::invalidation::InvalidationSigner::new(&key, &[]),
        );
        let events = bus.subscribe();
        let instance = || {
            Sessions::new(
                SessionStoreHandle::new(store.clone()),
                CookieCodec::new(&key, &[], true),
                "jit_session".into(),
                3600,
                0,
                UserCache::new(&CacheConfig::default(), None),
                Some(bus.clone()),
            )
        };
        let (here, there) = (instance(), instance());
        let identity = Identity::new("corp", "https://idp", "sub");
        let set_cookie = here
            .issue("PRIMARY", UserId(7), &identity, LoginSession::default())
            .await
            .unwrap();
        let mut headers = HeaderMap::new();
        let pair = set_cookie.split(';').next().unwrap();
        headers.insert(http::header::COOKIE, pair.parse().unwrap());
        (here, there, headers, events)
    }

    #[tokio::test]
    async fn a_hit_uses_the_record_its_opened_cookie_holds_until_the_bus_brings_an_end() {
        use futures_util::StreamExt;
        let (here, there, headers, mut events) = two_instances().await;
        let metrics = Metrics::default();
        // The first request on `there` reads the record from the store; its opened cookie
        // holds that very copy (the one in the record cache) from then on.
        let id = id_of(there.open(&headers, &metrics).await.unwrap());
        let held = held_by(&there, &headers).await.expect("a held record");
        let cached = there.inner.cache.records.get(&id).await.unwrap();
        assert!(Arc::ptr_eq(&held, &cached));
        assert!(matches!(
            there.open(&headers, &metrics).await.unwrap(),
            Opened::Live(_)
        ));
        // Ended on `here` (log out everywhere): the store knows, `there` not yet.
        assert_eq!(
            here.end_for_user("PRIMARY", UserId(7), EndReason::Everywhere)
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            there.open(&headers, &metrics).await.unwrap(),
            Opened::Live(_)
        ));
        // The bus brings the end (the message carries the record id) and `there` applies it,
        // as the layer's subscriber does: the held copy is stale at once.
        let event = events.next().await.unwrap();
        assert!(matches!(&event, Invalidation::Session { id: ended } if **ended == *id));
        there.inner.cache.apply(&event).await;
        assert!(held_by(&there, &headers).await.is_none());
        assert!(matches!(
            there.open(&headers, &metrics).await.unwrap(),
            Opened::Stale
        ));
    }

    #[tokio::test]
    async fn an_end_here_makes_the_held_record_stale_and_an_all_invalidation_too() {
        let (here, _, headers, _) = two_instances().await;
        let metrics = Metrics::default();
        let id = id_of(here.open(&headers, &metrics).await.unwrap());
        let first = held_by(&here, &headers).await.expect("a held record");
        // A gap on the bus (everything may have changed): the held copy is not used, the
        // record is read again and held anew.
        here.inner.cache.apply(&Invalidation::All).await;
        assert!(held_by(&here, &headers).await.is_none());
        assert!(matches!(
            here.open(&headers, &metrics).await.unwrap(),
            Opened::Live(_)
        ));
        let second = held_by(&here, &headers).await.expect("held again");
        assert!(!Arc::ptr_eq(&first, &second));
        // Ended here through end_for_user: not served from the held copy.
        assert_eq!(
            here.end_for_user("PRIMARY", UserId(7), EndReason::Everywhere)
                .await
                .unwrap(),
            1
        );
        assert!(held_by(&here, &headers).await.is_none());
        assert!(matches!(
            here.open(&headers, &metrics).await.unwrap(),
            Opened::Stale
        ));
        // And a record that left the cache otherwise (eviction, expiry) is not used either.
        let (other, _, headers, _) = two_instances().await;
        let id2 = id_of(other.open(&headers, &metrics).await.unwrap());
        assert_ne!(id, id2);
        other.inner.cache.records.invalidate(&id2).await;
        assert!(held_by(&other, &headers).await.is_none());
    }

    #[tokio::test]
    async fn an_end_during_a_token_update_is_not_undone_by_the_cache() {
        let (store, sessions, headers) = racing().await;
        let metrics = Metrics::default();
        let id = id_of(sessions.open(&headers, &metrics).await.unwrap());
        // The end waits on the lock of the update, then ends the record and drops the
        // cached copy before the update's caller caches what it read under the lock.
        store.after_update.store(true, Ordering::SeqCst);
        let outcome = sessions
            .update_tokens(&id, |_, _| async { (Some(tokens()), ()) })
            .await
            .unwrap();
        assert_eq!(outcome, Some(()));
        assert!(matches!(
            sessions.open(&headers, &metrics).await.unwrap(),
            Opened::Stale
        ));
    }

    #[tokio::test]
    async fn an_end_overtaking_a_record_read_is_not_undone_by_the_cache() {
        let (store, sessions, headers) = racing().await;
        let metrics = Metrics::default();
        let id = id_of(sessions.open(&headers, &metrics).await.unwrap());
        // Not cached (as on another instance, or after its TTL): the request reads the
        // store, and an end lands between that read and its caching.
        sessions.inner.cache.records.invalidate(&id).await;
        store.after_get.store(true, Ordering::SeqCst);
        let first = sessions.open(&headers, &metrics).await.unwrap();
        assert!(matches!(first, Opened::Stale));
        assert!(matches!(
            sessions.open(&headers, &metrics).await.unwrap(),
            Opened::Stale
        ));
    }
}
