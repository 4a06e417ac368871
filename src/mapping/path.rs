//! Claim paths: how a mapping names a claim, top-level or nested.
//!
//! A reference is first looked up **verbatim** as a top-level claim name, so SAML attribute
//! names (`http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress`,
//! `urn:oid:0.9.2342.19200300.100.1.3`) and OIDC claims with dots in their names keep working
//! as they are. When no top-level claim has that name, the reference is read as a path:
//! segments separated by `.`, a segment in double quotes may hold any character but `"`
//! (`resource_access."my-app".roles`), and a segment applied to an array applies to each of
//! its elements (the results are flattened one level), so `groups.name` reads the `name` of
//! every object in a `groups` array.

use std::fmt;

use serde_json::Value;

use super::Claims;

/// Longest claim reference accepted.
const MAX_PATH: usize = 512;
/// Most segments in one path.
const MAX_SEGMENTS: usize = 16;

/// A parsed claim reference: verbatim top-level name first, else a dotted path.
///
/// ```
/// use jit_provision::Claims;
/// use jit_provision::mapping::ClaimPath;
/// let claims = Claims(serde_json::json!({
///     "realm_access": {"roles": ["admin", "user"]},
///     "resource_access": {"my-app": {"roles": ["editor"]}},
///     "urn:oid:0.9.2342.19200300.100.1.3": "jane@example.com",
/// }).as_object().unwrap().clone());
/// let roles: ClaimPath = "realm_access.roles".parse().unwrap();
/// assert_eq!(roles.values(&claims), [&serde_json::json!("admin"), &serde_json::json!("user")]);
/// let client: ClaimPath = r#"resource_access."my-app".roles"#.parse().unwrap();
/// assert_eq!(client.values(&claims), [&serde_json::json!("editor")]);
/// let saml: ClaimPath = "urn:oid:0.9.2342.19200300.100.1.3".parse().unwrap();
/// assert_eq!(saml.values(&claims).len(), 1);
/// assert!("a..b".parse::<ClaimPath>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    source: String,
    segments: Vec<String>,
}

/// A claim reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim path `{path}`: {reason}")]
pub struct ClaimPathError {
    path: String,
    reason: &'static str,
}

impl std::str::FromStr for ClaimPath {
    type Err = ClaimPathError;

    fn from_str(source: &str) -> Result<Self, ClaimPathError> {
        let fail = |reason| ClaimPathError {
            path: source.chars().take(80).collect(),
            reason,
        };
        if source.trim().is_empty() {
            return Err(fail("empty"));
        }
        if source.len() > MAX_PATH {
            return Err(fail("too long"));
        }
        let mut segments = Vec::new();
        let mut rest = source;
        loop {
            let segment;
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').ok_or_else(|| fail("unclosed `\"`"))?;
                segment = &quoted[..end];
                rest = &quoted[end + 1..];
                if !(rest.is_empty() || rest.starts_with('.')) {
                    return Err(fail("a quoted segment must be followed by `.` or the end"));
                }
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                segment = &rest[..end];
                rest = &rest[end..];
                if segment.contains('"') {
                    return Err(fail("`\"` inside an unquoted segment"));
                }
            }
            if segment.is_empty() {
                return Err(fail("empty segment"));
            }
            segments.push(segment.to_owned());
            if segments.len() > MAX_SEGMENTS {
                return Err(fail("too many segments"));
            }
            match rest.strip_prefix('.') {
                Some(next) => rest = next,
                None => break,
            }
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl ClaimPath {
    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The values the reference reads: the verbatim top-level claim when there is one, else
    /// what the path reaches (arrays along the way are traversed and flattened one level; a
    /// final array gives its elements). Empty when nothing matches. `null` values are skipped.
    pub fn values<'a>(&self, claims: &'a Claims) -> Vec<&'a Value> {
        flatten(self.reached(claims))
    }

    /// Like [`values`](Self::values), but `None` when the reference reaches nothing (or only
    /// `null`), so an absent claim can be told from an empty array.
    ///
    /// ```
    /// # use jit_provision::{Claims, mapping::ClaimPath};
    /// let claims = Claims(serde_json::json!({"a": {"empty": [], "none": null}}).as_object().unwrap().clone());
    /// let path = |p: &str| p.parse::<ClaimPath>().unwrap();
    /// assert_eq!(path("a.empty").lookup(&claims), Some(vec![]));
    /// assert_eq!(path("a.none").lookup(&claims), None);
    /// assert_eq!(path("a.missing").lookup(&claims), None);
    /// ```
    pub fn lookup<'a>(&self, claims: &'a Claims) -> Option<Vec<&'a Value>> {
        let reached = self.reached(claims);
        if reached.iter().all(|value| value.is_null()) {
            return None;
        }
        Some(flatten(reached))
    }

    /// The first segment: the top-level claim a path starts from.
    pub fn root(&self) -> &str {
        &self.segments[0]
    }

    /// What the reference reaches, before the final flattening.
    fn reached<'a>(&self, claims: &'a Claims) -> Vec<&'a Value> {
        if let Some(value) = claims.0.get(&self.source) {
            return vec![value];
        }
        let mut current: Vec<&Value> = match claims.0.get(&self.segments[0]) {
            Some(value) => vec![value],
            None => return Vec::new(),
        };
        for segment in &self.segments[1..] {
            current = current
                .into_iter()
                .flat_map(|value| match value {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    other => vec![other],
                })
                .filter_map(|value| value.as_object()?.get(segment))
                .collect();
            if current.is_empty() {
                break;
            }
        }
        current
    }

    /// The first value the reference reads, rendered as a string (strings as they are,
    /// numbers and booleans in JSON form); `None` when absent or not a scalar.
    pub fn first_str(&self, claims: &Claims) -> Option<String> {
        self.values(claims).into_iter().find_map(scalar)
    }
}

/// A scalar claim value as a string.
pub(crate) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flatten<'a>(values: impl IntoIterator<Item = &'a Value>) -> Vec<&'a Value> {
    values
        .into_iter()
        .flat_map(|value| match value {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .filter(|value| !value.is_null())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Claims {
        Claims(v.as_object().unwrap().clone())
    }

    #[test]
    fn verbatim_names_win_over_paths() {
        let c = claims(serde_json::json!({"a.b": "verbatim", "a": {"b": "nested"}}));
        let path: ClaimPath = "a.b".parse().unwrap();
        assert_eq!(path.first_str(&c).as_deref(), Some("verbatim"));
    }

    #[test]
    fn arrays_of_objects_are_traversed() {
        let c = claims(serde_json::json!({"groups": [{"name": "x"}, {"name": "y"}, {"id": 1}]}));
        let path: ClaimPath = "groups.name".parse().unwrap();
        assert_eq!(path.values(&c).len(), 2);
        let missing: ClaimPath = "groups.nope.deeper".parse().unwrap();
        assert!(missing.values(&c).is_empty());
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in ["", " ", "a.", ".a", "a..b", "\"a", "\"a\"b", "a\"b", "\"\""] {
            assert!(bad.parse::<ClaimPath>().is_err(), "accepted {bad:?}");
        }
        let quoted: ClaimPath = r#""x.y"."z""#.parse().unwrap();
        assert_eq!(quoted.segments, ["x.y", "z"]);
    }
}
