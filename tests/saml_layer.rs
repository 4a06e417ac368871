//! SAML through the layer: SP-initiated login by HTTP-Redirect, the HTTP-POST ACS with its
//! cross-site cookie, provisioning, sessions, metadata; and refusals that leave no user and
//! no session. Responses are signed by samlify (npm), see tests/saml_common.

mod common;
mod saml_common;
#[path = "support/unread_body.rs"]
mod unread_body;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jit_provision::config::{AdmissionConfig, GroupsConfig, LinkingConfig};
use jit_provision::store::{MemoryStore, Profile, Refusal, UserStore};
use jit_provision::{CurrentUser, JitConfig, JitLayer, MappingConfig, ProviderConfig};
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
    app_from(
        store.clone(),
        JitConfig::new("https://app.example.test"),
        provider,
    )
}

/// [`app_with`] over any store.
fn app_over(
    store: impl UserStore,
    provider: impl FnOnce(ProviderConfig) -> ProviderConfig,
) -> Router {
    app_from(store, JitConfig::new("https://app.example.test"), provider)
}

/// [`app_with`] over any store, on top of `config` (public URL, session settings).
fn app_from(
    store: impl UserStore,
    config: JitConfig,
    provider: impl FnOnce(ProviderConfig) -> ProviderConfig,
) -> Router {
    let provider = provider(ProviderConfig::saml(sp_config()).mapping({
        let mut built = MappingConfig::default();
        built.username = "{mail | localpart}".into();
        built.email = "{mail}".into();
        built.display_name = String::new();
        built.groups = Some(GroupsConfig::from_claim("isMemberOf"));
        built
    }));
    let layer = JitLayer::builder()
        .config(config)
        .provider(PROVIDER_ID, provider)
        .store(store)
        .build()
        .unwrap();
    router(layer)
}

/// The test application: `/me` behind the layer.
fn router(layer: JitLayer) -> Router {
    Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move {
                format!("{}|{}|{:?}", u.username, u.auth.provider, u.groups)
            }),
        )
        .layer(layer)
}

fn session_of(response: &http::Response<Body>) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|c| {
            let c = c.strip_prefix("__Host-").unwrap_or(c);
            c.starts_with("jit_session=") && !c.starts_with("jit_session=;")
        })
        .map(|c| c.split(';').next().unwrap().to_owned())
}

async fn error_code(response: http::Response<Body>) -> String {
    error_of(response).await.0
}

/// The status, error code and message of a refusal.
async fn refusal(response: http::Response<Body>) -> (StatusCode, String, String) {
    let status = response.status();
    let (code, message) = error_of(response).await;
    (status, code, message)
}

async fn error_of(response: http::Response<Body>) -> (String, String) {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (
        json["error"].as_str().unwrap().to_owned(),
        json["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The SP metadata an app serves.
async fn sp_metadata(app: &Router) -> String {
    let response = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/metadata")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/samlmetadata+xml"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Posts `saml_response` to the ACS and expects a refusal: no session; its status, code and
/// message.
async fn refused(
    app: &Router,
    saml_response: &str,
    relay: &str,
    cookie: &str,
) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(acs(saml_response, relay, cookie))
        .await
        .unwrap();
    assert!(session_of(&response).is_none(), "a refusal sets no session");
    refusal(response).await
}

/// samlify answers the one login `login` started at `app`, and the browser posts the
/// answer to the ACS with `cookie`.
async fn log_in_once(
    node: &std::path::Path,
    app: &Router,
    login: &str,
    cookie: &str,
) -> http::Response<Body> {
    let k = keys();
    let out = run_idp(
        node,
        idp_settings(&k.idp, &[&k.idp]),
        &sp_metadata(app).await,
        vec![job(Some(login), true, false)],
    );
    app.clone()
        .oneshot(acs(
            out.responses[0].as_ref().unwrap(),
            &relay_state(login),
            cookie,
        ))
        .await
        .unwrap()
}

/// The `Cookie` header without the pending login: what the browser sends once the ACS has
/// cleared it (the binder stays).
fn without_pending(cookie: &str) -> String {
    cookie
        .split("; ")
        .filter(|pair| !pair.contains("jit_login_"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn saml_login_provisions_and_refusals_leave_nothing() {
    let Some(node) = node("saml_login_provisions_and_refusals_leave_nothing") else {
        return;
    };
    let store = MemoryStore::new();
    let app = app(&store);

    let metadata = sp_metadata(&app).await;
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
async fn an_acs_post_declaring_more_than_the_limit_is_413_before_the_body_is_read() {
    let store = MemoryStore::new();
    let app = app(&store);
    let (request, read) =
        unread_body::declared_post("/auth/corp/acs", jit_provision::saml::MAX_ACS_BODY + 1);
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!read.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(error_code(response).await, "body_too_large");
    // At the limit the body is read (and, never sent, is malformed: not 413).
    let (request, read) =
        unread_body::declared_post("/auth/corp/acs", jit_provision::saml::MAX_ACS_BODY);
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(read.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(store.user_count(), 0);
}

#[tokio::test]
async fn saml_logins_are_admitted_by_the_same_rules() {
    let Some(node) = node("saml_logins_are_admitted_by_the_same_rules") else {
        return;
    };
    let admission = |email_domains: &[&str], groups: &[&str]| {
        let mut built = AdmissionConfig::default();
        built.email_domains = Some(email_domains.iter().map(|d| d.to_string()).collect());
        // SAML attribute names: the email is `mail` here, not OIDC's `email`.
        built.email_claim = Some("mail".into());
        built.require_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        built
    };
    let trusted = LinkingConfig::default().trust_email(true);
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
    let metadata = sp_metadata(&admitting).await;
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

/// A post to the ACS without this browser's login in progress says what happened: no login
/// in progress, the login expired, the login already used (the same response posted again
/// once the ACS cleared the pending login), each with its own status and code, and never a
/// user or a session. Only what a verified response answers is acted on.
#[tokio::test]
async fn an_acs_post_without_a_login_in_progress_says_what_happened() {
    let Some(node) = node("an_acs_post_without_a_login_in_progress_says_what_happened") else {
        return;
    };
    let store = MemoryStore::new();
    let app = app(&store);
    // Logins in this app expire at once (`login_ttl_secs = 0`).
    let expiring_store = MemoryStore::new();
    let mut expiring_config = JitConfig::new("https://app.example.test");
    expiring_config.session.login_ttl_secs = 0;
    let expiring = app_from(expiring_store.clone(), expiring_config, |p| p);
    let idp_initiated_store = MemoryStore::new();
    let idp_initiated = app_with(&idp_initiated_store, |mut p| {
        p.saml_config_mut().unwrap().allow_idp_initiated = true;
        p
    });

    let (used, used_cookie) = start(&app).await;
    let (lost, lost_cookie) = start(&app).await;
    let (late, late_cookie) = start(&expiring).await;
    // One service provider: the three apps publish the same metadata.
    let metadata = sp_metadata(&app).await;
    assert_eq!(sp_metadata(&expiring).await, metadata);
    let k = keys();
    let out = run_idp(
        &node,
        idp_settings(&k.idp, &[&k.idp]),
        &metadata,
        vec![
            job(Some(&used), true, false),
            job(Some(&lost), true, false),
            job(Some(&late), true, false),
            job(None, true, false),
            job(None, true, false),
        ],
    );
    let response = |i: usize| out.responses[i].clone().unwrap();

    // Logged in, then the same response posted again from the browser's history: its
    // pending login is gone (cleared by the ACS), the binder and the session stay.
    let first = app
        .clone()
        .oneshot(acs(&response(0), &relay_state(&used), &used_cookie))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let session = session_of(&first).expect("a session");
    assert!(
        set_cookies(&first)
            .iter()
            .any(|c| c.contains("jit_login_") && c.contains("Max-Age=0")),
        "the ACS clears the pending login"
    );
    let browser = format!("{}; {session}", without_pending(&used_cookie));
    let (status, code, message) = refused(&app, &response(0), &relay_state(&used), &browser).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "saml_login_already_used")
    );
    assert!(message.contains("already used"), "{message}");
    assert_eq!(store.user_count(), 1);

    // A response to a login whose pending cookie did not come back (another browser, or
    // a cookie the browser dropped): no login in progress, not "IdP-initiated".
    let (status, code, message) = refused(
        &app,
        &response(1),
        &relay_state(&lost),
        &without_pending(&lost_cookie),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "saml_no_login_in_progress")
    );
    assert!(message.contains("no login is in progress"), "{message}");
    // That response has been shown: it cannot log in later, even with its cookie.
    assert_eq!(
        refused(&app, &response(1), &relay_state(&lost), &lost_cookie).await,
        (
            StatusCode::BAD_REQUEST,
            "saml_login_already_used".into(),
            "this login was already used: start the login again".into()
        )
    );
    assert_eq!(store.user_count(), 1);

    // The pending login expired before the IdP answered.
    let (status, code, message) =
        refused(&expiring, &response(2), &relay_state(&late), &late_cookie).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "saml_login_expired")
    );
    assert!(message.contains("expired"), "{message}");
    assert_eq!(expiring_store.user_count(), 0);

    // A genuine IdP-initiated response: refused where it is not enabled, saying so; a login
    // where it is.
    let (status, code, message) = refused(&app, &response(3), "/me", "").await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "saml_unsolicited_response")
    );
    assert!(message.contains("allow_idp_initiated"), "{message}");
    let welcomed = idp_initiated
        .clone()
        .oneshot(acs(&response(4), "/me", ""))
        .await
        .unwrap();
    assert_eq!(welcomed.status(), StatusCode::SEE_OTHER);
    assert_eq!(welcomed.headers()[header::LOCATION], "/me");
    assert!(session_of(&welcomed).is_some());
    assert_eq!(idp_initiated_store.user_count(), 1);
    // A solicited response posted where no login is in progress, IdP-initiated or not.
    let (status, code, _) = refused(&idp_initiated, &response(2), &relay_state(&late), "").await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "saml_no_login_in_progress")
    );
    assert_eq!(store.user_count(), 1);
}

/// Without a `username` template, a SAML login works: `{preferred_username}` (the default)
/// reads the subject when the IdP sends no `preferred_username` attribute.
#[tokio::test]
async fn the_default_username_of_a_saml_provider_is_the_subject() {
    let Some(node) = node("the_default_username_of_a_saml_provider_is_the_subject") else {
        return;
    };
    let store = MemoryStore::new();
    let app = router(
        JitLayer::builder()
            .public_url("https://app.example.test")
            .provider(PROVIDER_ID, ProviderConfig::saml(sp_config()))
            .store(store.clone())
            .build()
            .unwrap(),
    );
    let (login, cookie) = start(&app).await;
    let response = log_in_once(&node, &app, &login, &cookie).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let users = store.users();
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].username, "u-1234-persistent",
        "the persistent NameID"
    );
    // `{email}` and `{name}` (the other defaults) read nothing: left unset.
    assert_eq!(users[0].email, None);
}

/// `identity_attribute` matches an attribute's `Name` only; naming its `FriendlyName`
/// instead is refused with a message that names the `Name` to configure.
#[tokio::test]
async fn an_identity_attribute_named_by_friendly_name_is_refused_naming_the_name() {
    let Some(node) =
        node("an_identity_attribute_named_by_friendly_name_is_refused_naming_the_name")
    else {
        return;
    };
    let store = MemoryStore::new();
    let app = app_with(&store, |mut p| {
        p.saml_config_mut().unwrap().identity_attribute = Some("mail".into());
        p
    });
    let (login, cookie) = start(&app).await;
    let response = log_in_once(&node, &app, &login, &cookie).await;
    assert!(session_of(&response).is_none());
    let (status, code, message) = refusal(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "saml_invalid_subject")
    );
    for part in [
        "identity attribute `mail` is not in the assertion",
        "matches an attribute's Name only",
        "FriendlyName `mail` whose Name is `urn:oid:0.9.2342.19200300.100.1.3`",
        "set identity_attribute = \"urn:oid:0.9.2342.19200300.100.1.3\"",
    ] {
        assert!(message.contains(part), "{message}");
    }
    assert_eq!(store.user_count(), 0);
}

/// `examples/saml.toml` logs in: its service provider and mapping, with the IdP it names
/// swapped for the samlify test IdP (whose key we hold), as its comments tell a user to.
#[tokio::test]
async fn the_example_saml_config_logs_in() {
    let Some(node) = node("the_example_saml_config_logs_in") else {
        return;
    };
    let mut file: toml::Table = toml::from_str(include_str!("../examples/saml.toml")).unwrap();
    file.remove("demo");
    let mut config: JitConfig = toml::Value::Table(file).try_into().unwrap();
    // The example as it is builds (its certificate parses) ...
    JitLayer::from_config(config.clone(), MemoryStore::new()).expect("the example builds");
    // ... and, pointed at an IdP we can drive, logs a user in.
    let saml = config
        .providers
        .get_mut(PROVIDER_ID)
        .unwrap()
        .saml_config_mut()
        .unwrap();
    saml.idp_entity_id = Some(IDP_ENTITY_ID.into());
    saml.idp_sso_url = Some(IDP_SSO_URL.into());
    saml.idp_certificates = vec![keys().idp.cert_pem.clone()];
    let store = MemoryStore::new();
    let app = router(JitLayer::from_config(config, store.clone()).unwrap());
    let (login, cookies) = start_unchecked(&app).await;
    let metadata = sp_metadata(&app).await;
    assert!(metadata.contains("Location=\"http://127.0.0.1:3000/auth/corp/acs\""));
    assert!(metadata.contains("WantAssertionsSigned=\"true\""));
    let response = log_in_once(&node, &app, &login, &cookie_header(&cookies)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let session = session_of(&response).expect("a session");
    assert!(
        session.starts_with("jit_session="),
        "secure = false: {session}"
    );
    let users = store.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].username, "jane");
    assert_eq!(users[0].email.as_deref(), Some("jane@example.com"));
    assert_eq!(users[0].display_name, None, "no displayName attribute sent");
    let groups: Vec<&str> = users[0].groups.iter().map(String::as_str).collect();
    assert_eq!(groups, ["admins", "staff"]);
}

/// A rule of the application's store refuses the creation: the ACS answers its `409` and
/// code, nothing is created, no session.
#[tokio::test]
async fn a_refusal_of_the_applications_store_is_its_answer_at_the_acs() {
    let Some(node) = node("a_refusal_of_the_applications_store_is_its_answer_at_the_acs") else {
        return;
    };
    let store = common::SwitchableStore::default();
    store.refuse_create_when(|_, profile: &Profile| {
        (profile.email.clone().flatten().as_deref() == Some("jane@example.com")).then(|| {
            Refusal::conflict("email", "email_in_use", "this email has a password account")
        })
    });
    let app = app_over(store.clone(), |p| p);
    let metadata = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/metadata")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let metadata = metadata.into_body().collect().await.unwrap().to_bytes();
    let (login, cookie) = start(&app).await;
    let k = keys();
    let out = run_idp(
        &node,
        idp_settings(&k.idp, &[&k.idp]),
        std::str::from_utf8(&metadata).unwrap(),
        vec![job(Some(&login), true, false)],
    );
    let saml = out.responses[0].clone().unwrap();
    let response = app
        .oneshot(acs(&saml, &relay_state(&login), &cookie))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(session_of(&response).is_none());
    assert_eq!(error_code(response).await, "email_in_use");
    assert_eq!(store.inner.user_count(), 0);
}
