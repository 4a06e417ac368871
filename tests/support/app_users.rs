//! A test application with its own users table, `app_users`, integrated through the small
//! core ([`AppUsers`]): ids of any kind (UUID, `i64`, `String`) kept as text, a unique email
//! (`NOT NULL`) and a unique username; password accounts have no identity link. One
//! implementation for SQLite and PostgreSQL (statements written with `$N`, SQLite's `?N`),
//! with a fault switch to prove that the app's insert and the crate's link commit together.

#![allow(dead_code)]

use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use jit_provision::store::{AppUsers, Profile, ProfileChanges, Refusal, StoreError};

/// The application's table (the same text for both databases).
pub const SCHEMA: &str = "CREATE TABLE app_users (\
     id TEXT PRIMARY KEY, \
     email TEXT NOT NULL UNIQUE, \
     username TEXT UNIQUE, \
     display_name TEXT, \
     password_hash TEXT, \
     verified INTEGER NOT NULL DEFAULT 0)";

/// An id the application makes up for a new user.
pub trait NewId: Clone + Eq + Hash + Display + FromStr + Send + Sync + 'static {
    fn fresh() -> Self;
}

impl NewId for uuid::Uuid {
    fn fresh() -> Self {
        uuid::Uuid::new_v4()
    }
}

impl NewId for i64 {
    fn fresh() -> Self {
        static NEXT: AtomicI64 = AtomicI64::new(1);
        NEXT.fetch_add(1, Ordering::SeqCst)
    }
}

impl NewId for String {
    fn fresh() -> Self {
        format!("user-{}", uuid::Uuid::new_v4().simple())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser<I> {
    pub id: I,
    pub email: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
}

/// What the app's `create` does wrong after its own insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Returns an error.
    Fail,
    /// Panics.
    Panic,
    /// Commits the crate's transaction itself (against the contract) and returns the user.
    Commit,
    /// `find` fails (an outage of the app's own pool), or panics.
    FindFails,
    FindPanics,
}

pub struct TestAppUsers<P, I> {
    pub pool: P,
    fault: Arc<Mutex<Option<Fault>>>,
    _id: std::marker::PhantomData<fn() -> I>,
}

impl<P: Clone, I> TestAppUsers<P, I> {
    pub fn new(pool: P) -> Self {
        Self {
            pool,
            fault: Arc::default(),
            _id: std::marker::PhantomData,
        }
    }

    /// A switch for the faults of this app (shared with the store's copy).
    pub fn faults(&self) -> Arc<Mutex<Option<Fault>>> {
        self.fault.clone()
    }
}

type Row = (String, String, Option<String>, Option<String>);

fn user_of<I: FromStr>((id, email, username, display_name): Row) -> Result<AppUser<I>, StoreError> {
    Ok(AppUser {
        id: id
            .parse()
            .map_err(|_| StoreError::backend(format!("bad id {id}")))?,
        email,
        username,
        display_name,
    })
}

/// A unique violation of the app's own table, as the store's answers.
fn conflict(err: sqlx::Error, profile: &Profile) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            if db.message().contains("username") {
                StoreError::UsernameTaken(profile.username.clone())
            } else {
                Refusal::conflict(
                    "email",
                    "email_in_use",
                    "this email belongs to an account with a password: log in with it first",
                )
                .into()
            }
        }
        _ => StoreError::backend(err),
    }
}

macro_rules! test_app_users {
    ($conn:ty, $pool:ty, $sql:expr) => {
        impl<I: NewId> AppUsers<$conn> for TestAppUsers<$pool, I> {
            type User = AppUser<I>;
            type Id = I;

            fn id(user: &AppUser<I>) -> I {
                user.id.clone()
            }

            fn username(user: &AppUser<I>) -> String {
                user.username.clone().unwrap_or_else(|| user.email.clone())
            }

            async fn find(&self, id: &I) -> Result<Option<AppUser<I>>, StoreError> {
                let fault = *self.fault.lock().unwrap();
                match fault {
                    Some(Fault::FindFails) => {
                        return Err(StoreError::unavailable("injected outage"));
                    }
                    Some(Fault::FindPanics) => panic!("injected panic in find"),
                    _ => {}
                }
                let sql =
                    $sql("SELECT id, email, username, display_name FROM app_users WHERE id = $1");
                let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                row.map(user_of).transpose()
            }

            async fn create(
                &self,
                conn: &mut $conn,
                profile: &Profile,
            ) -> Result<AppUser<I>, StoreError> {
                let Some(email) = profile.email.clone().flatten() else {
                    return Err(Refusal::forbidden(
                        "email",
                        "email_required",
                        "an email is required",
                    )
                    .into());
                };
                // The username's own check first: a taken username is `UsernameTaken`, even
                // when the email is taken too.
                let sql = $sql("SELECT 1 FROM app_users WHERE username = $1");
                let taken: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(&profile.username)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                if taken.is_some() {
                    return Err(StoreError::UsernameTaken(profile.username.clone()));
                }
                let user = AppUser {
                    id: I::fresh(),
                    email,
                    username: Some(profile.username.clone()),
                    display_name: profile.display_name.clone().flatten(),
                };
                let sql = $sql(
                    "INSERT INTO app_users (id, email, username, display_name, verified) \
                     VALUES ($1, $2, $3, $4, 1)",
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(user.id.to_string())
                    .bind(&user.email)
                    .bind(&user.username)
                    .bind(&user.display_name)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| conflict(e, profile))?;
                let fault = *self.fault.lock().unwrap();
                match fault {
                    Some(Fault::Fail) => {
                        Err(StoreError::backend("injected fault after the app's insert"))
                    }
                    Some(Fault::Panic) => panic!("injected panic after the app's insert"),
                    Some(Fault::Commit) => {
                        sqlx::query("COMMIT")
                            .execute(&mut *conn)
                            .await
                            .map_err(StoreError::backend)?;
                        Ok(user)
                    }
                    _ => Ok(user),
                }
            }

            async fn apply(
                &self,
                conn: &mut $conn,
                id: &I,
                changes: &ProfileChanges,
            ) -> Result<(), StoreError> {
                // The email is NOT NULL here: a cleared one stays as it was.
                if let Some(Some(email)) = &changes.email {
                    let sql = $sql("UPDATE app_users SET email = $1 WHERE id = $2");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(email)
                        .bind(id.to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                }
                if let Some(name) = &changes.display_name {
                    let sql = $sql("UPDATE app_users SET display_name = $1 WHERE id = $2");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(name)
                        .bind(id.to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                }
                Ok(())
            }

            async fn find_by_username(
                &self,
                username: &str,
            ) -> Result<Option<AppUser<I>>, StoreError> {
                let sql = $sql(
                    "SELECT id, email, username, display_name FROM app_users WHERE username = $1",
                );
                let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                row.map(user_of).transpose()
            }

            async fn find_by_verified_email(
                &self,
                email: &str,
            ) -> Result<Vec<AppUser<I>>, StoreError> {
                let sql = $sql(
                    "SELECT id, email, username, display_name FROM app_users \
                     WHERE lower(email) = lower($1) AND verified = 1",
                );
                let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(email)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::backend)?;
                rows.into_iter().map(user_of).collect()
            }
        }
    };
}

test_app_users!(sqlx::SqliteConnection, sqlx::SqlitePool, |s: &str| s
    .replace('$', "?"));
#[cfg(feature = "postgres")]
test_app_users!(sqlx::PgConnection, sqlx::PgPool, |s: &str| s.to_owned());

/// A password account of the application (no SSO identity), on SQLite.
pub async fn password_account(
    pool: &sqlx::SqlitePool,
    email: &str,
    username: &str,
    verified: bool,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO app_users (id, email, username, password_hash, verified) VALUES (?, ?, ?, 'x', ?)")
        .bind(&id)
        .bind(email)
        .bind(username)
        .bind(verified as i32)
        .execute(pool)
        .await
        .unwrap();
    id
}

/// An in-memory SQLite pool with the application's table.
pub async fn sqlite_pool() -> sqlx::SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query(SCHEMA).execute(&pool).await.unwrap();
    pool
}
