//! Turning validated claims into a local [`Profile`] by a provider's [`MappingConfig`]:
//! username template, email and display name, custom attributes from claims or SAML attribute
//! URIs, defaults, constants, required claims, and groups with an allow-list over the IdP's
//! names, renames and an optional per-provider namespace; who owns each field
//! ([`Ownership`]); Entra ID's group overage; and a [`Trace`] of every decision.
//!
//! Every place a claim is named (template placeholders, `required`, `groups.claim`, the SAML
//! `identity_attribute`) takes a [`ClaimPath`]: a verbatim top-level name first (SAML
//! attribute URIs keep working), else a dotted path with quoted segments
//! (`realm_access.roles`, `resource_access."my-app".roles`).

pub mod admission;
pub mod path;
pub mod roles;
mod template;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::path::{ClaimPath, ClaimPathError};
pub use self::template::{Template, TemplateError};
pub use self::trace::{Decision, Target, Trace, Verdict};
use crate::store::Profile;

/// The claims of a validated identity, as a JSON object (ID token claims, merged with
/// userinfo claims when configured).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// A claim as a string, when it is one (numbers and booleans are rendered too).
    ///
    /// ```
    /// let c = jit_provision::Claims(serde_json::json!({"a": "x", "n": 3}).as_object().unwrap().clone());
    /// assert_eq!(c.str("a").as_deref(), Some("x"));
    /// assert_eq!(c.str("n").as_deref(), Some("3"));
    /// assert_eq!(c.str("missing"), None);
    /// ```
    pub fn str(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The raw claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The first value of a multi-valued claim (a JSON array), as a string.
    pub fn first(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::Array(items) => items.iter().find_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            _ => None,
        }
    }
}

/// Why claims could not be mapped to a user. Nothing is written when this happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A claim the mapping needs is absent or empty.
    #[error("the identity provider did not send the required attribute `{0}`")]
    MissingClaim(String),
    /// A claim has a shape the mapping cannot use.
    #[error("the attribute `{0}` has an unusable value")]
    InvalidClaim(String),
}

/// Why a [`MappingConfig`] cannot be used: found by [`MappingConfig::compile`], at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingConfigError {
    /// A template does not parse.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A claim path (`required`, `groups.claim`) does not parse.
    #[error(transparent)]
    ClaimPath(#[from] ClaimPathError),
    /// An `ownership` entry names no mapped field (not `email`, `display_name`, nor a key of
    /// `attributes` or `constants`).
    #[error(
        "ownership `{0}`: no such mapped field (expected email, display_name, or a key of attributes or constants)"
    )]
    UnknownOwnership(String),
    /// `groups.namespace` is empty, too long, or holds `:`, `*`, whitespace or control
    /// characters.
    #[error(
        "groups.namespace `{0}` is not allowed: 1 to {MAX_NAMESPACE} bytes, no `:`, `*`, whitespace or control characters"
    )]
    InvalidNamespace(String),
    /// A `groups.rename` entry names an IdP group that `groups.allow` does not let in, so it
    /// could never apply (`allow` filters the IdP's names, before renaming).
    #[error(
        "groups.rename `{0}`: `groups.allow` does not let this IdP group in (the allow-list matches the IdP's names, before renaming)"
    )]
    RenameNotAllowed(String),
}

/// Longest username, email, display name or attribute value accepted.
const MAX_FIELD: usize = 256;
/// Most groups accepted from one login.
const MAX_GROUPS: usize = 1024;
/// Longest `groups.namespace`.
const MAX_NAMESPACE: usize = 64;

/// Which claims become which local fields. Every field is optional in TOML.
///
/// ```
/// let m: jit_provision::MappingConfig = toml::from_str(r#"
///     username = "{email | localpart | lowercase}"
///     required = ["email"]
///     [attributes]
///     department = "{http://schemas.example.com/claims/department}"
///     [constants]
///     source = "corp-sso"
///     [ownership]
///     department = "on_create"
///     [groups]
///     claim = "realm_access.roles"
///     allow = ["eng-*", "staff"]
///     rename = { "eng-admins" = "admins" }
/// "#).unwrap();
/// assert!(m.compile().is_ok());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MappingConfig {
    /// Template of a new user's username. Default `{preferred_username}`. Fixed after creation.
    pub username: String,
    /// Template of the email. Default `{email}`; empty: email not managed by this provider.
    pub email: String,
    /// Template of the display name. Default `{name}`; empty: not managed.
    pub display_name: String,
    /// Local attribute name → template over claims (OIDC claim names or SAML attribute names,
    /// URIs included). An attribute whose claims are absent takes its default, or is skipped.
    pub attributes: BTreeMap<String, String>,
    /// Local attribute name → value used when its template cannot be rendered.
    pub defaults: BTreeMap<String, String>,
    /// Local attribute name → fixed value (set on every user of this provider).
    pub constants: BTreeMap<String, String>,
    /// Claims (claim paths) that must be present and non-empty; a login without one is
    /// refused with `403` naming it, and nothing is created.
    pub required: Vec<String>,
    /// Group sync; none: this provider does not manage groups.
    pub groups: Option<GroupsConfig>,
    /// Who owns each mapped field (`email`, `display_name`, an attribute or constant name):
    /// a field without an entry is [`Ownership::Always`].
    pub ownership: BTreeMap<String, Ownership>,
}

/// Who owns a mapped field, set per field in `[mapping.ownership]`.
///
/// ```
/// use jit_provision::mapping::{MappingConfig, Ownership};
/// let m: MappingConfig = toml::from_str(r#"
///     attributes = { dept = "{department}", title = "{title}" }
///     [ownership]
///     dept = "on_create"
///     title = "never"
/// "#).unwrap();
/// assert_eq!(m.ownership["dept"], Ownership::OnCreate);
/// assert!(m.compile().is_ok());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// The identity provider owns it: synced at every login, read-only locally (the
    /// default).
    #[default]
    Always,
    /// Set when the user is created, then the application owns it: never synced again,
    /// editable locally.
    OnCreate,
    /// Mapped for dry runs only: never written.
    Never,
}

impl Ownership {
    /// How a trace names it.
    fn rule(self) -> &'static str {
        match self {
            Self::Always => "",
            Self::OnCreate => "; ownership on_create",
            Self::Never => "; ownership never",
        }
    }
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            username: "{preferred_username}".into(),
            email: "{email}".into(),
            display_name: "{name}".into(),
            attributes: BTreeMap::new(),
            defaults: BTreeMap::new(),
            constants: BTreeMap::new(),
            required: Vec::new(),
            groups: None,
            ownership: BTreeMap::new(),
        }
    }
}

/// What an absent groups claim means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbsentGroups {
    /// The provider said nothing: keep what it granted before (the default; some providers
    /// omit the claim when it would be large or empty).
    #[default]
    Keep,
    /// The provider grants nothing: remove what it granted before.
    Clear,
}

/// Groups from a claim, filtered, renamed and namespaced, synced at every login.
///
/// **Overage.** When a user is in too many groups, Entra ID sends no groups claim but
/// `_claim_names: {"groups": "src1"}` (with `_claim_sources`), or `hasgroups: true`. That is
/// never read as "no groups": the provider's grants are kept, even with
/// `when_absent = "clear"`, unless a [`GroupResolver`] registered for the provider
/// ([`JitLayerBuilder::group_resolver`](crate::JitLayerBuilder::group_resolver)) fetches
/// the full list.
///
/// Each group name the IdP sends goes through three steps:
///
/// 1. **`allow`** filters the IdP's own names (before any renaming): a group no pattern
///    matches is dropped. Empty: every group passes.
/// 2. **`rename`** maps an IdP name to a local group, verbatim. A rename is the only way a
///    login reaches a rename target: an IdP group whose own name (namespaced, if a namespace
///    is set) equals some rename's target is dropped, so an IdP group literally called
///    `admins` does not grant what `rename = { "idp-admins" = "admins" }` grants.
/// 3. **`namespace`**: when set, every group that was not renamed is granted as
///    `{namespace}:{name}`, so an untrusted or self-service IdP can never grant a local group
///    by naming it; explicit renames are then the only way to an un-namespaced local group.
///
/// ```
/// use jit_provision::{Claims, MappingConfig, config::GroupsConfig};
/// let groups: GroupsConfig = toml::from_str(r#"
///     claim = "groups"
///     allow = ["eng-*", "idp-admins"]
///     rename = { "idp-admins" = "admins" }
///     namespace = "corp"
/// "#).unwrap();
/// let mut config = MappingConfig::default();
/// config.groups = Some(groups);
/// let mapping = config.compile().unwrap();
/// let claims = Claims(serde_json::json!({
///     "preferred_username": "jane",
///     "groups": ["eng-web", "idp-admins", "admins", "finance"],
/// }).as_object().unwrap().clone());
/// let granted = mapping.map(&claims).unwrap().groups.unwrap();
/// // `admins` and `finance` are not let in by `allow`; `admins` is only reached by its rename.
/// assert_eq!(granted.into_iter().collect::<Vec<_>>(), ["admins", "corp:eng-web"]);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GroupsConfig {
    /// The claim path (an array of strings, or one string): `groups`,
    /// `realm_access.roles`, `resource_access."my-app".roles`.
    pub claim: String,
    /// IdP group names let in, as the IdP sends them (before renaming and namespacing); `*`
    /// matches any run of characters. A renamed group must be let in too. Empty: every
    /// group.
    #[serde(default)]
    pub allow: Vec<String>,
    /// IdP group name → local group name (never namespaced). A rename target is granted only
    /// through its rename, never to an IdP group of that literal name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Prefix of every group that is not renamed: IdP group `eng` is granted as
    /// `{namespace}:eng`. Default: none (the IdP's names are local names, which is right only
    /// for an IdP you trust with your local group names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What an absent claim means. Default `keep`. An overage is never "absent".
    #[serde(default)]
    pub when_absent: AbsentGroups,
}

impl GroupsConfig {
    /// Groups from `claim`, every group allowed, no renames, no namespace.
    pub fn from_claim(claim: impl Into<String>) -> Self {
        Self {
            claim: claim.into(),
            allow: Vec::new(),
            rename: BTreeMap::new(),
            namespace: None,
            when_absent: AbsentGroups::Keep,
        }
    }

    /// Checks the settings and collects the rename targets.
    fn compile(&self) -> Result<GroupRules, MappingConfigError> {
        if let Some(namespace) = &self.namespace {
            let bad = |c: char| c == ':' || c == '*' || c.is_whitespace() || c.is_control();
            if namespace.is_empty() || namespace.len() > MAX_NAMESPACE || namespace.contains(bad) {
                return Err(MappingConfigError::InvalidNamespace(
                    namespace.chars().take(MAX_NAMESPACE).collect(),
                ));
            }
        }
        if let Some(dead) = self.rename.keys().find(|group| !self.allows(group)) {
            return Err(MappingConfigError::RenameNotAllowed(dead.clone()));
        }
        Ok(GroupRules {
            claim: self.claim.parse()?,
            targets: self.rename.values().cloned().collect(),
            config: self.clone(),
        })
    }

    /// Whether the allow-list lets the IdP group `group` in.
    fn allows(&self, group: &str) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|p| glob(p, group))
    }
}

/// A [`GroupsConfig`] checked, with the set of rename targets.
#[derive(Debug, Clone)]
struct GroupRules {
    config: GroupsConfig,
    claim: ClaimPath,
    targets: BTreeSet<String>,
}

impl GroupRules {
    /// The local group an IdP group grants, if any: allowed by its IdP name, then renamed,
    /// or namespaced and kept off the rename targets. The decision goes into `trace`.
    fn local_name(&self, group: &str, trace: &mut Trace) -> Option<String> {
        let claim = [self.claim.as_str()];
        if !self.config.allows(group) {
            trace.push(
                Target::Group(group.to_owned()),
                "groups.allow",
                claim,
                Verdict::Dropped,
            );
            return None;
        }
        if let Some(local) = self.config.rename.get(group) {
            let rule = format!("groups.rename {group} -> {local}");
            trace.push(Target::Group(local.clone()), rule, claim, Verdict::Granted);
            return Some(local.clone());
        }
        let (local, rule) = match &self.config.namespace {
            Some(namespace) => (format!("{namespace}:{group}"), "groups.namespace"),
            None => (group.to_owned(), "groups.claim"),
        };
        if self.targets.contains(&local) {
            let rule = "groups.rename target (reached only through its rename)";
            trace.push(
                Target::Group(group.to_owned()),
                rule,
                claim,
                Verdict::Dropped,
            );
            return None;
        }
        trace.push(Target::Group(local.clone()), rule, claim, Verdict::Granted);
        Some(local)
    }

    /// Whether the claims signal an overage instead of the groups: Entra ID's
    /// `_claim_names` naming the claim, or `hasgroups: true`.
    fn overage(&self, claims: &Claims) -> Option<&'static str> {
        let named = claims
            .get("_claim_names")
            .and_then(Value::as_object)
            .is_some_and(|names| {
                names.contains_key(self.claim.as_str()) || names.contains_key(self.claim.root())
            });
        if named {
            return Some("_claim_names");
        }
        let has = matches!(claims.get("hasgroups"), Some(Value::Bool(true)))
            || claims.get("hasgroups").and_then(Value::as_str) == Some("true");
        has.then_some("hasgroups")
    }
}

/// Fetches the full group list of a user when the identity provider sent an overage
/// (Entra ID's `_claim_names` / `hasgroups`) instead of the groups; registered per provider
/// with [`JitLayerBuilder::group_resolver`](crate::JitLayerBuilder::group_resolver).
///
/// The resolver gets the validated claims (Entra ID's `oid`, `tid` and `_claim_sources`
/// say whose groups to fetch, from Microsoft Graph say, with the application's own
/// credentials) and answers the IdP's group names, which then go through `allow`, `rename`
/// and `namespace` like a groups claim. A failure keeps the user's grants as they are (and
/// is logged); it never refuses the login.
///
/// ```
/// use futures_util::future::BoxFuture;
/// use jit_provision::Claims;
/// use jit_provision::mapping::{GroupResolver, GroupResolverError};
/// struct Graph;
/// impl GroupResolver for Graph {
///     fn resolve<'a>(&'a self, _provider: &'a str, claims: &'a Claims)
///         -> BoxFuture<'a, Result<Vec<String>, GroupResolverError>> {
///         Box::pin(async move {
///             let _oid = claims.str("oid").ok_or_else(|| GroupResolverError::new("no oid"))?;
///             Ok(vec!["eng-web".to_owned()]) // fetched from Graph
///         })
///     }
/// }
/// # let _ = jit_provision::JitLayer::builder().group_resolver("entra", Graph);
/// ```
pub trait GroupResolver: Send + Sync + 'static {
    /// The IdP group names of the user these claims describe.
    fn resolve<'a>(
        &'a self,
        provider: &'a str,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<Vec<String>, GroupResolverError>>;
}

/// Why a [`GroupResolver`] could not answer: the user's grants are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the group resolver failed: {0}")]
pub struct GroupResolverError(String);

impl GroupResolverError {
    /// An error with a reason (do not put tokens or secrets in it: it is logged).
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A [`MappingConfig`] with its templates parsed: built once per provider.
#[derive(Debug, Clone)]
pub struct Mapping {
    username: Template,
    email: Template,
    display_name: Template,
    attributes: Vec<(String, Template)>,
    required: Vec<ClaimPath>,
    groups: Option<GroupRules>,
    config: MappingConfig,
}

/// What [`Mapping::explain`] made of a login's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mapped {
    /// What every login syncs: the fields the identity provider owns
    /// ([`Ownership::Always`]), which are also its read-only fields (`idp_attributes`).
    pub profile: Profile,
    /// What a new user is created with: [`profile`](Self::profile) and the
    /// [`Ownership::OnCreate`] fields.
    pub creation: Profile,
    /// The [`Ownership::Never`] fields' values: shown by dry runs, never written.
    pub preview_only: BTreeMap<String, String>,
    /// The groups claim was replaced by an overage signal (see [`GroupsConfig`]): the groups
    /// are `None` (kept) unless a [`GroupResolver`] fetches them.
    pub group_overage: bool,
}

impl MappingConfig {
    /// Sets the group mapping ([`groups`](Self::groups)).
    ///
    /// ```
    /// use jit_provision::{MappingConfig, config::GroupsConfig};
    /// let mapping = MappingConfig::default().with_groups(GroupsConfig::from_claim("groups"));
    /// assert!(mapping.groups.is_some());
    /// ```
    pub fn with_groups(mut self, groups: GroupsConfig) -> Self {
        self.groups = Some(groups);
        self
    }

    /// Parses the templates and checks the group rules; a bad template, namespace or rename
    /// is an error here, at start-up, not at login.
    ///
    /// ```
    /// use jit_provision::{MappingConfig, config::GroupsConfig, mapping::MappingConfigError};
    /// let mut groups = GroupsConfig::from_claim("groups");
    /// groups.allow = vec!["eng-*".into()];
    /// groups.rename = [("idp-admins".to_owned(), "admins".to_owned())].into();
    /// let mut config = MappingConfig::default();
    /// config.groups = Some(groups);
    /// // `allow` matches the IdP's names: `idp-admins` is not let in, so the rename is dead.
    /// assert_eq!(
    ///     config.compile().unwrap_err(),
    ///     MappingConfigError::RenameNotAllowed("idp-admins".into())
    /// );
    /// ```
    pub fn compile(&self) -> Result<Mapping, MappingConfigError> {
        let attributes = self
            .attributes
            .iter()
            .map(|(name, t)| Ok((name.clone(), t.parse()?)))
            .collect::<Result<_, TemplateError>>()?;
        let mapped = |field: &str| {
            matches!(field, "email" | "display_name")
                || self.attributes.contains_key(field)
                || self.constants.contains_key(field)
        };
        if let Some(unknown) = self.ownership.keys().find(|f| !mapped(f)) {
            return Err(MappingConfigError::UnknownOwnership(unknown.clone()));
        }
        Ok(Mapping {
            username: self.username.parse()?,
            email: self.email.parse()?,
            display_name: self.display_name.parse()?,
            attributes,
            required: self
                .required
                .iter()
                .map(|r| r.parse())
                .collect::<Result<_, _>>()?,
            groups: self
                .groups
                .as_ref()
                .map(GroupsConfig::compile)
                .transpose()?,
            config: self.clone(),
        })
    }
}

impl Mapping {
    /// The configuration this was compiled from.
    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    /// Maps claims to the profile every login syncs ([`Mapped::profile`]); see
    /// [`explain`](Self::explain) for the profile of a new user and the trace.
    ///
    /// ```
    /// use jit_provision::{Claims, MappingConfig};
    /// let claims = Claims(serde_json::json!({
    ///     "sub": "1", "preferred_username": "jane", "email": "jane@example.com", "name": "Jane"
    /// }).as_object().unwrap().clone());
    /// let profile = MappingConfig::default().compile().unwrap().map(&claims).unwrap();
    /// assert_eq!(profile.username, "jane");
    /// assert_eq!(profile.groups, None); // no groups configured: groups left alone
    /// ```
    pub fn map(&self, claims: &Claims) -> Result<Profile, MappingError> {
        Ok(self.explain(claims, &mut Trace::default())?.profile)
    }

    /// Maps claims, recording every decision in `trace` (the rule and the claim paths it
    /// read, never a value), also when the mapping fails: the failing rule is the trace's
    /// [`refusal`](Trace::refusal).
    ///
    /// ```
    /// use jit_provision::{Claims, MappingConfig};
    /// use jit_provision::mapping::{Target, Trace, Verdict};
    /// let config: MappingConfig = toml::from_str(r#"
    ///     attributes = { dept = "{org.department}" }
    ///     ownership = { dept = "on_create" }
    /// "#).unwrap();
    /// let claims = Claims(serde_json::json!({
    ///     "preferred_username": "jane", "org": {"department": "R&D"}
    /// }).as_object().unwrap().clone());
    /// let mut trace = Trace::default();
    /// let mapped = config.compile().unwrap().explain(&claims, &mut trace).unwrap();
    /// assert_eq!(mapped.creation.attributes["dept"], "R&D");
    /// assert!(!mapped.profile.attributes.contains_key("dept")); // not synced later
    /// let dept = trace.0.iter().find(|d| d.target == Target::Attribute("dept".into())).unwrap();
    /// assert_eq!((dept.claims.as_slice(), dept.verdict), (&["org.department".to_owned()][..], Verdict::Set));
    /// ```
    pub fn explain(&self, claims: &Claims, trace: &mut Trace) -> Result<Mapped, MappingError> {
        self.check_required(claims, trace)?;
        let username = self.username(claims, trace)?;
        let mut out = Mapped {
            profile: Profile::new(username.clone()),
            creation: Profile::new(username),
            preview_only: BTreeMap::new(),
            group_overage: false,
        };
        self.field("email", &self.email, claims, trace, &mut out)?;
        self.field("display_name", &self.display_name, claims, trace, &mut out)?;
        for (name, template) in &self.attributes {
            self.attribute(name, template, claims, trace, &mut out)?;
        }
        for (name, value) in &self.config.constants {
            let rule = format!("constants.{name}{}", self.owner(name).rule());
            let target = Target::Attribute(name.clone());
            trace.push(target, rule, NO_CLAIMS, Verdict::Defaulted);
            out.set_attribute(name, value.clone(), self.owner(name));
        }
        if let Some(rules) = &self.groups {
            let (granted, overage) = groups(claims, rules, trace)?;
            out.group_overage = overage;
            out.set_groups(granted);
        }
        Ok(out)
    }

    /// Maps the IdP group names a [`GroupResolver`] fetched after an overage through the
    /// groups rules (`allow`, `rename`, `namespace`); `None` when this mapping has no groups.
    pub fn resolved_groups(
        &self,
        names: &[String],
        trace: &mut Trace,
    ) -> Result<Option<BTreeSet<String>>, MappingError> {
        let Some(rules) = &self.groups else {
            return Ok(None);
        };
        let claim = [rules.claim.as_str()];
        trace.push(
            Target::Group(rules.claim.to_string()),
            "group resolver (overage)",
            claim,
            Verdict::Set,
        );
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        grant(&names, rules, trace).map(Some)
    }

    /// The claim path groups are read from, when this mapping syncs groups.
    pub fn groups_claim(&self) -> Option<&ClaimPath> {
        self.groups.as_ref().map(|rules| &rules.claim)
    }

    fn owner(&self, field: &str) -> Ownership {
        self.config
            .ownership
            .get(field)
            .copied()
            .unwrap_or_default()
    }

    fn check_required(&self, claims: &Claims, trace: &mut Trace) -> Result<(), MappingError> {
        for required in &self.required {
            let present = required
                .values(claims)
                .into_iter()
                .filter_map(path::scalar)
                .any(|v| !v.trim().is_empty());
            let verdict = if present {
                Verdict::Admitted
            } else {
                Verdict::Refused
            };
            trace.push(Target::Admission, "required", [required.as_str()], verdict);
            if !present {
                return Err(MappingError::MissingClaim(required.to_string()));
            }
        }
        Ok(())
    }

    fn username(&self, claims: &Claims, trace: &mut Trace) -> Result<String, MappingError> {
        let rule = format!("username = {:?}", self.username.to_string());
        let read: Vec<&str> = self.username.claims().collect();
        let username = self
            .username
            .render(claims)
            .map_err(MappingError::MissingClaim)
            .and_then(|u| checked(u, "username"));
        let verdict = if username.is_ok() {
            Verdict::Set
        } else {
            Verdict::Refused
        };
        trace.push(Target::Username, rule, read, verdict);
        username
    }

    /// The email or the display name.
    fn field(
        &self,
        name: &str,
        template: &Template,
        claims: &Claims,
        trace: &mut Trace,
        out: &mut Mapped,
    ) -> Result<(), MappingError> {
        let target = if name == "email" {
            Target::Email
        } else {
            Target::DisplayName
        };
        if template.is_empty() {
            trace.push(
                target,
                format!("{name} = \"\" (not managed)"),
                NO_CLAIMS,
                Verdict::Skipped,
            );
            return Ok(());
        }
        let owner = self.owner(name);
        let rule = format!("{name} = {:?}{}", template.to_string(), owner.rule());
        let read: Vec<&str> = template.claims().collect();
        let value = match template.render(claims) {
            Ok(value) => Some(checked(value, name).inspect_err(|_| {
                trace.push(target.clone(), rule.clone(), read.clone(), Verdict::Refused);
            })?),
            Err(_) => None,
        };
        let verdict = match (&value, owner) {
            (Some(_), Ownership::Always | Ownership::OnCreate) => Verdict::Set,
            _ => Verdict::Skipped,
        };
        trace.push(target, rule, read, verdict);
        let email = name == "email";
        fn slot(p: &mut Profile, email: bool) -> &mut Option<Option<String>> {
            if email {
                &mut p.email
            } else {
                &mut p.display_name
            }
        }
        match owner {
            Ownership::Always => {
                *slot(&mut out.profile, email) = Some(value.clone());
                *slot(&mut out.creation, email) = Some(value);
                out.profile.idp_attributes.insert(name.to_owned());
                out.creation.idp_attributes.insert(name.to_owned());
            }
            Ownership::OnCreate => *slot(&mut out.creation, email) = Some(value),
            Ownership::Never => {
                if let Some(value) = value {
                    out.preview_only.insert(name.to_owned(), value);
                }
            }
        }
        Ok(())
    }

    fn attribute(
        &self,
        name: &str,
        template: &Template,
        claims: &Claims,
        trace: &mut Trace,
        out: &mut Mapped,
    ) -> Result<(), MappingError> {
        let owner = self.owner(name);
        let target = Target::Attribute(name.to_owned());
        let read: Vec<&str> = template.claims().collect();
        let mut rule = format!("attributes.{name} = {:?}", template.to_string());
        let (value, mut verdict) = match template.render(claims) {
            Ok(value) => (Some(value), Verdict::Set),
            Err(_) => match self.config.defaults.get(name) {
                Some(default) => {
                    rule.push_str(&format!("; defaults.{name}"));
                    (Some(default.clone()), Verdict::Defaulted)
                }
                None => (None, Verdict::Skipped),
            },
        };
        rule.push_str(owner.rule());
        let Some(value) = value else {
            trace.push(target, rule, read, Verdict::Skipped);
            return Ok(());
        };
        let value = checked(value, name).inspect_err(|_| {
            trace.push(target.clone(), rule.clone(), read.clone(), Verdict::Refused);
        })?;
        if owner == Ownership::Never {
            verdict = Verdict::Skipped;
        }
        trace.push(target, rule, read, verdict);
        out.set_attribute(name, value, owner);
        Ok(())
    }
}

/// A decision that read no claim.
const NO_CLAIMS: [&str; 0] = [];

impl Mapped {
    fn set_attribute(&mut self, name: &str, value: String, owner: Ownership) {
        match owner {
            Ownership::Always => {
                for profile in [&mut self.profile, &mut self.creation] {
                    profile.attributes.insert(name.to_owned(), value.clone());
                    profile.idp_attributes.insert(name.to_owned());
                }
            }
            Ownership::OnCreate => {
                self.creation.attributes.insert(name.to_owned(), value);
            }
            Ownership::Never => {
                self.preview_only.insert(name.to_owned(), value);
            }
        }
    }

    /// Sets the groups of both profiles (they are always the identity provider's).
    pub fn set_groups(&mut self, groups: Option<BTreeSet<String>>) {
        for profile in [&mut self.profile, &mut self.creation] {
            profile.idp_attributes.insert("groups".to_owned());
            profile.groups = groups.clone();
        }
    }

    /// Sets the roles of both profiles (they are always the identity provider's).
    pub fn set_roles(&mut self, roles: Option<BTreeSet<String>>) {
        for profile in [&mut self.profile, &mut self.creation] {
            profile.idp_attributes.insert("roles".to_owned());
            profile.roles = roles.clone();
        }
    }

    /// Sets the (resolved) username of both profiles.
    pub fn set_username(&mut self, username: String) {
        self.creation.username = username.clone();
        self.profile.username = username;
    }
}

fn checked(value: String, field: &str) -> Result<String, MappingError> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(MappingError::InvalidClaim(field.to_owned()));
    }
    Ok(value.to_owned())
}

/// The groups a login grants: `None` when the claim is absent and absent means "keep", or
/// on an overage (then `true`).
fn groups(
    claims: &Claims,
    rules: &GroupRules,
    trace: &mut Trace,
) -> Result<(Option<BTreeSet<String>>, bool), MappingError> {
    let config = &rules.config;
    let claim = rules.claim.as_str();
    let target = || Target::Group(claim.to_owned());
    let Some(values) = rules.claim.lookup(claims) else {
        if let Some(signal) = rules.overage(claims) {
            let rule = "groups overage: grants kept";
            trace.push(target(), rule, [claim, signal], Verdict::Skipped);
            return Ok((None, true));
        }
        return Ok(match config.when_absent {
            AbsentGroups::Keep => {
                trace.push(
                    target(),
                    "groups.when_absent = keep",
                    [claim],
                    Verdict::Skipped,
                );
                (None, false)
            }
            AbsentGroups::Clear => {
                trace.push(
                    target(),
                    "groups.when_absent = clear",
                    [claim],
                    Verdict::Dropped,
                );
                (Some(BTreeSet::new()), false)
            }
        });
    };
    let mut names = Vec::with_capacity(values.len());
    for value in values {
        let Value::String(group) = value else {
            trace.push(
                target(),
                "groups.claim (not strings)",
                [claim],
                Verdict::Refused,
            );
            return Err(MappingError::InvalidClaim(claim.to_owned()));
        };
        names.push(group.as_str());
    }
    grant(&names, rules, trace).map(|granted| (Some(granted), false))
}

/// The local groups IdP group names grant, each checked and decided by the rules.
fn grant(
    names: &[&str],
    rules: &GroupRules,
    trace: &mut Trace,
) -> Result<BTreeSet<String>, MappingError> {
    let claim = rules.claim.as_str();
    let unusable = |group: &str| {
        group.is_empty() || group.len() > MAX_FIELD || group.chars().any(char::is_control)
    };
    if names.len() > MAX_GROUPS || names.iter().any(|g| unusable(g)) {
        trace.push(
            Target::Group(claim.to_owned()),
            "groups.claim (too many, or an unusable name)",
            [claim],
            Verdict::Refused,
        );
        return Err(MappingError::InvalidClaim(claim.to_owned()));
    }
    let mut granted = BTreeSet::new();
    for group in names {
        granted.extend(rules.local_name(group, trace));
    }
    Ok(granted)
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(mut tail) = text.strip_prefix(prefix) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            loop {
                if glob(rest, tail) {
                    return true;
                }
                let mut chars = tail.chars();
                if chars.next().is_none() {
                    return false;
                }
                tail = chars.as_str();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: serde_json::Value) -> Claims {
        Claims(v.as_object().unwrap().clone())
    }

    fn mapping(config: MappingConfig) -> Mapping {
        config.compile().unwrap()
    }

    #[test]
    fn missing_username_claim_is_named() {
        let err = mapping(MappingConfig::default()).map(&claims(serde_json::json!({"sub": "1"})));
        assert_eq!(
            err,
            Err(MappingError::MissingClaim("preferred_username".into()))
        );
    }

    #[test]
    fn required_claims_constants_defaults_and_attributes() {
        let config = MappingConfig {
            username: "{email | localpart | lowercase}".into(),
            required: vec!["employee_id".into()],
            attributes: BTreeMap::from([
                ("dept".to_owned(), "{department}".to_owned()),
                ("title".to_owned(), "{title}".to_owned()),
                ("cost".to_owned(), "{cost_center}".to_owned()),
            ]),
            defaults: BTreeMap::from([("title".to_owned(), "Staff".to_owned())]),
            constants: BTreeMap::from([("source".to_owned(), "sso".to_owned())]),
            ..MappingConfig::default()
        };
        let m = mapping(config);
        let err = m.map(&claims(serde_json::json!({"email": "A.B@x.io"})));
        assert_eq!(err, Err(MappingError::MissingClaim("employee_id".into())));
        let p = m
            .map(&claims(
                serde_json::json!({"email": "A.B@x.io", "employee_id": 7, "department": "R&D"}),
            ))
            .unwrap();
        assert_eq!(p.username, "a.b");
        assert_eq!(p.attributes["dept"], "R&D");
        assert_eq!(p.attributes["title"], "Staff");
        assert!(
            !p.attributes.contains_key("cost"),
            "no claim and no default: skipped"
        );
        assert_eq!(p.attributes["source"], "sso");
        assert!(p.idp_attributes.contains("source") && p.idp_attributes.contains("email"));
        assert_eq!(p.display_name, Some(None), "managed, and absent");
    }

    fn granted(m: &Mapping, groups: serde_json::Value) -> Vec<String> {
        m.map(&claims(
            serde_json::json!({"preferred_username": "a", "groups": groups}),
        ))
        .unwrap()
        .groups
        .unwrap()
        .into_iter()
        .collect()
    }

    fn with_groups(groups: GroupsConfig) -> Mapping {
        mapping(MappingConfig {
            groups: Some(groups),
            ..MappingConfig::default()
        })
    }

    fn rename(from: &str, to: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(from.to_owned(), to.to_owned())])
    }

    #[test]
    fn groups_allow_list_renames_and_absent_claim() {
        let mut groups = GroupsConfig::from_claim("groups");
        groups.allow = vec!["eng-*".into(), "idp-admins".into()];
        groups.rename = rename("idp-admins", "admins");
        let m = with_groups(groups.clone());
        assert_eq!(
            granted(&m, serde_json::json!(["eng-web", "idp-admins", "finance"])),
            ["admins", "eng-web"]
        );
        // Absent: keep (None); with `clear`, an empty grant.
        let p = m
            .map(&claims(serde_json::json!({"preferred_username": "a"})))
            .unwrap();
        assert_eq!(p.groups, None);
        groups.when_absent = AbsentGroups::Clear;
        let m = with_groups(groups);
        let p = m
            .map(&claims(serde_json::json!({"preferred_username": "a"})))
            .unwrap();
        assert_eq!(p.groups, Some(BTreeSet::new()));
        let err = m.map(&claims(
            serde_json::json!({"preferred_username": "a", "groups": {"x": 1}}),
        ));
        assert_eq!(err, Err(MappingError::InvalidClaim("groups".into())));
    }

    #[test]
    fn the_allow_list_matches_the_idps_names_before_renaming() {
        // Written for the renamed name (the old semantics), `admins` would let in an IdP
        // group literally called `admins`; it now matches IdP names, and the rename target
        // is reached only through its rename.
        let mut groups = GroupsConfig::from_claim("groups");
        groups.allow = vec!["admins".into(), "idp-admins".into(), "staff".into()];
        groups.rename = rename("idp-admins", "admins");
        let m = with_groups(groups);
        assert_eq!(
            granted(&m, serde_json::json!(["admins", "staff"])),
            ["staff"]
        );
        assert_eq!(granted(&m, serde_json::json!(["idp-admins"])), ["admins"]);
        // An allow-list that does not let the renamed IdP group in is refused at start-up.
        let mut groups = GroupsConfig::from_claim("groups");
        groups.allow = vec!["admins".into()];
        groups.rename = rename("idp-admins", "admins");
        assert_eq!(
            MappingConfig {
                groups: Some(groups),
                ..MappingConfig::default()
            }
            .compile()
            .unwrap_err(),
            MappingConfigError::RenameNotAllowed("idp-admins".into())
        );
    }

    #[test]
    fn a_rename_target_is_not_granted_to_an_idp_group_of_that_name() {
        // Allow-all (the default) and a rename: the literal target is still dropped.
        let mut groups = GroupsConfig::from_claim("groups");
        groups.rename = rename("idp-admins", "admins");
        let m = with_groups(groups);
        assert_eq!(
            granted(&m, serde_json::json!(["admins", "eng", "idp-admins"])),
            ["admins", "eng"]
        );
        assert_eq!(
            granted(&m, serde_json::json!(["admins"])),
            Vec::<String>::new()
        );
        // A rename onto itself keeps the group.
        let mut groups = GroupsConfig::from_claim("groups");
        groups.rename = rename("staff", "staff");
        let m = with_groups(groups);
        assert_eq!(granted(&m, serde_json::json!(["staff"])), ["staff"]);
    }

    #[test]
    fn a_namespace_keeps_idp_groups_off_local_names() {
        let mut groups = GroupsConfig::from_claim("groups");
        groups.namespace = Some("corp".into());
        groups.allow = vec![
            "eng-*".into(),
            "admins".into(),
            "idp-admins".into(),
            "x".into(),
        ];
        groups.rename = BTreeMap::from([
            ("idp-admins".to_owned(), "admins".to_owned()),
            ("eng-leads".to_owned(), "corp:x".to_owned()),
        ]);
        let m = with_groups(groups);
        assert_eq!(
            granted(
                &m,
                serde_json::json!(["eng-web", "admins", "idp-admins", "corp:eng-web", "finance"])
            ),
            ["admins", "corp:admins", "corp:eng-web"]
        );
        // `x` would be `corp:x`, a rename target: dropped; `eng-leads` reaches it.
        assert_eq!(granted(&m, serde_json::json!(["x"])), Vec::<String>::new());
        assert_eq!(granted(&m, serde_json::json!(["eng-leads"])), ["corp:x"]);
        // `allow` matched the IdP's name `corp:eng-web`, not the namespaced one: no `eng-*`.
        assert_eq!(
            granted(&m, serde_json::json!(["corp:eng-web"])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_bad_namespace_is_refused_at_start_up() {
        for bad in ["", "a:b", "a b", "*", "a\u{7}", &"n".repeat(65)] {
            let mut groups = GroupsConfig::from_claim("groups");
            groups.namespace = Some(bad.to_owned());
            let config = MappingConfig {
                groups: Some(groups),
                ..MappingConfig::default()
            };
            assert!(
                matches!(
                    config.compile(),
                    Err(MappingConfigError::InvalidNamespace(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unmanaged_fields_stay_none() {
        let m = mapping(MappingConfig {
            email: String::new(),
            display_name: String::new(),
            ..MappingConfig::default()
        });
        let p = m
            .map(&claims(
                serde_json::json!({"preferred_username": "a", "email": "x@y"}),
            ))
            .unwrap();
        assert_eq!((p.email, p.display_name), (None, None));
    }

    #[test]
    fn control_characters_in_username_are_refused() {
        let err = mapping(MappingConfig::default()).map(&claims(
            serde_json::json!({"preferred_username": "a\u{0}b"}),
        ));
        assert_eq!(err, Err(MappingError::InvalidClaim("username".into())));
    }

    #[test]
    fn claim_paths_in_required_groups_and_attributes() {
        let mut groups = GroupsConfig::from_claim(r#"resource_access."my-app".roles"#);
        groups.rename = rename("app-admin", "admins");
        let m = mapping(MappingConfig {
            required: vec!["realm_access.roles".into()],
            attributes: BTreeMap::from([("dept".to_owned(), "{org.unit.name}".to_owned())]),
            groups: Some(groups),
            ..MappingConfig::default()
        });
        let c = claims(serde_json::json!({
            "preferred_username": "a",
            "realm_access": {"roles": ["user"]},
            "resource_access": {"my-app": {"roles": ["app-admin", "viewer"]}},
            "org": {"unit": {"name": "R&D"}},
        }));
        let p = m.map(&c).unwrap();
        assert_eq!(p.attributes["dept"], "R&D");
        assert_eq!(
            p.groups.unwrap().into_iter().collect::<Vec<_>>(),
            ["admins", "viewer"]
        );
        let mut without = c.clone();
        without
            .0
            .insert("realm_access".into(), serde_json::json!({"roles": []}));
        assert_eq!(
            m.map(&without),
            Err(MappingError::MissingClaim("realm_access.roles".into()))
        );
    }

    #[test]
    fn bad_claim_paths_are_refused_at_compile() {
        let bad = |config: MappingConfig| config.compile().unwrap_err().to_string();
        let err = bad(MappingConfig {
            required: vec!["a..b".into()],
            ..MappingConfig::default()
        });
        assert!(err.contains("claim path `a..b`"), "{err}");
        let err = bad(MappingConfig {
            groups: Some(GroupsConfig::from_claim("\"unclosed")),
            ..MappingConfig::default()
        });
        assert!(err.contains("claim path"), "{err}");
        let err = bad(MappingConfig {
            attributes: BTreeMap::from([("x".to_owned(), "{a.}".to_owned())]),
            ..MappingConfig::default()
        });
        assert!(err.contains("claim path `a.`"), "{err}");
    }

    #[test]
    fn ownership_splits_sync_creation_and_preview() {
        let m = mapping(MappingConfig {
            attributes: BTreeMap::from([
                ("dept".to_owned(), "{department}".to_owned()),
                ("title".to_owned(), "{title}".to_owned()),
                ("cost".to_owned(), "{cost}".to_owned()),
            ]),
            ownership: BTreeMap::from([
                ("dept".to_owned(), Ownership::OnCreate),
                ("title".to_owned(), Ownership::Never),
                ("email".to_owned(), Ownership::OnCreate),
            ]),
            ..MappingConfig::default()
        });
        let c = claims(
            serde_json::json!({"preferred_username": "a", "email": "a@x",
            "department": "R&D", "title": "Boss", "cost": "7"}),
        );
        let mut trace = Trace::default();
        let out = m.explain(&c, &mut trace).unwrap();
        assert_eq!(out.creation.attributes["dept"], "R&D");
        assert_eq!(out.creation.email, Some(Some("a@x".into())));
        assert!(!out.profile.attributes.contains_key("dept"));
        assert_eq!(out.profile.email, None, "on_create: not synced");
        assert_eq!(out.preview_only["title"], "Boss");
        assert!(!out.creation.attributes.contains_key("title"));
        assert_eq!(out.profile.attributes["cost"], "7");
        assert_eq!(
            out.creation.idp_attributes,
            ["cost".to_owned(), "display_name".to_owned()].into(),
            "only `always` fields are read-only"
        );
        let title = trace
            .0
            .iter()
            .find(|d| d.target == Target::Attribute("title".into()))
            .unwrap();
        assert_eq!(title.verdict, Verdict::Skipped);
        assert!(title.rule.ends_with("ownership never"), "{}", title.rule);
        // An ownership entry for no mapped field is refused at start-up.
        let err = MappingConfig {
            ownership: BTreeMap::from([("nope".to_owned(), Ownership::OnCreate)]),
            ..MappingConfig::default()
        }
        .compile()
        .unwrap_err();
        assert_eq!(err, MappingConfigError::UnknownOwnership("nope".into()));
    }

    #[test]
    fn an_overage_keeps_the_groups_even_with_clear() {
        let mut groups = GroupsConfig::from_claim("groups");
        groups.when_absent = AbsentGroups::Clear;
        let m = with_groups(groups);
        for signal in [
            serde_json::json!({"_claim_names": {"groups": "src1"},
                "_claim_sources": {"src1": {"endpoint": "https://graph"}}}),
            serde_json::json!({"hasgroups": true}),
        ] {
            let mut c = claims(signal);
            c.0.insert("preferred_username".into(), "a".into());
            let mut trace = Trace::default();
            let out = m.explain(&c, &mut trace).unwrap();
            assert!(out.group_overage);
            assert_eq!(out.profile.groups, None, "kept, not cleared");
            assert_eq!(trace.0.last().unwrap().rule, "groups overage: grants kept");
        }
        // Not an overage: absent with `clear` clears.
        let out = m
            .explain(
                &claims(serde_json::json!({"preferred_username": "a", "hasgroups": false})),
                &mut Trace::default(),
            )
            .unwrap();
        assert_eq!(out.profile.groups, Some(BTreeSet::new()));
    }

    #[test]
    fn the_trace_names_rules_and_paths_never_values() {
        let mut groups = GroupsConfig::from_claim("groups");
        groups.allow = vec!["eng-*".into(), "idp-admins".into(), "admins".into()];
        groups.rename = rename("idp-admins", "admins");
        let m = mapping(MappingConfig {
            attributes: BTreeMap::from([("dept".to_owned(), "{org.dept}".to_owned())]),
            defaults: BTreeMap::from([("dept".to_owned(), "none".to_owned())]),
            groups: Some(groups),
            ..MappingConfig::default()
        });
        let c = claims(serde_json::json!({"preferred_username": "secret-jane",
            "email": "jane@secret.example", "groups": ["eng-web", "idp-admins", "admins", "hr"]}));
        let mut trace = Trace::default();
        m.explain(&c, &mut trace).unwrap();
        let text = serde_json::to_string(&trace).unwrap();
        assert!(!text.contains("secret"), "{text}");
        let find = |target: Target| trace.0.iter().find(|d| d.target == target).unwrap();
        let username = find(Target::Username);
        assert_eq!(username.claims, ["preferred_username"]);
        assert_eq!(username.verdict, Verdict::Set);
        let dept = find(Target::Attribute("dept".into()));
        assert_eq!(
            (dept.verdict, dept.claims.as_slice()),
            (Verdict::Defaulted, &["org.dept".to_owned()][..])
        );
        assert!(dept.rule.contains("defaults.dept"));
        let admins = find(Target::Group("admins".into()));
        assert_eq!(admins.rule, "groups.rename idp-admins -> admins");
        assert_eq!(admins.verdict, Verdict::Granted);
        let groups: Vec<(&str, Verdict)> = trace
            .0
            .iter()
            .filter(|d| matches!(d.target, Target::Group(_)))
            .map(|d| (d.rule.as_str(), d.verdict))
            .collect();
        assert_eq!(
            groups,
            [
                ("groups.claim", Verdict::Granted),
                ("groups.rename idp-admins -> admins", Verdict::Granted),
                (
                    "groups.rename target (reached only through its rename)",
                    Verdict::Dropped
                ),
                ("groups.allow", Verdict::Dropped),
            ]
        );
        // A refusal is the trace's refusal.
        let mut trace = Trace::default();
        let _ = m.explain(&claims(serde_json::json!({"email": "x"})), &mut trace);
        assert_eq!(trace.refusal().unwrap().target, Target::Username);
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("eng-*", "eng-web"));
        assert!(glob("*-admins", "eng-admins"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b", "ac"));
        assert!(glob("*", ""));
        assert!(!glob("staff", "staff2"));
    }
}
