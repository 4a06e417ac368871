//! A returning user's callback work, side by side with the raw RS256 check of the same token
//! and key:
//!
//! * `ours_validate_and_provision`: `IdTokenValidator::validate` (signature, `iss`, `aud`,
//!   `azp`, `exp`, `iat`, `nonce`) of an RS256 ID token signed by the development IdP, then
//!   `JitLayer::provision` of the existing user with unchanged claims (no store write);
//! * `raw_jsonwebtoken_decode`: `jsonwebtoken::decode` with the same key (parsed once) and a
//!   `Validation` checking nothing but the RS256 signature;
//! * `raw_rsa_verify`: PKCS#1 v1.5 SHA-256 verification with the `rsa` crate alone (base64 of
//!   the signature decoded, nothing parsed);
//! * `breakdown_*`: the two halves of ours on their own.
//!
//! `cargo bench --bench callback -- --warm-up-time 1 --measurement-time 3`

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::{Criterion, criterion_group, criterion_main};
use jit_provision::oidc::{IdTokenKeys, IdTokenValidator};
use jit_provision::store::{Identity, MemoryStore};
use jit_provision::{Claims, Outcome};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rsa::signature::Verifier;
use serde_json::{Map, Value, json};

const NONCE: &str = "n-0S6_WzA2Mj";

fn callback(c: &mut Criterion) {
    let rt = support::current_thread();
    let (idp, layer, jwks) = rt.block_on(async {
        let idp = support::start_idp().await;
        let store = MemoryStore::new();
        let layer = support::builder(support::provider(idp.issuer()), 100_000)
            .store(store.clone())
            .build()
            .expect("a layer");
        let jwks = reqwest::get(format!("{}/jwks", idp.issuer()))
            .await
            .expect("the IdP answers")
            .bytes()
            .await
            .expect("a JWKS");
        (idp, layer, jwks)
    });
    let issuer = idp.issuer().to_owned();
    let user = support::user(1);
    let mut claims = json!({
        "iss": issuer,
        "sub": user.subject,
        "aud": support::CLIENT_ID,
        "iat": support::now(),
        "exp": support::now() + 3600,
        "nonce": NONCE,
    });
    for (k, v) in &user.claims {
        claims[k] = v.clone();
    }
    let token = idp.sign_jwt(claims);

    // Ours: the validator the callback uses, with the same JWKS document.
    let validator = IdTokenValidator::new(&support::provider(&issuer)).expect("a validator");
    let keys = IdTokenKeys::from_json(&jwks).expect("a JWKS");

    // Raw: jsonwebtoken with the key parsed once, checking the signature only.
    let set: JwkSet = serde_json::from_slice(&jwks).expect("a JWKS");
    let jwk = &set.keys[0];
    let key = DecodingKey::from_jwk(jwk).expect("an RSA key");
    let mut minimal = Validation::new(Algorithm::RS256);
    minimal.required_spec_claims.clear();
    minimal.validate_exp = false;
    minimal.validate_nbf = false;
    minimal.validate_aud = false;

    // Raw: the rsa crate alone.
    let rsa_key = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&B64.decode(&p.n).expect("base64")),
            rsa::BigUint::from_bytes_be(&B64.decode(&p.e).expect("base64")),
        )
        .expect("an RSA key"),
        other => panic!("not an RSA key: {other:?}"),
    };
    let verifying = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(rsa_key);
    let (signing_input, signature) = token.rsplit_once('.').expect("a JWT");

    // The returning user exists, and every path below is checked once before timing.
    let returning = || async {
        let claims = validator
            .validate(&token, &keys, NONCE)
            .expect("a valid ID token");
        let identity = identity_of(&claims);
        let (user, outcome) = layer
            .provision(support::PROVIDER, &identity, &Claims(claims))
            .await
            .expect("provisioned");
        (user, outcome)
    };
    assert_eq!(rt.block_on(returning()).1, Outcome::Created);
    assert_eq!(rt.block_on(returning()).1, Outcome::Unchanged);
    jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &minimal).expect("valid");
    let rsa_check = || {
        let signature = B64.decode(signature).expect("base64");
        let signature =
            rsa::pkcs1v15::Signature::try_from(signature.as_slice()).expect("a signature");
        verifying
            .verify(signing_input.as_bytes(), &signature)
            .expect("a valid signature");
    };
    rsa_check();
    let validated = validator.validate(&token, &keys, NONCE).expect("valid");
    let claims = Claims(validated.clone());
    let identity = identity_of(&validated);

    let mut group = c.benchmark_group("callback_returning_user");
    group.bench_function("ours_validate_and_provision", |b| {
        b.to_async(&rt).iter(|| async {
            let (user, outcome) = returning().await;
            assert_eq!(outcome, Outcome::Unchanged);
            black_box(user)
        })
    });
    group.bench_function("raw_jsonwebtoken_decode", |b| {
        b.iter(|| {
            black_box(
                jsonwebtoken::decode::<Map<String, Value>>(black_box(&token), &key, &minimal)
                    .expect("valid"),
            )
        })
    });
    group.bench_function("raw_rsa_verify", |b| b.iter(rsa_check));
    group.bench_function("breakdown_validate_only", |b| {
        b.iter(|| black_box(validator.validate(black_box(&token), &keys, NONCE)))
    });
    group.bench_function("breakdown_provision_only", |b| {
        b.to_async(&rt).iter(|| async {
            let (user, outcome) = layer
                .provision(support::PROVIDER, &identity, &claims)
                .await
                .expect("provisioned");
            assert_eq!(outcome, Outcome::Unchanged);
            black_box(user)
        })
    });
    group.finish();

    // Ours and the raw checks, interleaved (immune to the machine's load drift).
    const CALLS: u32 = 25;
    let per_call = |started: Instant| started.elapsed().as_nanos() as f64 / f64::from(CALLS);
    let mut ours = || {
        let started = Instant::now();
        rt.block_on(async {
            for _ in 0..CALLS {
                black_box(returning().await);
            }
        });
        per_call(started)
    };
    let mut raw_jwt = || {
        let started = Instant::now();
        for _ in 0..CALLS {
            black_box(jsonwebtoken::decode::<Map<String, Value>>(&token, &key, &minimal).ok());
        }
        per_call(started)
    };
    let mut raw_rsa = || {
        let started = Instant::now();
        for _ in 0..CALLS {
            rsa_check();
        }
        per_call(started)
    };
    let m = support::Interleaved::run(
        40,
        &mut [
            ("ours", &mut ours),
            ("raw_jsonwebtoken_decode", &mut raw_jwt),
            ("raw_rsa_verify", &mut raw_rsa),
        ],
    );
    m.print("callback");
    for (i, raw) in [(1, "raw_jsonwebtoken_decode"), (2, "raw_rsa_verify")] {
        let (q1, median, q3) = m.per_round(|t| t[0] / t[i]);
        eprintln!(
            "callback: ours / {raw}, per round: median {median:.2} (quartiles {q1:.2}–{q3:.2}); \
             target ≤ 1.30"
        );
    }
    idp.shutdown();
}

/// The identity the callback builds from validated claims.
fn identity_of(claims: &Map<String, Value>) -> Identity {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .expect("a string claim")
    };
    Identity::new(support::PROVIDER, text("iss"), text("sub"))
}

criterion_group!(benches, callback);
criterion_main!(benches);
