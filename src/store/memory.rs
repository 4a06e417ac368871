use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::types::now_unix;
use super::{
    Identity, IdentityKey, LinkedIdentity, LoginStamp, Profile, ProfileChanges, StoreError, User,
    UserId, UserStore, canonical,
};

/// How many operations a [`MemoryStore`] has served, for tests and benchmarks: read them
/// with [`creates`](Self::creates), [`updates`](Self::updates) and [`reads`](Self::reads).
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Successful `create` calls (users written).
    creates: AtomicU64,
    /// Successful `update` calls (user rows rewritten).
    updates: AtomicU64,
    /// `find_by_identity` and `find_by_id` calls.
    reads: AtomicU64,
}

impl StoreCounters {
    /// Users created so far.
    pub fn creates(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }
    /// Updates written so far.
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::SeqCst)
    }
    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Inner {
    next_id: i64,
    users: HashMap<UserId, User>,
    identities: HashMap<IdentityKey, LinkedIdentity>,
    /// By the [`canonical`] form of the username.
    usernames: HashMap<String, UserId>,
    /// The stamp of the last login update applied, by identity.
    synced: HashMap<IdentityKey, LoginStamp>,
}

impl Inner {
    fn username_taken(&self, username: &str) -> bool {
        self.usernames.contains_key(&canonical(username))
    }

    /// Whether `user` already has an identity of `provider`.
    fn linked_at(&self, user: UserId, provider: &str) -> bool {
        self.identities
            .values()
            .any(|l| l.user_id == user && l.provider == provider)
    }

    fn link(&mut self, identity: &Identity, user: UserId) {
        self.identities.insert(
            identity.key(),
            LinkedIdentity {
                provider: identity.provider.clone(),
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
                user_id: user,
                first_login_at: now_unix(),
                last_login_at: None,
            },
        );
    }
}

/// An in-memory [`UserStore`] for tests, examples and single-process tools.
///
/// It enforces the same uniqueness rules as the SQL stores and counts what it does
/// ([`MemoryStore::counters`]), so tests can assert that a login wrote nothing.
///
/// ```
/// use jit_provision::store::{Identity, MemoryStore, Profile, UserStore};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// store.create(&Identity::new("corp", "https://idp", "1"), &Profile::new("jane")).await.unwrap();
/// assert_eq!(store.counters().creates(), 1);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    counters: Arc<StoreCounters>,
    sessions: super::session_store::MemorySessionStore,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The operation counters.
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    /// The sessions of this store's users (what
    /// [`session_store`](UserStore::session_store) answers), with their own counters.
    pub fn sessions(&self) -> &super::session_store::MemorySessionStore {
        &self.sessions
    }

    /// Number of users held.
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    /// All users, ordered by id.
    pub fn users(&self) -> Vec<User> {
        let mut users: Vec<User> = self.lock().users.values().cloned().collect();
        users.sort_by_key(|u| u.id);
        users
    }

    /// Creates a purely local user with no identity link (an existing account).
    pub fn insert_local(&self, profile: &Profile) -> Result<User, StoreError> {
        let mut inner = self.lock();
        if inner.username_taken(&profile.username) {
            return Err(StoreError::UsernameTaken(profile.username.clone()));
        }
        Ok(Self::insert(&mut inner, profile))
    }

    fn insert(inner: &mut Inner, profile: &Profile) -> User {
        inner.next_id += 1;
        let now = now_unix();
        let user = User {
            id: UserId(inner.next_id),
            username: profile.username.clone(),
            email: profile.email.clone().flatten(),
            display_name: profile.display_name.clone().flatten(),
            groups: profile.groups.clone().unwrap_or_default(),
            attributes: profile.attributes.clone(),
            idp_groups: BTreeMap::new(),
            roles: profile.roles.clone().unwrap_or_default(),
            idp_roles: BTreeMap::new(),
            idp_attributes: profile.idp_attributes.clone(),
            locked: false,
            created_at: now,
            updated_at: now,
        };
        inner.usernames.insert(canonical(&user.username), user.id);
        inner.users.insert(user.id, user.clone());
        user
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written user: every mutation
        // below checks first and writes last. So a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl UserStore for MemoryStore {
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
        let inner = self.lock();
        Ok(inner
            .identities
            .get(key)
            .and_then(|linked| inner.users.get(&linked.user_id).cloned()))
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
        let mut inner = self.lock();
        let key = identity.key();
        if inner.identities.contains_key(&key) {
            return Err(StoreError::IdentityExists);
        }
        if inner.username_taken(&profile.username) {
            return Err(StoreError::UsernameTaken(profile.username.clone()));
        }
        let mut user = Self::insert(&mut inner, profile);
        user.idp_groups = profile.idp_groups(&identity.provider);
        user.idp_roles = profile.idp_roles(&identity.provider);
        inner.users.insert(user.id, user.clone());
        inner.link(identity, user.id);
        self.counters.creates.fetch_add(1, Ordering::SeqCst);
        Ok(user)
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
        let inner = self.lock();
        Ok(inner
            .usernames
            .get(&canonical(username))
            .and_then(|id| inner.users.get(id).cloned()))
    }

    async fn find_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
        let wanted = canonical(email);
        let mut found: Vec<User> = self
            .lock()
            .users
            .values()
            .filter(|u| u.email.as_deref().is_some_and(|e| canonical(e) == wanted))
            .cloned()
            .collect();
        found.sort_by_key(|u| u.id);
        Ok(found)
    }

    async fn link(&self, identity: &Identity, user: UserId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.identities.contains_key(&identity.key()) {
            return Err(StoreError::IdentityExists);
        }
        if !inner.users.contains_key(&user) {
            return Err(StoreError::NotFound);
        }
        if inner.linked_at(user, &identity.provider) {
            return Err(StoreError::LinkConflict);
        }
        inner.link(identity, user);
        Ok(())
    }

    async fn record_login(&self, key: &IdentityKey, at: i64) -> Result<(), StoreError> {
        if let Some(linked) = self.lock().identities.get_mut(key) {
            linked.last_login_at = Some(at);
        }
        Ok(())
    }

    async fn identities_of(&self, user: UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        let mut found: Vec<LinkedIdentity> = self
            .lock()
            .identities
            .values()
            .filter(|l| l.user_id == user)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.first_login_at, &a.subject).cmp(&(b.first_login_at, &b.subject)));
        Ok(found)
    }

    async fn identities_by_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        let mut found: Vec<LinkedIdentity> = self
            .lock()
            .identities
            .values()
            .filter(|l| l.provider == provider)
            .cloned()
            .collect();
        found.sort_by_key(|l| (l.first_login_at, l.user_id));
        Ok(found)
    }

    async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.users.get_mut(&id).ok_or(StoreError::NotFound)?;
        user.locked = locked;
        Ok(())
    }

    async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.users.remove(&id).ok_or(StoreError::NotFound)?;
        inner.usernames.remove(&canonical(&user.username));
        let gone: Vec<IdentityKey> = inner
            .identities
            .iter()
            .filter(|(_, l)| l.user_id == id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            inner.identities.remove(&key);
            inner.synced.remove(&key);
        }
        Ok(())
    }

    fn session_store(&self) -> Option<super::session_store::SessionStoreHandle> {
        Some(super::session_store::SessionStoreHandle::new(
            self.sessions.clone(),
        ))
    }

    async fn update(&self, id: UserId, changes: &ProfileChanges) -> Result<User, StoreError> {
        let mut inner = self.lock();
        let user = inner.users.get_mut(&id).ok_or(StoreError::NotFound)?;
        changes.apply_to(user);
        user.updated_at = now_unix();
        self.counters.updates.fetch_add(1, Ordering::SeqCst);
        Ok(user.clone())
    }

    async fn update_from_login(
        &self,
        key: &IdentityKey,
        at: LoginStamp,
        changes: &ProfileChanges,
    ) -> Result<Option<User>, StoreError> {
        let mut inner = self.lock();
        let id = inner
            .identities
            .get(key)
            .map(|l| l.user_id)
            .ok_or(StoreError::NotFound)?;
        if inner.synced.get(key).is_some_and(|last| *last > at) {
            return Ok(None);
        }
        let user = inner.users.get_mut(&id).ok_or(StoreError::NotFound)?;
        changes.apply_to(user);
        user.updated_at = now_unix();
        let user = user.clone();
        inner.synced.insert(key.clone(), at);
        self.counters.updates.fetch_add(1, Ordering::SeqCst);
        Ok(Some(user))
    }
}
