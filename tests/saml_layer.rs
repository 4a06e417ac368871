//! SAML through the layer: SP-initiated login by HTTP-Redirect, the HTTP-POST ACS with its
//! cross-site cookie, provisioning, sessions, metadata; and refusals that leave no user and
//! no session. Responses are signed by samlify (npm), see tests/saml_common.

mod saml_common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jit_provision::config::{AdmissionConfig, GroupsConfig, LinkingConfig};
use jit_provision::store::MemoryStore;
use jit_provision::{CurrentUser, JitLayer, MappingConfig, ProviderConfig};
use saml_common::*;
use tower::ServiceExt;

fn app(store: &MemoryStore) -> Router {
    app_with(store, |p| p)
}

/// [`app`] with the provider's configuration changed by `provider`.
fn app_with(
    store: &MemoryStore,
    provider: impl FnOnce(ProviderConfig) -> ProviderConfig,
) -> Router {
    let provider = provider(ProviderConfig::saml(sp_config()).mapping(MappingConfig {
        username: "{mail | localpart}".into(),
        email: "{mail}".into(),
        display_name: String::new(),
        groups: Some(GroupsConfig::from_claim("isMemberOf")),
        ..MappingConfig::default()
    }));
    let layer = JitLayer::builder()
        .public_url("https://app.example.test")
        .provider(PROVIDER_ID, provider)
        .store(store.clone())
        .build()
        .unwrap();
    Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move {
                format!("{}|{}|{:?}", u.username, u.auth.provider, u.groups)
            }),
        )
        .layer(layer)
}

fn set_cookies(response: &http::Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn session_of(response: &http::Response<Body>) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.starts_with("__Host-jit_session=") && !c.starts_with("__Host-jit_session=;"))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// Starts a login: the redirect to the IdP and the cookies it sets (pending login, binder).
async fn start(app: &Router) -> (String, String) {
    let response = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/login?return_to=/me")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(location.starts_with(IDP_SSO_URL) && location.contains("SAMLRequest="));
    let cookies = set_cookies(&response);
    let cookie = cookies.last().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=None", "Path=/auth/corp/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // The browser sends back the pending login and its binder.
    let pairs: Vec<&str> = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect();
    (location, pairs.join("; "))
}

fn relay_state(location: &str) -> String {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned()
}

fn acs(saml_response: &str, relay: &str, cookie: &str) -> Request<Body> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", saml_response)
        .append_pair("RelayState", relay)
        .finish();
    Request::post("/auth/corp/acs")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .unwrap()
}

async fn error_code(response: http::Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn saml_login_provisions_and_refusals_leave_nothing() {
    let Some(node) = node("saml_login_provisions_and_refusals_leave_nothing") else {
        return;
    };
    let store = MemoryStore::new();
    let app = app(&store);

    let metadata = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/metadata")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(metadata.status(), StatusCode::OK);
    assert_eq!(
        metadata.headers()[header::CONTENT_TYPE],
        "application/samlmetadata+xml"
    );
    let metadata = String::from_utf8(
        metadata
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(metadata.contains(ACS_URL));

    // Two logins in progress; samlify answers both in one run.
    let (first, first_cookie) = start(&app).await;
    let (second, second_cookie) = start(&app).await;
    let k = keys();
    let out = run_idp(
        &node,
        idp_settings(&k.idp, &[&k.idp]),
        &metadata,
        vec![
            job(Some(&first), true, false),
            job(Some(&second), true, false),
        ],
    );
    let genuine = out.responses[0].clone().unwrap();
    let other = out.responses[1].clone().unwrap();

    // A tampered response: 401, no user, no session.
    let tampered = b64(&unb64(&other).replace("jane@example.com", "evil@example.com"));
    let response = app
        .clone()
        .oneshot(acs(&tampered, &relay_state(&second), &second_cookie))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(session_of(&response).is_none());
    assert_eq!(store.user_count(), 0);

    // A response to another browser's login (this cookie's request id differs): refused.
    let response = app
        .clone()
        .oneshot(acs(&genuine, &relay_state(&second), &second_cookie))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await, "saml_in_response_to_mismatch");

    // The genuine one: provisioned, a session, back to return_to.
    let response = app
        .clone()
        .oneshot(acs(&genuine, &relay_state(&first), &first_cookie))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/me");
    let session = session_of(&response).expect("a session");
    assert_eq!(store.user_count(), 1);
    let user = &store.users()[0];
    assert_eq!(user.username, "jane");
    assert_eq!(user.email.as_deref(), Some("jane@example.com"));
    // The session record keeps the assertion's SessionIndex: the IdP's session.
    let sessions = jit_provision::session::SessionStore::list_sessions_for_user(
        store.sessions(),
        "PRIMARY",
        &user.id.to_string(),
        0,
    )
    .await
    .unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions[0]
            .idp_session
            .as_deref()
            .is_some_and(|index| !index.is_empty()),
        "{sessions:?}"
    );
    let me = app
        .clone()
        .oneshot(
            Request::get("/me")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let body = me.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"jane|corp|{"admins", "staff"}"#);

    // Replayed with its original cookie: the assertion id was used.
    let response = app
        .clone()
        .oneshot(acs(&genuine, &relay_state(&first), &first_cookie))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(session_of(&response).is_none());
    assert_eq!(error_code(response).await, "saml_assertion_replayed");

    // A DTD, and an oversized body.
    let dtd = b64("<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x \"y\">]><r>&x;</r>");
    let response = app.clone().oneshot(acs(&dtd, "r", "")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let huge = "A".repeat(jit_provision::saml::MAX_ACS_BODY);
    let response = app.clone().oneshot(acs(&huge, "r", "")).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(store.user_count(), 1);
}

#[tokio::test]
async fn saml_logins_are_admitted_by_the_same_rules() {
    let Some(node) = node("saml_logins_are_admitted_by_the_same_rules") else {
        return;
    };
    let admission = |email_domains: &[&str], groups: &[&str]| AdmissionConfig {
        email_domains: Some(email_domains.iter().map(|d| d.to_string()).collect()),
        // SAML attribute names: the email is `mail` here, not OIDC's `email`.
        email_claim: Some("mail".into()),
        require_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        ..AdmissionConfig::default()
    };
    let trusted = LinkingConfig {
        trust_email: true,
        ..LinkingConfig::default()
    };
    // SAML sends no `email_verified`: without `trust_email` the email rule refuses.
    let (unverified_store, refusing_store, admitting_store) =
        (MemoryStore::new(), MemoryStore::new(), MemoryStore::new());
    let unverified = app_with(&unverified_store, |p| {
        p.admission(admission(&["example.com"], &["admins"]))
    });
    let refusing = app_with(&refusing_store, |p| {
        p.admission(admission(&["example.com"], &["finance"]))
            .linking(trusted.clone())
    });
    let admitting = app_with(&admitting_store, |p| {
        p.admission(admission(&["example.com"], &["admins"]))
            .linking(trusted.clone())
    });
    let logins = [
        start(&unverified).await,
        start(&refusing).await,
        start(&admitting).await,
    ];
    // The three apps are one service provider (same configuration, same metadata).
    let response = admitting
        .clone()
        .oneshot(
            Request::get("/auth/corp/metadata")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let metadata = String::from_utf8(body.to_vec()).unwrap();
    let k = keys();
    let out = run_idp(
        &node,
        idp_settings(&k.idp, &[&k.idp]),
        &metadata,
        logins
            .iter()
            .map(|(l, _)| job(Some(l), true, false))
            .collect(),
    );
    let apps = [&unverified, &refusing, &admitting];
    let mut answers = Vec::new();
    for (i, (location, cookie)) in logins.iter().enumerate() {
        let saml = out.responses[i].clone().unwrap();
        let response = apps[i]
            .clone()
            .oneshot(acs(&saml, &relay_state(location), cookie))
            .await
            .unwrap();
        answers.push((response.status(), session_of(&response).is_some(), response));
    }
    let mut answers = answers.into_iter();
    for (rule, store) in [
        ("admission.email_domains", &unverified_store),
        ("admission.require_groups", &refusing_store),
    ] {
        let (status, session, response) = answers.next().unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{rule}");
        assert!(!session, "{rule}: no session");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "not_admitted");
        assert!(json["message"].as_str().unwrap().contains(rule), "{json}");
        assert_eq!(store.user_count(), 0, "{rule}: nothing created");
    }
    let (status, session, _) = answers.next().unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(session);
    assert_eq!(admitting_store.user_count(), 1);
}
