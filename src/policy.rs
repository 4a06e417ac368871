//! Administration of just-in-time users: dry runs of a mapping, listing the users of a
//! provider with their login times, deprovisioning the users of a removed provider, and the
//! rule that attributes an identity provider manages are read-only locally.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::LinkBy;
use crate::mapping::Trace;
use crate::store::{LinkedIdentity, Profile, ProfileChanges, User, UserId};

/// A local edit of a field an identity provider manages was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is managed by the identity provider and cannot be edited locally")]
pub struct ReadOnlyField(pub String);

/// Refuses local edits of `field` (`email`, `display_name`, `groups` or an attribute name)
/// when an identity provider manages it for this user: the next login would overwrite the
/// edit anyway, and an edit that sticks would be a way around the IdP.
///
/// It follows the mapping's [`Ownership`](crate::mapping::Ownership): only `always` fields
/// (the default) are the provider's; an `on_create` field is set at creation and then
/// editable, a `never` field is never written.
///
/// ```
/// use jit_provision::policy::check_local_edit;
/// # let mut user = jit_provision::store::User::new(jit_provision::store::UserId(1), "jane");
/// user.idp_attributes.insert("email".into());
/// assert!(check_local_edit(&user, "email").is_err());
/// assert!(check_local_edit(&user, "nickname").is_ok());
/// ```
pub fn check_local_edit(user: &User, field: &str) -> Result<(), ReadOnlyField> {
    if user.idp_attributes.contains(field) {
        Err(ReadOnlyField(field.to_owned()))
    } else {
        Ok(())
    }
}

/// What a login with some claims would do, computed without writing anything
/// ([`JitLayer::preview`](crate::JitLayer::preview)), like Atlassian's "test your attribute
/// mappings".
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The provider.
    pub provider: String,
    /// The user-store domain the user would live in.
    pub domain: Option<String>,
    /// The profile the mapping produced: what a new user would be created with (the
    /// `on_create` fields included; an update syncs only the `always` ones).
    pub profile: Option<Profile>,
    /// The values of the fields mapped with ownership `never`: shown here, never written.
    pub preview_only: BTreeMap<String, String>,
    /// The user already linked to the identity (or matched for linking), if any.
    pub existing: Option<User>,
    /// What would happen.
    pub action: PreviewAction,
    /// Why: every decision of the mapping (and of admission rules and roles), naming the
    /// rule and the claim paths it read, never a claim value.
    pub trace: Trace,
}

/// The outcome of a [`Preview`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PreviewAction {
    /// A user would be created from the profile.
    Create,
    /// The identity would be linked to an existing user.
    Link {
        /// The existing user.
        user_id: UserId,
        /// What matched.
        by: LinkBy,
    },
    /// The existing user would be updated.
    Update {
        /// The changes (boxed, as in
        /// [`ProvisioningEvent::Updated`](crate::events::ProvisioningEvent::Updated)).
        changes: Box<ProfileChanges>,
    },
    /// Nothing would change.
    Unchanged,
    /// The login would be refused.
    Refuse {
        /// The error code.
        code: String,
        /// Why.
        reason: String,
    },
}

/// A just-in-time user of a provider, with its identity's login times.
#[derive(Debug, Clone, Serialize)]
pub struct JitUser {
    /// The user-store domain.
    pub domain: String,
    /// The user.
    pub user: User,
    /// Its identity at the provider.
    pub identity: LinkedIdentity,
}

/// What to do with the users of a removed provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Deprovision {
    /// Lock them (reversible).
    Disable,
    /// Delete them with their identity links.
    Delete,
}
