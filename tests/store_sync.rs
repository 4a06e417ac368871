//! The store's integrity rules through real logins: a login's attribute sync neither
//! overwrites a change made meanwhile nor lands after a newer login's (item 11), one user is
//! never linked twice at one provider however the links race (item 12), and usernames and
//! emails that only fold to a local user's neither create a look-alike account nor link to
//! it (item 13).

mod common;
#[path = "common/local_bus.rs"]
mod local_bus;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use jit_provision::config::{LinkBy, LinkingConfig};
use jit_provision::dev_idp::DevUser;
use jit_provision::store::{
    Identity, IdentityKey, LinkedIdentity, LoginStamp, MemoryStore, Profile, ProfileChanges,
    StoreError, User, UserId, UserStore,
};
use reqwest::StatusCode;

type Hook = Box<dyn FnOnce(&MemoryStore) + Send>;

/// A MemoryStore with hooks that put a concurrent actor exactly where a race needs it.
#[derive(Clone, Default)]
struct RacingStore {
    inner: MemoryStore,
    /// Runs once, right after the next `find_by_id` read (the sync's read of the user).
    after_read: Arc<Mutex<Option<Hook>>>,
    /// Holds the next `update_from_login` until `release` is notified.
    hold_next_update: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
    held: Arc<AtomicBool>,
    updates_done: Arc<AtomicUsize>,
    /// Makes `identities_of` wait until this many callers are inside it.
    meet_in_identities_of: Arc<Mutex<Option<Arc<tokio::sync::Barrier>>>>,
}

impl UserStore for RacingStore {
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
        self.inner.find_by_identity(key).await
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let read = self.inner.find_by_id(id).await;
        let hook = self.after_read.lock().unwrap().take();
        if let Some(hook) = hook {
            hook(&self.inner);
        }
        read
    }
    async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.inner.find_by_username(username).await
    }
    async fn find_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        self.inner.find_by_email(email).await
    }
    async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
        self.inner.create(identity, profile).await
    }
    async fn link(&self, identity: &Identity, user: UserId) -> Result<(), StoreError> {
        self.inner.link(identity, user).await
    }
    async fn update(&self, id: UserId, changes: &ProfileChanges) -> Result<User, StoreError> {
        self.inner.update(id, changes).await
    }
    async fn update_from_login(
        &self,
        key: &IdentityKey,
        at: LoginStamp,
        changes: &ProfileChanges,
    ) -> Result<Option<User>, StoreError> {
        if self.hold_next_update.swap(false, Ordering::SeqCst) {
            let released = self.release.notified();
            self.held.store(true, Ordering::SeqCst);
            released.await;
        }
        let result = self.inner.update_from_login(key, at, changes).await;
        self.updates_done.fetch_add(1, Ordering::SeqCst);
        result
    }
    async fn record_login(&self, key: &IdentityKey, at: i64) -> Result<(), StoreError> {
        self.inner.record_login(key, at).await
    }
    async fn identities_of(&self, user: UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        let found = self.inner.identities_of(user).await;
        let barrier = self.meet_in_identities_of.lock().unwrap().clone();
        if let Some(barrier) = barrier {
            // Both logins have checked "not linked at this provider yet" before either links.
            barrier.wait().await;
        }
        found
    }
    async fn identities_by_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.inner.identities_by_provider(provider).await
    }
    async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
        self.inner.set_locked(id, locked).await
    }
    async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
}

async fn app_with(
    store: &RacingStore,
    provider: impl FnOnce(jit_provision::ProviderConfig) -> jit_provision::ProviderConfig,
) -> TestApp {
    let store = store.clone();
    TestApp::start_with(provider, move |b| b.store(store)).await
}

fn linking(
    by: LinkBy,
) -> impl FnOnce(jit_provision::ProviderConfig) -> jit_provision::ProviderConfig {
    move |p| p.linking(LinkingConfig::new(by))
}

fn only_user(store: &RacingStore) -> User {
    let users = store.inner.users();
    assert_eq!(users.len(), 1, "{users:?}");
    users[0].clone()
}

fn groups(names: &[&str]) -> std::collections::BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_local_group_granted_between_the_syncs_read_and_write_survives() {
    let store = RacingStore::default();
    let app = app_with(&store, |p| p).await;
    let mut user = alice();
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let id = only_user(&store).id;

    // The next login syncs new groups; right after it read the user, an administrator
    // grants a local group.
    *store.after_read.lock().unwrap() = Some(Box::new(move |inner: &MemoryStore| {
        let mut granted = inner.users()[0].groups.clone();
        granted.insert("local-auditors".into());
        let grant = ProfileChanges {
            groups: Some(granted),
            ..Default::default()
        };
        futures_util::FutureExt::now_or_never(inner.update(id, &grant))
            .expect("the memory store answers at once")
            .unwrap();
    }));
    user.claims["groups"] = serde_json::json!(["staff", "eng"]);
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert!(store.after_read.lock().unwrap().is_none(), "the hook ran");

    let stored = only_user(&store);
    assert_eq!(stored.groups, groups(&["eng", "local-auditors", "staff"]));
    assert_eq!(stored.idp_groups["dev"], groups(&["eng", "staff"]));
    let me: serde_json::Value = app.me().await.json().await.unwrap();
    assert_eq!(
        me["groups"],
        serde_json::json!(["eng", "local-auditors", "staff"])
    );
}

#[tokio::test]
async fn an_older_background_update_arriving_after_a_newer_one_is_dropped() {
    let store = RacingStore::default();
    let app = app_with(&store, |mut p| {
        p.blocking = false;
        p
    })
    .await;
    let at =
        |email: &str, groups: &[&str]| DevUser::new("sub-alice", "alice", email, "Alice", groups);
    assert_eq!(
        app.login(&at("alice@example.com", &["staff"]))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );

    // Login 1's background update is held up (a slow store, a retry after a failure)...
    store.hold_next_update.store(true, Ordering::SeqCst);
    let first = at("first@example.com", &["staff", "old-team"]);
    assert_eq!(
        app.login_with(&browser(), &first).await.status(),
        StatusCode::SEE_OTHER
    );
    until("login 1's update is held", || {
        store.held.load(Ordering::SeqCst)
    })
    .await;
    // ...while login 2, later, is applied.
    let second = at("second@example.com", &["staff", "new-team"]);
    assert_eq!(
        app.login_with(&browser(), &second).await.status(),
        StatusCode::SEE_OTHER
    );
    until("login 2's update is applied", || {
        store.updates_done.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        only_user(&store).email.as_deref(),
        Some("second@example.com")
    );

    // Login 1's update arrives last: it is dropped, nothing of it is written.
    store.release.notify_one();
    until("login 1's update is done", || {
        store.updates_done.load(Ordering::SeqCst) == 2
    })
    .await;
    let stored = only_user(&store);
    assert_eq!(stored.email.as_deref(), Some("second@example.com"));
    assert_eq!(stored.groups, groups(&["new-team", "staff"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subjects_racing_to_link_one_account_one_wins_the_other_is_409() {
    let store = RacingStore::default();
    let app = app_with(&store, linking(LinkBy::Username)).await;
    let admin = store.inner.insert_local(&Profile::new("admin")).unwrap();
    // Two people at the IdP both called admin log in at once; both pass the "not linked at
    // this provider yet" check before either links.
    *store.meet_in_identities_of.lock().unwrap() = Some(Arc::new(tokio::sync::Barrier::new(2)));
    let logins = ["sub-admin-1", "sub-admin-2"].map(|sub| {
        let user = DevUser::new(sub, "admin", &format!("{sub}@example.com"), "A", &[]);
        let app = &app;
        async move {
            let client = browser();
            app.login_with(&client, &user).await
        }
    });
    let responses = futures_util::future::join_all(logins).await;
    let mut statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::CONFLICT]);
    for response in responses {
        if response.status() == StatusCode::CONFLICT {
            assert_refused(response, StatusCode::CONFLICT, "link_conflict").await;
        }
    }
    let linked = store.inner.identities_of(admin.id).await.unwrap();
    assert_eq!(linked.len(), 1, "one identity per provider: {linked:?}");
    assert_eq!(store.inner.user_count(), 1);
}

#[tokio::test]
async fn a_look_alike_of_a_local_username_is_409_username_taken_and_creates_nothing() {
    let store = RacingStore::default();
    let app = app_with(&store, |p| p).await;
    store.inner.insert_local(&Profile::new("admin")).unwrap();
    store.inner.insert_local(&Profile::new("kate")).unwrap();
    for (sub, name) in [
        ("fw", "ａｄｍｉｎ"),
        ("up", "ADMIN"),
        ("kelvin", "\u{212A}ate"),
    ] {
        let user = DevUser::new(sub, name, &format!("{sub}@example.com"), "X", &[]);
        let response = app.login_with(&browser(), &user).await;
        assert_refused(response, StatusCode::CONFLICT, "username_taken").await;
    }
    assert_eq!(store.inner.user_count(), 2, "no look-alike account");
}

#[tokio::test]
async fn linking_by_username_needs_the_exact_name_not_one_that_folds_to_it() {
    let store = RacingStore::default();
    let app = app_with(&store, linking(LinkBy::Username)).await;
    let admin = store.inner.insert_local(&Profile::new("admin")).unwrap();
    let kate = store.inner.insert_local(&Profile::new("kate")).unwrap();
    for (sub, name) in [
        ("fw", "ａｄｍｉｎ"),
        ("up", "Admin"),
        ("kelvin", "\u{212A}ate"),
    ] {
        let user = DevUser::new(sub, name, &format!("{sub}@example.com"), "X", &[]);
        let response = app.login_with(&browser(), &user).await;
        assert_refused(response, StatusCode::CONFLICT, "username_taken").await;
    }
    assert!(
        store
            .inner
            .identities_of(admin.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.inner.identities_of(kate.id).await.unwrap().is_empty());
    // The exact name links.
    let real = DevUser::new("real", "admin", "admin@example.com", "Admin", &[]);
    assert_eq!(
        app.login_with(&browser(), &real).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(store.inner.identities_of(admin.id).await.unwrap().len(), 1);
    assert_eq!(store.inner.user_count(), 2);
}

#[tokio::test]
async fn linking_by_email_needs_the_same_address_up_to_ascii_case() {
    let store = RacingStore::default();
    let app = app_with(&store, linking(LinkBy::Email)).await;
    let mut local = Profile::new("k.smith");
    local.email = Some(Some("kate@example.com".into()));
    let kate = store.inner.insert_local(&local).unwrap();
    // A verified address that only folds to hers (Kelvin sign, fullwidth): not linked, a new
    // account of its own instead.
    for (sub, email) in [
        ("kelvin", "\u{212A}ate@example.com"),
        ("fw", "ｋａｔｅ@example.com"),
    ] {
        let user = DevUser::new(sub, sub, email, "X", &[]);
        assert_eq!(
            app.login_with(&browser(), &user).await.status(),
            StatusCode::SEE_OTHER
        );
        let key = Identity::new("dev", app.idp.issuer(), sub).key();
        let found = store.inner.find_by_identity(&key).await.unwrap().unwrap();
        assert_ne!(found.id, kate.id, "{email} was linked to kate");
    }
    assert!(store.inner.identities_of(kate.id).await.unwrap().is_empty());

    // Her address in other ASCII case is hers (a fresh store: the look-alikes above now hold
    // addresses that fold to hers, which would make the match ambiguous).
    let store = RacingStore::default();
    let app = app_with(&store, linking(LinkBy::Email)).await;
    let kate = store.inner.insert_local(&local).unwrap();
    let real = DevUser::new("real", "kate.s", "Kate@Example.COM", "Kate", &[]);
    assert_eq!(
        app.login_with(&browser(), &real).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(store.inner.identities_of(kate.id).await.unwrap().len(), 1);
}

/// Several instances (a bus) and a user store that keeps no sessions: each instance would
/// keep its own in memory, and a user would be logged out at every switch of instance. The
/// build refuses, naming the fix; with a session store given, it builds.
#[tokio::test]
async fn a_bus_without_a_session_store_is_refused_at_build() {
    let builder = || {
        jit_provision::JitLayer::builder()
            .public_url("https://app.example.com")
            .session_key(jit_provision::session::SessionKey::generate())
            .store(RacingStore::default())
            .invalidation_bus(local_bus::LocalBus::new())
    };
    let err = builder().build().unwrap_err();
    assert!(
        matches!(err, jit_provision::ConfigError::BusWithoutSessionStore),
        "{err}"
    );
    assert!(err.to_string().contains(".session_store(...)"), "{err}");
    builder()
        .session_store(jit_provision::session::MemorySessionStore::new())
        .build()
        .unwrap();
    // The user store's own session store is shared: no refusal.
    jit_provision::JitLayer::builder()
        .public_url("https://app.example.com")
        .session_key(jit_provision::session::SessionKey::generate())
        .store(MemoryStore::new())
        .invalidation_bus(local_bus::LocalBus::new())
        .build()
        .unwrap();
}
