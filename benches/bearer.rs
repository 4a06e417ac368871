//! `Authorization: Bearer` JWTs through the layer, driven with `oneshot` on a cloned `Router`:
//!
//! * group `bearer`: `first_sight_token` (a token never seen before — distinct `jti` — of an
//!   existing user: signature check against the cached JWKS, claims, provisioning of the
//!   existing user with unchanged claims, user loaded) vs `repeated_token` (the same token
//!   again: answered from the verified-token cache), with `bare_router` (same request, no
//!   layer) for reference. First-sight tokens are signed before timing, never inside it.
//! * group `bearer_thundering_herd`: 1000 concurrent requests, each with its own token of ONE
//!   new subject, on a fresh layer (keys already fetched): exactly one store create.
//!
//! `cargo bench --bench bearer -- --warm-up-time 1 --measurement-time 3`
//! (the `bearer` group sets its own times: each first-sight iteration consumes a token that
//! costs ~1 ms to sign, so its measurement is kept to 2 s).

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use http::{HeaderValue, Request, StatusCode, header};
use jit_provision::config::BearerConfig;
use jit_provision::dev_idp::DevIdp;
use jit_provision::store::MemoryStore;
use jit_provision::{CurrentUser, JitLayer};
use serde_json::json;
use tower::ServiceExt;

const AUDIENCE: &str = "api";

fn jit_router(layer: JitLayer) -> Router {
    Router::new()
        .route(
            "/me",
            get(|user: CurrentUser| async move { user.username.clone() }),
        )
        .layer(layer)
}

fn layer(idp: &DevIdp, store: MemoryStore) -> JitLayer {
    support::builder(
        support::provider(idp.issuer()).bearer(BearerConfig::new([AUDIENCE])),
        100_000,
    )
    .store(store)
    .build()
    .expect("a layer")
}

/// A fresh access token (unique `jti`) of subject `svc-{n}`.
fn token(idp: &DevIdp, n: u64, jti: u64) -> HeaderValue {
    let now = support::now();
    let jwt = idp.sign_access_token(json!({
        "iss": idp.issuer(),
        "sub": format!("svc-{n}"),
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "jti": format!("jti-{jti}"),
        "preferred_username": format!("svc{n}"),
        "email": format!("svc{n}@example.com"),
        "name": format!("Service {n}"),
        "groups": ["api"],
        "scope": "reports:read profile",
    }));
    HeaderValue::from_str(&format!("Bearer {jwt}")).expect("a header value")
}

/// `count` fresh tokens of subject `svc-{n}`, signed on every core.
fn tokens(idp: &DevIdp, n: u64, count: usize, jti: &AtomicU64) -> Vec<HeaderValue> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let share = count / threads + usize::from(t < count % threads);
                s.spawn(move || {
                    (0..share)
                        .map(|_| token(idp, n, jti.fetch_add(1, Ordering::Relaxed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("no panic"))
            .collect()
    })
}

async fn request(app: &Router, authorization: HeaderValue) -> StatusCode {
    let request = Request::get("/me")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    black_box(response);
    status
}

fn first_sight_vs_repeated(c: &mut Criterion) {
    let rt = support::current_thread();
    let jti = AtomicU64::new(0);
    let store = MemoryStore::new();
    let (idp, app) = rt.block_on(async {
        let idp = support::start_idp().await;
        let app = jit_router(layer(&idp, store.clone()));
        (idp, app)
    });
    let repeated = token(&idp, 1, jti.fetch_add(1, Ordering::Relaxed));
    // The first request fetches the keys and creates the user; from then on the user exists.
    assert_eq!(rt.block_on(request(&app, repeated.clone())), StatusCode::OK);
    assert_eq!(store.counters().creates(), 1);
    let sign_started = Instant::now();
    let mut pool = tokens(&idp, 1, 256, &jti);
    eprintln!(
        "bearer: signing a token costs {:.0} µs (2 threads)",
        sign_started.elapsed().as_secs_f64() * 1e6 * 2.0 / 256.0
    );
    let bare = Router::new().route("/me", get(|| async { "hello" }));

    let mut group = c.benchmark_group("bearer");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("bare_router", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(request(&bare, repeated.clone()).await, StatusCode::OK);
        })
    });
    group.bench_function("repeated_token", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(request(&app, repeated.clone()).await, StatusCode::OK);
        })
    });
    group.bench_function("first_sight_token", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let iters = iters as usize;
            if pool.len() < iters {
                let missing = iters - pool.len();
                pool.extend(tokens(&idp, 1, missing, &jti));
            }
            let batch: Vec<HeaderValue> = pool.drain(..iters).collect();
            let app = &app;
            async move {
                let started = Instant::now();
                for authorization in batch {
                    assert_eq!(request(app, authorization).await, StatusCode::OK);
                }
                started.elapsed()
            }
        })
    });
    group.finish();

    // Bare router and repeated token, interleaved (immune to the machine's load drift).
    let batch = |app: &Router| {
        let started = Instant::now();
        rt.block_on(async {
            for _ in 0..2000 {
                assert_eq!(request(app, repeated.clone()).await, StatusCode::OK);
            }
        });
        started.elapsed().as_nanos() as f64 / 2000.0
    };
    let (mut a, mut b) = (|| batch(&bare), || batch(&app));
    let m = support::Interleaved::run(40, &mut [("bare_router", &mut a), ("repeated", &mut b)]);
    m.print("bearer");
    let (q1, median, q3) = m.per_round(|t| t[1] - t[0]);
    eprintln!(
        "bearer: repeated token {:.0} ns per request; layer overhead per round: median \
         {median:.0} ns (quartiles {q1:.0}–{q3:.0}); target ≤ 2000 ns per request",
        m.median(1)
    );
    eprintln!(
        "bearer: {} user(s) in the store, {} creates, {} updates",
        store.user_count(),
        store.counters().creates(),
        store.counters().updates()
    );
    assert_eq!(
        store.counters().creates(),
        1,
        "first sights created no user"
    );
    idp.shutdown();
}

const HERD: usize = 1000;

fn bearer_thundering_herd(c: &mut Criterion) {
    let rt = support::multi_thread();
    let jti = AtomicU64::new(0);
    let idp = rt.block_on(support::start_idp());
    let herd_tokens = Arc::new(tokens(&idp, 2, HERD, &jti));
    let warm = token(&idp, 1, jti.fetch_add(1, Ordering::Relaxed));
    let mut group = c.benchmark_group("bearer_thundering_herd");
    group.sample_size(10);
    let mut reported = false;
    group.bench_function("1000_tokens_one_new_subject", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let report = !reported;
            reported = true;
            let (idp, warm, herd_tokens) = (&idp, warm.clone(), herd_tokens.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store = MemoryStore::new();
                    let app = jit_router(layer(idp, store.clone()));
                    // Keys fetched and one (other) user created before the herd.
                    assert_eq!(request(&app, warm.clone()).await, StatusCode::OK);
                    let started = Instant::now();
                    let calls = herd_tokens.iter().map(|t| {
                        let (app, t) = (app.clone(), t.clone());
                        tokio::spawn(async move { request(&app, t).await })
                    });
                    let statuses = join_all(calls).await;
                    let elapsed = started.elapsed();
                    for status in statuses {
                        assert_eq!(status.expect("no panic"), StatusCode::OK);
                    }
                    assert_eq!(
                        store.counters().creates(),
                        2,
                        "exactly one create for the herd's subject"
                    );
                    if report {
                        eprintln!(
                            "bearer_thundering_herd: {HERD} requests answered in {elapsed:?}; \
                             store creates for the herd's subject = {}",
                            store.counters().creates() - 1
                        );
                    }
                    total += elapsed;
                }
                total
            }
        })
    });
    group.finish();
    idp.shutdown();
}

criterion_group!(benches, first_sight_vs_repeated, bearer_thundering_herd);
criterion_main!(benches);
