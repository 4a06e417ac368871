//! The steps of the two cache-hit paths, one by one, with the calls `src/` makes, to explain
//! the figures of `authenticated_request` (session cookie) and `bearer` (repeated token) and
//! to price the fixes proposed in BENCHMARKS.md:
//!
//! * group `session_hit_steps`: opening the session cookie as `CookieCodec::open` does (a
//!   `CookieJar`, `PrivateJar::get`, which derives the AES key schedule on every call) vs
//!   the same AES-256-GCM check with a cipher built once; parsing the legacy session
//!   cookie's JSON (`SessionData`, crate-private, mirrored here) with serde_json; the user cache lookup as `load_user` does it (`try_get_with`) vs `get`; the
//!   revoked-session lookup (the moka cache of earlier releases vs the exact bounded set of
//!   `src/expiring.rs`); a cache of opened sessions keyed by the sealed cookie value (a hit
//!   replaces base64, AES-GCM and JSON); and cookie format 2 (`src/session/cookies.rs`: key
//!   id, XChaCha20-Poly1305 under an HKDF-derived key) beside format 1 (AES-256-GCM, the
//!   cookie crate's), sealing and opening.
//! * group `bearer_hit_steps`: SHA-256 of a bearer token of the size the `bearer` bench
//!   sends, the token-cache lookup, and a keyed SipHash of the same bytes for comparison.
//!
//! * group `metrics_steps`: the two cache-hit counters of the `metrics` facade (handles, with
//!   and without a recorder) against registering them at every call.
//!
//! `cargo bench --bench breakdown -- --warm-up-time 1 --measurement-time 3`

use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cookie::{Cookie, CookieJar, Key};
use criterion::{Criterion, criterion_group, criterion_main};
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

/// What `CookieCodec::seal` did before format 2: AES-256-GCM, a 96-bit random nonce.
fn seal_format_1(cipher: &Aes256Gcm, name: &str, value: &str) -> String {
    use rand::RngCore;
    let mut data = vec![0u8; 12 + value.len() + 16];
    let (nonce, rest) = data.split_at_mut(12);
    let (body, tag) = rest.split_at_mut(value.len());
    rand::rngs::OsRng.fill_bytes(nonce);
    body.copy_from_slice(value.as_bytes());
    let nonce: [u8; 12] = (&*nonce).try_into().expect("12 bytes");
    let sealed = cipher
        .encrypt_in_place_detached(&Nonce::from(nonce), name.as_bytes(), body)
        .expect("encrypts");
    tag.copy_from_slice(&sealed);
    base64::engine::general_purpose::STANDARD.encode(&data)
}

/// `CookieCodec::seal` of src/session/cookies.rs (format 2), call for call.
fn seal_format_2(cipher: &XChaCha20Poly1305, id: [u8; 4], name: &str, value: &str) -> String {
    use rand::RngCore;
    let mut data = vec![0u8; 4 + 24 + value.len() + 16];
    let (key_id, rest) = data.split_at_mut(4);
    let (nonce, rest) = rest.split_at_mut(24);
    let (body, tag) = rest.split_at_mut(value.len());
    key_id.copy_from_slice(&id);
    rand::rngs::OsRng.fill_bytes(nonce);
    body.copy_from_slice(value.as_bytes());
    let nonce: [u8; 24] = (&*nonce).try_into().expect("24 bytes");
    let sealed = cipher
        .encrypt_in_place_detached(&XNonce::from(nonce), name.as_bytes(), body)
        .expect("encrypts");
    tag.copy_from_slice(&sealed);
    let mut out = String::from("2.");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&data, &mut out);
    out
}

/// `CookieCodec::open` of src/session/cookies.rs for format 2 (a ring of one key).
fn open_format_2(
    cipher: &XChaCha20Poly1305,
    id: [u8; 4],
    name: &str,
    sealed: &str,
) -> Option<String> {
    let mut data = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed.strip_prefix("2.")?)
        .ok()?;
    if data.len() < 4 + 24 + 16 {
        return None;
    }
    let (key_id, rest) = data.split_at_mut(4);
    let (nonce, rest) = rest.split_at_mut(24);
    let (body, tag) = rest.split_at_mut(rest.len() - 16);
    if *key_id != id {
        return None;
    }
    let nonce = XNonce::from(<[u8; 24]>::try_from(&*nonce).ok()?);
    let tag = chacha20poly1305::Tag::from(<[u8; 16]>::try_from(&*tag).ok()?);
    cipher
        .decrypt_in_place_detached(&nonce, name.as_bytes(), body, &tag)
        .ok()?;
    String::from_utf8(body.to_vec()).ok()
}

/// `RevokedSessions` of src/cache.rs (over `ExpiringSet` of src/expiring.rs): the lookup a
/// request with a session makes once any session was revoked.
struct RevokedSet {
    any: AtomicBool,
    ended_up_to: AtomicI64,
    entries: RwLock<HashMap<Arc<str>, (Instant, i64)>>,
}

impl RevokedSet {
    fn contains(&self, id: &str, issued_at: i64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        let held = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .is_some_and(|(expires, _)| *expires > now);
        held || issued_at <= self.ended_up_to.load(Ordering::Acquire)
    }
}

/// The crate-private `SessionData` of `src/session/mod.rs` (the legacy session cookie's
/// JSON), mirrored field for field with its serde names, so parsing it costs the same.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[allow(dead_code)]
struct SessionData {
    #[serde(rename = "u")]
    user_id: UserId,
    #[serde(rename = "d")]
    domain: String,
    #[serde(rename = "p")]
    provider: String,
    #[serde(rename = "s")]
    subject: String,
    #[serde(rename = "id")]
    session_id: String,
    #[serde(rename = "iat")]
    issued_at: i64,
    #[serde(rename = "exp")]
    expires_at: i64,
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
    // Format 2: a cookie key derived once per ring key (HKDF-SHA256), and its id.
    let derive = |info: &[u8]| {
        let mut out = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, key.master())
            .expand(info, &mut out)
            .expect("32 bytes");
        out
    };
    let xchacha = XChaCha20Poly1305::new(&derive(b"jit-provision cookie xchacha20poly1305").into());
    let key_id: [u8; 4] = derive(b"jit-provision key id")[..4]
        .try_into()
        .expect("4 bytes");
    let sealed_2 = seal_format_2(&xchacha, key_id, COOKIE, &json);
    assert_eq!(
        open_format_2(&xchacha, key_id, COOKIE, &sealed_2).as_deref(),
        Some(&*json)
    );
    assert_eq!(
        open_like_src(&key, COOKIE, &sealed).as_deref(),
        Some(&*json)
    );
    assert_eq!(
        open_with_cipher(&cipher, COOKIE, &sealed).as_deref(),
        Some(&*json)
    );

    let user = Arc::new({
        let mut user = User::new(UserId(42), "user42");
        user.email = Some("user42@example.com".into());
        user.display_name = Some("User 42".into());
        user.groups = ["staff".to_owned()].into();
        user
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
    // The revoked-session set as src/cache.rs builds it now, holding 100 000 other sessions.
    let revoked_set = RevokedSet {
        any: AtomicBool::new(true),
        ended_up_to: AtomicI64::new(i64::MIN),
        entries: RwLock::new(
            (0..100_000)
                .map(|i| {
                    let expires = Instant::now() + Duration::from_secs(3600);
                    (Arc::from(format!("revoked-{i}")), (expires, 1_700_000_000))
                })
                .collect(),
        ),
    };
    for i in 0..100_000 {
        rt.block_on(revoked.insert(format!("revoked-{i}"), ()));
    }
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
    group.bench_function("cookie_open_format_2_xchacha20poly1305", |b| {
        b.iter(|| open_format_2(&xchacha, key_id, COOKIE, black_box(&sealed_2)))
    });
    group.bench_function("cookie_seal_format_1_prebuilt_cipher", |b| {
        b.iter(|| seal_format_1(&cipher, COOKIE, black_box(&json)))
    });
    group.bench_function("cookie_seal_format_2_xchacha20poly1305", |b| {
        b.iter(|| seal_format_2(&xchacha, key_id, COOKIE, black_box(&json)))
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
    group.bench_function("revoked_set_contains", |b| {
        b.iter(|| revoked_set.contains(black_box(&session.session_id), session.issued_at))
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

/// What the `metrics` facade adds to a session-cache hit: the two cache counters
/// (`jit_cache_requests_total{cache="session"|"user", result="hit"}`) the layer increments,
/// as pre-registered handles (what `src/metrics.rs` does) with no recorder and with one
/// installed, against the `counter!` macro with its labels at every call (a registry lookup
/// per call under a recorder).
fn metrics_steps(c: &mut Criterion) {
    use metrics::{Counter, counter};
    use metrics_util::debugging::DebuggingRecorder;
    fn handles() -> (Counter, Counter) {
        let name = "jit_cache_requests_total";
        (
            counter!(name, "cache" => "session", "result" => "hit"),
            counter!(name, "cache" => "user", "result" => "hit"),
        )
    }
    let mut group = c.benchmark_group("metrics_steps");
    let (session, user) = handles();
    group.bench_function("two_handles_no_recorder", |b| {
        b.iter(|| {
            black_box(&session).increment(1);
            black_box(&user).increment(1);
        })
    });
    let recorder = DebuggingRecorder::new();
    let (session, user) = metrics::with_local_recorder(&recorder, handles);
    group.bench_function("two_handles_recorder", |b| {
        b.iter(|| {
            black_box(&session).increment(1);
            black_box(&user).increment(1);
        })
    });
    group.bench_function("two_macro_calls_recorder", |b| {
        b.iter(|| {
            metrics::with_local_recorder(&recorder, || {
                let (session, user) = handles();
                session.increment(1);
                user.increment(1);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, session_steps, bearer_steps, metrics_steps);
criterion_main!(benches);
