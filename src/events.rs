//! Provisioning events for audit and outbound provisioning: every creation, update (with
//! the diff), link and refusal is delivered to the subscribers given to
//! [`JitLayerBuilder::on_event`](crate::JitLayerBuilder::on_event).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::config::LinkBy;
use crate::mapping::Trace;
use crate::store::{ProfileChanges, User, UserId};

/// Something provisioning did or refused.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProvisioningEvent {
    /// A user was created at a first login.
    Created {
        /// Provider id.
        provider: String,
        /// User-store domain.
        domain: String,
        /// Subject at the provider.
        subject: String,
        /// The new user.
        user: Arc<User>,
        /// Why the mapping produced it: rules and claim paths, never claim values.
        trace: Arc<Trace>,
    },
    /// Mapped attributes changed and were written.
    Updated {
        /// Provider id.
        provider: String,
        /// User-store domain.
        domain: String,
        /// Subject at the provider.
        subject: String,
        /// The user after the update.
        user: Arc<User>,
        /// What changed.
        changes: Box<ProfileChanges>,
        /// Why the mapping produced it: rules and claim paths, never claim values.
        trace: Arc<Trace>,
    },
    /// An unknown identity was linked to an existing local user.
    Linked {
        /// Provider id.
        provider: String,
        /// User-store domain.
        domain: String,
        /// Subject at the provider.
        subject: String,
        /// The existing user.
        user: Arc<User>,
        /// What matched.
        by: LinkBy,
    },
    /// A login was refused by the policy (JIT off, locked, missing attribute, ...).
    Rejected {
        /// Provider id.
        provider: String,
        /// Subject at the provider.
        subject: String,
        /// The error code (as in HTTP answers; a store's [`Refusal`](crate::store::Refusal)
        /// carries the application's own).
        code: String,
        /// The reason.
        reason: String,
        /// The decisions taken up to the refusal: when the mapping (or an admission rule)
        /// refused, [`Trace::refusal`](crate::mapping::Trace::refusal) names its rule; a later
        /// refusal (a locked user, a taken username) follows a complete mapping trace.
        trace: Arc<Trace>,
    },
    /// A background (non-blocking) update failed after its retries; the login went ahead.
    UpdateFailed {
        /// Provider id.
        provider: String,
        /// User-store domain.
        domain: String,
        /// The user.
        user_id: UserId,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// A user of a removed provider was disabled or deleted.
    Deprovisioned {
        /// Provider id.
        provider: String,
        /// User-store domain.
        domain: String,
        /// The user.
        user_id: UserId,
        /// Deleted (`true`) or locked (`false`).
        deleted: bool,
    },
}

/// Receives [`ProvisioningEvent`]s. Delivery is awaited in the login's task, in order: keep
/// it quick (hand slow work to a channel). A closure `Fn(&ProvisioningEvent)` is a sink.
///
/// ```
/// use jit_provision::events::ProvisioningEvent;
/// let audit = |event: &ProvisioningEvent| println!("{}", serde_json::to_string(event).unwrap());
/// # let _ = jit_provision::JitLayer::builder().on_event(audit);
/// ```
pub trait EventSink: Send + Sync + 'static {
    /// Delivers one event.
    fn deliver<'a>(&'a self, event: &'a ProvisioningEvent) -> BoxFuture<'a, ()>;
}

impl<F> EventSink for F
where
    F: Fn(&ProvisioningEvent) + Send + Sync + 'static,
{
    fn deliver<'a>(&'a self, event: &'a ProvisioningEvent) -> BoxFuture<'a, ()> {
        self(event);
        Box::pin(std::future::ready(()))
    }
}
