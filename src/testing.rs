//! A test kit for applications: the contract every [`UserStore`] keeps, as one async
//! function to run against your own store (behind the `test-util` feature; add it to your
//! dev-dependency: `jit-provision = { version = "…", features = ["test-util"] }`).
//!
//! [`store_contract`] creates a fresh store for each of its checks (round trips, identity and
//! username uniqueness, updates, links, login-ordered updates, role provenance, concurrent
//! creates and links, canonical names) and panics with the failed assertion. Tell it what
//! your store does differently with [`Capabilities`]: an email it requires, usernames it
//! compares by case only.
//!
//! ```
//! use jit_provision::store::MemoryStore;
//! use jit_provision::testing::{Capabilities, store_contract};
//!
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
//! // In your tests: #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! store_contract(|| async { MemoryStore::new() }, Capabilities::default()).await;
//! # });
//! ```
//!
//! A store over an existing users table whose `email` column is `NOT NULL` and whose
//! usernames are unique by `lower(username)`:
//!
//! ```no_run
//! # use jit_provision::testing::{Capabilities, UsernameMatching, store_contract};
//! # async fn app_store() -> jit_provision::store::MemoryStore { unimplemented!() }
//! # async fn run() {
//! let capabilities = Capabilities::default()
//!     .email_required(true)
//!     .usernames(UsernameMatching::CaseInsensitive);
//! store_contract(app_store, capabilities).await;
//! # }
//! ```

pub use crate::store::session_store::SessionStoreWrapper;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use crate::store::{Identity, LoginStamp, Profile, ProfileChanges, StoreError, UserId, UserStore};

/// How a store compares usernames (and emails) for uniqueness and lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UsernameMatching {
    /// In their [`canonical`](crate::store::canonical) form (NFKC and full case folding:
    /// `ａｄｍｉｎ`, `ADMIN` and `admin` are one name; `STRASSE` is `Straße`): the crate's
    /// stores, and what the layer's look-alike protection relies on.
    #[default]
    Canonical,
    /// Up to case only (`lower(username)`, `citext`): `Admin` is `admin`, but fullwidth or
    /// compatibility look-alikes are not checked.
    CaseInsensitive,
}

/// What the store under test does differently from the crate's own stores. `Default` is
/// the crate's stores: an optional email, canonical usernames.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Capabilities {
    email_required: bool,
    usernames: UsernameMatching,
}

impl Capabilities {
    /// The store refuses a user without an email (a `NOT NULL` column): every user the
    /// contract creates has one, and no update clears it.
    pub fn email_required(mut self, required: bool) -> Self {
        self.email_required = required;
        self
    }

    /// How the store compares usernames and emails (default [`UsernameMatching::Canonical`]).
    pub fn usernames(mut self, matching: UsernameMatching) -> Self {
        self.usernames = matching;
        self
    }

    /// A profile to create with just a username (and an email when one is required).
    fn new_profile(&self, username: &str) -> Profile {
        let mut profile = Profile::new(username);
        if self.email_required {
            profile.email = Some(Some(format!("{username}@example.com")));
        }
        profile
    }
}

/// Runs the whole [`UserStore`] contract, each check on a new store from `make_store`
/// (an empty store each time: a fresh database, or a cleared one). Panics at the first
/// assertion the store fails. Some checks race tasks: run it on a multi-threaded runtime
/// (`#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`) so they race for real.
pub async fn store_contract<S, F, Fut>(mut make_store: F, capabilities: Capabilities)
where
    S: UserStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let caps = &capabilities;
    contract(make_store().await, caps).await;
    concurrent_creates(make_store().await, caps).await;
    login_updates(make_store().await).await;
    role_provenance(make_store().await).await;
    concurrent_links(make_store().await, caps).await;
    names(make_store().await, caps).await;
}

fn profile(username: &str) -> Profile {
    Profile {
        username: username.into(),
        email: Some(Some(format!("{username}@example.com"))),
        display_name: None,
        groups: Some(BTreeSet::from(["staff".to_owned(), "ops".to_owned()])),
        roles: None,
        attributes: BTreeMap::from([("department".to_owned(), "R&D 'quoted'".to_owned())]),
        idp_attributes: BTreeSet::from(["email".to_owned(), "department".to_owned()]),
    }
}

/// Round trips, uniqueness, updates, links, listings, lock and delete.
async fn contract<S: UserStore>(store: S, caps: &Capabilities) {
    let alice = Identity::new("corp", "https://idp.example", "sub-1");
    let created = store.create(&alice, &profile("alice")).await.unwrap();
    assert_eq!(created.username, "alice");
    assert!(!created.locked);

    // Round trip by identity and by id.
    let by_identity = store.find_by_identity(&alice.key()).await.unwrap().unwrap();
    assert_eq!(by_identity, created);
    let by_id = store.find_by_id(created.id).await.unwrap().unwrap();
    assert_eq!(by_id, created);
    assert_eq!(by_id.groups.len(), 2);
    assert_eq!(by_id.attributes["department"], "R&D 'quoted'");
    assert!(store.find_by_id(UserId(i64::MAX)).await.unwrap().is_none());
    // The same subject at another provider is another identity.
    let elsewhere = Identity::new("other", "https://idp.example", "sub-1");
    assert!(
        store
            .find_by_identity(&elsewhere.key())
            .await
            .unwrap()
            .is_none()
    );

    // The identity is unique: a second create writes nothing.
    let again = store.create(&alice, &profile("alice2")).await;
    assert!(
        matches!(again, Err(StoreError::IdentityExists)),
        "{again:?}"
    );
    // The username is unique: nothing written, the identity is not linked.
    let bob = Identity::new("corp", "https://idp.example", "sub-2");
    let taken = store.create(&bob, &profile("alice")).await;
    assert!(
        matches!(taken, Err(StoreError::UsernameTaken(ref n)) if n == "alice"),
        "{taken:?}"
    );
    assert!(store.find_by_identity(&bob.key()).await.unwrap().is_none());
    assert!(store.create(&bob, &profile("bob")).await.is_ok());

    // Updates change what they name and nothing else.
    // An email is cleared, or (when the store requires one) changed.
    let new_email = caps
        .email_required
        .then(|| "alice.a@example.com".to_owned());
    let changes = ProfileChanges {
        email: Some(new_email.clone()),
        display_name: Some(Some("Alice A.".into())),
        groups: Some(BTreeSet::from(["staff".to_owned()])),
        attributes: BTreeMap::from([("title".to_owned(), "Engineer".to_owned())]),
        idp_groups: Some(BTreeMap::from([(
            "corp".to_owned(),
            BTreeSet::from(["staff".to_owned()]),
        )])),
        grants: None,
        idp_attributes: BTreeSet::from(["title".to_owned()]),
        ..ProfileChanges::default()
    };
    let updated = store.update(created.id, &changes).await.unwrap();
    assert_eq!(updated.email, new_email);
    assert_eq!(updated.display_name.as_deref(), Some("Alice A."));
    assert_eq!(updated.groups, BTreeSet::from(["staff".to_owned()]));
    assert_eq!(updated.attributes.len(), 2);
    assert_eq!(updated.username, "alice");
    assert_eq!(
        store.find_by_id(created.id).await.unwrap().unwrap(),
        updated
    );
    let missing = store.update(UserId(i64::MAX), &changes).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert_eq!(updated.idp_groups["corp"].len(), 1);
    // Managed fields are added to, never replaced.
    assert_eq!(updated.idp_attributes.len(), 3);

    // Groups granted at creation are recorded as this provider's.
    assert_eq!(
        created.idp_groups.get("corp").map(BTreeSet::len),
        Some(2),
        "the groups a provider granted at creation are its own"
    );

    // Lookups for linking: by username, by email (case-insensitive).
    let by_name = store.find_by_username("bob").await.unwrap().unwrap();
    assert_eq!(by_name.username, "bob");
    assert!(store.find_by_username("nobody").await.unwrap().is_none());
    let by_email = store.find_by_email("BOB@example.com").await.unwrap();
    assert_eq!(
        by_email.iter().map(|u| u.id).collect::<Vec<_>>(),
        [by_name.id]
    );

    // Linking a second identity; linking a linked identity again is a conflict.
    let other = Identity::new("partner", "https://partner.example", "p-1");
    store.link(&other, created.id).await.unwrap();
    assert_eq!(
        store
            .find_by_identity(&other.key())
            .await
            .unwrap()
            .unwrap()
            .id,
        created.id
    );
    let again = store.link(&other, by_name.id).await;
    assert!(
        matches!(again, Err(StoreError::IdentityExists)),
        "{again:?}"
    );
    let gone = store
        .link(&Identity::new("x", "y", "z"), UserId(i64::MAX))
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    // Login times and listings.
    store
        .record_login(&alice.key(), 1_900_000_000)
        .await
        .unwrap();
    let mine = store.identities_of(created.id).await.unwrap();
    assert_eq!(mine.len(), 2);
    let corp = store.identities_by_provider("corp").await.unwrap();
    assert_eq!(corp.len(), 2);
    let alice_link = corp.iter().find(|l| l.subject == "sub-1").unwrap();
    assert_eq!(alice_link.last_login_at, Some(1_900_000_000));
    assert_eq!(alice_link.issuer, "https://idp.example");
    assert!(alice_link.first_login_at > 0);

    // Lock, then delete with its links.
    store.set_locked(by_name.id, true).await.unwrap();
    assert!(store.find_by_id(by_name.id).await.unwrap().unwrap().locked);
    store.delete(by_name.id).await.unwrap();
    assert!(store.find_by_id(by_name.id).await.unwrap().is_none());
    assert!(store.find_by_identity(&bob.key()).await.unwrap().is_none());
    assert!(matches!(
        store.delete(by_name.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.set_locked(by_name.id, true).await,
        Err(StoreError::NotFound)
    ));
}

/// Fifty concurrent creates of one identity: one wins, every other reports the conflict.
async fn concurrent_creates<S: UserStore>(store: S, caps: &Capabilities) {
    let store = Arc::new(store);
    let identity = Identity::new("corp", "https://idp.example", "racer");
    let tasks = (0..50).map(|_| {
        let store = store.clone();
        let identity = identity.clone();
        let racer = caps.new_profile("racer");
        tokio::spawn(async move { store.create(&identity, &racer).await })
    });
    let results = futures_util::future::join_all(tasks).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let lost = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Ok(Err(
                    StoreError::IdentityExists | StoreError::UsernameTaken(_)
                ))
            )
        })
        .count();
    assert_eq!(ok, 1, "exactly one create wins");
    assert_eq!(
        lost, 49,
        "every other create reports the conflict: {results:?}"
    );
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A login's update is applied to the row as stored (group grants as deltas), and an update
/// older than one already applied for the identity is dropped.
async fn login_updates<S: UserStore>(store: S) {
    let alice = Identity::new("corp", "https://idp.example", "sync-1");
    let created = store.create(&alice, &profile("alice")).await.unwrap();
    assert_eq!(created.groups, set(&["ops", "staff"]));

    // The login reads the user and computes its changes: corp now grants staff and eng.
    let read = store.find_by_identity(&alice.key()).await.unwrap().unwrap();
    let mut asserted = profile("alice");
    asserted.groups = Some(set(&["staff", "eng"]));
    let changes = asserted.changes_from(&read, "corp");
    // Meanwhile, between that read and the write, an administrator grants a local group.
    let mut local = read.groups.clone();
    local.insert("local-auditors".into());
    let grant = ProfileChanges {
        groups: Some(local),
        ..Default::default()
    };
    store.update(created.id, &grant).await.unwrap();
    // The login's write keeps the local grant: only corp's own grants move.
    let t1 = LoginStamp::now();
    let t2 = LoginStamp::now();
    let synced = store
        .update_from_login(&alice.key(), t2, &changes)
        .await
        .unwrap()
        .expect("the first update of the identity is applied");
    assert_eq!(synced.groups, set(&["eng", "local-auditors", "staff"]));
    assert_eq!(synced.idp_groups["corp"], set(&["eng", "staff"]));
    assert_eq!(store.find_by_id(created.id).await.unwrap().unwrap(), synced);

    // An older login's update arriving now (a delayed background retry) is dropped.
    let mut older = profile("alice");
    older.email = Some(Some("old@example.com".into()));
    older.groups = Some(set(&["ops"]));
    let stale = older.changes_from(&read, "corp");
    assert!(!stale.is_empty());
    let dropped = store
        .update_from_login(&alice.key(), t1, &stale)
        .await
        .unwrap();
    assert_eq!(
        dropped, None,
        "an update older than the applied one is dropped"
    );
    assert_eq!(
        store.find_by_id(created.id).await.unwrap().unwrap(),
        synced,
        "nothing of the stale update was written"
    );

    // The same stamp again is a retry and applies; a later one applies.
    assert!(
        store
            .update_from_login(&alice.key(), t2, &changes)
            .await
            .unwrap()
            .is_some()
    );
    let mut newer = profile("alice");
    newer.email = Some(Some("new@example.com".into()));
    newer.groups = None;
    let now = store.find_by_id(created.id).await.unwrap().unwrap();
    let applied = store
        .update_from_login(
            &alice.key(),
            LoginStamp::now(),
            &newer.changes_from(&now, "corp"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.email.as_deref(), Some("new@example.com"));
    assert_eq!(applied.groups, set(&["eng", "local-auditors", "staff"]));

    // The stamps are per identity: another identity of the user has its own.
    let partner = Identity::new("partner", "https://partner.example", "p-9");
    store.link(&partner, created.id).await.unwrap();
    let mut from_partner = Profile::new("alice");
    from_partner.groups = Some(set(&["partners"]));
    let partner_changes = from_partner.changes_from(&applied, "partner");
    let both = store
        .update_from_login(&partner.key(), t1, &partner_changes)
        .await
        .unwrap()
        .expect("an identity's first update is applied whatever the other's stamp");
    assert_eq!(
        both.groups,
        set(&["eng", "local-auditors", "partners", "staff"])
    );

    let nobody = Identity::new("corp", "https://idp.example", "nobody");
    let missing = store
        .update_from_login(&nobody.key(), LoginStamp::now(), &changes)
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

/// Roles are stored apart from groups with per-provider provenance: granted at creation as
/// the provider's own, synced as deltas inside the transaction, so a role removed at the IdP
/// goes while a local role (granted meanwhile) and another provider's role stay.
async fn role_provenance<S: UserStore>(store: S) {
    let alice = Identity::new("corp", "https://idp.example", "roles-1");
    let mut asserted = profile("alice");
    asserted.roles = Some(set(&["editor", "viewer"]));
    let created = store.create(&alice, &asserted).await.unwrap();
    assert_eq!(created.roles, set(&["editor", "viewer"]));
    assert_eq!(created.idp_roles["corp"], set(&["editor", "viewer"]));
    assert_eq!(
        created.groups,
        set(&["ops", "staff"]),
        "roles are not groups"
    );
    assert_eq!(
        store.find_by_id(created.id).await.unwrap().unwrap(),
        created
    );

    // The next login drops `editor`; meanwhile an administrator grants `auditor` locally
    // and a second provider grants `viewer` too.
    let read = store.find_by_identity(&alice.key()).await.unwrap().unwrap();
    asserted.roles = Some(set(&["viewer"]));
    let changes = asserted.changes_from(&read, "corp");
    assert_eq!(
        changes.role_grants.as_ref().map(|g| g.removed.clone()),
        Some(set(&["editor"]))
    );
    let local = ProfileChanges {
        roles: Some(set(&["auditor", "editor", "viewer"])),
        ..ProfileChanges::default()
    };
    store.update(created.id, &local).await.unwrap();
    let partner = Identity::new("partner", "https://partner.example", "roles-p");
    store.link(&partner, created.id).await.unwrap();
    let mut from_partner = Profile::new("alice");
    from_partner.roles = Some(set(&["viewer"]));
    let now = store.find_by_id(created.id).await.unwrap().unwrap();
    store
        .update_from_login(
            &partner.key(),
            LoginStamp::now(),
            &from_partner.changes_from(&now, "partner"),
        )
        .await
        .unwrap()
        .unwrap();
    let synced = store
        .update_from_login(&alice.key(), LoginStamp::now(), &changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(synced.roles, set(&["auditor", "viewer"]));
    assert_eq!(synced.idp_roles["corp"], set(&["viewer"]));
    assert_eq!(synced.idp_roles["partner"], set(&["viewer"]));
    assert_eq!(store.find_by_id(created.id).await.unwrap().unwrap(), synced);

    // corp stops granting `viewer`: partner still grants it, so it stays.
    asserted.roles = Some(BTreeSet::new());
    let gone = store
        .update_from_login(
            &alice.key(),
            LoginStamp::now(),
            &asserted.changes_from(&synced, "corp"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.roles, set(&["auditor", "viewer"]));
    assert!(!gone.idp_roles.contains_key("corp"));
    // A profile that does not manage roles leaves them alone.
    asserted.roles = None;
    assert!(asserted.changes_from(&gone, "corp").role_grants.is_none());
}

/// Two concurrent links of two subjects of one provider to one user: exactly one wins, the
/// other is a `LinkConflict`; a linked identity stays `IdentityExists`.
async fn concurrent_links<S: UserStore>(store: S, caps: &Capabilities) {
    let store = Arc::new(store);
    for round in 0..10 {
        let local = Identity::new("local", "https://local.example", format!("l-{round}"));
        let user = store
            .create(&local, &caps.new_profile(&format!("target{round}")))
            .await
            .unwrap();
        let tasks = ["a", "b"].map(|who| {
            let store = store.clone();
            let identity = Identity::new("corp", "https://idp.example", format!("{who}-{round}"));
            tokio::spawn(async move { store.link(&identity, user.id).await })
        });
        let results: Vec<_> = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LinkConflict)))
            .count();
        assert_eq!((won, conflicts), (1, 1), "round {round}: {results:?}");
        let corp: Vec<_> = store
            .identities_of(user.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.provider == "corp")
            .collect();
        assert_eq!(corp.len(), 1, "one identity per provider");
    }
    // A linked identity is still told apart from a second link of the user.
    let other = store
        .create(
            &Identity::new("local", "https://local.example", "other"),
            &caps.new_profile("other"),
        )
        .await
        .unwrap();
    let linked = store.identities_by_provider("corp").await.unwrap()[0].clone();
    let again = store
        .link(
            &Identity::new(&linked.provider, &linked.issuer, &linked.subject),
            other.id,
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::IdentityExists)),
        "{again:?}"
    );
}

/// Usernames are unique in their compared form (canonical: NFKC + case folding; or case
/// only), and lookups by username and email compare that form.
async fn names<S: UserStore>(store: S, caps: &Capabilities) {
    let canonical = caps.usernames == UsernameMatching::Canonical;
    let corp = |sub: &str| Identity::new("corp", "https://idp.example", sub);
    let admin = store.create(&corp("n-1"), &profile("admin")).await.unwrap();
    let kate = store.create(&corp("n-2"), &profile("kate")).await.unwrap();
    // Look-alikes of a taken name are the taken name: nothing written.
    let look_alikes: &[&str] = if canonical {
        &[
            "ａｄｍｉｎ",
            "ADMIN",
            "Admin",
            "ＡＤＭＩＮ",
            "\u{212A}ATE",
            "\u{212A}ate",
        ]
    } else {
        &["ADMIN", "Admin", "KATE", "Kate"]
    };
    for look_alike in look_alikes {
        let taken = store.create(&corp(look_alike), &profile(look_alike)).await;
        assert!(
            matches!(taken, Err(StoreError::UsernameTaken(ref n)) if n == look_alike),
            "{look_alike}: {taken:?}"
        );
        assert!(
            store
                .find_by_identity(&corp(look_alike).key())
                .await
                .unwrap()
                .is_none()
        );
    }
    // The stored username is kept as given; lookups fold.
    let (shouted, kelvin) = if canonical {
        ("ＡＤＭＩＮ", "\u{212A}ate")
    } else {
        ("ADMIN", "KaTe")
    };
    let found = store.find_by_username(shouted).await.unwrap().unwrap();
    assert_eq!((found.id, found.username.as_str()), (admin.id, "admin"));
    assert_eq!(
        store.find_by_username(kelvin).await.unwrap().unwrap().id,
        kate.id
    );
    // A name that does not fold to a taken one is free.
    let mixed = store
        .create(&corp("n-3"), &profile("Straße"))
        .await
        .unwrap();
    assert_eq!(mixed.username, "Straße");
    if canonical {
        let taken = store.create(&corp("n-4"), &profile("STRASSE")).await;
        assert!(
            matches!(taken, Err(StoreError::UsernameTaken(_))),
            "{taken:?}"
        );
    }
    assert!(store.create(&corp("n-5"), &profile("admin2")).await.is_ok());

    // Emails compare folded too, and follow updates.
    let shouted = if canonical {
        "ＡＤＭＩＮ@EXAMPLE.com"
    } else {
        "ADMIN@EXAMPLE.com"
    };
    let by_email = store.find_by_email(shouted).await.unwrap();
    assert_eq!(
        by_email.iter().map(|u| u.id).collect::<Vec<_>>(),
        [admin.id]
    );
    let changes = ProfileChanges {
        email: Some(Some("Root@Example.COM".into())),
        ..Default::default()
    };
    store.update(admin.id, &changes).await.unwrap();
    assert!(
        store
            .find_by_email("admin@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let root = store.find_by_email("root@example.com").await.unwrap();
    assert_eq!(root.iter().map(|u| u.id).collect::<Vec<_>>(), [admin.id]);
    assert_eq!(root[0].email.as_deref(), Some("Root@Example.COM"));
    // A deleted user's name is free again.
    store.delete(kate.id).await.unwrap();
    assert!(store.create(&corp("n-6"), &profile(kelvin)).await.is_ok());
}
