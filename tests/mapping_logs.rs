//! A failing group resolver is logged, without claim values, and the login goes ahead with
//! the grants kept. A test binary of its own with a process-wide subscriber (see
//! `tests/log_secrets.rs` for why a thread-local one is flaky).

mod common;
#[path = "support/log_capture.rs"]
mod log_capture;

use common::*;
use futures_util::future::BoxFuture;
use jit_provision::Claims;
use jit_provision::config::{GroupsConfig, MappingConfig};
use jit_provision::mapping::{GroupResolver, GroupResolverError};
use log_capture::Logs;
use reqwest::StatusCode;
use serde_json::json;

struct Down;

impl GroupResolver for Down {
    fn resolve<'a>(
        &'a self,
        _: &'a str,
        _: &'a Claims,
    ) -> BoxFuture<'a, Result<Vec<String>, GroupResolverError>> {
        Box::pin(async { Err(GroupResolverError::new("graph answered 503")) })
    }
}

#[tokio::test]
async fn a_failing_resolver_is_logged_and_the_grants_kept() {
    let buffer = Logs::capture();
    let mut groups = GroupsConfig::from_claim("groups");
    groups.when_absent = jit_provision::config::AbsentGroups::Clear;
    let app = TestApp::start_with(
        move |p| {
            p.mapping({
                let mut built = MappingConfig::default();
                built.groups = Some(groups);
                built
            })
        },
        |b| b.group_resolver("dev", Down),
    )
    .await;
    assert_eq!(app.login(&alice()).await.status(), StatusCode::SEE_OTHER);
    let mut overage = alice();
    overage.claims.remove("groups");
    overage
        .claims
        .insert("oid".into(), json!("oid-4c1d-secret"));
    overage
        .claims
        .insert("_claim_names".into(), json!({"groups": "src1"}));
    assert_eq!(app.login(&overage).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.store.inner.users()[0].groups,
        ["staff".to_owned()].into(),
        "kept"
    );
    let logs = buffer.text();
    let line = logs
        .lines()
        .find(|l| l.contains("group overage: the resolver failed"))
        .unwrap_or_else(|| panic!("no resolver failure logged:\n{logs}"));
    assert!(
        line.contains("WARN") && line.contains("graph answered 503"),
        "{line}"
    );
    assert!(
        !logs.contains("oid-4c1d-secret"),
        "a claim value in the logs"
    );
}
