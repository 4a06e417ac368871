//! Bearer JWTs for APIs: validation with jsonwebtoken, just-in-time provisioning, the
//! verified-token cache, key rotation and revocation, RFC 6750 answers.

mod common;

use std::time::Duration;

use common::bearer::*;
use common::*;
use jit_provision::config::BearerConfig;
use jit_provision::dev_idp::DevIdp;
use jit_provision::store::UserStore;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The request is refused with 401, an RFC 6750 challenge, and nothing provisioned.
async fn assert_invalid(app: &TestApp, token: &str) {
    let response = call(app, "/me", token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{challenge}"
    );
    assert_eq!(error_code(response).await, "invalid_token");
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn first_call_provisions_and_repeated_calls_skip_the_signature_check() {
    let app = api().await;
    let token = app.idp.sign_jwt(claims(&app, "svc-reports"));
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["username"], "svc-reports");
    assert_eq!(me["provider"], "dev");
    assert_eq!(app.store.inner.counters().creates(), 1);
    for _ in 0..5 {
        assert_eq!(call(&app, "/me", &token).await.status(), StatusCode::OK);
    }
    let metrics = app.layer.metrics();
    assert_eq!(metrics.bearer_verified, 1);
    assert_eq!(metrics.bearer_cache_hits, 5);
    assert_eq!(app.store.inner.counters().creates(), 1);
    // A second token of the same subject is verified once and reuses the user.
    let other = app.idp.sign_jwt(claims(&app, "svc-reports"));
    assert_eq!(call(&app, "/me", &other).await.status(), StatusCode::OK);
    assert_eq!(app.layer.metrics().bearer_verified, 2);
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn every_forgery_and_bad_claim_is_refused() {
    let app = api().await;
    let key = DevIdp::unpublished_key();
    let pem = app.idp.public_key_pem();
    let kid = app.idp.current_kid();
    let sign = |header: &Header, claims: &Value, key: &EncodingKey| {
        jsonwebtoken::encode(header, claims, key).unwrap()
    };
    let mut rs256 = Header::new(Algorithm::RS256);
    rs256.kid = Some(kid.clone());
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&app, "svc");
        f(&mut c);
        app.idp.sign_jwt(c)
    };
    let b64 = |v: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let cases: Vec<(&str, String)> = vec![
        ("bad signature", sign(&rs256, &claims(&app, "svc"), &key)),
        (
            "wrong issuer",
            edit(&|c| c["iss"] = json!("https://evil.example")),
        ),
        ("wrong audience", edit(&|c| c["aud"] = json!("other-api"))),
        ("expired", edit(&|c| c["exp"] = json!(now() - 3600))),
        ("not yet valid", edit(&|c| c["nbf"] = json!(now() + 3600))),
        (
            "issued in the future",
            edit(&|c| c["iat"] = json!(now() + 3600)),
        ),
        (
            "no sub",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "no exp",
            edit(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims(&app, "svc").to_string().as_bytes())
            ),
        ),
        ("HS256 keyed with the public key", {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(kid.clone());
            sign(
                &h,
                &claims(&app, "svc"),
                &EncodingKey::from_secret(pem.as_bytes()),
            )
        }),
        ("kid absent", {
            let h = Header::new(Algorithm::RS256);
            sign(&h, &claims(&app, "svc"), &key)
        }),
        ("garbage", "not.a.jwt".to_owned()),
        (
            "oversized",
            "a".repeat(jit_provision::bearer::MAX_TOKEN_BYTES + 1),
        ),
    ];
    for (name, token) in cases {
        let response = call(&app, "/me", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert_eq!(app.store.inner.user_count(), 0, "{name} provisioned a user");
    }
    assert_eq!(app.layer.metrics().bearer_verified, 0);
}

#[tokio::test]
async fn required_claims_are_enforced() {
    let app = api_with(|mut b| {
        b.required_claims = vec!["jti".into(), "iat".into()];
        b
    })
    .await;
    let mut c = claims(&app, "svc");
    c.as_object_mut().unwrap().remove("jti");
    assert_invalid(&app, &app.idp.sign_jwt(c)).await;
    assert_eq!(
        call(&app, "/me", &app.idp.sign_jwt(claims(&app, "svc")))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_refused_and_rate_limited() {
    let app = api().await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ghost".into());
    let forged =
        jsonwebtoken::encode(&header, &claims(&app, "svc"), &DevIdp::unpublished_key()).unwrap();
    assert_invalid(&app, &forged).await;
    assert_eq!(
        app.idp.jwks_fetches(),
        2,
        "one fetch, one refetch for the unknown kid"
    );
    let forged2 =
        jsonwebtoken::encode(&header, &claims(&app, "svc2"), &DevIdp::unpublished_key()).unwrap();
    assert_invalid(&app, &forged2).await;
    assert_eq!(app.idp.jwks_fetches(), 2, "rate limited");
}

#[tokio::test]
async fn rotation_is_followed_after_one_refetch() {
    let app = api().await;
    assert_eq!(
        call(&app, "/me", &app.idp.sign_jwt(claims(&app, "a")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.idp.jwks_fetches(), 1);
    app.idp.rotate_key(false);
    assert_eq!(
        call(&app, "/me", &app.idp.sign_jwt(claims(&app, "b")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_removed_key_stops_being_accepted_once_the_caches_expire() {
    let app = api_with(|mut b| {
        b.jwks_ttl_secs = 1;
        b.token_cache_ttl_secs = 1;
        b
    })
    .await;
    let token = app.idp.sign_jwt(claims(&app, "svc"));
    assert_eq!(call(&app, "/me", &token).await.status(), StatusCode::OK);
    // The IdP drops the key (compromise): the token is still unexpired, but once the token
    // cache and the key cache have expired it is checked again and refused.
    app.idp.rotate_key(false);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_are_served_stale_while_the_issuer_is_down() {
    let app = api_with(|mut b| {
        b.jwks_ttl_secs = 1;
        b
    })
    .await;
    assert_eq!(
        call(&app, "/me", &app.idp.sign_jwt(claims(&app, "a")))
            .await
            .status(),
        StatusCode::OK
    );
    let late = app.idp.sign_jwt(claims(&app, "b"));
    app.idp.shutdown();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The key TTL has passed and the issuer is gone: the cached keys still verify.
    assert_eq!(call(&app, "/me", &late).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn issuer_down_with_no_cached_keys_is_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::start_with(
        move |mut p| {
            p.bearer = Some(BearerConfig {
                jwks_uri: Some(format!("http://{closed}/jwks")),
                ..BearerConfig::new(["api"])
            });
            p
        },
        |b| b,
    )
    .await;
    let response = call(&app, "/me", &app.idp.sign_jwt(claims(&app, "svc"))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "idp_keys_unavailable");
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn concurrent_first_calls_of_one_subject_provision_exactly_once() {
    let app = std::sync::Arc::new(api().await);
    let calls = (0..200).map(|_| {
        let app = app.clone();
        let token = app.idp.sign_jwt(claims(&app, "svc-herd"));
        tokio::spawn(async move { call(&app, "/me", &token).await.status() })
    });
    for status in futures_util::future::join_all(calls).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(app.store.inner.counters().creates(), 1);
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn scopes_are_enforced_with_rfc6750_answers() {
    let app = api().await;
    let with = app.idp.sign_jwt(claims(&app, "svc"));
    let response = call(&app, "/api/reports", &with).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut c = claims(&app, "svc");
    c["scope"] = json!("profile");
    let without = app.idp.sign_jwt(c);
    let response = call(&app, "/api/reports", &without).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"reports:read\""
    );
    // `scp` as an array works too.
    let mut c = claims(&app, "svc");
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["reports:read"]);
    assert_eq!(
        call(&app, "/api/reports", &app.idp.sign_jwt(c))
            .await
            .status(),
        StatusCode::OK
    );
    // No token at all.
    let response = reqwest::get(app.url("/api/reports")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer scope=\"reports:read\""
    );
    // And a cookie session has no scopes.
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let response = app
        .client
        .get(app.url("/api/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn locked_api_user_is_403() {
    let app = api().await;
    let token = app.idp.sign_jwt(claims(&app, "svc"));
    assert_eq!(call(&app, "/me", &token).await.status(), StatusCode::OK);
    let id = app.store.inner.users()[0].id;
    app.store.inner.set_locked(id, true).await.unwrap();
    app.layer.forget_user(id).await;
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "user_locked");
}
