//! Provisioning events for audit and outbound provisioning: every creation, update (with
//! the diff), link and refusal is delivered to the subscribers given to
//! [`JitLayerBuilder::on_event`](crate::JitLayerBuilder::on_event); so are the ends of a
//! user's access the layer decides (a lock, a deprovisioning, a logout), for an
//! application that keeps tokens of its own to revoke them:
//!
//! ```
//! use jit_provision::events::ProvisioningEvent;
//!
//! fn revoke_app_tokens(user_id: i64) { /* DELETE FROM app_tokens WHERE user_id = $1 */ }
//!
//! let on_event = |event: &ProvisioningEvent| match event {
//!     ProvisioningEvent::Locked { user_id, .. }
//!     | ProvisioningEvent::Deprovisioned { user_id, .. }
//!     | ProvisioningEvent::LoggedOut { user_id, .. } => revoke_app_tokens(user_id.0),
//!     _ => {}
//! };
//! # let _ = jit_provision::JitLayer::builder().on_event(on_event);
//! ```

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
    /// The layer locked a user: its sessions end at their next request and it cannot log in
    /// until unlocked in the store.
    Locked {
        /// The provider whose login led to the lock (`None` for an administrator's lock).
        provider: Option<String>,
        /// User-store domain.
        domain: String,
        /// The user.
        user_id: UserId,
        /// Who or what locked it.
        reason: LockReason,
    },
    /// A session ended: its id is revoked on every instance.
    LoggedOut {
        /// The provider the session was opened with.
        provider: String,
        /// User-store domain.
        domain: String,
        /// The user.
        user_id: UserId,
        /// How it ended.
        reason: LogoutReason,
    },
}

/// Why the layer locked a user ([`ProvisioningEvent::Locked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LockReason {
    /// An administrator, through [`JitLayer::lock_user`](crate::JitLayer::lock_user).
    Admin,
    /// An admission rule refused a returning user's login and the provider's
    /// `admission.lock_on_refusal` is set.
    AdmissionRefused,
}

/// How a session ended ([`ProvisioningEvent::LoggedOut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogoutReason {
    /// The user logged out at `POST {prefix}/logout`.
    User,
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

/// The application's event sinks, in registration order (a cheap handle: every clone
/// delivers to the same sinks).
#[derive(Clone, Default)]
pub(crate) struct Events {
    sinks: Arc<[Arc<dyn EventSink>]>,
}

impl Events {
    /// The handle of these sinks.
    pub(crate) fn new(sinks: Vec<Arc<dyn EventSink>>) -> Self {
        Self {
            sinks: sinks.into(),
        }
    }

    /// Delivers `event` to every sink, one after the other.
    pub(crate) async fn emit(&self, event: ProvisioningEvent) {
        for sink in self.sinks.iter() {
            sink.deliver(&event).await;
        }
    }
}
