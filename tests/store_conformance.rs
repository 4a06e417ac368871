//! The same contract (`jit_provision::testing::store_contract`, the test kit applications
//! run against their own stores) checked against every store: in memory, sqlx SQLite, and
//! PostgreSQL (with the `postgres` feature and a server, see tests/common/pg.rs).

mod common;

use jit_provision::store::{
    Identity, MemoryStore, Profile, Refusal, RefusalKind, SqliteStore, StoreError, UserStore,
};
use jit_provision::testing::{Capabilities, UsernameMatching, store_contract};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_keeps_the_contract() {
    store_contract(|| async { MemoryStore::new() }, Capabilities::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_keeps_the_contract() {
    store_contract(sqlite, Capabilities::default()).await;
}

/// An application's store that requires an email (a `NOT NULL` column, here a rule of its
/// own refusing creations without one).
fn email_required_store() -> common::SwitchableStore {
    let store = common::SwitchableStore::default();
    store.refuse_create_when(|_, profile: &Profile| {
        profile.email.clone().flatten().is_none().then(|| {
            Refusal::new(
                RefusalKind::Forbidden,
                "email_required",
                "an email is required",
            )
        })
    });
    store
}

/// The capabilities leave out only what such a store cannot do; a store that keeps the
/// whole contract keeps the rest too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_runs_for_a_store_that_requires_emails_and_folds_case_only() {
    let emails = Capabilities::default().email_required(true);
    store_contract(|| async { email_required_store() }, emails.clone()).await;
    let case_only = emails.usernames(UsernameMatching::CaseInsensitive);
    store_contract(|| async { MemoryStore::new() }, case_only.clone()).await;
    store_contract(sqlite, case_only).await;
}

/// Without the capability, the same store fails the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "exactly one create wins")]
async fn a_store_that_requires_emails_fails_the_default_contract() {
    store_contract(|| async { email_required_store() }, Capabilities::default()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_contract() {
    use jit_provision::store::PostgresStore;
    let Some(url) = common::pg::fresh_database().await else {
        return;
    };
    let make = || async {
        let url = common::pg::fresh_database().await.unwrap();
        PostgresStore::connect(&url).await.unwrap()
    };
    store_contract(make, Capabilities::default()).await;
    // Migrating twice (a second instance starting) is a no-op.
    PostgresStore::connect(&url).await.unwrap();
    PostgresStore::connect(&url).await.unwrap();
}

async fn sqlite() -> SqliteStore {
    SqliteStore::connect("sqlite::memory:").await.unwrap()
}

/// A SQLite file of its own for one test, removed with its directory at the end.
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("jit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn url(&self) -> String {
        format!("sqlite://{}/users.db", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn exec(pool: &sqlx::SqlitePool, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap();
}

/// Rows written before this version (or by the application, outside the store) have no
/// canonical forms: connecting fills them in, and they are then unique like any other.
#[tokio::test]
async fn sqlite_existing_rows_get_their_canonical_names_at_connect() {
    let db = TempDb::new("backfill");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    store
        .create(
            &Identity::new("corp", "https://idp", "1"),
            &Profile::new("Alice"),
        )
        .await
        .unwrap();
    exec(
        store.pool(),
        "UPDATE jit_users SET username_key = NULL, email_key = NULL; \
         INSERT INTO jit_users (username, email, created_at, updated_at) \
         VALUES ('Bob', 'Bob@Example.com', 0, 0)",
    )
    .await;
    store.pool().close().await;

    let store = SqliteStore::connect(&db.url()).await.unwrap();
    assert_eq!(
        store
            .find_by_username("ＡＬＩＣＥ")
            .await
            .unwrap()
            .unwrap()
            .username,
        "Alice"
    );
    assert_eq!(
        store.find_by_email("bob@example.com").await.unwrap()[0].username,
        "Bob"
    );
    let taken = store
        .create(
            &Identity::new("corp", "https://idp", "2"),
            &Profile::new("bob"),
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::UsernameTaken(_))),
        "{taken:?}"
    );
    store.pool().close().await;
}

/// Existing data that breaks a rule the migrations add is not silently fixed (either row may
/// be the legitimate one): connecting fails, names the rows, and writes nothing.
#[tokio::test]
async fn sqlite_existing_duplicates_stop_the_migration_with_their_names() {
    let db = TempDb::new("duplicates");
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    exec(
        store.pool(),
        "INSERT INTO jit_users (username, created_at, updated_at) VALUES ('Admin', 0, 0); \
         INSERT INTO jit_users (username, created_at, updated_at) VALUES ('ａｄｍｉｎ', 0, 0)",
    )
    .await;
    store.pool().close().await;
    let failed = SqliteStore::connect(&db.url()).await.unwrap_err();
    let message = format!("{failed:?}");
    assert!(
        message.contains("`Admin`")
            && message.contains("`ａｄｍｉｎ`")
            && message.contains("`admin`"),
        "{message}"
    );

    // Resolved (one renamed), it starts; then a user linked twice at one provider, left by
    // the old check-then-act, stops the one-link-per-provider migration.
    // (The store cannot open it now: a bare pool.)
    let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
    exec(
        &pool,
        "UPDATE jit_users SET username = 'admin2' WHERE username = 'ａｄｍｉｎ'",
    )
    .await;
    pool.close().await;
    let store = SqliteStore::connect(&db.url()).await.unwrap();
    let user = store.find_by_username("admin").await.unwrap().unwrap();
    exec(
        store.pool(),
        &format!(
            "DROP INDEX jit_identities_user_provider; \
             DELETE FROM _jit_provision_migrations WHERE version = 5; \
             INSERT INTO jit_identities (provider, subject, issuer, user_id, created_at) \
             VALUES ('corp', 'a', 'https://idp', {id}, 0), ('corp', 'b', 'https://idp', {id}, 0)",
            id = user.id
        ),
    )
    .await;
    store.pool().close().await;
    let failed = SqliteStore::connect(&db.url()).await.unwrap_err();
    let message = format!("{failed:?}");
    assert!(
        message.contains(&format!("user {} has 2 identities of `corp`", user.id)),
        "{message}"
    );
}
