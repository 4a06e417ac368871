//! Keeping the caches of several app instances consistent: an [`InvalidationBus`] carries
//! "this user changed" and "this session ended" to every instance, which drops its copies.
//! The PostgreSQL store provides one over `LISTEN`/`NOTIFY`.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, UserId};

/// Something every instance must forget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Invalidation {
    /// The user changed (updated, locked, deleted, logged out): drop its cached copies.
    User {
        /// Its user-store domain.
        #[serde(default = "primary")]
        domain: String,
        /// The user.
        id: UserId,
    },
    /// A session ended at logout: refuse its cookie from now on.
    Session {
        /// The session id.
        id: String,
    },
    /// Events may have been lost (the bus reconnected): drop every cached user.
    All,
}

fn primary() -> String {
    crate::config::PRIMARY_DOMAIN.to_owned()
}

/// Carries [`Invalidation`]s between instances. Dyn-compatible: the layer holds an
/// `Arc<dyn InvalidationBus>`.
///
/// An instance receives its own events too; applying one is idempotent.
pub trait InvalidationBus: Send + Sync + 'static {
    /// Sends an event to every subscribed instance.
    fn publish(&self, event: Invalidation) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The events from now on. The stream should yield [`Invalidation::All`] after any gap
    /// in which events may have been lost, and end only when the bus shuts down.
    fn subscribe(&self) -> BoxStream<'static, Invalidation>;
}
