//! Admission rules and roles through the layer (issue 17): who may be provisioned (email
//! domains, required groups, claim-value rules) at every login before anything is written,
//! locking on refusal, and roles derived by ordered rules with per-provider provenance.

mod common;

use common::bearer::{call, claims as bearer_claims};
use common::*;
use jit_provision::config::{
    AdmissionConfig, BearerConfig, ClaimRuleConfig, GroupsMode, LinkingConfig, RolesConfig,
};
use jit_provision::dev_idp::DevUser;
use jit_provision::policy::PreviewAction;
use jit_provision::store::{ProfileChanges, UserStore};
use jit_provision::{Claims, ConfigError, JitLayer};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn rejections(events: &Events) -> Vec<Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["event"] == "rejected")
        .collect()
}

fn domains(list: &[&str]) -> AdmissionConfig {
    {
        let mut built = AdmissionConfig::default();
        built.email_domains = Some(list.iter().map(|d| d.to_string()).collect());
        built
    }
}

fn groups_required(list: &[&str], lock: bool) -> AdmissionConfig {
    {
        let mut built = AdmissionConfig::default();
        built.require_groups = Some(list.iter().map(|d| d.to_string()).collect());
        built.lock_on_refusal = lock;
        built
    }
}

/// Asserts a `403 not_admitted` naming `rule` in the body, with no session.
async fn assert_not_admitted(response: reqwest::Response, rule: &str) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!sets_session(&response), "a session was issued");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_admitted");
    assert!(
        body["message"].as_str().unwrap().contains(rule),
        "{body} names {rule}"
    );
}

#[tokio::test]
async fn an_email_domain_outside_the_list_is_refused_and_nothing_is_created() {
    let events = Events::default();
    let app = TestApp::start_with(
        |p| p.admission(domains(&["example.com"])),
        recording(&events),
    )
    .await;
    let outsider = DevUser::new(
        "sub-eve",
        "eve",
        "eve@example.com.evil.test",
        "Eve",
        &["staff"],
    );
    assert_not_admitted(app.login(&outsider).await, "admission.email_domains").await;
    assert_eq!(app.store.inner.user_count(), 0, "nothing created");
    assert_eq!(app.store.inner.counters().creates(), 0);
    let rejected = rejections(&events);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["code"], "not_admitted");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("admission.email_domains")
    );
    // A subdomain is not the domain (exact, not a suffix); the domain itself, in any case, is.
    let sub = DevUser::new("sub-s", "sub", "s@eu.example.com", "S", &["staff"]);
    assert_not_admitted(app.login(&sub).await, "admission.email_domains").await;
    let mut shouting = alice();
    shouting.claims["email"] = json!("alice@EXAMPLE.com");
    assert_eq!(app.login(&shouting).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn an_unverified_email_is_not_admitted_unless_the_provider_is_trusted() {
    let mut unverified = alice();
    unverified.claims["email_verified"] = json!(false);
    let app = TestApp::start_with(|p| p.admission(domains(&["example.com"])), |b| b).await;
    assert_not_admitted(app.login(&unverified).await, "admission.email_domains").await;
    assert_eq!(app.store.inner.user_count(), 0);
    let trusted = TestApp::start_with(
        |p| {
            p.admission(domains(&["example.com"]))
                .linking(LinkingConfig::default().trust_email(true))
        },
        |b| b,
    )
    .await;
    assert_eq!(
        trusted.login(&unverified).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn required_groups_any_of_by_default_all_of_when_asked() {
    let app = TestApp::start_with(
        |p| p.admission(groups_required(&["staff", "eng-*"], false)),
        |b| b,
    )
    .await;
    let eng = DevUser::new("sub-e", "erin", "erin@example.com", "Erin", &["eng-web"]);
    assert_eq!(app.login(&eng).await.status(), StatusCode::SEE_OTHER);
    let finance = DevUser::new("sub-f", "fred", "fred@example.com", "Fred", &["finance"]);
    assert_not_admitted(app.login(&finance).await, "admission.require_groups").await;
    assert_eq!(app.store.inner.user_count(), 1);

    let all = TestApp::start_with(
        |p| {
            p.admission({
                let mut built = groups_required(&["staff", "eng-*"], false);
                built.require_groups_mode = GroupsMode::All;
                built
            })
        },
        |b| b,
    )
    .await;
    assert_not_admitted(all.login(&eng).await, "admission.require_groups").await;
    let both = DevUser::new(
        "sub-b",
        "bea",
        "bea@example.com",
        "Bea",
        &["staff", "eng-web"],
    );
    assert_eq!(all.login(&both).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(all.store.inner.user_count(), 1);
}

#[tokio::test]
async fn a_returning_user_dropped_from_a_required_group_is_refused_and_not_updated() {
    let events = Events::default();
    let app = TestApp::start_with(
        |p| p.admission(groups_required(&["staff"], false)),
        recording(&events),
    )
    .await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let before = app.store.inner.users()[0].clone();
    let mut dropped = alice();
    dropped.claims["groups"] = json!(["finance"]);
    dropped.claims["email"] = json!("changed@example.com");
    let client = browser();
    assert_not_admitted(
        app.login_with(&client, &dropped).await,
        "admission.require_groups",
    )
    .await;
    assert_eq!(app.store.inner.counters().updates(), 0, "nothing updated");
    assert_eq!(app.store.inner.users(), std::slice::from_ref(&before));
    assert!(!before.locked, "not locked without lock_on_refusal");
    assert_eq!(rejections(&events).len(), 1);
    // Back in the group: admitted again.
    assert_eq!(
        app.login_with(&client, &alice()).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn lock_on_refusal_locks_a_returning_user_and_ends_its_session() {
    let events = Events::default();
    let app = TestApp::start_with(
        |p| p.admission(groups_required(&["staff"], true)),
        recording(&events),
    )
    .await;
    // A refused first login has nobody to lock, and creates nobody.
    let stranger = DevUser::new("sub-x", "xena", "x@example.com", "X", &["finance"]);
    assert_not_admitted(
        app.login_with(&browser(), &stranger).await,
        "admission.require_groups",
    )
    .await;
    assert_eq!(app.store.inner.user_count(), 0);

    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.me().await.status(), StatusCode::OK, "a session");
    let mut dropped = alice();
    dropped.claims["groups"] = json!(["finance"]);
    assert_not_admitted(
        app.login_with(&browser(), &dropped).await,
        "admission.require_groups",
    )
    .await;
    assert!(
        app.store.inner.users()[0].locked,
        "locked through set_locked"
    );
    // The session from before is refused at its next request...
    assert_ne!(app.me().await.status(), StatusCode::OK);
    // ... because it was ended in the session store, not only refused for the lock:
    // unlocked, the user is still logged out.
    let id = app.store.inner.users()[0].id;
    assert!(
        app.layer
            .sessions_of("PRIMARY", id)
            .await
            .unwrap()
            .is_empty()
    );
    app.store.inner.set_locked(id, false).await.unwrap();
    app.layer.forget_user(id).await;
    assert_ne!(app.me().await.status(), StatusCode::OK);
    app.store.inner.set_locked(id, true).await.unwrap();
    app.layer.forget_user(id).await;
    // ... and so is the next login, even back in the group.
    assert_refused(
        app.login_with(&browser(), &alice()).await,
        StatusCode::FORBIDDEN,
        "user_locked",
    )
    .await;
    // One event for the application (to revoke its own tokens), for the one lock.
    let id = app.store.inner.users()[0].id;
    assert_eq!(
        events_of(&events, "locked"),
        [
            json!({"event": "locked", "provider": "dev", "domain": "PRIMARY",
                "user_id": id, "reason": "admission_refused"})
        ]
    );
}

#[tokio::test]
async fn claim_rules_read_nested_paths() {
    let app = TestApp::start_with(
        |p| {
            p.admission({
                let mut built = AdmissionConfig::default();
                built.claims = vec![
                    {
                        let mut built = ClaimRuleConfig::default();
                        built.path = r#"tenant."region-id""#.into();
                        built.one_of = Some(vec![json!("eu-1"), json!("eu-2")]);
                        built
                    },
                    {
                        let mut built = ClaimRuleConfig::default();
                        built.path = "amr".into();
                        built.regex = Some("mfa|hwk".into());
                        built
                    },
                ];
                built
            })
        },
        |b| b,
    )
    .await;
    let mut user = alice();
    user.claims
        .insert("tenant".into(), json!({"region-id": "eu-2"}));
    user.claims.insert("amr".into(), json!(["pwd", "mfa"]));
    let mut wrong_tenant = user.clone();
    wrong_tenant.claims["tenant"] = json!({"region-id": "us-1"});
    assert_not_admitted(
        app.login_with(&browser(), &wrong_tenant).await,
        "admission.claims[0]",
    )
    .await;
    let mut no_mfa = user.clone();
    no_mfa.claims["amr"] = json!(["pwd", "xmfa"]);
    assert_not_admitted(
        app.login_with(&browser(), &no_mfa).await,
        "admission.claims[1]",
    )
    .await;
    assert_eq!(app.store.inner.user_count(), 0);
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn bearer_tokens_are_admitted_by_the_same_rules() {
    let app = TestApp::start_with(
        |p| {
            p.bearer(BearerConfig::new(["api"]))
                .admission(groups_required(&["svc-*"], false))
        },
        |b| b,
    )
    .await;
    let token = app
        .idp
        .sign_access_token(bearer_claims(&app, "svc-reports"));
    let response = call(&app, "/me", &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "not_admitted");
    assert_eq!(app.store.inner.user_count(), 0);
    let mut claims = bearer_claims(&app, "svc-reports");
    claims["groups"] = json!(["svc-batch"]);
    let token = app.idp.sign_access_token(claims);
    assert_eq!(call(&app, "/me", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_invalid_rule_is_a_config_error_naming_provider_and_rule() {
    let bad = [
        (domains(&[]), "admission.email_domains"),
        (groups_required(&[], false), "admission.require_groups"),
        (
            {
                let mut built = AdmissionConfig::default();
                built.claims = vec![{
                    let mut built = ClaimRuleConfig::default();
                    built.path = "acr".into();
                    built.regex = Some("(".into());
                    built
                }];
                built
            },
            "admission.claims[0]",
        ),
        (
            {
                let mut built = AdmissionConfig::default();
                built.claims = vec![{
                    let mut built = ClaimRuleConfig::default();
                    built.path = "a..b".into();
                    built.equals = Some(json!("x"));
                    built
                }];
                built
            },
            "admission.claims[0]",
        ),
    ];
    for (admission, rule) in bad {
        let err = JitLayer::builder()
            .public_url("http://localhost:3000")
            .insecure_cookies_for_localhost()
            .provider(
                "corp",
                default_provider("https://idp.example.com").admission(admission),
            )
            .store(jit_provision::store::MemoryStore::new())
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Provider { id, reason } if id == "corp" && reason.starts_with(rule)),
            "{err}"
        );
    }
    let roles: RolesConfig =
        toml::from_str("[[rules]]\nrole = \"a\"\nwhen = { claim = \"x\", regex = \"[\" }").unwrap();
    let err = JitLayer::builder()
        .public_url("http://localhost:3000")
        .insecure_cookies_for_localhost()
        .provider(
            "corp",
            default_provider("https://idp.example.com").roles(roles),
        )
        .store(jit_provision::store::MemoryStore::new())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("roles.rules[0]"), "{err}");
}

// --- Roles ---------------------------------------------------------------------------

const KEYCLOAK_RULES: &str = r#"
    [[rules]]
    role = "admin"
    when = { claim = "realm_access.roles", one_of = ["realm-admin"] }
    [[rules]]
    role = "editor"
    when = { claim = 'resource_access."demo".roles', equals = "editor" }
    [[rules]]
    role = "viewer"
    when = { group = "staff" }
"#;

fn roles(extra: &str) -> RolesConfig {
    toml::from_str(&format!("{extra}\n{KEYCLOAK_RULES}")).unwrap()
}

/// Alice with Keycloak-style nested roles.
fn keycloak_alice(realm: &[&str], client: &[&str]) -> DevUser {
    let mut user = alice();
    user.claims
        .insert("realm_access".into(), json!({ "roles": realm }));
    user.claims.insert(
        "resource_access".into(),
        json!({ "demo": { "roles": client } }),
    );
    user
}

fn stored_roles(app: &TestApp) -> Vec<String> {
    app.store.inner.users()[0].roles.iter().cloned().collect()
}

#[tokio::test]
async fn roles_first_match_or_all_matches_and_on_current_user() {
    let first = TestApp::start_with(|p| p.roles(roles("")), |b| b).await;
    let user = keycloak_alice(&["realm-admin"], &["editor"]);
    assert_eq!(first.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_roles(&first), ["admin"]);
    let me: Value = first.me().await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["admin"]), "exposed on CurrentUser");
    assert_eq!(me["groups"], json!(["staff"]), "roles are not groups");

    let all = TestApp::start_with(|p| p.roles(roles("mode = \"all\"")), |b| b).await;
    assert_eq!(all.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_roles(&all), ["admin", "editor", "viewer"]);
}

#[tokio::test]
async fn the_default_role_when_no_rule_matches_and_strict_refuses() {
    let nobody = DevUser::new("sub-n", "nina", "n@example.com", "Nina", &["finance"]);
    let defaulted = TestApp::start_with(|p| p.roles(roles("default = \"guest\"")), |b| b).await;
    assert_eq!(
        defaulted.login(&nobody).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(stored_roles(&defaulted), ["guest"]);

    let events = Events::default();
    let strict = TestApp::start_with(|p| p.roles(roles("strict = true")), recording(&events)).await;
    assert_refused(
        strict.login(&nobody).await,
        StatusCode::FORBIDDEN,
        "no_role",
    )
    .await;
    assert_eq!(strict.store.inner.user_count(), 0, "nothing created");
    assert_eq!(rejections(&events)[0]["code"], "no_role");
    assert_eq!(strict.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_roles(&strict), ["viewer"]);
}

#[tokio::test]
async fn a_role_removed_at_the_idp_goes_while_a_local_role_stays() {
    let app = TestApp::start_with(|p| p.roles(roles("mode = \"all\"")), |b| b).await;
    let user = keycloak_alice(&["realm-admin"], &["editor"]);
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let id = app.store.inner.users()[0].id;
    // The application grants a role of its own.
    let mut local = app.store.inner.users()[0].roles.clone();
    local.insert("billing".into());
    app.store
        .inner
        .update(
            id,
            &ProfileChanges {
                roles: Some(local),
                ..ProfileChanges::default()
            },
        )
        .await
        .unwrap();
    app.layer.forget_user(id).await;
    // At the IdP, alice loses `realm-admin`.
    let demoted = keycloak_alice(&[], &["editor"]);
    assert_eq!(app.login(&demoted).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_roles(&app), ["billing", "editor", "viewer"]);
    let user = &app.store.inner.users()[0];
    assert_eq!(user.idp_roles["dev"].len(), 2);
    assert!(
        user.idp_attributes.contains("roles"),
        "managed by the provider"
    );
}

#[tokio::test]
async fn the_dry_run_refuses_as_a_login_would() {
    let app = TestApp::start_with(
        |p| {
            p.admission(groups_required(&["staff"], false))
                .roles(roles(""))
        },
        |b| b,
    )
    .await;
    let claims = |groups: Value| {
        Claims(
            json!({"sub": "p", "preferred_username": "pat", "groups": groups})
                .as_object()
                .unwrap()
                .clone(),
        )
    };
    let refused = app
        .layer
        .preview("dev", None, &claims(json!(["finance"])))
        .await
        .unwrap();
    assert!(
        matches!(&refused.action, PreviewAction::Refuse { code, reason } if code == "not_admitted" && reason.contains("admission.require_groups")),
        "{:?}",
        refused.action
    );
    let admitted = app
        .layer
        .preview("dev", None, &claims(json!(["staff"])))
        .await
        .unwrap();
    assert!(matches!(admitted.action, PreviewAction::Create));
    let roles = admitted.profile.unwrap().roles.unwrap();
    assert_eq!(roles.into_iter().collect::<Vec<_>>(), ["viewer"]);
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn an_absent_groups_claim_keeps_the_roles_groups_granted() {
    let app = TestApp::start_with(|p| p.roles(roles("")), |b| b).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_roles(&app), ["viewer"], "from the group `staff`");
    // The IdP omits the groups claim (`when_absent = "keep"`): the groups stay, and so do
    // the roles a group rule granted (nothing can be decided from no groups).
    let mut silent = alice();
    silent.claims.remove("groups");
    assert_eq!(app.login(&silent).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored_roles(&app), ["viewer"]);
    assert_eq!(app.store.inner.counters().updates(), 0);
    // An empty list is an answer: `staff` and its role go.
    let mut none = alice();
    none.claims["groups"] = json!([]);
    assert_eq!(app.login(&none).await.status(), StatusCode::SEE_OTHER);
    assert!(stored_roles(&app).is_empty());
}
