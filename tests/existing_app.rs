//! examples/existing_app.rs, the RealWorld-shaped app with its own users table, run in
//! process: its own password login beside SSO through the development IdP, the bridge in its
//! `AuthUser`, and its own tokens revoked when the layer locks or logs out a user.

#[allow(dead_code)]
#[path = "../examples/existing_app.rs"]
mod existing_app;

use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Running {
    base: String,
    idp: DevIdp,
    layer: jit_provision::JitLayer,
    store: existing_app::Store,
}

async fn start() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = DevIdp::builder()
        .client(
            DevClient::new("realworld", "realworld-secret")
                .redirect_uri(format!("{base}/auth/dev/callback")),
        )
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let pool = existing_app::database("sqlite::memory:").await.unwrap();
    let (router, layer, store) = existing_app::app(pool, &base, idp.issuer()).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Running {
        base,
        idp,
        layer,
        store,
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

impl Running {
    async fn sso_login(&self, client: &reqwest::Client, user: &DevUser) -> reqwest::Response {
        let start = client
            .get(format!("{}/auth/dev/login?return_to=/api/user", self.base))
            .send()
            .await
            .unwrap();
        let approved = client
            .post(format!("{}/authorize", self.idp.issuer()))
            .form(&DevIdp::approve_form(&location(&start), user))
            .send()
            .await
            .unwrap();
        client.get(location(&approved)).send().await.unwrap()
    }

    async fn me(&self, client: &reqwest::Client, token: Option<&str>) -> reqwest::Response {
        let request = client.get(format!("{}/api/user", self.base));
        let request = match token {
            Some(token) => request.header("authorization", format!("Token {token}")),
            None => request,
        };
        request.send().await.unwrap()
    }
}

async fn token_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["user"]["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn password_accounts_and_sso_users_live_side_by_side() {
    let app = start().await;
    let plain = reqwest::Client::new();
    // The app's own registration and token.
    let registered = plain
        .post(format!("{}/api/users", app.base))
        .json(&json!({"user": {"username": "jake", "email": "jake@example.com", "password": "jakejake"}}))
        .send()
        .await
        .unwrap();
    let jake = token_of(registered).await;
    let me: Value = app.me(&plain, Some(&jake)).await.json().await.unwrap();
    assert_eq!(me["user"]["username"], "jake");
    assert_eq!(
        app.me(&plain, Some("forged")).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(&plain, None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // SSO with jake's email: the app refuses it with its own code.
    let client = browser();
    let jake_sso = DevUser::new("sub-jake", "jake2", "jake@example.com", "Jake", &[]);
    let refused = app.sso_login(&client, &jake_sso).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "email_in_use");

    // SSO as alice: a user of the app's table, with a UUID id, through AuthUser's bridge.
    let alice = DevUser::new("sub-alice", "alice", "alice@example.com", "Alice", &[]);
    assert_eq!(
        app.sso_login(&client, &alice).await.status(),
        StatusCode::SEE_OTHER
    );
    let me: Value = app.me(&client, None).await.json().await.unwrap();
    assert_eq!(me["user"]["username"], "alice");
    let id: uuid::Uuid = me["user"]["id"].as_str().unwrap().parse().unwrap();
    // An app token for alice, revoked when the layer locks her.
    let issued = client
        .post(format!("{}/api/user/token", app.base))
        .send()
        .await
        .unwrap();
    let token = token_of(issued).await;
    assert_eq!(app.me(&plain, Some(&token)).await.status(), StatusCode::OK);
    let crate_user = jit_provision::store::UserStore::find_by_username(&app.store, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.store.app_id_of(crate_user.id).await.unwrap(), Some(id));
    app.layer.lock_user(crate_user.id).await.unwrap();
    assert_eq!(
        app.me(&plain, Some(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(&client, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Jake's password token is untouched.
    assert_eq!(app.me(&plain, Some(&jake)).await.status(), StatusCode::OK);
}
