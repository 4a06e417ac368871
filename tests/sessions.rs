//! Server-side sessions (issue 14): the session record is the truth, so a logout, a
//! revocation or an expiry holds across restarts and on every instance; the authenticated
//! request reads no store on a hit.

mod common;
#[path = "common/local_bus.rs"]
mod local_bus;

use std::time::Duration;

use common::*;
use jit_provision::dev_idp::DevUser;
use jit_provision::policy::Deprovision;
use jit_provision::session::{MemorySessionStore, SessionKey};
use jit_provision::store::SqliteStore;
use local_bus::LocalBus;
use reqwest::StatusCode;

/// Not a performance bound: how long to wait for a bus message before calling the test hung.
const HANG: Duration = Duration::from_secs(30);

// ---- the SessionStore contract ----

#[tokio::test]
async fn the_memory_session_store_keeps_the_contract() {
    session_contract::contract(MemorySessionStore::new()).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_session_contract() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    session_contract::contract(store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_store_keeps_the_session_contract() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let store = jit_provision::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    session_contract::contract(store).await;
}

/// A logout by subject (no IdP session) is served by the `(provider, subject)` index.
#[tokio::test]
async fn a_logout_by_subject_uses_the_subject_index() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN UPDATE jit_sessions SET ended_at = $1, end_reason = $2 \
         WHERE provider = $3 AND ended_at IS NULL AND $4 IS NULL AND subject = $5 \
         AND ($6 IS NULL OR created_at <= $6) RETURNING id_hash",
    )
    .bind(1_i64)
    .bind("idp")
    .bind("corp")
    .bind(None::<String>)
    .bind("sub-alice")
    .bind(None::<i64>)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        plan.iter()
            .any(|row| row.3.contains("jit_sessions_subject")),
        "{plan:?}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_store_has_the_subject_index() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let store = jit_provision::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    let definition: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'jit_sessions_subject'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(
        definition.contains("jit_sessions") && definition.contains("(provider, subject)"),
        "{definition}"
    );
}

// ---- helpers ----

/// An app on the SQLite file at `url`, sealing with `key`; `more` adjusts the builder.
async fn on_sqlite(
    url: &str,
    key: &SessionKey,
    more: impl FnOnce(jit_provision::JitLayerBuilder) -> jit_provision::JitLayerBuilder,
) -> (TestApp, SqliteStore) {
    let store = SqliteStore::connect(url).await.unwrap();
    let app = {
        let store = store.clone();
        let key = key.clone();
        TestApp::start_with(|p| p, move |b| more(b.store(store).session_key(key))).await
    };
    (app, store)
}

/// Logs `user` in with a fresh browser at `app`; the browser and its session cookie.
async fn login_as(app: &TestApp, user: &DevUser) -> (reqwest::Client, String) {
    let client = browser();
    let response = app.login_with(&client, user).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let pair = session_pair(&response);
    assert_open(app, &pair).await;
    (client, pair)
}

async fn post_logout(app: &TestApp, pair: &str, path: &str) -> reqwest::Response {
    plain()
        .post(app.url(path))
        .header("cookie", pair)
        .send()
        .await
        .unwrap()
}

/// The session of `pair` is refused at `app`.
async fn assert_refused_now(app: &TestApp, pair: &str) {
    assert_eq!(me_with_cookie(app, pair).await, StatusCode::UNAUTHORIZED);
}

/// The session of `pair` opens at `app`.
async fn assert_open(app: &TestApp, pair: &str) {
    assert_eq!(me_with_cookie(app, pair).await, StatusCode::OK);
}

/// Waits (bounded by [`HANG`]) until `pair` is refused at `app`.
async fn refused_soon(app: &TestApp, pair: &str) {
    let deadline = tokio::time::Instant::now() + HANG;
    while me_with_cookie(app, pair).await != StatusCode::UNAUTHORIZED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was never refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- across restarts and instances ----

#[tokio::test]
async fn a_logged_out_cookie_stays_refused_after_a_restart() {
    let (_dir, url) = sqlite_file().await;
    let key = SessionKey::generate();
    let (before, _) = on_sqlite(&url, &key, |b| b).await;
    let (client, ended) = login_as(&before, &alice()).await;
    let (_, kept) = login_as(&before, &alice()).await;
    let out = client
        .post(before.url("/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_refused_now(&before, &ended).await;
    drop(before);
    // The restart: a new layer on the same file and key.
    let (after, _) = on_sqlite(&url, &key, |b| b).await;
    assert_refused_now(&after, &ended).await;
    assert_open(&after, &kept).await;
}

#[tokio::test]
async fn a_second_instance_without_a_bus_refuses_a_session_ended_elsewhere() {
    let (_dir, url) = sqlite_file().await;
    let key = SessionKey::generate();
    let record_ttl = Duration::from_secs(1);
    let (a, _) = on_sqlite(&url, &key, |b| b.session_record_cache_ttl(record_ttl)).await;
    let (b, _) = on_sqlite(&url, &key, |b| b.session_record_cache_ttl(record_ttl)).await;
    // Not cached at b: refused at once.
    let (_, pair) = login_as(&a, &alice()).await;
    post_logout(&a, &pair, "/auth/logout").await;
    assert_refused_now(&b, &pair).await;
    // Cached at b: refused once b's cached record expires (the documented staleness bound
    // without a bus).
    let (_, cached) = login_as(&a, &bob()).await;
    assert_open(&b, &cached).await;
    post_logout(&a, &cached, "/auth/logout").await;
    tokio::time::sleep(record_ttl + Duration::from_millis(500)).await;
    assert_refused_now(&b, &cached).await;
}

#[tokio::test]
async fn with_a_bus_a_cached_session_ends_on_every_instance_at_once() {
    let (_dir, url) = sqlite_file().await;
    let key = SessionKey::generate();
    let bus = LocalBus::new();
    // A record cache far longer than the test: only the bus can drop the record.
    let long = Duration::from_secs(3600);
    let (a, _) = on_sqlite(&url, &key, {
        let bus = bus.clone();
        move |b| b.invalidation_bus(bus).session_record_cache_ttl(long)
    })
    .await;
    let (b, _) = on_sqlite(&url, &key, {
        let bus = bus.clone();
        move |b| b.invalidation_bus(bus).session_record_cache_ttl(long)
    })
    .await;
    let (_, pair) = login_as(&a, &alice()).await;
    assert_eq!(
        me_with_cookie(&b, &pair).await,
        StatusCode::OK,
        "cached at b"
    );
    post_logout(&a, &pair, "/auth/logout").await;
    refused_soon(&b, &pair).await;
    // And ending every session of a user through the Rust API.
    let (_, one) = login_as(&a, &bob()).await;
    let (_, two) = login_as(&b, &bob()).await;
    assert_open(&b, &one).await;
    assert_open(&a, &two).await;
    let id = user_id(&a, &one).await;
    assert_eq!(a.layer.end_sessions("PRIMARY", id).await.unwrap(), 2);
    refused_soon(&b, &one).await;
    refused_soon(&a, &two).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_postgres_with_its_bus_a_cached_session_ends_on_every_instance_at_once() {
    use jit_provision::store::PostgresStore;
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let key = SessionKey::generate();
    let long = Duration::from_secs(3600);
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = PostgresStore::connect(&url).await.unwrap();
        let key = key.clone();
        apps.push(
            TestApp::start_with(
                |p| p,
                move |b| {
                    b.store(store.clone())
                        .invalidation_bus(store)
                        .session_key(key)
                        .session_record_cache_ttl(long)
                },
            )
            .await,
        );
    }
    let (a, b) = (&apps[0], &apps[1]);
    let (_, pair) = login_as(a, &alice()).await;
    assert_eq!(
        me_with_cookie(b, &pair).await,
        StatusCode::OK,
        "cached at b"
    );
    post_logout(a, &pair, "/auth/logout").await;
    refused_soon(b, &pair).await;
    // A restart on the same database: still refused; another session still opens.
    let (_, kept) = login_as(a, &alice()).await;
    let store = PostgresStore::connect(&url).await.unwrap();
    let after = TestApp::start_with(|p| p, move |b| b.store(store).session_key(key)).await;
    assert_refused_now(&after, &pair).await;
    assert_open(&after, &kept).await;
}

// ---- idle timeout, revoke-all, list, lock ----

#[tokio::test]
async fn an_idle_session_ends_and_an_active_one_does_not() {
    let app = TestApp::start_with(|p| p, |b| b.session_idle_timeout(Duration::from_secs(2))).await;
    let (_, idle) = login_as(&app, &alice()).await;
    let (_, active) = login_as(&app, &bob()).await;
    // Bob keeps working (a request every ~0.7 s); Alice does nothing.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_open(&app, &active).await;
    }
    assert_refused_now(&app, &idle).await;
    let id = user_id(&app, &active).await;
    assert_eq!(app.layer.sessions_of("PRIMARY", id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn logout_everywhere_ends_every_session_of_the_user_only() {
    let app = TestApp::start().await;
    let (_, first) = login_as(&app, &alice()).await;
    let (_, second) = login_as(&app, &alice()).await;
    let (_, other) = login_as(&app, &bob()).await;
    let alice_id = user_id(&app, &first).await;
    let listed = app.layer.sessions_of("PRIMARY", alice_id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|s| s.provider == "dev" && s.subject == "sub-alice")
    );
    assert!(listed[0].created_at <= listed[1].created_at);
    // Cross-site: refused, nothing ended.
    let cross = plain()
        .post(app.url("/auth/logout/everywhere"))
        .header("cookie", &first)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert_open(&app, &second).await;
    let get = plain()
        .get(app.url("/auth/logout/everywhere"))
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let out = post_logout(&app, &first, "/auth/logout/everywhere").await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("jit_session=;"))
    );
    assert_refused_now(&app, &first).await;
    assert_refused_now(&app, &second).await;
    assert_open(&app, &other).await;
    assert!(
        app.layer
            .sessions_of("PRIMARY", alice_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn logout_everywhere_from_a_dead_cookie_asks_to_log_in_again() {
    let app = TestApp::start().await;
    let (_, dead) = login_as(&app, &alice()).await;
    let (_, kept) = login_as(&app, &alice()).await;
    let out = post_logout(&app, &dead, "/auth/logout").await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_refused_now(&app, &dead).await;
    // From the ended cookie: an explicit refusal, the cookie deleted, the other session kept.
    let out = post_logout(&app, &dead, "/auth/logout/everywhere").await;
    assert_eq!(out.status(), StatusCode::UNAUTHORIZED);
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("jit_session=;"))
    );
    let body: serde_json::Value = out.json().await.unwrap();
    assert_eq!(body["error"], "login_required");
    assert_eq!(body["message"], "log in again to end all your sessions");
    assert_open(&app, &kept).await;
    // Without any cookie, and for a browser: the same, as a page.
    let page = plain()
        .post(app.url("/auth/logout/everywhere"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("log in again to end all your sessions")
    );
    assert_open(&app, &kept).await;
}

#[tokio::test]
async fn the_admin_router_lists_and_ends_a_users_sessions() {
    let app = TestApp::start().await;
    let admin = DevUser::new("sub-root", "root", "root@example.com", "Root", &["admins"]);
    let (_, admin_pair) = login_as(&app, &admin).await;
    let (_, alice_pair) = login_as(&app, &alice()).await;
    let (_, alice_again) = login_as(&app, &alice()).await;
    let id = user_id(&app, &alice_pair).await;
    let path = format!("/admin/jit-users/{}/sessions", id.0);
    // Alice is no admin.
    let denied = plain()
        .get(app.url(&path))
        .header("cookie", &alice_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let listed: serde_json::Value = plain()
        .get(app.url(&path))
        .header("cookie", &admin_pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["provider"], "dev");
    assert!(listed[0].get("tokens").is_none(), "{listed:?}");
    let ended: serde_json::Value = plain()
        .post(app.url(&format!("{path}/end")))
        .header("cookie", &admin_pair)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["ended"], 2);
    assert_refused_now(&app, &alice_pair).await;
    assert_refused_now(&app, &alice_again).await;
    assert_open(&app, &admin_pair).await;
}

#[tokio::test]
async fn the_admin_router_refuses_a_cross_site_end_of_sessions() {
    let app = TestApp::start().await;
    let admin = DevUser::new("sub-root", "root", "root@example.com", "Root", &["admins"]);
    let (_, admin_pair) = login_as(&app, &admin).await;
    let (_, alice_pair) = login_as(&app, &alice()).await;
    let id = user_id(&app, &alice_pair).await;
    let path = format!("/admin/jit-users/{}/sessions/end", id.0);
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let refused = plain()
            .post(app.url(&path))
            .header("cookie", &admin_pair)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{name}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "cross_site_request", "{name}");
        assert_open(&app, &alice_pair).await;
    }
    // From the application's own pages, it ends them.
    let origin = app.url("");
    let ended: serde_json::Value = plain()
        .post(app.url(&path))
        .header("cookie", &admin_pair)
        .header("origin", &origin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ended["ended"], 1);
    assert_refused_now(&app, &alice_pair).await;
}

#[tokio::test]
async fn a_deprovisioned_users_sessions_end_in_the_store() {
    let (_dir, url) = sqlite_file().await;
    let key = SessionKey::generate();
    let (app, _) = on_sqlite(&url, &key, |b| b).await;
    let (_, pair) = login_as(&app, &alice()).await;
    let id = user_id(&app, &pair).await;
    assert_eq!(
        app.layer
            .deprovision("dev", Deprovision::Disable)
            .await
            .unwrap(),
        1
    );
    assert_refused_now(&app, &pair).await;
    assert!(
        app.layer
            .sessions_of("PRIMARY", id)
            .await
            .unwrap()
            .is_empty()
    );
    // Ended in the store, not only refused for the lock: unlocking does not revive it.
    let store = SqliteStore::connect(&url).await.unwrap();
    jit_provision::store::UserStore::set_locked(&store, id, false)
        .await
        .unwrap();
    let (after, _) = on_sqlite(&url, &key, |b| b).await;
    assert_refused_now(&after, &pair).await;
}

// ---- key ring, storage, hot path ----

#[tokio::test]
async fn a_session_of_the_previous_key_opens_and_the_table_holds_hashes_only() {
    let (_dir, url) = sqlite_file().await;
    let (old, new) = (SessionKey::generate(), SessionKey::generate());
    let (before, store) = on_sqlite(&url, &old, |b| b).await;
    let (_, pair) = login_as(&before, &alice()).await;
    let (after, _) = on_sqlite(&url, &new, {
        let old = old.clone();
        move |b| b.previous_session_key(old)
    })
    .await;
    assert_open(&after, &pair).await;
    let id = user_id(&after, &pair).await;
    let listed = after.layer.sessions_of("PRIMARY", id).await.unwrap();
    let rows: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT id_hash, tokens, user_id FROM jit_sessions")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    let (hash, tokens, user) = &rows[0];
    assert_eq!(hash, &listed[0].id);
    assert_eq!(user, &id.0.to_string());
    // A SHA-256 (43 characters of URL-safe base64), not a value the cookie shows.
    assert_eq!(hash.len(), 43);
    assert!(!pair.contains(hash.as_str()));
    // The tokens (the ID token at least) are sealed: format 2 of the key ring.
    let tokens = tokens.as_deref().expect("the ID token is kept");
    assert!(tokens.starts_with("2."), "{tokens}");
    assert!(!tokens.contains("eyJ"), "no JWT in the clear");
}

#[tokio::test]
async fn an_authenticated_request_on_a_hit_reads_no_store() {
    let app = TestApp::start().await;
    let (_, pair) = login_as(&app, &alice()).await;
    let sessions = app.store.inner.sessions().clone();
    let (session_reads, session_writes) = (sessions.reads(), sessions.writes());
    let user_reads = app.store.inner.counters().reads();
    for _ in 0..20 {
        assert_open(&app, &pair).await;
    }
    assert_eq!(
        sessions.reads(),
        session_reads,
        "session store reads on a hit"
    );
    assert_eq!(
        sessions.writes(),
        session_writes,
        "last_seen written per request"
    );
    assert_eq!(
        app.store.inner.counters().reads(),
        user_reads,
        "user store reads on a hit"
    );
    // A fresh instance on the same store reads the record once, then serves from memory.
    let store = app.store.clone();
    let other = TestApp::start_with(|p| p, move |b| b.store(store)).await;
    let other_reads = sessions.reads();
    assert_eq!(
        me_with_cookie(&other, &pair).await,
        StatusCode::UNAUTHORIZED,
        "another key"
    );
    assert_eq!(
        sessions.reads(),
        other_reads,
        "a cookie no key opens reads nothing"
    );
}

#[tokio::test]
async fn the_id_tokens_sid_becomes_the_sessions_idp_session() {
    let app = TestApp::start().await;
    let mut user = alice();
    user.claims
        .insert("sid".into(), serde_json::json!("idp-session-1"));
    let (_, pair) = login_as(&app, &user).await;
    // `"sid": null`: the dev IdP names no IdP session in this login's ID token.
    let mut bob = bob();
    bob.claims.insert("sid".into(), serde_json::Value::Null);
    let (_, without) = login_as(&app, &bob).await;
    let listed = app
        .layer
        .sessions_of("PRIMARY", user_id(&app, &pair).await)
        .await
        .unwrap();
    assert_eq!(listed[0].idp_session.as_deref(), Some("idp-session-1"));
    let listed = app
        .layer
        .sessions_of("PRIMARY", user_id(&app, &without).await)
        .await
        .unwrap();
    assert_eq!(listed[0].idp_session, None);
}

#[tokio::test]
async fn store_tokens_keeps_the_access_and_refresh_tokens_sealed_in_the_record() {
    // The blob is sealed: its size is what a test can see. With `store_tokens` it holds the
    // access token (a JWT of the dev IdP) besides the ID token.
    let mut sizes = Vec::new();
    for store_tokens in [false, true] {
        let (_file, url) = sqlite_file().await;
        let store = SqliteStore::connect(&url).await.unwrap();
        let app = {
            let store = store.clone();
            TestApp::start_with(
                move |mut p| {
                    p.store_tokens = store_tokens;
                    p
                },
                move |b| b.store(store),
            )
            .await
        };
        login_as(&app, &alice()).await;
        let tokens: String = sqlx::query_scalar("SELECT tokens FROM jit_sessions")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(tokens.starts_with("2.") && !tokens.contains("eyJ"));
        sizes.push(tokens.len());
    }
    assert!(sizes[1] > sizes[0] + 100, "{sizes:?}");
}
