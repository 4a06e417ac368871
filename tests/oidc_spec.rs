//! OpenID Connect conformance of the relying party, through real logins against the
//! development IdP: the token response's `token_type`, RFC 9207 `iss` when discovery promises
//! it, an ID token's `nbf`, malformed ID tokens, and the lifetimes of the cached discovery
//! document and signing keys (refreshed after their TTL, kept while the IdP is down, a failed
//! discovery answered at once for a few seconds).

mod common;

use std::time::Duration;

use common::*;
use jit_provision::ProviderConfig;
use jit_provision::dev_idp::{DevUser, EndpointFault, Signer};
use jit_provision::oidc::{IdTokenError, IdTokenKeys, IdTokenValidator};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Logs carol (a new user) in with a fresh browser; asserts the login is refused with
/// `status`/`code`, that nobody was created and that the browser has no session.
async fn assert_login_refused(app: &TestApp, status: StatusCode, code: &str) {
    let client = browser();
    let users = app.store.inner.user_count();
    let response = app.login_with(&client, &carol()).await;
    assert_refused(response, status, code).await;
    assert_eq!(app.store.inner.user_count(), users, "a user was written");
    assert_eq!(
        app.me_with(&client).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

fn carol() -> DevUser {
    DevUser::new(
        "sub-carol",
        "carol",
        "carol@example.com",
        "Carol",
        &["staff"],
    )
}

/// Logs `user` in with a fresh browser; asserts it succeeded with a session.
async fn assert_logs_in(app: &TestApp, user: &DevUser) {
    let response = app.login_with(&browser(), user).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "login refused");
    assert!(sets_session(&response));
}

/// Past a TTL of one second.
async fn wait_past_one_second_ttl() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

fn with_userinfo(mut p: ProviderConfig) -> ProviderConfig {
    p.userinfo = true;
    p
}

// ---- item 6: token_type ----------------------------------------------------------------

#[tokio::test]
async fn a_token_type_other_than_bearer_is_refused_before_the_access_token_is_used() {
    // With userinfo on, an accepted response would send its access token there next.
    let app = TestApp::start_with(with_userinfo, |b| b).await;
    for token_type in [json!("N_A"), json!("mac"), json!("")] {
        app.idp.on_token_response(move |r| {
            r.insert("token_type".into(), token_type.clone());
        });
        assert_login_refused(&app, StatusCode::BAD_GATEWAY, "invalid_token_response").await;
    }
    // A response without token_type (REQUIRED, RFC 6749 §5.1) is refused the same way.
    app.idp.on_token_response(|r| {
        r.remove("token_type");
    });
    assert_login_refused(&app, StatusCode::BAD_GATEWAY, "invalid_token_response").await;
    assert_eq!(app.idp.token_requests(), 4);
    assert_eq!(app.idp.userinfo_requests(), 0, "the access token was used");
}

#[tokio::test]
async fn token_type_bearer_is_accepted_in_any_case() {
    let app = TestApp::start_with(with_userinfo, |b| b).await;
    for token_type in ["Bearer", "bearer", "BEARER"] {
        app.idp.on_token_response(move |r| {
            r.insert("token_type".into(), json!(token_type));
        });
        assert_logs_in(&app, &alice()).await;
    }
    assert_eq!(app.idp.userinfo_requests(), 3);
}

// ---- item 7: RFC 9207 iss ----------------------------------------------------------------

/// The callback URL with its `iss` parameter replaced by `iss` (`None`: removed).
fn with_iss(callback: &str, iss: Option<&str>) -> String {
    let mut url = url::Url::parse(callback).unwrap();
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(iss) = iss {
        pairs.push(("iss".into(), iss.into()));
    }
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.into()
}

#[tokio::test]
async fn a_callback_without_iss_is_refused_when_discovery_says_the_idp_sends_it() {
    let app = TestApp::start().await;
    // The dev IdP advertises authorization_response_iss_parameter_supported: true.
    app.idp.send_iss_parameter(false);
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "missing_issuer").await;
    assert_eq!(app.idp.token_requests(), 0, "the code was exchanged");

    // The same, with `iss` stripped from a callback the IdP sent with it.
    app.idp.send_iss_parameter(true);
    let client = browser();
    let callback = app.callback_url(&client, &alice()).await;
    assert!(callback.contains("iss="));
    let response = client.get(with_iss(&callback, None)).send().await.unwrap();
    assert_refused(response, StatusCode::UNAUTHORIZED, "missing_issuer").await;
    // A wrong `iss` is refused too (a mix-up attack's response).
    let callback = app.callback_url(&client, &alice()).await;
    let response = client
        .get(with_iss(&callback, Some("https://evil.example")))
        .send()
        .await
        .unwrap();
    assert_refused(response, StatusCode::UNAUTHORIZED, "issuer_mismatch").await;
    assert_eq!(app.idp.token_requests(), 0, "a code was exchanged");

    // With `iss`, the login goes through.
    assert_logs_in(&app, &alice()).await;
}

#[tokio::test]
async fn a_callback_without_iss_is_accepted_when_discovery_does_not_promise_it() {
    let app = TestApp::start().await;
    app.idp.advertise_iss_parameter(false);
    app.idp.send_iss_parameter(false);
    assert_logs_in(&app, &alice()).await;
}

// ---- item 8: nbf ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_token_not_valid_yet_is_refused() {
    let app = TestApp::start().await;
    // An hour ahead: beyond the default 60 s skew.
    app.idp.on_id_token(|d| {
        d.claims.insert("nbf".into(), json!(now() + 3600));
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    // Fractional NumericDates count too; a non-numeric nbf is malformed.
    app.idp.on_id_token(|d| {
        d.claims.insert("nbf".into(), json!(now() as f64 + 3600.5));
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    app.idp.on_id_token(|d| {
        d.claims.insert("nbf".into(), json!("tomorrow"));
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;

    // In the past, or ahead by less than the skew: accepted.
    for nbf in [now() - 10, now() + 30] {
        app.idp.on_id_token(move |d| {
            d.claims.insert("nbf".into(), json!(nbf));
        });
        assert_logs_in(&app, &alice()).await;
    }
}

#[tokio::test]
async fn the_public_validator_refuses_nbf_in_the_future_as_not_yet_valid() {
    let app = TestApp::start().await;
    let jwks = reqwest::get(format!("{}/jwks", app.idp.issuer()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys = IdTokenKeys::from_json(&jwks).unwrap();
    let validator =
        IdTokenValidator::new(&ProviderConfig::new(app.idp.issuer(), CLIENT_ID)).unwrap();
    let token = |nbf: Option<i64>| {
        let mut claims = json!({
            "iss": app.idp.issuer(), "aud": CLIENT_ID, "sub": "sub-alice", "nonce": "n",
            "iat": now(), "exp": now() + 300,
        });
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(nbf);
        }
        app.idp.sign_jwt(claims)
    };
    assert_eq!(
        validator.validate(&token(Some(now() + 3600)), &keys, "n"),
        Err(IdTokenError::NotYetValid)
    );
    let claims = validator
        .validate(&token(Some(now() - 10)), &keys, "n")
        .unwrap();
    assert_eq!(claims["sub"], "sub-alice");
    assert!(validator.validate(&token(None), &keys, "n").is_ok());
}

// ---- item 9: malformed ID tokens -----------------------------------------------------------

#[tokio::test]
async fn a_malformed_id_token_is_401_invalid_id_token() {
    let app = TestApp::start().await;
    // Missing required claims.
    for claim in ["iat", "sub", "exp", "aud"] {
        app.idp.on_id_token(move |d| {
            d.claims.remove(claim);
        });
        assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    }
    // Not base64url, not a JWT, a JSON payload that is no object.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    for raw in [
        format!("{header}.!!!not*base64!!!.c2ln"),
        "not-a-jwt".to_owned(),
        format!("{header}.{}.c2ln", b64.encode(b"[1,2,3]")),
        String::new(),
    ] {
        app.idp
            .on_id_token(move |d| d.signer = Signer::Raw(raw.clone()));
        assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    }
    app.idp.clear_id_token_hook();
    // An `id_token` member that is not even a string.
    for value in [json!(42), json!({"alg": "none"})] {
        app.idp.on_token_response(move |r| {
            r.insert("id_token".into(), value.clone());
        });
        assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    }
}

#[tokio::test]
async fn a_token_response_without_id_token_or_json_stays_a_502() {
    let app = TestApp::start().await;
    for absent in [None, Some(Value::Null)] {
        app.idp.on_token_response(move |r| match &absent {
            None => {
                r.remove("id_token");
            }
            Some(v) => {
                r.insert("id_token".into(), v.clone());
            }
        });
        assert_login_refused(&app, StatusCode::BAD_GATEWAY, "no_id_token").await;
    }
    app.idp.clear_token_response_hook();
    app.idp.set_token_fault(Some(EndpointFault::Garbage));
    assert_login_refused(&app, StatusCode::BAD_GATEWAY, "token_endpoint_failed").await;
}

// ---- item 14: discovery and JWKS lifetimes -------------------------------------------------

#[tokio::test]
async fn a_removed_signing_key_stops_being_accepted_after_the_jwks_ttl() {
    let app = TestApp::start_with(
        |mut p| {
            p.jwks_ttl_secs = 1;
            p
        },
        |b| b,
    )
    .await;
    assert_logs_in(&app, &alice()).await;
    let fetches = app.idp.jwks_fetches();

    // The IdP withdraws its key (compromised, say); someone holding it goes on signing.
    let (kid, key) = app.idp.signing_key();
    app.idp.rotate_key(false);
    app.idp.on_id_token(move |d| {
        d.header.kid = Some(kid.clone());
        d.signer = Signer::Key(key.clone());
    });
    wait_past_one_second_ttl().await;
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    // One fetch for the expired set; the unknown kid found in it did not refetch again
    // (within `jwks_min_refetch_secs`, 30 s).
    assert_eq!(app.idp.jwks_fetches(), fetches + 1);

    // Tokens signed with the IdP's new key log in.
    app.idp.clear_id_token_hook();
    assert_logs_in(&app, &bob()).await;
}

#[tokio::test]
async fn expired_signing_keys_keep_serving_while_the_jwks_is_down() {
    let app = TestApp::start_with(
        |mut p| {
            p.jwks_ttl_secs = 1;
            // A failed fetch is retried after this interval: not within this test.
            p.jwks_min_refetch_secs = 3600;
            p
        },
        |b| b,
    )
    .await;
    assert_logs_in(&app, &alice()).await;
    let fetches = app.idp.jwks_fetches();
    app.idp.set_jwks_fault(Some(EndpointFault::Unavailable));
    wait_past_one_second_ttl().await;
    for _ in 0..3 {
        assert_logs_in(&app, &bob()).await;
    }
    assert_eq!(
        app.idp.jwks_fetches(),
        fetches + 1,
        "one refresh was tried, then the cached keys served without a fetch per login"
    );
}

#[tokio::test]
async fn discovery_is_refreshed_after_its_ttl() {
    let app = TestApp::start_with(
        |mut p| {
            p.discovery_ttl_secs = 1;
            p
        },
        |b| b,
    )
    .await;
    app.idp.advertise_iss_parameter(false);
    app.idp.send_iss_parameter(false);
    assert_logs_in(&app, &alice()).await;
    let fetches = app.idp.discovery_fetches();

    // The IdP now promises `iss` (and still leaves it out): once the cached document has
    // expired, the layer knows and refuses.
    app.idp.advertise_iss_parameter(true);
    wait_past_one_second_ttl().await;
    let client = browser();
    let response = app.login_with(&client, &bob()).await;
    assert_refused(response, StatusCode::UNAUTHORIZED, "missing_issuer").await;
    assert!(app.idp.discovery_fetches() > fetches);
}

#[tokio::test]
async fn an_expired_discovery_keeps_serving_while_the_idp_is_down() {
    let app = TestApp::start_with(
        |mut p| {
            p.discovery_ttl_secs = 1;
            p.discovery_retry_secs = 3600;
            p
        },
        |b| b,
    )
    .await;
    assert_logs_in(&app, &alice()).await;
    let fetches = app.idp.discovery_fetches();
    app.idp
        .set_discovery_fault(Some(EndpointFault::Unavailable));
    wait_past_one_second_ttl().await;
    for _ in 0..3 {
        assert_logs_in(&app, &bob()).await;
    }
    assert_eq!(
        app.idp.discovery_fetches(),
        fetches + 1,
        "one refresh was tried, then the cached document served without a fetch per login"
    );
}

/// Starts a login at the app with a fresh browser; returns the response.
async fn start_login(app: &TestApp) -> reqwest::Response {
    browser()
        .get(app.url("/auth/dev/login?return_to=/me"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn during_a_discovery_outage_logins_fail_at_once_without_a_fetch_each() {
    let app = TestApp::start_with(
        |mut p| {
            p.discovery_retry_secs = 3600;
            p
        },
        |b| b,
    )
    .await;
    app.idp
        .set_discovery_fault(Some(EndpointFault::Unavailable));
    for _ in 0..5 {
        let response = start_login(&app).await;
        assert_refused(response, StatusCode::BAD_GATEWAY, "idp_discovery_failed").await;
    }
    // Concurrent logins too: the first fetch fails, the others do not fetch again.
    let app = std::sync::Arc::new(app);
    let logins = (0..10).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { start_login(&app).await.status() })
    });
    for status in futures_util::future::join_all(logins).await {
        assert_eq!(status.unwrap(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(app.idp.discovery_fetches(), 1, "a fetch per login");
}

#[tokio::test]
async fn a_failed_discovery_is_retried_after_the_retry_interval() {
    let app = TestApp::start_with(
        |mut p| {
            p.discovery_retry_secs = 1;
            p
        },
        |b| b,
    )
    .await;
    app.idp
        .set_discovery_fault(Some(EndpointFault::Unavailable));
    let response = start_login(&app).await;
    assert_refused(response, StatusCode::BAD_GATEWAY, "idp_discovery_failed").await;
    app.idp.set_discovery_fault(None);
    wait_past_one_second_ttl().await;
    assert_logs_in(&app, &alice()).await;
    assert_eq!(app.idp.discovery_fetches(), 2);
}
