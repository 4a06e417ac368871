//! A memory session store whose IdP-initiated ends fail while `down` is set (shared by the
//! logout tests: `#[path = "support/flaky_sessions.rs"] mod flaky_sessions;`).

/// A memory session store whose IdP-initiated ends fail while `down` is set.
#[derive(Clone, Default)]
pub struct FlakySessions {
    inner: jit_provision::session::MemorySessionStore,
    pub down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

mod flaky {
    use std::sync::atomic::Ordering;

    use jit_provision::session::{
        EndReason, IdpSession, SessionRecord, SessionStore, TokensUpdate,
    };
    use jit_provision::store::StoreError;

    use super::FlakySessions;

    impl SessionStore for FlakySessions {
        async fn create_session(&self, record: &SessionRecord) -> Result<bool, StoreError> {
            self.inner.create_session(record).await
        }
        async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
            self.inner.get_session(id).await
        }
        async fn touch_session(&self, id: &str, at: i64) -> Result<(), StoreError> {
            self.inner.touch_session(id, at).await
        }
        async fn end_session(
            &self,
            id: &str,
            at: i64,
            reason: EndReason,
        ) -> Result<bool, StoreError> {
            self.inner.end_session(id, at, reason).await
        }
        async fn end_sessions_for_user(
            &self,
            domain: &str,
            user_id: &str,
            at: i64,
            reason: EndReason,
        ) -> Result<Vec<String>, StoreError> {
            self.inner
                .end_sessions_for_user(domain, user_id, at, reason)
                .await
        }
        async fn sessions_ended_for_user_at(
            &self,
            domain: &str,
            user_id: &str,
        ) -> Result<Option<i64>, StoreError> {
            self.inner.sessions_ended_for_user_at(domain, user_id).await
        }
        async fn end_sessions_by_idp_session(
            &self,
            selection: IdpSession<'_>,
            at: i64,
            reason: EndReason,
        ) -> Result<Vec<String>, StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::unavailable("simulated session store outage"));
            }
            self.inner
                .end_sessions_by_idp_session(selection, at, reason)
                .await
        }
        async fn list_sessions_for_user(
            &self,
            domain: &str,
            user_id: &str,
            now: i64,
        ) -> Result<Vec<SessionRecord>, StoreError> {
            self.inner
                .list_sessions_for_user(domain, user_id, now)
                .await
        }
        async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
            self.inner.purge_sessions(before).await
        }
        async fn update_tokens<'a>(
            &'a self,
            id: &'a str,
            update: TokensUpdate<'a>,
        ) -> Result<Option<SessionRecord>, StoreError> {
            self.inner.update_tokens(id, update).await
        }
    }
}
