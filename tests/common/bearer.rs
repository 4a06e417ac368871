//! Bearer-token helpers: a test app whose provider accepts `Authorization: Bearer` JWTs for
//! the audience `api`, claims for it, and a call with a token.

use jit_provision::config::BearerConfig;
use serde_json::{Value, json};

use super::{TestApp, now};

/// A test app whose provider accepts bearer tokens for the audience `api`.
pub async fn api() -> TestApp {
    api_with(|b| b).await
}

/// [`api`] with the bearer section changed by `bearer`.
pub async fn api_with(bearer: impl FnOnce(BearerConfig) -> BearerConfig) -> TestApp {
    TestApp::start_with(|p| p.bearer(bearer(BearerConfig::new(["api"]))), |b| b).await
}

/// Valid claims for `sub`: issued now, ten minutes to live, scopes `reports:read profile`,
/// a fresh `jti`.
pub fn claims(app: &TestApp, sub: &str) -> Value {
    json!({
        "iss": app.idp.issuer(),
        "sub": sub,
        "aud": "api",
        "iat": now(),
        "exp": now() + 600,
        "preferred_username": sub,
        "scope": "reports:read profile",
        "jti": jit_provision::session::SessionKey::generate().to_base64(),
    })
}

/// `GET path` with `token` as the bearer token.
pub async fn call(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}
