//! `SessionStore::update_tokens`, the lock a token refresh runs under: on memory, on two
//! SQLite pools sharing one file, on two PostgreSQL pools sharing one database, an update
//! that starts while another holds the lock runs after it, and sees what it wrote.
//! (The refresh itself, against a real provider: tests/interop_oidc_provider.rs.)

#[cfg(feature = "postgres")]
#[path = "common/pg.rs"]
mod pg;

use std::path::PathBuf;
use std::time::Duration;

use jit_provision::session::{
    MemorySessionStore, SealedTokens, SessionRecord, SessionStore, TokensUpdate,
};
use jit_provision::store::SqliteStore;
use tokio::sync::oneshot;

/// An update that writes `value`, after telling `inside` it holds the lock and waiting a
/// moment (long enough for a rival to try to get in), reporting the tokens it found.
fn holding<'a>(
    value: &'static str,
    inside: oneshot::Sender<()>,
    found: oneshot::Sender<Option<String>>,
) -> TokensUpdate<'a> {
    Box::new(move |record| {
        Box::pin(async move {
            let _ = inside.send(());
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = found.send(record.tokens.map(|t| t.as_str().to_owned()));
            Some(SealedTokens::from_stored(value))
        })
    })
}

/// `a` and `b` are two handles on one store (two pools of one database).
async fn contract<S: SessionStore>(a: S, b: S) {
    let now = 1_000;
    let record = SessionRecord::new("s1", "PRIMARY", "7", "corp", "sub", now, now + 3600);
    assert!(a.create_session(&record).await.unwrap());

    // No record: nothing runs.
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let none = a
        .update_tokens(
            "nobody",
            Box::new(move |_| {
                Box::pin(async move {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    None
                })
            }),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));

    // The first holds the lock; the second, started meanwhile on the other handle, waits
    // and reads what the first wrote.
    let (inside, entered) = oneshot::channel();
    let (first_found, first_saw) = oneshot::channel();
    let first = a.update_tokens("s1", holding("first", inside, first_found));
    let second = async {
        entered.await.unwrap();
        let (inside, _) = oneshot::channel();
        let (found, saw) = oneshot::channel();
        let after = b
            .update_tokens("s1", holding("second", inside, found))
            .await
            .unwrap();
        (after, saw.await.unwrap())
    };
    let (after_first, (after_second, second_saw)) = tokio::join!(first, second);
    assert_eq!(first_saw.await.unwrap(), None);
    assert_eq!(second_saw.as_deref(), Some("first"), "the second ran after");
    assert_eq!(
        after_first.unwrap().unwrap().tokens.unwrap().as_str(),
        "first"
    );
    assert_eq!(
        after_second.unwrap().tokens.unwrap().as_str(),
        "second",
        "the record as written"
    );

    // `None` leaves the tokens; the rest of the record is as stored.
    let kept = b
        .update_tokens("s1", Box::new(|_| Box::pin(async { None })))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.tokens.unwrap().as_str(), "second");
    assert_eq!((kept.user_id.as_str(), kept.expires_at), ("7", now + 3600));
    let stored = a.get_session("s1").await.unwrap().unwrap();
    assert_eq!(stored.tokens.unwrap().as_str(), "second");
}

#[tokio::test]
async fn memory_token_updates_take_turns() {
    let store = MemorySessionStore::new();
    contract(store.clone(), store).await;
}

/// A SQLite file of its own under cargo's target tmp dir, removed when dropped.
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

#[tokio::test]
async fn sqlite_token_updates_take_turns_across_pools() {
    let db = TempDb(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("session-tokens-{}.db", std::process::id())),
    );
    let url = format!("sqlite://{}", db.0.display());
    let a = SqliteStore::connect(&url).await.unwrap();
    let b = SqliteStore::connect(&url).await.unwrap();
    contract(a, b).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_token_updates_take_turns_across_pools() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let a = jit_provision::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    let b = jit_provision::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    contract(a, b).await;
}
