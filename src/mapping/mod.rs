//! Turning validated claims into a local [`Profile`] by a provider's [`MappingConfig`]:
//! username template, email and display name, custom attributes from claims or SAML attribute
//! URIs, defaults, constants, required claims, and groups with an allow-list over the IdP's
//! names, renames and an optional per-provider namespace.

pub mod admission;
mod path;
pub mod roles;
mod template;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use self::path::{ClaimPath, ClaimPathError};
pub use self::template::{Filter, Template, TemplateError};
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
///     [groups]
///     claim = "groups"
///     allow = ["eng-*", "staff"]
///     rename = { "eng-admins" = "admins" }
/// "#).unwrap();
/// assert!(m.compile().is_ok());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    /// Claims that must be present and non-empty; a login without one is refused with `403`
    /// naming it, and nothing is created.
    pub required: Vec<String>,
    /// Group sync; none: this provider does not manage groups.
    pub groups: Option<GroupsConfig>,
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
/// let mapping = MappingConfig { groups: Some(groups), ..MappingConfig::default() }
///     .compile()
///     .unwrap();
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
pub struct GroupsConfig {
    /// The claim (an array of strings, or one string).
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
    /// What an absent claim means. Default `keep`.
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
    targets: BTreeSet<String>,
}

impl GroupRules {
    /// The local group an IdP group grants, if any: allowed by its IdP name, then renamed,
    /// or namespaced and kept off the rename targets.
    fn local_name(&self, group: &str) -> Option<String> {
        if !self.config.allows(group) {
            return None;
        }
        if let Some(local) = self.config.rename.get(group) {
            return Some(local.clone());
        }
        let local = match &self.config.namespace {
            Some(namespace) => format!("{namespace}:{group}"),
            None => group.to_owned(),
        };
        (!self.targets.contains(&local)).then_some(local)
    }
}

/// A [`MappingConfig`] with its templates parsed: built once per provider.
#[derive(Debug, Clone)]
pub struct Mapping {
    username: Template,
    email: Template,
    display_name: Template,
    attributes: Vec<(String, Template)>,
    groups: Option<GroupRules>,
    config: MappingConfig,
}

impl MappingConfig {
    /// Parses the templates and checks the group rules; a bad template, namespace or rename
    /// is an error here, at start-up, not at login.
    ///
    /// ```
    /// use jit_provision::{MappingConfig, config::GroupsConfig, mapping::MappingConfigError};
    /// let mut groups = GroupsConfig::from_claim("groups");
    /// groups.allow = vec!["eng-*".into()];
    /// groups.rename = [("idp-admins".to_owned(), "admins".to_owned())].into();
    /// let config = MappingConfig { groups: Some(groups), ..MappingConfig::default() };
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
        Ok(Mapping {
            username: self.username.parse()?,
            email: self.email.parse()?,
            display_name: self.display_name.parse()?,
            attributes,
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

    /// Maps claims to a profile.
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
        for required in &self.config.required {
            let present = claims
                .str(required)
                .or_else(|| claims.first(required))
                .is_some_and(|v| !v.trim().is_empty());
            if !present {
                return Err(MappingError::MissingClaim(required.clone()));
            }
        }
        let username = self
            .username
            .render(claims)
            .map_err(MappingError::MissingClaim)
            .and_then(|u| checked(u, "username"))?;
        let mut managed = BTreeSet::new();
        let mut optional = |field: &str, template: &Template| -> Result<_, MappingError> {
            if template.is_empty() {
                return Ok(None);
            }
            managed.insert(field.to_owned());
            match template.render(claims) {
                Ok(value) => Ok(Some(Some(checked(value, field)?))),
                Err(_) => Ok(Some(None)),
            }
        };
        let email = optional("email", &self.email)?;
        let display_name = optional("display_name", &self.display_name)?;
        let mut attributes = BTreeMap::new();
        for (name, template) in &self.attributes {
            let value = match template.render(claims) {
                Ok(value) => Some(value),
                Err(_) => self.config.defaults.get(name).cloned(),
            };
            if let Some(value) = value {
                attributes.insert(name.clone(), checked(value, name)?);
                managed.insert(name.clone());
            }
        }
        for (name, value) in &self.config.constants {
            attributes.insert(name.clone(), value.clone());
            managed.insert(name.clone());
        }
        let groups = match &self.groups {
            Some(rules) => {
                managed.insert("groups".to_owned());
                groups(claims, rules)?
            }
            None => None,
        };
        Ok(Profile {
            username,
            email,
            display_name,
            groups,
            // Set by the provider's role rules (`roles::Roles::grant`), after mapping.
            roles: None,
            attributes,
            idp_attributes: managed,
        })
    }
}

fn checked(value: String, field: &str) -> Result<String, MappingError> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(MappingError::InvalidClaim(field.to_owned()));
    }
    Ok(value.to_owned())
}

/// The groups a login grants: `None` when the claim is absent and absent means "keep".
fn groups(claims: &Claims, rules: &GroupRules) -> Result<Option<BTreeSet<String>>, MappingError> {
    let config = &rules.config;
    let name = &config.claim;
    let values: Vec<&Value> = match claims.get(name) {
        None | Some(Value::Null) => {
            return Ok(match config.when_absent {
                AbsentGroups::Keep => None,
                AbsentGroups::Clear => Some(BTreeSet::new()),
            });
        }
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::String(_)) => vec![v],
        Some(_) => return Err(MappingError::InvalidClaim(name.clone())),
    };
    if values.len() > MAX_GROUPS {
        return Err(MappingError::InvalidClaim(name.clone()));
    }
    let mut granted = BTreeSet::new();
    for value in values {
        let Value::String(group) = value else {
            return Err(MappingError::InvalidClaim(name.clone()));
        };
        if group.is_empty() || group.len() > MAX_FIELD || group.chars().any(char::is_control) {
            return Err(MappingError::InvalidClaim(name.clone()));
        }
        granted.extend(rules.local_name(group));
    }
    Ok(Some(granted))
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
    fn glob_patterns() {
        assert!(glob("eng-*", "eng-web"));
        assert!(glob("*-admins", "eng-admins"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b", "ac"));
        assert!(glob("*", ""));
        assert!(!glob("staff", "staff2"));
    }
}
