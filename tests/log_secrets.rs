//! No secret reaches the logs: every event of a browser login, a replayed callback, a
//! bearer call and a refused bearer token, an RP-initiated logout (its ID token hint) and
//! back-channel logout tokens (accepted and refused), at TRACE level, searched for the
//! secrets involved.
//!
//! A test binary of its own, with a process-wide subscriber: tracing caches each callsite's
//! interest process-wide, and a test thread without a subscriber that reaches a callsite first
//! can cache it as "never" for the thread-local subscriber of another test (tokio-rs/tracing
//! #3611); that made this test flaky while it shared a binary with the other bearer tests.

mod common;
#[path = "support/log_capture.rs"]
mod log_capture;

use common::bearer::{api, call, claims};
use common::*;
use log_capture::Logs;
use reqwest::StatusCode;
use serde_json::json;

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("{name} in {url}"))
        .1
        .into_owned()
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let buffer = Logs::capture();

    let app = api().await;
    let mut secrets = vec![CLIENT_SECRET.to_owned()];

    // A browser login: its authorization code, state and session cookie.
    let callback = app.callback_url(&app.client, &alice()).await;
    secrets.push(query_param(&callback, "code"));
    secrets.push(query_param(&callback, "state"));
    let response = app.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(&response);
    let session = cookies
        .iter()
        .find_map(|c| c.split(';').next()?.strip_prefix("jit_session="))
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("a session cookie in {cookies:?}"));
    secrets.push(session.to_owned());
    assert_eq!(app.me().await.status(), StatusCode::OK);
    // The same callback again, from a browser without the login's cookie: refused, and logged.
    let replay = reqwest::Client::new().get(&callback).send().await.unwrap();
    assert!(replay.status().is_client_error(), "{}", replay.status());

    // A bearer token accepted, and an expired one refused.
    let good = app.idp.sign_access_token(claims(&app, "svc"));
    let mut expired = claims(&app, "svc");
    expired["exp"] = json!(now() - 3600);
    let expired = app.idp.sign_access_token(expired);
    assert_eq!(call(&app, "/me", &good).await.status(), StatusCode::OK);
    assert_eq!(
        call(&app, "/me", &expired).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for token in [&good, &expired] {
        secrets.push(token.rsplit('.').next().unwrap().to_owned());
    }

    // Logout with the IdP: RP-initiated (the ID token travels as `id_token_hint`), and
    // back-channel logout tokens, one refused and one accepted.
    let logouts = TestApp::start_with(
        |mut p| {
            p.backchannel_logout = true;
            p.rp_initiated_logout = true;
            p
        },
        |b| b,
    )
    .await;
    logouts.login(&alice()).await;
    let logout = logouts.logout().await;
    let end_session = location(&logout);
    let hint = query_param(&end_session, "id_token_hint");
    secrets.push(hint.rsplit('.').next().unwrap().to_owned());
    secrets.push(query_param(&end_session, "state"));
    let back = logouts.client.get(&end_session).send().await.unwrap();
    let done = logouts.client.get(location(&back)).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    logouts.login(&alice()).await;
    let idp = &logouts.idp;
    let mut forged = idp.logout_token_claims(CLIENT_ID, Some("sub-alice"), None);
    forged["nonce"] = json!("nonce-1");
    let valid = idp.logout_token_claims(CLIENT_ID, Some("sub-alice"), None);
    for (claims, status) in [(forged, StatusCode::BAD_REQUEST), (valid, StatusCode::OK)] {
        let token = idp.sign_logout_token(claims);
        let answer = reqwest::Client::new()
            .post(logouts.url("/auth/dev/backchannel-logout"))
            .form(&[("logout_token", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status);
        secrets.push(token.rsplit('.').next().unwrap().to_owned());
    }
    assert_eq!(logouts.me().await.status(), StatusCode::UNAUTHORIZED);

    let logs = buffer.text();
    // The capture works: the refusals are there.
    assert!(logs.contains("back-channel logout token refused"), "{logs}");
    assert!(logs.contains("back-channel logout"), "{logs}");
    assert!(logs.contains("bearer token refused"), "{logs}");
    assert!(logs.contains("login refused"), "{logs}");
    for secret in &secrets {
        assert!(secret.len() >= 8, "{secret:?} is too short to search for");
        assert!(
            !logs.contains(secret.as_str()),
            "{secret:?} reached the logs"
        );
    }
}
