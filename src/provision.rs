//! Just-in-time provisioning: find the local user of a validated identity, link it to an
//! existing account or create it when absent (as the provider's policy allows), and sync its
//! mapped attributes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::config::{
    DomainRule, LinkBy, LinkingConfig, MappingConfig, PRIMARY_DOMAIN, ProviderConfig,
    ProvisioningMode,
};
use crate::directory::{Directory, Domain};
use crate::events::{Events, LockReason, ProvisioningEvent};
use crate::invalidation::Invalidation;
use crate::mapping::admission::{self, Admission};
use crate::mapping::roles::Roles;
use crate::mapping::trace::Decision;
use crate::mapping::{
    Claims, GroupResolver, Mapped, Mapping, MappingError, Target, Trace, Verdict,
};
use crate::metrics::Metrics;
use crate::prompt::{PromptRequest, ProvisionPrompt};
use crate::session::{EndReason, Sessions};
use crate::session::{IdentityEntry, Origin};
use crate::store::{Identity, IdentityKey, LoginStamp, Profile, Refusal, StoreError, User, UserId};

/// Why provisioning refused or failed. Nothing half-written stays behind: the store writes
/// a user and its identity link atomically, and no session is issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The identity is unknown and the provider's mode does not create users: `403`.
    #[error(
        "no local account is linked to this identity, and accounts are not created automatically"
    )]
    JitDisabled,
    /// The local user is locked: `403`.
    #[error("this account is locked")]
    Locked,
    /// An admission rule of the provider refused the login
    /// ([`mapping::admission`](crate::mapping::admission)): `403`, nothing created or
    /// updated.
    #[error("this login is not admitted: the provider's rule `{rule}` refused it")]
    NotAdmitted {
        /// The rule that refused (`admission.email_domains`, `admission.claims[0]`, ...).
        rule: String,
        /// The refusing decision, as in the mapping's trace.
        decision: Box<Decision>,
    },
    /// The provider's roles are `strict` and no role rule matched
    /// ([`mapping::roles`](crate::mapping::roles)): `403`, nothing created or updated.
    #[error("this login is not admitted: no role rule of the provider matched (`roles.strict`)")]
    NoRole {
        /// The refusing decision, as in the mapping's trace.
        decision: Box<Decision>,
    },
    /// The claims do not map to a user (a required attribute is missing, ...): `403`.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The username is held by another local account: `409`.
    #[error("the username `{0}` is already taken by another account")]
    UsernameTaken(String),
    /// The matching local account is already linked to another account at this provider:
    /// `409` (linking would hand it to a second person).
    #[error("the matching local account is already linked to another account at this provider")]
    LinkConflict,
    /// The username names a user-store domain that is not registered: `403`.
    #[error("the user-store domain `{0}` is not registered")]
    UnknownDomain(String),
    /// The username breaks its domain's policy: `403`.
    #[error("the username `{username}` is not allowed: it {reason}")]
    UsernamePolicy {
        /// The refused username.
        username: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prompt hook refused to resume: `403`.
    #[error("provisioning was not completed: {0}")]
    PromptRefused(String),
    /// The pending prompt does not fit in a cookie (the mapped profile is too large, many
    /// groups say): `500`, nothing created. Map fewer groups or attributes for a provider
    /// with a prompt hook.
    #[error("the pending prompt does not fit in a cookie ({bytes} bytes)")]
    PromptTooLarge {
        /// The size of the sealed prompt state with its cookie name.
        bytes: usize,
    },
    /// The application's store refused by a rule of its own
    /// ([`StoreError::Refused`]): `409` or `403` with its code and message, nothing written.
    #[error("{0}")]
    Refused(Refusal),
    /// The store failed: `503` (`500` when it panicked). Converted to an
    /// [`Error`](crate::Error), this is [`Error::Store`](crate::Error::Store).
    #[error("the user store is unavailable")]
    Store(#[source] StoreError),
    /// No provider with this id is configured: `404`. Converted to an
    /// [`Error`](crate::Error), this is [`Error::UnknownProvider`](crate::Error::UnknownProvider).
    #[error("no identity provider `{0}` is configured")]
    UnknownProvider(String),
    /// A pending prompt was resumed, but its provider has no prompt hook (any more: the
    /// application was restarted without it, or this instance has none): `400
    /// prompt_not_configured`, nothing created; a new login provisions without the prompt.
    #[error("provider `{0}` does not prompt before creating users (any more); please log in again")]
    PromptNotConfigured(String),
}

impl ProvisionError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code (a [`Refusal`]'s is the application's).
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }

    /// A copy for another waiter of a shared (moka-coalesced) failure. Store errors keep
    /// their kind and message; their source chain is not cloneable.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::JitDisabled => Self::JitDisabled,
            Self::Locked => Self::Locked,
            Self::NotAdmitted { rule, decision } => Self::NotAdmitted {
                rule: rule.clone(),
                decision: decision.clone(),
            },
            Self::NoRole { decision } => Self::NoRole {
                decision: decision.clone(),
            },
            Self::Mapping(m) => Self::Mapping(m.clone()),
            Self::UsernameTaken(n) => Self::UsernameTaken(n.clone()),
            Self::LinkConflict => Self::LinkConflict,
            Self::UnknownDomain(d) => Self::UnknownDomain(d.clone()),
            Self::UsernamePolicy { username, reason } => Self::UsernamePolicy {
                username: username.clone(),
                reason: reason.clone(),
            },
            Self::PromptRefused(r) => Self::PromptRefused(r.clone()),
            Self::PromptTooLarge { bytes } => Self::PromptTooLarge { bytes: *bytes },
            Self::Refused(r) => Self::Refused(r.clone()),
            Self::Store(e) => Self::Store(e.duplicate()),
            Self::UnknownProvider(id) => Self::UnknownProvider(id.clone()),
            Self::PromptNotConfigured(id) => Self::PromptNotConfigured(id.clone()),
        }
    }
}

impl crate::failure::Failure for ProvisionError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::JitDisabled
            | Self::Locked
            | Self::NotAdmitted { .. }
            | Self::NoRole { .. }
            | Self::Mapping(_)
            | Self::UnknownDomain(_)
            | Self::UsernamePolicy { .. }
            | Self::PromptRefused(_) => StatusCode::FORBIDDEN,
            Self::UsernameTaken(_) | Self::LinkConflict => StatusCode::CONFLICT,
            Self::Refused(r) => r.status(),
            Self::PromptTooLarge { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Store(e) => crate::failure::Failure::status(e),
            Self::UnknownProvider(_) => StatusCode::NOT_FOUND,
            Self::PromptNotConfigured(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::Refused(r) => r.code(),
            Self::JitDisabled => "jit_disabled",
            Self::Locked => "user_locked",
            Self::NotAdmitted { .. } => "not_admitted",
            Self::NoRole { .. } => "no_role",
            Self::Mapping(MappingError::MissingClaim(_)) => "missing_attribute",
            Self::Mapping(_) => "invalid_attribute",
            Self::UsernameTaken(_) => "username_taken",
            Self::LinkConflict => "link_conflict",
            Self::UnknownDomain(_) => "unknown_domain",
            Self::UsernamePolicy { .. } => "username_policy",
            Self::PromptRefused(_) => "prompt_refused",
            Self::PromptTooLarge { .. } => "prompt_state_too_large",
            Self::Store(e) => crate::failure::Failure::code(e),
            Self::UnknownProvider(_) => "unknown_provider",
            Self::PromptNotConfigured(_) => "prompt_not_configured",
        }
    }
}
impl From<StoreError> for ProvisionError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UsernameTaken(name) => Self::UsernameTaken(name),
            StoreError::LinkConflict => Self::LinkConflict,
            StoreError::Refused(refusal) => Self::Refused(refusal),
            other => Self::Store(other),
        }
    }
}

/// What a login did to the local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The user was created by this login.
    Created,
    /// The identity was linked to an existing local user.
    Linked,
    /// Mapped attributes had changed and were written.
    Updated,
    /// Mapped attributes had changed; a background task writes them (non-blocking mode).
    UpdateQueued,
    /// The user existed and nothing changed (or the mode does not update): nothing written.
    Unchanged,
}

/// A provisioned login, or one waiting for a prompt.
#[derive(Debug)]
pub(crate) enum Provisioned {
    Done {
        user: Arc<User>,
        domain: Arc<str>,
        outcome: Outcome,
    },
    Prompt {
        path: String,
        request: Box<PromptRequest>,
        /// The user-store domain the mapped username resolved to.
        domain: Arc<str>,
        /// The claims linking reads ([`LINKING_CLAIMS`]), as asserted.
        claims: Claims,
    },
}

/// The claims [`Provisioner::link_candidate`] reads besides the mapped profile: all a resumed
/// prompt needs of the claims (the prompt state keeps only these, for the cookie's 4 KiB).
pub(crate) const LINKING_CLAIMS: &[&str] = &["email_verified"];

/// The [`LINKING_CLAIMS`] of a login's claims.
pub(crate) fn linking_claims(claims: &Claims) -> Claims {
    Claims(
        claims
            .0
            .iter()
            .filter(|(name, _)| LINKING_CLAIMS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    )
}

/// A provisioning resumed after a prompt: what the identity provider asserted at the login
/// the prompt interrupted (sealed in the prompt state), and the profile the hook returned.
/// Linking and the domain are decided from the former only; the latter only fills what
/// creation asks for ([`Resumed::creation_profile`]).
#[derive(Debug)]
pub(crate) struct Resumed {
    /// The user-store domain the asserted username resolved to.
    pub(crate) domain: String,
    /// The mapped profile of the interrupted login.
    pub(crate) asserted: Profile,
    /// The profile the prompt hook returned.
    pub(crate) chosen: Profile,
}

impl Resumed {
    /// The profile to create: the asserted one with the username the hook chose (by the
    /// domain's policy), its display name, and the attributes the provider did not assert.
    /// The email, the groups and the provider-managed fields stay as asserted.
    fn creation_profile(&self, domain: &Domain) -> Result<Profile, ProvisionError> {
        let mut profile = self.asserted.clone();
        profile.username = stored_username(domain, &self.chosen.username)?;
        profile.display_name = self.chosen.display_name.clone();
        for (name, value) in &self.chosen.attributes {
            profile
                .attributes
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
        Ok(profile)
    }
}

/// A provider's provisioning policy, compiled once.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) provider: String,
    pub(crate) mode: ProvisioningMode,
    pub(crate) mapping: Mapping,
    pub(crate) linking: LinkingConfig,
    pub(crate) blocking: bool,
    pub(crate) domain: DomainRule,
    /// Who may be provisioned, checked at every login before anything is written.
    pub(crate) admission: Admission,
    /// The role rules; `None`: this provider does not manage roles.
    pub(crate) roles: Option<Roles>,
}

impl Policy {
    /// The policy of a provider; `mapping` overrides its mapping (bearer clients).
    pub(crate) fn new(
        id: &str,
        config: &ProviderConfig,
        mapping: Option<&MappingConfig>,
    ) -> Result<Self, String> {
        let mapping = mapping
            .unwrap_or(&config.mapping)
            .compile()
            .map_err(|e| e.to_string())?;
        // `require_groups` reads the IdP's groups claim as asserted (default `groups`).
        let groups_claim = mapping
            .config()
            .groups
            .as_ref()
            .map_or("groups", |g| g.claim.as_str());
        let admission = config.admission.compile(groups_claim)?;
        let roles = config
            .roles
            .as_ref()
            .map(crate::mapping::roles::RolesConfig::compile)
            .transpose()?;
        Ok(Self {
            provider: id.to_owned(),
            mode: config.mode,
            mapping,
            linking: config.linking.clone(),
            blocking: config.blocking,
            domain: config.domain.clone(),
            admission,
            roles,
        })
    }

    /// Checks the admission rules against the claims as asserted, pushing one decision per
    /// rule into `trace`.
    pub(crate) fn admit(&self, claims: &Claims, trace: &mut Trace) -> Result<(), ProvisionError> {
        self.admission
            .admit(claims, self.linking.trust_email, trace)
            .map_err(
                |admission::Refusal { rule, decision }| ProvisionError::NotAdmitted {
                    rule,
                    decision: Box::new(decision),
                },
            )
    }

    /// Sets the roles the role rules grant on a mapped login (and marks `roles` managed by
    /// the provider), pushing one decision per role into `trace`; a `strict` provider whose
    /// rules grant nothing refuses.
    pub(crate) fn grant_roles(
        &self,
        claims: &Claims,
        mapped: &mut Mapped,
        trace: &mut Trace,
    ) -> Result<(), ProvisionError> {
        let Some(roles) = &self.roles else {
            return Ok(());
        };
        let granted = roles
            .grant(claims, mapped.profile.groups.as_ref(), trace)
            .map_err(|decision| ProvisionError::NoRole {
                decision: Box::new(decision),
            })?;
        mapped.set_roles(granted);
        Ok(())
    }
}

/// The stored form of a username of `domain` (without a domain prefix), by the domain's
/// username policy.
fn stored_username(domain: &Domain, local: &str) -> Result<String, ProvisionError> {
    domain
        .policy
        .check(local)
        .map_err(|reason| ProvisionError::UsernamePolicy {
            username: local.chars().take(64).collect(),
            reason,
        })
}

/// Finds, links, creates and updates users by each provider's policy, in the user
/// [`Directory`]; ends the sessions of a user it locks and reports to the event sinks.
#[derive(Clone)]
pub(crate) struct Provisioner {
    users: Directory,
    policies: Arc<HashMap<String, Arc<Policy>>>,
    sessions: Sessions,
    metrics: Arc<Metrics>,
    events: Events,
    prompts: Arc<HashMap<String, Arc<dyn ProvisionPrompt>>>,
    resolvers: Arc<HashMap<String, Arc<dyn GroupResolver>>>,
}

/// The application's hooks into provisioning, per provider: prompts before a user is
/// created, and group resolvers for a group overage.
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) prompts: HashMap<String, Arc<dyn ProvisionPrompt>>,
    pub(crate) resolvers: HashMap<String, Arc<dyn GroupResolver>>,
}

/// What a login writes: the domain, the profile synced at every login, the profile linking
/// matches on, and the profile a new user is created with.
struct Plan {
    domain: Arc<Domain>,
    sync: Profile,
    link: Profile,
    create: Profile,
}

/// One login on its way through [`Provisioner::run`]'s steps.
#[derive(Clone, Copy)]
struct Login<'a> {
    policy: &'a Policy,
    identity: &'a Identity,
    claims: &'a Claims,
    plan: &'a Plan,
    /// A prompt hook runs before this login creates a user.
    prompt: bool,
}

/// The update a login asks for: when it was asserted, the profile to sync, and the trace
/// that produced it (for the event).
struct LoginUpdate {
    at: LoginStamp,
    profile: Profile,
    trace: Arc<Trace>,
}

/// Background update attempts in non-blocking mode, and the first pause between them.
const UPDATE_ATTEMPTS: u32 = 3;
const UPDATE_BACKOFF: Duration = Duration::from_millis(200);

/// How the coalesced lookup-or-create of an identity ended without a user.
enum Init {
    Failed(ProvisionError),
    /// A prompt hook must run before the user is created.
    Prompt,
}

impl From<ProvisionError> for Init {
    fn from(err: ProvisionError) -> Self {
        Self::Failed(err)
    }
}

impl From<StoreError> for Init {
    fn from(err: StoreError) -> Self {
        Self::Failed(err.into())
    }
}

impl Provisioner {
    pub(crate) fn new(
        users: Directory,
        policies: HashMap<String, Arc<Policy>>,
        sessions: Sessions,
        metrics: Arc<Metrics>,
        events: Events,
        hooks: Hooks,
    ) -> Self {
        Self {
            users,
            policies: Arc::new(policies),
            sessions,
            metrics,
            events,
            prompts: Arc::new(hooks.prompts),
            resolvers: Arc::new(hooks.resolvers),
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The provisioning policy of provider `id`.
    pub(crate) fn policy(&self, id: &str) -> Option<&Arc<Policy>> {
        self.policies.get(id)
    }

    /// The ids of the configured providers.
    pub(crate) fn provider_ids(&self) -> impl Iterator<Item = &String> {
        self.policies.keys()
    }

    pub(crate) fn prompt_hook(&self, provider: &str) -> Option<&Arc<dyn ProvisionPrompt>> {
        self.prompts.get(provider)
    }

    async fn announce(&self, event: Invalidation) {
        self.users.announce(event).await;
    }

    async fn emit(&self, event: ProvisioningEvent) {
        self.events.emit(event).await;
    }

    /// The domain and stored username a mapped username goes to, by the provider's rule and
    /// the domain's username policy.
    pub(crate) fn resolve(
        &self,
        policy: &Policy,
        username: &str,
    ) -> Result<(Arc<Domain>, String), ProvisionError> {
        let (name, local) = match &policy.domain {
            DomainRule::Fixed(name) => (name.as_str(), username),
            DomainRule::FromUsername => match username.split_once('/') {
                Some((domain, local)) => (domain, local),
                None => (PRIMARY_DOMAIN, username),
            },
        };
        let domain = self
            .users
            .domain(name)
            .or_else(|| self.users.domain(name.to_uppercase().as_str()))
            .ok_or_else(|| ProvisionError::UnknownDomain(name.chars().take(64).collect()))?;
        let username = stored_username(domain, local)?;
        Ok((domain.clone(), username))
    }

    /// Finds, links or creates the user of `identity` and syncs its attributes, as `policy`
    /// allows. `resumed` is a provisioning resumed after a prompt: then no prompt is asked, no
    /// mapping runs, `claims` are the [`LINKING_CLAIMS`] the prompt state sealed, and linking
    /// and the domain are decided from the asserted profile, never the hook's. Refusals are
    /// reported to the event sinks.
    pub(crate) async fn provision(
        &self,
        policy: &Policy,
        identity: &Identity,
        claims: &Claims,
        resumed: Option<Resumed>,
    ) -> Result<Provisioned, ProvisionError> {
        let mut trace = Trace::default();
        let result = self
            .run(policy, identity, claims, resumed, &mut trace)
            .await;
        if let Err(ProvisionError::NotAdmitted { .. }) = &result
            && policy.admission.locks_on_refusal()
        {
            self.lock_refused(identity).await;
        }
        self.metrics.provisioned(&policy.provider, &result);
        if let Err(err) = &result
            && !matches!(err, ProvisionError::Store(_))
        {
            self.emit(ProvisioningEvent::Rejected {
                provider: policy.provider.clone(),
                subject: identity.subject.clone(),
                code: err.code().to_owned(),
                reason: err.to_string(),
                trace: Arc::new(trace),
            })
            .await;
        }
        result
    }

    /// Maps a login's claims into `trace`, and on a group overage asks the provider's
    /// [`GroupResolver`], if any, for the full list; a failing resolver keeps the grants.
    ///
    /// Later decisions of the same login (admission rules, roles) go into the same `trace`.
    pub(crate) async fn map(
        &self,
        policy: &Policy,
        claims: &Claims,
        trace: &mut Trace,
    ) -> Result<Mapped, ProvisionError> {
        // Admission first: a login it refuses maps nothing and writes nothing.
        policy.admit(claims, trace)?;
        let mut mapped = policy.mapping.explain(claims, trace)?;
        if mapped.group_overage
            && let Some(resolver) = self.resolvers.get(&policy.provider)
        {
            match resolver.resolve(&policy.provider, claims).await {
                Ok(names) => {
                    let groups = policy.mapping.resolved_groups(&names, trace)?;
                    mapped.set_groups(groups);
                }
                Err(err) => {
                    tracing::warn!(provider = %policy.provider, error = %err, "group overage: the resolver failed, the groups are kept");
                    let claim = policy.mapping.groups_claim().map(ToString::to_string);
                    trace.push(
                        Target::Group(claim.clone().unwrap_or_default()),
                        "group resolver failed: grants kept",
                        claim,
                        Verdict::Skipped,
                    );
                }
            }
        }
        // Roles last: their group conditions read the groups as granted (resolved included).
        policy.grant_roles(claims, &mut mapped, trace)?;
        Ok(mapped)
    }

    /// Locks the local user of an identity an admission rule refused
    /// (`admission.lock_on_refusal`), and drops its cached copies here and on the other
    /// instances so its sessions stop working. A first login has no user: nothing to lock.
    /// A store failure is logged: the login is refused anyway.
    async fn lock_refused(&self, identity: &Identity) {
        let key = identity.key();
        for domain in self.users.domains() {
            let user = match domain.store.find_by_identity(&key).await {
                Ok(Some(user)) => user,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(provider = %identity.provider, error = %err, "could not look up a refused user to lock it");
                    continue;
                }
            };
            if !user.locked {
                if let Err(err) = domain.store.set_locked(user.id, true).await {
                    tracing::warn!(provider = %identity.provider, user_id = %user.id, error = %err, "could not lock a refused user");
                    continue;
                }
                tracing::info!(provider = %identity.provider, user_id = %user.id, "locked a user the admission rules refused");
                self.emit(ProvisioningEvent::Locked {
                    provider: Some(identity.provider.clone()),
                    domain: domain.name.to_string(),
                    user_id: user.id,
                    reason: LockReason::AdmissionRefused,
                })
                .await;
            }
            self.users
                .cache()
                .by_identity
                .invalidate(&(domain.name.clone(), key.clone()))
                .await;
            self.announce(Invalidation::User {
                domain: domain.name.to_string(),
                id: user.id,
            })
            .await;
            if let Err(err) = self
                .sessions
                .end_for_user(&domain.name, user.id, EndReason::UserLocked)
                .await
            {
                tracing::warn!(provider = %identity.provider, user_id = %user.id, error = %err, "could not end the sessions of a locked user");
            }
        }
    }

    /// What a login writes. At a resume, linking and syncs use the asserted profile sealed
    /// in the prompt state and creation the hook's choice; else they come from the mapping
    /// (`on_create` fields only in the profile to create).
    async fn plan(
        &self,
        policy: &Policy,
        claims: &Claims,
        resumed: Option<Resumed>,
        trace: &mut Trace,
    ) -> Result<Plan, ProvisionError> {
        let Some(resumed) = resumed else {
            let mut mapped = self.map(policy, claims, trace).await?;
            let (domain, username) = self.resolve(policy, &mapped.profile.username)?;
            mapped.set_username(username);
            return Ok(Plan {
                domain,
                sync: mapped.profile,
                link: mapped.creation.clone(),
                create: mapped.creation,
            });
        };
        let domain = self
            .users
            .domain(resumed.domain.as_str())
            .cloned()
            .ok_or_else(|| {
                ProvisionError::UnknownDomain(resumed.domain.chars().take(64).collect())
            })?;
        let create = resumed.creation_profile(&domain)?;
        Ok(Plan {
            domain,
            sync: resumed.asserted.clone(),
            link: resumed.asserted,
            create,
        })
    }

    /// One login's provisioning: plan what it writes, find or create-or-link the user
    /// (coalesced per identity), stop for a prompt if the provider has one, then finish the
    /// new user and sync the existing one.
    async fn run(
        &self,
        policy: &Policy,
        identity: &Identity,
        claims: &Claims,
        resumed: Option<Resumed>,
        trace: &mut Trace,
    ) -> Result<Provisioned, ProvisionError> {
        let prompted = resumed.is_some();
        let plan = self.plan(policy, claims, resumed, trace).await?;
        let prompt = self.prompts.get(&policy.provider).filter(|_| !prompted);
        let login = Login {
            policy,
            identity,
            claims,
            plan: &plan,
            prompt: prompt.is_some(),
        };
        let (user, origin) = match self.resolve_user(&login, prompted).await {
            Ok(resolved) => resolved,
            Err(Init::Prompt) => {
                let hook = prompt.expect("a prompt hook asked for");
                return self.ask(&login, hook.as_ref(), trace).await;
            }
            Err(Init::Failed(err)) => return Err(err),
        };
        if user.locked {
            return Err(ProvisionError::Locked);
        }
        let domain = &plan.domain;
        let done = |user, outcome| Provisioned::Done {
            user,
            domain: domain.name.clone(),
            outcome,
        };
        if origin == Origin::Created {
            self.finish_created(&login, &user, trace).await;
            return Ok(done(user, Outcome::Created));
        }
        if origin == Origin::Linked {
            self.finish_linked(&login, &user).await;
        }
        let (user, outcome) = self
            .update(&login, user, origin == Origin::Linked, trace)
            .await?;
        Ok(done(user, outcome))
    }

    /// The local user of the login's identity and what this login did to find it. Lookups of
    /// one identity are coalesced: one of them runs [`find_or_create`](Self::find_or_create),
    /// the waiters share its user (as found: only the one that ran it created or linked) or
    /// its error.
    async fn resolve_user(
        &self,
        login: &Login<'_>,
        prompted: bool,
    ) -> Result<(Arc<User>, Origin), Init> {
        let domain = &login.plan.domain;
        let key = (domain.name.clone(), login.identity.key());
        let looked_up = self
            .users
            .cache()
            .by_identity
            .entry(key)
            .or_try_insert_with(async {
                self.find_or_create(login)
                    .await
                    .map(|(user, origin)| IdentityEntry { user, origin })
            })
            .await;
        match looked_up {
            // Only the lookup that filled the entry created or linked; a waiter and a later
            // hit found the user.
            Ok(entry) if entry.is_fresh() => {
                let entry = entry.into_value();
                Ok((entry.user, entry.origin))
            }
            Ok(entry) => Ok((entry.into_value().user, Origin::Found)),
            // Coalesced with a first login of this identity that stopped for its own prompt:
            // this resume creates (the store's uniqueness still guards against a duplicate).
            Err(err) if prompted && matches!(*err, Init::Prompt) => {
                self.find_or_create(login).await
            }
            Err(err) => Err(match &*err {
                Init::Prompt => Init::Prompt,
                Init::Failed(err) => Init::Failed(err.duplicate()),
            }),
        }
    }

    /// Finds the identity's user in the store, or — as the provider's mode admits — links it
    /// to an existing local user or creates it (unless a prompt must run first).
    async fn find_or_create(&self, login: &Login<'_>) -> Result<(Arc<User>, Origin), Init> {
        let Login {
            policy,
            identity,
            claims,
            plan,
            prompt,
        } = *login;
        let store = &plan.domain.store;
        let key = identity.key();
        if let Some(user) = store.find_by_identity(&key).await? {
            return Ok((Arc::new(user), Origin::Found));
        }
        if policy.mode == ProvisioningMode::Off {
            return Err(ProvisionError::JitDisabled.into());
        }
        if let Some(user) = self
            .link(policy, &plan.domain, identity, claims, &plan.link)
            .await?
        {
            return Ok((user, Origin::Linked));
        }
        if !policy.mode.creates() {
            return Err(ProvisionError::JitDisabled.into());
        }
        if prompt {
            // Not cached: the answer comes from the user.
            return Err(Init::Prompt);
        }
        match store.create(identity, &plan.create).await {
            Ok(user) => Ok((Arc::new(user), Origin::Created)),
            // Another process linked it first: use its user.
            Err(StoreError::IdentityExists) => store
                .find_by_identity(&key)
                .await?
                .map(|user| (Arc::new(user), Origin::Found))
                .ok_or(Init::Failed(ProvisionError::Store(StoreError::NotFound))),
            Err(e) => Err(ProvisionError::from(e).into()),
        }
    }

    /// A first login the provider's prompt hook may interrupt: the prompt to show, or (the
    /// hook stays silent this time) the login resumed with the asserted profile.
    async fn ask(
        &self,
        login: &Login<'_>,
        hook: &dyn ProvisionPrompt,
        trace: &mut Trace,
    ) -> Result<Provisioned, ProvisionError> {
        let request = PromptRequest {
            provider: login.policy.provider.clone(),
            identity: login.identity.clone(),
            profile: login.plan.link.clone(),
        };
        match hook.before_create(&request) {
            Some(path) => Ok(Provisioned::Prompt {
                path,
                request: Box::new(request),
                domain: login.plan.domain.name.clone(),
                claims: linking_claims(login.claims),
            }),
            // The hook stays silent this time: create now.
            None => {
                let resumed = Resumed {
                    domain: login.plan.domain.name.to_string(),
                    asserted: request.profile.clone(),
                    chosen: request.profile,
                };
                Box::pin(self.run(
                    login.policy,
                    login.identity,
                    login.claims,
                    Some(resumed),
                    trace,
                ))
                .await
            }
        }
    }

    /// A user this login created: cached by id, and announced to the sinks.
    async fn finish_created(&self, login: &Login<'_>, user: &Arc<User>, trace: &Trace) {
        let domain = &login.plan.domain;
        self.users
            .cache()
            .by_id
            .insert((domain.name.clone(), user.id), user.clone())
            .await;
        self.emit(ProvisioningEvent::Created {
            provider: login.policy.provider.clone(),
            domain: domain.name.to_string(),
            subject: login.identity.subject.clone(),
            user: user.clone(),
            trace: Arc::new(trace.clone()),
        })
        .await;
    }

    /// A user this login linked the identity to: announced to the sinks.
    async fn finish_linked(&self, login: &Login<'_>, user: &Arc<User>) {
        self.emit(ProvisioningEvent::Linked {
            provider: login.policy.provider.clone(),
            domain: login.plan.domain.name.to_string(),
            subject: login.identity.subject.clone(),
            user: user.clone(),
            by: login.policy.linking.by,
        })
        .await;
    }

    /// Syncs an existing (or just linked) user with the login's profile, as the provider's
    /// mode says: not at all, in the background (non-blocking) or before the login completes.
    async fn update(
        &self,
        login: &Login<'_>,
        user: Arc<User>,
        linked: bool,
        trace: &Trace,
    ) -> Result<(Arc<User>, Outcome), ProvisionError> {
        let Login { policy, plan, .. } = *login;
        let domain = &plan.domain;
        let unchanged = if linked {
            Outcome::Linked
        } else {
            Outcome::Unchanged
        };
        if !policy.mode.updates() {
            return Ok((user, unchanged));
        }
        let changes = plan.sync.changes_from(&user, &policy.provider);
        if changes.is_empty() {
            return Ok((user, unchanged));
        }
        let key = login.identity.key();
        // Orders this login's update against the other logins of the identity: the store
        // drops it if a later one was applied first.
        let update = LoginUpdate {
            at: LoginStamp::now(),
            profile: plan.sync.clone(),
            trace: Arc::new(trace.clone()),
        };
        if !policy.blocking {
            let provisioner = self.clone();
            let (domain, provider) = (domain.clone(), policy.provider.clone());
            let id = user.id;
            tokio::spawn(async move {
                provisioner
                    .update_in_background(domain, provider, key, id, update)
                    .await;
            });
            return Ok((user, Outcome::UpdateQueued));
        }
        match self
            .sync(domain, &policy.provider, &key, user.id, &update)
            .await
        {
            Ok(Some(updated)) if updated.locked => {
                self.users.cache().forget(&domain.name, updated.id).await;
                Err(ProvisionError::Locked)
            }
            Ok(Some(updated)) => {
                let outcome = if linked {
                    Outcome::Linked
                } else {
                    Outcome::Updated
                };
                Ok((updated, outcome))
            }
            Ok(None) => Ok((user, unchanged)),
            Err(err) => {
                self.users
                    .cache()
                    .by_identity
                    .invalidate(&(domain.name.clone(), key))
                    .await;
                Err(err.into())
            }
        }
    }

    /// The existing local user an unknown identity may be linked to, linked; `None` when the
    /// policy finds no safe candidate.
    async fn link(
        &self,
        policy: &Policy,
        domain: &Domain,
        identity: &Identity,
        claims: &Claims,
        profile: &Profile,
    ) -> Result<Option<Arc<User>>, ProvisionError> {
        let Some(user) = self.link_candidate(policy, domain, claims, profile).await? else {
            return Ok(None);
        };
        let store = &domain.store;
        match store.link(identity, user.id).await {
            Ok(()) => Ok(Some(Arc::new(user))),
            Err(StoreError::IdentityExists) => {
                Ok(store.find_by_identity(&identity.key()).await?.map(Arc::new))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The existing local user the policy would link an unknown identity to: matched by
    /// username, or by a verified email held by exactly one user; never a locked user, never
    /// one already linked to another account at this provider.
    ///
    /// The store finds the holder by the [`canonical`](crate::store::canonical) form, but a
    /// link needs the asserted value to *be* the holder's: the username exactly, the email up
    /// to ASCII case. A name that only folds to a local one (fullwidth `ａｄｍｉｎ`, `Admin`,
    /// a Kelvin sign) is not linked; creating it then fails as taken (`409`).
    async fn link_candidate(
        &self,
        policy: &Policy,
        domain: &Domain,
        claims: &Claims,
        profile: &Profile,
    ) -> Result<Option<User>, ProvisionError> {
        let store = &domain.store;
        let candidate = match policy.linking.by {
            LinkBy::None => return Ok(None),
            LinkBy::Username => store
                .find_by_username(&profile.username)
                .await?
                .filter(|user| same_username(user, &policy.provider, &profile.username)),
            LinkBy::Email => {
                let Some(email) = profile.email.clone().flatten() else {
                    return Ok(None);
                };
                // A missing or non-boolean `email_verified` is false, never true.
                let verified = claims.get("email_verified") == Some(&Value::Bool(true));
                if !verified && !policy.linking.trust_email {
                    tracing::info!(provider = %policy.provider, "not linking by email: the email is not verified");
                    return Ok(None);
                }
                let mut found = store.find_by_email(&email).await?;
                if found.len() > 1 {
                    tracing::warn!(provider = %policy.provider, "not linking by email: several local users have it");
                    return Ok(None);
                }
                found
                    .pop()
                    .filter(|user| same_email(user, &policy.provider, &email))
            }
        };
        let Some(user) = candidate else {
            return Ok(None);
        };
        if user.locked {
            return Err(ProvisionError::Locked);
        }
        let linked = store.identities_of(user.id).await?;
        if linked.iter().any(|l| l.provider == policy.provider) {
            return Err(ProvisionError::LinkConflict);
        }
        Ok(Some(user))
    }

    /// Brings the stored user in line with `profile`: the diff is computed against the user
    /// as stored now (the cached copy may be stale, and a local change made meanwhile must not
    /// be overwritten), written, and the caches, other instances and sinks are told.
    /// `Ok(None)` when nothing needed writing.
    ///
    /// The diff is applied by the store inside its transaction (group grants as deltas, so a
    /// group granted meanwhile stays) and only if no later login of the identity was applied
    /// before it (`at`); a stale update is dropped, `Ok(None)`.
    async fn sync(
        &self,
        domain: &Arc<Domain>,
        provider: &str,
        key: &IdentityKey,
        id: UserId,
        update: &LoginUpdate,
    ) -> Result<Option<Arc<User>>, StoreError> {
        let (at, profile) = (update.at, &update.profile);
        let fresh = domain
            .store
            .find_by_id(id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let changes = profile.changes_from(&fresh, provider);
        if changes.is_empty() {
            self.users
                .cache()
                .store(&domain.name, key.clone(), Arc::new(fresh))
                .await;
            return Ok(None);
        }
        let Some(updated) = domain.store.update_from_login(key, at, &changes).await? else {
            tracing::info!(provider = %provider, user_id = %id, "dropped an update older than one already applied");
            self.users
                .cache()
                .by_identity
                .invalidate(&(domain.name.clone(), key.clone()))
                .await;
            return Ok(None);
        };
        let updated = Arc::new(updated);
        if self.users.has_bus() {
            // Other instances drop their copies; ours is refreshed just below.
            self.announce(Invalidation::User {
                domain: domain.name.to_string(),
                id,
            })
            .await;
        }
        self.users
            .cache()
            .store(&domain.name, key.clone(), updated.clone())
            .await;
        self.metrics.updated();
        self.emit(ProvisioningEvent::Updated {
            provider: provider.to_owned(),
            domain: domain.name.to_string(),
            subject: key.subject.clone(),
            user: updated.clone(),
            changes: Box::new(changes),
            trace: update.trace.clone(),
        })
        .await;
        Ok(Some(updated))
    }

    async fn update_in_background(
        &self,
        domain: Arc<Domain>,
        provider: String,
        key: IdentityKey,
        id: UserId,
        update: LoginUpdate,
    ) {
        let mut pause = UPDATE_BACKOFF;
        let mut last_error = String::new();
        for attempt in 1..=UPDATE_ATTEMPTS {
            match self.sync(&domain, &provider, &key, id, &update).await {
                Ok(_) => return,
                Err(err) => {
                    last_error = err.to_string();
                    tracing::warn!(provider = %provider, user_id = %id, attempt, error = %err, "background update failed");
                }
            }
            if attempt < UPDATE_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 4;
            }
        }
        self.metrics.update_failed(&provider);
        tracing::error!(provider = %provider, user_id = %id, "background update failed for good");
        self.emit(ProvisioningEvent::UpdateFailed {
            provider,
            domain: domain.name.to_string(),
            user_id: id,
            attempts: UPDATE_ATTEMPTS,
            error: last_error,
        })
        .await;
    }
}

/// Whether the username asserted for a link is the local user's own, not one that only folds
/// to it.
fn same_username(user: &User, provider: &str, asserted: &str) -> bool {
    let same = user.username == asserted;
    if !same {
        tracing::warn!(provider = %provider, user_id = %user.id, "not linking by username: the asserted username only folds to the local one");
    }
    same
}

/// Whether the email asserted for a link is the local user's own (up to ASCII case), not one
/// that only folds to it.
fn same_email(user: &User, provider: &str, asserted: &str) -> bool {
    let same = user
        .email
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case(asserted));
    if !same {
        tracing::warn!(provider = %provider, user_id = %user.id, "not linking by email: the asserted email only folds to the local one");
    }
    same
}

impl Provisioner {
    /// What a login with `claims` would do, reading but never writing.
    pub(crate) async fn preview(
        &self,
        policy: &Policy,
        identity: Option<&Identity>,
        claims: &Claims,
    ) -> crate::policy::Preview {
        use crate::policy::{Preview, PreviewAction};
        let mut preview = Preview {
            provider: policy.provider.clone(),
            domain: None,
            profile: None,
            preview_only: Default::default(),
            existing: None,
            action: PreviewAction::Create,
            trace: Trace::default(),
        };
        let refuse = |err: &ProvisionError| PreviewAction::Refuse {
            code: err.code().to_owned(),
            reason: err.to_string(),
        };
        let mapped = match self.map(policy, claims, &mut preview.trace).await {
            Ok(mapped) => mapped,
            Err(err) => {
                preview.action = refuse(&err);
                return preview;
            }
        };
        preview.preview_only = mapped.preview_only.clone();
        let Mapped {
            profile: sync,
            creation: mut profile,
            ..
        } = mapped;
        let (domain, username) = match self.resolve(policy, &profile.username) {
            Ok(found) => found,
            Err(err) => {
                preview.action = refuse(&err);
                preview.profile = Some(profile);
                return preview;
            }
        };
        profile.username = username;
        preview.domain = Some(domain.name.to_string());
        let existing = match identity {
            Some(identity) => domain.store.find_by_identity(&identity.key()).await,
            None => Ok(None),
        };
        let action = match existing {
            Err(err) => refuse(&err.into()),
            Ok(Some(user)) if user.locked => {
                preview.existing = Some(user);
                refuse(&ProvisionError::Locked)
            }
            Ok(Some(user)) => {
                let changes = sync.changes_from(&user, &policy.provider);
                preview.existing = Some(user);
                if policy.mode.updates() && !changes.is_empty() {
                    PreviewAction::Update {
                        changes: Box::new(changes),
                    }
                } else {
                    PreviewAction::Unchanged
                }
            }
            Ok(None) if policy.mode == ProvisioningMode::Off => {
                refuse(&ProvisionError::JitDisabled)
            }
            Ok(None) => match self.link_candidate(policy, &domain, claims, &profile).await {
                Err(err) => refuse(&err),
                Ok(Some(user)) => {
                    let action = PreviewAction::Link {
                        user_id: user.id,
                        by: policy.linking.by,
                    };
                    preview.existing = Some(user);
                    action
                }
                Ok(None) if !policy.mode.creates() => refuse(&ProvisionError::JitDisabled),
                Ok(None) => match domain.store.find_by_username(&profile.username).await {
                    Ok(Some(_)) => refuse(&ProvisionError::UsernameTaken(profile.username.clone())),
                    Ok(None) => PreviewAction::Create,
                    Err(err) => refuse(&err.into()),
                },
            },
        };
        preview.profile = Some(profile);
        preview.action = action;
        preview
    }
}

// The provisioning counters live here, beside the outcomes they count, so that `metrics`
// stays a leaf that the store can use.
impl Metrics {
    /// A provisioning run of `provider` ended (see [`names::PROVISIONING`](crate::metrics::names::PROVISIONING)).
    pub(crate) fn provisioned(&self, provider: &str, result: &Result<Provisioned, ProvisionError>) {
        let outcome = match result {
            Ok(Provisioned::Done { outcome, .. }) => outcome_label(*outcome),
            Ok(Provisioned::Prompt { .. }) => "prompt",
            Err(_) => "refused",
        };
        if outcome == "created" {
            Metrics::add(&self.users_created);
        }
        ::metrics::counter!(crate::metrics::names::PROVISIONING, "provider" => provider.to_owned(), "outcome" => outcome)
            .increment(1);
    }
}

/// The `outcome` label of a provisioning outcome.
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Created => "created",
        Outcome::Linked => "linked",
        Outcome::Updated => "updated",
        Outcome::UpdateQueued => "update_queued",
        Outcome::Unchanged => "unchanged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DomainPolicy;
    use crate::store::MemoryStore;

    fn domain() -> Domain {
        Domain {
            name: Arc::from(PRIMARY_DOMAIN),
            store: Arc::new(MemoryStore::new()),
            policy: DomainPolicy::default(),
        }
    }

    fn asserted() -> Profile {
        let mut profile = Profile::new("mallory");
        profile.email = Some(Some("mallory@example.com".into()));
        profile.display_name = Some(Some("Mallory".into()));
        profile.groups = Some(["staff".to_owned()].into());
        profile.attributes.insert("dept".into(), "sales".into());
        profile.idp_attributes = ["email".to_owned(), "dept".to_owned()].into();
        profile
    }

    #[test]
    fn a_resumed_profile_only_fills_what_creation_asks_for() {
        let mut chosen = Profile::new("admin");
        chosen.email = Some(Some("admin@example.com".into()));
        chosen.display_name = Some(Some("Boss".into()));
        chosen.groups = Some(["admins".to_owned()].into());
        chosen.attributes.insert("dept".into(), "it".into());
        chosen.attributes.insert("nickname".into(), "mm".into());
        chosen.idp_attributes.clear();
        let resumed = Resumed {
            domain: PRIMARY_DOMAIN.into(),
            asserted: asserted(),
            chosen,
        };
        let created = resumed.creation_profile(&domain()).unwrap();
        assert_eq!(created.username, "admin");
        assert_eq!(created.display_name, Some(Some("Boss".into())));
        assert_eq!(created.email, asserted().email);
        assert_eq!(created.groups, asserted().groups);
        assert_eq!(created.attributes["dept"], "sales", "asserted wins");
        assert_eq!(created.attributes["nickname"], "mm");
        assert_eq!(created.idp_attributes, asserted().idp_attributes);
    }

    #[test]
    fn a_resumed_username_goes_through_the_domain_policy() {
        let resumed = Resumed {
            domain: PRIMARY_DOMAIN.into(),
            asserted: asserted(),
            chosen: Profile::new("EXT/boss"),
        };
        let err = resumed.creation_profile(&domain()).unwrap_err();
        assert_eq!(err.code(), "username_policy");
    }

    #[test]
    fn an_admission_refusal_carries_its_decision() {
        use crate::mapping::trace::{Target, Verdict};
        let mut config = ProviderConfig::new("https://idp.example", "app");
        config.admission.require_groups = Some(vec!["staff".into()]);
        let policy = Policy::new("corp", &config, None).unwrap();
        let claims = Claims(
            serde_json::json!({"groups": ["finance"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        let mut trace = Trace::default();
        let err = policy.admit(&claims, &mut trace).unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::FORBIDDEN, "not_admitted")
        );
        let ProvisionError::NotAdmitted { rule, decision } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(rule, "admission.require_groups");
        assert_eq!(decision.target, Target::Admission);
        assert_eq!(decision.claims, ["groups"]);
        assert_eq!(decision.verdict, Verdict::Refused);
        assert_eq!(trace.refusal(), Some(&**decision));
        assert!(err.to_string().contains("admission.require_groups"));
        assert_eq!(err.duplicate().code(), "not_admitted");
    }

    #[test]
    fn the_prompt_state_keeps_only_the_claims_linking_reads() {
        let claims = Claims(
            serde_json::json!({"email_verified": true, "groups": ["a"], "sub": "x"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let kept = linking_claims(&claims);
        assert_eq!(kept.0.len(), 1);
        assert_eq!(kept.get("email_verified"), Some(&Value::Bool(true)));
    }

    // The provisioning core's decisions with a memory store: create, find, update, link and
    // refuse, each with what it writes and the events it delivers.

    use std::sync::Mutex;

    use crate::config::CacheConfig;
    use crate::session::UserCache;
    use crate::store::UserStore;

    type Events = Arc<Mutex<Vec<ProvisioningEvent>>>;

    /// A provisioner over `store` (the primary domain) recording its events.
    fn provisioner(store: impl UserStore) -> (Provisioner, Events) {
        let events = Events::default();
        let sink = {
            let events = events.clone();
            move |e: &ProvisioningEvent| events.lock().unwrap().push(e.clone())
        };
        let name: Arc<str> = Arc::from(PRIMARY_DOMAIN);
        let domain = Domain {
            name: name.clone(),
            store: Arc::new(store),
            policy: DomainPolicy::default(),
        };
        let cache = UserCache::new(&CacheConfig::default(), None);
        let sessions = crate::session::Sessions::new(
            crate::session::SessionStoreHandle::new(crate::session::MemorySessionStore::new()),
            crate::session::CookieCodec::new(&crate::session::SessionKey::generate(), &[], true),
            "jit_session".to_owned(),
            3600,
            0,
            cache.clone(),
            None,
        );
        let metrics = Arc::new(Metrics::default());
        let users = Directory::new(
            HashMap::from([(name, Arc::new(domain))]),
            cache,
            None,
            metrics.clone(),
        );
        let provisioner = Provisioner::new(
            users,
            HashMap::new(),
            sessions,
            metrics,
            crate::events::Events::new(vec![Arc::new(sink)]),
            Hooks::default(),
        );
        (provisioner, events)
    }

    fn policy(config: ProviderConfig) -> Policy {
        Policy::new("corp", &config, None).unwrap()
    }

    fn corp() -> ProviderConfig {
        ProviderConfig::new("https://idp.example", "app")
    }

    fn identity(subject: &str) -> Identity {
        Identity::new("corp", "https://idp.example", subject)
    }

    fn claims(value: Value) -> Claims {
        Claims(value.as_object().unwrap().clone())
    }

    fn jane() -> Claims {
        claims(serde_json::json!({
            "sub": "s-1", "preferred_username": "jane", "email": "jane@example.com",
            "email_verified": true, "name": "Jane",
        }))
    }

    /// The kinds of the events delivered so far.
    fn kinds(events: &Events) -> Vec<String> {
        let events = events.lock().unwrap();
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    async fn run(
        provisioner: &Provisioner,
        policy: &Policy,
        subject: &str,
        claims: &Claims,
    ) -> Result<(Arc<User>, Outcome), ProvisionError> {
        match provisioner
            .provision(policy, &identity(subject), claims, None)
            .await?
        {
            Provisioned::Done { user, outcome, .. } => Ok((user, outcome)),
            Provisioned::Prompt { .. } => panic!("no prompt hook is registered"),
        }
    }

    #[tokio::test]
    async fn a_first_login_creates_and_the_next_finds_the_same_user() {
        let store = MemoryStore::new();
        let (provisioner, events) = provisioner(store.clone());
        let policy = policy(corp());
        let (created, outcome) = run(&provisioner, &policy, "s-1", &jane()).await.unwrap();
        assert_eq!(outcome, Outcome::Created);
        assert_eq!(created.username, "jane");
        assert_eq!(created.email.as_deref(), Some("jane@example.com"));
        let (found, outcome) = run(&provisioner, &policy, "s-1", &jane()).await.unwrap();
        assert_eq!((found.id, outcome), (created.id, Outcome::Unchanged));
        assert_eq!(store.user_count(), 1);
        assert_eq!(kinds(&events), ["created"]);
    }

    #[tokio::test]
    async fn changed_claims_update_the_stored_user_with_the_diff() {
        let store = MemoryStore::new();
        let (provisioner, events) = provisioner(store.clone());
        let policy = policy(corp());
        let (created, _) = run(&provisioner, &policy, "s-1", &jane()).await.unwrap();
        let mut renamed = jane();
        renamed.0.insert("name".into(), "Jane Doe".into());
        let (updated, outcome) = run(&provisioner, &policy, "s-1", &renamed).await.unwrap();
        assert_eq!((updated.id, outcome), (created.id, Outcome::Updated));
        let stored = store.find_by_id(created.id).await.unwrap().unwrap();
        assert_eq!(stored.display_name.as_deref(), Some("Jane Doe"));
        assert_eq!(kinds(&events), ["created", "updated"]);
        let update = events.lock().unwrap()[1].clone();
        let ProvisioningEvent::Updated { changes, .. } = update else {
            panic!("an update event");
        };
        assert_eq!(changes.display_name, Some(Some("Jane Doe".into())));
        assert_eq!(changes.email, None, "only what changed");

        // Create-only leaves the user as it is.
        let create_only = self::policy(corp().mode(ProvisioningMode::CreateOnly));
        let (_, outcome) = run(&provisioner, &create_only, "s-1", &jane())
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Unchanged);
        let stored = store.find_by_id(created.id).await.unwrap().unwrap();
        assert_eq!(stored.display_name.as_deref(), Some("Jane Doe"));
    }

    #[tokio::test]
    async fn linking_by_email_needs_a_verified_email_and_links_the_local_account() {
        let store = MemoryStore::new();
        let mut local = Profile::new("jane.local");
        local.email = Some(Some("Jane@Example.com".into()));
        let local = store.insert_local(&local).unwrap();
        let (provisioner, events) = provisioner(store.clone());
        let by_email = policy(corp().linking(LinkingConfig {
            by: LinkBy::Email,
            ..LinkingConfig::default()
        }));

        // Not verified: not linked, a user of its own is created.
        let mut unverified = jane();
        unverified
            .0
            .insert("email_verified".into(), Value::Bool(false));
        let (other, outcome) = run(&provisioner, &by_email, "s-0", &unverified)
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Created);
        assert_ne!(other.id, local.id);
        store.delete(other.id).await.unwrap();

        let (linked, outcome) = run(&provisioner, &by_email, "s-1", &jane()).await.unwrap();
        assert_eq!((linked.id, outcome), (local.id, Outcome::Linked));
        let links = store.identities_of(local.id).await.unwrap();
        assert_eq!(
            links.iter().map(|l| l.subject.as_str()).collect::<Vec<_>>(),
            ["s-1"]
        );
        // The link syncs the mapped attributes at once (the outcome stays `Linked`).
        assert_eq!(kinds(&events), ["created", "linked", "updated"]);
        assert_eq!(linked.display_name.as_deref(), Some("Jane"));
        assert_eq!(
            linked.username, "jane.local",
            "the username is the account's own"
        );

        // Another subject of the provider is not linked to the same account again.
        let err = run(&provisioner, &by_email, "s-2", &jane())
            .await
            .unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::CONFLICT, "link_conflict")
        );
    }

    #[tokio::test]
    async fn refusals_write_nothing_and_are_reported() {
        let store = MemoryStore::new();
        let (provisioner, events) = provisioner(store.clone());
        // Mode off: an unknown identity is refused.
        let off = policy(corp().mode(ProvisioningMode::Off));
        let err = run(&provisioner, &off, "s-1", &jane()).await.unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::FORBIDDEN, "jit_disabled")
        );
        assert_eq!(store.user_count(), 0);

        // Linking off (the default): a local account's username is a conflict, not a link.
        store.insert_local(&Profile::new("jane")).unwrap();
        let policy = policy(corp());
        let err = run(&provisioner, &policy, "s-1", &jane())
            .await
            .unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::CONFLICT, "username_taken")
        );
        assert!(
            store
                .find_by_identity(&identity("s-1").key())
                .await
                .unwrap()
                .is_none()
        );

        // A locked user is refused, and no login unlocks it.
        let mut bob = jane();
        bob.0.insert("preferred_username".into(), "bob".into());
        let (user, _) = run(&provisioner, &policy, "s-2", &bob).await.unwrap();
        store.set_locked(user.id, true).await.unwrap();
        provisioner.users.cache().by_identity.invalidate_all();
        let err = run(&provisioner, &policy, "s-2", &bob).await.unwrap_err();
        assert_eq!(err.code(), "user_locked");
        assert!(store.find_by_id(user.id).await.unwrap().unwrap().locked);
        assert_eq!(
            kinds(&events),
            ["rejected", "rejected", "created", "rejected"]
        );
    }

    /// A memory store whose `create` waits at a gate, so the other first logins of the
    /// identity queue behind the one creating.
    #[derive(Clone)]
    struct GatedCreate {
        inner: MemoryStore,
        gate: Arc<tokio::sync::Semaphore>,
        entered: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl UserStore for GatedCreate {
        async fn find_by_identity(&self, key: &IdentityKey) -> Result<Option<User>, StoreError> {
            self.inner.find_by_identity(key).await
        }
        async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
            self.inner.find_by_id(id).await
        }
        async fn find_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
            self.inner.find_by_username(username).await
        }
        async fn find_by_email(&self, email: &str) -> Result<Vec<User>, StoreError> {
            self.inner.find_by_email(email).await
        }
        async fn create(&self, identity: &Identity, profile: &Profile) -> Result<User, StoreError> {
            self.entered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _permit = self.gate.acquire().await.expect("the gate stays open");
            self.inner.create(identity, profile).await
        }
        async fn link(&self, identity: &Identity, user: UserId) -> Result<(), StoreError> {
            self.inner.link(identity, user).await
        }
        async fn update(
            &self,
            id: UserId,
            changes: &crate::store::ProfileChanges,
        ) -> Result<User, StoreError> {
            self.inner.update(id, changes).await
        }
        async fn update_from_login(
            &self,
            key: &IdentityKey,
            at: LoginStamp,
            changes: &crate::store::ProfileChanges,
        ) -> Result<Option<User>, StoreError> {
            self.inner.update_from_login(key, at, changes).await
        }
        async fn record_login(&self, key: &IdentityKey, at: i64) -> Result<(), StoreError> {
            self.inner.record_login(key, at).await
        }
        async fn identities_of(
            &self,
            user: UserId,
        ) -> Result<Vec<crate::store::LinkedIdentity>, StoreError> {
            self.inner.identities_of(user).await
        }
        async fn identities_by_provider(
            &self,
            provider: &str,
        ) -> Result<Vec<crate::store::LinkedIdentity>, StoreError> {
            self.inner.identities_by_provider(provider).await
        }
        async fn set_locked(&self, id: UserId, locked: bool) -> Result<(), StoreError> {
            self.inner.set_locked(id, locked).await
        }
        async fn delete(&self, id: UserId) -> Result<(), StoreError> {
            self.inner.delete(id).await
        }
    }

    #[tokio::test]
    async fn of_concurrent_first_logins_one_creates_and_the_waiters_find_its_user() {
        const LOGINS: usize = 5;
        let store = GatedCreate {
            inner: MemoryStore::new(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            entered: Arc::default(),
        };
        let (provisioner, events) = provisioner(store.clone());
        let policy = policy(corp());
        let claims = jane();
        let logins = futures_util::future::join_all(
            (0..LOGINS).map(|_| run(&provisioner, &policy, "s-1", &claims)),
        );
        // On this single-threaded runtime every login has run up to its first wait before
        // the gate opens: one in `create`, the others behind it in the identity's lookup.
        let open = async {
            while store.entered.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
            store.gate.add_permits(LOGINS);
        };
        let (results, ()) = tokio::join!(logins, open);
        let results: Vec<(Arc<User>, Outcome)> = results.into_iter().map(Result::unwrap).collect();
        let outcomes: Vec<Outcome> = results.iter().map(|(_, outcome)| *outcome).collect();
        let mut expected = vec![Outcome::Unchanged; LOGINS];
        expected[0] = Outcome::Created;
        assert_eq!(
            outcomes, expected,
            "the first creates, its waiters found the user"
        );
        let id = results[0].0.id;
        assert!(
            results.iter().all(|(user, _)| user.id == id),
            "one user for all"
        );
        // Coalesced: one lookup and one create for all the logins, one event.
        assert_eq!(store.entered.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(store.inner.counters().reads(), 1);
        assert_eq!(store.inner.counters().creates(), 1);
        assert_eq!(store.inner.user_count(), 1);
        assert_eq!(kinds(&events), ["created"]);
    }
}
