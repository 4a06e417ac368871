//! Time per authenticated request, driven in-process with `oneshot` on a cloned `Router`:
//!
//! * group `authenticated_request`: (a) a bare router, (b) the same router behind `JitLayer`
//!   with a valid session cookie from a real login (user cache hit), (c) the peer doing the
//!   same job, `axum-login` over a `tower-sessions` memory store with a logged-in session;
//! * group `cached_users`: request (b) with 10, 10 000 and 1 000 000 users provisioned and
//!   cached, rotating over 256 sessions (real logins) spread over the population.
//!
//! `cargo bench --bench authenticated_request -- --warm-up-time 1 --measurement-time 3`

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, StatusCode, header};
use jit_provision::CurrentUser;
use jit_provision::dev_idp::DevIdp;
use jit_provision::store::MemoryStore;
use tower::ServiceExt;
use tower_sessions::SessionManagerLayer;

/// One request to `/me` carrying `cookie`; asserts the handler saw a user (200).
async fn request(app: &Router, cookie: &HeaderValue) {
    let request = Request::get("/me")
        .header(header::COOKIE, cookie.clone())
        .body(Body::empty())
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    black_box(response);
}

fn jit_router(layer: jit_provision::JitLayer) -> Router {
    Router::new()
        .route(
            "/me",
            get(|user: CurrentUser| async move { user.username.clone() }),
        )
        .layer(layer)
}

// ---- the peer: axum-login 0.18 + tower-sessions 0.14 (memory store) ----

#[derive(Clone, Debug)]
struct PeerUser {
    id: i64,
    username: String,
    auth_hash: Vec<u8>,
}

impl AuthUser for PeerUser {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

/// Users held in memory: the peer's equivalent of a user-cache hit.
#[derive(Clone, Default)]
struct PeerBackend {
    users: Arc<HashMap<i64, PeerUser>>,
}

impl AuthnBackend for PeerBackend {
    type User = PeerUser;
    type Credentials = i64;
    type Error = Infallible;

    async fn authenticate(&self, id: i64) -> Result<Option<PeerUser>, Infallible> {
        Ok(self.users.get(&id).cloned())
    }

    async fn get_user(&self, id: &i64) -> Result<Option<PeerUser>, Infallible> {
        Ok(self.users.get(id).cloned())
    }
}

async fn peer_me(auth: AuthSession<PeerBackend>) -> Result<String, StatusCode> {
    auth.user
        .map(|u| u.username)
        .ok_or(StatusCode::UNAUTHORIZED)
}

async fn peer_login(mut auth: AuthSession<PeerBackend>) -> StatusCode {
    let Ok(Some(user)) = auth.authenticate(1).await else {
        return StatusCode::UNAUTHORIZED;
    };
    match auth.login(&user).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The peer's router and the cookie of a logged-in session.
async fn peer() -> (Router, HeaderValue) {
    let user = PeerUser {
        id: 1,
        username: "user1".into(),
        auth_hash: b"a-password-hash-stand-in".to_vec(),
    };
    let backend = PeerBackend {
        users: Arc::new(HashMap::from([(1, user)])),
    };
    let sessions =
        SessionManagerLayer::new(tower_sessions::MemoryStore::default()).with_secure(false);
    let app = Router::new()
        .route("/me", get(peer_me))
        .route("/login", post(peer_login))
        .layer(AuthManagerLayerBuilder::new(backend, sessions).build());
    let response = app
        .clone()
        .oneshot(
            Request::post("/login")
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "peer login");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ASCII")
        .split(';')
        .next()
        .expect("a pair")
        .to_owned();
    (app, HeaderValue::from_str(&cookie).expect("a header value"))
}

fn side_by_side(c: &mut Criterion) {
    let rt = support::current_thread();
    let (idp, jit, jit_cookie, peer, peer_cookie) = rt.block_on(async {
        let idp = support::start_idp().await;
        let layer = support::builder(support::provider(idp.issuer()), 100_000)
            .store(MemoryStore::new())
            .build()
            .expect("a layer");
        let jit = jit_router(layer);
        let cookie = support::login(&jit, &idp, &support::user(1)).await;
        let (peer, peer_cookie) = peer().await;
        let jit_cookie = HeaderValue::from_str(&cookie).expect("a header value");
        // Warm both paths once (user cache filled, sessions loaded).
        request(&jit, &jit_cookie).await;
        request(&peer, &peer_cookie).await;
        (idp, jit, jit_cookie, peer, peer_cookie)
    });
    // The bare router gets a cookie header too, so every variant builds the same request.
    let bare = Router::new().route("/me", get(|| async { "hello" }));

    let mut group = c.benchmark_group("authenticated_request");
    group.bench_function("a_bare_router", |b| {
        b.to_async(&rt).iter(|| request(&bare, &jit_cookie))
    });
    group.bench_function("b_jit_session_cache_hit", |b| {
        b.to_async(&rt).iter(|| request(&jit, &jit_cookie))
    });
    group.bench_function("c_axum_login_tower_sessions", |b| {
        b.to_async(&rt).iter(|| request(&peer, &peer_cookie))
    });
    group.finish();

    // The same three, interleaved: the ratio of a round is immune to the machine's load drift.
    let (mut a, mut b, mut c) = (
        || batch(&rt, &bare, std::slice::from_ref(&jit_cookie)),
        || batch(&rt, &jit, std::slice::from_ref(&jit_cookie)),
        || batch(&rt, &peer, std::slice::from_ref(&peer_cookie)),
    );
    let m = support::Interleaved::run(
        ROUNDS,
        &mut [
            ("a_bare", &mut a),
            ("b_jit", &mut b),
            ("c_axum_login", &mut c),
        ],
    );
    m.print("authenticated_request");
    let (q1, median, q3) = m.per_round(|t| (t[1] - t[0]) / (t[2] - t[0]));
    eprintln!(
        "authenticated_request: overhead ours/peer, per round: median {median:.2} \
         (quartiles {q1:.2}–{q3:.2}); target ≤ 0.50"
    );
    idp.shutdown();
}

/// Rounds and requests per batch of the interleaved comparisons.
const ROUNDS: usize = 40;
const BATCH: usize = 2000;

/// Time per request of a batch of [`BATCH`] requests, rotating over `cookies`.
fn batch(rt: &tokio::runtime::Runtime, app: &Router, cookies: &[HeaderValue]) -> f64 {
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..BATCH {
            request(app, &cookies[i % cookies.len()]).await;
        }
    });
    started.elapsed().as_nanos() as f64 / BATCH as f64
}

/// Sessions rotated over in `cached_users`: real logins of users spread over the population.
const SESSIONS: u64 = 256;

/// A layer holding `population` provisioned and cached users, and session cookies (real
/// logins) of up to [`SESSIONS`] of them, spread over the population.
async fn populate(idp: &DevIdp, population: u64) -> (Router, Vec<HeaderValue>) {
    let store = MemoryStore::new();
    // Room for everyone; the default capacity (100 000) would evict at 1 000 000.
    let layer = support::builder(
        support::provider(idp.issuer()),
        (population + SESSIONS).max(100_000),
    )
    .store(store.clone())
    .build()
    .expect("a layer");
    let started = Instant::now();
    // JitLayer::provision is exactly what a login does after the ID token checks:
    // find-or-create in the store, and the user enters the caches.
    for i in 0..population {
        let (identity, claims) = support::identity_and_claims(idp.issuer(), &support::user(i));
        layer
            .provision(support::PROVIDER, &identity, &claims)
            .await
            .expect("provisioned");
    }
    let provisioned = started.elapsed();
    let app = jit_router(layer.clone());
    let mut cookies = Vec::new();
    let sessions = SESSIONS.min(population);
    for k in 0..sessions {
        let cookie = support::login(&app, idp, &support::user(k * population / sessions)).await;
        cookies.push(HeaderValue::from_str(&cookie).expect("a header value"));
    }
    assert_eq!(
        store.user_count() as u64,
        population,
        "logins created no user"
    );
    for cookie in &cookies {
        request(&app, cookie).await;
    }
    eprintln!(
        "cached_users/{population}: provisioned in {:.1} s ({:.1} µs/user), {} sessions",
        provisioned.as_secs_f64(),
        provisioned.as_secs_f64() * 1e6 / population as f64,
        cookies.len()
    );
    (app, cookies)
}

fn cached_users(c: &mut Criterion) {
    let rt = support::current_thread();
    let idp = rt.block_on(support::start_idp());
    let mut group = c.benchmark_group("cached_users");
    let populations = [10u64, 10_000, 1_000_000];
    // Built on first use, so that a filter skipping a size skips its set-up too; kept for the
    // interleaved comparison at the end.
    let mut states: Vec<Option<(Router, Vec<HeaderValue>)>> = vec![None, None, None];
    for (population, state) in populations.iter().zip(states.iter_mut()) {
        let mut next = 0usize;
        group.bench_with_input(
            BenchmarkId::from_parameter(population),
            population,
            |b, &population| {
                let (app, cookies) =
                    state.get_or_insert_with(|| rt.block_on(populate(&idp, population)));
                b.to_async(&rt).iter(|| {
                    next = (next + 1) % cookies.len();
                    request(app, &cookies[next])
                })
            },
        );
    }
    group.finish();
    if let [Some(small), Some(medium), Some(large)] = &states[..] {
        let (mut a, mut b, mut c) = (
            || batch(&rt, &small.0, &small.1),
            || batch(&rt, &medium.0, &medium.1),
            || batch(&rt, &large.0, &large.1),
        );
        let m = support::Interleaved::run(
            ROUNDS,
            &mut [("10", &mut a), ("10000", &mut b), ("1000000", &mut c)],
        );
        m.print("cached_users");
        let (q1, median, q3) = m.per_round(|t| t[2] / t[0]);
        eprintln!(
            "cached_users: 1 000 000 users / 10 users, per round: median {median:.2} \
             (quartiles {q1:.2}–{q3:.2})"
        );
    }
    drop(states);
    idp.shutdown();
}

criterion_group!(benches, side_by_side, cached_users);
criterion_main!(benches);
