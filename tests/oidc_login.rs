//! End-to-end OpenID Connect logins through the layer against the development IdP, which
//! signs real RS256 tokens: provisioning, updates, and every ID-token rejection.

mod common;

use common::*;
use jit_provision::config::Protocol;
use jit_provision::dev_idp::{DevIdp, IdTokenDraft, Signer};
use jit_provision::store::{IdentityKey, UserStore};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn first_login_creates_changed_claims_update_unchanged_write_nothing() {
    let app = TestApp::start().await;
    let counters = app.store.inner.counters();

    let response = app.login(&alice()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/me");
    assert!(sets_session(&response));
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["groups"], json!(["staff"]));
    assert_eq!(me["provider"], "dev");
    assert_eq!(me["subject"], "sub-alice");
    assert_eq!((counters.creates(), counters.updates()), (1, 0));

    // Same claims again: nothing written.
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!((counters.creates(), counters.updates()), (1, 0));

    // Changed email and groups: one update, same user.
    let mut changed = alice();
    changed.claims["email"] = json!("alice@new.example.com");
    changed.claims["groups"] = json!(["staff", "admins"]);
    assert_eq!(app.login(&changed).await.status(), StatusCode::SEE_OTHER);
    assert_eq!((counters.creates(), counters.updates()), (1, 1));
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["email"], "alice@new.example.com");
    assert_eq!(me["groups"], json!(["admins", "staff"]));
    assert_eq!(app.store.inner.user_count(), 1);

    // The identity key is (provider, subject): a new email is not a new user, and
    // another subject with alice's email is another user.
    let mut other = bob();
    other.claims["email"] = json!("alice@new.example.com");
    assert_eq!(app.login(&other).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.inner.user_count(), 2);
}

/// Logs in with the IdP rewriting its ID token; asserts the login is refused with
/// `status`/`code`, that no user exists and that no session was issued.
async fn assert_login_refused(app: &TestApp, status: StatusCode, code: &str) {
    let client = browser();
    let response = app.login_with(&client, &alice()).await;
    assert_refused(response, status, code).await;
    assert_eq!(app.store.inner.user_count(), 0, "a user was written");
    assert_eq!(
        app.me_with(&client).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn refused_with(hook: impl Fn(&mut IdTokenDraft) + Send + Sync + 'static) -> TestApp {
    let app = TestApp::start().await;
    app.idp.on_id_token(hook);
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    app
}

#[tokio::test]
async fn bad_signature_is_refused() {
    refused_with(|d| d.signer = Signer::Key(DevIdp::unpublished_key())).await;
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    refused_with(|d| {
        d.claims.insert("iss".into(), json!("https://evil.example"));
    })
    .await;
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    refused_with(|d| {
        d.claims.insert("aud".into(), json!("another-app"));
    })
    .await;
    // An extra audience we do not trust is refused too.
    refused_with(|d| {
        d.claims
            .insert("aud".into(), json!([CLIENT_ID, "untrusted"]));
        d.claims.insert("azp".into(), json!(CLIENT_ID));
    })
    .await;
}

#[tokio::test]
async fn several_audiences_need_azp_equal_to_our_client() {
    let trusting = |p: jit_provision::ProviderConfig| {
        let mut p = p;
        p.trusted_audiences = vec!["api".into()];
        p
    };
    // azp names the other audience: refused.
    let app = TestApp::start_with(trusting, |b| b).await;
    app.idp.on_id_token(|d| {
        d.claims.insert("aud".into(), json!([CLIENT_ID, "api"]));
        d.claims.insert("azp".into(), json!("api"));
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    // No azp at all with several audiences: refused.
    app.idp.on_id_token(|d| {
        d.claims.insert("aud".into(), json!([CLIENT_ID, "api"]));
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    // azp is us: accepted (the control case).
    app.idp.on_id_token(|d| {
        d.claims.insert("aud".into(), json!([CLIENT_ID, "api"]));
        d.claims.insert("azp".into(), json!(CLIENT_ID));
    });
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn expired_token_is_refused() {
    refused_with(|d| {
        d.claims.insert("iat".into(), json!(now() - 7200));
        d.claims.insert("exp".into(), json!(now() - 3600));
    })
    .await;
}

#[tokio::test]
async fn token_issued_in_the_future_is_refused() {
    refused_with(|d| {
        d.claims.insert("iat".into(), json!(now() + 3600));
        d.claims.insert("exp".into(), json!(now() + 7200));
    })
    .await;
}

#[tokio::test]
async fn clock_skew_within_bounds_is_accepted() {
    let app = TestApp::start().await;
    // Expired 30 s ago and issued 30 s ahead: inside the default 60 s skew.
    app.idp.on_id_token(|d| {
        d.claims.insert("iat".into(), json!(now() + 30));
        d.claims.insert("exp".into(), json!(now() - 30));
    });
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn nonce_mismatch_is_refused() {
    refused_with(|d| {
        d.claims.insert("nonce".into(), json!("not-the-nonce"));
    })
    .await;
}

#[tokio::test]
async fn missing_nonce_is_refused() {
    refused_with(|d| {
        d.claims.remove("nonce");
    })
    .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    refused_with(|d| {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(Value::Object(d.claims.clone()).to_string());
        d.signer = Signer::Raw(format!("{header}.{claims}."));
    })
    .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let app = TestApp::start().await;
    let pem = app.idp.public_key_pem();
    app.idp.on_id_token(move |d| {
        d.header.alg = Algorithm::HS256;
        d.signer = Signer::Key(EncodingKey::from_secret(pem.as_bytes()));
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_refused_and_rate_limited() {
    let app = TestApp::start().await;
    app.idp.on_id_token(|d| {
        d.header.kid = Some("ghost".into());
        d.signer = Signer::Key(DevIdp::unpublished_key());
    });
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    // One fetch at discovery, one refetch for the unknown kid.
    assert_eq!(app.idp.jwks_fetches(), 2);
    // A second unknown kid within the refetch interval does not refetch again.
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
    assert_eq!(app.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn absent_kid_with_several_published_keys_is_refused() {
    let app = TestApp::start().await;
    app.idp.rotate_key(true);
    app.idp.on_id_token(|d| d.header.kid = None);
    assert_login_refused(&app, StatusCode::UNAUTHORIZED, "invalid_id_token").await;
}

#[tokio::test]
async fn key_rotation_is_accepted_after_one_refetch() {
    let app = TestApp::start().await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.idp.jwks_fetches(), 1);
    let old = app.idp.current_kid();
    app.idp.rotate_key(false);
    assert_ne!(app.idp.current_kid(), old);
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.idp.jwks_fetches(), 2);
    // And the new key keeps working without further fetches.
    assert_eq!(app.login(&bob()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn state_mismatch_is_refused() {
    let app = TestApp::start().await;
    let callback = app.callback_url(&app.client, &alice()).await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{}x", &v[..v.len() - 1])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let response = app.client.get(url.as_str()).send().await.unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "unknown_state").await;
    assert_eq!(app.store.inner.user_count(), 0);
    // No state at all.
    let response = app
        .client
        .get(app.url("/auth/dev/callback?code=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "missing_state");
}

#[tokio::test]
async fn replayed_callback_is_refused_even_with_the_original_cookie() {
    let app = TestApp::start().await;
    // An attacker who captured the login start's cookies (pending login and binder) and the
    // callback URL.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = plain
        .get(app.url("/auth/dev/login?return_to=/me"))
        .send()
        .await
        .unwrap();
    let cookie = cookie_header(&start);
    let approved = app.approve(&plain, &location(&start), &alice()).await;
    let callback = location(&approved);
    let first = plain
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let tokens_before = app.idp.token_requests();
    let replay = plain
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(!sets_session(&replay));
    assert_eq!(error_code(replay).await, "replayed_state");
    // Refused before the code reached the token endpoint again.
    assert_eq!(app.idp.token_requests(), tokens_before);
}

#[tokio::test]
async fn idp_error_response_is_a_clear_401() {
    let app = TestApp::start().await;
    let authorize = app.start_login(&app.client, "/").await;
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let response = app
        .client
        .get(app.url(&format!(
            "/auth/dev/callback?error=access_denied&state={state}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "idp_refused_login");
}

#[tokio::test]
async fn concurrent_first_logins_of_one_identity_create_exactly_one_user() {
    let app = std::sync::Arc::new(TestApp::start().await);
    let logins = (0..200).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let client = browser();
            let callback = app.callback_url(&client, &alice()).await;
            client.get(callback).send().await.unwrap().status()
        })
    });
    let statuses = futures_util::future::join_all(logins).await;
    for status in statuses {
        assert_eq!(status.unwrap(), StatusCode::SEE_OTHER);
    }
    assert_eq!(app.store.inner.counters().creates(), 1);
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn return_to_must_be_a_same_origin_path() {
    let app = TestApp::start().await;
    for bad in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let response = app
            .client
            .get(app.url(&format!("/auth/dev/login?return_to={encoded}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(response).await, "invalid_return_to");
    }
    let authorize = app.start_login(&app.client, "/reports%3Fyear%3D2026").await;
    let approved = app.approve(&app.client, &authorize, &alice()).await;
    let response = app.client.get(location(&approved)).send().await.unwrap();
    assert_eq!(location(&response), "/reports?year=2026");
}

#[tokio::test]
async fn jit_off_refuses_unknown_users_with_403_and_writes_nothing() {
    let app = TestApp::start_with(
        |p| p.mode(jit_provision::config::ProvisioningMode::Off),
        |b| b,
    )
    .await;
    let response = app.login(&alice()).await;
    assert_refused(response, StatusCode::FORBIDDEN, "jit_disabled").await;
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn missing_username_claim_is_403_naming_it() {
    let app = TestApp::start().await;
    let mut nameless = alice();
    nameless.claims.remove("preferred_username");
    let response = app.login(&nameless).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "missing_attribute");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("preferred_username")
    );
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn locked_user_cannot_log_in_and_loses_its_session() {
    let app = TestApp::start().await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let user = app
        .store
        .inner
        .find_by_identity(&IdentityKey {
            provider: "dev".into(),
            subject: "sub-alice".into(),
        })
        .await
        .unwrap()
        .unwrap();
    app.store.inner.set_locked(user.id, true).await.unwrap();
    app.layer.forget_user(user.id).await;
    let response = app.me().await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.login(&alice()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "user_locked");
    // Still locked: logging in never unlocks.
    assert!(app.store.inner.users()[0].locked);
}

#[tokio::test]
async fn username_taken_by_another_account_is_409_and_nothing_linked() {
    let app = TestApp::start().await;
    app.store
        .inner
        .insert_local(&jit_provision::store::Profile::new("alice"))
        .unwrap();
    let response = app.login(&alice()).await;
    assert_refused(response, StatusCode::CONFLICT, "username_taken").await;
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn store_outage_is_503_with_no_session_and_nothing_written() {
    let app = TestApp::start().await;
    app.store.set_down(true);
    let response = app.login(&alice()).await;
    assert_refused(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
    app.store.set_down(false);
    assert_eq!(app.store.inner.user_count(), 0);
    // A session whose user is not cached gets a 503 too, not a silent anonymous answer.
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let id = app.store.inner.users()[0].id;
    app.layer.forget_user(id).await;
    app.store.set_down(true);
    assert_eq!(app.me().await.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.store.set_down(false);
    assert_eq!(app.me().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_ends_the_session_even_for_a_copied_cookie() {
    let app = TestApp::start().await;
    let response = app.login(&alice()).await;
    let session_cookie = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("jit_session="))
        .unwrap();
    let pair = session_cookie.split(';').next().unwrap().to_owned();
    let plain = reqwest::Client::new();
    let copied = plain
        .get(app.url("/me"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), StatusCode::OK);
    let out = app.logout().await;
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("jit_session=;"))
    );
    let copied = plain
        .get(app.url("/me"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(copied.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forged_or_foreign_session_cookie_is_ignored() {
    let app = TestApp::start().await;
    let plain = reqwest::Client::new();
    for forged in ["jit_session=abc", "jit_session=", "jit_session=%00%01"] {
        let response = plain
            .get(app.url("/"))
            .header("cookie", forged)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "hello stranger");
    }
    // A cookie sealed by another deployment's key does not open here.
    let other = TestApp::start().await;
    let response = other.login(&alice()).await;
    let pair = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("jit_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let response = plain
        .get(app.url("/me"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn form_post_response_mode_logs_in() {
    let app = TestApp::start_with(
        |p| p.response_mode(jit_provision::config::ResponseMode::FormPost),
        |b| b,
    )
    .await;
    let authorize = app.start_login(&app.client, "/me").await;
    assert!(authorize.contains("response_mode=form_post"));
    let page = app.approve(&app.client, &authorize, &alice()).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let action = between(&html, "action=\"", "\"");
    let field = |name: &str| between(&html, &format!("name=\"{name}\" value=\""), "\"");
    let form = [
        ("code", field("code")),
        ("state", field("state")),
        ("iss", field("iss")),
    ];
    let response = app.client.post(action).form(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(sets_session(&response));
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
}

#[tokio::test]
async fn userinfo_claims_fill_what_the_id_token_lacks_but_never_override_it() {
    let app = TestApp::start_with(
        |mut p| {
            p.userinfo = true;
            p
        },
        |b| b,
    )
    .await;
    app.idp.on_id_token(|d| {
        d.claims.remove("groups");
        d.claims
            .insert("email".into(), json!("from-id-token@example.com"));
    });
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["groups"], json!(["staff"]));
    assert_eq!(me["email"], "from-id-token@example.com");
}

#[tokio::test]
async fn idp_down_at_login_start_is_502() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = TestApp::start_with(
        move |mut p| {
            if let Protocol::Oidc { issuer, .. } = &mut p.protocol {
                *issuer = format!("http://{closed}");
            }
            p
        },
        |b| b,
    )
    .await;
    let response = app
        .client
        .get(app.url("/auth/dev/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(
        !set_cookies(&response)
            .iter()
            .any(|c| c.contains("jit_login_"))
    );
    assert_eq!(error_code(response).await, "idp_discovery_failed");
}

#[tokio::test]
async fn errors_render_html_for_browsers() {
    let app = TestApp::start().await;
    let response = app
        .client
        .get(app.url("/auth/nope/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("unknown_provider"));
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap() + start.len();
    let to = text[from..].find(end).unwrap() + from;
    &text[from..to]
}
