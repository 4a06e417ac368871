use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The local id of a user, assigned by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an identity is keyed on: the configured provider and the subject it asserted.
///
/// Never an email address or any other mutable claim. A provider has exactly one trusted
/// issuer, so `(provider, subject)` names the same thing as `(issuer, subject)` while
/// surviving an issuer URL change of the provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKey {
    /// The provider id from the configuration (`corp`, `google`, ...).
    pub provider: String,
    /// The `sub` claim (OIDC) or persistent NameID (SAML).
    pub subject: String,
}

/// A validated external identity: who the identity provider says the user is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The provider id from the configuration.
    pub provider: String,
    /// The issuer that signed the assertion (the ID token's `iss`).
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
}

impl Identity {
    /// Builds an identity.
    ///
    /// ```
    /// let id = jit_provision::store::Identity::new("corp", "https://idp.example.com", "42");
    /// assert_eq!(id.key().subject, "42");
    /// ```
    pub fn new(
        provider: impl Into<String>,
        issuer: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// The key the store looks this identity up by.
    pub fn key(&self) -> IdentityKey {
        IdentityKey {
            provider: self.provider.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// A local user as the store holds it. Built by [`User::new`] outside this crate (fields
/// will grow), then its public fields set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct User {
    /// Store-assigned id.
    pub id: UserId,
    /// Unique local username. Set at creation from the mapping, not changed by later logins.
    pub username: String,
    /// Email address as last asserted by the identity provider (not a proof of ownership).
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Group names: the local ones and those granted by identity providers.
    pub groups: BTreeSet<String>,
    /// Further mapped attributes.
    pub attributes: BTreeMap<String, String>,
    /// The groups each provider granted at its last login. A login adds and removes only what
    /// its own provider granted; groups granted locally or by another provider stay.
    pub idp_groups: BTreeMap<String, BTreeSet<String>>,
    /// Roles: the local ones and those granted by identity providers' role rules
    /// ([`mapping::roles`](crate::mapping::roles)), kept apart from groups.
    #[serde(default)]
    pub roles: BTreeSet<String>,
    /// The roles each provider granted at its last login, like [`idp_groups`](Self::idp_groups):
    /// a login adds and removes only what its own provider granted.
    #[serde(default)]
    pub idp_roles: BTreeMap<String, BTreeSet<String>>,
    /// The fields an identity provider manages (`email`, `display_name`, `groups`, attribute
    /// names): local edits of them are refused by [`check_local_edit`](crate::policy::check_local_edit).
    pub idp_attributes: BTreeSet<String>,
    /// A locked user cannot log in, and provisioning never unlocks it.
    pub locked: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
    /// Last change, seconds since the Unix epoch.
    pub updated_at: i64,
}

impl User {
    /// A user with this id and username, no email, name, groups, roles or attributes,
    /// unlocked, created and updated at time 0: for a store to fill in.
    ///
    /// ```
    /// use jit_provision::store::{User, UserId};
    /// let mut user = User::new(UserId(7), "jane");
    /// user.email = Some("jane@example.com".into());
    /// assert!(!user.locked && user.groups.is_empty());
    /// ```
    pub fn new(id: UserId, username: impl Into<String>) -> Self {
        Self {
            id,
            username: username.into(),
            email: None,
            display_name: None,
            groups: BTreeSet::new(),
            attributes: BTreeMap::new(),
            idp_groups: BTreeMap::new(),
            roles: BTreeSet::new(),
            idp_roles: BTreeMap::new(),
            idp_attributes: BTreeSet::new(),
            locked: false,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// The local user a set of claims maps to: what `create` writes, and what later logins
/// compare the stored user against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Profile {
    /// Username for a new user.
    pub username: String,
    /// Email address: `None` when the provider does not manage it (left alone on update),
    /// `Some(None)` when it manages it and asserted none.
    pub email: Option<Option<String>>,
    /// Display name, managed or not like `email`.
    pub display_name: Option<Option<String>>,
    /// The groups the provider grants; `None` when it does not say (groups are then left
    /// alone).
    pub groups: Option<BTreeSet<String>>,
    /// The roles the provider's role rules grant; `None` when it does not manage roles or
    /// could not decide them (roles are then left alone).
    #[serde(default)]
    pub roles: Option<BTreeSet<String>>,
    /// Further attributes.
    pub attributes: BTreeMap<String, String>,
    /// The fields the provider manages (read-only for local edits).
    pub idp_attributes: BTreeSet<String>,
}

impl Profile {
    /// A profile with only a username.
    ///
    /// ```
    /// let p = jit_provision::store::Profile::new("jane");
    /// assert_eq!(p.username, "jane");
    /// ```
    pub fn new(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            ..Self::default()
        }
    }

    /// The groups of a user created from this profile at `provider`, by provider.
    pub fn idp_groups(&self, provider: &str) -> BTreeMap<String, BTreeSet<String>> {
        by_provider(self.groups.as_ref(), provider)
    }

    /// The roles of a user created from this profile at `provider`, by provider.
    ///
    /// ```
    /// let mut p = jit_provision::store::Profile::new("jane");
    /// p.roles = Some(["editor".to_owned()].into());
    /// assert_eq!(p.idp_roles("corp")["corp"], ["editor".to_owned()].into());
    /// ```
    pub fn idp_roles(&self, provider: &str) -> BTreeMap<String, BTreeSet<String>> {
        by_provider(self.roles.as_ref(), provider)
    }

    /// What must change in `user` for it to match this profile from `provider`; empty when
    /// nothing does.
    ///
    /// The username is not compared: it is fixed at creation. Fields the profile does not
    /// manage (`None`) and attributes it does not carry are left as they are. Groups become a
    /// [`GroupGrants`] delta of `provider`'s own grants: what it granted before and no longer
    /// grants is removed (unless another provider grants it too), what it grants now is added,
    /// and the store applies that delta to the row as it stands inside its transaction, so
    /// every other group, even one granted a moment ago, stays.
    ///
    /// ```
    /// use jit_provision::store::{Profile, User, UserId};
    /// let mut user = User::new(UserId(1), "jane");
    /// user.groups = ["local-admins".to_owned()].into();
    /// let mut p = Profile::new("jane");
    /// assert!(p.changes_from(&user, "corp").is_empty());
    /// p.email = Some(Some("jane@example.com".into()));
    /// p.groups = Some(["staff".to_owned()].into());
    /// let changes = p.changes_from(&user, "corp");
    /// assert_eq!(changes.email, Some(Some("jane@example.com".into())));
    /// // Only the granted group moves; the local one is not part of the change.
    /// let grants = changes.grants.unwrap();
    /// assert_eq!(grants.added, ["staff".to_owned()].into());
    /// assert!(grants.removed.is_empty());
    /// ```
    pub fn changes_from(&self, user: &User, provider: &str) -> ProfileChanges {
        let mut changes = ProfileChanges::default();
        if let Some(email) = self.email.as_ref().filter(|e| **e != user.email) {
            changes.email = Some(email.clone());
        }
        if let Some(name) = self
            .display_name
            .as_ref()
            .filter(|n| **n != user.display_name)
        {
            changes.display_name = Some(name.clone());
        }
        if let Some(granted) = &self.groups {
            changes.grants = GroupGrants::between(user, provider, granted);
        }
        if let Some(granted) = &self.roles {
            changes.role_grants =
                GroupGrants::delta(&user.roles, user.idp_roles.get(provider), provider, granted);
        }
        for (name, value) in &self.attributes {
            if user.attributes.get(name) != Some(value) {
                changes.attributes.insert(name.clone(), value.clone());
            }
        }
        changes.idp_attributes = self
            .idp_attributes
            .difference(&user.idp_attributes)
            .cloned()
            .collect();
        changes
    }
}

/// Changes to apply to a user. `None` (or an absent attribute, an empty set) means "leave as
/// is".
///
/// What a login changes is expressed so that the store can apply it to the row *as it is
/// inside its write transaction*: scalar fields and attributes are set, group grants are a
/// delta ([`GroupGrants`]), managed fields are added. So a change made meanwhile by the
/// application or by another provider's login is never overwritten by a stale copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChanges {
    /// New email (`Some(None)` clears it).
    pub email: Option<Option<String>>,
    /// New display name (`Some(None)` clears it).
    pub display_name: Option<Option<String>>,
    /// Replaces the whole set of groups: a local edit by the application (logins never set
    /// it; they send [`grants`](Self::grants)).
    pub groups: Option<BTreeSet<String>>,
    /// Attributes to set.
    pub attributes: BTreeMap<String, String>,
    /// Replaces the whole record of which provider granted which groups: a local edit
    /// (logins never set it).
    pub idp_groups: Option<BTreeMap<String, BTreeSet<String>>>,
    /// The groups one provider's login granted and stopped granting, applied as a delta after
    /// `groups` and `idp_groups`.
    pub grants: Option<GroupGrants>,
    /// Replaces the whole set of roles: a local edit (logins never set it; they send
    /// [`role_grants`](Self::role_grants)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<BTreeSet<String>>,
    /// Replaces the whole record of which provider granted which roles: a local edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_roles: Option<BTreeMap<String, BTreeSet<String>>>,
    /// The roles one provider's login granted and stopped granting (a [`GroupGrants`] delta
    /// over [`User::roles`] and [`User::idp_roles`]), applied after `roles` and `idp_roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_grants: Option<GroupGrants>,
    /// Fields to add to the provider-managed set (never removed by a login).
    pub idp_attributes: BTreeSet<String>,
}

impl ProfileChanges {
    /// True when applying these changes would change nothing.
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.display_name.is_none()
            && self.groups.is_none()
            && self.attributes.is_empty()
            && self.idp_groups.is_none()
            && self.grants.is_none()
            && self.roles.is_none()
            && self.idp_roles.is_none()
            && self.role_grants.is_none()
            && self.idp_attributes.is_empty()
    }

    /// Applies the changes to a user as stored (a store calls this on the row it read inside
    /// its write transaction).
    pub fn apply_to(&self, user: &mut User) {
        if let Some(email) = &self.email {
            user.email = email.clone();
        }
        if let Some(name) = &self.display_name {
            user.display_name = name.clone();
        }
        if let Some(groups) = &self.groups {
            user.groups = groups.clone();
        }
        for (k, v) in &self.attributes {
            user.attributes.insert(k.clone(), v.clone());
        }
        if let Some(groups) = &self.idp_groups {
            user.idp_groups = groups.clone();
        }
        if let Some(grants) = &self.grants {
            grants.apply_to(user);
        }
        if let Some(roles) = &self.roles {
            user.roles = roles.clone();
        }
        if let Some(roles) = &self.idp_roles {
            user.idp_roles = roles.clone();
        }
        if let Some(grants) = &self.role_grants {
            grants.apply(&mut user.roles, &mut user.idp_roles);
        }
        user.idp_attributes
            .extend(self.idp_attributes.iter().cloned());
    }
}

/// A delta of the groups one provider grants a user: what its login added and what it no
/// longer grants. Applied to the stored row, never as a whole set, so groups granted locally
/// or by another provider, even concurrently, stay.
///
/// ```
/// use jit_provision::store::{GroupGrants, User, UserId};
/// let mut user = User::new(UserId(1), "jane");
/// user.groups = ["staff".to_owned(), "auditors".to_owned()].into();
/// user.idp_groups = [("corp".to_owned(), ["staff".to_owned()].into())].into();
/// let grants = GroupGrants {
///     provider: "corp".into(),
///     added: ["eng".to_owned()].into(),
///     removed: ["staff".to_owned()].into(),
/// };
/// grants.apply_to(&mut user);
/// assert_eq!(user.groups, ["auditors".to_owned(), "eng".to_owned()].into());
/// assert_eq!(user.idp_groups["corp"], ["eng".to_owned()].into());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupGrants {
    /// The provider whose grants change.
    pub provider: String,
    /// Groups it grants now (added to the user's groups and to its record).
    pub added: BTreeSet<String>,
    /// Groups it granted before and no longer grants (removed from its record, and from the
    /// user's groups unless another provider still grants them).
    pub removed: BTreeSet<String>,
}

impl GroupGrants {
    /// The delta that brings `provider`'s grants of `user` to `granted`; `None` when there is
    /// nothing to do. A granted group the user lacks (removed locally) is added again: the
    /// provider manages it.
    fn between(user: &User, provider: &str, granted: &BTreeSet<String>) -> Option<Self> {
        Self::delta(
            &user.groups,
            user.idp_groups.get(provider),
            provider,
            granted,
        )
    }

    /// The delta over a set (`held`, groups or roles) and `provider`'s record of it
    /// (`before`).
    fn delta(
        held: &BTreeSet<String>,
        before: Option<&BTreeSet<String>>,
        provider: &str,
        granted: &BTreeSet<String>,
    ) -> Option<Self> {
        let had = |g: &String| before.is_some_and(|b| b.contains(g));
        let removed: BTreeSet<String> = before
            .into_iter()
            .flatten()
            .filter(|g| !granted.contains(*g))
            .cloned()
            .collect();
        let added: BTreeSet<String> = granted
            .iter()
            .filter(|g| !had(g) || !held.contains(*g))
            .cloned()
            .collect();
        (!added.is_empty() || !removed.is_empty()).then(|| Self {
            provider: provider.to_owned(),
            added,
            removed,
        })
    }

    /// Applies the delta to a user's groups as stored.
    pub fn apply_to(&self, user: &mut User) {
        self.apply(&mut user.groups, &mut user.idp_groups);
    }

    /// Applies the delta to a set (groups or roles) and its per-provider record.
    fn apply(&self, held: &mut BTreeSet<String>, record: &mut BTreeMap<String, BTreeSet<String>>) {
        let mine = record.entry(self.provider.clone()).or_default();
        for group in &self.removed {
            mine.remove(group);
        }
        mine.extend(self.added.iter().cloned());
        if mine.is_empty() {
            record.remove(&self.provider);
        }
        for group in &self.removed {
            if !record.values().any(|g| g.contains(group)) {
                held.remove(group);
            }
        }
        held.extend(self.added.iter().cloned());
    }
}

/// When a login happened, in microseconds since the Unix epoch, strictly increasing within a
/// process: the order of the updates logins send (see
/// [`UserStore::update_from_login`](super::UserStore::update_from_login)).
///
/// ```
/// use jit_provision::store::LoginStamp;
/// let first = LoginStamp::now();
/// assert!(LoginStamp::now() > first);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoginStamp(pub i64);

impl LoginStamp {
    /// Now, and later than every stamp this process handed out before (even when the clock
    /// stepped back).
    pub fn now() -> Self {
        use std::sync::atomic::{AtomicI64, Ordering};
        static LAST: AtomicI64 = AtomicI64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let previous = LAST
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        Self(now.max(previous + 1))
    }
}

/// An identity linked to a local user, with its login times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedIdentity {
    /// The provider id.
    pub provider: String,
    /// The issuer that asserted it.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// The local user.
    pub user_id: UserId,
    /// When it was linked: its first login (Unix seconds).
    pub first_login_at: i64,
    /// Its last recorded login (Unix seconds).
    pub last_login_at: Option<i64>,
}

/// `{provider: set}`, or nothing for an absent or empty set.
fn by_provider(
    set: Option<&BTreeSet<String>>,
    provider: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    match set {
        Some(set) if !set.is_empty() => BTreeMap::from([(provider.to_owned(), set.clone())]),
        _ => BTreeMap::new(),
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
