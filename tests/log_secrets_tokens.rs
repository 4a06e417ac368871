//! No token of a session reaches the logs: logins with `store_tokens`, token refreshes (one
//! answered, one refused with `invalid_grant`), at TRACE level, searched for every access,
//! refresh and ID token the IdP issued. (A test binary of its own, for its process-wide
//! subscriber: see tests/log_secrets.rs.)

mod common;
#[path = "support/log_capture.rs"]
mod log_capture;
#[path = "common/tokens.rs"]
mod tokens;

use std::sync::{Arc, Mutex};

use common::*;
use log_capture::Logs;
use reqwest::StatusCode;

async fn idp_token(token: jit_provision::IdpAccessToken) -> String {
    format!("{token:?}")
}

#[tokio::test]
async fn session_tokens_never_reach_the_logs() {
    let buffer = Logs::capture();

    let app = tokens::store_tokens_app().await;
    let routes = axum::Router::new().route("/token", axum::routing::get(idp_token));
    let tokens = format!("{}/token", tokens::token_server(&app, routes).await);

    // Every token the IdP answers, each expiring at once so that every use refreshes.
    let issued = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = issued.clone();
    app.idp.on_token_response(move |response| {
        response.insert("expires_in".into(), 0.into());
        for name in ["access_token", "refresh_token", "id_token"] {
            if let Some(token) = response.get(name).and_then(|v| v.as_str()) {
                seen.lock().unwrap().push(token.to_owned());
            }
        }
    });
    app.login(&alice()).await;
    for _ in 0..2 {
        let response = app.client.get(&tokens).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let debug = response.text().await.unwrap();
        assert!(debug.starts_with("IdpAccessToken"), "{debug}");
        assert!(
            issued.lock().unwrap().iter().all(|t| !debug.contains(t)),
            "Debug shows no token: {debug}"
        );
    }
    // A refused refresh: the refresh token the IdP does not know is a secret too.
    app.idp.on_token_response(|response| {
        response.insert("expires_in".into(), 0.into());
        response.insert("refresh_token".into(), "an-unknown-refresh-token".into());
    });
    let refused = browser();
    app.login_with(&refused, &alice()).await;
    let response = refused.get(&tokens).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let mut secrets = issued.lock().unwrap().clone();
    assert!(
        secrets.len() >= 9,
        "three answers of three tokens: {secrets:?}"
    );
    secrets.push("an-unknown-refresh-token".to_owned());
    let logs = buffer.text();
    assert!(
        logs.contains("refreshed a session's tokens"),
        "the refreshes were logged at all:\n{logs}"
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
}
