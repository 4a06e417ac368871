//! Where sessions live: the [`SessionStore`] trait, the [`SessionRecord`] it keeps, and the
//! in-memory implementation. The SQL stores ([`SqliteStore`](crate::store::SqliteStore),
//! [`PostgresStore`](crate::store::PostgresStore)) implement it too, on their pool (table
//! `jit_sessions`).
//!
//! The record is the truth about a session: a cookie opens only while its record exists, is
//! not ended and has not expired (absolutely or for idleness). A store never sees the secret
//! the cookie carries: a record's [`id`](SessionRecord::id) is the SHA-256 of it, so a copy of
//! the table gives no live cookie.
//!
//! Like [`UserStore`](crate::store::UserStore) the trait uses `impl Future + Send` methods and
//! is not dyn-compatible; the layer erases it internally
//! ([`SessionStoreHandle::new`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{StoreError, bounded, contained};

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// `POST {prefix}/logout`.
    Logout,
    /// `POST {prefix}/logout/everywhere`, or
    /// [`JitLayer::end_sessions`](crate::JitLayer::end_sessions).
    Everywhere,
    /// The user was locked or deprovisioned.
    UserLocked,
    /// The identity provider ended its session (back-channel, front-channel or SAML logout).
    IdpLogout,
    /// Idle for longer than its idle timeout.
    Idle,
    /// The identity provider refused to refresh the session's tokens (`invalid_grant`), or
    /// its refresh answered an ID token that does not validate.
    RefreshRefused,
    /// The claims re-read at a token refresh (`resync_on_refresh`) were refused by the
    /// provisioning policy (an admission rule, a locked user).
    ResyncRefused,
    /// A reason written by another version of the crate.
    Other,
}

impl EndReason {
    /// The name stored in SQL (`end_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Everywhere => "everywhere",
            Self::UserLocked => "user_locked",
            Self::IdpLogout => "idp_logout",
            Self::Idle => "idle",
            Self::RefreshRefused => "refresh_refused",
            Self::ResyncRefused => "resync_refused",
            Self::Other => "other",
        }
    }

    /// The reason of a stored name ([`Other`](Self::Other) for an unknown one).
    ///
    /// ```
    /// use jit_provision::session::EndReason;
    /// assert_eq!(EndReason::parse(EndReason::Idle.as_str()), EndReason::Idle);
    /// assert_eq!(EndReason::parse("from the future"), EndReason::Other);
    /// ```
    pub fn parse(name: &str) -> Self {
        [
            Self::Logout,
            Self::Everywhere,
            Self::UserLocked,
            Self::IdpLogout,
            Self::Idle,
            Self::RefreshRefused,
            Self::ResyncRefused,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
        .unwrap_or(Self::Other)
    }
}

/// Tokens of a session as a store keeps them: sealed (XChaCha20-Poly1305 under the session
/// key ring, bound to the session id), opaque to the store. Its `Debug` shows only its size.
///
/// ```
/// let sealed = jit_provision::session::SealedTokens::from_stored("2.AAAA");
/// assert_eq!(format!("{sealed:?}"), "SealedTokens(6 bytes)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SealedTokens(String);

impl SealedTokens {
    /// Sealed text as read back from a store.
    pub fn from_stored(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The sealed text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedTokens({} bytes)", self.0.len())
    }
}

/// One session as a [`SessionStore`] keeps it.
///
/// ```
/// use jit_provision::session::SessionRecord;
/// let record = SessionRecord::new("hash", "PRIMARY", "7", "corp", "248289761001", 100, 200)
///     .with_idp_session(Some("sid-1".into()))
///     .with_idle_timeout(Some(60));
/// assert!(record.is_live(150));
/// assert!(!record.is_live(200));
/// assert!(!record.is_live(161), "idle since 100");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The session's id in the store: URL-safe base64 of the SHA-256 of the secret the
    /// cookie carries (the secret itself is never stored).
    pub id: String,
    /// The user's store domain.
    pub domain: String,
    /// The local user's id, as text.
    pub user_id: String,
    /// The provider of the login.
    pub provider: String,
    /// The subject at that provider.
    pub subject: String,
    /// The identity provider's session: the OIDC ID token's `sid` claim, or the SAML
    /// `AuthnStatement`'s `SessionIndex`.
    pub idp_session: Option<String>,
    /// Login time, Unix seconds.
    pub created_at: i64,
    /// Last request seen, Unix seconds, as last written (at most once a minute).
    pub last_seen: i64,
    /// Absolute end, Unix seconds.
    pub expires_at: i64,
    /// Idle timeout in seconds; `None`: none.
    pub idle_timeout_secs: Option<u64>,
    /// When the session was ended, Unix seconds.
    pub ended_at: Option<i64>,
    /// Why it was ended.
    pub end_reason: Option<EndReason>,
    /// The session's tokens, sealed.
    pub tokens: Option<SealedTokens>,
}

impl SessionRecord {
    /// A live session created (and last seen) at `created_at`, ending at `expires_at`.
    pub fn new(
        id: impl Into<String>,
        domain: impl Into<String>,
        user_id: impl Into<String>,
        provider: impl Into<String>,
        subject: impl Into<String>,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        Self {
            id: id.into(),
            domain: domain.into(),
            user_id: user_id.into(),
            provider: provider.into(),
            subject: subject.into(),
            idp_session: None,
            created_at,
            last_seen: created_at,
            expires_at,
            idle_timeout_secs: None,
            ended_at: None,
            end_reason: None,
            tokens: None,
        }
    }

    /// Sets the identity provider's session.
    pub fn with_idp_session(mut self, idp_session: Option<String>) -> Self {
        self.idp_session = idp_session;
        self
    }

    /// Sets the idle timeout (`None` or `Some(0)`: none).
    pub fn with_idle_timeout(mut self, secs: Option<u64>) -> Self {
        self.idle_timeout_secs = secs.filter(|s| *s > 0);
        self
    }

    /// Sets the sealed tokens.
    pub fn with_tokens(mut self, tokens: Option<SealedTokens>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Whether the session still holds at `now` given its last request at `last_seen`: not
    /// ended, not past its absolute end, not idle.
    pub fn is_live_seen(&self, now: i64, last_seen: i64) -> bool {
        self.ended_at.is_none()
            && now < self.expires_at
            && self
                .idle_timeout_secs
                .is_none_or(|idle| now < last_seen.saturating_add(idle as i64))
    }

    /// Whether the session still holds at `now` by what the record says.
    pub fn is_live(&self, now: i64) -> bool {
        self.is_live_seen(now, self.last_seen)
    }
}

/// Which sessions [`SessionStore::end_sessions_by_idp_session`] ends, at one provider.
///
/// ```
/// use jit_provision::session::{IdpSession, SessionRecord};
/// let record = SessionRecord::new("h", "PRIMARY", "7", "corp", "sub", 0, 10)
///     .with_idp_session(Some("sid".into()));
/// assert!(IdpSession::new("corp", Some("sid"), None).matches(&record));
/// assert!(IdpSession::new("corp", None, Some("sub")).matches(&record));
/// assert!(!IdpSession::new("corp", Some("sid"), Some("other")).matches(&record));
/// assert!(!IdpSession::new("corp", None, None).matches(&record), "nothing selected");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdpSession<'a> {
    /// The provider.
    pub provider: &'a str,
    /// The IdP's session (`sid`, `SessionIndex`): when given, only sessions of it.
    pub sid: Option<&'a str>,
    /// The subject: when given, only sessions of it.
    pub subject: Option<&'a str>,
    /// When given, only sessions created at or before it (Unix seconds): a logout token's
    /// `iat`, so that it ends the sessions that existed when the provider logged out.
    pub created_at_most: Option<i64>,
}

impl<'a> IdpSession<'a> {
    /// A selection; with neither `sid` nor `subject` it selects nothing.
    pub fn new(provider: &'a str, sid: Option<&'a str>, subject: Option<&'a str>) -> Self {
        Self {
            provider,
            sid,
            subject,
            created_at_most: None,
        }
    }

    /// Selects only sessions created at or before `at` (Unix seconds).
    ///
    /// ```
    /// use jit_provision::session::{IdpSession, SessionRecord};
    /// let record = SessionRecord::new("h", "PRIMARY", "7", "corp", "sub", 100, 1000);
    /// assert!(IdpSession::new("corp", None, Some("sub")).created_at_most(100).matches(&record));
    /// assert!(!IdpSession::new("corp", None, Some("sub")).created_at_most(99).matches(&record));
    /// ```
    pub fn created_at_most(mut self, at: i64) -> Self {
        self.created_at_most = Some(at);
        self
    }

    /// Whether `record` is selected.
    pub fn matches(&self, record: &SessionRecord) -> bool {
        (self.sid.is_some() || self.subject.is_some())
            && record.provider == self.provider
            && self
                .sid
                .is_none_or(|sid| record.idp_session.as_deref() == Some(sid))
            && self.subject.is_none_or(|sub| record.subject == sub)
            && self
                .created_at_most
                .is_none_or(|at| record.created_at <= at)
    }
}

/// The persistence of sessions.
///
/// `end_*` methods end only sessions not ended yet, record when and why, and answer the ids
/// they ended (so the layer tells every instance to drop them). Ended and expired records
/// stay until [`purge_sessions`](Self::purge_sessions) removes them: an ended session must
/// stay refused as long as its cookie could be presented.
/// `tests/common/session_contract.rs` is the executable contract.
///
/// ```
/// use jit_provision::session::{EndReason, MemorySessionStore, SessionRecord, SessionStore};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemorySessionStore::new();
/// let record = SessionRecord::new("h1", "PRIMARY", "7", "corp", "sub", 100, 10_000);
/// assert!(store.create_session(&record).await?);
/// assert_eq!(store.end_sessions_for_user("PRIMARY", "7", 150, EndReason::Everywhere).await?, ["h1"]);
/// assert_eq!(store.get_session("h1").await?.unwrap().end_reason, Some(EndReason::Everywhere));
/// # Ok::<_, jit_provision::store::StoreError>(())
/// # }).unwrap();
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// Writes a new session; `false` (and nothing written) when a record of that id exists.
    fn create_session(
        &self,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The session of this id, if any (ended ones too, until purged).
    fn get_session(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;
    /// Records a request at `at` (only moves `last_seen` forward).
    fn touch_session(
        &self,
        id: &str,
        at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends one session: `true` when it was not ended yet.
    fn end_session(
        &self,
        id: &str,
        at: i64,
        reason: EndReason,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Ends every session of a user; the ids ended. Also remembers `at` (moving it only
    /// forward) as the time all sessions of that user were last ended
    /// ([`sessions_ended_for_user_at`](Self::sessions_ended_for_user_at)), before ending
    /// them: so a cookie of an earlier release, which has no record to end, issued at or
    /// before it is refused rather than adopted.
    fn end_sessions_for_user(
        &self,
        domain: &str,
        user_id: &str,
        at: i64,
        reason: EndReason,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// The last `at` of [`end_sessions_for_user`](Self::end_sessions_for_user) for this
    /// user, if any (kept as long as the store).
    fn sessions_ended_for_user_at(
        &self,
        domain: &str,
        user_id: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Ends the sessions [`IdpSession::matches`] selects; the ids ended.
    fn end_sessions_by_idp_session(
        &self,
        selection: IdpSession<'_>,
        at: i64,
        reason: EndReason,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// The sessions of a user that are not ended and not past their absolute end at `now`,
    /// oldest first.
    fn list_sessions_for_user(
        &self,
        domain: &str,
        user_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Vec<SessionRecord>, StoreError>> + Send;
    /// Deletes the records whose absolute end is before `before`; how many.
    fn purge_sessions(&self, before: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Runs `update` on the record of `id` as stored now, holding it locked against every
    /// other `update_tokens` of it, in this process and in every other one sharing the store
    /// (PostgreSQL: `SELECT ... FOR UPDATE` in a transaction; SQLite: `BEGIN IMMEDIATE`, the
    /// database's write lock); writes the tokens `update` answers (`None`: none written).
    /// Answers the record as it is afterwards; `None` (and `update` not run) when there is no
    /// record of that id.
    ///
    /// The layer refreshes a session's tokens at the identity provider inside `update`, so
    /// two instances never spend one refresh token twice: the second re-reads the record the
    /// first wrote.
    ///
    /// ```
    /// use jit_provision::session::{MemorySessionStore, SealedTokens, SessionRecord, SessionStore};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = MemorySessionStore::new();
    /// store.create_session(&SessionRecord::new("h1", "PRIMARY", "7", "corp", "sub", 100, 10_000)).await?;
    /// let after = store
    ///     .update_tokens("h1", Box::new(|record| Box::pin(async move {
    ///         assert!(record.tokens.is_none());
    ///         Some(SealedTokens::from_stored("sealed"))
    ///     })))
    ///     .await?;
    /// assert_eq!(after.unwrap().tokens.unwrap().as_str(), "sealed");
    /// # Ok::<_, jit_provision::store::StoreError>(())
    /// # }).unwrap();
    /// ```
    fn update_tokens<'a>(
        &'a self,
        id: &'a str,
        update: TokensUpdate<'a>,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send + 'a;
}

/// The work [`SessionStore::update_tokens`] runs under a session's lock: given the record as
/// stored, the tokens to store instead (`None`: leave them).
pub type TokensUpdate<'a> =
    Box<dyn FnOnce(SessionRecord) -> BoxFuture<'a, Option<SealedTokens>> + Send + 'a>;

/// Sessions in memory: right for tests and one process; they end when it does.
///
/// Counts its reads and writes ([`reads`](Self::reads), [`writes`](Self::writes)) so a test
/// can show that an authenticated request read nothing. A
/// [`MemoryStore`](crate::store::MemoryStore) keeps its users' sessions in one.
///
/// ```
/// use jit_provision::session::{MemorySessionStore, SessionStore};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemorySessionStore::new();
/// assert!(store.get_session("h").await.unwrap().is_none());
/// assert_eq!((store.reads(), store.writes()), (1, 0));
/// # });
/// ```
#[derive(Clone, Default)]
pub struct MemorySessionStore {
    records: Arc<Mutex<HashMap<String, SessionRecord>>>,
    /// (domain, user id) → the last end of all its sessions.
    ended_for_user: Arc<Mutex<HashMap<(String, String), i64>>>,
    /// Held by [`SessionStore::update_tokens`].
    token_lock: Arc<tokio::sync::Mutex<()>>,
    reads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore").finish_non_exhaustive()
    }
}

impl MemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// `get_session`, `sessions_ended_for_user_at` and `list_sessions_for_user` calls so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Calls that wrote (create, touch, end, purge) so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end_where(
        &self,
        at: i64,
        reason: EndReason,
        selected: impl Fn(&SessionRecord) -> bool,
    ) -> Vec<String> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut ended: Vec<String> = self
            .lock()
            .values_mut()
            .filter(|r| r.ended_at.is_none() && selected(r))
            .map(|r| {
                r.ended_at = Some(at);
                r.end_reason = Some(reason);
                r.id.clone()
            })
            .collect();
        ended.sort();
        ended
    }
}

impl SessionStore for MemorySessionStore {
    async fn create_session(&self, record: &SessionRecord) -> Result<bool, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut records = self.lock();
        if records.contains_key(&record.id) {
            return Ok(false);
        }
        records.insert(record.id.clone(), record.clone());
        Ok(true)
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.lock().get(id).cloned())
    }

    async fn touch_session(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(record) = self.lock().get_mut(id) {
            record.last_seen = record.last_seen.max(at);
        }
        Ok(())
    }

    async fn end_session(&self, id: &str, at: i64, reason: EndReason) -> Result<bool, StoreError> {
        Ok(!self.end_where(at, reason, |r| r.id == id).is_empty())
    }

    async fn end_sessions_for_user(
        &self,
        domain: &str,
        user_id: &str,
        at: i64,
        reason: EndReason,
    ) -> Result<Vec<String>, StoreError> {
        {
            let mut marks = self
                .ended_for_user
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let mark = marks
                .entry((domain.to_owned(), user_id.to_owned()))
                .or_insert(at);
            *mark = (*mark).max(at);
        }
        Ok(self.end_where(at, reason, |r| r.domain == domain && r.user_id == user_id))
    }

    async fn sessions_ended_for_user_at(
        &self,
        domain: &str,
        user_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let marks = self
            .ended_for_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(marks.get(&(domain.to_owned(), user_id.to_owned())).copied())
    }

    async fn end_sessions_by_idp_session(
        &self,
        selection: IdpSession<'_>,
        at: i64,
        reason: EndReason,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.end_where(at, reason, |r| selection.matches(r)))
    }

    async fn list_sessions_for_user(
        &self,
        domain: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut found: Vec<SessionRecord> = self
            .lock()
            .values()
            .filter(|r| {
                r.domain == domain
                    && r.user_id == user_id
                    && r.ended_at.is_none()
                    && now < r.expires_at
            })
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut records = self.lock();
        let len = records.len();
        records.retain(|_, r| r.expires_at >= before);
        Ok((len - records.len()) as u64)
    }

    async fn update_tokens<'a>(
        &'a self,
        id: &'a str,
        update: TokensUpdate<'a>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let _locked = self.token_lock.lock().await;
        self.reads.fetch_add(1, Ordering::SeqCst);
        let Some(record) = self.lock().get(id).cloned() else {
            return Ok(None);
        };
        let Some(tokens) = update(record).await else {
            return Ok(self.lock().get(id).cloned());
        };
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut records = self.lock();
        Ok(records.get_mut(id).map(|record| {
            record.tokens = Some(tokens);
            record.clone()
        }))
    }
}

/// Writes [`SessionStore`]'s methods (their signatures as the trait declares them, from the one
/// list here) as `$mode` says (for the test kit's `SessionStoreWrapper`):
/// - `defaults`: [`SessionStoreWrapper`]'s provided methods, the inner store's;
/// - `forwards`: the `SessionStore` of every wrapper, its `SessionStoreWrapper` methods.
#[cfg(any(test, feature = "test-util"))]
macro_rules! wrapper_methods {
    ($mode:ident) => {
        wrapper_methods! { @$mode
            fn create_session(&self, record: &SessionRecord) -> bool;
            fn get_session(&self, id: &str) -> Option<SessionRecord>;
            fn touch_session(&self, id: &str, at: i64) -> ();
            fn end_session(&self, id: &str, at: i64, reason: EndReason) -> bool;
            fn end_sessions_for_user(
                &self, domain: &str, user_id: &str, at: i64, reason: EndReason
            ) -> Vec<String>;
            fn sessions_ended_for_user_at(&self, domain: &str, user_id: &str) -> Option<i64>;
            fn end_sessions_by_idp_session(
                &self, selection: IdpSession<'_>, at: i64, reason: EndReason
            ) -> Vec<String>;
            fn list_sessions_for_user(
                &self, domain: &str, user_id: &str, now: i64
            ) -> Vec<SessionRecord>;
            fn purge_sessions(&self, before: i64) -> u64;
            fn update_tokens<'a>(
                &'a self, id: &'a str, update: TokensUpdate<'a>
            ) -> Option<SessionRecord>;
        }
    };
    (@defaults $(
        fn $name:ident $(<$lt:lifetime>)? (
            &$($self_lt:lifetime)? self $(, $arg:ident: $ty:ty)*
        ) -> $ret:ty;
    )*) => {$(
        #[doc = concat!("[`SessionStore::", stringify!($name), "`], by default the inner store's.")]
        fn $name $(<$lt>)? (
            &$($self_lt)? self $(, $arg: $ty)*
        ) -> impl Future<Output = Result<$ret, StoreError>> + Send $(+ $lt)? {
            SessionStore::$name(self.inner() $(, $arg)*)
        }
    )*};
    (@forwards $(
        fn $name:ident $(<$lt:lifetime>)? (
            &$($self_lt:lifetime)? self $(, $arg:ident: $ty:ty)*
        ) -> $ret:ty;
    )*) => {$(
        fn $name $(<$lt>)? (
            &$($self_lt)? self $(, $arg: $ty)*
        ) -> impl Future<Output = Result<$ret, StoreError>> + Send $(+ $lt)? {
            SessionStoreWrapper::$name(self $(, $arg)*)
        }
    )*};
}

/// Writes the methods of [`ErasedSessionStore`] from one list, an entry per method of
/// [`SessionStore`]: its arguments (borrowed for `'a`), what it answers, and the time limit
/// that bounds it. `$mode` says what to write:
/// - `declarations`: the trait's;
/// - `calls`: the `ErasedSessionStore` of every store, its calls boxed, a panic contained;
/// - `time_limited`: that of [`TimeLimited`], each call bounded by its limit.
macro_rules! erased_methods {
    ($mode:ident) => {
        erased_methods! { @$mode 'a;
            create_session(record: &'a SessionRecord) -> bool, limit;
            get_session(id: &'a str) -> Option<SessionRecord>, limit;
            touch_session(id: &'a str, at: i64) -> (), limit;
            end_session(id: &'a str, at: i64, reason: EndReason) -> bool, limit;
            end_sessions_for_user(
                domain: &'a str, user_id: &'a str, at: i64, reason: EndReason
            ) -> Vec<String>, limit;
            sessions_ended_for_user_at(domain: &'a str, user_id: &'a str) -> Option<i64>, limit;
            end_sessions_by_idp_session(
                selection: IdpSession<'a>, at: i64, reason: EndReason
            ) -> Vec<String>, limit;
            list_sessions_for_user(
                domain: &'a str, user_id: &'a str, now: i64
            ) -> Vec<SessionRecord>, limit;
            purge_sessions(before: i64) -> u64, limit;
            update_tokens(
                id: &'a str, update: TokensUpdate<'a>
            ) -> Option<SessionRecord>, locked_limit;
        }
    };
    (@declarations $a:lifetime; $(
        $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $limit:ident;
    )*) => {$(
        fn $name<$a>(&$a self, $($arg: $ty),*) -> BoxFuture<$a, StoreResult<$ret>>;
    )*};
    (@calls $a:lifetime; $(
        $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $limit:ident;
    )*) => {$(
        fn $name<$a>(&$a self, $($arg: $ty),*) -> BoxFuture<$a, StoreResult<$ret>> {
            Box::pin(contained(SessionStore::$name(self, $($arg),*)))
        }
    )*};
    (@time_limited $a:lifetime; $(
        $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $limit:ident;
    )*) => {$(
        fn $name<$a>(&$a self, $($arg: $ty),*) -> BoxFuture<$a, StoreResult<$ret>> {
            bounded(self.$limit, stringify!($name), self.inner.0.$name($($arg),*))
        }
    )*};
}

/// A [`SessionStore`] that wraps another and changes some of its methods: name the store it
/// wraps ([`inner`](Self::inner)) and write the methods you change; every other method is the
/// inner store's. Every `SessionStoreWrapper` is a [`SessionStore`] (and so can be the
/// layer's, [`JitLayerBuilder::session_store`](crate::JitLayerBuilder::session_store)).
///
/// For tests (feature `test-util`): counting some calls, or making some fail. Call a
/// wrapper's methods through `SessionStore` (a scope that imports both traits names them as
/// `SessionStore::get_session(&store, id)`).
///
/// ```
/// use jit_provision::session::{EndReason, IdpSession, MemorySessionStore, SessionStore};
/// use jit_provision::store::StoreError;
///
/// /// Sessions the identity provider cannot end.
/// struct NoIdpLogout(MemorySessionStore);
///
/// impl jit_provision::testing::SessionStoreWrapper for NoIdpLogout {
///     type Inner = MemorySessionStore;
///
///     fn inner(&self) -> &MemorySessionStore {
///         &self.0
///     }
///
///     async fn end_sessions_by_idp_session(
///         &self,
///         _selection: IdpSession<'_>,
///         _at: i64,
///         _reason: EndReason,
///     ) -> Result<Vec<String>, StoreError> {
///         Err(StoreError::unavailable("no identity provider logout here"))
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = NoIdpLogout(MemorySessionStore::new());
/// assert!(store.get_session("h1").await?.is_none());
/// let selection = IdpSession::new("corp", None, Some("sub"));
/// assert!(store.end_sessions_by_idp_session(selection, 150, EndReason::IdpLogout).await.is_err());
/// # Ok::<_, StoreError>(())
/// # }).unwrap();
/// ```
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub trait SessionStoreWrapper: Send + Sync + 'static {
    /// The store this one wraps.
    type Inner: SessionStore;

    /// The store this one wraps, which answers every method not written here.
    fn inner(&self) -> &Self::Inner;

    wrapper_methods!(defaults);
}

#[cfg(any(test, feature = "test-util"))]
impl<W: SessionStoreWrapper> SessionStore for W {
    wrapper_methods!(forwards);
}

type StoreResult<T> = Result<T, StoreError>;

/// The dyn-compatible twin of [`SessionStore`] the layer holds.
pub(crate) trait ErasedSessionStore: Send + Sync + 'static {
    erased_methods!(declarations);
}

impl<S: SessionStore> ErasedSessionStore for S {
    erased_methods!(calls);
}

/// A [`SessionStore`], type-erased: what
/// [`UserStore::session_store`](crate::store::UserStore::session_store) answers and the
/// layer holds. Cheap to clone.
///
/// ```
/// use jit_provision::session::{MemorySessionStore, SessionStoreHandle};
/// let handle = SessionStoreHandle::new(MemorySessionStore::new());
/// # let _ = handle.clone();
/// ```
#[derive(Clone)]
pub struct SessionStoreHandle(pub(crate) Arc<dyn ErasedSessionStore>);

impl SessionStoreHandle {
    /// Erases `store`.
    pub fn new(store: impl SessionStore) -> Self {
        Self(Arc::new(store))
    }

    /// This store with every call bounded by `limit` (and timed in the store-call histogram);
    /// [`update_tokens`](SessionStore::update_tokens), which waits for the lock and runs a
    /// request to the identity provider under it, by `locked_limit`.
    pub(crate) fn time_limited(self, limit: Duration, locked_limit: Duration) -> Self {
        Self(Arc::new(TimeLimited {
            inner: self,
            limit,
            locked_limit,
        }))
    }
}

impl fmt::Debug for SessionStoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionStoreHandle")
    }
}

/// A store whose every call is bounded by a time limit ([`SessionStoreHandle::time_limited`]).
struct TimeLimited {
    inner: SessionStoreHandle,
    limit: Duration,
    locked_limit: Duration,
}

impl ErasedSessionStore for TimeLimited {
    erased_methods!(time_limited);
}
