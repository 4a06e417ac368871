//! Faults: a panic in the application's store code, and oversized input.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::get;
use common::*;
use jit_provision::dev_idp::{DevClient, DevIdp};
use jit_provision::store::{
    Identity, IdentityKey, LinkedIdentity, MemoryStore, Profile, ProfileChanges, StoreError, User,
    UserId, UserStore,
};
use jit_provision::{CurrentUser, JitLayer};
use reqwest::StatusCode;

/// A store whose code panics while `panicking` is set.
#[derive(Clone, Default)]
struct PanickyStore {
    inner: MemoryStore,
    panicking: Arc<AtomicBool>,
}

impl PanickyStore {
    fn check(&self) {
        if self.panicking.load(Ordering::SeqCst) {
            panic!("a bug in the application's store");
        }
    }
}

impl UserStore for PanickyStore {
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
        self.check();
        self.inner.find_by_identity(key).await
    }
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.check();
        self.inner.find_by_id(id).await
    }
    async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.inner.find_by_username(username).await
    }
    async fn find_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        self.inner.find_by_email(email).await
    }
    async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
        self.check();
        self.inner.create(identity, profile).await
    }
    async fn link(&self, identity: &Identity, user: UserId) -> Result<(), StoreError> {
        self.inner.link(identity, user).await
    }
    async fn update(&self, id: UserId, changes: &ProfileChanges) -> Result<User, StoreError> {
        self.check();
        self.inner.update(id, changes).await
    }
    async fn record_login(&self, key: &IdentityKey, at: i64) -> Result<(), StoreError> {
        self.inner.record_login(key, at).await
    }
    async fn identities_of(&self, user: UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.inner.identities_of(user).await
    }
    async fn identities_by_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.inner.identities_by_provider(provider).await
    }
    async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
        self.inner.set_locked(id, locked).await
    }
    async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
}

#[tokio::test]
async fn a_panic_in_store_code_is_a_500_and_the_layer_keeps_serving() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let idp = DevIdp::builder()
        .client(
            DevClient::new(CLIENT_ID, CLIENT_SECRET)
                .redirect_uri(format!("{base}/auth/dev/callback")),
        )
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let store = PanickyStore::default();
    let layer = JitLayer::builder()
        .public_url(&base)
        .insecure_cookies_for_localhost()
        .provider("dev", default_provider(idp.issuer()))
        .store(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move { u.username.clone() }),
        )
        .layer(layer.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let login = |client: reqwest::Client| {
        let (base, issuer) = (base.clone(), idp.issuer().to_owned());
        async move {
            let start = client
                .get(format!("{base}/auth/dev/login?return_to=/me"))
                .send()
                .await
                .unwrap();
            let approved = client
                .post(format!("{issuer}/authorize"))
                .form(&DevIdp::approve_form(&location(&start), &alice()))
                .send()
                .await
                .unwrap();
            client.get(location(&approved)).send().await.unwrap()
        }
    };
    store.panicking.store(true, Ordering::SeqCst);
    let client = browser();
    let response = login(client.clone()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!sets_session(&response));
    assert_eq!(error_code(response).await, "store_unavailable");
    assert_eq!(store.inner.user_count(), 0);

    // The same layer serves the next request normally.
    store.panicking.store(false, Ordering::SeqCst);
    let response = login(client.clone()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let me = client.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(me.text().await.unwrap(), "alice");
}

#[tokio::test]
async fn oversized_cookies_and_headers_are_refused_early_without_effect() {
    let app = TestApp::start().await;
    let plain = reqwest::Client::new();
    // A session cookie over the 4 KiB a browser would send is not even decrypted.
    let huge = format!("jit_session={}", "A".repeat(5000));
    let response = plain
        .get(app.url("/"))
        .header("cookie", huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "hello stranger");
    // An oversized bearer token.
    let response = plain
        .get(app.url("/me"))
        .bearer_auth("x".repeat(9000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.inner.user_count(), 0);
}
