//! Templates over claims: `{preferred_username}`, `{email | lowercase}`,
//! `{email | localpart}@corp`, `{given_name} {family_name}`, `{realm_access.roles}`,
//! `{resource_access."my-app".roles | lowercase}`. `{{` and `}}` are literal braces.
//!
//! A placeholder holds a [claim path](super::ClaimPath) and filters separated by `|`; it
//! ends at the first `}`. Inside a double-quoted path segment `|`, `}` and `{` are part of
//! the name (`{"weird|name}".x}`).

use std::fmt;

use super::Claims;
use super::path::ClaimPath;

/// Longest template accepted.
const MAX_TEMPLATE: usize = 1024;

/// A function applied to a claim value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// `lowercase`
    Lowercase,
    /// `uppercase`
    Uppercase,
    /// `trim`
    Trim,
    /// `localpart`: what comes before the last `@`.
    LocalPart,
    /// `domain`: what comes after the last `@`.
    Domain,
}

impl Filter {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "lowercase" => Self::Lowercase,
            "uppercase" => Self::Uppercase,
            "trim" => Self::Trim,
            "localpart" => Self::LocalPart,
            "domain" => Self::Domain,
            _ => return None,
        })
    }

    fn apply(self, value: String) -> String {
        match self {
            Self::Lowercase => value.to_lowercase(),
            Self::Uppercase => value.to_uppercase(),
            Self::Trim => value.trim().to_owned(),
            Self::LocalPart => match value.rsplit_once('@') {
                Some((local, _)) => local.to_owned(),
                None => value,
            },
            Self::Domain => match value.rsplit_once('@') {
                Some((_, domain)) => domain.to_owned(),
                None => String::new(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Claim {
        path: ClaimPath,
        filters: Vec<Filter>,
    },
}

/// A parsed template.
///
/// ```
/// use jit_provision::mapping::Template;
/// let t: Template = "{email | localpart | lowercase}".parse().unwrap();
/// let claims = jit_provision::Claims(serde_json::json!({"email": "Jane.Doe@Example.com"}).as_object().unwrap().clone());
/// assert_eq!(t.render(&claims).unwrap(), "jane.doe");
/// assert!("{email | shout}".parse::<Template>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}`: {reason}")]
pub struct TemplateError {
    template: String,
    reason: String,
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(source: &str) -> Result<Self, TemplateError> {
        let fail = |reason: &str| TemplateError {
            template: source.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        if source.len() > MAX_TEMPLATE {
            return Err(fail("too long"));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' if rest.starts_with("{{") => {
                    text.push('{');
                    rest = &rest[2..];
                }
                '}' if rest.starts_with("}}") => {
                    text.push('}');
                    rest = &rest[2..];
                }
                '}' => return Err(fail("unmatched `}`")),
                '{' => {
                    let (inner, after) = placeholder(&rest[1..]).map_err(fail)?;
                    let mut pieces = split_filters(inner).into_iter().map(str::trim);
                    let name = pieces.next().unwrap_or("");
                    if name.is_empty() {
                        return Err(fail("empty claim name"));
                    }
                    let path: ClaimPath = name
                        .parse()
                        .map_err(|e: super::ClaimPathError| fail(&e.to_string()))?;
                    let filters = pieces
                        .map(|f| {
                            Filter::parse(f).ok_or_else(|| fail(&format!("unknown filter `{f}`")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Claim { path, filters });
                    rest = after;
                }
                c => {
                    text.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self {
            parts,
            source: source.to_owned(),
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Renders the template; `Err(claim)` names the first claim that is absent or empty.
    /// A multi-valued claim renders its first value.
    pub fn render(&self, claims: &Claims) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Claim { path, filters } => {
                    let value = path
                        .first_str(claims)
                        .filter(|v| !v.trim().is_empty())
                        .ok_or_else(|| path.to_string())?;
                    out.push_str(&filters.iter().fold(value, |v, f| f.apply(v)));
                }
            }
        }
        Ok(out)
    }

    /// The claims the template reads.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim { path, .. } => Some(path.as_str()),
            Part::Text(_) => None,
        })
    }

    /// True when the template is empty (the field is not managed).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The inside of a placeholder (after its `{`) and what follows its closing `}`; quoted
/// path segments may hold `}`, `{` and `|`.
fn placeholder(rest: &str) -> Result<(&str, &str), &'static str> {
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '}' if !quoted => return Ok((&rest[..i], &rest[i + 1..])),
            '{' if !quoted => return Err("nested `{`"),
            _ => {}
        }
    }
    Err("unclosed `{`")
}

/// The claim path and the filters of a placeholder: split at each `|` outside quotes.
fn split_filters(inner: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '|' if !quoted => {
                pieces.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: serde_json::Value) -> Claims {
        Claims(v.as_object().unwrap().clone())
    }

    #[test]
    fn renders_text_claims_filters_and_escapes() {
        let t: Template = "{{{given_name} {family_name | uppercase}}}"
            .parse()
            .unwrap();
        let c = claims(serde_json::json!({"given_name": "Jane", "family_name": "Doe"}));
        assert_eq!(t.render(&c).unwrap(), "{Jane DOE}");
        let t: Template = "{email|domain}".parse().unwrap();
        assert_eq!(
            t.render(&claims(serde_json::json!({"email": "a@b.c"})))
                .unwrap(),
            "b.c"
        );
    }

    #[test]
    fn missing_claim_is_named() {
        let t: Template = "{uid}-{dept}".parse().unwrap();
        assert_eq!(
            t.render(&claims(serde_json::json!({"uid": "1"}))),
            Err("dept".into())
        );
        assert_eq!(t.claims().collect::<Vec<_>>(), ["uid", "dept"]);
    }

    #[test]
    fn saml_uris_are_claim_names_and_arrays_give_their_first_value() {
        let uri = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";
        let t: Template = format!("{{{uri} | lowercase}}").parse().unwrap();
        let c = claims(serde_json::json!({ uri: ["JANE", "other"] }));
        assert_eq!(t.render(&c).unwrap(), "jane");
    }

    #[test]
    fn placeholders_take_claim_paths_with_quoted_segments() {
        let c = claims(serde_json::json!({
            "realm_access": {"roles": ["Admin", "user"]},
            "resource_access": {"my-app": {"roles": ["editor"]}, "a|b}": {"x": "odd"}},
        }));
        let t: Template = "{realm_access.roles | lowercase}".parse().unwrap();
        assert_eq!(t.render(&c).unwrap(), "admin");
        let t: Template = r#"{resource_access."my-app".roles|uppercase}!"#.parse().unwrap();
        assert_eq!(t.render(&c).unwrap(), "EDITOR!");
        // `|` and `}` inside quotes belong to the segment.
        let t: Template = r#"{resource_access."a|b}".x | uppercase}"#.parse().unwrap();
        assert_eq!(t.render(&c).unwrap(), "ODD");
        assert_eq!(
            t.claims().collect::<Vec<_>>(),
            [r#"resource_access."a|b}".x"#]
        );
        let t: Template = "{realm_access.missing}".parse().unwrap();
        assert_eq!(t.render(&c), Err("realm_access.missing".into()));
    }

    #[test]
    fn malformed_paths_in_placeholders_are_refused() {
        for bad in [
            "{a..b}",
            "{a.}",
            r#"{"a}"#,
            r#"{a."b"c}"#,
            "{.a | lowercase}",
        ] {
            let err = bad.parse::<Template>().unwrap_err();
            assert!(
                err.to_string().contains("claim path") || err.to_string().contains("unclosed"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["{", "}", "{}", "{a", "{a|nope}", "{a{b}}", "a}b"] {
            assert!(bad.parse::<Template>().is_err(), "{bad}");
        }
        assert!("x".repeat(MAX_TEMPLATE + 1).parse::<Template>().is_err());
    }
}
