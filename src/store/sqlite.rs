use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqlSafeStr};

use super::app::{AppUserLoader, AppUsers, NoApp};
use super::types::now_unix;
use super::{
    Identity, IdentityKey, LinkedIdentity, LoginStamp, Profile, ProfileChanges, StoreError, User,
    UserId, UserStore, canonical,
};

const USER_COLUMNS: &str = "u.id, u.username, u.email, u.display_name, u.groups_json, u.attrs_json, \
     u.idp_groups_json, u.idp_attrs_json, u.roles_json, u.idp_roles_json, u.locked, u.created_at, u.updated_at";

/// A [`UserStore`] on an embedded SQLite database through sqlx: the crate's default store.
///
/// [`SqliteStore::connect`] creates the file if needed and applies the crate's migrations,
/// tracked in their own table `_jit_provision_migrations` so they never collide with the
/// application's own sqlx migrations.
///
/// ```
/// use jit_provision::store::{Identity, Profile, SqliteStore, UserStore};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// let user = store.create(&Identity::new("corp", "https://idp", "1"), &Profile::new("jane")).await?;
/// assert_eq!(store.find_by_id(user.id).await?.unwrap().username, "jane");
/// # Ok::<_, jit_provision::store::StoreError>(())
/// # }).unwrap();
/// ```
///
/// With an application's own users table, [`SqliteStore::with_app`] adds the application's
/// part ([`AppUsers`]): the application's user is created and updated inside this store's
/// transactions, and the crate's bookkeeping stays in its own tables.
pub struct SqliteStore<A = NoApp> {
    pool: SqlitePool,
    /// The application's own users, if any (`jit_users.app_id` names them).
    app: Option<std::sync::Arc<A>>,
    /// SQLite has one writer at a time; writers queue here, in the process, rather than in
    /// SQLite's busy handler, whose sleeps (1, 2, 5, 10 ms ...) made concurrent first logins
    /// 14 times slower than sequential ones.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl<A> Clone for SqliteStore<A> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            app: self.app.clone(),
            writer: self.writer.clone(),
        }
    }
}

impl<A> std::fmt::Debug for SqliteStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool)
            .field(
                "app",
                &self.app.as_ref().map(|_| std::any::type_name::<A>()),
            )
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path/file.db` or
    /// `sqlite::memory:`) and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::backend)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let options = if memory {
            options
        } else {
            options.journal_mode(SqliteJournalMode::Wal)
        };
        // An in-memory database exists per connection: keep exactly one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 8 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(if memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(classify)?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool, migrates it and fills in the [`canonical`] forms of rows
    /// written before (or outside) this version.
    ///
    /// Fails, writing nothing, when existing data breaks a rule the migrations add: a user
    /// linked twice at one provider, or two usernames with one canonical form. The error names
    /// the rows; an administrator decides which to keep, since either may be the legitimate
    /// one.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self, StoreError> {
        Self::open(pool, None).await
    }
}

impl<A: AppUsers<sqlx::SqliteConnection>> SqliteStore<A> {
    /// The store on the application's `pool` with the application's own users (`app`): see
    /// [`AppUsers`]. Migrates the crate's tables (`jit_*`, never the application's) like
    /// [`from_pool`](SqliteStore::from_pool).
    ///
    /// Creation is one transaction the application's code joins: `BEGIN`, the application's
    /// insert ([`AppUsers::create`] on this transaction's connection), the crate's row and
    /// the identity link, `COMMIT`; an error or a panic before the commit leaves neither.
    ///
    /// Linking (`find_by_username`, `find_by_email`) also finds the application's users that
    /// have no crate row yet ([`AppUsers::find_by_username`],
    /// [`AppUsers::find_by_verified_email`]) and gives them one (idempotent, keyed on
    /// `app_id`), so that they can be linked. [`delete`](UserStore::delete) removes the
    /// crate's row and its links, not the application's user.
    pub async fn with_app(pool: SqlitePool, app: A) -> Result<Self, StoreError> {
        Self::open(pool, Some(std::sync::Arc::new(app))).await
    }
}

impl<A> SqliteStore<A> {
    async fn open(pool: SqlitePool, app: Option<std::sync::Arc<A>>) -> Result<Self, StoreError> {
        let store = Self {
            pool,
            app,
            writer: Default::default(),
        };
        if let Err(err) = migrator().run(&store.pool).await {
            let detail = store
                .links_twice_at_one_provider()
                .await
                .unwrap_or_default();
            return Err(StoreError::backend(format!(
                "migrating the jit-provision schema: {err}{detail}"
            )));
        }
        store.backfill_canonical().await?;
        Ok(store)
    }

    /// A description of the users linked more than once at one provider (what keeps the
    /// one-link-per-provider index from being created), or an empty string.
    async fn links_twice_at_one_provider(&self) -> Result<String, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT user_id, provider, COUNT(*) FROM jit_identities \
             GROUP BY user_id, provider HAVING COUNT(*) > 1 ORDER BY user_id LIMIT 20",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(super::twice_linked(&rows))
    }

    /// Computes the canonical username and email of every row that lacks them, in one
    /// transaction: all rows or none.
    async fn backfill_canonical(&self) -> Result<(), StoreError> {
        let _one_writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, username, email FROM jit_users \
             WHERE username_key IS NULL OR (email IS NOT NULL AND email_key IS NULL) ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let names: Vec<(i64, String)> = rows.iter().map(|(id, u, _)| (*id, u.clone())).collect();
        super::same_name_twice(&names)?;
        for (id, username, email) in rows {
            let key = canonical(&username);
            let done =
                sqlx::query("UPDATE jit_users SET username_key = ?, email_key = ? WHERE id = ?")
                    .bind(&key)
                    .bind(email.as_deref().map(canonical))
                    .bind(id)
                    .execute(&mut *tx)
                    .await;
            match done {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    let holder: Option<(i64, String)> =
                        sqlx::query_as("SELECT id, username FROM jit_users WHERE username_key = ?")
                            .bind(&key)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(classify)?;
                    return Err(super::one_name_twice(id, &username, holder, &key));
                }
                Err(e) => return Err(classify(e)),
            }
        }
        tx.commit().await.map_err(classify)
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Number of users.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM jit_users")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }
}

fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "one time values".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_one_time.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "policy".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_policy.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "login order".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_login_order.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "one link per provider".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0005_one_link_per_provider.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "canonical names".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0006_canonical_names.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "roles".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0007_roles.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0008_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "session_ends".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0009_session_ends.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "sessions_subject".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0010_sessions_subject.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            "app users".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0011_app_users.sql").into_sql_str(),
            false,
        ),
    ]);
    migrator.dangerous_set_table_name("_jit_provision_migrations");
    migrator
}

/// Maps a sqlx error to the store's error kinds.
fn classify(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::unavailable(err),
        sqlx::Error::Database(db) if db.message().contains("database is locked") => {
            StoreError::unavailable(err)
        }
        _ => StoreError::backend(err),
    }
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<User, StoreError> {
    let json =
        |column: &str| -> Result<String, StoreError> { row.try_get(column).map_err(classify) };
    let groups = json("groups_json")?;
    let attrs = json("attrs_json")?;
    let idp_groups = json("idp_groups_json")?;
    let idp_attrs = json("idp_attrs_json")?;
    let roles = json("roles_json")?;
    let idp_roles = json("idp_roles_json")?;
    Ok(User {
        id: UserId(row.try_get("id").map_err(classify)?),
        username: row.try_get("username").map_err(classify)?,
        email: row.try_get("email").map_err(classify)?,
        display_name: row.try_get("display_name").map_err(classify)?,
        groups: serde_json::from_str(&groups).map_err(StoreError::backend)?,
        attributes: serde_json::from_str(&attrs).map_err(StoreError::backend)?,
        idp_groups: serde_json::from_str(&idp_groups).map_err(StoreError::backend)?,
        roles: serde_json::from_str(&roles).map_err(StoreError::backend)?,
        idp_roles: serde_json::from_str(&idp_roles).map_err(StoreError::backend)?,
        idp_attributes: serde_json::from_str(&idp_attrs).map_err(StoreError::backend)?,
        locked: row.try_get("locked").map_err(classify)?,
        created_at: row.try_get("created_at").map_err(classify)?,
        updated_at: row.try_get("updated_at").map_err(classify)?,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::backend)
}

impl<A> SqliteStore<A> {
    /// A write transaction. IMMEDIATE takes the write lock up front (waiting up to
    /// busy_timeout): a deferred transaction that reads and then writes fails at once with
    /// SQLITE_BUSY when another writer got in between.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }

    async fn fetch_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM jit_users u WHERE u.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Runs `change` (a statement on one user's row) as the one writer:
    /// [`StoreError::NotFound`] when no row changed.
    async fn change_user(
        &self,
        change: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<(), StoreError> {
        let _one_writer = self.writer.lock().await;
        let done = change.execute(&self.pool).await.map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl<A> SqliteStore<A> {
    /// Session writes queue behind the one writer, like the user writes.
    async fn session_write_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// `update_tokens`' transaction: `BEGIN IMMEDIATE`, SQLite's write lock, which another
    /// process on the same file waits for (busy_timeout) before it reads the record.
    async fn begin_token_update(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.begin_write().await
    }
}

super::sql_sessions::sql_session_store!(
    [A: Send + Sync + 'static] SqliteStore<A>,
    sqlx::Sqlite,
    |sql: &str| sql.replace('$', "?"),
    ""
);

/// One-time values in the database, so that several processes on one SQLite file share them.
impl<A: Send + Sync + 'static> super::replay::ReplayGuard for SqliteStore<A> {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let _one_writer = self.writer.lock().await;
        let now = now_unix();
        let expires = now + ttl.as_secs().max(1) as i64;
        // A new key inserts; an expired one is taken over; a live one is a replay.
        let fresh: Option<i32> = sqlx::query_scalar(
            "INSERT INTO jit_one_time (key, expires_at) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE jit_one_time.expires_at <= ? RETURNING 1",
        )
        .bind(key)
        .bind(expires)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        if fresh.is_some() && rand::random::<u8>() == 0 {
            let swept = sqlx::query("DELETE FROM jit_one_time WHERE expires_at <= ?")
                .bind(now)
                .execute(&self.pool)
                .await;
            if let Err(err) = swept {
                tracing::warn!(error = %err, "sweeping expired one-time values failed");
            }
        }
        Ok(fresh.is_some())
    }

    async fn was_used(&self, key: &str) -> Result<bool, StoreError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM jit_one_time WHERE key = ? AND expires_at > ?")
                .bind(key)
                .bind(now_unix())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        Ok(found.is_some())
    }
}

impl<A: AppUsers<sqlx::SqliteConnection>> UserStore for SqliteStore<A> {
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM jit_identities i JOIN jit_users u ON u.id = i.user_id \
             WHERE i.provider = ? AND i.subject = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&key.provider)
            .bind(&key.subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.fetch_user(id).await
    }

    async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
        let _one_writer = self.writer.lock().await;
        let now = now_unix();
        let groups = profile.groups.clone().unwrap_or_default();
        let idp_groups = profile.idp_groups(&identity.provider);
        let roles = profile.roles.clone().unwrap_or_default();
        let idp_roles = profile.idp_roles(&identity.provider);
        let mut tx = self.begin_write().await?;
        // The identity insert goes first: when a concurrent login already linked this
        // identity, we fail on it (IdentityExists) before touching jit_users.
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM jit_identities WHERE provider = ? AND subject = ?")
                .bind(&identity.provider)
                .bind(&identity.subject)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
        if exists.is_some() {
            return Err(StoreError::IdentityExists);
        }
        // The application's user first, on this transaction: it commits with the link.
        let (app_id, username) = self.create_app_user(&mut tx, profile).await?;
        let inserted = sqlx::query(
            "INSERT INTO jit_users (username, email, display_name, groups_json, attrs_json, \
             idp_groups_json, idp_attrs_json, roles_json, idp_roles_json, locked, created_at, \
             updated_at, username_key, email_key, app_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
        )
        .bind(&username)
        .bind(profile.email.clone().flatten())
        .bind(profile.display_name.clone().flatten())
        .bind(to_json(&groups)?)
        .bind(to_json(&profile.attributes)?)
        .bind(to_json(&idp_groups)?)
        .bind(to_json(&profile.idp_attributes)?)
        .bind(to_json(&roles)?)
        .bind(to_json(&idp_roles)?)
        .bind(now)
        .bind(now)
        .bind(canonical(&username))
        .bind(
            profile
                .email
                .as_ref()
                .and_then(|e| e.as_deref())
                .map(canonical),
        )
        .bind(&app_id)
        .execute(&mut *tx)
        .await;
        let id = match inserted {
            Ok(done) => done.last_insert_rowid(),
            Err(sqlx::Error::Database(db))
                if db.is_unique_violation() && db.message().contains("app_id") =>
            {
                return Err(StoreError::backend(
                    "the application's new user id is already linked to another jit_users row",
                ));
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::UsernameTaken(username));
            }
            Err(e) => return Err(classify(e)),
        };
        let linked = sqlx::query(
            "INSERT INTO jit_identities (provider, subject, issuer, user_id, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&identity.provider)
        .bind(&identity.subject)
        .bind(&identity.issuer)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match linked {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StoreError::IdentityExists);
            }
            Err(e) => return Err(classify(e)),
        }
        tx.commit().await.map_err(classify)?;
        Ok(User {
            id: UserId(id),
            username,
            email: profile.email.clone().flatten(),
            display_name: profile.display_name.clone().flatten(),
            groups,
            attributes: profile.attributes.clone(),
            idp_groups,
            roles,
            idp_roles,
            idp_attributes: profile.idp_attributes.clone(),
            locked: false,
            created_at: now,
            updated_at: now,
        })
    }

    async fn update(&self, id: UserId, changes: &ProfileChanges) -> Result<User, StoreError> {
        let _one_writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let user = write_changes(&mut tx, id, changes).await?;
        self.apply_app(&mut tx, id, changes).await?;
        tx.commit().await.map_err(classify)?;
        Ok(user)
    }

    async fn update_from_login(
        &self,
        key: &IdentityKey,
        at: LoginStamp,
        changes: &ProfileChanges,
    ) -> Result<Option<User>, StoreError> {
        let _one_writer = self.writer.lock().await;
        let mut tx = self.begin_write().await?;
        let (id, synced): (i64, Option<i64>) = sqlx::query_as(
            "SELECT user_id, synced_at FROM jit_identities WHERE provider = ? AND subject = ?",
        )
        .bind(&key.provider)
        .bind(&key.subject)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        .ok_or(StoreError::NotFound)?;
        if synced.is_some_and(|last| last > at.0) {
            // A later login's update is in already: this one is stale. Nothing written.
            return Ok(None);
        }
        let user = write_changes(&mut tx, UserId(id), changes).await?;
        self.apply_app(&mut tx, UserId(id), changes).await?;
        sqlx::query("UPDATE jit_identities SET synced_at = ? WHERE provider = ? AND subject = ?")
            .bind(at.0)
            .bind(&key.provider)
            .bind(&key.subject)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(user))
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM jit_users u WHERE u.username_key = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(canonical(username))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        if let Some(row) = row {
            return user_from_row(&row).map(Some);
        }
        self.app_by_username(username).await
    }

    async fn find_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
        // An application user's email is the application's: its crate row's copy (the
        // email of its last login) is not asked, only `AppUsers::find_by_verified_email`
        // (below), so an address the application's user gave up links nobody.
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM jit_users u \
             WHERE u.email_key = ? AND u.app_id IS NULL ORDER BY u.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(canonical(email))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut users: Vec<User> = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
        self.app_by_email(&mut users, email).await?;
        Ok(users)
    }

    async fn link(&self, identity: &Identity, user: UserId) -> Result<(), StoreError> {
        let _one_writer = self.writer.lock().await;
        let linked = sqlx::query(
            "INSERT INTO jit_identities (provider, subject, issuer, user_id, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&identity.provider)
        .bind(&identity.subject)
        .bind(&identity.issuer)
        .bind(user.0)
        .bind(now_unix())
        .execute(&self.pool)
        .await;
        match linked {
            Ok(_) => Ok(()),
            // Two unique keys: the identity's `(provider, subject)`, and one identity per
            // `(user_id, provider)`; SQLite names the columns of the one that failed.
            Err(sqlx::Error::Database(db))
                if db.is_unique_violation() && db.message().contains("user_id") =>
            {
                Err(StoreError::LinkConflict)
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::IdentityExists)
            }
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn record_login(&self, key: &IdentityKey, at: i64) -> Result<(), StoreError> {
        let _one_writer = self.writer.lock().await;
        sqlx::query(
            "UPDATE jit_identities SET last_login_at = ? WHERE provider = ? AND subject = ?",
        )
        .bind(at)
        .bind(&key.provider)
        .bind(&key.subject)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn identities_of(&self, user: UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, issuer, subject, user_id, created_at, last_login_at \
             FROM jit_identities WHERE user_id = ? ORDER BY created_at, subject",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn identities_by_provider(
        &self,
        provider: &str,
    ) -> Result<Vec<LinkedIdentity>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, issuer, subject, user_id, created_at, last_login_at \
             FROM jit_identities WHERE provider = ? ORDER BY created_at, user_id",
        )
        .bind(provider)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(identity_from_row).collect()
    }

    async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
        let change = sqlx::query("UPDATE jit_users SET locked = ?, updated_at = ? WHERE id = ?")
            .bind(locked)
            .bind(now_unix())
            .bind(id.0);
        self.change_user(change).await
    }

    async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        // Identity links go with the user (ON DELETE CASCADE, foreign keys are on).
        let change = sqlx::query("DELETE FROM jit_users WHERE id = ?").bind(id.0);
        self.change_user(change).await
    }

    /// Sessions live in this database too (table `jit_sessions`).
    fn session_store(&self) -> Option<super::session_store::SessionStoreHandle> {
        Some(super::session_store::SessionStoreHandle::new(self.clone()))
    }

    /// The application's users, for `CurrentUser<A::User>`, when there is an application
    /// part.
    fn app_users(&self) -> Option<AppUserLoader> {
        self.app.as_ref().map(|_| AppUserLoader::new(self.clone()))
    }
}

super::app::sql_app_part!(
    SqliteStore,
    sqlx::SqliteConnection,
    sqlx::Sqlite,
    |sql: &str| sql.replace('$', "?"),
    "groups_json, attrs_json, idp_groups_json, idp_attrs_json, roles_json, idp_roles_json"
);

/// Reads user `id` inside `tx`, applies `changes` to it as stored and writes it back.
async fn write_changes(
    tx: &mut sqlx::SqliteConnection,
    id: UserId,
    changes: &ProfileChanges,
) -> Result<User, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM jit_users u WHERE u.id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        .ok_or(StoreError::NotFound)?;
    let mut user = user_from_row(&row)?;
    changes.apply_to(&mut user);
    user.updated_at = now_unix();
    sqlx::query(
        "UPDATE jit_users SET email = ?, display_name = ?, groups_json = ?, attrs_json = ?, \
         idp_groups_json = ?, idp_attrs_json = ?, roles_json = ?, idp_roles_json = ?, \
         updated_at = ?, email_key = ? WHERE id = ?",
    )
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(to_json(&user.groups)?)
    .bind(to_json(&user.attributes)?)
    .bind(to_json(&user.idp_groups)?)
    .bind(to_json(&user.idp_attributes)?)
    .bind(to_json(&user.roles)?)
    .bind(to_json(&user.idp_roles)?)
    .bind(user.updated_at)
    .bind(user.email.as_deref().map(canonical))
    .bind(id.0)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(user)
}

fn identity_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<LinkedIdentity, StoreError> {
    Ok(LinkedIdentity {
        provider: row.try_get("provider").map_err(classify)?,
        issuer: row.try_get("issuer").map_err(classify)?,
        subject: row.try_get("subject").map_err(classify)?,
        user_id: UserId(row.try_get("user_id").map_err(classify)?),
        first_login_at: row.try_get("created_at").map_err(classify)?,
        last_login_at: row.try_get("last_login_at").map_err(classify)?,
    })
}
