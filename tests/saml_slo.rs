//! SAML Single Logout through the layer, against samlify (tests/saml-idp/slo.mjs): the
//! SP-initiated logout (a signed LogoutRequest that samlify parses and verifies, its
//! LogoutResponse back to our SLO service), the IdP-initiated logout by HTTP-Redirect and
//! HTTP-POST (the session ends, samlify verifies our signed LogoutResponse), and the refused
//! LogoutRequests, which leave the session working.

#[path = "support/flaky_sessions.rs"]
mod flaky_sessions;
#[path = "common/local_bus.rs"]
mod local_bus;
mod saml_common;

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::routing;
use flaky_sessions::FlakySessions;
use http::{Request, StatusCode, header};
use jit_provision::saml::SamlConfig;
use jit_provision::session::SessionKey;
use jit_provision::store::MemoryStore;
use jit_provision::{CurrentUser, JitLayer, MappingConfig, ProviderConfig};
use local_bus::LocalBus;
use saml_common::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const IDP_SLO_URL: &str = "https://idp.example.test/saml/slo";
const SLO_URL: &str = "https://app.example.test/auth/corp/slo";
const NAME_ID: &str = "u-1234-persistent";

struct Fixture {
    node: PathBuf,
    app: Router,
    config: SamlConfig,
    sp_metadata: String,
    _dir: Scratch,
}

fn slo_idp() -> Value {
    let k = keys();
    json!({
        "entity_id": IDP_ENTITY_ID,
        "sso_url": IDP_SSO_URL,
        "slo_url": IDP_SLO_URL,
        "private_key_pem": k.idp.key_pem,
        "certificate_pem": k.idp.cert_pem,
    })
}

/// Runs slo.mjs over `jobs`: the IdP metadata and each job's result (panics on a job error).
fn samlify(node: &Path, sp_metadata: &str, jobs: Vec<Value>) -> (String, Vec<Value>) {
    let input = json!({ "idp": slo_idp(), "sp_metadata": sp_metadata, "jobs": jobs });
    let output = run_script(node, "slo.mjs", &input);
    let results = output["results"].as_array().unwrap().clone();
    for result in &results {
        assert!(
            result.get("error").is_none(),
            "samlify: {}",
            result["error"]
        );
    }
    (output["idp_metadata"].as_str().unwrap().to_owned(), results)
}

fn one(node: &Path, sp_metadata: &str, job: Value) -> Value {
    samlify(node, sp_metadata, vec![job]).1.remove(0)
}

/// The layer, trusting samlify's IdP metadata (with its SingleLogoutService), with
/// `single_logout` on.
async fn fixture(test: &str) -> Option<Fixture> {
    fixture_with(test, |_| {}).await
}

/// [`fixture`] with the provider's configuration changed by `more`.
async fn fixture_with(test: &str, more: impl FnOnce(&mut SamlConfig)) -> Option<Fixture> {
    let node = node(test)?;
    let (idp_metadata, _) = samlify(&node, "", vec![]);
    assert!(
        idp_metadata.contains("SingleLogoutService"),
        "{idp_metadata}"
    );
    let dir = Scratch::new("slo");
    let path = dir.write("idp-metadata.xml", &idp_metadata);
    let k = keys();
    let mut config = SamlConfig::from_metadata_file(path);
    config.sp_private_key_pem = Some(k.sp.key_pem.clone());
    config.sp_certificate_pem = Some(k.sp.cert_pem.clone());
    config.single_logout = true;
    more(&mut config);
    let app = app(config.clone(), &Instance::default());
    let sp_metadata = sp_metadata_of(&app).await;
    for binding in ["HTTP-Redirect", "HTTP-POST"] {
        let slo = format!(
            r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" Location="{SLO_URL}"/>"#
        );
        assert!(sp_metadata.contains(&slo), "{sp_metadata}");
    }
    Some(Fixture {
        node,
        app,
        config,
        sp_metadata,
        _dir: dir,
    })
}

/// What several instances of the layer share: the store (users and sessions), the session
/// key and an invalidation bus.
#[derive(Clone, Default)]
struct Instance {
    shared: Option<(MemoryStore, SessionKey, LocalBus)>,
    /// A session store of its own instead of the user store's.
    sessions: Option<FlakySessions>,
}

/// The app (`/me` behind the layer) with the SAML provider `config`.
fn app(config: SamlConfig, instance: &Instance) -> Router {
    let provider = ProviderConfig::saml(config).mapping({
        let mut built = MappingConfig::default();
        built.username = "{mail | localpart}".into();
        built.email = "{mail}".into();
        built.display_name = String::new();
        built
    });
    let builder = JitLayer::builder()
        .public_url("https://app.example.test")
        .provider(PROVIDER_ID, provider);
    let builder = match &instance.shared {
        None => builder.store(MemoryStore::new()),
        // A record cache far longer than the test: only the bus can drop a record.
        Some((store, key, bus)) => builder
            .store(store.clone())
            .session_key(key.clone())
            .invalidation_bus(bus.clone())
            .session_record_cache_ttl(std::time::Duration::from_secs(3600)),
    };
    let builder = match &instance.sessions {
        Some(sessions) => builder.session_store(sessions.clone()),
        None => builder,
    };
    Router::new()
        .route(
            "/me",
            routing::get(|u: CurrentUser| async move { u.username.clone() }),
        )
        .layer(builder.build().unwrap())
}

/// Logs in through samlify: the session cookie and the assertion's SessionIndex.
async fn login(f: &Fixture) -> (String, String) {
    let (location, cookie) = start(&f.app).await;
    let out = run_idp(
        &f.node,
        idp_settings(&keys().idp, &[&keys().idp]),
        &f.sp_metadata,
        vec![job(Some(&location), true, false)],
    );
    let saml_response = out.responses[0].clone().unwrap();
    let xml = unb64(&saml_response);
    let session_index = xml
        .split_once("SessionIndex=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .unwrap()
        .0
        .to_owned();
    let response = f
        .app
        .clone()
        .oneshot(acs(&saml_response, &relay_state(&location), &cookie))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        response.headers()
    );
    let session = session_of(&response).expect("a session cookie");
    assert_eq!(me(f, &session).await, StatusCode::OK);
    (session, session_index)
}

async fn me(f: &Fixture, session: &str) -> StatusCode {
    let request = Request::get("/me")
        .header(header::COOKIE, session)
        .body(Body::empty())
        .unwrap();
    f.app.clone().oneshot(request).await.unwrap().status()
}

async fn get(f: &Fixture, url: &str, cookie: Option<&str>) -> http::Response<Body> {
    let path = url.strip_prefix("https://app.example.test").unwrap_or(url);
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    f.app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn location(response: &http::Response<Body>) -> String {
    response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

/// `POST /auth/logout?return_to=/bye`: the redirect to samlify's SLO service and the
/// cookies the browser then holds (binder, pending logout).
async fn logout(f: &Fixture, session: &str) -> (String, String) {
    let request = Request::post("/auth/logout?return_to=/bye")
        .header(header::COOKIE, session)
        .body(Body::empty())
        .unwrap();
    let response = f.app.clone().oneshot(request).await.unwrap();
    if response.status() != StatusCode::SEE_OTHER {
        panic!("logout: {}", error_code(response).await);
    }
    let to = location(&response);
    assert!(to.starts_with(IDP_SLO_URL), "{to}");
    // It carries the NameID: kept out of header logs.
    assert!(response.headers()[header::LOCATION].is_sensitive());
    for parameter in ["SAMLRequest=", "RelayState=", "SigAlg=", "Signature="] {
        assert!(to.contains(parameter), "{to} lacks {parameter}");
    }
    let cookies: Vec<String> = set_cookies(&response)
        .into_iter()
        .map(|c| c.split(';').next().unwrap().to_owned())
        .filter(|c| !c.ends_with('='))
        .collect();
    assert!(
        cookies
            .iter()
            .all(|c| !c.starts_with("__Host-jit_session=")),
        "{cookies:?}"
    );
    (to, cookies.join("; "))
}

#[tokio::test]
async fn sp_initiated_logout_round_trips_through_samlify() {
    let Some(f) = fixture("sp_initiated_logout_round_trips_through_samlify").await else {
        return;
    };
    let (session, session_index) = login(&f).await;
    let (to, cookies) = logout(&f, &session).await;
    // The local session ended before the browser left.
    assert_eq!(me(&f, &session).await, StatusCode::UNAUTHORIZED);

    // samlify verified the signature with the SP metadata's certificate and read what the
    // login asserted.
    let parsed = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "parse_logout_request", "request_url": to }),
    );
    assert_eq!(parsed["signed"], true);
    assert_eq!(parsed["name_id"], NAME_ID);
    assert_eq!(parsed["session_index"], session_index.as_str());
    assert_eq!(parsed["issuer"], METADATA_URL);
    let response_url = parsed["response_url"].as_str().unwrap();
    assert!(response_url.starts_with(SLO_URL), "{response_url}");

    // Without the browser's pending logout, the response is refused.
    let response = get(&f, response_url, None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "saml_logout_unknown_request");

    let response = get(&f, response_url, Some(&cookies)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/bye");
    // The pending logout is used up.
    assert!(
        set_cookies(&response)
            .iter()
            .any(|c| c.starts_with("__Secure-jit_login_") && c.contains("Max-Age=0")),
        "{:?}",
        set_cookies(&response)
    );

    // The LogoutResponse by HTTP-POST (XML-signed by samlify).
    let (session, _) = login(&f).await;
    let (to, cookies) = logout(&f, &session).await;
    let parsed = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "parse_logout_request", "request_url": to, "response_binding": "post" }),
    );
    let form = |saml_response: &str| {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SAMLResponse", saml_response)
            .append_pair("RelayState", parsed["relay_state"].as_str().unwrap())
            .finish();
        Request::post("/auth/corp/slo")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &cookies)
            .body(Body::from(body))
            .unwrap()
    };
    let saml_response = parsed["saml_response"].as_str().unwrap();
    // Changed after signing: refused.
    let tampered = b64(&unb64(saml_response).replace(
        &format!(">{IDP_ENTITY_ID}<"),
        &format!(">{IDP_ENTITY_ID}.evil<"),
    ));
    assert_ne!(tampered, saml_response);
    let response = f.app.clone().oneshot(form(&tampered)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "saml_logout_bad_signature");
    let response = f.app.clone().oneshot(form(saml_response)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/bye");

    // An IdP that answers with another status: a clear error, the session is gone anyway.
    let (session, _) = login(&f).await;
    let (to, cookies) = logout(&f, &session).await;
    let parsed = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "parse_logout_request", "request_url": to,
                "status": "urn:oasis:names:tc:SAML:2.0:status:Responder" }),
    );
    let response = get(&f, parsed["response_url"].as_str().unwrap(), Some(&cookies)).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_code(response).await, "saml_idp_logout_failed");
    assert_eq!(me(&f, &session).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn idp_initiated_logout_ends_the_session_and_answers_samlify() {
    let Some(f) = fixture("idp_initiated_logout_ends_the_session_and_answers_samlify").await else {
        return;
    };
    let (session, session_index) = login(&f).await;
    let created = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "create_logout_request", "binding": "redirect", "name_id": NAME_ID,
                "session_index": session_index, "relay_state": "idp-relay-1" }),
    );
    let response = get(&f, created["url"].as_str().unwrap(), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let answer = location(&response);
    assert!(answer.starts_with(IDP_SLO_URL) && answer.contains("SAMLResponse="));
    assert!(answer.contains("RelayState=idp-relay-1"), "{answer}");
    assert_eq!(me(&f, &session).await, StatusCode::UNAUTHORIZED);
    let parsed = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "parse_logout_response", "response_url": answer }),
    );
    assert_eq!(parsed["in_response_to"], created["request_id"]);
    assert_eq!(parsed["issuer"], METADATA_URL);
    assert_eq!(
        parsed["status"],
        "urn:oasis:names:tc:SAML:2.0:status:Success"
    );

    // HTTP-POST, without SessionIndex: every session of the NameID ends.
    let (first, _) = login(&f).await;
    let (second, _) = login(&f).await;
    let created = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "create_logout_request", "binding": "post", "name_id": NAME_ID }),
    );
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", created["saml_request"].as_str().unwrap())
        .finish();
    let post = || {
        Request::post("/auth/corp/slo")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let response = f.app.clone().oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let answer = location(&response);
    let parsed = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "parse_logout_response", "response_url": answer }),
    );
    assert_eq!(parsed["in_response_to"], created["request_id"]);
    assert_eq!(me(&f, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&f, &second).await, StatusCode::UNAUTHORIZED);

    // The same request again would end a new session: refused as a replay.
    let (third, _) = login(&f).await;
    let response = f.app.clone().oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "saml_logout_replayed");
    assert_eq!(me(&f, &third).await, StatusCode::OK);
}

#[tokio::test]
async fn refused_logout_requests_leave_the_session_working() {
    let Some(f) = fixture("refused_logout_requests_leave_the_session_working").await else {
        return;
    };
    let (session, _) = login(&f).await;
    let base =
        json!({ "kind": "create_logout_request", "binding": "redirect", "name_id": NAME_ID });
    let with = |extra: Value| {
        let mut job = base.clone();
        job.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        job
    };
    let cases = [
        (with(json!({ "sign": false })), "saml_logout_unsigned"),
        (
            with(json!({ "overrides": { "issuer": "https://evil.example.test/idp" } })),
            "saml_logout_issuer_mismatch",
        ),
        (
            with(
                json!({ "overrides": { "destination": "https://app.example.test/auth/other/slo" } }),
            ),
            "saml_logout_destination_mismatch",
        ),
        (
            with(json!({ "overrides": { "not_on_or_after_offset_s": -120 } })),
            "saml_logout_expired",
        ),
        (
            with(json!({ "overrides": { "issue_instant_offset_s": 600 } })),
            "saml_logout_not_yet_valid",
        ),
    ];
    let (codes, jobs): (Vec<&str>, Vec<Value>) = cases.into_iter().map(|(j, c)| (c, j)).unzip();
    let (_, created) = samlify(&f.node, &f.sp_metadata, jobs);
    for (code, created) in codes.iter().zip(&created) {
        let response = get(&f, created["url"].as_str().unwrap(), None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{code}");
        assert_eq!(error_code(response).await, *code);
        assert_eq!(me(&f, &session).await, StatusCode::OK, "{code}");
    }

    // A signature over other octets (the RelayState changed on the way).
    let signed = one(
        &f.node,
        &f.sp_metadata,
        with(json!({ "relay_state": "original" })),
    );
    let tampered = signed["url"]
        .as_str()
        .unwrap()
        .replace("RelayState=original", "RelayState=changed");
    let response = get(&f, &tampered, None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "saml_logout_bad_signature");

    // An unsigned HTTP-POST LogoutRequest.
    let unsigned = one(
        &f.node,
        &f.sp_metadata,
        with(json!({ "binding": "post", "sign": false })),
    );
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", unsigned["saml_request"].as_str().unwrap())
        .finish();
    let request = Request::post("/auth/corp/slo")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = f.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "saml_logout_unsigned");
    assert_eq!(me(&f, &session).await, StatusCode::OK);
}

/// An IdP-initiated logout received by one instance ends the session on the other, which
/// had its record cached: through the invalidation bus.
#[tokio::test]
async fn idp_initiated_logout_ends_the_session_on_every_instance() {
    let Some(mut f) = fixture("idp_initiated_logout_ends_the_session_on_every_instance").await
    else {
        return;
    };
    let instance = Instance {
        shared: Some((MemoryStore::new(), SessionKey::generate(), LocalBus::new())),
        ..Instance::default()
    };
    let a = app(f.config.clone(), &instance);
    let b = app(f.config.clone(), &instance);
    // Let both instances subscribe to the bus (their followers are spawned tasks; the
    // requests below never yield to them before samlify's blocking run).
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    f.app = a.clone();
    let (session, session_index) = login(&f).await;
    let at_b = Fixture {
        node: f.node.clone(),
        app: b,
        config: f.config.clone(),
        sp_metadata: f.sp_metadata.clone(),
        _dir: Scratch::new("slo-b"),
    };
    assert_eq!(me(&at_b, &session).await, StatusCode::OK, "cached at b");
    let created = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "create_logout_request", "binding": "redirect", "name_id": NAME_ID,
                "session_index": session_index }),
    );
    let response = get(&f, created["url"].as_str().unwrap(), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(me(&f, &session).await, StatusCode::UNAUTHORIZED);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while me(&at_b, &session).await != StatusCode::UNAUTHORIZED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was never refused at b"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A session store outage answers `Responder` and leaves the request's ID unused: the IdP's
/// retry of the same LogoutRequest ends the session (and only then is it a replay).
#[tokio::test]
async fn idp_initiated_logout_after_a_store_outage_may_be_retried() {
    let Some(mut f) = fixture("idp_initiated_logout_after_a_store_outage_may_be_retried").await
    else {
        return;
    };
    let sessions = FlakySessions::default();
    let instance = Instance {
        sessions: Some(sessions.clone()),
        ..Instance::default()
    };
    f.app = app(f.config.clone(), &instance);
    let (session, session_index) = login(&f).await;
    let created = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "create_logout_request", "binding": "redirect", "name_id": NAME_ID,
                "session_index": session_index }),
    );
    let url = created["url"].as_str().unwrap();
    // samlify reports a status other than Success as an error naming it.
    let status_of = |response: &http::Response<Body>| {
        let input = json!({ "idp": slo_idp(), "sp_metadata": f.sp_metadata, "jobs": [
            { "kind": "parse_logout_response", "response_url": location(response) }
        ] });
        let parsed = run_script(&f.node, "slo.mjs", &input);
        let result = &parsed["results"][0];
        match result["error"].as_str() {
            Some(error) => error.to_owned(),
            None => result["status"].as_str().unwrap().to_owned(),
        }
    };
    sessions
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let response = get(&f, url, None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let status = status_of(&response);
    assert!(
        status.contains("ERR_FAILED_STATUS") && status.contains("status:Responder"),
        "{status}"
    );
    assert_eq!(me(&f, &session).await, StatusCode::OK, "nothing ended");
    sessions
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let response = get(&f, url, None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        status_of(&response),
        "urn:oasis:names:tc:SAML:2.0:status:Success"
    );
    assert_eq!(me(&f, &session).await, StatusCode::UNAUTHORIZED);
    let response = get(&f, url, None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(response).await, "saml_logout_replayed");
}

/// With an identity attribute the NameID is not the subject: the SessionIndex decides, and a
/// request without one cannot name a session here (Responder / PartialLogout, which samlify
/// reports as a failed status), ending nothing.
#[tokio::test]
async fn with_an_identity_attribute_the_session_index_decides() {
    let test = "with_an_identity_attribute_the_session_index_decides";
    let Some(f) = fixture_with(test, |c| {
        c.identity_attribute = Some("employeeNumber".into())
    })
    .await
    else {
        return;
    };
    let (session, session_index) = login(&f).await;
    let input =
        |job: Value| json!({ "idp": slo_idp(), "sp_metadata": f.sp_metadata, "jobs": [job] });
    let created = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "create_logout_request", "binding": "redirect", "name_id": NAME_ID }),
    );
    let response = get(&f, created["url"].as_str().unwrap(), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let parsed = run_script(
        &f.node,
        "slo.mjs",
        &input(json!({ "kind": "parse_logout_response", "response_url": location(&response) })),
    );
    let error = parsed["results"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("ERR_FAILED_STATUS") && error.contains("status:Responder"),
        "{error}"
    );
    assert!(error.contains("PartialLogout"), "{error}");
    assert_eq!(me(&f, &session).await, StatusCode::OK);

    let created = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "create_logout_request", "binding": "redirect", "name_id": NAME_ID,
                "session_index": session_index }),
    );
    let response = get(&f, created["url"].as_str().unwrap(), None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let parsed = one(
        &f.node,
        &f.sp_metadata,
        json!({ "kind": "parse_logout_response", "response_url": location(&response) }),
    );
    assert_eq!(parsed["in_response_to"], created["request_id"]);
    assert_eq!(me(&f, &session).await, StatusCode::UNAUTHORIZED);
}
