//! Turning validated claims into a local [`Profile`] by a provider's [`MappingConfig`]:
//! username template, email and display name, custom attributes from claims or SAML attribute
//! URIs, defaults, constants, required claims, and groups with an allow-list and renames.

mod template;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// Longest username, email, display name or attribute value accepted.
const MAX_FIELD: usize = 256;
/// Most groups accepted from one login.
const MAX_GROUPS: usize = 1024;

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

/// Groups from a claim, filtered and renamed, synced at every login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// The claim (an array of strings, or one string).
    pub claim: String,
    /// Group names (after renaming) allowed in; `*` matches any run of characters. Empty:
    /// every group.
    #[serde(default)]
    pub allow: Vec<String>,
    /// IdP group name → local group name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// What an absent claim means. Default `keep`.
    #[serde(default)]
    pub when_absent: AbsentGroups,
}

impl GroupsConfig {
    /// Groups from `claim`, every group allowed, no renames.
    pub fn from_claim(claim: impl Into<String>) -> Self {
        Self {
            claim: claim.into(),
            allow: Vec::new(),
            rename: BTreeMap::new(),
            when_absent: AbsentGroups::Keep,
        }
    }
}

/// A [`MappingConfig`] with its templates parsed: built once per provider.
#[derive(Debug, Clone)]
pub struct Mapping {
    username: Template,
    email: Template,
    display_name: Template,
    attributes: Vec<(String, Template)>,
    config: MappingConfig,
}

impl MappingConfig {
    /// Parses the templates; a bad template is an error here, at start-up, not at login.
    pub fn compile(&self) -> Result<Mapping, TemplateError> {
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
        let groups = match &self.config.groups {
            Some(config) => {
                managed.insert("groups".to_owned());
                groups(claims, config)?
            }
            None => None,
        };
        Ok(Profile {
            username,
            email,
            display_name,
            groups,
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
fn groups(
    claims: &Claims,
    config: &GroupsConfig,
) -> Result<Option<BTreeSet<String>>, MappingError> {
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
        let local = config.rename.get(group).unwrap_or(group);
        if config.allow.is_empty() || config.allow.iter().any(|p| glob(p, local)) {
            granted.insert(local.clone());
        }
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

    #[test]
    fn groups_allow_list_renames_and_absent_claim() {
        let mut groups = GroupsConfig::from_claim("groups");
        groups.allow = vec!["eng-*".into(), "admins".into()];
        groups.rename = BTreeMap::from([("idp-admins".to_owned(), "admins".to_owned())]);
        let m = mapping(MappingConfig {
            groups: Some(groups.clone()),
            ..MappingConfig::default()
        });
        let p = m
            .map(&claims(serde_json::json!({"preferred_username": "a",
                "groups": ["eng-web", "idp-admins", "finance"]})))
            .unwrap();
        assert_eq!(
            p.groups.unwrap().into_iter().collect::<Vec<_>>(),
            ["admins", "eng-web"]
        );
        // Absent: keep (None); with `clear`, an empty grant.
        let p = m
            .map(&claims(serde_json::json!({"preferred_username": "a"})))
            .unwrap();
        assert_eq!(p.groups, None);
        groups.when_absent = AbsentGroups::Clear;
        let m = mapping(MappingConfig {
            groups: Some(groups),
            ..MappingConfig::default()
        });
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
