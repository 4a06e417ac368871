//! Bearer-token helpers: a test app whose provider accepts `Authorization: Bearer` JWTs for
//! the audience `api`, claims for it, a call with a token, and tokens the development IdP
//! signs at its token endpoint (genuine ID tokens, or any header and claims).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jit_provision::config::BearerConfig;
use jit_provision::dev_idp::{DevUser, IdTokenDraft};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, CLIENT_SECRET, TestApp, browser, location, now};

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

/// The ID token the development IdP issues to our client for `user`: a code flow with
/// PKCE run by hand (authorize, then the token endpoint), not through the layer.
pub async fn id_token(app: &TestApp, user: &DevUser) -> String {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = app.url("/auth/dev/callback");
    let authorize = url::Url::parse_with_params(
        &format!("{}/authorize", app.idp.issuer()),
        [
            ("client_id", CLIENT_ID),
            ("redirect_uri", &redirect_uri),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "by-hand"),
            ("nonce", "by-hand"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let approved = app.approve(&browser(), authorize.as_str(), user).await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER, "IdP approval");
    let callback = url::Url::parse(&location(&approved)).unwrap();
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("a code")
        .1
        .into_owned();
    let response: Value = reqwest::Client::new()
        .post(format!("{}/token", app.idp.issuer()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["id_token"]
        .as_str()
        .expect("an ID token")
        .to_owned()
}

/// A JWT signed by the IdP's current key with header `typ` and `claims` exactly as given
/// (the IdP's ID-token hook drafts it, so any `typ` can be had).
pub async fn signed_with_typ(app: &TestApp, typ: Option<&str>, claims: Value) -> String {
    let typ = typ.map(str::to_owned);
    let claims = claims.as_object().unwrap().clone();
    app.idp.on_id_token(move |draft: &mut IdTokenDraft| {
        draft.header.typ = typ.clone();
        draft.claims = claims.clone();
    });
    let token = id_token(app, &super::alice()).await;
    app.idp.clear_id_token_hook();
    token
}

/// The header `typ` of a JWT, unverified.
pub fn typ_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().typ
}
