//! Logout with the identity provider, both ways, against the development IdP over HTTP:
//! back-channel logout tokens (every refusal of §2.6 through the endpoint, each leaving the
//! session alone), RP-initiated logout's round trip through the IdP's end-session endpoint
//! and its `state`, and front-channel logout.

mod common;
#[path = "support/flaky_sessions.rs"]
mod flaky_sessions;

use common::{TestApp, alice, bob, browser, location};
use flaky_sessions::FlakySessions;
use jit_provision::dev_idp::DevIdp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn with_backchannel() -> impl FnOnce(jit_provision::ProviderConfig) -> jit_provision::ProviderConfig
{
    |mut p| {
        p.backchannel_logout = true;
        p
    }
}

/// Posts a logout token to the app's back-channel endpoint, server to server.
async fn post_logout_token(app: &TestApp, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/auth/dev/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

/// The status, `code` and `error` of a back-channel answer, after checking its headers.
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "{status}: never cached"
    );
    assert!(
        response.headers().get("set-cookie").is_none(),
        "the back channel sets no cookie"
    );
    (status, response.json().await.unwrap())
}

/// Posts a valid logout token of the dev IdP naming `sub` and/or `sid`.
async fn send_logout(app: &TestApp, sub: Option<&str>, sid: Option<&str>) -> (StatusCode, Value) {
    let claims = app.idp.logout_token_claims(common::CLIENT_ID, sub, sid);
    answer(post_logout_token(app, &app.idp.sign_logout_token(claims)).await).await
}

async fn logged_in(app: &TestApp, client: &reqwest::Client) -> bool {
    app.me_with(client).await.status() == StatusCode::OK
}

#[tokio::test]
async fn a_logout_token_from_the_idp_ends_the_users_sessions() {
    let app = TestApp::start_with(with_backchannel(), |b| b).await;
    let (first, second) = (browser(), browser());
    app.login_with(&first, &alice()).await;
    app.login_with(&second, &alice()).await;
    let other = browser();
    app.login_with(&other, &bob()).await;
    assert!(logged_in(&app, &first).await && logged_in(&app, &second).await);
    assert_eq!(app.idp.sessions_of("sub-alice").len(), 2, "sid per login");

    // The IdP logs alice out: a token (sub and sid) per IdP session, posted to the app.
    assert_eq!(app.idp.logout_user("sub-alice").await, 2);
    assert!(!logged_in(&app, &first).await, "first session ended");
    assert!(!logged_in(&app, &second).await, "second session ended");
    assert!(logged_in(&app, &other).await, "bob's session is untouched");
}

#[tokio::test]
async fn a_logout_token_ends_what_it_names_sid_or_sub() {
    let app = TestApp::start_with(with_backchannel(), |b| b).await;
    let (first, second) = (browser(), browser());
    app.login_with(&first, &alice()).await;
    app.login_with(&second, &alice()).await;
    let sids = app.idp.sessions_of("sub-alice");

    // sid alone: that IdP session only (the first login's).
    let (status, body) = send_logout(&app, None, Some(&sids[0])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ended"], 1);
    assert!(!logged_in(&app, &first).await);
    assert!(logged_in(&app, &second).await);

    // sid of another subject with sub: both must match, nothing ends.
    let (status, body) = send_logout(&app, Some("sub-bob"), Some(&sids[1])).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(0)));
    assert!(logged_in(&app, &second).await);

    // sub alone: every session of the subject.
    let (status, body) = send_logout(&app, Some("sub-alice"), None).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(1)));
    assert!(!logged_in(&app, &second).await);
}

/// Every refusal of §2.6 through the endpoint: `400 invalid_request` with its code, and the
/// session it names goes on working.
#[tokio::test]
async fn every_bad_logout_token_is_refused_and_ends_nothing() {
    let app = TestApp::start_with(with_backchannel(), |b| b).await;
    let user = browser();
    app.login_with(&user, &alice()).await;
    let sid = app.idp.sessions_of("sub-alice").remove(0);
    let idp = &app.idp;
    let valid = || idp.logout_token_claims(common::CLIENT_ID, Some("sub-alice"), Some(&sid));
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut claims = valid();
        f(&mut claims);
        idp.sign_logout_token(claims)
    };
    let (kid, _) = idp.signing_key();
    let sign_with = |key: &EncodingKey, typ: &str, claims: Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    // A jti used once by a token naming nobody logged in, so alice stays logged in.
    let used = idp.sign_logout_token({
        let mut c = valid();
        c["sub"] = json!("sub-nobody");
        c["sid"] = json!("sid-nobody");
        c["jti"] = json!("jti-used-once");
        c
    });
    let (status, body) = answer(post_logout_token(&app, &used).await).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(0)));

    let cases: Vec<(&str, String)> = vec![
        (
            "bad_signature",
            sign_with(&DevIdp::unpublished_key(), "logout+jwt", valid()),
        ),
        (
            "wrong_audience",
            edit(&|c| c["aud"] = json!("another-client")),
        ),
        (
            "wrong_issuer",
            edit(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "missing_logout_event",
            edit(&|c| drop(c.as_object_mut().unwrap().remove("events"))),
        ),
        (
            "missing_logout_event",
            edit(&|c| {
                c["events"] = json!({ "http://schemas.openid.net/event/backchannel-logout": "x" })
            }),
        ),
        ("nonce_present", edit(&|c| c["nonce"] = json!("n-1"))),
        (
            "replayed_jti",
            edit(&|c| {
                c["jti"] = json!("jti-used-once");
            }),
        ),
        (
            "missing_sid_and_sub",
            edit(&|c| {
                let c = c.as_object_mut().unwrap();
                c.remove("sid");
                c.remove("sub");
            }),
        ),
        (
            "missing_jti",
            edit(&|c| drop(c.as_object_mut().unwrap().remove("jti"))),
        ),
        (
            "missing_iat",
            edit(&|c| drop(c.as_object_mut().unwrap().remove("iat"))),
        ),
        (
            "logout_token_expired",
            edit(&|c| c["exp"] = json!(common::now() - 3600)),
        ),
        (
            "issued_in_future",
            edit(&|c| c["iat"] = json!(common::now() + 3600)),
        ),
        ("wrong_token_type", idp.sign_jwt(valid())),
        (
            "disallowed_algorithm",
            format!(
                "{}.{}.",
                b64(json!({ "alg": "none", "typ": "logout+jwt" })),
                b64(valid())
            ),
        ),
        ("malformed_logout_token", "not-a-jwt".into()),
    ];
    for (code, token) in cases {
        let (status, body) = answer(post_logout_token(&app, &token).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{code}: {body}");
        assert_eq!(body["error"], "invalid_request", "{code}: {body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(
            logged_in(&app, &user).await,
            "{code}: the session still works"
        );
    }

    // No token, two tokens, another media type.
    let client = reqwest::Client::new();
    let url = app.url("/auth/dev/backchannel-logout");
    let none = client
        .post(&url)
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer(none).await.1["code"], "missing_logout_token");
    let valid_token = idp.sign_logout_token(valid());
    let two = client
        .post(&url)
        .form(&[
            ("logout_token", &valid_token),
            ("logout_token", &valid_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer(two).await.1["code"], "missing_logout_token");
    let json_body = client
        .post(&url)
        .json(&json!({ "logout_token": valid_token }))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(json_body).await;
    assert_eq!(
        (status, body["code"].clone()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!("unsupported_media_type")
        )
    );
    assert!(logged_in(&app, &user).await);

    // The valid token still works after all that (its jti was never used up by a refusal).
    let (status, body) = answer(post_logout_token(&app, &valid_token).await).await;
    assert_eq!(
        (status, body["ended"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );
    assert!(!logged_in(&app, &user).await);
    // ... and only once.
    let (status, body) = answer(post_logout_token(&app, &valid_token).await).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("replayed_jti"))
    );
}

#[tokio::test]
async fn the_back_channel_is_off_unless_enabled() {
    let app = TestApp::start().await;
    app.login(&alice()).await;
    let claims = app
        .idp
        .logout_token_claims(common::CLIENT_ID, Some("sub-alice"), None);
    let response = post_logout_token(&app, &app.idp.sign_logout_token(claims)).await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "passed to the app"
    );
    assert_eq!(app.me().await.status(), StatusCode::OK);
    assert_eq!(app.layer.backchannel_logout_uri("dev"), None);
    let app = TestApp::start_with(with_backchannel(), |b| b).await;
    assert_eq!(
        app.layer.backchannel_logout_uri("dev"),
        Some(app.url("/auth/dev/backchannel-logout"))
    );
    let get = reqwest::get(app.url("/auth/dev/backchannel-logout"))
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
}

fn with_rp_initiated() -> impl FnOnce(jit_provision::ProviderConfig) -> jit_provision::ProviderConfig
{
    |mut p| {
        p.rp_initiated_logout = true;
        p
    }
}

fn query(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The redirect to the end-session endpoint carries the ID token: its `Location` is marked
/// sensitive (left out of header logs).
#[tokio::test]
async fn the_rp_initiated_logout_redirect_is_marked_sensitive() {
    use tower::ServiceExt as _;
    let app = TestApp::start_with(with_rp_initiated(), |b| b).await;
    let login = app.login_with(&browser(), &alice()).await;
    let pair = common::session_pair(&login);
    let service = tower::Layer::layer(
        &app.layer,
        axum::Router::new().route("/", axum::routing::get(|| async { "app" })),
    );
    let response = service
        .oneshot(
            http::Request::post("/auth/logout")
                .header(http::header::COOKIE, pair)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = &response.headers()[http::header::LOCATION];
    assert!(to.to_str().unwrap().contains("id_token_hint="), "{to:?}");
    assert!(to.is_sensitive());
}

#[tokio::test]
async fn rp_initiated_logout_goes_through_the_idp_and_back_to_return_to() {
    let app = TestApp::start_with(with_rp_initiated(), |b| b).await;
    let user = &app.client;
    app.login(&alice()).await;
    assert_eq!(app.idp.sessions_of("sub-alice").len(), 1);

    let logout = user
        .post(app.url("/auth/logout?return_to=/after%3Fx%3D1"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let end_session = location(&logout);
    assert!(
        end_session.starts_with(&format!("{}/end_session?", app.idp.issuer())),
        "{end_session}"
    );
    assert_eq!(
        query(&end_session, "client_id").as_deref(),
        Some(common::CLIENT_ID)
    );
    assert_eq!(
        query(&end_session, "post_logout_redirect_uri"),
        app.layer.post_logout_redirect_uri("dev")
    );
    assert_eq!(
        query(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(app.url("/auth/logout/done").as_str())
    );
    let state = query(&end_session, "state").expect("a state");
    assert!(state.len() >= 22);
    let hint = query(&end_session, "id_token_hint").expect("the session's ID token");
    assert_eq!(hint.split('.').count(), 3);
    // The local session is over already.
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);

    // The IdP ends its session and sends the browser back with the state.
    let back = user.get(&end_session).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let done = location(&back);
    assert_eq!(
        done,
        format!("{}?state={state}", app.url("/auth/logout/done"))
    );
    assert!(
        app.idp.sessions_of("sub-alice").is_empty(),
        "the IdP session ended"
    );
    let landed = user.get(&done).send().await.unwrap();
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&landed), "/after?x=1");
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);

    // The state is single-use, even with a copy of the logout cookie.
    let again = user.get(&done).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.headers().get("location").is_none());
}

#[tokio::test]
async fn the_logout_return_needs_this_browsers_state() {
    let app = TestApp::start_with(with_rp_initiated(), |b| b).await;
    app.login(&alice()).await;
    let logout = app
        .client
        .post(app.url("/auth/logout?return_to=/after"))
        .send()
        .await
        .unwrap();
    let cookies = common::cookie_header(&logout);
    let state = query(&location(&logout), "state").unwrap();
    let done = |state: &str| app.url(&format!("/auth/logout/done?state={state}"));
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Another browser (no logout cookie), a wrong state, no state: an error page, no redirect.
    for (request, code) in [
        (plain.get(done(&state)), "unknown_logout_state"),
        (
            plain
                .get(done("forged-state-0123456789"))
                .header("cookie", &cookies),
            "unknown_logout_state",
        ),
        (
            plain
                .get(app.url("/auth/logout/done"))
                .header("cookie", &cookies),
            "unknown_logout_state",
        ),
    ] {
        let response = request
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("location").is_none());
        assert_eq!(common::error_code(response).await, code);
    }
    // With its cookie, once; the copy of the cookie does not make it twice.
    let first = plain
        .get(done(&state))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&first), "/after");
    let second = plain
        .get(done(&state))
        .header("cookie", &cookies)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::BAD_REQUEST);
    assert_eq!(common::error_code(second).await, "replayed_logout_state");
}

#[tokio::test]
async fn without_rp_initiated_logout_the_logout_stays_local() {
    let app = TestApp::start().await;
    app.login(&alice()).await;
    let logout = app.logout().await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&logout), "/");
    assert_eq!(
        app.idp.sessions_of("sub-alice").len(),
        1,
        "the IdP session lives on"
    );
    assert_eq!(app.layer.post_logout_redirect_uri("dev"), None);
}

#[tokio::test]
async fn front_channel_logout_ends_the_named_session_in_a_page_only_the_idp_may_frame() {
    let app = TestApp::start_with(
        |mut p| {
            p.frontchannel_logout = true;
            p
        },
        |b| b,
    )
    .await;
    app.login(&alice()).await;
    let sid = app.idp.sessions_of("sub-alice").remove(0);
    let url = app.url("/auth/dev/frontchannel-logout");
    let iss = app.idp.issuer().to_owned();
    let plain = reqwest::Client::new();

    let wrong = plain
        .get(&url)
        .query(&[("iss", "https://evil.example"), ("sid", &sid)])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.headers()["content-security-policy"],
        format!("frame-ancestors {iss}")
    );
    assert_eq!(common::error_code(wrong).await, "wrong_issuer");
    assert_eq!(app.me().await.status(), StatusCode::OK);

    let response = plain
        .get(&url)
        .query(&[("iss", &iss), ("sid", &sid)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["content-security-policy"],
        format!("frame-ancestors {iss}")
    );
    assert!(response.text().await.unwrap().contains("Logged out"));
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);

    // sid without iss (or iss without sid): refused, nothing ends.
    app.login(&alice()).await;
    let sid = app.idp.sessions_of("sub-alice").pop().unwrap();
    for query in [vec![("sid", sid.as_str())], vec![("iss", iss.as_str())]] {
        let response = plain
            .get(&url)
            .query(&query)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(common::error_code(response).await, "missing_iss_or_sid");
    }
    assert_eq!(app.me().await.status(), StatusCode::OK);

    // Neither (the provider does not say it sends them): the browser's own session ends.
    app.login(&alice()).await;
    let other = browser();
    app.login_with(&other, &alice()).await;
    let response = app.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);
    assert!(
        logged_in(&app, &other).await,
        "another browser's session lives on"
    );
}

#[tokio::test]
async fn a_session_store_outage_is_a_503_and_the_idp_may_retry_with_a_new_token() {
    let sessions = FlakySessions::default();
    let store = sessions.clone();
    let app = TestApp::start_with(with_backchannel(), move |b| b.session_store(store)).await;
    app.login(&alice()).await;
    sessions
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = send_logout(&app, Some("sub-alice"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["code"], "session_store_unavailable");
    assert_eq!(app.me().await.status(), StatusCode::OK, "nothing ended");

    sessions
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = send_logout(&app, Some("sub-alice"), None).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(1)));
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);
}

/// An identity provider whose discovery cannot be loaded: `502 idp_keys_unavailable` with a
/// fixed description; the transport error (the provider's URL, the socket error) only in the
/// log.
#[tokio::test]
async fn an_unreachable_provider_is_a_502_that_tells_no_internals() {
    use tower::ServiceExt as _;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut provider =
        jit_provision::ProviderConfig::new(format!("http://127.0.0.1:{port}"), "app")
            .client_secret("secret");
    provider.backchannel_logout = true;
    let layer = jit_provision::JitLayer::builder()
        .public_url("https://app.example.com")
        .provider("dev", provider)
        .store(jit_provision::store::MemoryStore::new())
        .build()
        .unwrap();
    let service = tower::Layer::layer(
        &layer,
        axum::Router::new().route("/", axum::routing::get(|| async { "app" })),
    );
    let response = service
        .oneshot(
            http::Request::post("/auth/dev/backchannel-logout")
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(axum::body::Body::from("logout_token=a.b.c"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "idp_keys_unavailable", "{body}");
    assert_eq!(
        body["error_description"],
        "the identity provider's keys could not be loaded: the provider's discovery document could not be loaded"
    );
}

#[tokio::test]
async fn logout_settings_are_checked_at_build() {
    let build = |provider: jit_provision::ProviderConfig| {
        jit_provision::JitLayer::builder()
            .public_url("https://app.example.com")
            .provider("corp", provider)
            .store(jit_provision::store::MemoryStore::new())
            .build()
    };
    let corp = || jit_provision::ProviderConfig::new("https://login.example.com", "app");
    for path in ["https://evil.example/out", "//evil.example", "out", "/a\\b"] {
        let mut provider = corp();
        provider.rp_initiated_logout = true;
        provider.post_logout_redirect_path = Some(path.into());
        let err = build(provider).unwrap_err().to_string();
        assert!(err.contains("post_logout_redirect_path"), "{path}: {err}");
    }
    let mut provider = corp();
    provider.rp_initiated_logout = true;
    provider.post_logout_redirect_path = Some("/signed-out".into());
    let layer = build(provider).unwrap();
    assert_eq!(
        layer.post_logout_redirect_uri("corp").as_deref(),
        Some("https://app.example.com/signed-out")
    );
    let mut provider = corp();
    provider.frontchannel_logout = true;
    let layer = build(provider).unwrap();
    assert_eq!(
        layer.frontchannel_logout_uri("corp").as_deref(),
        Some("https://app.example.com/auth/corp/frontchannel-logout")
    );
    assert_eq!(layer.backchannel_logout_uri("corp"), None);
    assert_eq!(layer.backchannel_logout_uri("nobody"), None);
}

#[tokio::test]
async fn a_configured_post_logout_path_is_where_the_idp_sends_the_browser() {
    let app = TestApp::start_with(
        |mut p| {
            p.rp_initiated_logout = true;
            p.post_logout_redirect_path = Some("/signed-out".into());
            p
        },
        |b| b,
    )
    .await;
    app.login(&alice()).await;
    let logout = app.logout().await;
    let end_session = location(&logout);
    assert_eq!(
        query(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(app.url("/signed-out").as_str())
    );
    // The dev IdP only accepts registered URIs (the harness registers /auth/logout/done).
    let refused = app.client.get(&end_session).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.me().await.status(),
        StatusCode::UNAUTHORIZED,
        "logged out locally anyway"
    );
}

#[tokio::test]
async fn a_token_refused_for_an_outage_succeeds_on_retry_and_only_once() {
    let sessions = FlakySessions::default();
    let store = sessions.clone();
    let app = TestApp::start_with(with_backchannel(), move |b| b.session_store(store)).await;
    let (first, second) = (browser(), browser());
    app.login_with(&first, &alice()).await;
    app.login_with(&second, &alice()).await;
    let token = app.idp.sign_logout_token(app.idp.logout_token_claims(
        common::CLIENT_ID,
        Some("sub-alice"),
        None,
    ));
    sessions
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = answer(post_logout_token(&app, &token).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "session_store_unavailable");
    assert!(logged_in(&app, &first).await, "nothing ended");

    // The IdP retries the same token once the store is back: the logout happens.
    sessions
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = answer(post_logout_token(&app, &token).await).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(2)));
    assert!(!logged_in(&app, &first).await && !logged_in(&app, &second).await);

    // Delivered, it is used up: a replay is refused and ends nothing, not even a session
    // begun after the logout.
    let later = browser();
    app.login_with(&later, &alice()).await;
    let (status, body) = answer(post_logout_token(&app, &token).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "replayed_jti");
    assert!(logged_in(&app, &later).await);
}

#[tokio::test]
async fn a_logout_token_ends_only_sessions_created_by_its_iat() {
    let app = TestApp::start_with(with_backchannel(), |b| b).await;
    app.login(&alice()).await;
    let signed_at = |iat: i64, jti: &str| {
        let mut claims = app
            .idp
            .logout_token_claims(common::CLIENT_ID, Some("sub-alice"), None);
        claims["iat"] = json!(iat);
        claims["jti"] = json!(jti);
        app.idp.sign_logout_token(claims)
    };
    // Issued two minutes ago (within its validity): the session is younger, it stays.
    let before = signed_at(common::now() - 120, "jti-before-the-login");
    let (status, body) = answer(post_logout_token(&app, &before).await).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(0)));
    assert_eq!(app.me().await.status(), StatusCode::OK);
    // Issued now: the session existed, it ends.
    let now = signed_at(common::now(), "jti-after-the-login");
    let (status, body) = answer(post_logout_token(&app, &now).await).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(1)));
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);
}

/// A replay guard of an application that only implements `first_use` (the provided
/// `was_used` answers "not known").
#[derive(Clone, Default)]
struct RecordOnlyGuard(jit_provision::replay::MemoryReplayGuard);

impl jit_provision::replay::ReplayGuard for RecordOnlyGuard {
    async fn first_use(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, jit_provision::store::StoreError> {
        self.0.first_use(key, ttl).await
    }
}

#[tokio::test]
async fn with_a_guard_that_cannot_look_up_a_replay_ends_no_session_younger_than_the_token() {
    use jit_provision::session::{MemorySessionStore, SessionRecord, SessionStore};
    let sessions = MemorySessionStore::new();
    let store = sessions.clone();
    let app = TestApp::start_with(with_backchannel(), move |b| {
        b.session_store(store)
            .replay_guard(RecordOnlyGuard::default())
    })
    .await;
    let now = common::now();
    let record = |id: &str, created: i64| {
        SessionRecord::new(id, "PRIMARY", "1", "dev", "sub-alice", created, now + 3600)
    };
    assert!(
        sessions
            .create_session(&record("old", now - 300))
            .await
            .unwrap()
    );
    let mut claims = app
        .idp
        .logout_token_claims(common::CLIENT_ID, Some("sub-alice"), None);
    claims["iat"] = json!(now - 120);
    let token = app.idp.sign_logout_token(claims);
    let (status, body) = answer(post_logout_token(&app, &token).await).await;
    assert_eq!((status, body["ended"].clone()), (StatusCode::OK, json!(1)));

    // Later: a session that existed at the logout but had no record yet (a cookie of an
    // earlier release, adopted since) and one begun after it.
    assert!(
        sessions
            .create_session(&record("adopted", now - 200))
            .await
            .unwrap()
    );
    assert!(
        sessions
            .create_session(&record("young", now))
            .await
            .unwrap()
    );
    let (status, body) = answer(post_logout_token(&app, &token).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "replayed_jti");
    let ended = |id: &'static str| {
        let sessions = sessions.clone();
        async move {
            sessions
                .get_session(id)
                .await
                .unwrap()
                .unwrap()
                .ended_at
                .is_some()
        }
    };
    assert!(ended("old").await && ended("adopted").await);
    assert!(
        !ended("young").await,
        "begun after the logout: untouched by the replay"
    );
}
