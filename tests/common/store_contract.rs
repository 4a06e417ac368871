//! The contract every `UserStore` keeps, run against each implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jit_provision::store::{Identity, Profile, ProfileChanges, StoreError, UserId, UserStore};

fn profile(username: &str) -> Profile {
    Profile {
        username: username.into(),
        email: Some(Some(format!("{username}@example.com"))),
        display_name: None,
        groups: Some(BTreeSet::from(["staff".to_owned(), "ops".to_owned()])),
        attributes: BTreeMap::from([("department".to_owned(), "R&D 'quoted'".to_owned())]),
    }
}

pub async fn contract<S: UserStore>(store: S) {
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

pub async fn concurrent_creates<S: UserStore>(store: S) {
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
