//! The contract every `SessionStore` keeps, run against each implementation.

use jit_provision::session::{EndReason, IdpSession, SealedTokens, SessionRecord, SessionStore};

fn record(id: &str, user: &str, subject: &str, sid: Option<&str>, now: i64) -> SessionRecord {
    SessionRecord::new(id, "PRIMARY", user, "corp", subject, now, now + 3600)
        .with_idp_session(sid.map(str::to_owned))
}

pub async fn contract<S: SessionStore>(store: S) {
    let now = 1_700_000_000;
    // Create and read back, every field.
    let first = record("a", "7", "sub-7", Some("sid-1"), now)
        .with_idle_timeout(Some(600))
        .with_tokens(Some(SealedTokens::from_stored("2.sealed")));
    assert!(store.create_session(&first).await.unwrap());
    assert!(
        !store.create_session(&first).await.unwrap(),
        "a second record of one id"
    );
    assert_eq!(store.get_session("a").await.unwrap().as_ref(), Some(&first));
    assert_eq!(store.get_session("nope").await.unwrap(), None);

    // Touch moves last_seen forward only.
    store.touch_session("a", now + 60).await.unwrap();
    store.touch_session("a", now + 30).await.unwrap();
    store.touch_session("nope", now + 60).await.unwrap();
    assert_eq!(
        store.get_session("a").await.unwrap().unwrap().last_seen,
        now + 60
    );

    // List: a user's live sessions, oldest first; another user's, ended and expired ones
    // are not listed.
    for r in [
        record("b", "7", "sub-7", Some("sid-2"), now + 1),
        record("c", "7", "sub-7", None, now + 2),
        record("d", "8", "sub-8", Some("sid-1"), now + 3),
        SessionRecord::new("e", "PRIMARY", "7", "corp", "sub-7", now - 7200, now - 3600),
        SessionRecord::new("f", "OTHER", "7", "corp", "sub-7", now, now + 3600),
    ] {
        assert!(store.create_session(&r).await.unwrap());
    }
    let ids = |records: Vec<SessionRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_sessions_for_user("PRIMARY", "7", now + 10)
            .await
            .unwrap()),
        ["a", "b", "c"]
    );

    // End one: once.
    assert!(
        store
            .end_session("c", now + 20, EndReason::Logout)
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_session("c", now + 21, EndReason::Idle)
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_session("nope", now + 21, EndReason::Idle)
            .await
            .unwrap()
    );
    let ended = store.get_session("c").await.unwrap().unwrap();
    assert_eq!(
        (ended.ended_at, ended.end_reason),
        (Some(now + 20), Some(EndReason::Logout))
    );
    assert!(!ended.is_live(now + 22));
    assert_eq!(
        ids(store
            .list_sessions_for_user("PRIMARY", "7", now + 10)
            .await
            .unwrap()),
        ["a", "b"]
    );

    // By the IdP's session: sid alone is that session of that provider only.
    let by = |sid, subject| IdpSession::new("corp", sid, subject);
    assert!(
        store
            .end_sessions_by_idp_session(by(None, None), now, EndReason::IdpLogout)
            .await
            .unwrap()
            .is_empty(),
        "neither sid nor subject ends nothing"
    );
    assert!(
        store
            .end_sessions_by_idp_session(
                IdpSession::new("elsewhere", Some("sid-1"), None),
                now,
                EndReason::IdpLogout
            )
            .await
            .unwrap()
            .is_empty()
    );
    // Both: both must match.
    assert!(
        store
            .end_sessions_by_idp_session(
                by(Some("sid-1"), Some("sub-7")),
                now,
                EndReason::IdpLogout
            )
            .await
            .unwrap()
            == ["a"]
    );
    assert_eq!(
        store
            .end_sessions_by_idp_session(by(Some("sid-1"), None), now, EndReason::IdpLogout)
            .await
            .unwrap(),
        ["d"],
        "a ended session is not ended twice"
    );
    assert_eq!(
        store.get_session("d").await.unwrap().unwrap().end_reason,
        Some(EndReason::IdpLogout)
    );
    // Subject alone: every session of provider and subject (the live ones).
    assert_eq!(
        store
            .end_sessions_by_idp_session(by(None, Some("sub-7")), now, EndReason::IdpLogout)
            .await
            .unwrap(),
        ["b", "e", "f"]
    );

    // Created at most at a time: the younger sessions stay.
    for r in [
        record("old", "8", "sub-8", None, now - 10),
        record("young", "8", "sub-8", None, now + 10),
    ] {
        store.create_session(&r).await.unwrap();
    }
    assert_eq!(
        store
            .end_sessions_by_idp_session(
                by(None, Some("sub-8")).created_at_most(now),
                now,
                EndReason::IdpLogout
            )
            .await
            .unwrap(),
        ["old"]
    );
    assert!(
        store
            .get_session("young")
            .await
            .unwrap()
            .unwrap()
            .is_live(now)
    );

    // End for a user: that domain's only, and the time of it is remembered (moving forward).
    assert_eq!(
        store
            .sessions_ended_for_user_at("PRIMARY", "9")
            .await
            .unwrap(),
        None
    );
    for r in [
        record("g", "9", "sub-9", None, now),
        record("h", "9", "sub-9", None, now),
        SessionRecord::new("i", "OTHER", "9", "corp", "sub-9", now, now + 3600),
    ] {
        store.create_session(&r).await.unwrap();
    }
    assert_eq!(
        store
            .end_sessions_for_user("PRIMARY", "9", now, EndReason::Everywhere)
            .await
            .unwrap(),
        ["g", "h"]
    );
    assert!(
        store
            .end_sessions_for_user("PRIMARY", "9", now, EndReason::Everywhere)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.get_session("i").await.unwrap().unwrap().is_live(now));
    assert_eq!(
        store
            .sessions_ended_for_user_at("PRIMARY", "9")
            .await
            .unwrap(),
        Some(now)
    );
    assert_eq!(
        store
            .sessions_ended_for_user_at("OTHER", "9")
            .await
            .unwrap(),
        None
    );
    store
        .end_sessions_for_user("PRIMARY", "9", now - 50, EndReason::Everywhere)
        .await
        .unwrap();
    assert_eq!(
        store
            .sessions_ended_for_user_at("PRIMARY", "9")
            .await
            .unwrap(),
        Some(now),
        "never moves back"
    );
    store
        .end_sessions_for_user("PRIMARY", "9", now + 50, EndReason::UserLocked)
        .await
        .unwrap();
    assert_eq!(
        store
            .sessions_ended_for_user_at("PRIMARY", "9")
            .await
            .unwrap(),
        Some(now + 50)
    );

    // Purge: records whose absolute end is before the bound go, ended or not.
    assert_eq!(
        store.purge_sessions(now).await.unwrap(),
        1,
        "only e ended before now"
    );
    assert_eq!(store.get_session("e").await.unwrap(), None);
    assert!(store.get_session("a").await.unwrap().is_some());
    assert_eq!(store.purge_sessions(now + 7200).await.unwrap(), 10);
    assert_eq!(store.get_session("i").await.unwrap(), None);
}
