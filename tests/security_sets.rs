//! The security sets fail closed (issue 13, item 5): a full replay guard refuses new logins
//! with `503` and never forgets a used value; a full revoked-session set never lets a revoked
//! session back in. The session key ring (item 16): the first key seals, every key opens, a
//! removed key opens nothing, the previous cookie format still opens. Signed invalidations
//! (item 17, against PostgreSQL): a forged `NOTIFY` invalidates nothing, a genuine one from
//! another instance still does.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::*;
use jit_provision::replay::{MemoryReplayGuard, ReplayGuard, ReplayGuardFull};
use jit_provision::session::SessionKey;
use jit_provision::store::{IdentityKey, UserStore};
use jit_provision::{CurrentUser, JitConfig, JitLayer};
use reqwest::StatusCode;
use tower::ServiceExt;

/// Every cookie a response sets, as one `Cookie` header.
fn cookie_header(response: &reqwest::Response) -> String {
    set_cookies(response)
        .iter()
        .map(|c| c.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A login captured as an attacker who holds the pending-login cookies and the callback URL
/// would: the callback is not sent yet.
struct Captured {
    cookies: String,
    callback: String,
}

async fn capture_login(app: &TestApp, user: &jit_provision::dev_idp::DevUser) -> Captured {
    let client = plain();
    let start = client
        .get(app.url("/auth/dev/login?return_to=/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND, "login start");
    let cookies = cookie_header(&start);
    let approved = app.approve(&client, &location(&start), user).await;
    Captured {
        cookies,
        callback: location(&approved),
    }
}

impl Captured {
    async fn send(&self) -> reqwest::Response {
        plain()
            .get(&self.callback)
            .header("cookie", &self.cookies)
            .send()
            .await
            .unwrap()
    }
}

fn identity(subject: &str) -> IdentityKey {
    IdentityKey {
        provider: "dev".into(),
        subject: subject.into(),
    }
}

// ---- item 5: the replay guard ----

#[tokio::test]
async fn a_full_replay_guard_refuses_new_keys_keeps_refusing_replays_and_frees_room_on_expiry() {
    let guard = MemoryReplayGuard::with_capacity(2);
    let long = Duration::from_secs(600);
    assert!(guard.first_use("a", long).await.unwrap());
    assert!(
        guard
            .first_use("short", Duration::from_millis(200))
            .await
            .unwrap()
    );
    // Full: a new key is an error, not a forgotten old one.
    let err = guard.first_use("b", long).await.unwrap_err();
    assert!(ReplayGuardFull::is(&err), "{err:?}");
    let err = guard.first_use("c", long).await.unwrap_err();
    assert!(ReplayGuardFull::is(&err), "{err:?}");
    // A replay of a stored key is still a replay, full or not.
    assert!(!guard.first_use("a", long).await.unwrap());
    assert!(!guard.first_use("short", long).await.unwrap());
    // The short entry expires and frees its room.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(guard.first_use("b", long).await.unwrap());
    assert!(!guard.first_use("b", long).await.unwrap());
    assert!(!guard.first_use("a", long).await.unwrap());
    let err = guard.first_use("short", long).await.unwrap_err();
    assert!(ReplayGuardFull::is(&err), "{err:?}");
}

#[tokio::test]
async fn a_login_beyond_the_replay_guards_capacity_is_503_with_no_session() {
    let app = TestApp::start_with(
        |p| p,
        |b| b.replay_guard(MemoryReplayGuard::with_capacity(2)),
    )
    .await;
    let first = capture_login(&app, &alice()).await;
    let response = first.send().await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.login_with(&browser(), &alice()).await.status(),
        StatusCode::SEE_OTHER
    );
    // The guard holds two live states: the third login is refused, and nothing is written.
    let refused = app.login_with(&browser(), &bob()).await;
    assert_refused(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "replay_guard_full",
    )
    .await;
    assert!(
        app.store
            .inner
            .find_by_identity(&identity("sub-bob"))
            .await
            .unwrap()
            .is_none()
    );
    // The first state is still remembered: its replay is a replay, not a 503 or a login.
    let replay = first.send().await;
    assert_refused(replay, StatusCode::BAD_REQUEST, "replayed_state").await;
}

#[tokio::test]
async fn cheap_callbacks_without_a_code_make_the_guard_refuse_not_forget() {
    // The attack of the review: login starts and callbacks carrying only the state fill the
    // guard. Full, it refuses further logins; it never lets a used state through again.
    let app = TestApp::start_with(
        |p| p,
        |b| b.replay_guard(MemoryReplayGuard::with_capacity(4)),
    )
    .await;
    let used = capture_login(&app, &alice()).await;
    assert_eq!(used.send().await.status(), StatusCode::SEE_OTHER);
    for _ in 0..3 {
        let client = plain();
        let start = client
            .get(app.url("/auth/dev/login?return_to=/"))
            .send()
            .await
            .unwrap();
        let authorize = url::Url::parse(&location(&start)).unwrap();
        let state = authorize
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let response = client
            .get(app.url(&format!("/auth/dev/callback?state={state}")))
            .header("cookie", cookie_header(&start))
            .send()
            .await
            .unwrap();
        assert!(!sets_session(&response));
    }
    let refused = app.login_with(&browser(), &alice()).await;
    assert_refused(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "replay_guard_full",
    )
    .await;
    let replay = used.send().await;
    assert_refused(replay, StatusCode::BAD_REQUEST, "replayed_state").await;
}

// ---- item 5: revoked sessions ----

/// Logs Alice in with a fresh browser; returns the browser and its session cookie.
async fn login(app: &TestApp) -> (reqwest::Client, String) {
    let client = browser();
    let response = app.login_with(&client, &alice()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let pair = session_pair(&response);
    (client, pair)
}

/// [`login`], and the session works.
async fn logged_in(app: &TestApp) -> (reqwest::Client, String) {
    let (client, pair) = login(app).await;
    assert_eq!(me_with_cookie(app, &pair).await, StatusCode::OK);
    (client, pair)
}

async fn logout(app: &TestApp, client: &reqwest::Client) {
    let out = client.post(app.url("/auth/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn revoked_sessions_stay_refused_however_many_and_nobody_else_is_logged_out() {
    // `max_revoked_sessions` is a no-op now: ended sessions are records in the session
    // store, not entries of a bounded set, so nothing needs a watermark.
    let app = TestApp::start_with(|p| p, |b| b.max_revoked_sessions(2)).await;
    let (_, bystander) = logged_in(&app).await;
    let mut ended = Vec::new();
    for _ in 0..3 {
        let (client, pair) = login(&app).await;
        logout(&app, &client).await;
        ended.push(pair);
    }
    // Give a cache's housekeeping the time to run, which is when a bounded cache would
    // drop entries.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for pair in &ended {
        assert_eq!(
            me_with_cookie(&app, pair).await,
            StatusCode::UNAUTHORIZED,
            "a revoked session was accepted again"
        );
    }
    // No fail-closed watermark: the bystander stays logged in.
    assert_eq!(me_with_cookie(&app, &bystander).await, StatusCode::OK);
    let (client, pair) = logged_in(&app).await;
    logout(&app, &client).await;
    assert_eq!(me_with_cookie(&app, &pair).await, StatusCode::UNAUTHORIZED);
    let (_, fresh) = logged_in(&app).await;
    assert_eq!(me_with_cookie(&app, &fresh).await, StatusCode::OK);
}

// ---- item 16: the session key ring ----

#[tokio::test]
async fn a_session_sealed_by_the_previous_key_opens_after_rotation() {
    let (old, new) = (SessionKey::generate(), SessionKey::generate());
    let before = TestApp::start_with(|p| p, |b| b.session_key(old.clone())).await;
    let (_, sealed_by_old) = logged_in(&before).await;
    let store = before.store.clone();
    let rotated = TestApp::start_with(
        |p| p,
        |b| {
            b.store(store)
                .session_key(new.clone())
                .previous_session_key(old.clone())
        },
    )
    .await;
    assert_eq!(
        me_with_cookie(&rotated, &sealed_by_old).await,
        StatusCode::OK
    );
    // New sessions are sealed with the first key: the old key alone cannot open them, the
    // new one alone can.
    let (_, sealed_by_new) = logged_in(&rotated).await;
    assert!(
        sealed_by_new.starts_with("jit_session=2."),
        "{sealed_by_new}"
    );
    assert_eq!(
        me_with_cookie(&before, &sealed_by_new).await,
        StatusCode::UNAUTHORIZED
    );
    let store = before.store.clone();
    let only_new = TestApp::start_with(|p| p, |b| b.store(store).session_key(new.clone())).await;
    assert_eq!(
        me_with_cookie(&only_new, &sealed_by_new).await,
        StatusCode::OK
    );
    // The old key removed from the ring: its sessions are refused.
    assert_eq!(
        me_with_cookie(&only_new, &sealed_by_old).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_cookie_of_the_previous_format_still_opens() {
    // What earlier releases sealed: the cookie crate's private jar (AES-256-GCM, 96-bit
    // random nonce), under the encryption half of the same key.
    let bytes = [9u8; 64];
    let key = SessionKey::from_bytes(&bytes).unwrap();
    let app = TestApp::start_with(|p| p, |b| b.session_key(key.clone())).await;
    logged_in(&app).await;
    let user = app
        .store
        .inner
        .find_by_identity(&identity("sub-alice"))
        .await
        .unwrap()
        .unwrap();
    let session = legacy_session(user.id, "an-earlier-release-session", now());
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(&cookie::Key::from(&bytes))
        .add(cookie::Cookie::new(
            "jit_session",
            serde_json::to_string(&session).unwrap(),
        ));
    let legacy = jar.get("jit_session").unwrap().value().to_owned();
    assert!(!legacy.starts_with("2."));
    let response = plain()
        .get(app.url("/"))
        .header("cookie", format!("jit_session={legacy}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "hello alice");
    // Under a ring without that key it is refused.
    let store = app.store.clone();
    let other = TestApp::start_with(|p| p, |b| b.store(store)).await;
    let pair = format!("jit_session={legacy}");
    assert_eq!(
        me_with_cookie(&other, &pair).await,
        StatusCode::UNAUTHORIZED
    );
}

/// What the session cookie of earlier releases carried (before sealing), in their JSON
/// format: alice's session at the dev provider for an hour from `issued_at`.
fn legacy_session(
    user_id: jit_provision::store::UserId,
    id: &str,
    issued_at: i64,
) -> serde_json::Value {
    serde_json::json!({
        "u": user_id,
        "d": "PRIMARY",
        "p": "dev",
        "s": "sub-alice",
        "id": id,
        "iat": issued_at,
        "exp": issued_at + 3600,
    })
}

/// A session cookie as earlier releases sealed it (the cookie crate's private jar under the
/// encryption half of `bytes`), as a `Cookie` header pair.
fn legacy_cookie(
    bytes: &[u8; 64],
    user_id: jit_provision::store::UserId,
    id: &str,
    issued_at: i64,
) -> String {
    let session = legacy_session(user_id, id, issued_at);
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(&cookie::Key::from(bytes))
        .add(cookie::Cookie::new(
            "jit_session",
            serde_json::to_string(&session).unwrap(),
        ));
    format!("jit_session={}", jar.get("jit_session").unwrap().value())
}

#[tokio::test]
async fn a_cookie_of_the_previous_format_does_not_outlive_the_end_of_its_users_sessions() {
    let bytes = [7u8; 64];
    let key = SessionKey::from_bytes(&bytes).unwrap();
    let (_file, url) = sqlite_file().await;
    let on_file = || async {
        let store = jit_provision::store::SqliteStore::connect(&url)
            .await
            .unwrap();
        let key = key.clone();
        TestApp::start_with(|p| p, move |b| b.store(store).session_key(key)).await
    };
    let app = on_file().await;
    let (_, pair) = logged_in(&app).await;
    let user_id = user_id(&app, &pair).await;
    let issued = now() - 10;
    // Two cookies of an earlier release, never seen since the upgrade: no record of either.
    let seen_here = legacy_cookie(&bytes, user_id, "legacy-seen-before-restart", issued);
    let seen_later = legacy_cookie(&bytes, user_id, "legacy-seen-after-restart", issued);

    assert_eq!(app.layer.end_sessions("PRIMARY", user_id).await.unwrap(), 1);
    assert_eq!(me_with_cookie(&app, &pair).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me_with_cookie(&app, &seen_here).await,
        StatusCode::UNAUTHORIZED,
        "issued before the end of all sessions: not adopted"
    );
    assert_eq!(
        me_with_cookie(&app, &seen_here).await,
        StatusCode::UNAUTHORIZED
    );
    // A cookie issued after that end is adopted as before (the refusal is that end's).
    let after_end = legacy_cookie(&bytes, user_id, "legacy-issued-after-the-end", now() + 5);
    assert_eq!(me_with_cookie(&app, &after_end).await, StatusCode::OK);
    drop(app);

    // A restart on the same file: the end is remembered, for a cookie not seen before too.
    let after = on_file().await;
    assert_eq!(
        me_with_cookie(&after, &seen_later).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me_with_cookie(&after, &seen_here).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_with_cookie(&after, &after_end).await, StatusCode::OK);
}

#[tokio::test]
async fn the_configuration_holds_the_ring_as_session_key_and_previous_keys() {
    let (old, new) = (SessionKey::generate(), SessionKey::generate());
    let before = TestApp::start_with(|p| p, |b| b.session_key(old.clone())).await;
    let (_, sealed_by_old) = logged_in(&before).await;
    let toml = format!(
        "public_url = \"{}\"\n[session]\nsecure = false\nkey = \"{}\"\nprevious_keys = [\"{}\"]\n",
        before.base,
        new.to_base64(),
        old.to_base64()
    );
    let config: JitConfig = toml::from_str(&toml).unwrap();
    let layer = JitLayer::from_config(config, before.store.clone()).unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move { u.username.clone() }),
        )
        .layer(layer);
    let request = http::Request::get("/me")
        .header("cookie", &sealed_by_old)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A previous key that is not a key is a configuration error naming it.
    let mut config: JitConfig = toml::from_str(&toml).unwrap();
    config.session.previous_keys.push("too short".into());
    let err = JitLayer::from_config(config, before.store.clone()).unwrap_err();
    assert!(
        matches!(err, jit_provision::ConfigError::PreviousSessionKey(1)),
        "{err:?}"
    );
}

// ---- item 17: signed invalidations on PostgreSQL ----

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
    use jit_provision::invalidation::{Invalidation, InvalidationSigner};
    use jit_provision::store::{PostgresStore, UserId};
    use std::time::Instant;

    /// Not a performance bound: only how long to wait for a message that should arrive
    /// before calling the test hung.
    const HANG: Duration = Duration::from_secs(30);

    struct Instance {
        base: String,
        store: PostgresStore,
        layer: JitLayer,
    }

    /// Two instances on one database with one session key, as a deployment runs them; the
    /// user cache is long so only invalidations can refresh it.
    async fn two_instances(url: &str) -> (DevIdp, Vec<Instance>) {
        let listeners = [
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ];
        let bases: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect();
        let mut client = DevClient::new(CLIENT_ID, CLIENT_SECRET);
        for base in &bases {
            client = client.redirect_uri(format!("{base}/auth/dev/callback"));
        }
        let idp = DevIdp::builder()
            .client(client)
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let key = SessionKey::generate();
        let mut instances = Vec::new();
        for (listener, base) in listeners.into_iter().zip(bases) {
            let store = PostgresStore::connect(url).await.unwrap();
            let layer = JitLayer::builder()
                .public_url(&base)
                .insecure_cookies_for_localhost()
                .provider("dev", default_provider(idp.issuer()))
                .session_key(key.clone())
                .cache_ttl(Duration::from_secs(3600))
                .store(store.clone())
                .replay_guard(store.clone())
                .invalidation_bus(store.clone())
                .build()
                .unwrap();
            let app = Router::new()
                .route(
                    "/me",
                    get(|u: CurrentUser| async move { u.username.clone() }),
                )
                .layer(layer.clone());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            instances.push(Instance { base, store, layer });
        }
        (idp, instances)
    }

    /// Logs `user` in at `at`; returns its session cookie and user id.
    async fn login(idp: &DevIdp, at: &Instance, user: &DevUser) -> (String, UserId) {
        let client = plain();
        let start = client
            .get(format!("{}/auth/dev/login?return_to=/me", at.base))
            .send()
            .await
            .unwrap();
        let approved = client
            .post(format!("{}/authorize", idp.issuer()))
            .form(&DevIdp::approve_form(&location(&start), user))
            .send()
            .await
            .unwrap();
        let done = client
            .get(location(&approved))
            .header("cookie", cookie_header(&start))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        let found = at
            .store
            .find_by_identity(&identity(&user.subject))
            .await
            .unwrap()
            .unwrap();
        (session_pair(&done), found.id)
    }

    async fn me(at: &Instance, pair: &str) -> StatusCode {
        plain()
            .get(format!("{}/me", at.base))
            .header("cookie", pair)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Locks a user behind every cache's back (no `NOTIFY`).
    async fn lock_silently(store: &PostgresStore, id: UserId) {
        sqlx::query("UPDATE jit_users SET locked = TRUE WHERE id = $1")
            .bind(id.0)
            .execute(store.pool())
            .await
            .unwrap();
    }

    async fn raw_notify(store: &PostgresStore, payload: &str) {
        sqlx::query("SELECT pg_notify('jit_provision_invalidate', $1)")
            .bind(payload)
            .execute(store.pool())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_forged_notify_invalidates_nothing_and_a_signed_one_from_another_instance_does() {
        let Some(url) = pg::fresh_database().await else {
            return;
        };
        let (idp, instances) = two_instances(&url).await;
        let (a, b) = (&instances[0], &instances[1]);
        // Alice and Bob are cached at B; both are then locked in the database directly, so
        // only an invalidation that B applies makes it see the lock.
        let (alice_session, alice_id) = login(&idp, b, &alice()).await;
        let (bob_session, bob_id) = login(&idp, b, &bob()).await;
        assert_eq!(me(b, &alice_session).await, StatusCode::OK);
        assert_eq!(me(b, &bob_session).await, StatusCode::OK);
        lock_silently(&a.store, alice_id).await;
        lock_silently(&a.store, bob_id).await;
        assert_eq!(
            me(b, &alice_session).await,
            StatusCode::OK,
            "served from B's cache"
        );

        // Any role that can connect can NOTIFY: unsigned events (the former format), junk, and
        // an event signed by a key that is not the deployment's.
        let stranger = InvalidationSigner::new(&SessionKey::generate(), &[]);
        let user = Invalidation::User {
            domain: "PRIMARY".into(),
            id: alice_id,
        };
        let forged = [
            serde_json::to_string(&user).unwrap(),
            r#"{"kind":"all"}"#.to_owned(),
            "1.AAAA.{\"kind\":\"all\"}".to_owned(),
            stranger.sign(&user).into_string(),
            stranger.sign(&Invalidation::All).into_string(),
        ];
        for payload in &forged {
            raw_notify(&a.store, payload).await;
        }
        // Then a genuine invalidation of Bob from instance A's layer. Notifications reach a
        // listener in commit order, so once B has applied it, it has seen the forged ones.
        a.layer.forget_user(bob_id).await;
        let started = Instant::now();
        while me(b, &bob_session).await != StatusCode::UNAUTHORIZED {
            assert!(
                started.elapsed() < HANG,
                "the signed invalidation never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            me(b, &alice_session).await,
            StatusCode::OK,
            "a forged NOTIFY invalidated Alice"
        );
    }
}
