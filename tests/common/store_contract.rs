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
        idp_attributes: BTreeSet::from(["email".to_owned(), "department".to_owned()]),
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
        idp_groups: Some(BTreeMap::from([(
            "corp".to_owned(),
            BTreeSet::from(["staff".to_owned()]),
        )])),
        idp_attributes: Some(BTreeSet::from(["email".to_owned()])),
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
    assert_eq!(updated.idp_groups["corp"].len(), 1);
    assert_eq!(updated.idp_attributes.len(), 1);

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
