//! The `metrics` facade through real logins: a process-wide `DebuggingRecorder` (this test
//! binary's own, installed before any layer is built) sees the documented names and labels
//! for OIDC and SAML logins, refusals by code, provisioning outcomes, the session and user
//! caches and the store calls; `JitLayer::metrics()` counts the same logins. No label
//! carries a user id, subject, username or claim value.
//!
//! The tests share the recorder, so they run one at a time (`SERIAL`); each snapshot holds
//! what was recorded since the previous one. Every snapshot is checked for personal label
//! values.

mod common;
#[cfg(feature = "saml")]
#[path = "saml_common/mod.rs"]
mod saml_common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use reqwest::StatusCode;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// What was recorded since the previous snapshot (the recorder's snapshot drains it): counter
/// increments and the number of histogram values, by name and sorted labels.
#[derive(Debug, Default)]
struct Seen {
    counters: BTreeMap<(String, Vec<(String, String)>), u64>,
    observations: BTreeMap<(String, Vec<(String, String)>), usize>,
}

fn key_of(key: &CompositeKey) -> (String, Vec<(String, String)>) {
    let mut labels: Vec<(String, String)> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.key().name().to_owned(), labels)
}

fn seen() -> Seen {
    let mut seen = Seen::default();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                seen.counters.insert(key_of(&key), n);
            }
            (MetricKind::Histogram, DebugValue::Histogram(values)) => {
                seen.observations.insert(key_of(&key), values.len());
            }
            _ => {}
        }
    }
    seen.assert_nothing_personal();
    seen
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

impl Seen {
    fn counter(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let key = (name.to_owned(), labels(pairs));
        self.counters.get(&key).copied().unwrap_or(0)
    }

    fn observed(&self, name: &str, pairs: &[(&str, &str)]) -> usize {
        let key = (name.to_owned(), labels(pairs));
        self.observations.get(&key).copied().unwrap_or(0)
    }

    /// Every label value of this snapshot.
    fn label_values(&self) -> Vec<String> {
        self.counters
            .keys()
            .chain(self.observations.keys())
            .flat_map(|(_, labels)| labels.iter().map(|(_, v)| v.clone()))
            .collect()
    }

    /// Bounded labels: nothing of the test users (subjects, usernames, emails, user ids).
    fn assert_nothing_personal(&self) {
        let values = self.label_values();
        let personal = [
            "sub-alice",
            "alice",
            "alice@example.com",
            "jane",
            "jane@example.com",
        ];
        for value in &values {
            assert!(
                !personal.contains(&value.as_str()) && value.parse::<i64>().is_err(),
                "a label carries `{value}`: {values:?}"
            );
        }
    }
}

const LOGINS: &str = "jit_logins_total";
const REFUSALS: &str = "jit_login_refusals_total";
const PROVISIONING: &str = "jit_provisioning_total";
const CACHE: &str = "jit_cache_requests_total";
const STORE: &str = "jit_store_call_duration_seconds";

#[tokio::test]
async fn oidc_logins_refusals_caches_and_store_calls_are_recorded() {
    let _serial = SERIAL.lock().await;
    snapshotter();
    let app = TestApp::start().await;
    seen(); // Drains what came before.

    // A first login: a success, a user created, the store's lookups and creation timed.
    let response = app.login(&alice()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(sets_session(&response));
    let after = seen();
    let success = [
        ("provider", "dev"),
        ("protocol", "oidc"),
        ("outcome", "success"),
    ];
    assert_eq!(after.counter(LOGINS, &success), 1);
    let created = [("provider", "dev"), ("outcome", "created")];
    assert_eq!(after.counter(PROVISIONING, &created), 1);
    assert!(after.observed(STORE, &[("operation", "find_by_identity")]) >= 1);
    assert!(after.observed(STORE, &[("operation", "create")]) >= 1);

    // A second login of the same identity: unchanged, no creation.
    let response = app.login(&alice()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let again = seen();
    let unchanged = [("provider", "dev"), ("outcome", "unchanged")];
    assert_eq!(again.counter(PROVISIONING, &unchanged), 1);
    assert_eq!(again.counter(PROVISIONING, &created), 0);

    // Authenticated requests: once the session is cached, a hit in both caches.
    assert_eq!(app.me().await.status(), StatusCode::OK);
    seen();
    assert_eq!(app.me().await.status(), StatusCode::OK);
    let hot = seen();
    let hit = |cache| [("cache", cache), ("result", "hit")];
    let miss = |cache| [("cache", cache), ("result", "miss")];
    assert_eq!(hot.counter(CACHE, &hit("session")), 1);
    assert_eq!(hot.counter(CACHE, &hit("user")), 1);
    assert_eq!(hot.counter(CACHE, &miss("session")), 0);
    assert_eq!(hot.counter(CACHE, &miss("user")), 0);
    // A cached user costs no store call.
    assert_eq!(hot.observed(STORE, &[("operation", "find_by_id")]), 0);

    // A refusal: a callback with no login in progress, counted with its code.
    let response = app
        .client
        .get(app.url("/auth/dev/callback?state=forged&code=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let code = error_code(response).await;
    let refused = seen();
    let failure = [
        ("provider", "dev"),
        ("protocol", "oidc"),
        ("outcome", "failure"),
    ];
    assert_eq!(refused.counter(LOGINS, &failure), 1);
    let by_code = [("provider", "dev"), ("code", code.as_str())];
    assert_eq!(refused.counter(REFUSALS, &by_code), 1);

    // The layer's own snapshot counts the same.
    let snapshot = app.layer.metrics();
    assert_eq!(
        (
            snapshot.logins,
            snapshot.login_failures,
            snapshot.users_created
        ),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn bearer_tokens_are_counted_by_result_and_refusal_code() {
    let _serial = SERIAL.lock().await;
    snapshotter();
    let app = common::bearer::api().await;
    let token = app
        .idp
        .sign_access_token(common::bearer::claims(&app, "svc-metrics"));
    seen(); // Drains what came before.
    for _ in 0..3 {
        let response = common::bearer::call(&app, "/me", &token).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = common::bearer::call(&app, "/me", "not-a-jwt").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let code = error_code(response).await;
    let after = seen();
    assert_eq!(
        after.counter("jit_bearer_total", &[("result", "verified")]),
        1
    );
    assert_eq!(
        after.counter("jit_bearer_total", &[("result", "cached")]),
        2
    );
    assert_eq!(
        after.counter("jit_bearer_total", &[("result", "refused")]),
        1
    );
    let by_code = [("code", code.as_str())];
    assert_eq!(after.counter("jit_bearer_refusals_total", &by_code), 1);
    let created = [("provider", "dev"), ("outcome", "created")];
    assert_eq!(after.counter(PROVISIONING, &created), 1);
    let snapshot = app.layer.metrics();
    assert_eq!(
        (
            snapshot.bearer_verified,
            snapshot.bearer_cache_hits,
            snapshot.bearer_failures
        ),
        (1, 2, 1)
    );
}

#[cfg(feature = "saml")]
mod saml {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Request, header};
    use http_body_util::BodyExt;
    use jit_provision::store::MemoryStore;
    use jit_provision::{CurrentUser, JitLayer, MappingConfig, ProviderConfig};
    use tower::ServiceExt;

    use super::saml_common::*;
    use super::*;

    fn layer(store: &MemoryStore) -> JitLayer {
        let provider = ProviderConfig::saml(sp_config()).mapping({
            let mut built = MappingConfig::default();
            built.username = "{mail | localpart}".into();
            built.email = "{mail}".into();
            built.display_name = String::new();
            built
        });
        JitLayer::builder()
            .public_url("https://app.example.test")
            .provider(PROVIDER_ID, provider)
            .store(store.clone())
            .build()
            .unwrap()
    }

    fn cookies(response: &http::Response<Body>) -> Vec<String> {
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect()
    }

    /// Starts a login: the redirect to the IdP and the cookies the browser sends back.
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
        let location = response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        (location, cookies(&response).join("; "))
    }

    fn acs(location: &str, saml_response: &str, cookie: &str) -> Request<Body> {
        let relay = url::Url::parse(location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "RelayState")
            .unwrap()
            .1
            .into_owned();
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SAMLResponse", saml_response)
            .append_pair("RelayState", &relay)
            .finish();
        Request::post("/auth/corp/acs")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .body(Body::from(body))
            .unwrap()
    }

    async fn body_of(response: http::Response<Body>) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn saml_logins_and_refusals_are_counted_like_oidc_ones() {
        let Some(node) = node("saml_logins_and_refusals_are_counted_like_oidc_ones") else {
            return;
        };
        let _serial = SERIAL.lock().await;
        snapshotter();
        let store = MemoryStore::new();
        let layer = layer(&store);
        let app = Router::new()
            .route(
                "/me",
                get(|u: CurrentUser| async move { u.username.clone() }),
            )
            .layer(layer.clone());
        let metadata = app
            .clone()
            .oneshot(
                Request::get("/auth/corp/metadata")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let metadata = String::from_utf8(body_of(metadata).await).unwrap();
        let (location, cookie) = start(&app).await;
        let k = keys();
        let out = run_idp(
            &node,
            idp_settings(&k.idp, &[&k.idp]),
            &metadata,
            vec![job(Some(&location), true, false)],
        );
        let genuine = out.responses[0].clone().unwrap();
        seen(); // Drains what came before.

        // The genuine response: a session, a user created.
        let response = app
            .clone()
            .oneshot(acs(&location, &genuine, &cookie))
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::SEE_OTHER);
        assert_eq!(store.user_count(), 1);
        let after = seen();
        let success = [
            ("provider", "corp"),
            ("protocol", "saml"),
            ("outcome", "success"),
        ];
        assert_eq!(after.counter(LOGINS, &success), 1);
        let created = [("provider", "corp"), ("outcome", "created")];
        assert_eq!(after.counter(PROVISIONING, &created), 1);

        // Posted again: refused, counted with the code the response names.
        let response = app
            .clone()
            .oneshot(acs(&location, &genuine, &cookie))
            .await
            .unwrap();
        assert!(response.status().is_client_error());
        let json: serde_json::Value = serde_json::from_slice(&body_of(response).await).unwrap();
        let code = json["error"].as_str().unwrap().to_owned();
        let refused = seen();
        let failure = [
            ("provider", "corp"),
            ("protocol", "saml"),
            ("outcome", "failure"),
        ];
        assert_eq!(refused.counter(LOGINS, &failure), 1);
        let by_code = [("provider", "corp"), ("code", code.as_str())];
        assert_eq!(refused.counter(REFUSALS, &by_code), 1);

        // And in the layer's own snapshot.
        let snapshot = layer.metrics();
        assert_eq!(
            (
                snapshot.logins,
                snapshot.login_failures,
                snapshot.users_created
            ),
            (1, 1, 1)
        );
    }
}
