//! The layer as a tower service (no socket on the app side): cookie attributes in secure
//! mode, the form_post callback, limits, routing, the extractor's rejection, and the headers
//! marked sensitive for tracing middleware.

#[path = "support/unread_body.rs"]
mod unread_body;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use std::sync::atomic::Ordering;

use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
use jit_provision::store::MemoryStore;
use jit_provision::{CurrentUser, JitLayer, ProviderConfig, Unauthenticated};
use tower::ServiceExt;

const APP: &str = "https://app.example.com";

async fn secure_app(prefix: &str) -> (Router, DevIdp, MemoryStore) {
    let idp = DevIdp::builder()
        .client(DevClient::new("app", "secret").redirect_uri(format!("{APP}{prefix}/dev/callback")))
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let store = MemoryStore::new();
    let layer = JitLayer::builder()
        .public_url(APP)
        .path_prefix(prefix)
        .provider(
            "dev",
            ProviderConfig::new(idp.issuer(), "app")
                .client_secret("secret")
                .response_mode(jit_provision::config::ResponseMode::FormPost),
        )
        .unauthenticated(Unauthenticated::RedirectToLogin("dev".into()))
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move { u.username.clone() }),
        )
        // What the application sees of the credentials, and a cookie of its own.
        .route(
            "/headers",
            get(|headers: HeaderMap| async move {
                let sensitive = |name| headers.get(name).map(http::HeaderValue::is_sensitive);
                (
                    [(header::SET_COOKIE, "app=1; Path=/")],
                    format!(
                        "cookie={:?} authorization={:?}",
                        sensitive(header::COOKIE),
                        sensitive(header::AUTHORIZATION)
                    ),
                )
            }),
        )
        .layer(layer);
    (app, idp, store)
}

fn set_cookies(response: &http::Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn user() -> DevUser {
    DevUser::new("s-1", "carol", "carol@example.com", "Carol", &[])
}

/// Login start → IdP approval → the form_post fields, as a browser would carry them.
async fn start_and_approve(app: &Router, prefix: &str) -> (String, Vec<(String, String)>) {
    let start = app
        .clone()
        .oneshot(
            Request::get(format!("{prefix}/dev/login?return_to=/me"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let cookies = set_cookies(&start);
    let pending = cookies.last().unwrap().clone();
    // Reaches a cross-site POST callback: SameSite=None, so Secure; scoped to the provider.
    assert!(pending.starts_with("__Secure-jit_login_"), "{pending}");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=None",
        &format!("Path={prefix}/dev/"),
    ] {
        assert!(pending.contains(attr), "{pending} lacks {attr}");
    }
    let authorize = start.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(authorize.contains("code_challenge_method=S256"));
    assert!(authorize.contains("nonce="));
    let form = DevIdp::approve_form(&authorize, &user());
    let page = reqwest::Client::new()
        .post(format!(
            "{}/authorize",
            url::Url::parse(&authorize)
                .unwrap()
                .origin()
                .ascii_serialization()
        ))
        .form(&form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let from = page.find(&marker).unwrap() + marker.len();
        page[from..from + page[from..].find('"').unwrap()].to_owned()
    };
    let fields = vec![
        ("code".to_owned(), field("code")),
        ("state".to_owned(), field("state")),
        ("iss".to_owned(), field("iss")),
    ];
    // The browser sends back the pending login and its binder.
    let cookie = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    (cookie, fields)
}

fn form_post(prefix: &str, cookie: &str, fields: &[(String, String)]) -> Request<Body> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    Request::post(format!("{prefix}/dev/callback"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn secure_cookies_carry_every_attribute_through_a_form_post_login() {
    let (app, idp, store) = secure_app("/auth").await;
    // The development IdP's default key is P-256: the login below verifies an ES256 token.
    let get = |path: &str| reqwest::get(format!("{}{path}", idp.issuer()));
    let discovery: serde_json::Value = get("/.well-known/openid-configuration")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let jwks: serde_json::Value = get("/jwks").await.unwrap().json().await.unwrap();
    assert_eq!(
        (
            jwks["keys"][0]["kty"].as_str(),
            jwks["keys"][0]["crv"].as_str()
        ),
        (Some("EC"), Some("P-256"))
    );
    let (cookie, fields) = start_and_approve(&app, "/auth").await;
    let response = app
        .clone()
        .oneshot(form_post("/auth", &cookie, &fields))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/me");
    let cookies = set_cookies(&response);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-jit_session="))
        .unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(
        !session.contains("Domain="),
        "__Host- cookies carry no Domain"
    );
    // The pending login is deleted.
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Secure-jit_login_") && c.contains("Max-Age=0"))
    );
    assert_eq!(store.user_count(), 1);

    let me = app
        .oneshot(
            Request::get("/me")
                .header(header::COOKIE, session.split(';').next().unwrap())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        &me.into_body().collect().await.unwrap().to_bytes()[..],
        b"carol"
    );
}

#[tokio::test]
async fn callback_body_limits_and_media_type() {
    let (app, _idp, store) = secure_app("/auth").await;
    let huge = vec![(
        "state".to_owned(),
        "x".repeat(jit_provision::MAX_CALLBACK_BODY + 1),
    )];
    let response = app
        .clone()
        .oneshot(form_post("/auth", "", &huge))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let json = Request::post("/auth/dev/callback")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let response = app.clone().oneshot(json).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Duplicated parameters are malformed (RFC 6749 3.1).
    let dup = vec![
        ("state".to_owned(), "a".repeat(22)),
        ("state".to_owned(), "b".repeat(22)),
    ];
    let response = app.oneshot(form_post("/auth", "", &dup)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(store.user_count(), 0);
}

/// Every `Set-Cookie` of `response` is marked sensitive, and a `TraceLayer`'s `Debug` of the
/// headers shows none of their values.
fn assert_set_cookies_sensitive(response: &http::Response<Body>) {
    let values: Vec<_> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .collect();
    assert!(!values.is_empty(), "no Set-Cookie to check");
    for value in &values {
        assert!(value.is_sensitive(), "{value:?} is not marked sensitive");
    }
    let logged = format!("{:?}", response.headers());
    assert!(logged.contains("Sensitive"), "{logged}");
    for value in values {
        let value = value.to_str().unwrap();
        assert!(!logged.contains(value), "{logged} shows {value}");
    }
}

#[tokio::test]
async fn credentials_are_marked_sensitive_inside_and_set_cookie_outside() {
    let (app, _idp, _store) = secure_app("/auth").await;
    // The application behind the layer sees Cookie and Authorization marked sensitive; its
    // own Set-Cookie, and the layer's deletion of a stale session cookie, leave marked.
    let response = app
        .clone()
        .oneshot(
            Request::get("/headers")
                .header(header::COOKIE, "__Host-jit_session=stale; theme=dark")
                .header(header::AUTHORIZATION, "Basic YWxpY2U6c2VjcmV0")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies = set_cookies(&response);
    assert!(
        cookies.iter().any(|c| c.starts_with("app=1")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-jit_session=") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    assert_set_cookies_sensitive(&response);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"cookie=Some(true) authorization=Some(true)");

    // The layer's own endpoints: the pending-login cookie, then the session cookie.
    let start = app
        .clone()
        .oneshot(Request::get("/auth/dev/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    assert_set_cookies_sensitive(&start);
    let (cookie, fields) = start_and_approve(&app, "/auth").await;
    let login = app
        .oneshot(form_post("/auth", &cookie, &fields))
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&login)
            .iter()
            .any(|c| c.starts_with("__Host-jit_session="))
    );
    assert_set_cookies_sensitive(&login);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let (app, _idp, store) = secure_app("/auth").await;
    let over = jit_provision::MAX_CALLBACK_BODY + 1;
    for path in ["/auth/dev/callback", "/auth/resume", "/auth/logout"] {
        let (request, read) = unread_body::declared_post(path, over);
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(!read.load(Ordering::SeqCst), "{path}: the body was read");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "body_too_large", "{path}");
    }
    // At the limit the body is read (and, never sent, fails as malformed: not 413).
    let (request, read) = unread_body::declared_post("/auth/dev/callback", over - 1);
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(read.load(Ordering::SeqCst));
    assert_eq!(store.user_count(), 0);
}

#[tokio::test]
async fn path_prefix_is_configurable_and_other_paths_pass_through() {
    let (app, _idp, store) = secure_app("/sso").await;
    let (cookie, fields) = start_and_approve(&app, "/sso").await;
    let response = app
        .clone()
        .oneshot(form_post("/sso", &cookie, &fields))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(store.user_count(), 1);
    // /auth is the application's now: the router answers 404.
    let response = app
        .oneshot(Request::get("/auth/dev/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn anonymous_html_navigation_is_sent_to_login_and_api_calls_get_401() {
    let (app, _idp, _store) = secure_app("/auth").await;
    let response = app
        .clone()
        .oneshot(
            Request::get("/me?tab=1")
                .header(header::ACCEPT, "text/html,application/xhtml+xml")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/auth/dev/login?return_to=%2Fme%3Ftab%3D1"
    );
    let response = app
        .oneshot(
            Request::get("/me")
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let (app, _idp, _store) = secure_app("/auth").await;
    let response = app
        .clone()
        .oneshot(Request::get("/auth/logout").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    let response = app
        .oneshot(
            Request::delete("/auth/dev/callback")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn config_loads_from_toml() {
    let config: jit_provision::JitConfig = toml::from_str(
        r#"
        public_url = "https://app.example.com"
        [session]
        ttl_secs = 3600
        [providers.corp]
        issuer = "https://login.example.com"
        client_id = "app"
        client_secret = "s3cret"
        response_mode = "form_post"
        mode = "off"
        [providers.corp.mapping]
        username = "{email}"
        groups = { claim = "roles" }
        "#,
    )
    .unwrap();
    let corp = &config.providers["corp"];
    assert_eq!(corp.mode, jit_provision::config::ProvisioningMode::Off);
    assert_eq!(corp.mapping.groups.as_ref().unwrap().claim, "roles");
    assert_eq!(config.session.ttl_secs, 3600);
    // Secrets never show in Debug output.
    assert!(!format!("{config:?}").contains("s3cret"));
    // Unknown keys are refused, not ignored.
    let typo =
        toml::from_str::<jit_provision::JitConfig>("public_url = \"https://a\"\njti = true\n");
    assert!(typo.is_err());
}
