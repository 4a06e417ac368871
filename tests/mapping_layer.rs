//! The mapping through the layer (issue 17): claim paths, per-field ownership, group overage
//! with and without a resolver, the trace in dry runs, the admin JSON and events, and the
//! admin "test your mapping" page.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use futures_util::future::BoxFuture;
use jit_provision::config::{AbsentGroups, GroupsConfig, MappingConfig};
use jit_provision::mapping::{GroupResolver, GroupResolverError, Ownership, Target, Verdict};
use jit_provision::policy::check_local_edit;
use jit_provision::store::{ProfileChanges, UserStore};
use jit_provision::{Claims, JitLayerBuilder};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn event_json(events: &Events) -> Vec<Value> {
    let events = events.lock().unwrap();
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

fn claims(v: Value) -> Claims {
    Claims(v.as_object().unwrap().clone())
}

/// A Keycloak-style provider: roles of the realm and of a client, a nested attribute.
fn keycloak() -> MappingConfig {
    let mut groups = GroupsConfig::from_claim(r#"resource_access."my-app".roles"#);
    groups.rename = BTreeMap::from([("app-admin".to_owned(), "admins".to_owned())]);
    {
        let mut built = MappingConfig::default();
        built.display_name = "{name} ({org.unit | uppercase})".into();
        built.required = vec!["realm_access.roles".into()];
        built.attributes =
            BTreeMap::from([("realm_role".to_owned(), "{realm_access.roles}".to_owned())]);
        built.groups = Some(groups);
        built
    }
}

#[tokio::test]
async fn nested_claims_map_through_claim_paths() {
    let app = TestApp::start_with(|p| p.mapping(keycloak()), |b| b).await;
    let mut user = alice();
    user.claims.remove("groups");
    user.claims.insert("org".into(), json!({"unit": "r&d"}));
    user.claims.insert(
        "resource_access".into(),
        json!({"my-app": {"roles": ["app-admin", "viewer"]}, "other": {"roles": ["x"]}}),
    );
    // `realm_access.roles` is required: without it nothing is created.
    assert_refused(
        app.login(&user).await,
        StatusCode::FORBIDDEN,
        "missing_attribute",
    )
    .await;
    assert_eq!(app.store.inner.user_count(), 0);

    user.claims.insert(
        "realm_access".into(),
        json!({"roles": ["offline_access", "user"]}),
    );
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let stored = &app.store.inner.users()[0];
    assert_eq!(stored.display_name.as_deref(), Some("Alice (R&D)"));
    assert_eq!(stored.attributes["realm_role"], "offline_access");
    assert_eq!(
        stored.groups,
        ["admins".to_owned(), "viewer".to_owned()].into()
    );
}

#[tokio::test]
async fn a_bad_claim_path_is_refused_at_build() {
    for config in [
        {
            let mut built = MappingConfig::default();
            built.required = vec!["realm_access..roles".into()];
            built
        },
        {
            let mut built = MappingConfig::default();
            built.groups = Some(GroupsConfig::from_claim(r#"resource_access."my-app"#));
            built
        },
        {
            let mut built = MappingConfig::default();
            built.username = "{resource_access.}".into();
            built
        },
    ] {
        let err = JitLayerBuilder::default()
            .public_url("https://app.example.com")
            .provider(
                "corp",
                jit_provision::ProviderConfig::new("https://idp.example.com", "app")
                    .mapping(config),
            )
            .store(jit_provision::store::MemoryStore::new())
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("provider `corp`") && err.contains("claim path"),
            "{err}"
        );
    }
}

/// Attributes `dept` (on_create), `title` (always, the default), `badge` (never), and the
/// email owned by the application after creation.
fn owned() -> MappingConfig {
    {
        let mut built = MappingConfig::default();
        built.attributes = BTreeMap::from([
            ("dept".to_owned(), "{department}".to_owned()),
            ("title".to_owned(), "{title}".to_owned()),
            ("badge".to_owned(), "{badge}".to_owned()),
        ]);
        built.ownership = BTreeMap::from([
            ("dept".to_owned(), Ownership::OnCreate),
            ("badge".to_owned(), Ownership::Never),
            ("email".to_owned(), Ownership::OnCreate),
        ]);
        built
    }
}

#[tokio::test]
async fn on_create_fields_are_set_once_and_then_the_apps() {
    let app = TestApp::start_with(|p| p.mapping(owned()), |b| b).await;
    let mut user = alice();
    user.claims.insert("department".into(), json!("sales"));
    user.claims.insert("title".into(), json!("Rep"));
    user.claims.insert("badge".into(), json!("B-1"));
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let created = app.store.inner.users()[0].clone();
    assert_eq!(created.attributes["dept"], "sales", "set at creation");
    assert_eq!(created.email.as_deref(), Some("alice@example.com"));
    assert!(
        !created.attributes.contains_key("badge"),
        "never: not written"
    );
    // The application owns `dept` and the email now; the IdP owns `title`.
    assert!(check_local_edit(&created, "dept").is_ok());
    assert!(check_local_edit(&created, "email").is_ok());
    assert!(check_local_edit(&created, "title").is_err());
    let local = ProfileChanges {
        attributes: BTreeMap::from([("dept".to_owned(), "marketing".to_owned())]),
        email: Some(Some("alice@local.example".into())),
        ..Default::default()
    };
    app.store.inner.update(created.id, &local).await.unwrap();

    user.claims.insert("department".into(), json!("finance"));
    user.claims.insert("title".into(), json!("Lead"));
    user.claims
        .insert("email".into(), json!("alice@new.example"));
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let after = app.store.inner.users()[0].clone();
    assert_eq!(
        after.attributes["dept"], "marketing",
        "on_create: not overwritten"
    );
    assert_eq!(after.email.as_deref(), Some("alice@local.example"));
    assert_eq!(after.attributes["title"], "Lead", "always: overwritten");
    assert!(!after.attributes.contains_key("badge"));
    assert!(check_local_edit(&after, "dept").is_ok());
    assert!(check_local_edit(&after, "title").is_err());
}

#[tokio::test]
async fn a_dry_run_shows_never_fields_and_the_trace() {
    let app = TestApp::start_with(|p| p.mapping(owned()), |b| b).await;
    let preview = app
        .layer
        .preview(
            "dev",
            None,
            &claims(json!({"preferred_username": "zoe", "department": "ops",
                "title": "CTO", "badge": "B-7", "email": "zoe@example.com"})),
        )
        .await
        .unwrap();
    assert_eq!(preview.preview_only["badge"], "B-7");
    let profile = preview.profile.as_ref().unwrap();
    assert_eq!(profile.attributes["dept"], "ops");
    assert!(!profile.attributes.contains_key("badge"));
    let decision = |target: Target| {
        preview
            .trace
            .0
            .iter()
            .find(|d| d.target == target)
            .unwrap_or_else(|| panic!("{target:?} in {:?}", preview.trace))
            .clone()
    };
    let dept = decision(Target::Attribute("dept".into()));
    assert_eq!(dept.claims, ["department"]);
    assert_eq!(dept.verdict, Verdict::Set);
    assert!(dept.rule.contains("ownership on_create"), "{}", dept.rule);
    assert_eq!(
        decision(Target::Attribute("badge".into())).verdict,
        Verdict::Skipped
    );
    assert_eq!(decision(Target::Email).claims, ["email"]);
    let json = serde_json::to_string(&preview.trace).unwrap();
    for value in ["zoe", "ops", "CTO", "B-7"] {
        assert!(!json.contains(value), "a claim value in the trace: {json}");
    }

    // A refusal names its rule.
    let refused = app
        .layer
        .preview("dev", None, &claims(json!({"email": "x@example.com"})))
        .await
        .unwrap();
    let refusal = refused.trace.refusal().unwrap();
    assert_eq!(refusal.target, Target::Username);
    assert_eq!(refusal.claims, ["preferred_username"]);
}

#[tokio::test]
async fn events_carry_the_trace() {
    let events = Events::default();
    let app = TestApp::start_with(|p| p, recording(&events)).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut changed = alice();
    changed.claims["groups"] = json!(["staff", "eng"]);
    assert_eq!(app.login(&changed).await.status(), StatusCode::SEE_OTHER);
    let mut nameless = bob();
    nameless.claims.remove("preferred_username");
    assert_eq!(app.login(&nameless).await.status(), StatusCode::FORBIDDEN);
    let events = event_json(&events);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "updated", "rejected"]);
    let rules = |event: &Value| -> Vec<(String, String)> {
        event["trace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["target"]["kind"].as_str().unwrap().to_owned(),
                    d["verdict"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let created = rules(&events[0]);
    assert!(
        created.contains(&("username".into(), "set".into())),
        "{created:?}"
    );
    assert!(
        created.contains(&("group".into(), "granted".into())),
        "{created:?}"
    );
    let updated = &events[1]["trace"];
    assert!(
        updated
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["target"] == json!({"kind": "group", "name": "eng"})),
        "{updated}"
    );
    let rejected = rules(&events[2]);
    assert_eq!(rejected, [("username".to_owned(), "refused".to_owned())]);
    assert_eq!(
        events[2]["trace"][0]["claims"],
        json!(["preferred_username"])
    );
}

/// Groups by `groups` with `when_absent = clear`, and a resolver if given.
async fn overage_app(resolver: Option<Arc<dyn GroupResolver>>, events: &Events) -> TestApp {
    let mut groups = GroupsConfig::from_claim("groups");
    groups.when_absent = AbsentGroups::Clear;
    let record = recording(events);
    TestApp::start_with(
        move |p| {
            p.mapping({
                let mut built = MappingConfig::default();
                built.groups = Some(groups);
                built
            })
        },
        move |b| {
            let b = record(b);
            match resolver {
                Some(resolver) => b.group_resolver("dev", Shared(resolver)),
                None => b,
            }
        },
    )
    .await
}

struct Shared(Arc<dyn GroupResolver>);

impl GroupResolver for Shared {
    fn resolve<'a>(
        &'a self,
        provider: &'a str,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<Vec<String>, GroupResolverError>> {
        self.0.resolve(provider, claims)
    }
}

/// A resolver answering `groups`, or failing; counts its calls.
struct Fixed {
    groups: Option<Vec<String>>,
    calls: Mutex<Vec<String>>,
}

impl GroupResolver for Fixed {
    fn resolve<'a>(
        &'a self,
        provider: &'a str,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<Vec<String>, GroupResolverError>> {
        let oid = claims.str("oid").unwrap_or_default();
        self.calls.lock().unwrap().push(format!("{provider}/{oid}"));
        let answer = self
            .groups
            .clone()
            .ok_or_else(|| GroupResolverError::new("graph is down"));
        Box::pin(async move { answer })
    }
}

/// Alice with an Entra ID overage instead of her groups.
fn overage_user() -> jit_provision::dev_idp::DevUser {
    let mut user = alice();
    user.claims.remove("groups");
    user.claims.insert("oid".into(), json!("oid-alice"));
    user.claims
        .insert("_claim_names".into(), json!({"groups": "src1"}));
    user.claims.insert(
        "_claim_sources".into(),
        json!({"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/oid-alice/getMemberObjects"}}),
    );
    user
}

fn groups_of(app: &TestApp) -> Vec<String> {
    app.store.inner.users()[0].groups.iter().cloned().collect()
}

#[tokio::test]
async fn an_overage_without_a_resolver_keeps_the_grants() {
    let events = Events::default();
    let app = overage_app(None, &events).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(groups_of(&app), ["staff"]);
    assert_eq!(
        app.login(&overage_user()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        groups_of(&app),
        ["staff"],
        "an overage never shrinks grants"
    );
    let mut hasgroups = alice();
    hasgroups.claims.remove("groups");
    hasgroups.claims.insert("hasgroups".into(), json!(true));
    assert_eq!(app.login(&hasgroups).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(groups_of(&app), ["staff"]);
    // Really absent, with `clear`: removed.
    let mut absent = alice();
    absent.claims.remove("groups");
    assert_eq!(app.login(&absent).await.status(), StatusCode::SEE_OTHER);
    assert!(groups_of(&app).is_empty());
}

#[tokio::test]
async fn an_overage_with_a_resolver_syncs_the_resolved_groups() {
    let events = Events::default();
    let resolver = Arc::new(Fixed {
        groups: Some(vec!["staff".into(), "eng-web".into()]),
        calls: Mutex::default(),
    });
    let app = overage_app(Some(resolver.clone()), &events).await;
    let mut first = alice();
    first.claims["groups"] = json!(["staff", "finance"]);
    assert_eq!(app.login(&first).await.status(), StatusCode::SEE_OTHER);
    assert!(
        resolver.calls.lock().unwrap().is_empty(),
        "no overage, no call"
    );
    assert_eq!(
        app.login(&overage_user()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(groups_of(&app), ["eng-web", "staff"]);
    assert_eq!(*resolver.calls.lock().unwrap(), ["dev/oid-alice"]);
    let events = event_json(&events);
    let updated = events.iter().find(|e| e["event"] == "updated").unwrap();
    assert!(
        updated["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["rule"] == "group resolver (overage)"),
        "{updated}"
    );
}

#[tokio::test]
async fn a_failing_resolver_keeps_the_grants() {
    let events = Events::default();
    let resolver = Arc::new(Fixed {
        groups: None,
        calls: Mutex::default(),
    });
    let app = overage_app(Some(resolver.clone()), &events).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.login(&overage_user()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(resolver.calls.lock().unwrap().len(), 1);
    assert_eq!(groups_of(&app), ["staff"], "kept");
    let preview = app
        .layer
        .preview("dev", Some("sub-alice"), &Claims(overage_user().claims))
        .await
        .unwrap();
    assert!(
        preview
            .trace
            .0
            .iter()
            .any(|d| d.rule == "group resolver failed: grants kept"),
        "{:?}",
        preview.trace
    );
}

#[tokio::test]
async fn a_resolver_for_an_unknown_provider_is_refused_at_build() {
    let resolver = Fixed {
        groups: None,
        calls: Mutex::default(),
    };
    let err = JitLayerBuilder::default()
        .public_url("https://app.example.com")
        .provider(
            "corp",
            jit_provision::ProviderConfig::new("https://idp.example.com", "app"),
        )
        .group_resolver("crop", resolver)
        .store(jit_provision::store::MemoryStore::new())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("provider `crop`"), "{err}");
}

#[tokio::test]
async fn the_admin_json_preview_has_the_trace() {
    let app = TestApp::start().await;
    let admin = admin_browser(&app).await;
    let body = json!({"provider": "dev", "claims": {"preferred_username": "zed", "groups": ["x"]}});
    let preview: Value = admin
        .post(app.url("/admin/jit-preview"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trace = preview["trace"].as_array().unwrap();
    assert!(
        trace.contains(&json!({"target": {"kind": "username"},
        "rule": "username = \"{preferred_username}\"",
        "claims": ["preferred_username"], "verdict": "set"})),
        "{preview}"
    );
    assert!(
        trace.contains(&json!({"target": {"kind": "group", "name": "x"},
        "rule": "groups.claim", "claims": ["groups"], "verdict": "granted"})),
        "{preview}"
    );
}

/// Logs in an admin (the local group `admins`) in a browser of its own.
async fn admin_browser(app: &TestApp) -> reqwest::Client {
    let admin = browser();
    let mut boss = bob();
    boss.claims["groups"] = json!(["admins"]);
    assert_eq!(
        app.login_with(&admin, &boss).await.status(),
        StatusCode::SEE_OTHER
    );
    admin
}

#[tokio::test]
async fn the_test_page_is_guarded() {
    let app = TestApp::start().await;
    let anonymous = reqwest::Client::new();
    let response = anonymous
        .get(app.url("/admin/jit-test"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = anonymous
        .post(app.url("/admin/jit-test"))
        .form(&[("provider", "dev"), ("claims", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let response = app
        .client
        .get(app.url("/admin/jit-test"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "staff is not admins"
    );
    let admin = admin_browser(&app).await;
    let response = admin.get(app.url("/admin/jit-test")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("<form method=\"post\"") && page.contains("<option value=\"dev\""));
}

#[tokio::test]
async fn the_test_page_shows_profile_action_and_trace_escaped() {
    let app = TestApp::start().await;
    let admin = admin_browser(&app).await;
    let post = |claims: &str| {
        admin
            .post(app.url("/admin/jit-test"))
            .form(&[("provider", "dev"), ("subject", ""), ("claims", claims)])
            .send()
    };
    let claims = r#"{"preferred_username": "zed", "name": "<script>alert(1)</script>", "groups": ["<b>x</b>"]}"#;
    let response = post(claims).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("<p id=\"action\">create a user</p>"),
        "{page}"
    );
    assert!(
        !page.contains("<script>") && !page.contains("<b>x</b>"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("<td>group &lt;b&gt;x&lt;/b&gt;</td><td>groups.claim</td><td>groups</td><td>granted</td>"), "{page}");
    assert!(page.contains("<td>username</td><td>username = &quot;{preferred_username}&quot;</td><td>preferred_username</td><td>set</td>"), "{page}");

    // A SAML attribute list; a name given twice is multi-valued.
    let saml = "preferred_username = sam\ngroups = eng\ngroups = ops\n";
    let page = post(saml).await.unwrap().text().await.unwrap();
    assert!(page.contains("&quot;sam&quot;"), "{page}");
    assert!(
        page.contains("<td>group eng</td>") && page.contains("<td>group ops</td>"),
        "{page}"
    );

    // A refusal, and unusable input.
    let page = post(r#"{"email": "x@example.com"}"#)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("refuse: missing_attribute"), "{page}");
    assert!(page.contains("<td>refused</td>"), "{page}");
    let response = post("not an attribute list").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("expected `name = value`")
    );
    let response = admin
        .post(app.url("/admin/jit-test"))
        .form(&[("provider", "nope"), ("claims", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.store.inner.user_count(),
        1,
        "only the admin: a dry run writes nothing"
    );
}
