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

    use jit_provision::session::{EndReason, IdpSession, MemorySessionStore, SessionStore};
    use jit_provision::store::StoreError;
    use jit_provision::testing::SessionStoreWrapper;

    use super::FlakySessions;

    impl SessionStoreWrapper for FlakySessions {
        type Inner = MemorySessionStore;

        fn inner(&self) -> &MemorySessionStore {
            &self.inner
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
    }
}
