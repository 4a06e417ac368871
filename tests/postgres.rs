//! Several app instances on one PostgreSQL: the store contract, exactly-once provisioning
//! across instances, the shared replay guard, cross-instance cache invalidation, and
//! outages. Needs the server scripts/test starts (skips without it unless JIT_REQUIRE_PG=1).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::*;
use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
use jit_provision::session::SessionKey;
use jit_provision::store::{IdentityKey, PostgresStore, UserStore};
use jit_provision::{CurrentUser, JitLayer, JitLayerBuilder};
use reqwest::StatusCode;

/// How long a change at one instance may take to reach another (README: "within a second";
/// the test allows more so a loaded CI machine does not fail it).
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(5);

struct Instance {
    base: String,
    store: PostgresStore,
    layer: JitLayer,
}

struct Cluster {
    idp: DevIdp,
    instances: Vec<Instance>,
}

impl Cluster {
    async fn start(url: &str, count: usize) -> Self {
        Self::start_with(url, count, |b| b).await
    }

    /// Like [`Cluster::start`]; `builder` adjusts every instance's layer.
    async fn start_with(
        url: &str,
        count: usize,
        builder: impl Fn(JitLayerBuilder) -> JitLayerBuilder,
    ) -> Self {
        let listeners: Vec<_> = futures_util::future::join_all(
            (0..count).map(|_| tokio::net::TcpListener::bind("127.0.0.1:0")),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        let bases: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect();
        // Behind a load balancer every instance has the same public URL (here: the first
        // instance's address); requests are then sent to either instance's port.
        let public = bases[0].clone();
        let client = DevClient::new(CLIENT_ID, CLIENT_SECRET)
            .redirect_uri(format!("{public}/auth/dev/callback"));
        let idp = DevIdp::builder()
            .client(client)
            .start("127.0.0.1:0")
            .await
            .unwrap();
        // Every instance shares the session key, as a deployment must.
        let key = SessionKey::generate();
        let mut instances = Vec::new();
        for (listener, base) in listeners.into_iter().zip(bases) {
            let store = PostgresStore::connect(url).await.unwrap();
            let layer = builder(
                JitLayer::builder()
                    .public_url(&public)
                    .insecure_cookies_for_localhost()
                    .provider("dev", default_provider(idp.issuer()))
                    .session_key(key.clone())
                    .store(store.clone())
                    .replay_guard(store.clone())
                    .invalidation_bus(store.clone()),
            )
            .build()
            .unwrap();
            let app = Router::new()
                .route(
                    "/me",
                    get(|u: CurrentUser| async move { format!("{}:{}", u.id, u.username) }),
                )
                .layer(layer.clone());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            instances.push(Instance { base, store, layer });
        }
        Self { idp, instances }
    }

    /// Starts a login at instance `start` and finishes it (the callback) at `finish`.
    async fn login(
        &self,
        client: &reqwest::Client,
        user: &DevUser,
        start: usize,
        finish: usize,
    ) -> reqwest::Response {
        let callback = self.callback(client, user, start).await;
        // The callback names the public URL; send it to instance `finish`.
        let moved = callback.replace(&self.instances[0].base, &self.instances[finish].base);
        client.get(moved).send().await.unwrap()
    }

    async fn callback(&self, client: &reqwest::Client, user: &DevUser, start: usize) -> String {
        let response = client
            .get(format!(
                "{}/auth/dev/login?return_to=/me",
                self.instances[start].base
            ))
            .send()
            .await
            .unwrap();
        let authorize = location(&response);
        let approved = client
            .post(format!("{}/authorize", self.idp.issuer()))
            .form(&DevIdp::approve_form(&authorize, user))
            .send()
            .await
            .unwrap();
        location(&approved)
    }

    async fn me(&self, client: &reqwest::Client, at: usize) -> StatusCode {
        client
            .get(format!("{}/me", self.instances[at].base))
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// Polls until `check` holds or the deadline passes; returns how long it took.
async fn eventually<F, Fut>(mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < PROPAGATION_DEADLINE,
            "not propagated within {PROPAGATION_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn concurrent_first_logins_over_two_instances_create_one_user() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let cluster = Arc::new(Cluster::start(&url, 2).await);
    let logins = (0..200).map(|i| {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let client = browser();
            // Start at one instance, finish at either: the pending login travels in the cookie.
            let response = cluster.login(&client, &alice(), i % 2, (i / 2) % 2).await;
            (response.status(), cluster.me(&client, (i + 1) % 2).await)
        })
    });
    for result in futures_util::future::join_all(logins).await {
        assert_eq!(result.unwrap(), (StatusCode::SEE_OTHER, StatusCode::OK));
    }
    assert_eq!(cluster.instances[0].store.user_count().await.unwrap(), 1);
    let created: u64 = cluster
        .instances
        .iter()
        .map(|i| i.layer.metrics().users_created)
        .sum();
    assert_eq!(created, 1, "exactly one instance created the user");
}

#[tokio::test]
async fn a_user_locked_at_one_instance_is_refused_at_the_other() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let cluster = Cluster::start(&url, 2).await;
    let client = browser();
    assert_eq!(
        cluster.login(&client, &alice(), 1, 1).await.status(),
        StatusCode::SEE_OTHER
    );
    // Instance B has the user cached now.
    assert_eq!(cluster.me(&client, 1).await, StatusCode::OK);
    let a = &cluster.instances[0];
    let user = a
        .store
        .find_by_identity(&IdentityKey {
            provider: "dev".into(),
            subject: "sub-alice".into(),
        })
        .await
        .unwrap()
        .unwrap();
    a.store.set_locked(user.id, true).await.unwrap();
    let took =
        eventually(|| async { cluster.me(&client, 1).await == StatusCode::UNAUTHORIZED }).await;
    eprintln!("lock reached the other instance in {took:?}");
    // And a login there is refused too.
    let response = cluster.login(&browser(), &alice(), 1, 1).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_logout_at_one_instance_ends_the_session_at_the_other() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let cluster = Cluster::start(&url, 2).await;
    let client = browser();
    let response = cluster.login(&client, &alice(), 0, 0).await;
    let cookie = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("jit_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let copied = reqwest::Client::new();
    let me_b = || async {
        copied
            .get(format!("{}/me", cluster.instances[1].base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(me_b().await, StatusCode::OK);
    let out = client
        .post(format!("{}/auth/logout", cluster.instances[0].base))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let took = eventually(|| async { me_b().await == StatusCode::UNAUTHORIZED }).await;
    eprintln!("logout reached the other instance in {took:?}");
}

#[tokio::test]
async fn a_state_used_at_one_instance_is_refused_at_the_other() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let cluster = Cluster::start(&url, 2).await;
    // The attacker holds the login start's cookies (pending login, binder) and the callback URL.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = plain
        .get(format!("{}/auth/dev/login", cluster.instances[0].base))
        .send()
        .await
        .unwrap();
    let cookie = cookie_header(&start);
    let approved = plain
        .post(format!("{}/authorize", cluster.idp.issuer()))
        .form(&DevIdp::approve_form(&location(&start), &alice()))
        .send()
        .await
        .unwrap();
    let callback = location(&approved);
    let first = plain
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let at_b = callback.replace(&cluster.instances[0].base, &cluster.instances[1].base);
    let replay = plain
        .get(&at_b)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(!sets_session(&replay));
    assert_eq!(error_code(replay).await, "replayed_state");
}

/// Installs a trigger `name` that runs `action` (PL/pgSQL) before the identity link of
/// `subject` is inserted, inside the store's create transaction.
async fn before_identity_insert(pool: &sqlx::PgPool, name: &str, subject: &str, action: &str) {
    let sql = format!(
        "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN \
           IF NEW.subject = '{subject}' THEN {action} END IF; RETURN NEW; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER {name} BEFORE INSERT ON jit_identities \
           FOR EACH ROW EXECUTE FUNCTION {name}();"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_outage_is_503_with_no_session_and_no_half_written_user() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let cluster = Cluster::start(&url, 1).await;
    let instance = &cluster.instances[0];
    // A failure between the user row and its identity link: the transaction rolls back.
    before_identity_insert(
        instance.store.pool(),
        "jit_explode",
        "sub-mallory",
        "RAISE EXCEPTION 'boom';",
    )
    .await;
    let mallory = DevUser::new("sub-mallory", "mallory", "m@example.com", "Mallory", &[]);
    let client = browser();
    let response = cluster.login(&client, &mallory, 0, 0).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!sets_session(&response));
    let users: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jit_users WHERE username = 'mallory'")
            .fetch_one(instance.store.pool())
            .await
            .unwrap();
    assert_eq!(
        users, 0,
        "the user row was rolled back with the failed link"
    );

    // The database goes away entirely.
    instance.store.pool().close().await;
    let response = cluster.login(&browser(), &alice(), 0, 0).await;
    assert_refused(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
}

#[tokio::test]
async fn a_transaction_that_stalls_past_the_store_timeout_is_503_and_commits_nothing() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let cluster =
        Cluster::start_with(&url, 1, |b| b.store_timeout(Duration::from_millis(1500))).await;
    let instance = &cluster.instances[0];
    // The identity insert, inside the create transaction and after the user row, stalls for
    // 3 s: the layer drops the call at 1.5 s, in the middle of the transaction.
    before_identity_insert(
        instance.store.pool(),
        "jit_stall",
        "sub-slow",
        "PERFORM pg_sleep(3);",
    )
    .await;
    let slow = DevUser::new("sub-slow", "slow", "slow@example.com", "Slow", &[]);
    let client = browser();
    let response = cluster.login(&client, &slow, 0, 0).await;
    assert_refused(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;

    // Nothing is committed: not now, and not once the stalled statement has finished.
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jit_users WHERE username = 'slow'")
            .fetch_one(instance.store.pool())
            .await
            .unwrap()
    };
    assert_eq!(count().await, 0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        count().await,
        0,
        "the abandoned transaction was rolled back"
    );

    // The pool recovered its connection: with the stall gone the same person logs in once.
    sqlx::raw_sql("DROP TRIGGER jit_stall ON jit_identities")
        .execute(instance.store.pool())
        .await
        .unwrap();
    let response = cluster.login(&client, &slow, 0, 0).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(sets_session(&response));
    assert_eq!(count().await, 1);
}

/// Rows written before this version (or outside the store) get their canonical forms at
/// connect; two that fold to one name stop it, named, with nothing written.
#[tokio::test]
async fn postgres_existing_rows_are_backfilled_and_duplicates_named() {
    use jit_provision::store::{Identity, Profile, StoreError};
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    store
        .create(
            &Identity::new("corp", "https://idp", "1"),
            &Profile::new("Alice"),
        )
        .await
        .unwrap();
    let exec = |sql: &'static str| {
        let pool = store.pool().clone();
        async move { sqlx::raw_sql(sql).execute(&pool).await.unwrap() }
    };
    exec(
        "UPDATE jit_users SET username_key = NULL, email_key = NULL; \
         INSERT INTO jit_users (username, email, created_at, updated_at) \
         VALUES ('Bob', 'Bob@Example.com', 0, 0)",
    )
    .await;
    let again = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(
        again
            .find_by_username("ＡＬＩＣＥ")
            .await
            .unwrap()
            .unwrap()
            .username,
        "Alice"
    );
    assert_eq!(
        again.find_by_email("bob@example.com").await.unwrap().len(),
        1
    );
    let taken = again
        .create(
            &Identity::new("corp", "https://idp", "2"),
            &Profile::new("BOB"),
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::UsernameTaken(_))),
        "{taken:?}"
    );

    exec(
        "INSERT INTO jit_users (username, created_at, updated_at) VALUES ('Admin', 0, 0); \
         INSERT INTO jit_users (username, created_at, updated_at) VALUES ('ａｄｍｉｎ', 0, 0)",
    )
    .await;
    let failed = PostgresStore::connect(&url).await.unwrap_err();
    let message = format!("{failed:?}");
    assert!(
        message.contains("`Admin`")
            && message.contains("`ａｄｍｉｎ`")
            && message.contains("`admin`"),
        "{message}"
    );
    let unkeyed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jit_users WHERE username_key IS NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(unkeyed, 2, "the failed backfill wrote nothing");
}
