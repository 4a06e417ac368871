//! Turning validated claims into a local [`Profile`] by a provider's [`MappingConfig`].

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::config::MappingConfig;
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
}

/// Why claims could not be mapped to a user. Nothing is written when this happens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A claim the mapping needs is absent or empty.
    #[error("the identity provider did not send the required claim `{0}`")]
    MissingClaim(String),
    /// A claim has a shape the mapping cannot use.
    #[error("the claim `{0}` has an unusable value")]
    InvalidClaim(String),
}

/// Longest username, email or display name accepted from an identity provider.
const MAX_FIELD: usize = 256;
/// Most groups accepted from one login.
const MAX_GROUPS: usize = 1024;

/// Maps claims to a profile.
///
/// ```
/// use jit_provision::{Claims, MappingConfig, mapping::map_claims};
/// let claims = Claims(serde_json::json!({
///     "sub": "1", "preferred_username": "jane", "email": "jane@example.com", "name": "Jane"
/// }).as_object().unwrap().clone());
/// let profile = map_claims(&MappingConfig::default(), &claims).unwrap();
/// assert_eq!(profile.username, "jane");
/// assert_eq!(profile.groups, None); // no groups claim configured: groups left alone
/// ```
pub fn map_claims(mapping: &MappingConfig, claims: &Claims) -> Result<Profile, MappingError> {
    let username = text(claims, &mapping.username_claim)?
        .ok_or_else(|| MappingError::MissingClaim(mapping.username_claim.clone()))?;
    let email = managed(&mapping.email_claim)
        .map(|name| text(claims, name))
        .transpose()?;
    let display_name = managed(&mapping.display_name_claim)
        .map(|name| text(claims, name))
        .transpose()?;
    let groups = match &mapping.groups_claim {
        Some(name) => Some(groups(claims, name)?),
        None => None,
    };
    Ok(Profile {
        username,
        email,
        display_name,
        groups,
        attributes: Default::default(),
    })
}

/// The claim name when the mapping manages this field (set and not empty).
fn managed(claim: &Option<String>) -> Option<&str> {
    claim.as_deref().filter(|name| !name.is_empty())
}

fn text(claims: &Claims, name: &str) -> Result<Option<String>, MappingError> {
    match claims.str(name) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) if s.len() > MAX_FIELD || s.chars().any(char::is_control) => {
            Err(MappingError::InvalidClaim(name.to_owned()))
        }
        Some(s) => Ok(Some(s.trim().to_owned())),
    }
}

/// An absent groups claim is an empty set for this provider: the provider manages groups
/// (it was configured to), and said the user has none.
fn groups(claims: &Claims, name: &str) -> Result<BTreeSet<String>, MappingError> {
    let values: Vec<&Value> = match claims.get(name) {
        None | Some(Value::Null) => return Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::String(_)) => vec![v],
        Some(_) => return Err(MappingError::InvalidClaim(name.to_owned())),
    };
    if values.len() > MAX_GROUPS {
        return Err(MappingError::InvalidClaim(name.to_owned()));
    }
    values
        .into_iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_FIELD => Ok(s.clone()),
            _ => Err(MappingError::InvalidClaim(name.to_owned())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: serde_json::Value) -> Claims {
        Claims(v.as_object().unwrap().clone())
    }

    #[test]
    fn missing_username_claim_is_named() {
        let err = map_claims(
            &MappingConfig::default(),
            &claims(serde_json::json!({"sub": "1"})),
        );
        assert_eq!(
            err,
            Err(MappingError::MissingClaim("preferred_username".into()))
        );
    }

    #[test]
    fn groups_accept_array_or_single_string_and_reject_objects() {
        let mapping = MappingConfig {
            groups_claim: Some("groups".into()),
            ..MappingConfig::default()
        };
        let p = map_claims(
            &mapping,
            &claims(serde_json::json!({"preferred_username": "a", "groups": ["x", "y"]})),
        )
        .unwrap();
        assert_eq!(p.groups.unwrap().len(), 2);
        let p = map_claims(
            &mapping,
            &claims(serde_json::json!({"preferred_username": "a", "groups": "x"})),
        )
        .unwrap();
        assert_eq!(p.groups.unwrap().into_iter().collect::<Vec<_>>(), ["x"]);
        let p = map_claims(
            &mapping,
            &claims(serde_json::json!({"preferred_username": "a"})),
        )
        .unwrap();
        assert_eq!(p.groups, Some(BTreeSet::new()));
        // Managed and absent (Some(None)) differs from unmanaged (None).
        assert_eq!(p.email, Some(None));
        let unmanaged = MappingConfig {
            email_claim: Some(String::new()),
            display_name_claim: None,
            ..MappingConfig::default()
        };
        let p = map_claims(
            &unmanaged,
            &claims(serde_json::json!({"preferred_username": "a", "email": "x@y"})),
        )
        .unwrap();
        assert_eq!((p.email, p.display_name), (None, None));
        let err = map_claims(
            &mapping,
            &claims(serde_json::json!({"preferred_username": "a", "groups": {"x": 1}})),
        );
        assert_eq!(err, Err(MappingError::InvalidClaim("groups".into())));
    }

    #[test]
    fn control_characters_in_username_are_refused() {
        let err = map_claims(
            &MappingConfig::default(),
            &claims(serde_json::json!({"preferred_username": "a\u{0}b"})),
        );
        assert_eq!(
            err,
            Err(MappingError::InvalidClaim("preferred_username".into()))
        );
    }
}
