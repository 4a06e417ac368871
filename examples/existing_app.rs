//! # An existing app, with jit-provision added
//!
//! A RealWorld-shaped axum API that existed before SSO: its own SQLite `users` table with
//! UUID ids, its own password login issuing 7-day tokens (`Authorization: Token ...`), its
//! own `AuthUser` extractor. Single sign-on through the development IdP was then added with
//! jit-provision's small core, [`AppUsers`]: the app's users stay in its table, with its ids;
//! the crate keeps its bookkeeping (identity links, granted groups, lock state, sessions) in
//! its own `jit_*` tables on the same pool. It needs no set-up:
//!
//! ```text
//! cargo run --example existing_app
//! # a password account, the app's own way:
//! curl -s localhost:3000/api/users -H 'content-type: application/json' \
//!   -d '{"user":{"username":"jake","email":"jake@jake.jake","password":"jakejake"}}'
//! curl -s localhost:3000/api/user -H 'Authorization: Token <the token above>'
//! # SSO: open http://127.0.0.1:3000/auth/dev/login?return_to=/api/user (log in as alice),
//! # then POST /api/user/token in that browser session for an app token of alice.
//! ```
//!
//! Reading order: the app's own code (`realworld`, unchanged by the integration), then the
//! glue between the `GLUE` markers: the [`AppUsers`] implementation, the layer's wiring, the
//! bridge in `AuthUser`, and the event sink that revokes the app's tokens when the layer
//! locks, deprovisions or logs out a user.
//!
//! Passwords are hashed with a salted SHA-256 **for this demo only** (it keeps the example
//! free of heavy dependencies): a real app uses a password hash such as Argon2.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use jit_provision::dev_idp::{DevClient, DevIdp};
use jit_provision::events::{EventSink, ProvisioningEvent};
use jit_provision::store::{AppUsers, Profile, ProfileChanges, Refusal, SqliteStore, StoreError};
use jit_provision::{CurrentUser, JitLayer, ProviderConfig};
use sqlx::{SqliteConnection, SqlitePool};
use uuid::Uuid;

/// The app's own code, as it was before SSO (trimmed to what shows the integration).
pub mod realworld {
    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use serde::Deserialize;
    use sha2::{Digest, Sha256};
    use sqlx::SqlitePool;
    use uuid::Uuid;

    /// The app's tables.
    pub const SCHEMA: [&str; 2] = [
        "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, \
         username TEXT NOT NULL UNIQUE, bio TEXT, image TEXT, password_hash TEXT, salt TEXT)",
        "CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, user_id TEXT NOT NULL, \
         expires_at INTEGER NOT NULL)",
    ];

    /// The app's user.
    #[derive(Debug, Clone)]
    pub struct User {
        pub id: Uuid,
        pub email: String,
        pub username: String,
        pub bio: Option<String>,
        pub image: Option<String>,
    }

    type Row = (String, String, String, Option<String>, Option<String>);

    fn user_of(row: Option<Row>) -> sqlx::Result<Option<User>> {
        let Some((id, email, username, bio, image)) = row else {
            return Ok(None);
        };
        let id = id.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(Some(User {
            id,
            email,
            username,
            bio,
            image,
        }))
    }

    #[derive(Clone)]
    pub struct AppState {
        pub pool: SqlitePool,
    }

    const COLUMNS: &str = "id, email, username, bio, image";
    const TOKEN_DAYS: i64 = 7;

    pub async fn find_user(pool: &SqlitePool, id: Uuid) -> sqlx::Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?;
        user_of(row)
    }

    /// A salted SHA-256: a demo only, use Argon2 in a real app.
    fn hash_password(password: &str, salt: &str) -> String {
        let digest = Sha256::digest(format!("{salt}:{password}"));
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn random_hex() -> String {
        (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    pub async fn issue_token(pool: &SqlitePool, user: Uuid) -> sqlx::Result<String> {
        let token = random_hex();
        sqlx::query("INSERT INTO tokens (token, user_id, expires_at) VALUES (?, ?, ?)")
            .bind(&token)
            .bind(user.to_string())
            .bind(now() + TOKEN_DAYS * 86_400)
            .execute(pool)
            .await?;
        Ok(token)
    }

    pub async fn token_user(pool: &SqlitePool, token: &str) -> sqlx::Result<Option<User>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE id = \
             (SELECT user_id FROM tokens WHERE token = ? AND expires_at > ?)"
        );
        let row = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .bind(now())
            .fetch_optional(pool)
            .await?;
        user_of(row)
    }

    pub async fn revoke_tokens(pool: &SqlitePool, user: Uuid) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM tokens WHERE user_id = ?")
            .bind(user.to_string())
            .execute(pool)
            .await
            .map(|_| ())
    }

    #[derive(Deserialize)]
    pub struct Envelope<T> {
        pub user: T,
    }

    #[derive(Deserialize)]
    pub struct Registration {
        pub username: String,
        pub email: String,
        pub password: String,
    }

    #[derive(Deserialize)]
    pub struct Credentials {
        pub email: String,
        pub password: String,
    }

    /// The RealWorld user answer: the user and a token.
    pub fn answer(user: &User, token: &str) -> Json<serde_json::Value> {
        Json(
            serde_json::json!({ "user": { "id": user.id.to_string(), "email": user.email,
            "username": user.username, "bio": user.bio, "image": user.image, "token": token } }),
        )
    }

    /// `POST /api/users`: registers a password account.
    pub async fn register(
        State(state): State<AppState>,
        Json(body): Json<Envelope<Registration>>,
    ) -> Result<Json<serde_json::Value>, StatusCode> {
        let r = body.user;
        let (id, salt) = (Uuid::new_v4(), random_hex());
        sqlx::query(
            "INSERT INTO users (id, email, username, password_hash, salt) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.to_string())
        .bind(&r.email)
        .bind(&r.username)
        .bind(hash_password(&r.password, &salt))
        .bind(&salt)
        .execute(&state.pool)
        .await
        .map_err(|_| StatusCode::UNPROCESSABLE_ENTITY)?;
        let user = find_user(&state.pool, id).await.ok().flatten();
        let user = user.ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
        let token = issue_token(&state.pool, id).await;
        Ok(answer(
            &user,
            &token.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?,
        ))
    }

    /// `POST /api/users/login`: a password login.
    pub async fn login(
        State(state): State<AppState>,
        Json(body): Json<Envelope<Credentials>>,
    ) -> Result<Json<serde_json::Value>, StatusCode> {
        let row: Option<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT id, password_hash, salt FROM users WHERE email = ?")
                .bind(&body.user.email)
                .fetch_optional(&state.pool)
                .await
                .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        // An SSO user has no password: it cannot log in this way.
        let Some((id, Some(hash), Some(salt))) = row else {
            return Err(StatusCode::UNAUTHORIZED);
        };
        if hash_password(&body.user.password, &salt) != hash {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let id: Uuid = id.parse().map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        let user = find_user(&state.pool, id).await.ok().flatten();
        let user = user.ok_or(StatusCode::UNAUTHORIZED)?;
        let token = issue_token(&state.pool, id).await;
        Ok(answer(
            &user,
            &token.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?,
        ))
    }
}

use realworld::{AppState, User};

/// The app's extractor: a user by its own token, or (the bridge) by the layer's session.
pub struct AuthUser(pub User);

/// `GET /api/user`: the current user, however it logged in.
async fn current_user(AuthUser(user): AuthUser) -> axum::Json<serde_json::Value> {
    realworld::answer(&user, "")
}

/// `POST /api/user/token`: an app token for the current user (an SSO user gets one too).
async fn new_token(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let token = realworld::issue_token(&state.pool, user.id).await;
    let token = token.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(realworld::answer(&user, &token))
}

// ---------------------------------- GLUE START ----------------------------------

/// The app's users, as jit-provision sees them.
pub struct Users(pub SqlitePool);

impl AppUsers<SqliteConnection> for Users {
    type User = User;
    type Id = Uuid;

    fn id(user: &User) -> Uuid {
        user.id
    }

    fn username(user: &User) -> String {
        user.username.clone()
    }

    async fn find(&self, id: &Uuid) -> Result<Option<User>, StoreError> {
        let found = realworld::find_user(&self.0, *id).await;
        found.map_err(StoreError::backend)
    }

    /// Inside the crate's transaction (`conn`): committed with the identity link.
    async fn create(
        &self,
        conn: &mut SqliteConnection,
        profile: &Profile,
    ) -> Result<User, StoreError> {
        let email = profile.email.clone().flatten().ok_or_else(|| {
            Refusal::forbidden(
                "email",
                "email_required",
                "your identity provider sent no email",
            )
        })?;
        let held: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE lower(email) = lower(?)")
                .bind(&email)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
        if held.is_some() {
            let message = "this email belongs to an account with a password: log in with it";
            return Err(Refusal::conflict("email", "email_in_use", message).into());
        }
        let id = Uuid::new_v4();
        let inserted = sqlx::query("INSERT INTO users (id, email, username) VALUES (?, ?, ?)")
            .bind(id.to_string())
            .bind(&email)
            .bind(&profile.username)
            .execute(&mut *conn)
            .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::UsernameTaken(profile.username.clone()));
            }
            Err(e) => return Err(StoreError::backend(e)),
        }
        let username = profile.username.clone();
        Ok(User {
            id,
            email,
            username,
            bio: None,
            image: None,
        })
    }

    /// A changed email at the IdP reaches the app's column, in the crate's transaction.
    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        id: &Uuid,
        changes: &ProfileChanges,
    ) -> Result<(), StoreError> {
        if let Some(Some(email)) = &changes.email {
            sqlx::query("UPDATE users SET email = ? WHERE id = ?")
                .bind(email)
                .bind(id.to_string())
                .execute(conn)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(())
    }
}

/// The store: the crate's tables on the app's pool, with the app's part.
pub type Store = SqliteStore<Users>;

/// Revokes the app's own tokens of a user the layer locked, deprovisioned or logged out.
struct RevokeTokens(Store);

impl EventSink for RevokeTokens {
    fn deliver<'a>(&'a self, event: &'a ProvisioningEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (ProvisioningEvent::Locked { user_id, .. }
            | ProvisioningEvent::Deprovisioned { user_id, .. }
            | ProvisioningEvent::LoggedOut { user_id, .. }) = event
            else {
                return;
            };
            if let Ok(Some(id)) = self.0.app_id_of(*user_id).await
                && let Err(err) = realworld::revoke_tokens(self.0.pool(), id).await
            {
                tracing::error!(error = %err, "revoking the app's tokens failed");
            }
        })
    }
}

/// The app's router with the layer; `public_url` is where it is served, `issuer` the IdP.
pub async fn app(
    pool: SqlitePool,
    public_url: &str,
    issuer: &str,
) -> Result<(Router, JitLayer, Store), Box<dyn std::error::Error>> {
    let store = SqliteStore::with_app(pool.clone(), Users(pool.clone())).await?;
    let layer = JitLayer::builder()
        .public_url(public_url)
        .insecure_cookies_for_localhost()
        .provider(
            "dev",
            ProviderConfig::new(issuer, "realworld").client_secret("realworld-secret"),
        )
        .store(store.clone())
        .on_event(RevokeTokens(store.clone()))
        .build()?;
    Ok((routes(pool).layer(layer.clone()), layer, store))
}

/// The bridge: the app's own token first, else the layer's session user.
impl FromRequestParts<AppState> for AuthUser {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, StatusCode> {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if let Some(token) = header.and_then(|h| h.strip_prefix("Token ")) {
            let user = realworld::token_user(&state.pool, token).await;
            let user = user.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
            return user.map(AuthUser).ok_or(StatusCode::UNAUTHORIZED);
        }
        let sso = CurrentUser::<User>::from_request_parts(parts, state).await;
        sso.map(|current| AuthUser((*current.user).clone()))
            .map_err(|rejection| rejection.status())
    }
}

// ----------------------------------- GLUE END -----------------------------------

/// The app's routes (its own, before the layer).
fn routes(pool: SqlitePool) -> Router {
    Router::new()
        .route("/api/users", post(realworld::register))
        .route("/api/users/login", post(realworld::login))
        .route("/api/user", get(current_user))
        .route("/api/user/token", post(new_token))
        .with_state(AppState { pool })
}

/// The app's database: its own tables (the crate migrates its own when the store opens).
pub async fn database(url: &str) -> sqlx::Result<SqlitePool> {
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
    let pool = SqlitePool::connect_with(options.create_if_missing(true)).await?;
    for statement in realworld::SCHEMA {
        sqlx::query(statement).execute(&pool).await?;
    }
    Ok(pool)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let listen: SocketAddr = "127.0.0.1:3000".parse()?;
    let public_url = format!("http://{listen}");
    let idp = DevIdp::builder()
        .client(
            DevClient::new("realworld", "realworld-secret")
                .redirect_uri(format!("{public_url}/auth/dev/callback")),
        )
        .start("127.0.0.1:0")
        .await?;
    let pool = database("sqlite://realworld.db").await?;
    let (router, _layer, _store) = app(pool, &public_url, idp.issuer()).await?;
    println!("RealWorld API on {public_url}; SSO: {public_url}/auth/dev/login?return_to=/api/user");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router).await?;
    Ok(())
}
