//! The same contract checked against every store: the in-memory one and sqlx SQLite.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jit_provision::store::{
    Identity, MemoryStore, Profile, ProfileChanges, SqliteStore, StoreError, UserId, UserStore,
};

fn profile(username: &str) -> Profile {
    Profile {
        username: username.into(),
        email: Some(Some(format!("{username}@example.com"))),
        display_name: None,
        groups: Some(BTreeSet::from(["staff".to_owned(), "ops".to_owned()])),
        attributes: BTreeMap::from([("department".to_owned(), "R&D 'quoted'".to_owned())]),
    }
}

async fn contract<S: UserStore>(store: S) {
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
    let changes = ProfileChanges {
        email: Some(None),
        display_name: Some(Some("Alice A.".into())),
        groups: Some(BTreeSet::from(["staff".to_owned()])),
        attributes: BTreeMap::from([("title".to_owned(), "Engineer".to_owned())]),
    };
    let updated = store.update(created.id, &changes).await.unwrap();
    assert_eq!(updated.email, None);
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
}

async fn concurrent_creates<S: UserStore>(store: S) {
    let store = Arc::new(store);
    let identity = Identity::new("corp", "https://idp.example", "racer");
    let tasks = (0..50).map(|_| {
        let store = store.clone();
        let identity = identity.clone();
        tokio::spawn(async move { store.create(&identity, &Profile::new("racer")).await })
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

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(MemoryStore::new()).await;
    concurrent_creates(MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    contract(SqliteStore::connect("sqlite::memory:").await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_file_store_survives_reconnects_and_races() {
    let dir = std::env::temp_dir().join(format!("jit-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/users.db", dir.display());
    let _ = std::fs::remove_file(dir.join("users.db"));
    {
        let store = SqliteStore::connect(&url).await.unwrap();
        store
            .create(
                &Identity::new("corp", "https://idp", "1"),
                &Profile::new("kept"),
            )
            .await
            .unwrap();
        store.pool().close().await;
    }
    // Reconnecting re-runs the migrations idempotently and finds the data.
    let store = SqliteStore::connect(&url).await.unwrap();
    let kept = store
        .find_by_identity(&Identity::new("corp", "https://idp", "1").key())
        .await
        .unwrap();
    assert_eq!(kept.unwrap().username, "kept");
    concurrent_creates(store.clone()).await;
    assert_eq!(store.user_count().await.unwrap(), 2);
    store.pool().close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sqlite_unreachable_file_is_an_error_not_a_panic() {
    let result = SqliteStore::connect("sqlite:///nonexistent-dir/for/sure/users.db").await;
    assert!(result.is_err());
}

#[tokio::test]
async fn sqlite_migrations_live_in_their_own_table() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert!(tables.contains(&"_jit_provision_migrations".to_owned()));
    assert!(
        !tables.contains(&"_sqlx_migrations".to_owned()),
        "{tables:?}"
    );
}
