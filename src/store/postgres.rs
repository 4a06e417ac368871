use std::str::FromStr;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Row, SqlSafeStr};

use super::app::{AppUserLoader, AppUsers, NoApp};
use super::invalidation::{
    BusEvent, Invalidation, InvalidationBus, InvalidationSigner, SignedInvalidation,
};
use super::replay::ReplayGuard;
use super::types::now_unix;
use super::{
    Identity, IdentityKey, LinkedIdentity, LoginStamp, Profile, ProfileChanges, StoreError, User,
    UserId, UserStore, canonical,
};

/// The `NOTIFY` channel invalidations travel on.
const CHANNEL: &str = "jit_provision_invalidate";

const USER_COLUMNS: &str = "u.id, u.username, u.email, u.display_name, u.groups, u.attributes, \
     u.idp_groups, u.idp_attributes, u.roles, u.idp_roles, u.locked, u.created_at, u.updated_at";

/// A [`UserStore`] on PostgreSQL through sqlx, for several app instances on one database.
///
/// It is also a [`ReplayGuard`] (one-time values in a table, so a `state` used at one
/// instance is refused at every other) and an [`InvalidationBus`] (`LISTEN`/`NOTIFY`, so a
/// user locked or logged out at one instance is dropped from every instance's cache,
/// typically within milliseconds). Wire all three:
///
/// ```no_run
/// use jit_provision::{JitLayer, store::PostgresStore};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pg = PostgresStore::connect("postgres://app@db/app").await?;
/// let layer = JitLayer::builder()
///     .public_url("https://app.example.com")
///     .store(pg.clone())
///     .replay_guard(pg.clone())
///     .invalidation_bus(pg)
///     .build()?;
/// # let _ = layer; Ok(()) }
/// ```
///
/// Concurrent first logins of one identity at several instances are serialized by a
/// transaction-level advisory lock on the identity key; the loser sees `IdentityExists` and
/// reads the winner's user.
///
/// With an application's own users table, [`PostgresStore::with_app`] adds the application's
/// part ([`AppUsers`]), created and updated inside this store's transactions.
pub struct PostgresStore<A = NoApp> {
    pool: PgPool,
    /// The application's own users, if any (`jit_users.app_id` names them).
    app: Option<std::sync::Arc<A>>,
    /// The user-store domain this store serves, named in its invalidations.
    domain: std::sync::Arc<str>,
    /// Signs the invalidations the store sends itself (`set_locked`, `delete`); shared by
    /// the clones, set by the layer ([`InvalidationBus::use_signer`]).
    signer: std::sync::Arc<std::sync::RwLock<Option<InvalidationSigner>>>,
}

impl<A> Clone for PostgresStore<A> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            app: self.app.clone(),
            domain: self.domain.clone(),
            signer: self.signer.clone(),
        }
    }
}

impl<A> std::fmt::Debug for PostgresStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool)
            .field("domain", &self.domain)
            .field(
                "app",
                &self.app.as_ref().map(|_| std::any::type_name::<A>()),
            )
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::backend)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(classify)?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and migrates (under PostgreSQL's advisory migration lock, so
    /// instances starting together migrate once), then fills in the [`canonical`] forms of
    /// rows written before (or outside) this version.
    ///
    /// Fails, writing nothing, when existing data breaks a rule the migrations add: a user
    /// linked twice at one provider, or two usernames with one canonical form. The error names
    /// the rows; an administrator decides which to keep, since either may be the legitimate
    /// one.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::open(pool, None).await
    }
}

impl<A: AppUsers<sqlx::PgConnection>> PostgresStore<A> {
    /// The store on the application's `pool` with the application's own users (`app`): see
    /// [`AppUsers`]. Migrates the crate's tables (`jit_*`, never the application's) like
    /// [`from_pool`](PostgresStore::from_pool).
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
    pub async fn with_app(pool: PgPool, app: A) -> Result<Self, StoreError> {
        Self::open(pool, Some(std::sync::Arc::new(app))).await
    }
}

impl<A> PostgresStore<A> {
    async fn open(pool: PgPool, app: Option<std::sync::Arc<A>>) -> Result<Self, StoreError> {
        let store = Self {
            pool,
            app,
            domain: std::sync::Arc::from(super::domain::PRIMARY_DOMAIN),
            signer: std::sync::Arc::default(),
        };
        if let Err(err) = migrator().run(&store.pool).await {
            let detail = store
                .links_twice_at_one_provider()
                .await
                .unwrap_or_default();
            return Err(StoreError::unavailable(format!(
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
    /// transaction (all rows or none), one instance at a time.
    async fn backfill_canonical(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('jit_provision_backfill', 7))")
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
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
                sqlx::query("UPDATE jit_users SET username_key = $1, email_key = $2 WHERE id = $3")
                    .bind(&key)
                    .bind(email.as_deref().map(canonical))
                    .bind(id)
                    .execute(&mut *tx)
                    .await;
            match done {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    // The transaction is aborted: ask outside it.
                    drop(tx);
                    let holder: Option<(i64, String)> = sqlx::query_as(
                        "SELECT id, username FROM jit_users WHERE username_key = $1",
                    )
                    .bind(&key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                    return Err(super::one_name_twice(id, &username, holder, &key));
                }
                Err(e) => return Err(classify(e)),
            }
        }
        tx.commit().await.map_err(classify)
    }

    /// Names the user-store domain this store serves (default `PRIMARY`), so that its
    /// invalidations reach the right cache entries; use with
    /// [`JitLayerBuilder::domain_store`](crate::JitLayerBuilder::domain_store).
    pub fn for_domain(mut self, domain: &str) -> Self {
        self.domain = std::sync::Arc::from(domain);
        self
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Number of users.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM jit_users")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    /// Runs `change` (a statement on user `id`'s row) and tells every instance to drop that
    /// user from its cache, in one transaction: [`StoreError::NotFound`] when no row changed.
    async fn change_user(
        &self,
        id: UserId,
        change: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let done = change.execute(&mut *tx).await.map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let event = Invalidation::User {
            domain: self.domain.to_string(),
            id,
        };
        match self.signed(&event) {
            Some(message) => notify(&mut *tx, &message).await?,
            None => tracing::warn!(
                "PostgresStore without an invalidation signer (no layer was built with it as its bus): other instances see this change after their cache TTL"
            ),
        }
        tx.commit().await.map_err(classify)
    }
}

fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "policy".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0002_policy.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "login order".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_login_order.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "one link per provider".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0004_one_link_per_provider.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "canonical names".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0005_canonical_names.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "roles".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0006_roles.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0007_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "session_ends".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0008_session_ends.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "sessions_subject".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0009_sessions_subject.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "app users".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0010_app_users.sql").into_sql_str(),
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
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::unavailable(err),
        // 08: connection exceptions, 53: insufficient resources, 57P: operator intervention.
        sqlx::Error::Database(db)
            if db.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("53") || c.starts_with("57P")
            }) =>
        {
            StoreError::unavailable(err)
        }
        _ => StoreError::backend(err),
    }
}

fn user_from_row(row: &PgRow) -> Result<User, StoreError> {
    let groups: Json<std::collections::BTreeSet<String>> =
        row.try_get("groups").map_err(classify)?;
    let attributes: Json<std::collections::BTreeMap<String, String>> =
        row.try_get("attributes").map_err(classify)?;
    let idp_groups: Json<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> =
        row.try_get("idp_groups").map_err(classify)?;
    let idp_attributes: Json<std::collections::BTreeSet<String>> =
        row.try_get("idp_attributes").map_err(classify)?;
    let roles: Json<std::collections::BTreeSet<String>> = row.try_get("roles").map_err(classify)?;
    let idp_roles: Json<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> =
        row.try_get("idp_roles").map_err(classify)?;
    Ok(User {
        id: UserId(row.try_get("id").map_err(classify)?),
        username: row.try_get("username").map_err(classify)?,
        email: row.try_get("email").map_err(classify)?,
        display_name: row.try_get("display_name").map_err(classify)?,
        groups: groups.0,
        attributes: attributes.0,
        idp_groups: idp_groups.0,
        roles: roles.0,
        idp_roles: idp_roles.0,
        idp_attributes: idp_attributes.0,
        locked: row.try_get("locked").map_err(classify)?,
        created_at: row.try_get("created_at").map_err(classify)?,
        updated_at: row.try_get("updated_at").map_err(classify)?,
    })
}

async fn notify<'c, E>(executor: E, message: &SignedInvalidation) -> Result<(), StoreError>
where
    E: sqlx::PgExecutor<'c>,
{
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(message.as_str())
        .execute(executor)
        .await
        .map_err(classify)?;
    Ok(())
}

impl<A: AppUsers<sqlx::PgConnection>> UserStore for PostgresStore<A> {
    async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM jit_identities i JOIN jit_users u ON u.id = i.user_id \
             WHERE i.provider = $1 AND i.subject = $2"
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
        let sql = format!("SELECT {USER_COLUMNS} FROM jit_users u WHERE u.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
        let now = now_unix();
        let groups = profile.groups.clone().unwrap_or_default();
        let idp_groups = profile.idp_groups(&identity.provider);
        let roles = profile.roles.clone().unwrap_or_default();
        let idp_roles = profile.idp_roles(&identity.provider);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // Serialize creates of this identity across every instance until commit: without it,
        // a second transaction would block on the username index and then report the username
        // taken instead of the identity linked.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 7))")
            .bind(&identity.provider)
            .bind(&identity.subject)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM jit_identities WHERE provider = $1 AND subject = $2")
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
        let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO jit_users (username, email, display_name, groups, attributes, idp_groups, \
             idp_attributes, locked, created_at, updated_at, username_key, email_key, roles, \
             idp_roles, app_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8, $9, $10, $11, $12, $13) \
             RETURNING id",
        )
        .bind(&username)
        .bind(profile.email.clone().flatten())
        .bind(profile.display_name.clone().flatten())
        .bind(Json(&groups))
        .bind(Json(&profile.attributes))
        .bind(Json(&idp_groups))
        .bind(Json(&profile.idp_attributes))
        .bind(now)
        .bind(canonical(&username))
        .bind(
            profile
                .email
                .as_ref()
                .and_then(|e| e.as_deref())
                .map(canonical),
        )
        .bind(Json(&roles))
        .bind(Json(&idp_roles))
        .bind(&app_id)
        .fetch_one(&mut *tx)
        .await;
        let id = match inserted {
            Ok(id) => id,
            Err(sqlx::Error::Database(db))
                if db.is_unique_violation() && db.constraint() == Some("jit_users_app_id") =>
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
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&identity.provider)
        .bind(&identity.subject)
        .bind(&identity.issuer)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if linked.rows_affected() == 0 {
            // Dropping the transaction rolls the user row back.
            return Err(StoreError::IdentityExists);
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
        let mut tx = self.pool.begin().await.map_err(classify)?;
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
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // The identity row's lock orders concurrent updates of this identity.
        let (id, synced): (i64, Option<i64>) = sqlx::query_as(
            "SELECT user_id, synced_at FROM jit_identities \
             WHERE provider = $1 AND subject = $2 FOR UPDATE",
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
        sqlx::query(
            "UPDATE jit_identities SET synced_at = $1 WHERE provider = $2 AND subject = $3",
        )
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
        let sql = format!("SELECT {USER_COLUMNS} FROM jit_users u WHERE u.username_key = $1");
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
             WHERE u.email_key = $1 AND u.app_id IS NULL ORDER BY u.id"
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
        let linked = sqlx::query(
            "INSERT INTO jit_identities (provider, subject, issuer, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
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
            Err(sqlx::Error::Database(db))
                if db.is_unique_violation()
                    && db.constraint() == Some("jit_identities_user_provider") =>
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
        sqlx::query(
            "UPDATE jit_identities SET last_login_at = $1 WHERE provider = $2 AND subject = $3",
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
             FROM jit_identities WHERE user_id = $1 ORDER BY created_at, subject",
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
             FROM jit_identities WHERE provider = $1 ORDER BY created_at, user_id",
        )
        .bind(provider)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter().map(identity_from_row).collect()
    }

    /// Also tells every instance, in the same transaction, so a lock made by an
    /// administrator's tool reaches every cache.
    async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
        let change = sqlx::query("UPDATE jit_users SET locked = $1, updated_at = $2 WHERE id = $3")
            .bind(locked)
            .bind(now_unix())
            .bind(id.0);
        self.change_user(id, change).await
    }

    /// Also tells every instance, in the same transaction.
    async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        let change = sqlx::query("DELETE FROM jit_users WHERE id = $1").bind(id.0);
        self.change_user(id, change).await
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
    PostgresStore,
    sqlx::PgConnection,
    sqlx::Postgres,
    |sql: &str| sql.to_owned(),
    "groups, attributes, idp_groups, idp_attributes, roles, idp_roles"
);

/// Reads user `id` inside `tx` (locking the row), applies `changes` to it as stored and
/// writes it back.
async fn write_changes(
    tx: &mut sqlx::PgConnection,
    id: UserId,
    changes: &ProfileChanges,
) -> Result<User, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM jit_users u WHERE u.id = $1 FOR UPDATE");
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
        "UPDATE jit_users SET email = $1, display_name = $2, groups = $3, attributes = $4, \
         idp_groups = $5, idp_attributes = $6, updated_at = $7, email_key = $8, roles = $10, \
         idp_roles = $11 WHERE id = $9",
    )
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(Json(&user.groups))
    .bind(Json(&user.attributes))
    .bind(Json(&user.idp_groups))
    .bind(Json(&user.idp_attributes))
    .bind(user.updated_at)
    .bind(user.email.as_deref().map(canonical))
    .bind(id.0)
    .bind(Json(&user.roles))
    .bind(Json(&user.idp_roles))
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(user)
}

fn identity_from_row(row: &PgRow) -> Result<LinkedIdentity, StoreError> {
    Ok(LinkedIdentity {
        provider: row.try_get("provider").map_err(classify)?,
        issuer: row.try_get("issuer").map_err(classify)?,
        subject: row.try_get("subject").map_err(classify)?,
        user_id: UserId(row.try_get("user_id").map_err(classify)?),
        first_login_at: row.try_get("created_at").map_err(classify)?,
        last_login_at: row.try_get("last_login_at").map_err(classify)?,
    })
}

impl<A> PostgresStore<A> {
    /// PostgreSQL takes concurrent writers: nothing to hold.
    async fn session_write_lock(&self) {}

    /// `update_tokens`' transaction; its `SELECT ... FOR UPDATE` locks the session's row.
    async fn begin_token_update(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(classify)
    }
}

super::sql_sessions::sql_session_store!(
    [A: Send + Sync + 'static] PostgresStore<A>,
    sqlx::Postgres,
    |sql: &str| sql.to_owned(),
    " FOR UPDATE"
);

impl<A: Send + Sync + 'static> ReplayGuard for PostgresStore<A> {
    async fn first_use(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = now_unix();
        let expires = now + ttl.as_secs().max(1) as i64;
        // A new key inserts; an expired one is taken over; a live one is a replay.
        let fresh: Option<i32> = sqlx::query_scalar(
            "INSERT INTO jit_one_time (key, expires_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE jit_one_time.expires_at <= $3 RETURNING 1",
        )
        .bind(key)
        .bind(expires)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        // Sweep expired rows now and then (one call in 256, on average).
        if fresh.is_some() && rand::random::<u8>() == 0 {
            let swept = sqlx::query("DELETE FROM jit_one_time WHERE expires_at <= $1")
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
            sqlx::query_scalar("SELECT 1 FROM jit_one_time WHERE key = $1 AND expires_at > $2")
                .bind(key)
                .bind(now_unix())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        Ok(found.is_some())
    }
}

impl<A> PostgresStore<A> {
    /// `event` signed, when a signer was handed over.
    fn signed(&self, event: &Invalidation) -> Option<SignedInvalidation> {
        let signer = self.signer.read().unwrap_or_else(|e| e.into_inner());
        signer.as_ref().map(|signer| signer.sign(event))
    }
}

/// Messages travel as the `NOTIFY` payload, as signed; anyone who can `NOTIFY` on the
/// database can send one, and the layer drops those that do not verify.
impl<A: Send + Sync + 'static> InvalidationBus for PostgresStore<A> {
    fn publish(&self, message: SignedInvalidation) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { notify(&self.pool, &message).await })
    }

    /// A program that changes users without a layer (an administration tool) calls this
    /// itself, with a signer of the application's session keys, so that its `set_locked` and
    /// `delete` reach every instance at once.
    fn use_signer(&self, signer: &InvalidationSigner) {
        *self.signer.write().unwrap_or_else(|e| e.into_inner()) = Some(signer.clone());
    }

    fn subscribe(&self) -> BoxStream<'static, BusEvent> {
        let pool = self.pool.clone();
        // State: the listener, or None when it must be (re)connected.
        futures_util::stream::unfold(None::<PgListener>, move |listener| {
            let pool = pool.clone();
            async move {
                let mut listener = match listener {
                    Some(listener) => listener,
                    None => loop {
                        match PgListener::connect_with(&pool).await {
                            Ok(mut l) => match l.listen(CHANNEL).await {
                                // Events may have been missed while we were not listening.
                                Ok(()) => return Some((BusEvent::Gap, Some(l))),
                                Err(err) => {
                                    tracing::warn!(error = %err, "LISTEN failed; retrying")
                                }
                            },
                            Err(sqlx::Error::PoolClosed) => return None,
                            Err(err) => {
                                tracing::warn!(error = %err, "invalidation listener cannot connect; retrying")
                            }
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    },
                };
                match listener.try_recv().await {
                    Ok(Some(note)) => {
                        let message = SignedInvalidation::from_wire(note.payload());
                        Some((BusEvent::Message(message), Some(listener)))
                    }
                    // The connection dropped; it reconnects on the next call. Events may
                    // have been lost meanwhile.
                    Ok(None) => Some((BusEvent::Gap, Some(listener))),
                    Err(sqlx::Error::PoolClosed) => None,
                    Err(err) => {
                        tracing::warn!(error = %err, "invalidation listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Some((BusEvent::Gap, None))
                    }
                }
            }
        })
        .boxed()
    }
}
