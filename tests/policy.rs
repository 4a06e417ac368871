//! The provisioning policy through the layer: modes, user-store domains, mapping, group
//! sync, account linking, non-blocking updates, prompts, events, dry runs and lifecycle.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use jit_provision::Claims;
use jit_provision::config::{
    DomainRule, GroupsConfig, LinkBy, LinkingConfig, MappingConfig, ProvisioningMode,
};
use jit_provision::dev_idp::DevUser;
use jit_provision::policy::{Deprovision, PreviewAction, check_local_edit};
use jit_provision::store::{Identity, IdentityKey, MemoryStore, Profile, Refusal, UserStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn key(subject: &str) -> IdentityKey {
    IdentityKey {
        provider: "dev".into(),
        subject: subject.into(),
    }
}

/// A user linked to `dev` before any login (an existing account).
async fn prelinked(app: &TestApp, user: &DevUser) -> jit_provision::store::User {
    let identity = Identity::new("dev", app.idp.issuer(), &user.subject);
    let username = user.claims["preferred_username"].as_str().unwrap();
    app.store
        .inner
        .create(&identity, &Profile::new(username))
        .await
        .unwrap()
}

fn kinds(events: &Events) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn mode_off_lets_only_linked_users_in_and_changes_nothing() {
    let app = TestApp::start_with(|p| p.mode(ProvisioningMode::Off), |b| b).await;
    let response = app.login(&bob()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "jit_disabled");
    let existing = prelinked(&app, &alice()).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let user = app
        .store
        .inner
        .find_by_id(existing.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.email, None, "off: attributes are not synced");
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn create_only_never_touches_a_user_again() {
    let app = TestApp::start_with(|p| p.mode(ProvisioningMode::CreateOnly), |b| b).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut changed = alice();
    changed.claims["email"] = json!("new@example.com");
    assert_eq!(app.login(&changed).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.inner.counters().updates(), 0);
    assert_eq!(
        app.store.inner.users()[0].email.as_deref(),
        Some("alice@example.com")
    );
}

#[tokio::test]
async fn update_only_syncs_linked_users_and_refuses_unknown_ones() {
    let app = TestApp::start_with(|p| p.mode(ProvisioningMode::UpdateOnly), |b| b).await;
    let response = app.login(&bob()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let existing = prelinked(&app, &alice()).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let user = app
        .store
        .inner
        .find_by_id(existing.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.email.as_deref(), Some("alice@example.com"));
    assert_eq!(app.store.inner.user_count(), 1);
}

#[tokio::test]
async fn a_fixed_domain_provisions_into_its_own_store() {
    let external = MemoryStore::new();
    let ext = external.clone();
    let app = TestApp::start_with(
        |mut p| {
            p.domain = DomainRule::Fixed("EXT".into());
            p
        },
        move |b| b.domain_store("EXT", ext.clone()),
    )
    .await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        (app.store.inner.user_count(), external.user_count()),
        (0, 1)
    );
    // The session finds the user in its domain.
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["username"], "alice");
}

#[tokio::test]
async fn the_domain_named_in_the_username_is_used_and_checked() {
    let external = MemoryStore::new();
    let ext = external.clone();
    let app = TestApp::start_with(
        |mut p| {
            p.domain = DomainRule::FromUsername;
            p
        },
        move |b| b.domain_store("EXT", ext.clone()),
    )
    .await;
    let mut prefixed = alice();
    prefixed.claims["preferred_username"] = json!("EXT/alice");
    assert_eq!(app.login(&prefixed).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        external.users()[0].username,
        "alice",
        "the prefix is not stored"
    );
    assert_eq!(app.login(&bob()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.store.inner.users()[0].username,
        "bob",
        "no prefix: PRIMARY"
    );

    let mut unknown = DevUser::new("s-3", "NOPE/carol", "c@example.com", "Carol", &[]);
    let response = app.login(&unknown).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "unknown_domain");
    unknown.claims["preferred_username"] = json!("carol smith");
    let response = app.login(&unknown).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "username_policy");
    assert_eq!(
        (app.store.inner.user_count(), external.user_count()),
        (1, 1)
    );
}

#[tokio::test]
async fn mapping_templates_constants_defaults_and_required_attributes() {
    let app = TestApp::start_with(
        |p| {
            p.mapping({
                let mut built = MappingConfig::default();
                built.username = "{email | localpart | lowercase}".into();
                built.display_name = "{name} ({department})".into();
                built.required = vec!["employee_id".into()];
                built.attributes = BTreeMap::from([
                    ("department".to_owned(), "{department}".to_owned()),
                    ("level".to_owned(), "{level}".to_owned()),
                ]);
                built.defaults = BTreeMap::from([("level".to_owned(), "L1".to_owned())]);
                built.constants = BTreeMap::from([("source".to_owned(), "dev-sso".to_owned())]);
                built
            })
        },
        |b| b,
    )
    .await;
    let mut user = DevUser::new("s-1", "ignored", "Jane.Doe@Example.com", "Jane", &[]);
    user.claims.insert("department".into(), json!("R&D"));
    let response = app.login(&user).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "missing_attribute");
    assert!(body["message"].as_str().unwrap().contains("employee_id"));
    assert_eq!(app.store.inner.user_count(), 0);

    user.claims.insert("employee_id".into(), json!(4711));
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let stored = &app.store.inner.users()[0];
    assert_eq!(stored.username, "jane.doe");
    assert_eq!(stored.display_name.as_deref(), Some("Jane (R&D)"));
    assert_eq!(stored.attributes["department"], "R&D");
    assert_eq!(stored.attributes["level"], "L1");
    assert_eq!(stored.attributes["source"], "dev-sso");
    // What the IdP manages is read-only locally.
    assert!(check_local_edit(stored, "department").is_err());
    assert!(check_local_edit(stored, "email").is_err());
    assert!(check_local_edit(stored, "nickname").is_ok());
}

#[tokio::test]
async fn groups_sync_adds_and_removes_only_what_this_provider_granted() {
    let mut groups = GroupsConfig::from_claim("groups");
    groups.allow = vec!["eng-*".into(), "idp-admins".into(), "staff".into()];
    groups.rename = BTreeMap::from([("idp-admins".to_owned(), "admins".to_owned())]);
    let app = TestApp::start_with(
        move |p| {
            p.mapping({
                let mut built = MappingConfig::default();
                built.groups = Some(groups.clone());
                built
            })
        },
        |b| b,
    )
    .await;
    let mut user = alice();
    user.claims["groups"] = json!(["staff", "idp-admins", "finance"]);
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    let id = app.store.inner.users()[0].id;
    let groups_now = |app: &TestApp| app.store.inner.users()[0].groups.clone();
    assert_eq!(
        groups_now(&app),
        ["admins".to_owned(), "staff".to_owned()].into()
    );

    // A group granted locally is not the IdP's to take away.
    let local = jit_provision::store::ProfileChanges {
        groups: Some(
            ["admins", "staff", "local-auditors"]
                .map(String::from)
                .into(),
        ),
        ..Default::default()
    };
    app.store.inner.update(id, &local).await.unwrap();

    // The IdP drops admins and adds eng-web: only its own grants move.
    user.claims["groups"] = json!(["staff", "eng-web"]);
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        groups_now(&app),
        ["eng-web", "local-auditors", "staff"]
            .map(String::from)
            .into()
    );
    // Absent claim: keep (the default); empty claim: remove this provider's grants.
    user.claims.remove("groups");
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(groups_now(&app).len(), 3);
    user.claims.insert("groups".into(), json!([]));
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(groups_now(&app), ["local-auditors".to_owned()].into());
}

/// A test app whose provider syncs groups by `groups`.
async fn with_groups(groups: GroupsConfig) -> TestApp {
    TestApp::start_with(
        move |p| {
            p.mapping({
                let mut built = MappingConfig::default();
                built.groups = Some(groups);
                built
            })
        },
        |b| b,
    )
    .await
}

/// Logs `user` in with `groups` at the IdP, in a browser of its own; returns the browser
/// and the local groups granted.
async fn groups_after_login(
    app: &TestApp,
    mut user: DevUser,
    groups: Value,
) -> (reqwest::Client, Vec<String>) {
    user.claims["groups"] = groups;
    let browser = browser();
    assert_eq!(
        app.login_with(&browser, &user).await.status(),
        StatusCode::SEE_OTHER
    );
    let me: Value = app.me_with(&browser).await.json().await.unwrap();
    let granted = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    (browser, granted)
}

/// The status of the admin router (guarded by the local group `admins`) for `browser`.
async fn admin_status(app: &TestApp, browser: &reqwest::Client) -> StatusCode {
    browser
        .get(app.url("/admin/jit-users?provider=dev"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_idp_group_named_like_a_rename_target_does_not_get_it() {
    // The allow-list names the IdP groups; `admins` is in it, but as the target of a rename
    // it is only reached through that rename.
    let mut groups = GroupsConfig::from_claim("groups");
    groups.allow = vec!["admins".into(), "idp-admins".into(), "staff".into()];
    groups.rename = BTreeMap::from([("idp-admins".to_owned(), "admins".to_owned())]);
    let app = with_groups(groups).await;
    let (mallory, granted) = groups_after_login(&app, alice(), json!(["admins", "staff"])).await;
    assert_eq!(granted, ["staff"]);
    assert_eq!(admin_status(&app, &mallory).await, StatusCode::FORBIDDEN);
    let (admin, granted) = groups_after_login(&app, bob(), json!(["idp-admins"])).await;
    assert_eq!(granted, ["admins"]);
    assert_eq!(admin_status(&app, &admin).await, StatusCode::OK);

    // Allow-all (the default) does not change that.
    let mut groups = GroupsConfig::from_claim("groups");
    groups.rename = BTreeMap::from([("idp-admins".to_owned(), "admins".to_owned())]);
    let app = with_groups(groups).await;
    let (mallory, granted) = groups_after_login(&app, alice(), json!(["admins", "eng"])).await;
    assert_eq!(granted, ["eng"]);
    assert_eq!(admin_status(&app, &mallory).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_allow_list_is_applied_to_the_idps_names_before_renaming() {
    let mut groups = GroupsConfig::from_claim("groups");
    groups.allow = vec!["eng-*".into()];
    groups.rename = BTreeMap::from([("eng-admins".to_owned(), "admins".to_owned())]);
    let app = with_groups(groups).await;
    let (_, granted) =
        groups_after_login(&app, alice(), json!(["eng-admins", "eng-web", "finance"])).await;
    assert_eq!(granted, ["admins", "eng-web"]);

    // An allow-list written for the renamed name leaves the rename dead: refused at build.
    let idp = jit_provision::dev_idp::DevIdp::builder()
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let mut groups = GroupsConfig::from_claim("groups");
    groups.allow = vec!["admins".into()];
    groups.rename = BTreeMap::from([("idp-admins".to_owned(), "admins".to_owned())]);
    let provider = default_provider(idp.issuer()).mapping({
        let mut built = MappingConfig::default();
        built.groups = Some(groups);
        built
    });
    let built = jit_provision::JitLayer::builder()
        .public_url("http://127.0.0.1:1")
        .insecure_cookies_for_localhost()
        .provider("dev", provider)
        .store(MemoryStore::new())
        .build();
    match built {
        Err(jit_provision::ConfigError::Provider { id, reason }) => {
            assert_eq!(id, "dev");
            assert!(reason.contains("groups.rename `idp-admins`"), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a dead rename was accepted"),
    }
}

#[tokio::test]
async fn a_namespaced_provider_cannot_grant_a_local_group_by_naming_it() {
    let mut groups = GroupsConfig::from_claim("groups");
    groups.namespace = Some("corp".into());
    groups.rename = BTreeMap::from([("idp-admins".to_owned(), "admins".to_owned())]);
    let app = with_groups(groups).await;
    // A self-service IdP user names local groups: they land in the provider's namespace.
    let (mallory, granted) =
        groups_after_login(&app, alice(), json!(["admins", "staff", "eng"])).await;
    assert_eq!(granted, ["corp:admins", "corp:eng", "corp:staff"]);
    assert_eq!(admin_status(&app, &mallory).await, StatusCode::FORBIDDEN);
    // The explicit rename is the way to an un-namespaced local group.
    let (admin, granted) = groups_after_login(&app, bob(), json!(["idp-admins", "eng"])).await;
    assert_eq!(granted, ["admins", "corp:eng"]);
    assert_eq!(admin_status(&app, &admin).await, StatusCode::OK);
    // Sync still removes only what this provider granted, by the local names.
    let (_, granted) = groups_after_login(&app, bob(), json!(["eng"])).await;
    assert_eq!(granted, ["corp:eng"]);
}

#[tokio::test]
async fn linking_is_off_by_default_and_a_taken_username_is_refused() {
    let app = TestApp::start().await;
    app.store
        .inner
        .insert_local(&Profile::new("alice"))
        .unwrap();
    let response = app.login(&alice()).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(
        app.store
            .inner
            .find_by_identity(&key("sub-alice"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn linking_by_username_links_the_existing_account() {
    let events = Events::default();
    let app = TestApp::start_with(
        |p| p.linking(LinkingConfig::new(LinkBy::Username)),
        recording(&events),
    )
    .await;
    let local = app
        .store
        .inner
        .insert_local(&Profile::new("alice"))
        .unwrap();
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let linked = app
        .store
        .inner
        .find_by_identity(&key("sub-alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(linked.id, local.id);
    assert_eq!(
        linked.email.as_deref(),
        Some("alice@example.com"),
        "then synced"
    );
    assert_eq!(app.store.inner.user_count(), 1);
    assert_eq!(kinds(&events), ["linked", "updated"]);
}

#[tokio::test]
async fn linking_by_email_needs_a_verified_email_held_by_one_user() {
    let by_email = |trust: bool| {
        move |p: jit_provision::ProviderConfig| {
            p.linking(LinkingConfig::new(LinkBy::Email).trust_email(trust))
        }
    };
    let local_with_email = |app: &TestApp, name: &str, email: &str| {
        let mut profile = Profile::new(name);
        profile.email = Some(Some(email.into()));
        app.store.inner.insert_local(&profile).unwrap()
    };
    // Verified: linked, whatever the username.
    let app = TestApp::start_with(by_email(false), |b| b).await;
    let local = local_with_email(&app, "a.smith", "Alice@Example.com");
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.store
            .inner
            .find_by_identity(&key("sub-alice"))
            .await
            .unwrap()
            .unwrap()
            .id,
        local.id
    );

    // Not verified (false, the string "false", or missing): not linked, a new user instead.
    // (The string "true", sent by some providers, is read as true.)
    for verified in [json!(false), json!("false"), Value::Null] {
        let app = TestApp::start_with(by_email(false), |b| b).await;
        let local = local_with_email(&app, "a.smith", "alice@example.com");
        let mut user = alice();
        match &verified {
            Value::Null => {
                user.claims.remove("email_verified");
            }
            v => {
                user.claims.insert("email_verified".into(), v.clone());
            }
        }
        assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
        let found = app
            .store
            .inner
            .find_by_identity(&key("sub-alice"))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(
            found.id, local.id,
            "linked with email_verified = {verified}"
        );
    }

    // A provider trusted for email links without the claim.
    let app = TestApp::start_with(by_email(true), |b| b).await;
    let local = local_with_email(&app, "a.smith", "alice@example.com");
    let mut user = alice();
    user.claims.remove("email_verified");
    assert_eq!(app.login(&user).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.store
            .inner
            .find_by_identity(&key("sub-alice"))
            .await
            .unwrap()
            .unwrap()
            .id,
        local.id
    );

    // Two local users with the email: ambiguous, not linked.
    let app = TestApp::start_with(by_email(false), |b| b).await;
    local_with_email(&app, "a1", "alice@example.com");
    local_with_email(&app, "a2", "alice@example.com");
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.inner.user_count(), 3);
}

#[tokio::test]
async fn an_account_linked_to_another_subject_of_the_provider_is_not_linked_again() {
    let app = TestApp::start_with(|p| p.linking(LinkingConfig::new(LinkBy::Username)), |b| b).await;
    prelinked(&app, &alice()).await;
    // Another person at the same IdP calls themselves alice.
    let impostor = DevUser::new("sub-other", "alice", "x@example.com", "X", &[]);
    let response = app.login(&impostor).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(response).await, "link_conflict");
}

#[tokio::test]
async fn non_blocking_updates_run_in_the_background_and_failures_are_reported() {
    let events = Events::default();
    let app = TestApp::start_with(
        |mut p| {
            p.blocking = false;
            p
        },
        recording(&events),
    )
    .await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut changed = alice();
    changed.claims["email"] = json!("later@example.com");
    assert_eq!(app.login(&changed).await.status(), StatusCode::SEE_OTHER);
    let store = app.store.inner.clone();
    poll(|| store.users()[0].email.as_deref() == Some("later@example.com")).await;

    // The store refuses updates: retried, then reported, and the login still went ahead.
    app.store
        .updates_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    changed.claims["email"] = json!("never@example.com");
    assert_eq!(app.login(&changed).await.status(), StatusCode::SEE_OTHER);
    let layer = app.layer.clone();
    poll(|| layer.metrics().update_failures == 1).await;
    assert!(kinds(&events).contains(&"update_failed".to_owned()));
    assert_eq!(
        app.store.inner.users()[0].email.as_deref(),
        Some("later@example.com")
    );
}

/// Polls a condition every 20 ms for at most 10 s (background work on a loaded machine).
async fn poll(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the background work did not happen");
}

#[tokio::test]
async fn a_prompt_hook_pauses_a_first_login_and_resumes_it() {
    let app = TestApp::start_with(|p| p, |b| b.prompt("dev", ChooseUsername)).await;
    let response = app.login(&alice()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/welcome");
    assert!(!sets_session(&response));
    assert_eq!(
        app.store.inner.user_count(),
        0,
        "nothing created before the prompt"
    );
    // The app's page sees what is pending.
    let pending: Value = app
        .client
        .get(app.url("/welcome"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending, json!("alice"));
    // Refused: nothing created.
    let refused = app
        .client
        .post(app.url("/auth/resume"))
        .form(&[("consent", "no")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.store.inner.user_count(), 0);
    // The prompt cookie is single-use: log in again and accept this time.
    let response = app.login(&alice()).await;
    assert_eq!(location(&response), "/welcome");
    let done = app
        .client
        .post(app.url("/auth/resume"))
        .form(&[("consent", "yes"), ("username", "alice.b")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/me");
    assert!(sets_session(&done));
    let me: Value = app.me().await.json().await.unwrap();
    assert_eq!(me["username"], "alice.b");
    // A returning user is not prompted.
    assert_eq!(location(&app.login(&alice()).await), "/me");
}

#[tokio::test]
async fn events_report_creation_updates_with_the_diff_and_refusals() {
    let events = Events::default();
    let app = TestApp::start_with(|p| p, recording(&events)).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut changed = alice();
    changed.claims["name"] = json!("Alice Cooper");
    assert_eq!(app.login(&changed).await.status(), StatusCode::SEE_OTHER);
    let mut nameless = bob();
    nameless.claims.remove("preferred_username");
    assert_eq!(app.login(&nameless).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(kinds(&events), ["created", "updated", "rejected"]);
    let updated = serde_json::to_value(&events.lock().unwrap()[1]).unwrap();
    assert_eq!(updated["changes"]["display_name"], "Alice Cooper");
    assert!(
        updated["changes"]["email"].is_null(),
        "only what changed: {updated}"
    );
}

#[tokio::test]
async fn a_dry_run_shows_the_outcome_and_writes_nothing() {
    let app = TestApp::start().await;
    let claims = |v: Value| Claims(v.as_object().unwrap().clone());
    let preview = app
        .layer
        .preview(
            "dev",
            Some("sub-x"),
            &claims(json!({"preferred_username": "xavier", "groups": ["a"]})),
        )
        .await
        .unwrap();
    assert!(matches!(preview.action, PreviewAction::Create));
    assert_eq!(preview.profile.as_ref().unwrap().username, "xavier");
    assert_eq!(preview.domain.as_deref(), Some("PRIMARY"));
    let refused = app
        .layer
        .preview("dev", None, &claims(json!({"email": "x@y"})))
        .await
        .unwrap();
    assert!(
        matches!(refused.action, PreviewAction::Refuse { ref code, .. } if code == "missing_attribute")
    );
    assert_eq!(app.store.inner.user_count(), 0);
    assert_eq!(app.store.inner.counters().creates(), 0);

    // An existing user: the update that would happen.
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut c = alice().claims;
    c.insert("email".into(), json!("changed@example.com"));
    let preview = app
        .layer
        .preview("dev", Some("sub-alice"), &Claims(c))
        .await
        .unwrap();
    match preview.action {
        PreviewAction::Update { changes } => {
            assert_eq!(changes.email, Some(Some("changed@example.com".into())))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(app.store.inner.counters().updates(), 0);
}

#[tokio::test]
async fn the_admin_router_is_guarded_and_answers_json() {
    let app = TestApp::start().await;
    let body = json!({"provider": "dev", "claims": {"preferred_username": "zed"}});
    let anonymous = reqwest::Client::new();
    let response = anonymous
        .post(app.url("/admin/jit-preview"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Alice is staff, not admin.
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let response = app
        .client
        .post(app.url("/admin/jit-preview"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let admin_client = browser();
    let mut admin = bob();
    admin.claims["groups"] = json!(["admins"]);
    assert_eq!(
        app.login_with(&admin_client, &admin).await.status(),
        StatusCode::SEE_OTHER
    );
    let preview: Value = admin_client
        .post(app.url("/admin/jit-preview"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(preview["action"]["action"], "create");
    let users: Value = admin_client
        .get(app.url("/admin/jit-users?provider=dev"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["user"]["username"], "alice");
    assert!(users[0]["identity"]["first_login_at"].as_i64().unwrap() > 0);
    assert!(
        users[0]["identity"]["last_login_at"].as_i64().is_some(),
        "logins are recorded"
    );
}

#[tokio::test]
async fn users_of_a_removed_provider_are_disabled_or_deleted() {
    let events = Events::default();
    let app = TestApp::start_with(|p| p, recording(&events)).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.login_with(&browser(), &bob()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.me().await.status(), StatusCode::OK);
    assert_eq!(app.layer.jit_users("dev").await.unwrap().len(), 2);

    assert_eq!(
        app.layer
            .deprovision("dev", Deprovision::Disable)
            .await
            .unwrap(),
        2
    );
    assert!(app.store.inner.users().iter().all(|u| u.locked));
    assert_eq!(
        app.me().await.status(),
        StatusCode::UNAUTHORIZED,
        "sessions end at once"
    );

    assert_eq!(
        app.layer
            .deprovision("dev", Deprovision::Delete)
            .await
            .unwrap(),
        2
    );
    assert_eq!(app.store.inner.user_count(), 0);
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|k| *k == "deprovisioned")
            .count(),
        4
    );
    // Each user once per action, with its provider.
    let mut seen: Vec<(Value, Value, Value)> = events_of(&events, "deprovisioned")
        .into_iter()
        .map(|e| {
            (
                e["provider"].clone(),
                e["user_id"].clone(),
                e["deleted"].clone(),
            )
        })
        .collect();
    seen.sort_by_key(|s| format!("{s:?}"));
    seen.dedup();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|(p, ..)| p == "dev"));
}

#[tokio::test]
async fn the_layer_reports_a_logout_and_an_administrators_lock_once() {
    let events = Events::default();
    let app = TestApp::start_with(|p| p, recording(&events)).await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let alice_id = app.me().await.json::<Value>().await.unwrap()["id"].clone();
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        events_of(&events, "logged_out"),
        [
            json!({"event": "logged_out", "provider": "dev", "domain": "PRIMARY",
                "user_id": alice_id, "reason": "user"})
        ]
    );
    // A logout without a session reports nothing.
    assert_eq!(app.logout().await.status(), StatusCode::SEE_OTHER);
    assert_eq!(events_of(&events, "logged_out").len(), 1);

    let bob_browser = browser();
    assert_eq!(
        app.login_with(&bob_browser, &bob()).await.status(),
        StatusCode::SEE_OTHER
    );
    let bob_id = app
        .me_with(&bob_browser)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .clone();
    app.layer
        .lock_user(jit_provision::store::UserId(bob_id.as_i64().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        events_of(&events, "locked"),
        [
            json!({"event": "locked", "provider": null, "domain": "PRIMARY",
                "user_id": bob_id, "reason": "admin"})
        ]
    );
    assert_eq!(
        app.me_with(&bob_browser).await.status(),
        StatusCode::UNAUTHORIZED,
        "its session ended"
    );
    assert_refused(
        app.login_with(&bob_browser, &bob()).await,
        StatusCode::FORBIDDEN,
        "user_locked",
    )
    .await;
    assert_eq!(events_of(&events, "locked").len(), 1);
}

/// The application's rule: an email held by one of its accounts (a password account, made
/// outside the layer) cannot get a second account by SSO.
fn email_in_use(users: &MemoryStore, profile: &Profile) -> Option<Refusal> {
    let email = profile.email.clone().flatten()?;
    users
        .users()
        .iter()
        .any(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&email))
        })
        .then(|| {
            Refusal::conflict(
                "email",
                "email_in_use",
                "this email belongs to an account with a password: log in with it",
            )
        })
}

#[tokio::test]
async fn the_stores_own_conflict_is_a_409_with_its_code_and_writes_nothing() {
    let events = Events::default();
    let app = TestApp::start_with(|p| p, recording(&events)).await;
    let mut local = Profile::new("alice.pw");
    local.email = Some(Some("Alice@Example.com".into()));
    app.store.inner.insert_local(&local).unwrap();
    app.store.refuse_create_when(email_in_use);

    assert_refused(
        app.login(&alice()).await,
        StatusCode::CONFLICT,
        "email_in_use",
    )
    .await;
    assert_eq!(app.store.inner.user_count(), 1, "no user created");
    assert!(
        app.store
            .inner
            .find_by_identity(&key("sub-alice"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        app.me().await.status(),
        StatusCode::UNAUTHORIZED,
        "no session"
    );
    let rejected = serde_json::to_value(&events.lock().unwrap()[0]).unwrap();
    assert_eq!(
        (rejected["event"].as_str(), rejected["code"].as_str()),
        (Some("rejected"), Some("email_in_use"))
    );

    // A browser gets the HTML page of every refusal, with the code.
    let browser = browser();
    let callback = app.callback_url(&browser, &alice()).await;
    let page = browser
        .get(callback)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::CONFLICT);
    assert!(!sets_session(&page));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<code>email_in_use</code>") && html.contains("log in with it"),
        "{html}"
    );
    // Another email is not the application's business: created.
    assert_eq!(
        app.login_with(&browser, &bob()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.store.inner.user_count(), 2);
    // The refusal was not kept: once the application lifts its rule, alice is created.
    app.store.refuse_create_when(|_, _| None);
    let created = app.login_with(&browser, &alice()).await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.store.inner.user_count(), 3);
}

#[tokio::test]
async fn the_stores_own_rejection_is_a_403_with_its_code() {
    let app = TestApp::start().await;
    app.store.refuse_create_when(|_, profile: &Profile| {
        let email = profile.email.clone().flatten()?;
        email.ends_with("@example.com").then(|| {
            Refusal::forbidden(
                "email",
                "signup_closed",
                "sign-ups from example.com are closed",
            )
        })
    });
    assert_refused(
        app.login(&alice()).await,
        StatusCode::FORBIDDEN,
        "signup_closed",
    )
    .await;
    assert_eq!(app.store.inner.user_count(), 0);
}

#[tokio::test]
async fn a_prompt_resume_the_store_refuses_is_answered_with_its_code() {
    let app = TestApp::start_with(|p| p, |b| b.prompt("dev", ChooseUsername)).await;
    let mut local = Profile::new("alice.pw");
    local.email = Some(Some("alice@example.com".into()));
    app.store.inner.insert_local(&local).unwrap();
    app.store.refuse_create_when(email_in_use);
    assert_eq!(location(&app.login(&alice()).await), "/welcome");
    let resumed = app
        .client
        .post(app.url("/auth/resume"))
        .form(&[("consent", "yes"), ("username", "alice.b")])
        .send()
        .await
        .unwrap();
    assert_refused(resumed, StatusCode::CONFLICT, "email_in_use").await;
    assert_eq!(app.store.inner.user_count(), 1);
    assert_eq!(app.me().await.status(), StatusCode::UNAUTHORIZED);
}
