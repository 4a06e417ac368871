//! The state a login carries between requests, through the layer: the prompt state (what a
//! resumed provisioning may decide, single use, ended at logout), the binding of a login in
//! progress to the browser that started it (login CSRF by cookie tossing), cross-site logout
//! and resume, and redirects to non-ASCII targets.

mod common;
#[cfg(feature = "saml")]
mod saml_common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use common::*;
use jit_provision::config::{DomainRule, LinkBy, LinkingConfig, ResponseMode};
use jit_provision::dev_idp::DevUser;
use jit_provision::prompt::{PromptRequest, ProvisionPrompt};
use jit_provision::store::{Identity, MemoryStore, Profile, UserStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn mallory() -> DevUser {
    DevUser::new(
        "sub-mallory",
        "mallory",
        "mallory@example.com",
        "Mallory",
        &["staff"],
    )
}

/// A careless hook that copies every field of the form into the profile.
struct CopiesTheForm;

impl ProvisionPrompt for CopiesTheForm {
    fn before_create(&self, _: &PromptRequest) -> Option<String> {
        Some("/welcome".into())
    }
    fn resume(
        &self,
        req: &PromptRequest,
        form: &HashMap<String, String>,
    ) -> Result<Profile, String> {
        let mut profile = req.profile.clone();
        for (field, value) in form {
            match field.as_str() {
                "username" => profile.username = value.clone(),
                "email" => profile.email = Some(Some(value.clone())),
                "display_name" => profile.display_name = Some(Some(value.clone())),
                "groups" => profile.groups = Some(value.split(',').map(str::to_owned).collect()),
                attribute => {
                    profile
                        .attributes
                        .insert(attribute.to_owned(), value.clone());
                }
            }
        }
        Ok(profile)
    }
}

/// An app whose `dev` provider links by `by` and runs `hook` before creating a user.
async fn prompting(by: LinkBy, hook: impl ProvisionPrompt) -> TestApp {
    TestApp::start_with(
        move |p| p.linking(LinkingConfig::new(by).trust_email(true)),
        move |b| b.prompt("dev", hook),
    )
    .await
}

/// A local account that existed before any login (created by an administrator, linked to
/// another provider).
async fn local_admin(app: &TestApp) -> jit_provision::store::User {
    let mut profile = Profile::new("admin");
    profile.email = Some(Some("admin@example.com".into()));
    profile.groups = Some(BTreeSet::from(["admins".to_owned()]));
    app.store
        .inner
        .create(&Identity::new("ldap", "ldap://corp", "cn=admin"), &profile)
        .await
        .unwrap()
}

/// Logs `user` in with the harness browser up to the prompt; returns the prompt cookie pair.
async fn up_to_the_prompt(app: &TestApp, user: &DevUser) -> String {
    let response = app.login(user).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/welcome");
    set_cookies(&response)
        .iter()
        .find(|c| c.starts_with("jit_prompt=") && !c.starts_with("jit_prompt=;"))
        .expect("a prompt cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn resume_with(
    app: &TestApp,
    client: &reqwest::Client,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(app.url("/auth/resume"))
        .form(form)
        .send()
        .await
        .unwrap()
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

// Item 1: linking and the domain are decided from what the IdP asserted.

#[tokio::test]
async fn a_chosen_username_cannot_take_over_a_local_account() {
    // The README's own set-up: a hook letting the user choose a username, linking by username.
    let app = prompting(LinkBy::Username, ChooseUsername).await;
    let admin = local_admin(&app).await;
    up_to_the_prompt(&app, &mallory()).await;
    let response = resume_with(
        &app,
        &app.client,
        &[("consent", "yes"), ("username", "admin")],
    )
    .await;
    assert_refused(response, StatusCode::CONFLICT, "username_taken").await;
    let identities = app.store.inner.identities_of(admin.id).await.unwrap();
    assert_eq!(
        identities.len(),
        1,
        "admin gained no identity: {identities:?}"
    );
    assert_eq!(identities[0].provider, "ldap");
    assert_eq!(app.store.inner.user_count(), 1, "nothing created");
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_chosen_email_or_groups_neither_link_nor_grant() {
    let app = prompting(LinkBy::Email, CopiesTheForm).await;
    let admin = local_admin(&app).await;
    up_to_the_prompt(&app, &mallory()).await;
    let response = resume_with(
        &app,
        &app.client,
        &[
            ("email", "admin@example.com"),
            ("groups", "admins"),
            ("display_name", "Mallory M."),
            ("nickname", "mm"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let me: Value = app.me().await.json().await.unwrap();
    assert_ne!(me["id"], json!(admin.id), "linked to the admin");
    assert_eq!(me["username"], "mallory");
    assert_eq!(me["email"], "mallory@example.com", "the IdP's email");
    assert_eq!(me["groups"], json!(["staff"]), "the IdP's groups");
    // What creation asks for comes from the form.
    assert_eq!(me["display_name"], "Mallory M.");
    let created = app
        .store
        .inner
        .find_by_username("mallory")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.attributes["nickname"], "mm");
    assert_eq!(
        app.store.inner.identities_of(admin.id).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn the_domain_is_the_one_the_idp_asserted() {
    let external = MemoryStore::new();
    let ext = external.clone();
    let app = TestApp::start_with(
        |mut p| {
            p.domain = DomainRule::FromUsername;
            p
        },
        move |b| {
            b.domain_store("EXT", ext.clone())
                .prompt("dev", ChooseUsername)
        },
    )
    .await;
    up_to_the_prompt(&app, &mallory()).await;
    // Naming another domain in the chosen username does not move the user there: the name is
    // checked by the asserted domain's policy (no `/` by default).
    let response = resume_with(
        &app,
        &app.client,
        &[("consent", "yes"), ("username", "EXT/boss")],
    )
    .await;
    assert_refused(response, StatusCode::FORBIDDEN, "username_policy").await;
    assert_eq!(external.user_count(), 0);
    assert_eq!(app.store.inner.user_count(), 0);

    // An IdP asserting `EXT/...` does put the user in EXT, whatever name is chosen.
    let mut prefixed = mallory();
    prefixed.subject = "sub-ext".into();
    prefixed.claims["preferred_username"] = json!("EXT/mal");
    up_to_the_prompt(&app, &prefixed).await;
    let response = resume_with(
        &app,
        &app.client,
        &[("consent", "yes"), ("username", "mal2")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(external.users()[0].username, "mal2");
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn a_resume_links_by_the_sealed_assertion() {
    // A local account with the IdP's verified email appears while the user is on the prompt
    // page: the resume links it, by the email and `email_verified` the IdP asserted.
    let app = TestApp::start_with(
        |p| p.linking(LinkingConfig::new(LinkBy::Email)),
        |b| b.prompt("dev", ChooseUsername),
    )
    .await;
    up_to_the_prompt(&app, &mallory()).await;
    let mut profile = Profile::new("m.local");
    profile.email = Some(Some("mallory@example.com".into()));
    let local = app.store.inner.insert_local(&profile).unwrap();
    let response = resume_with(
        &app,
        &app.client,
        &[("consent", "yes"), ("username", "whatever")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["id"], json!(local.id));
    assert_eq!(me["username"], "m.local");
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn a_prompt_state_is_single_use_server_side() {
    let app = prompting(LinkBy::None, ChooseUsername).await;
    let cookie = up_to_the_prompt(&app, &mallory()).await;
    let refused = resume_with(&app, &app.client, &[("consent", "no")]).await;
    assert_refused(refused, StatusCode::FORBIDDEN, "prompt_refused").await;
    // A copy of the cookie (kept by the browser, or stolen) is refused once it was used.
    let replay = plain()
        .post(app.url("/auth/resume"))
        .header("cookie", &cookie)
        .form(&[("consent", "yes")])
        .send()
        .await
        .unwrap();
    assert_refused(replay, StatusCode::BAD_REQUEST, "replayed_state").await;
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn logout_ends_a_pending_prompt() {
    let app = prompting(LinkBy::None, ChooseUsername).await;
    let cookie = up_to_the_prompt(&app, &mallory()).await;
    let out = app.logout().await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("jit_prompt=;") && c.contains("Max-Age=0")),
        "{:?}",
        set_cookies(&out)
    );
    let replay = plain()
        .post(app.url("/auth/resume"))
        .header("cookie", &cookie)
        .form(&[("consent", "yes")])
        .send()
        .await
        .unwrap();
    assert_refused(replay, StatusCode::BAD_REQUEST, "replayed_state").await;
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn a_prompt_state_too_large_for_a_cookie_is_refused() {
    let app = prompting(LinkBy::None, ChooseUsername).await;
    let groups: Vec<String> = (0..200)
        .map(|i| format!("team-{i:04}-of-the-org"))
        .collect();
    let mut many = mallory();
    many.claims["groups"] = json!(groups);
    let response = app.login(&many).await;
    assert!(
        !set_cookies(&response)
            .iter()
            .any(|c| c.starts_with("jit_prompt=")),
        "a cookie the browser would drop"
    );
    assert_refused(
        response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "prompt_state_too_large",
    )
    .await;
    assert_eq!(app.store.inner.user_count(), 0);
}

// Item 2: a login in progress is bound to the browser that started it.

/// A browser whose cookies the test can plant (as a sibling host would, with `Domain=`).
fn browser_with_jar() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// The attacker starts a login in his own client and approves it as himself at the IdP; he
/// keeps the pending-login cookie (only it: the binder cannot be planted) and what the IdP
/// sends back.
async fn attackers_login(app: &TestApp) -> (String, reqwest::Response) {
    let attacker = browser();
    let start = attacker
        .get(app.url("/auth/dev/login?return_to=/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let pending = set_cookies(&start)
        .into_iter()
        .find(|c| c.starts_with("jit_login_"))
        .expect("a pending-login cookie");
    let approved = app.approve(&attacker, &location(&start), &mallory()).await;
    (pending, approved)
}

/// The `form_post` page's hidden fields.
async fn form_fields(page: reqwest::Response) -> Vec<(String, String)> {
    let html = page.text().await.unwrap();
    ["code", "state", "iss"]
        .iter()
        .filter_map(|name| {
            let marker = format!("name=\"{name}\" value=\"");
            let from = html.find(&marker)? + marker.len();
            let value = &html[from..from + html[from..].find('"')?];
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn a_tossed_pending_cookie_cannot_log_another_browser_in() {
    let app = TestApp::start().await;
    for victim_has_a_binder in [false, true] {
        let (victim, jar) = browser_with_jar();
        if victim_has_a_binder {
            // The victim once started a login of her own: her browser has its binder.
            app.start_login(&victim, "/").await;
        }
        let (pending, approved) = attackers_login(&app).await;
        let callback = location(&approved);
        jar.add_cookie_str(&pending, &app.url("/").parse().unwrap());
        let response = victim.get(&callback).send().await.unwrap();
        assert_refused(response, StatusCode::BAD_REQUEST, "browser_mismatch").await;
        assert_eq!(
            app.me_with(&victim).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(app.store.inner.user_count(), 0, "nothing provisioned");
    }
    // The browser that started a login finishes it.
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_tossed_pending_cookie_cannot_complete_a_form_post_callback() {
    let app = TestApp::start_with(|p| p.response_mode(ResponseMode::FormPost), |b| b).await;
    let (victim, jar) = browser_with_jar();
    app.start_login(&victim, "/").await;
    let (pending, page) = attackers_login(&app).await;
    assert_eq!(page.status(), StatusCode::OK, "the form_post page");
    let fields = form_fields(page).await;
    assert_eq!(fields.len(), 3, "{fields:?}");
    jar.add_cookie_str(&pending, &app.url("/").parse().unwrap());
    let response = victim
        .post(app.url("/auth/dev/callback"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_refused(response, StatusCode::BAD_REQUEST, "browser_mismatch").await;
    assert_eq!(app.store.inner.user_count(), 0);
}

/// Secure mode, the layer driven as a tower service: the binder is a `__Host-` cookie that
/// reaches a cross-site `POST`, and a callback without it is refused.
#[tokio::test]
async fn the_binder_is_a_host_cookie_and_the_callback_needs_it() {
    use axum::body::Body;
    use http::{Request, header};
    use jit_provision::JitLayer;
    use jit_provision::dev_idp::{DevClient, DevIdp};
    use tower::ServiceExt;

    const APP: &str = "https://app.example.com";
    let idp = DevIdp::builder()
        .client(DevClient::new("app", "secret").redirect_uri(format!("{APP}/auth/dev/callback")))
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let layer = JitLayer::builder()
        .public_url(APP)
        .provider(
            "dev",
            jit_provision::ProviderConfig::new(idp.issuer(), "app").client_secret("secret"),
        )
        .store(MemoryStore::new())
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .layer(layer);
    let start = app
        .clone()
        .oneshot(Request::get("/auth/dev/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookies: Vec<String> = start
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let binder = cookies
        .iter()
        .find(|c| c.starts_with("__Host-jit_binder="))
        .expect("a binder cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=None", "Path=/"] {
        assert!(binder.contains(attr), "{binder} lacks {attr}");
    }
    assert!(!binder.contains("Domain="), "{binder}");
    let pair = |c: &String| c.split(';').next().unwrap().to_owned();
    let pending = pair(
        cookies
            .iter()
            .find(|c| c.starts_with("__Secure-jit_login_"))
            .unwrap(),
    );
    let authorize = start.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let approved = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/authorize", idp.issuer()))
        .form(&DevIdp::approve_form(&authorize, &alice()))
        .send()
        .await
        .unwrap();
    let callback = location(&approved).strip_prefix(APP).unwrap().to_owned();
    let call = |cookie: String| {
        Request::get(&callback)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let without = app.clone().oneshot(call(pending.clone())).await.unwrap();
    assert_eq!(without.status(), StatusCode::BAD_REQUEST);
    // Another browser's binder does not do either.
    let other = "__Host-jit_binder=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let foreign = app
        .clone()
        .oneshot(call(format!("{pending}; {other}")))
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    let with = app
        .oneshot(call(format!("{pending}; {}", pair(binder))))
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::SEE_OTHER);
}

#[cfg(feature = "saml")]
#[tokio::test]
async fn a_tossed_saml_pending_cookie_cannot_log_another_browser_in() {
    use axum::body::Body;
    use http::{Request, header};
    use http_body_util::BodyExt;
    use jit_provision::{JitLayer, MappingConfig, ProviderConfig};
    use saml_common::*;
    use tower::ServiceExt;

    let Some(node) = node("a_tossed_saml_pending_cookie_cannot_log_another_browser_in") else {
        return;
    };
    let store = MemoryStore::new();
    let provider = ProviderConfig::saml(sp_config()).mapping({
        let mut built = MappingConfig::default();
        built.username = "{mail | localpart}".into();
        built.email = "{mail}".into();
        built.display_name = String::new();
        built
    });
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .layer(
            JitLayer::builder()
                .public_url("https://app.example.test")
                .provider(PROVIDER_ID, provider)
                .store(store.clone())
                .build()
                .unwrap(),
        );
    let get = |uri: &str, cookie: Option<&str>| {
        let mut request = Request::get(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        request.body(Body::empty()).unwrap()
    };
    let pairs = |response: &http::Response<Body>| -> Vec<String> {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect()
    };
    // The victim's browser has a binder of its own.
    let victims = app
        .clone()
        .oneshot(get("/auth/corp/login", None))
        .await
        .unwrap();
    let victim_cookies = pairs(&victims)
        .into_iter()
        .filter(|c| c.starts_with("__Host-jit_binder="));
    // The attacker starts a login and gets the IdP's answer to it.
    let start = app
        .clone()
        .oneshot(get("/auth/corp/login?return_to=/", None))
        .await
        .unwrap();
    let request_url = start.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let pending = pairs(&start)
        .into_iter()
        .find(|c| c.starts_with("__Secure-jit_login_"))
        .unwrap();
    let metadata = app
        .clone()
        .oneshot(get("/auth/corp/metadata", None))
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let k = keys();
    let out = run_idp(
        &node,
        idp_settings(&k.idp, &[&k.idp]),
        std::str::from_utf8(&metadata).unwrap(),
        vec![job(Some(&request_url), true, false)],
    );
    let saml_response = out.responses[0].clone().unwrap();
    let relay = url::Url::parse(&request_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned();
    // The victim's browser posts it with the planted pending cookie.
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", &saml_response)
        .append_pair("RelayState", &relay)
        .finish();
    let response = app
        .oneshot(
            Request::post("/auth/corp/acs")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(
                    header::COOKIE,
                    std::iter::once(pending)
                        .chain(victim_cookies)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        !pairs(&response)
            .iter()
            .any(|c| c.starts_with("__Host-jit_session=") && c.len() > 19)
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "browser_mismatch");
    assert_eq!(store.user_count(), 0);
}

// Item 15: logout and resume refuse cross-site requests.

#[tokio::test]
async fn logout_refuses_cross_site_requests_and_keeps_the_session() {
    let app = TestApp::start().await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let refused: [(&str, &str); 5] = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("origin", "http://localhost:1"),
    ];
    for (name, value) in refused {
        let response = app
            .client
            .post(app.url("/auth/logout"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert!(
            set_cookies(&response).is_empty(),
            "{name}: {value} touched cookies"
        );
        assert_refused(response, StatusCode::FORBIDDEN, "cross_site_request").await;
        assert_eq!(app.me().await.status(), StatusCode::OK, "{name}: {value}");
    }
    // Same-origin, typed, and non-browser requests log out.
    let allowed: [Option<(&str, String)>; 4] = [
        Some(("sec-fetch-site", "same-origin".into())),
        Some(("sec-fetch-site", "none".into())),
        Some(("origin", app.base.clone())),
        None,
    ];
    for header in allowed {
        assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
        let mut request = app.client.post(app.url("/auth/logout"));
        if let Some((name, value)) = &header {
            request = request.header(*name, value);
        }
        let out = request.send().await.unwrap();
        assert_eq!(out.status(), StatusCode::SEE_OTHER, "{header:?}");
        assert_eq!(
            app.me().await.status(),
            StatusCode::UNAUTHORIZED,
            "{header:?}"
        );
    }
}

#[tokio::test]
async fn resume_refuses_cross_site_requests_and_keeps_the_prompt() {
    let app = prompting(LinkBy::None, ChooseUsername).await;
    up_to_the_prompt(&app, &mallory()).await;
    let forged = app
        .client
        .post(app.url("/auth/resume"))
        .header("origin", "http://evil.example")
        .form(&[("consent", "yes"), ("username", "forced")])
        .send()
        .await
        .unwrap();
    assert!(set_cookies(&forged).is_empty());
    assert_refused(forged, StatusCode::FORBIDDEN, "cross_site_request").await;
    assert_eq!(app.store.inner.user_count(), 0);
    // The prompt is still there for the user's own form.
    let own = app
        .client
        .post(app.url("/auth/resume"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("consent", "yes"), ("username", "mal")])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::SEE_OTHER);
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["username"], "mal");
}

// Item 18: a non-ASCII return_to keeps its Location.

#[tokio::test]
async fn a_non_ascii_return_to_is_percent_encoded() {
    let app = TestApp::start().await;
    let authorize = app.start_login(&app.client, "/café?q=ü").await;
    let approved = app.approve(&app.client, &authorize, &alice()).await;
    let done = app.client.get(location(&approved)).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/caf%C3%A9?q=%C3%BC");
    assert!(sets_session(&done));
    let out = app
        .client
        .post(app.url("/auth/logout?return_to=/café"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/caf%C3%A9");
}
