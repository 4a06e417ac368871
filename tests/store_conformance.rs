//! The same contract checked against every store: the in-memory one and sqlx SQLite
//! (PostgreSQL runs it in tests/postgres.rs).

mod common;

use common::store_contract::{concurrent_creates, contract};
use jit_provision::store::{Identity, MemoryStore, Profile, SqliteStore, UserStore};

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
