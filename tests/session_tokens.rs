//! Tokens for calling APIs on the user's behalf. `SessionStore::update_tokens`, the lock a
//! token refresh runs under: on memory, on two SQLite pools sharing one file, on two
//! PostgreSQL pools sharing one database, an update that starts while another holds the lock
//! runs after it, and sees what it wrote. `IdpAccessToken`'s rejections, against the
//! development IdP (which issues no refresh tokens). The refresh itself, against a real
//! provider: tests/interop_oidc_provider.rs.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

#[cfg(feature = "postgres")]
use common::pg;
use common::{TestApp, alice, browser};

use std::path::PathBuf;
use std::time::Duration;

use jit_provision::session::{
    MemorySessionStore, SealedTokens, SessionRecord, SessionStore, TokensUpdate,
};
use jit_provision::store::SqliteStore;
use tokio::sync::oneshot;

/// An update that writes `value`, after telling `inside` it holds the lock and waiting a
/// moment (long enough for a rival to try to get in), reporting the tokens it found.
fn holding<'a>(
    value: &'static str,
    inside: oneshot::Sender<()>,
    found: oneshot::Sender<Option<String>>,
) -> TokensUpdate<'a> {
    Box::new(move |record| {
        Box::pin(async move {
            let _ = inside.send(());
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = found.send(record.tokens.map(|t| t.as_str().to_owned()));
            Some(SealedTokens::from_stored(value))
        })
    })
}

/// `a` and `b` are two handles on one store (two pools of one database).
async fn contract<S: SessionStore>(a: S, b: S) {
    let now = 1_000;
    let record = SessionRecord::new("s1", "PRIMARY", "7", "corp", "sub", now, now + 3600);
    assert!(a.create_session(&record).await.unwrap());

    // No record: nothing runs.
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let none = a
        .update_tokens(
            "nobody",
            Box::new(move |_| {
                Box::pin(async move {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    None
                })
            }),
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));

    // The first holds the lock; the second, started meanwhile on the other handle, waits
    // and reads what the first wrote.
    let (inside, entered) = oneshot::channel();
    let (first_found, first_saw) = oneshot::channel();
    let first = a.update_tokens("s1", holding("first", inside, first_found));
    let second = async {
        entered.await.unwrap();
        let (inside, _) = oneshot::channel();
        let (found, saw) = oneshot::channel();
        let after = b
            .update_tokens("s1", holding("second", inside, found))
            .await
            .unwrap();
        (after, saw.await.unwrap())
    };
    let (after_first, (after_second, second_saw)) = tokio::join!(first, second);
    assert_eq!(first_saw.await.unwrap(), None);
    assert_eq!(second_saw.as_deref(), Some("first"), "the second ran after");
    assert_eq!(
        after_first.unwrap().unwrap().tokens.unwrap().as_str(),
        "first"
    );
    assert_eq!(
        after_second.unwrap().tokens.unwrap().as_str(),
        "second",
        "the record as written"
    );

    // `None` leaves the tokens; the rest of the record is as stored.
    let kept = b
        .update_tokens("s1", Box::new(|_| Box::pin(async { None })))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.tokens.unwrap().as_str(), "second");
    assert_eq!((kept.user_id.as_str(), kept.expires_at), ("7", now + 3600));
    let stored = a.get_session("s1").await.unwrap().unwrap();
    assert_eq!(stored.tokens.unwrap().as_str(), "second");
}

#[tokio::test]
async fn memory_token_updates_take_turns() {
    let store = MemorySessionStore::new();
    contract(store.clone(), store).await;
}

/// A SQLite file of its own under cargo's target tmp dir, removed when dropped.
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

#[tokio::test]
async fn sqlite_token_updates_take_turns_across_pools() {
    let db = TempDb(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("session-tokens-{}.db", std::process::id())),
    );
    let url = format!("sqlite://{}", db.0.display());
    let a = SqliteStore::connect(&url).await.unwrap();
    let b = SqliteStore::connect(&url).await.unwrap();
    contract(a, b).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_token_updates_take_turns_across_pools() {
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    let a = jit_provision::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    let b = jit_provision::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    contract(a, b).await;
}

// ---- IdpAccessToken's rejections ----

async fn idp_token(token: jit_provision::IdpAccessToken) -> String {
    token.secret().to_owned()
}

/// `GET /token` of an `IdpAccessToken` handler answering the token, behind `app`'s layer.
async fn token_route(app: &TestApp) -> String {
    let routes = axum::Router::new().route("/token", axum::routing::get(idp_token));
    tokens::token_server(app, routes).await
}

/// `GET /token` with `client`: status, and the error code or the token.
async fn token_with(client: &reqwest::Client, base: &str) -> (reqwest::StatusCode, String) {
    let response = client
        .get(format!("{base}/token"))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, code)
}

#[tokio::test]
async fn without_store_tokens_a_session_has_no_idp_token() {
    let app = TestApp::start().await;
    let tokens = token_route(&app).await;
    let anonymous = token_with(&app.client, &tokens).await;
    assert_eq!(
        anonymous,
        (reqwest::StatusCode::UNAUTHORIZED, "login_required".into())
    );
    app.login(&alice()).await;
    assert_eq!(
        token_with(&app.client, &tokens).await,
        (reqwest::StatusCode::UNAUTHORIZED, "no_idp_token".into())
    );
}

#[tokio::test]
async fn store_tokens_hands_out_refreshes_and_refuses_tokens() {
    let app = tokens::store_tokens_app().await;
    let tokens = token_route(&app).await;
    app.login(&alice()).await;
    let before = app.idp.token_requests();
    let (status, token) = token_with(&app.client, &tokens).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{token}");
    assert!(token.len() > 20, "the IdP's access token: {token}");
    assert_eq!(
        app.idp.token_requests(),
        before,
        "a fresh token: no refresh"
    );

    // Expired at once, and no refresh token: refused; the session goes on.
    app.idp.on_token_response(|response| {
        response.insert("expires_in".into(), 0.into());
        response.remove("refresh_token");
    });
    let expired = browser();
    app.login_with(&expired, &alice()).await;
    assert_eq!(
        token_with(&expired, &tokens).await,
        (
            reqwest::StatusCode::UNAUTHORIZED,
            "idp_token_expired".into()
        )
    );
    assert_eq!(
        app.me_with(&expired).await.status(),
        reqwest::StatusCode::OK
    );

    // Expired at once, with a refresh token: refreshed at the IdP, once per request (each
    // answer expires at once too).
    app.idp.on_token_response(|response| {
        response.insert("expires_in".into(), 0.into());
    });
    let refreshing = browser();
    app.login_with(&refreshing, &alice()).await;
    let before = app.idp.token_requests();
    let (status, first) = token_with(&refreshing, &tokens).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{first}");
    assert_eq!(app.idp.token_requests(), before + 1, "one refresh request");

    // The IdP is down: 502, the session is kept; back up, the rotated refresh token works.
    app.idp
        .set_token_fault(Some(jit_provision::dev_idp::EndpointFault::Unavailable));
    assert_eq!(
        token_with(&refreshing, &tokens).await,
        (
            reqwest::StatusCode::BAD_GATEWAY,
            "idp_refresh_failed".into()
        )
    );
    assert_eq!(
        app.me_with(&refreshing).await.status(),
        reqwest::StatusCode::OK
    );
    app.idp.set_token_fault(None);
    let (status, second) = token_with(&refreshing, &tokens).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{second}");

    // A refresh token the IdP does not know (invalid_grant): the session ends.
    app.idp.on_token_response(|response| {
        response.insert("expires_in".into(), 0.into());
        response.insert("refresh_token".into(), "not-one-of-the-idp".into());
    });
    let refused = browser();
    app.login_with(&refused, &alice()).await;
    assert_eq!(
        token_with(&refused, &tokens).await,
        (
            reqwest::StatusCode::UNAUTHORIZED,
            "idp_refresh_refused".into()
        )
    );
    assert_eq!(
        app.me_with(&refused).await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
}

/// With `resync_on_refresh` and `userinfo`, a userinfo failure after the token endpoint
/// rotated the refresh token: 502 for that request, and the rotated tokens are kept, so the
/// next refresh spends the new refresh token (the dev IdP's are single use).
#[tokio::test]
async fn a_userinfo_failure_after_a_refresh_keeps_the_rotated_tokens() {
    let app = TestApp::start_with(
        |mut provider| {
            provider.store_tokens = true;
            provider.userinfo = true;
            provider.resync_on_refresh = true;
            provider
        },
        |builder| builder,
    )
    .await;
    let tokens = token_route(&app).await;
    app.idp.on_token_response(|response| {
        response.insert("expires_in".into(), 0.into());
    });
    app.login(&alice()).await;
    app.idp
        .set_userinfo_fault(Some(jit_provision::dev_idp::EndpointFault::Unavailable));
    let before = app.idp.token_requests();
    assert_eq!(
        token_with(&app.client, &tokens).await,
        (
            reqwest::StatusCode::BAD_GATEWAY,
            "idp_refresh_failed".into()
        )
    );
    assert_eq!(app.idp.token_requests(), before + 1, "the IdP refreshed");
    assert_eq!(app.me().await.status(), reqwest::StatusCode::OK);
    app.idp.set_userinfo_fault(None);
    let (status, token) = token_with(&app.client, &tokens).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{token}");
    assert_eq!(app.idp.token_requests(), before + 2, "refreshed again");
    assert_eq!(app.me().await.status(), reqwest::StatusCode::OK);
}
