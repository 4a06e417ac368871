//! The same contract checked against every store: the in-memory one and sqlx SQLite
//! (PostgreSQL runs it in tests/postgres.rs).

mod common;

use common::store_contract::{
    canonical_names, concurrent_creates, concurrent_links, contract, login_updates, role_provenance,
};
use jit_provision::store::{Identity, MemoryStore, Profile, SqliteStore, StoreError, UserStore};

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(MemoryStore::new()).await;
    concurrent_creates(MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    contract(SqliteStore::connect("sqlite::memory:").await.unwrap()).await;
}

async fn sqlite() -> SqliteStore {
    SqliteStore::connect("sqlite::memory:").await.unwrap()
}

#[tokio::test]
async fn memory_login_update_keeps_a_concurrent_local_grant_and_drops_when_stale() {
    login_updates(MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_login_update_keeps_a_concurrent_local_grant_and_drops_when_stale() {
    login_updates(sqlite().await).await;
}

#[tokio::test]
async fn memory_roles_are_kept_apart_from_groups_with_provenance() {
    role_provenance(MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_roles_are_kept_apart_from_groups_with_provenance() {
    role_provenance(sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_two_concurrent_links_at_one_provider_one_wins_one_conflicts() {
    concurrent_links(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_concurrent_links_at_one_provider_one_wins_one_conflicts() {
    concurrent_links(sqlite().await).await;
}

#[tokio::test]
async fn memory_usernames_and_emails_are_unique_and_found_in_canonical_form() {
    canonical_names(MemoryStore::new()).await;
}

#[tokio::test]
async fn sqlite_usernames_and_emails_are_unique_and_found_in_canonical_form() {
    canonical_names(sqlite().await).await;
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
