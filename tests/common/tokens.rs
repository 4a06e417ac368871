//! For the `IdpAccessToken` tests (tests/session_tokens.rs, tests/log_secrets_tokens.rs),
//! included by `#[path]`: an app whose provider keeps tokens, and a second server for its
//! layer with routes of the test's own.

use crate::common::TestApp;

/// A [`TestApp`] whose provider has `store_tokens`.
pub async fn store_tokens_app() -> TestApp {
    TestApp::start_with(
        |mut provider| {
            provider.store_tokens = true;
            provider
        },
        |builder| builder,
    )
    .await
}

/// Serves `routes` behind `app`'s layer (clones share its sessions) on a port of its own; its
/// base URL. The browser's cookies for 127.0.0.1 go to it as to the app.
pub async fn token_server(app: &TestApp, routes: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = routes.layer(app.layer.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}
