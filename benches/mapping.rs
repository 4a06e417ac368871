//! The cost of mapping one login's claims (issue 17): a realistic claim set of 50 claims
//! (Keycloak-style `realm_access` / `resource_access` objects, Entra-style URIs, scalars) and
//! 200 groups, through 20 rules — 12 attribute templates (nested claim paths, quoted
//! segments, filters, a default, a constant, ownership entries), 4 group allow patterns and
//! 4 renames, with a namespace — recording the trace.
//!
//! * `mapping/explain_50_claims_200_groups_20_rules`: `Mapping::explain`, the profiles and
//!   the trace (what every login pays).
//! * `mapping/explain_and_serialize_trace`: the same, plus the trace serialized to JSON as
//!   an event sink that logs it would.
//! * `mapping/flat_claims_no_groups`: the default mapping (username, email, name) of the
//!   same claims, for scale.
//! * `mapping/admission_explain_roles`: what a login with the issue's other rule kinds pays:
//!   3 admission rules (email domain, required group, a nested-claim regex), `explain`, then
//!   8 ordered role rules (`mode = "all"`, claim paths and group patterns), one trace.
//!
//! `cargo bench --bench mapping -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jit_provision::Claims;
use jit_provision::config::{GroupsConfig, MappingConfig};
use jit_provision::mapping::admission::AdmissionConfig;
use jit_provision::mapping::roles::RolesConfig;
use jit_provision::mapping::{Ownership, Trace};
use serde_json::{Value, json};

/// 50 claims, 200 of them groups (eng-*, ops-*, idp-admins, ...).
fn claims() -> Claims {
    let mut claims = serde_json::Map::new();
    let groups: Vec<Value> = (0..198)
        .map(|i| match i % 4 {
            0 => json!(format!("eng-team-{i}")),
            1 => json!(format!("ops-{i}")),
            2 => json!(format!("finance-{i}")),
            _ => json!(format!("project-{i}")),
        })
        .chain(["idp-admins", "idp-auditors"].map(|g| json!(g)))
        .collect();
    let fixed = json!({
        "sub": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "iss": "https://login.example.com/realms/corp",
        "aud": "my-app",
        "exp": 1_900_000_000, "iat": 1_800_000_000, "auth_time": 1_800_000_000,
        "azp": "my-app", "session_state": "9c1f", "acr": "1", "sid": "9c1f",
        "preferred_username": "Jane.Doe",
        "email": "Jane.Doe@Example.com", "email_verified": true,
        "name": "Jane Doe", "given_name": "Jane", "family_name": "Doe",
        "locale": "en", "zoneinfo": "Europe/Berlin",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "employee"]},
        "resource_access": {
            "my-app": {"roles": ["editor", "viewer"]},
            "account": {"roles": ["manage-account", "view-profile"]}
        },
        "org": {"department": "R&D", "cost_center": "4711", "manager": {"id": "m-17"}},
        "http://schemas.microsoft.com/identity/claims/tenantid": "72f988bf",
        "http://schemas.microsoft.com/identity/claims/objectidentifier": "oid-1",
        "employee_id": 4711, "title": "Engineer", "office": "B-3",
        "groups": groups,
    });
    claims.extend(fixed.as_object().unwrap().clone());
    for i in claims.len()..50 {
        claims.insert(format!("ext_claim_{i}"), json!(format!("value-{i}")));
    }
    assert_eq!(claims.len(), 50);
    Claims(claims)
}

/// 20 rules: 12 attribute templates, 4 allow patterns, 4 renames.
fn config() -> MappingConfig {
    let attributes = [
        ("department", "{org.department}"),
        ("cost_center", "{org.cost_center}"),
        ("manager", "{org.manager.id}"),
        ("realm_role", "{realm_access.roles}"),
        (
            "app_role",
            r#"{resource_access."my-app".roles | uppercase}"#,
        ),
        (
            "tenant",
            "{http://schemas.microsoft.com/identity/claims/tenantid}",
        ),
        (
            "object_id",
            "{http://schemas.microsoft.com/identity/claims/objectidentifier}",
        ),
        ("employee", "{employee_id}"),
        ("title", "{title | lowercase}"),
        ("office", "{office}"),
        ("domain", "{email | domain | lowercase}"),
        ("locale", "{locale}-{zoneinfo}"),
    ];
    let mut groups = GroupsConfig::from_claim("groups");
    groups.allow = ["eng-*", "ops-*", "idp-admins", "idp-auditors"]
        .map(String::from)
        .into();
    groups.rename = BTreeMap::from([
        ("idp-admins".to_owned(), "admins".to_owned()),
        ("idp-auditors".to_owned(), "auditors".to_owned()),
        ("eng-team-0".to_owned(), "eng-leads".to_owned()),
        ("ops-1".to_owned(), "oncall".to_owned()),
    ]);
    groups.namespace = Some("corp".into());
    {
        let mut built = MappingConfig::default();
        built.username = "{email | localpart | lowercase}".into();
        built.required = vec!["realm_access.roles".into()];
        built.attributes = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        built.defaults = BTreeMap::from([("office".to_owned(), "remote".to_owned())]);
        built.constants = BTreeMap::from([("source".to_owned(), "corp-sso".to_owned())]);
        built.ownership = BTreeMap::from([
            ("office".to_owned(), Ownership::OnCreate),
            ("title".to_owned(), Ownership::Never),
        ]);
        built.groups = Some(groups);
        built
    }
}

/// 3 admission rules and 8 role rules, as a provider's TOML would give them.
fn admission_and_roles() -> (AdmissionConfig, RolesConfig) {
    let admission = toml::from_str(
        r#"
        email_domains = ["example.com", "*.example.com"]
        require_groups = ["eng-*", "idp-admins"]
        [[claims]]
        path = "realm_access.roles"
        regex = "employee|contractor"
        "#,
    )
    .expect("the bench's admission rules parse");
    let roles = toml::from_str(
        r#"
        mode = "all"
        default = "viewer"
        rules = [
            { role = "admin", when = { group = "admins" } },
            { role = "auditor", when = { group = "auditors" } },
            { role = "lead", when = { group = "eng-leads" } },
            { role = "oncall", when = { group = "oncall" } },
            { role = "editor", when = { claim = 'resource_access."my-app".roles', one_of = ["editor"] } },
            { role = "employee", when = { claim = "realm_access.roles", equals = "employee" } },
            { role = "rnd", when = { claim = "org.department", glob = "R*" } },
            { role = "staff", when = { claim = "title", regex = "(?i)engineer|manager" } },
        ]
        "#,
    )
    .expect("the bench's role rules parse");
    (admission, roles)
}

fn mapping(c: &mut Criterion) {
    let claims = claims();
    let mapping = config().compile().expect("the bench's mapping compiles");
    let flat = MappingConfig::default().compile().unwrap();
    let mut check = Trace::default();
    let mapped = mapping.explain(&claims, &mut check).unwrap();
    assert!(mapped.profile.groups.as_ref().unwrap().contains("admins"));
    assert_eq!(mapped.creation.attributes["app_role"], "EDITOR");
    assert!(
        check.0.len() > 200,
        "a decision per group, attribute and field"
    );

    let mut group = c.benchmark_group("mapping");
    group.bench_function("explain_50_claims_200_groups_20_rules", |b| {
        b.iter(|| {
            let mut trace = Trace::default();
            black_box(mapping.explain(black_box(&claims), &mut trace).unwrap());
            black_box(trace)
        })
    });
    group.bench_function("explain_and_serialize_trace", |b| {
        b.iter(|| {
            let mut trace = Trace::default();
            black_box(mapping.explain(black_box(&claims), &mut trace).unwrap());
            black_box(serde_json::to_vec(&trace).unwrap())
        })
    });
    let (admission, roles) = admission_and_roles();
    let admission = admission.compile("groups").expect("admission compiles");
    let roles = roles.compile().expect("roles compile");
    let mut check = Trace::default();
    admission
        .admit(&claims, false, &mut check)
        .expect("admitted");
    let granted = roles
        .grant(&claims, mapped.profile.groups.as_ref(), &mut check)
        .unwrap()
        .unwrap();
    assert!(granted.contains("admin") && granted.contains("editor") && granted.contains("rnd"));
    group.bench_function("admission_explain_roles", |b| {
        b.iter(|| {
            let mut trace = Trace::default();
            admission
                .admit(black_box(&claims), false, &mut trace)
                .unwrap();
            let mapped = mapping.explain(black_box(&claims), &mut trace).unwrap();
            black_box(
                roles
                    .grant(&claims, mapped.profile.groups.as_ref(), &mut trace)
                    .unwrap(),
            );
            black_box(trace)
        })
    });
    group.bench_function("flat_claims_no_groups", |b| {
        b.iter(|| black_box(flat.map(black_box(&claims)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
