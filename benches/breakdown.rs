//! The steps of the two cache-hit paths, one by one, with the calls `src/` makes, to explain
//! the figures of `authenticated_request` (session cookie) and `bearer` (repeated token) and
//! to price the fixes proposed in BENCHMARKS.md:
//!
//! * group `session_hit_steps`: opening the session cookie as `CookieCodec::open` does (a
//!   `CookieJar`, `PrivateJar::get`, which derives the AES key schedule on every call) vs
//!   the same AES-256-GCM check with a cipher built once; parsing `SessionData` with
//!   serde_json; the user cache lookup as `load_user` does it (`try_get_with`) vs `get`; the
//!   revoked-session lookup; and a cache of opened sessions keyed by the sealed cookie value
//!   (a proposed fix: a hit replaces base64, AES-GCM and JSON).
//! * group `bearer_hit_steps`: SHA-256 of a bearer token of the size the `bearer` bench
//!   sends, the token-cache lookup, and a keyed SipHash of the same bytes for comparison.
//!
//! `cargo bench --bench breakdown -- --warm-up-time 1 --measurement-time 3`

use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use cookie::{Cookie, CookieJar, Key};
use criterion::{Criterion, criterion_group, criterion_main};
use jit_provision::session::SessionData;
use jit_provision::store::{User, UserId};
use sha2::{Digest, Sha256};

const COOKIE: &str = "jit_session";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `CookieCodec::open` of src/session/cookies.rs, call for call.
fn open_like_src(key: &Key, name: &str, sealed: &str) -> Option<String> {
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::new(name.to_owned(), sealed.to_owned()));
    jar.private(key).get(name).map(|c| c.value().to_owned())
}

/// The same check (the cookie crate's format: base64 of nonce ‖ ciphertext ‖ tag, the cookie
/// name as associated data) with a cipher whose key schedule was computed once.
fn open_with_cipher(cipher: &Aes256Gcm, name: &str, sealed: &str) -> Option<String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    if data.len() <= 12 {
        return None;
    }
    let (nonce, body) = data.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let plain = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: body,
                aad: name.as_bytes(),
            },
        )
        .ok()?;
    String::from_utf8(plain).ok()
}

fn session_steps(c: &mut Criterion) {
    let rt = runtime();
    let key = Key::from(&[7u8; 64]);
    let session = SessionData {
        user_id: UserId(42),
        domain: "PRIMARY".into(),
        provider: "dev".into(),
        subject: "sub-42".into(),
        session_id: "Q2hhbmdlIG1lIHBsZWFzZSBub3c".into(),
        issued_at: 1_700_000_000,
        expires_at: 4_102_444_800,
    };
    let json = serde_json::to_string(&session).expect("serializable");
    let mut jar = CookieJar::new();
    jar.private_mut(&key).add(Cookie::new(COOKIE, json.clone()));
    let sealed = jar.get(COOKIE).expect("sealed").value().to_owned();
    let cipher = Aes256Gcm::new_from_slice(key.encryption()).expect("a 32-byte key");
    assert_eq!(
        open_like_src(&key, COOKIE, &sealed).as_deref(),
        Some(&*json)
    );
    assert_eq!(
        open_with_cipher(&cipher, COOKIE, &sealed).as_deref(),
        Some(&*json)
    );

    let user = Arc::new(User {
        id: UserId(42),
        username: "user42".into(),
        email: Some("user42@example.com".into()),
        display_name: Some("User 42".into()),
        groups: ["staff".to_owned()].into(),
        attributes: Default::default(),
        idp_groups: Default::default(),
        idp_attributes: Default::default(),
        locked: false,
        created_at: 0,
        updated_at: 0,
    });
    // The caches as src/cache.rs and src/layer.rs build them.
    let by_id: moka::future::Cache<UserId, Arc<User>> = moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(60))
        .build();
    let revoked: moka::future::Cache<String, ()> = moka::future::Cache::builder()
        .max_capacity(1_000_000)
        .time_to_live(Duration::from_secs(8 * 3600))
        .build();
    rt.block_on(by_id.insert(UserId(42), user));
    // The fix proposed in BENCHMARKS.md: opened sessions remembered by their sealed value.
    let opened: moka::future::Cache<String, Arc<SessionData>> = moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(60))
        .build();
    rt.block_on(opened.insert(sealed.clone(), Arc::new(session.clone())));

    let mut group = c.benchmark_group("session_hit_steps");
    group.bench_function("cookie_open_as_in_src", |b| {
        b.iter(|| open_like_src(&key, COOKIE, black_box(&sealed)))
    });
    group.bench_function("cookie_open_prebuilt_cipher", |b| {
        b.iter(|| open_with_cipher(&cipher, COOKIE, black_box(&sealed)))
    });
    group.bench_function("session_data_serde_json", |b| {
        b.iter(|| serde_json::from_str::<SessionData>(black_box(&json)).expect("valid"))
    });
    group.bench_function("user_cache_try_get_with_hit", |b| {
        b.to_async(&rt).iter(|| async {
            by_id
                .try_get_with(black_box(UserId(42)), async { Err::<Arc<User>, ()>(()) })
                .await
                .expect("a hit")
        })
    });
    group.bench_function("user_cache_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { by_id.get(&black_box(UserId(42))).await.expect("a hit") })
    });
    group.bench_function("opened_session_cache_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { opened.get(black_box(sealed.as_str())).await.expect("a hit") })
    });
    group.bench_function("revoked_sessions_contains_key", |b| {
        b.iter(|| revoked.contains_key(black_box(&session.session_id)))
    });
    group.finish();
}

fn bearer_steps(c: &mut Criterion) {
    let rt = runtime();
    // A token of the size benches/bearer.rs sends: header and claims in base64url, and the
    // 342 characters of an RS256 (2048-bit) signature.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:40000", "sub": "svc-1", "aud": "api",
        "iat": 1_700_000_000, "exp": 1_700_003_600, "jti": "jti-123456",
        "preferred_username": "svc1", "email": "svc1@example.com", "name": "Service 1",
        "groups": ["api"], "scope": "reports:read profile",
    });
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"typ":"JWT","alg":"RS256","kid":"AbCdEfGhIjk"}"#),
        b64(&claims.to_string()),
        "s".repeat(342)
    );
    let tokens: moka::future::Cache<[u8; 32], Arc<UserId>> = moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(60))
        .build();
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    rt.block_on(tokens.insert(digest, Arc::new(UserId(1))));
    let sip = std::collections::hash_map::RandomState::new();
    eprintln!("bearer_hit_steps: token of {} bytes", token.len());

    let mut group = c.benchmark_group("bearer_hit_steps");
    group.bench_function("sha256_of_token", |b| {
        b.iter(|| -> [u8; 32] { Sha256::digest(black_box(token.as_bytes())).into() })
    });
    group.bench_function("token_cache_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { tokens.get(black_box(&digest)).await.expect("a hit") })
    });
    group.bench_function("siphash13_of_token", |b| {
        b.iter(|| sip.hash_one(black_box(token.as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, session_steps, bearer_steps);
criterion_main!(benches);
