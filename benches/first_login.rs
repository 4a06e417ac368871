//! First-login provisioning and the thundering herd.
//!
//! * group `first_login`: `JitLayer::provision` of a fresh identity (never seen: the store
//!   lookup misses, the user and its identity link are created, both caches filled), one at a
//!   time and 16 at a time on a 2-worker runtime, into `SqliteStore` on a temporary file (WAL,
//!   the store's own settings) and `MemoryStore` for reference. Throughput in logins/second.
//!   `sqlite_16_concurrent_serialized` is the same SQLite store behind a bench-side wrapper
//!   that takes an in-process async mutex around `create` (see BENCHMARKS.md: it shows what
//!   serializing writers before SQLite's busy handler is worth).
//!   With `--features postgres` and `JIT_BENCH_PG_URL` (a server URL; a fresh database is
//!   created and dropped), the same for `PostgresStore`.
//! * group `thundering_herd`: 1000 concurrent first logins of ONE identity through
//!   `JitLayer::provision` on a fresh layer; asserts exactly one store create (MemoryStore
//!   counters; SQL stores: exactly one new row) and times until all 1000 are answered.
//!
//! `cargo bench --bench first_login -- --warm-up-time 1 --measurement-time 3`

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use jit_provision::store::{MemoryStore, SqliteStore, UserStore};
use jit_provision::{JitLayer, Outcome};
use tokio::runtime::Runtime;

/// Issuer of the identities (no IdP is contacted: `provision` takes validated identities).
const ISSUER: &str = "https://idp.example.com";
const HERD: usize = 1000;
const BATCH: u64 = 16;

/// A SQLite file in the temporary directory, removed (with its WAL files) when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("jit-bench-{}-{name}.db", std::process::id()));
        let db = Self(path);
        db.remove();
        db
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn layer(store: impl UserStore) -> JitLayer {
    support::builder(support::provider(ISSUER), 1_000_000)
        .store(store)
        .build()
        .expect("a layer")
}

/// A first login of the never-seen user `i`.
async fn first_login(layer: &JitLayer, i: u64) {
    let (identity, claims) = support::identity_and_claims(ISSUER, &support::user(i));
    let (user, outcome) = layer
        .provision(support::PROVIDER, &identity, &claims)
        .await
        .expect("provisioned");
    assert_eq!(outcome, Outcome::Created);
    black_box(user);
}

/// `{name}_sequential` and `{name}_16_concurrent` on `layer`; identities from `next`.
fn first_logins_on(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    layer: &JitLayer,
    next: &AtomicU64,
    concurrent: bool,
) {
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}_sequential"), |b| {
        b.to_async(rt)
            .iter(|| first_login(layer, next.fetch_add(1, Ordering::Relaxed)))
    });
    if !concurrent {
        return;
    }
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(format!("{name}_16_concurrent"), |b| {
        b.to_async(rt).iter(|| async {
            let tasks = (0..BATCH).map(|_| {
                let layer = layer.clone();
                let i = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move { first_login(&layer, i).await })
            });
            for done in join_all(tasks).await {
                done.expect("no panic");
            }
        })
    });
}

fn first_logins(c: &mut Criterion) {
    let rt = support::multi_thread();
    // Fresh identities across every bench of this group.
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("first_login");

    let db = TempDb::new("first-login");
    let sqlite = rt
        .block_on(SqliteStore::connect(&db.url()))
        .expect("SQLite");
    first_logins_on(
        &mut group,
        &rt,
        "sqlite",
        &layer(sqlite.clone()),
        &next,
        true,
    );
    let rows = rt.block_on(sqlite.user_count()).expect("a count");
    eprintln!("first_login: {rows} users written to SQLite");
    rt.block_on(sqlite.pool().close());

    first_logins_on(
        &mut group,
        &rt,
        "memory",
        &layer(MemoryStore::new()),
        &next,
        false,
    );

    #[cfg(feature = "postgres")]
    if let Some(pg) = postgres::Database::create(&rt) {
        let store = pg.store(&rt);
        first_logins_on(
            &mut group,
            &rt,
            "postgres",
            &layer(store.clone()),
            &next,
            true,
        );
        let rows = rt.block_on(store.user_count()).expect("a count");
        eprintln!("first_login: {rows} users written to PostgreSQL");
        rt.block_on(store.pool().close());
        pg.drop_database(&rt);
    }
    group.finish();
}

/// 1000 concurrent first logins of one identity on a fresh layer; returns the time until
/// every one is answered.
async fn herd(layer: JitLayer, subject: u64) -> Duration {
    let (identity, claims) = support::identity_and_claims(ISSUER, &support::user(subject));
    let (identity, claims) = (Arc::new(identity), Arc::new(claims));
    let started = Instant::now();
    let logins = (0..HERD).map(|_| {
        let (layer, identity, claims) = (layer.clone(), identity.clone(), claims.clone());
        tokio::spawn(async move {
            layer
                .provision(support::PROVIDER, &identity, &claims)
                .await
                .map(|(user, outcome)| (user.id, outcome))
        })
    });
    let answers = join_all(logins).await;
    let elapsed = started.elapsed();
    let mut created = 0;
    let mut ids = BTreeSet::new();
    for answer in answers {
        let (id, outcome) = answer.expect("no panic").expect("provisioned");
        ids.insert(id);
        created += usize::from(outcome == Outcome::Created);
    }
    assert_eq!(created, 1, "exactly one login reports Created");
    assert_eq!(ids.len(), 1, "every login got the same user");
    elapsed
}

type Count<'a> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = i64> + 'a>> + 'a>;

/// `thundering_herd/{name}_1000_same_identity` on fresh layers over `store`, whose user rows
/// `count` counts: each iteration must add exactly one.
fn herd_on<S: UserStore + Clone>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    store: &S,
    count: Count<'_>,
) {
    let subject = AtomicU64::new(0);
    let mut reported = false;
    group.bench_function(format!("{name}_1000_same_identity"), |b| {
        b.to_async(rt).iter_custom(|iters| {
            let report = !reported;
            reported = true;
            let (store, subject, count) = (store, &subject, &count);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let before = count().await;
                    let i = subject.fetch_add(1, Ordering::Relaxed);
                    let elapsed = herd(layer(store.clone()), i).await;
                    let written = count().await - before;
                    assert_eq!(written, 1, "{name}: exactly one user written");
                    if report {
                        eprintln!(
                            "thundering_herd/{name}: {HERD} logins answered in {elapsed:?}; \
                             users written = {written}"
                        );
                    }
                    total += elapsed;
                }
                total
            }
        })
    });
}

fn thundering_herd(c: &mut Criterion) {
    let rt = support::multi_thread();
    let mut group = c.benchmark_group("thundering_herd");
    group.sample_size(20);

    let memory = MemoryStore::new();
    let counted = memory.clone();
    herd_on(
        &mut group,
        &rt,
        "memory",
        &memory,
        Box::new(move || {
            let store = counted.clone();
            Box::pin(async move { store.counters().creates() as i64 })
        }),
    );
    eprintln!(
        "thundering_herd/memory: store creates {} for {} herds, store reads {}",
        memory.counters().creates(),
        memory.user_count(),
        memory.counters().reads()
    );

    let db = TempDb::new("herd");
    let sqlite = rt
        .block_on(SqliteStore::connect(&db.url()))
        .expect("SQLite");
    let counted = sqlite.clone();
    herd_on(
        &mut group,
        &rt,
        "sqlite",
        &sqlite,
        Box::new(move || {
            let store = counted.clone();
            Box::pin(async move { store.user_count().await.expect("a count") })
        }),
    );
    rt.block_on(sqlite.pool().close());

    #[cfg(feature = "postgres")]
    if let Some(pg) = postgres::Database::create(&rt) {
        let store = pg.store(&rt);
        let counted = store.clone();
        herd_on(
            &mut group,
            &rt,
            "postgres",
            &store,
            Box::new(move || {
                let store = counted.clone();
                Box::pin(async move { store.user_count().await.expect("a count") })
            }),
        );
        rt.block_on(store.pool().close());
        pg.drop_database(&rt);
    }
    group.finish();
}

#[cfg(feature = "postgres")]
mod postgres {
    use jit_provision::store::PostgresStore;
    use sqlx::Connection;
    use tokio::runtime::Runtime;

    /// A fresh database on the server of `JIT_BENCH_PG_URL`, dropped at the end.
    pub struct Database {
        admin: String,
        name: String,
        url: String,
    }

    impl Database {
        pub fn create(rt: &Runtime) -> Option<Self> {
            let Ok(admin) = std::env::var("JIT_BENCH_PG_URL") else {
                eprintln!("PostgreSQL benches skipped: JIT_BENCH_PG_URL is not set");
                return None;
            };
            let name = format!("jit_bench_{}_{}", std::process::id(), support_nanos());
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connecting to JIT_BENCH_PG_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("creating a bench database");
            });
            let mut url = url::Url::parse(&admin).expect("a URL");
            url.set_path(&name);
            Some(Self {
                admin,
                name,
                url: url.to_string(),
            })
        }

        pub fn store(&self, rt: &Runtime) -> PostgresStore {
            rt.block_on(PostgresStore::connect(&self.url))
                .expect("PostgreSQL")
        }

        pub fn drop_database(self, rt: &Runtime) {
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&self.admin)
                    .await
                    .expect("connecting to JIT_BENCH_PG_URL");
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )))
                .execute(&mut conn)
                .await;
            });
        }
    }

    fn support_nanos() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }
}

criterion_group!(benches, first_logins, thundering_herd);
criterion_main!(benches);
