//! [`SessionStore`](crate::session::SessionStore) on the SQL stores' pools: table
//! `jit_sessions` (migrations `sqlite/0008_sessions.sql`, `postgres/0007_sessions.sql`) and
//! `jit_session_ends` (`sqlite/0009_session_ends.sql`, `postgres/0008_session_ends.sql`); the index
//! on `(provider, subject)` for logouts by subject (`sqlite/0010_sessions_subject.sql`,
//! `postgres/0009_sessions_subject.sql`).
//! One implementation for both, written once as a macro: the statements are the same but for
//! the placeholders (`$1` for PostgreSQL, `?1` for SQLite).

use super::session_store::{EndReason, SealedTokens, SessionRecord};

/// The columns of `jit_sessions`, in [`SessionRow`] order.
pub(super) const COLUMNS: &str = "id_hash, domain, user_id, provider, subject, idp_session, \
     created_at, last_seen, expires_at, idle_timeout_secs, ended_at, end_reason, tokens";

/// A `jit_sessions` row.
pub(super) type SessionRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

pub(super) fn record(row: SessionRow) -> SessionRecord {
    let (
        id,
        domain,
        user_id,
        provider,
        subject,
        idp_session,
        created,
        seen,
        expires,
        idle,
        ended,
        reason,
        tokens,
    ) = row;
    let mut record = SessionRecord::new(id, domain, user_id, provider, subject, created, expires)
        .with_idp_session(idp_session)
        .with_idle_timeout(idle.and_then(|s| u64::try_from(s).ok()))
        .with_tokens(tokens.map(SealedTokens::from_stored));
    record.last_seen = seen;
    record.ended_at = ended;
    record.end_reason = reason.as_deref().map(EndReason::parse);
    record
}

/// Implements `SessionStore` for `$store`, whose `pool` is a pool of `$db`, with `$sql`
/// turning a statement written with `$N` placeholders into the database's,
/// `session_write_lock` (an async method of the store) held around every write, and
/// `begin_token_update` (another) starting the transaction of `update_tokens`, whose `SELECT`
/// ends with `$lock` (PostgreSQL's row lock; SQLite's `BEGIN IMMEDIATE` locks the database).
macro_rules! sql_session_store {
    ([$($generics:tt)*] $store:ty, $db:ty, $sql:expr, $lock:literal) => {
        impl<$($generics)*> $crate::session::SessionStore for $store {
            async fn create_session(
                &self,
                record: &$crate::session::SessionRecord,
            ) -> Result<bool, StoreError> {
                let sql = $sql(&format!(
                    "INSERT INTO jit_sessions ({}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (id_hash) DO NOTHING",
                    super::sql_sessions::COLUMNS
                ));
                let _write = self.session_write_lock().await;
                let done = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                    .bind(&record.id)
                    .bind(&record.domain)
                    .bind(&record.user_id)
                    .bind(&record.provider)
                    .bind(&record.subject)
                    .bind(&record.idp_session)
                    .bind(record.created_at)
                    .bind(record.last_seen)
                    .bind(record.expires_at)
                    .bind(
                        record
                            .idle_timeout_secs
                            .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
                    )
                    .bind(record.ended_at)
                    .bind(record.end_reason.map(|r| r.as_str()))
                    .bind(record.tokens.as_ref().map(|t| t.as_str()))
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_session(
                &self,
                id: &str,
            ) -> Result<Option<$crate::session::SessionRecord>, StoreError> {
                let sql = $sql(&format!(
                    "SELECT {} FROM jit_sessions WHERE id_hash = $1",
                    super::sql_sessions::COLUMNS
                ));
                let row: Option<super::sql_sessions::SessionRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(classify)?;
                Ok(row.map(super::sql_sessions::record))
            }

            async fn touch_session(&self, id: &str, at: i64) -> Result<(), StoreError> {
                let sql = $sql(
                    "UPDATE jit_sessions SET last_seen = $1 WHERE id_hash = $2 AND last_seen < $1",
                );
                let _write = self.session_write_lock().await;
                sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(())
            }

            async fn end_session(
                &self,
                id: &str,
                at: i64,
                reason: $crate::session::EndReason,
            ) -> Result<bool, StoreError> {
                let sql = $sql(
                    "UPDATE jit_sessions SET ended_at = $1, end_reason = $2 \
                     WHERE id_hash = $3 AND ended_at IS NULL",
                );
                let _write = self.session_write_lock().await;
                let done = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(reason.as_str())
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected() > 0)
            }

            async fn end_sessions_for_user(
                &self,
                domain: &str,
                user_id: &str,
                at: i64,
                reason: $crate::session::EndReason,
            ) -> Result<Vec<String>, StoreError> {
                // The mark first: should the end fail, the mark still keeps earlier
                // releases' cookies out (fail closed).
                let mark = $sql(
                    "INSERT INTO jit_session_ends (domain, user_id, ended_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (domain, user_id) DO UPDATE SET ended_at = excluded.ended_at \
                     WHERE jit_session_ends.ended_at < excluded.ended_at",
                );
                let sql = $sql(
                    "UPDATE jit_sessions SET ended_at = $1, end_reason = $2 \
                     WHERE domain = $3 AND user_id = $4 AND ended_at IS NULL RETURNING id_hash",
                );
                let _write = self.session_write_lock().await;
                sqlx::query::<$db>(sqlx::AssertSqlSafe(mark))
                    .bind(domain)
                    .bind(user_id)
                    .bind(at)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                let mut ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(reason.as_str())
                    .bind(domain)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                ids.sort();
                Ok(ids)
            }

            async fn sessions_ended_for_user_at(
                &self,
                domain: &str,
                user_id: &str,
            ) -> Result<Option<i64>, StoreError> {
                let sql = $sql(
                    "SELECT ended_at FROM jit_session_ends WHERE domain = $1 AND user_id = $2",
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(domain)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)
            }

            async fn end_sessions_by_idp_session(
                &self,
                selection: $crate::session::IdpSession<'_>,
                at: i64,
                reason: $crate::session::EndReason,
            ) -> Result<Vec<String>, StoreError> {
                if selection.sid.is_none() && selection.subject.is_none() {
                    return Ok(Vec::new());
                }
                // A plain equality on the column that selects, so that its index serves:
                // `jit_sessions_idp` for a session, `jit_sessions_subject` for a subject.
                let selector = if selection.sid.is_some() {
                    "idp_session = $4 AND ($5 IS NULL OR subject = $5)"
                } else {
                    "$4 IS NULL AND subject = $5"
                };
                let sql = $sql(&format!(
                    "UPDATE jit_sessions SET ended_at = $1, end_reason = $2 \
                     WHERE provider = $3 AND ended_at IS NULL AND {selector} \
                     AND ($6 IS NULL OR created_at <= $6) RETURNING id_hash",
                ));
                let _write = self.session_write_lock().await;
                let mut ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(at)
                    .bind(reason.as_str())
                    .bind(selection.provider)
                    .bind(selection.sid)
                    .bind(selection.subject)
                    .bind(selection.created_at_most)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                ids.sort();
                Ok(ids)
            }

            async fn list_sessions_for_user(
                &self,
                domain: &str,
                user_id: &str,
                now: i64,
            ) -> Result<Vec<$crate::session::SessionRecord>, StoreError> {
                let sql = $sql(&format!(
                    "SELECT {} FROM jit_sessions WHERE domain = $1 AND user_id = $2 \
                     AND ended_at IS NULL AND expires_at > $3 ORDER BY created_at, id_hash",
                    super::sql_sessions::COLUMNS
                ));
                let rows: Vec<super::sql_sessions::SessionRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(domain)
                        .bind(user_id)
                        .bind(now)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(classify)?;
                Ok(rows.into_iter().map(super::sql_sessions::record).collect())
            }

            async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
                let sql = $sql("DELETE FROM jit_sessions WHERE expires_at < $1");
                let _write = self.session_write_lock().await;
                let done = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                    .bind(before)
                    .execute(&self.pool)
                    .await
                    .map_err(classify)?;
                Ok(done.rows_affected())
            }

            async fn update_tokens<'a>(
                &'a self,
                id: &'a str,
                update: $crate::session::TokensUpdate<'a>,
            ) -> Result<Option<$crate::session::SessionRecord>, StoreError> {
                let select = $sql(&format!(
                    "SELECT {} FROM jit_sessions WHERE id_hash = $1{}",
                    super::sql_sessions::COLUMNS,
                    $lock
                ));
                let _write = self.session_write_lock().await;
                let mut tx = self.begin_token_update().await?;
                let row: Option<super::sql_sessions::SessionRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(select))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(classify)?;
                let Some(mut record) = row.map(super::sql_sessions::record) else {
                    return Ok(None);
                };
                if let Some(tokens) = update(record.clone()).await {
                    let sql = $sql("UPDATE jit_sessions SET tokens = $1 WHERE id_hash = $2");
                    sqlx::query::<$db>(sqlx::AssertSqlSafe(sql))
                        .bind(tokens.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    record.tokens = Some(tokens);
                }
                tx.commit().await.map_err(classify)?;
                Ok(Some(record))
            }
        }
    };
}

pub(super) use sql_session_store;
