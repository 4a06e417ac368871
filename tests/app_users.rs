//! An application with its own users table and id type, integrated through the small core
//! (`AppUsers`): the store contract on `SqliteStore::with_app` / `PostgresStore::with_app`
//! with UUID, `i64` and `String` ids; the joined transaction of a creation under faults; and
//! logins through the layer whose handlers take `CurrentUser<AppUser>`.

#[path = "support/app_users.rs"]
mod app;
mod common;

use app::{AppUser, Fault, TestAppUsers};
use axum::Router;
use axum::routing::get;
use common::{CLIENT_ID, CLIENT_SECRET, alice, browser, location};
use jit_provision::config::{LinkBy, LinkingConfig};
use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
use jit_provision::store::{Identity, Profile, SqliteStore, StoreError, UserStore};
use jit_provision::testing::{Capabilities, store_contract};
use jit_provision::{CurrentUser, JitLayer, ProviderConfig};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

type Store<I> = SqliteStore<TestAppUsers<sqlx::SqlitePool, I>>;

async fn sqlite_store<I: app::NewId>() -> Store<I> {
    let pool = app::sqlite_pool().await;
    SqliteStore::with_app(pool.clone(), TestAppUsers::new(pool))
        .await
        .unwrap()
}

/// The application's table holds a `NOT NULL` email: the contract runs with it required.
fn caps() -> Capabilities {
    Capabilities::default().email_required(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_with_a_uuid_app_keeps_the_contract() {
    store_contract(sqlite_store::<Uuid>, caps()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_with_i64_and_string_ids_keeps_the_contract() {
    store_contract(sqlite_store::<i64>, caps()).await;
    store_contract(sqlite_store::<String>, caps()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_with_a_uuid_app_keeps_the_contract() {
    use jit_provision::store::PostgresStore;
    if common::pg::fresh_database().await.is_none() {
        return;
    }
    let make = || async {
        let url = common::pg::fresh_database().await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(app::SCHEMA).execute(&pool).await.unwrap();
        let app: TestAppUsers<sqlx::PgPool, Uuid> = TestAppUsers::new(pool.clone());
        PostgresStore::with_app(pool, app).await.unwrap()
    };
    store_contract(make, caps()).await;
}

async fn count(pool: &sqlx::SqlitePool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn jane() -> Profile {
    let mut profile = Profile::new("jane");
    profile.email = Some(Some("jane@example.com".into()));
    profile
}

/// The app's insert is in, then the crate's own insert fails (the username is held by a
/// crate user without an app part): neither row remains, and the identity is not linked.
#[tokio::test]
async fn a_failing_crate_insert_rolls_the_apps_insert_back() {
    let pool = app::sqlite_pool().await;
    let plain = SqliteStore::from_pool(pool.clone()).await.unwrap();
    plain
        .create(&Identity::new("corp", "https://idp", "old"), &jane())
        .await
        .unwrap();
    let store: Store<Uuid> = SqliteStore::with_app(pool.clone(), TestAppUsers::new(pool.clone()))
        .await
        .unwrap();
    let identity = Identity::new("corp", "https://idp", "new");
    let taken = store.create(&identity, &jane()).await;
    assert!(
        matches!(taken, Err(StoreError::UsernameTaken(ref n)) if n == "jane"),
        "{taken:?}"
    );
    assert_eq!(count(&pool, "app_users").await, 0);
    assert_eq!(count(&pool, "jit_users").await, 1);
    assert!(
        store
            .find_by_identity(&identity.key())
            .await
            .unwrap()
            .is_none()
    );
    // Once the name is free, the same creation succeeds, both rows together.
    let old = plain.find_by_username("jane").await.unwrap().unwrap();
    plain.delete(old.id).await.unwrap();
    let user = store.create(&identity, &jane()).await.unwrap();
    assert_eq!(count(&pool, "app_users").await, 1);
    let app_id = store.app_id_of(user.id).await.unwrap().unwrap();
    let found = sqlx::query_scalar::<_, String>("SELECT email FROM app_users WHERE id = ?")
        .bind(app_id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(found, "jane@example.com");
}

/// A layer over `store` with the dev IdP; `/me` takes the application's own user,
/// `/crate-me` the crate's, `/wrong` a type the store does not load.
struct Harness {
    base: String,
    idp: DevIdp,
    layer: JitLayer,
    pool: sqlx::SqlitePool,
    faults: std::sync::Arc<std::sync::Mutex<Option<Fault>>>,
}

async fn me(user: CurrentUser<AppUser<Uuid>>) -> axum::Json<Value> {
    axum::Json(serde_json::json!({
        "id": user.id.to_string(),
        "email": user.email,
        "username": user.username,
        "provider": user.auth.provider,
    }))
}

impl Harness {
    async fn start(linking: LinkingConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let idp = DevIdp::builder()
            .client(
                DevClient::new(CLIENT_ID, CLIENT_SECRET)
                    .redirect_uri(format!("{base}/auth/dev/callback")),
            )
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let pool = app::sqlite_pool().await;
        let users: TestAppUsers<sqlx::SqlitePool, Uuid> = TestAppUsers::new(pool.clone());
        let faults = users.faults();
        let store = SqliteStore::with_app(pool.clone(), users).await.unwrap();
        let layer = JitLayer::builder()
            .public_url(&base)
            .insecure_cookies_for_localhost()
            .provider(
                "dev",
                ProviderConfig::new(idp.issuer(), CLIENT_ID)
                    .client_secret(CLIENT_SECRET)
                    .linking(linking),
            )
            .store(store)
            .build()
            .unwrap();
        let router = Router::new()
            .route("/me", get(me))
            .route(
                "/crate-me",
                get(|user: CurrentUser| async move { user.id.0.to_string() }),
            )
            .route(
                "/wrong",
                get(|user: CurrentUser<String>| async move { (*user.user).clone() }),
            )
            .route(
                "/maybe",
                get(|user: Option<CurrentUser<AppUser<Uuid>>>| async move {
                    user.map_or("anonymous".to_owned(), |u| u.email.clone())
                }),
            )
            .layer(layer.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            base,
            idp,
            layer,
            pool,
            faults,
        }
    }

    async fn login(&self, client: &reqwest::Client, user: &DevUser) -> reqwest::Response {
        let start = client
            .get(format!("{}/auth/dev/login?return_to=/me", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), StatusCode::FOUND);
        let authorize = location(&start);
        let approved = client
            .post(format!("{}/authorize", self.idp.issuer()))
            .form(&DevIdp::approve_form(&authorize, user))
            .send()
            .await
            .unwrap();
        assert_eq!(approved.status(), StatusCode::SEE_OTHER);
        client.get(location(&approved)).send().await.unwrap()
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

async fn code_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_login_gives_handlers_the_applications_own_user() {
    let app = Harness::start(LinkingConfig::default()).await;
    let client = browser();
    assert_eq!(
        app.get(&client, "/maybe").await.text().await.unwrap(),
        "anonymous"
    );
    assert_eq!(
        app.login(&client, &alice()).await.status(),
        StatusCode::SEE_OTHER
    );
    let me: Value = app.get(&client, "/me").await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["provider"], "dev");
    let id: Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let stored: String = sqlx::query_scalar("SELECT email FROM app_users WHERE id = ?")
        .bind(id.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "alice@example.com");
    assert_eq!(
        app.get(&client, "/maybe").await.text().await.unwrap(),
        "alice@example.com"
    );
    // The crate's user is there too, under its own id.
    let crate_id = app.get(&client, "/crate-me").await.text().await.unwrap();
    let crate_id = jit_provision::store::UserId(crate_id.parse().unwrap());
    // A type the store does not load: a typed 500, no panic.
    let wrong = app.get(&client, "/wrong").await;
    assert_eq!(wrong.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code_of(wrong).await, "app_user_type");
    // The app's pool fails, or its `find` panics: the request fails closed (503, 500),
    // and nothing of it is cached.
    for (fault, status) in [
        (Fault::FindFails, StatusCode::SERVICE_UNAVAILABLE),
        (Fault::FindPanics, StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        *app.faults.lock().unwrap() = Some(fault);
        app.layer.forget_user(crate_id).await;
        let failed = app.get(&client, "/me").await;
        assert_eq!(failed.status(), status, "{fault:?}");
        assert_eq!(code_of(failed).await, "store_unavailable");
        let failed = app.get(&client, "/maybe").await;
        assert_eq!(failed.status(), status, "{fault:?}");
    }
    *app.faults.lock().unwrap() = None;
    assert_eq!(app.get(&client, "/me").await.status(), StatusCode::OK);
    // The application's user is gone: the request is anonymous (401), once the layer drops
    // its cached copy.
    sqlx::query("DELETE FROM app_users WHERE id = ?")
        .bind(id.to_string())
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        app.get(&client, "/me").await.status(),
        StatusCode::OK,
        "cached"
    );
    app.layer.forget_user(crate_id).await;
    assert_eq!(
        app.get(&client, "/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(&client, "/maybe").await.text().await.unwrap(),
        "anonymous"
    );
    // The crate's own user still is.
    assert_eq!(app.get(&client, "/crate-me").await.status(), StatusCode::OK);
}

/// The application's `create` fails (or panics) after its own insert: the login is refused,
/// neither the application's row nor any crate row remains, and a retry succeeds.
#[tokio::test]
async fn a_fault_after_the_apps_insert_leaves_nothing_and_a_retry_succeeds() {
    let app = Harness::start(LinkingConfig::default()).await;
    // A backend error is the layer's 503 for any store failure; a panic its 500.
    let faults = [
        (Fault::Fail, StatusCode::SERVICE_UNAVAILABLE),
        (Fault::Panic, StatusCode::INTERNAL_SERVER_ERROR),
    ];
    for (fault, status) in faults {
        *app.faults.lock().unwrap() = Some(fault);
        let client = browser();
        let refused = app.login(&client, &alice()).await;
        assert_eq!(refused.status(), status, "{fault:?}");
        assert!(!common::sets_session(&refused));
        assert_eq!(count(&app.pool, "app_users").await, 0, "{fault:?}");
        assert_eq!(count(&app.pool, "jit_users").await, 0, "{fault:?}");
        assert_eq!(count(&app.pool, "jit_identities").await, 0, "{fault:?}");
    }
    *app.faults.lock().unwrap() = None;
    let client = browser();
    assert_eq!(
        app.login(&client, &alice()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.get(&client, "/me").await.status(), StatusCode::OK);
    assert_eq!(count(&app.pool, "app_users").await, 1);
    assert_eq!(count(&app.pool, "jit_identities").await, 1);
}

/// An email held by a password account: the application refuses (409 with its code), and
/// nothing is written; with linking by verified email, the login links that account.
#[tokio::test]
async fn an_email_of_a_password_account_is_refused_with_the_apps_code_or_linked() {
    let app = Harness::start(LinkingConfig::default()).await;
    app::password_account(&app.pool, "alice@example.com", "alice.pw", true).await;
    let client = browser();
    let refused = app.login(&client, &alice()).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(code_of(refused).await, "email_in_use");
    assert_eq!(count(&app.pool, "app_users").await, 1);
    assert_eq!(count(&app.pool, "jit_users").await, 0);

    let linking = LinkingConfig::new(LinkBy::Email);
    let app = Harness::start(linking).await;
    let account = app::password_account(&app.pool, "alice@example.com", "alice.pw", true).await;
    let client = browser();
    assert_eq!(
        app.login(&client, &alice()).await.status(),
        StatusCode::SEE_OTHER
    );
    let me: Value = app.get(&client, "/me").await.json().await.unwrap();
    assert_eq!(me["id"], account.as_str());
    assert_eq!(me["username"], "alice.pw");
    assert_eq!(count(&app.pool, "app_users").await, 1);
    assert_eq!(count(&app.pool, "jit_identities").await, 1);
}

/// An `AppUsers::create` that ends the crate's transaction itself (a `COMMIT` on its
/// connection) is caught: the creation fails with an error that says so instead of writing
/// the crate's row outside any transaction and answering success.
#[tokio::test]
async fn an_app_create_that_commits_the_transaction_itself_is_an_error() {
    let pool = app::sqlite_pool().await;
    let apps: TestAppUsers<sqlx::SqlitePool, Uuid> = TestAppUsers::new(pool.clone());
    *apps.faults().lock().unwrap() = Some(Fault::Commit);
    let store = SqliteStore::with_app(pool.clone(), apps).await.unwrap();
    let identity = Identity::new("corp", "https://idp", "jane");
    let created = store.create(&identity, &jane()).await;
    match created {
        Err(StoreError::Backend(e)) => {
            assert!(
                e.to_string().contains("ended the crate's transaction"),
                "{e}"
            )
        }
        other => panic!("expected the ended transaction to be reported: {other:?}"),
    }
    assert_eq!(count(&pool, "jit_users").await, 0);
    assert!(
        store
            .find_by_identity(&identity.key())
            .await
            .unwrap()
            .is_none()
    );
}

/// Adoption for linking keeps no copy of the application's email: an application user who
/// changed their email is no longer found by the old one (a copy would link whoever holds
/// the old address next), and a user adopted first by username (an admin preview, a username
/// link) is still found, with the email the application vouches for, by email.
#[tokio::test]
async fn adopted_app_users_are_found_by_the_applications_current_email_only() {
    let pool = app::sqlite_pool().await;
    let store: Store<Uuid> = SqliteStore::with_app(pool.clone(), TestAppUsers::new(pool.clone()))
        .await
        .unwrap();
    let id = app::password_account(&pool, "ann@example.com", "ann", true).await;
    // Adopted by username first: no email known from that lookup.
    let by_name = store.find_by_username("ann").await.unwrap().unwrap();
    let by_email = store.find_by_email("ann@example.com").await.unwrap();
    assert_eq!(by_email.len(), 1);
    assert_eq!(by_email[0].id, by_name.id);
    assert_eq!(by_email[0].email.as_deref(), Some("ann@example.com"));
    // The application's user moves to another address: the old one finds nobody.
    sqlx::query("UPDATE app_users SET email = 'ann@new.example.com' WHERE id = ?")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        store
            .find_by_email("ann@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    let moved = store.find_by_email("ann@new.example.com").await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].id, by_name.id);
}

/// A user the crate created in the application is found by email through the application
/// only: once the application's user changes its address, the crate's copy of the old one
/// (from the last login) links nobody.
#[tokio::test]
async fn a_created_app_user_is_found_by_the_applications_email_not_the_crates_copy() {
    let pool = app::sqlite_pool().await;
    let store: Store<Uuid> = SqliteStore::with_app(pool.clone(), TestAppUsers::new(pool.clone()))
        .await
        .unwrap();
    let user = store
        .create(&Identity::new("corp", "https://idp", "jane"), &jane())
        .await
        .unwrap();
    let found = store.find_by_email("jane@example.com").await.unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), [user.id]);
    sqlx::query("UPDATE app_users SET email = 'jane@new.example.com'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        store
            .find_by_email("jane@example.com")
            .await
            .unwrap()
            .is_empty(),
        "the crate's copy of a given-up address must not link"
    );
    let moved = store.find_by_email("jane@new.example.com").await.unwrap();
    assert_eq!(moved.iter().map(|u| u.id).collect::<Vec<_>>(), [user.id]);
}

/// A crate row whose `app_id` does not parse as the application's id type is a clear store
/// error, not a panic.
#[tokio::test]
async fn an_app_id_that_does_not_parse_is_an_error() {
    let pool = app::sqlite_pool().await;
    let store: Store<i64> = SqliteStore::with_app(pool.clone(), TestAppUsers::new(pool.clone()))
        .await
        .unwrap();
    let user = store
        .create(&Identity::new("corp", "https://idp", "jane"), &jane())
        .await
        .unwrap();
    sqlx::query("UPDATE jit_users SET app_id = 'not-a-number' WHERE id = ?")
        .bind(user.id.0)
        .execute(&pool)
        .await
        .unwrap();
    match store.app_id_of(user.id).await {
        Err(StoreError::Backend(e)) => assert!(e.to_string().contains("not-a-number"), "{e}"),
        other => panic!("expected a parse error: {other:?}"),
    }
    let changes = jit_provision::store::ProfileChanges {
        display_name: Some(Some("Jane".into())),
        ..Default::default()
    };
    assert!(matches!(
        store.update(user.id, &changes).await,
        Err(StoreError::Backend(_))
    ));
}
