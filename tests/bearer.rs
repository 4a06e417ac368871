//! Bearer JWTs for APIs: validation with jsonwebtoken, the RFC 9068 `typ` check,
//! just-in-time provisioning (without linking or attribute updates unless configured), the
//! verified-token cache, key rotation and revocation, RFC 6750 answers.

mod common;

use std::time::Duration;

use common::bearer::*;
use common::*;
use jit_provision::config::{BearerConfig, LinkBy, LinkingConfig};
use jit_provision::dev_idp::DevIdp;
use jit_provision::store::{IdentityKey, Profile, Refusal, UserStore};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The request is refused with 401, an RFC 6750 challenge, and nothing provisioned.
async fn assert_invalid(app: &TestApp, token: &str) {
    assert_refused_as(app, token, "invalid_token").await;
}

/// The request is refused with 401, an RFC 6750 `invalid_token` challenge and the error
/// `code`, and nothing provisioned.
async fn assert_refused_as(app: &TestApp, token: &str, code: &str) {
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
    assert_eq!(error_code(response).await, code);
    assert_eq!(app.store.inner.user_count(), 0);
}

/// A JOSE header typed `at+jwt`, so a forgery is refused for what it forges, not its type.
fn access_header(alg: Algorithm) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header
}

#[tokio::test]
async fn first_call_provisions_and_repeated_calls_skip_the_signature_check() {
    let app = api().await;
    let token = app.idp.sign_access_token(claims(&app, "svc-reports"));
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
    let other = app.idp.sign_access_token(claims(&app, "svc-reports"));
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
    let mut rs256 = access_header(Algorithm::RS256);
    rs256.kid = Some(kid.clone());
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&app, "svc");
        f(&mut c);
        app.idp.sign_access_token(c)
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
            let mut h = access_header(Algorithm::HS256);
            h.kid = Some(kid.clone());
            sign(
                &h,
                &claims(&app, "svc"),
                &EncodingKey::from_secret(pem.as_bytes()),
            )
        }),
        ("kid absent", {
            let h = access_header(Algorithm::RS256);
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
    assert_invalid(&app, &app.idp.sign_access_token(c)).await;
    assert_eq!(
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "svc")))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_refused_and_rate_limited() {
    let app = api().await;
    let mut header = access_header(Algorithm::RS256);
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
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "a")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.idp.jwks_fetches(), 1);
    app.idp.rotate_key(false);
    assert_eq!(
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "b")))
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
    let token = app.idp.sign_access_token(claims(&app, "svc"));
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
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "a")))
            .await
            .status(),
        StatusCode::OK
    );
    let late = app.idp.sign_access_token(claims(&app, "b"));
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
            let mut bearer = BearerConfig::new(["api"]);
            bearer.jwks_uri = Some(format!("http://{closed}/jwks"));
            p.bearer = Some(bearer);
            p
        },
        |b| b,
    )
    .await;
    let response = call(&app, "/me", &app.idp.sign_access_token(claims(&app, "svc"))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "idp_keys_unavailable");
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn concurrent_first_calls_of_one_subject_provision_exactly_once() {
    let app = std::sync::Arc::new(api().await);
    let calls = (0..200).map(|_| {
        let app = app.clone();
        let token = app.idp.sign_access_token(claims(&app, "svc-herd"));
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
    let with = app.idp.sign_access_token(claims(&app, "svc"));
    let response = call(&app, "/api/reports", &with).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut c = claims(&app, "svc");
    c["scope"] = json!("profile");
    let without = app.idp.sign_access_token(c);
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
        call(&app, "/api/reports", &app.idp.sign_access_token(c))
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
    let token = app.idp.sign_access_token(claims(&app, "svc"));
    assert_eq!(call(&app, "/me", &token).await.status(), StatusCode::OK);
    let id = app.store.inner.users()[0].id;
    app.store.inner.set_locked(id, true).await.unwrap();
    app.layer.forget_user(id).await;
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "user_locked");
}

/// A verified token whose user was deleted since is `401 unknown_user`, not an unknown key:
/// the token and its issuer's keys are fine.
#[tokio::test]
async fn a_deleted_api_user_is_401_unknown_user() {
    let app = api().await;
    let token = app.idp.sign_access_token(claims(&app, "svc"));
    assert_eq!(call(&app, "/me", &token).await.status(), StatusCode::OK);
    let id = app.store.inner.users()[0].id;
    app.store.inner.delete(id).await.unwrap();
    app.layer.forget_user(id).await;
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("no longer exists"), "{challenge}");
    assert_eq!(error_code(response).await, "unknown_user");
}

#[tokio::test]
async fn an_id_token_sent_as_a_bearer_token_is_refused() {
    // The API accepts the login client's audience too, so only the type tells the ID token
    // from an access token.
    let app = api_with(|mut b| {
        b.audiences.push(CLIENT_ID.into());
        b
    })
    .await;
    let id_token = id_token(&app, &alice()).await;
    assert_eq!(typ_of(&id_token).as_deref(), Some("JWT"));
    let fetches = app.idp.jwks_fetches();
    assert_refused_as(&app, &id_token, "invalid_token_type").await;
    assert_eq!(app.layer.metrics().bearer_verified, 0);
    assert_eq!(
        app.idp.jwks_fetches(),
        fetches,
        "refused before any key fetch"
    );
}

#[tokio::test]
async fn a_token_typed_jwt_is_refused_by_default_and_accepted_when_configured() {
    let app = api().await;
    let jwt = app.idp.sign_jwt(claims(&app, "svc"));
    assert_eq!(typ_of(&jwt).as_deref(), Some("JWT"));
    assert_refused_as(&app, &jwt, "invalid_token_type").await;
    // No `typ` at all is refused too.
    let untyped = signed_with_typ(&app, None, claims(&app, "svc")).await;
    assert_eq!(typ_of(&untyped), None);
    assert_refused_as(&app, &untyped, "invalid_token_type").await;
    // RFC 9068's type in any case, with or without `application/`, is accepted.
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+JWT",
    ] {
        let token = signed_with_typ(&app, Some(typ), claims(&app, "svc")).await;
        assert_eq!(
            call(&app, "/me", &token).await.status(),
            StatusCode::OK,
            "{typ}"
        );
    }

    // An IdP that types its access tokens `JWT`: accepted once configured.
    let app = api_with(|mut b| {
        b.token_types = vec!["at+jwt".into(), "JWT".into()];
        b
    })
    .await;
    let jwt = app.idp.sign_jwt(claims(&app, "svc"));
    assert_eq!(call(&app, "/me", &jwt).await.status(), StatusCode::OK);
    let at = app.idp.sign_access_token(claims(&app, "svc2"));
    assert_eq!(call(&app, "/me", &at).await.status(), StatusCode::OK);
    let untyped = signed_with_typ(&app, None, claims(&app, "svc3")).await;
    let response = call(&app, "/me", &untyped).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "invalid_token_type");

    // `""` accepts a token without `typ`.
    let app = api_with(|mut b| {
        b.token_types = vec!["at+jwt".into(), String::new()];
        b
    })
    .await;
    let untyped = signed_with_typ(&app, None, claims(&app, "svc")).await;
    assert_eq!(call(&app, "/me", &untyped).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_empty_token_type_list_is_refused_at_build() {
    let idp = DevIdp::builder().start("127.0.0.1:0").await.unwrap();
    let mut bearer = BearerConfig::new(["api"]);
    bearer.token_types.clear();
    let built = jit_provision::JitLayer::builder()
        .public_url("http://127.0.0.1:1")
        .insecure_cookies_for_localhost()
        .provider("dev", default_provider(idp.issuer()).bearer(bearer))
        .store(jit_provision::store::MemoryStore::new())
        .build();
    match built {
        Err(jit_provision::ConfigError::Bearer(message)) => {
            assert!(message.contains("token_types"), "{message}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("built with no accepted token type"),
    }
}

/// A test app linking by username, with `bearer` changing its bearer section.
async fn linking_api(bearer: impl FnOnce(BearerConfig) -> BearerConfig) -> TestApp {
    TestApp::start_with(
        |p| {
            p.linking(LinkingConfig::new(LinkBy::Username))
                .bearer(bearer(BearerConfig::new(["api"])))
        },
        |b| b,
    )
    .await
}

fn dev_key(subject: &str) -> IdentityKey {
    IdentityKey {
        provider: "dev".into(),
        subject: subject.into(),
    }
}

#[tokio::test]
async fn a_bearer_token_does_not_link_to_a_local_user_by_default() {
    let app = linking_api(|b| b).await;
    let local = app
        .store
        .inner
        .insert_local(&Profile::new("alice"))
        .unwrap();
    // A client-credentials token of a new subject whose username is that of the local user.
    let mut c = claims(&app, "svc-client");
    c["preferred_username"] = json!("alice");
    let response = call(&app, "/me", &app.idp.sign_access_token(c)).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "username_taken");
    assert!(
        app.store
            .inner
            .find_by_identity(&dev_key("svc-client"))
            .await
            .unwrap()
            .is_none(),
        "linked"
    );
    assert!(
        app.store
            .inner
            .identities_of(local.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(app.store.inner.user_count(), 1);
    // A browser login of the same provider still links (its `linking` is unchanged).
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.store
            .inner
            .find_by_identity(&dev_key("sub-alice"))
            .await
            .unwrap()
            .unwrap()
            .id,
        local.id
    );
}

#[tokio::test]
async fn a_bearer_token_links_when_the_bearer_section_allows_it() {
    let app = linking_api(|mut b| {
        b.link = true;
        b
    })
    .await;
    let local = app
        .store
        .inner
        .insert_local(&Profile::new("alice"))
        .unwrap();
    let mut c = claims(&app, "svc-client");
    c["preferred_username"] = json!("alice");
    let response = call(&app, "/me", &app.idp.sign_access_token(c)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["id"], json!(local.id));
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn a_bearer_token_without_email_does_not_blank_the_users_email() {
    let app = api().await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let before = app.store.inner.users()[0].clone();
    assert_eq!(before.email.as_deref(), Some("alice@example.com"));
    let updates = app.store.inner.counters().updates();
    // The token carries no email, name or groups claims.
    let mut c = claims(&app, "sub-alice");
    c["preferred_username"] = json!("alice");
    let response = call(&app, "/me", &app.idp.sign_access_token(c)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["id"], json!(before.id));
    assert_eq!(me["email"], "alice@example.com");
    let after = app.store.inner.users()[0].clone();
    assert_eq!(after.email.as_deref(), Some("alice@example.com"));
    assert_eq!(after.display_name.as_deref(), Some("Alice"));
    assert_eq!(
        app.store.inner.counters().updates(),
        updates,
        "nothing written"
    );
}

#[tokio::test]
async fn bearer_calls_sync_attributes_when_the_bearer_section_allows_it() {
    let app = api_with(|mut b| {
        b.update_attributes = true;
        b
    })
    .await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut c = claims(&app, "sub-alice");
    c["email"] = json!("alice@new.example");
    let response = call(&app, "/me", &app.idp.sign_access_token(c)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.store.inner.users()[0].email.as_deref(),
        Some("alice@new.example")
    );
}

#[tokio::test]
async fn a_refusal_of_the_applications_store_is_its_409_not_a_503() {
    let app = api().await;
    app.store.refuse_create_when(|_, profile: &Profile| {
        (profile.username == "svc-reports")
            .then(|| Refusal::conflict("username", "reserved_name", "this name is reserved"))
    });
    let token = app.idp.sign_access_token(claims(&app, "svc-reports"));
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "reserved_name");
    assert_eq!(app.store.inner.user_count(), 0);
}

/// The login and the bearer tokens of one issuer read one key cache: the keys the login's
/// discovery fetched verify the bearer token, and the refetch a rotated key causes on the
/// bearer path serves the next login's ID token.
#[tokio::test]
async fn one_key_fetch_serves_logins_and_bearer_calls_of_the_same_issuer() {
    let app = api().await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.idp.jwks_fetches(), 1);
    assert_eq!(
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "a")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.idp.jwks_fetches(),
        1,
        "the login's keys serve the bearer call"
    );
    app.idp.rotate_key(false);
    assert_eq!(
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "b")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.idp.jwks_fetches(), 2, "one refetch for the new key");
    let browser = browser();
    assert_eq!(
        app.login_with(&browser, &bob()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.idp.jwks_fetches(),
        2,
        "the bearer path's refetch serves the login signed with the new key"
    );
}

/// The other way round: a login signed with a rotated key refetches the shared keys once
/// (the bearer rate limits), and the bearer call with the new key needs no fetch.
#[tokio::test]
async fn a_login_refetch_serves_the_bearer_calls_of_the_same_issuer() {
    let app = api().await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.idp.jwks_fetches(), 1);
    app.idp.rotate_key(false);
    let browser = browser();
    assert_eq!(
        app.login_with(&browser, &bob()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.idp.jwks_fetches(), 2, "one refetch for the new key");
    assert_eq!(
        call(&app, "/me", &app.idp.sign_access_token(claims(&app, "b")))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.idp.jwks_fetches(),
        2,
        "the login's refetch serves the bearer call"
    );
}
