//! Roles: derived at every login by ordered rules from the claims and the mapped groups, and
//! kept apart from groups (`User::roles`), with the same per-provider provenance: a login
//! adds and removes only the roles its provider granted.
//!
//! Each rule grants `role` when its condition holds:
//!
//! - `when = { group = "eng-*" }`: one of the **mapped** groups (after `groups.allow`, renames
//!   and namespace, so a role can never be reached through a group the allow-list keeps out)
//!   matches the pattern (`*` for any run of characters);
//! - `when = { claim = "realm_access.roles", one_of = ["admin"] }` (or `equals`, `glob`,
//!   `regex`, as in [admission claim rules](super::admission)): a value the [`ClaimPath`]
//!   reads matches.
//!
//! `mode = "first"` (the default) grants the role of the first rule that matches;
//! `mode = "all"` grants the role of every rule that matches. When none matches, `default`
//! is granted if set; with `strict = true` the login is refused instead (`403 no_role`;
//! `strict` and `default` together are a configuration error).
//!
//! When a rule reads groups and the groups claim was absent (with `groups.when_absent =
//! "keep"`, the provider said nothing), the roles cannot be decided: they are kept as they
//! are, and a `strict` provider refuses the login.
//!
//! ```
//! use std::collections::BTreeSet;
//! use jit_provision::Claims;
//! use jit_provision::mapping::roles::RolesConfig;
//! use jit_provision::mapping::trace::Trace;
//! let config: RolesConfig = toml::from_str(r#"
//!     mode = "all"
//!     default = "viewer"
//!     [[rules]]
//!     role = "admin"
//!     when = { claim = "realm_access.roles", one_of = ["realm-admin"] }
//!     [[rules]]
//!     role = "editor"
//!     when = { group = "eng-*" }
//! "#).unwrap();
//! let roles = config.compile().unwrap();
//! let claims = Claims(serde_json::json!({
//!     "realm_access": {"roles": ["realm-admin", "offline_access"]},
//! }).as_object().unwrap().clone());
//! let groups: BTreeSet<String> = ["eng-web".to_owned()].into();
//! let granted = roles.grant(&claims, Some(&groups), &mut Trace::default()).unwrap().unwrap();
//! assert_eq!(granted.into_iter().collect::<Vec<_>>(), ["admin", "editor"]);
//! let nobody = roles.grant(&claims, Some(&BTreeSet::new()), &mut Trace::default());
//! assert_eq!(nobody.unwrap().unwrap().into_iter().collect::<Vec<_>>(), ["admin"]);
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::admission::{ValueTest, parse_path};
use super::path::ClaimPath;
use super::trace::{Decision, Target, Trace, Verdict};
use super::{Claims, glob};

/// Longest role name.
const MAX_ROLE: usize = 256;
/// Most role rules of one provider.
const MAX_RULES: usize = 1024;

/// `[providers.<id>.roles]`: how logins of a provider grant roles (see the
/// [module documentation](self)).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RolesConfig {
    /// First match (the default) or all matches.
    pub mode: RolesMode,
    /// Refuse a login no rule grants a role (`403 no_role`). Default `false`.
    pub strict: bool,
    /// The role granted when no rule matches (not with `strict`). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The rules, in order.
    pub rules: Vec<RoleRuleConfig>,
}

/// Which matching rules grant their role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolesMode {
    /// The first rule that matches (the default).
    #[default]
    First,
    /// Every rule that matches.
    All,
}

/// `[[providers.<id>.roles.rules]]`: a role and when it is granted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RoleRuleConfig {
    /// The role granted.
    pub role: String,
    /// The condition.
    pub when: RoleCondition,
}

/// The condition of a role rule: `group`, or `claim` with exactly one test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleCondition {
    /// A mapped (local) group pattern, `*` for any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A claim, as a [`ClaimPath`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// With `claim`: a value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// With `claim`: a value is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// With `claim`: a value matches this pattern (`*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// With `claim`: a whole value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

#[derive(Debug, Clone)]
enum Condition {
    Group(String),
    Claim(ClaimPath, ValueTest),
}

#[derive(Debug, Clone)]
struct RoleRule {
    role: String,
    when: Condition,
}

/// A [`RolesConfig`] checked and compiled: built once per provider.
#[derive(Debug, Clone)]
pub struct Roles {
    mode: RolesMode,
    strict: bool,
    default: Option<String>,
    rules: Vec<RoleRule>,
    reads_groups: bool,
}

impl RolesConfig {
    /// Checks and compiles the rules; an error names the rule (`roles.rules[1]: ...`).
    ///
    /// ```
    /// use jit_provision::mapping::roles::RolesConfig;
    /// let bad: RolesConfig = toml::from_str(r#"
    ///     [[rules]]
    ///     role = "admin"
    ///     when = { group = "admins", claim = "x", equals = "y" }
    /// "#).unwrap();
    /// assert!(bad.compile().unwrap_err().starts_with("roles.rules[0]"));
    /// ```
    pub fn compile(&self) -> Result<Roles, String> {
        if self.rules.len() > MAX_RULES {
            return Err(format!("roles.rules: at most {MAX_RULES} rules"));
        }
        if let Some(default) = &self.default {
            check_role("roles.default", default)?;
            if self.strict {
                return Err(
                    "roles.default: `strict` refuses a login no rule matches, so the default would never apply"
                        .into(),
                );
            }
        }
        if self.rules.is_empty() && self.default.is_none() {
            return Err("roles.rules: no rule and no default: no role could be granted".into());
        }
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let name = format!("roles.rules[{i}]");
                check_role(&name, &rule.role)?;
                Ok(RoleRule {
                    role: rule.role.clone(),
                    when: compile_condition(&name, &rule.when)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Roles {
            mode: self.mode,
            strict: self.strict,
            default: self.default.clone(),
            reads_groups: rules.iter().any(|r| matches!(r.when, Condition::Group(_))),
            rules,
        })
    }
}

fn check_role(rule: &str, role: &str) -> Result<(), String> {
    if role.trim().is_empty() || role.len() > MAX_ROLE || role.chars().any(char::is_control) {
        return Err(format!(
            "{rule}: a role name is 1 to {MAX_ROLE} bytes without control characters"
        ));
    }
    Ok(())
}

fn compile_condition(rule: &str, when: &RoleCondition) -> Result<Condition, String> {
    let tests = when.equals.is_some()
        || when.one_of.is_some()
        || when.glob.is_some()
        || when.regex.is_some();
    match (&when.group, &when.claim) {
        (Some(group), None) if !tests => {
            if group.trim().is_empty() {
                return Err(format!("{rule}: `group` is empty"));
            }
            Ok(Condition::Group(group.clone()))
        }
        (None, Some(claim)) => Ok(Condition::Claim(
            parse_path(rule, claim)?,
            ValueTest::compile(
                rule,
                when.equals.as_ref(),
                when.one_of.as_deref(),
                when.glob.as_deref(),
                when.regex.as_deref(),
            )?,
        )),
        _ => Err(format!(
            "{rule}: `when` is `{{ group = \"..\" }}` or `{{ claim = \"..\", one_of = [..] }}` (or `equals`, `glob`, `regex`)"
        )),
    }
}

impl Roles {
    /// The roles a login grants: `Ok(None)` when they cannot be decided (a rule reads groups
    /// and the provider sent none, `groups` is `None`): keep what the provider granted
    /// before. One [`Decision`] per role granted or dropped goes into `trace`
    /// ([`Target::Role`], rule `roles.rules[i]` or `roles.default`). `Err` is the strict
    /// refusal ([`Target::Admission`], rule `roles.strict`).
    pub fn grant(
        &self,
        claims: &Claims,
        groups: Option<&BTreeSet<String>>,
        trace: &mut Trace,
    ) -> Result<Option<BTreeSet<String>>, Decision> {
        let refuse = |trace: &mut Trace, read: Vec<String>| {
            trace.push(Target::Admission, "roles.strict", read, Verdict::Refused);
            Err(trace.0.last().cloned().expect("just pushed"))
        };
        let groups = match groups {
            Some(groups) => groups,
            None if self.reads_groups && self.strict => {
                return refuse(trace, vec!["groups".into()]);
            }
            None if self.reads_groups => return Ok(None),
            None => &BTreeSet::new(),
        };
        let mut granted = BTreeSet::new();
        let mut read = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let (matched, claim) = match &rule.when {
                Condition::Group(pattern) => (groups.iter().any(|g| glob(pattern, g)), None),
                Condition::Claim(path, test) => (test.any(path, claims), Some(path.to_string())),
            };
            read.extend(claim.clone());
            let done = !granted.is_empty() && self.mode == RolesMode::First;
            let verdict = if matched && !done {
                granted.insert(rule.role.clone());
                Verdict::Granted
            } else if granted.contains(&rule.role) {
                continue;
            } else {
                Verdict::Dropped
            };
            trace.push(
                Target::Role(rule.role.clone()),
                format!("roles.rules[{i}]"),
                claim,
                verdict,
            );
        }
        if granted.is_empty() {
            if self.strict {
                return refuse(trace, read);
            }
            if let Some(default) = &self.default {
                trace.push(
                    Target::Role(default.clone()),
                    "roles.default",
                    Vec::<String>::new(),
                    Verdict::Defaulted,
                );
                granted.insert(default.clone());
            }
        }
        Ok(Some(granted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(toml: &str) -> Roles {
        toml::from_str::<RolesConfig>(toml)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn claims(v: Value) -> Claims {
        Claims(v.as_object().unwrap().clone())
    }

    const RULES: &str = r#"
        [[rules]]
        role = "admin"
        when = { claim = "realm_access.roles", one_of = ["realm-admin"] }
        [[rules]]
        role = "editor"
        when = { claim = 'resource_access."demo".roles', equals = "editor" }
        [[rules]]
        role = "viewer"
        when = { group = "staff" }
    "#;

    fn names(set: Option<BTreeSet<String>>) -> Vec<String> {
        set.unwrap().into_iter().collect()
    }

    fn both() -> Claims {
        claims(serde_json::json!({
            "realm_access": {"roles": ["realm-admin"]},
            "resource_access": {"demo": {"roles": ["editor"]}},
        }))
    }

    #[test]
    fn first_match_or_all_matches() {
        let staff: BTreeSet<String> = ["staff".to_owned()].into();
        let first = roles(RULES);
        let mut trace = Trace::default();
        assert_eq!(
            names(first.grant(&both(), Some(&staff), &mut trace).unwrap()),
            ["admin"]
        );
        assert_eq!(trace.0[0].rule, "roles.rules[0]");
        assert_eq!(trace.0[0].verdict, Verdict::Granted);
        let all = roles(&format!("mode = \"all\"\n{RULES}"));
        let mut trace = Trace::default();
        assert_eq!(
            names(all.grant(&both(), Some(&staff), &mut trace).unwrap()),
            ["admin", "editor", "viewer"]
        );
        assert_eq!(trace.0[1].claims, [r#"resource_access."demo".roles"#]);
    }

    #[test]
    fn default_strict_and_undecidable() {
        let none = claims(serde_json::json!({}));
        let with_default = roles(&format!("default = \"guest\"\n{RULES}"));
        let mut trace = Trace::default();
        assert_eq!(
            names(
                with_default
                    .grant(&none, Some(&BTreeSet::new()), &mut trace)
                    .unwrap()
            ),
            ["guest"]
        );
        assert_eq!(trace.0.last().unwrap().rule, "roles.default");
        assert_eq!(
            trace
                .0
                .iter()
                .filter(|d| d.verdict == Verdict::Dropped)
                .count(),
            3
        );
        // Groups absent (keep): undecided, roles kept.
        assert_eq!(
            with_default.grant(&none, None, &mut Trace::default()),
            Ok(None)
        );
        let strict = roles(&format!("strict = true\n{RULES}"));
        let refusal = strict
            .grant(&none, Some(&BTreeSet::new()), &mut Trace::default())
            .unwrap_err();
        assert_eq!(refusal.rule, "roles.strict");
        assert!(strict.grant(&none, None, &mut Trace::default()).is_err());
    }

    #[test]
    fn bad_rules_are_refused_naming_them() {
        for (toml, rule) in [
            ("", "roles.rules"),
            (
                "strict = true\ndefault = \"x\"\n[[rules]]\nrole = \"a\"\nwhen = { group = \"g\" }",
                "roles.default",
            ),
            (
                "[[rules]]\nrole = \"\"\nwhen = { group = \"g\" }",
                "roles.rules[0]",
            ),
            (
                "[[rules]]\nrole = \"a\"\nwhen = { claim = \"a..b\", equals = \"x\" }",
                "roles.rules[0]",
            ),
            (
                "[[rules]]\nrole = \"a\"\nwhen = { claim = \"a\" }",
                "roles.rules[0]",
            ),
            (
                "[[rules]]\nrole = \"a\"\nwhen = { group = \"g\", equals = \"x\" }",
                "roles.rules[0]",
            ),
            (
                "[[rules]]\nrole = \"a\"\nwhen = { claim = \"a\", regex = \"[\" }",
                "roles.rules[0]",
            ),
        ] {
            let config: RolesConfig = toml::from_str(toml).unwrap();
            let err = config.compile().unwrap_err();
            assert!(err.starts_with(rule), "{toml}: {err}");
        }
    }
}
