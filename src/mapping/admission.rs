//! Admission rules: *who may be provisioned* by a provider, checked at every login (first and
//! returning, OpenID Connect, SAML and bearer) before anything is written.
//!
//! Three kinds of rule, all optional, all of which must hold:
//!
//! - **`email_domains`**: the email (claim `email_claim`, default `email`) must be verified
//!   — the `email_verified` claim is the boolean `true`, or the provider's
//!   [`linking.trust_email`](crate::config::LinkingConfig::trust_email) is set — and its
//!   domain (after the last `@`) must be one of the list, compared case-insensitively. An
//!   entry is an exact domain (`example.com` does not admit `eu.example.com`), or `*.` and a
//!   domain for any of its subdomains (`*.example.com` admits `eu.example.com`, not
//!   `example.com`).
//! - **`require_groups`**: the groups claim of the provider's `mapping.groups.claim` (default
//!   `groups`), read as the IdP asserts it (before the allow-list, renames and namespace),
//!   must hold one of the listed groups (`require_groups_mode = "any"`, the default) or all
//!   of them (`"all"`). An entry may use `*` for any run of characters.
//! - **`claims`**: each rule reads a [`ClaimPath`] and holds when one of the values it reads
//!   matches: `equals` a value, is `one_of` a list, matches a `glob` (`*`) or a `regex`
//!   (the whole value must match; at most [`MAX_REGEX`] bytes of pattern, compiled at build
//!   under a size limit). Values are compared as strings (numbers and booleans in their JSON
//!   form). An absent claim does not match.
//!
//! A refusal is `403 not_admitted` naming the rule
//! ([`ProvisionError::NotAdmitted`](crate::ProvisionError::NotAdmitted)); with
//! `lock_on_refusal = true` a returning user who is refused is also locked, so its sessions
//! stop working too.
//!
//! ```
//! use jit_provision::Claims;
//! use jit_provision::mapping::admission::AdmissionConfig;
//! use jit_provision::mapping::trace::{Trace, Verdict};
//! let config: AdmissionConfig = toml::from_str(r#"
//!     email_domains = ["example.com", "*.example.org"]
//!     require_groups = ["staff", "eng-*"]
//!     [[claims]]
//!     path = "tenant.id"
//!     one_of = ["t1", "t2"]
//! "#).unwrap();
//! let rules = config.compile("groups").unwrap();
//! let claims = Claims(serde_json::json!({
//!     "email": "jane@EU.example.org", "email_verified": true,
//!     "groups": ["eng-web"], "tenant": {"id": "t2"},
//! }).as_object().unwrap().clone());
//! let mut trace = Trace::default();
//! assert!(rules.admit(&claims, false, &mut trace).is_ok());
//! assert!(trace.0.iter().all(|d| d.verdict == Verdict::Admitted));
//!
//! let outsider = Claims(serde_json::json!({
//!     "email": "eve@example.org.evil.test", "email_verified": true,
//!     "groups": ["eng-web"], "tenant": {"id": "t2"},
//! }).as_object().unwrap().clone());
//! let refusal = rules.admit(&outsider, false, &mut Trace::default()).unwrap_err();
//! assert_eq!(refusal.rule, "admission.email_domains");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::path::{ClaimPath, scalar};
use super::trace::{Decision, Target, Trace, Verdict};
use super::{Claims, glob};

/// Longest `regex` pattern accepted, in bytes.
pub const MAX_REGEX: usize = 1024;
/// Compiled size limit of one `regex`, in bytes.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Most entries in one list (`email_domains`, `require_groups`, `one_of`).
const MAX_LIST: usize = 1024;

/// `[providers.<id>.admission]`: who may be provisioned (see the [module documentation](self)).
/// Every field is optional; the default admits everyone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Email domains admitted (`example.com`, `*.example.com`); only a verified email counts.
    /// Absent: no email rule. Empty: a configuration error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_domains: Option<Vec<String>>,
    /// The claim the email is read from. Default `email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_claim: Option<String>,
    /// IdP groups (as asserted, `*` allowed) a user must be in. Absent: no group rule.
    /// Empty: a configuration error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_groups: Option<Vec<String>>,
    /// Whether one (`any`, the default) or every (`all`) entry of `require_groups` must be
    /// matched.
    pub require_groups_mode: GroupsMode,
    /// Claim-value rules, all of which must hold.
    pub claims: Vec<ClaimRuleConfig>,
    /// Lock a returning user whom an admission rule refuses (through the store's
    /// `set_locked`; its cached copies are dropped on every instance, so its sessions end; an
    /// administrator unlocks it). Not for `roles.strict` refusals. Default `false`: the login
    /// is refused, the user stays as it is.
    pub lock_on_refusal: bool,
}

/// How `require_groups` is matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsMode {
    /// At least one of the groups (the default, like oauth2-proxy's `allowed_groups`).
    #[default]
    Any,
    /// Every one of the groups.
    All,
}

/// `[[providers.<id>.admission.claims]]`: a claim path and exactly one test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClaimRuleConfig {
    /// The claim, as a [`ClaimPath`].
    pub path: String,
    /// The value must equal this (a string, number or boolean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The value must be one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// The value must match this pattern (`*` for any run of characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// The whole value must match this regular expression (`regex` crate syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A test of claim values: shared by admission claim rules and role conditions.
#[derive(Debug, Clone)]
pub(crate) enum ValueTest {
    OneOf(Vec<String>),
    Glob(String),
    Regex(regex::Regex),
}

impl ValueTest {
    /// Compiles exactly one of the four tests; `rule` names it in errors.
    pub(crate) fn compile(
        rule: &str,
        equals: Option<&Value>,
        one_of: Option<&[Value]>,
        glob: Option<&str>,
        regex: Option<&str>,
    ) -> Result<Self, String> {
        let given = [
            equals.is_some(),
            one_of.is_some(),
            glob.is_some(),
            regex.is_some(),
        ]
        .into_iter();
        if given.filter(|set| *set).count() != 1 {
            return Err(format!(
                "{rule}: give exactly one of `equals`, `one_of`, `glob`, `regex`"
            ));
        }
        let scalar_of = |value: &Value| {
            scalar(value)
                .ok_or_else(|| format!("{rule}: values must be strings, numbers or booleans"))
        };
        if let Some(value) = equals {
            return Ok(Self::OneOf(vec![scalar_of(value)?]));
        }
        if let Some(values) = one_of {
            if values.is_empty() || values.len() > MAX_LIST {
                return Err(format!("{rule}: `one_of` must hold 1 to {MAX_LIST} values"));
            }
            return Ok(Self::OneOf(
                values.iter().map(scalar_of).collect::<Result<_, _>>()?,
            ));
        }
        if let Some(pattern) = glob {
            if pattern.is_empty() {
                return Err(format!("{rule}: `glob` is empty"));
            }
            return Ok(Self::Glob(pattern.to_owned()));
        }
        let pattern = regex.unwrap_or_default();
        if pattern.is_empty() || pattern.len() > MAX_REGEX {
            return Err(format!("{rule}: `regex` must be 1 to {MAX_REGEX} bytes"));
        }
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Self::Regex)
            .map_err(|e| format!("{rule}: bad `regex`: {e}"))
    }

    /// Whether one value passes.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Self::OneOf(values) => values.iter().any(|v| v == value),
            Self::Glob(pattern) => glob(pattern, value),
            Self::Regex(regex) => regex.is_match(value),
        }
    }

    /// Whether any scalar value `path` reads passes.
    pub(crate) fn any(&self, path: &ClaimPath, claims: &Claims) -> bool {
        path.values(claims)
            .into_iter()
            .filter_map(scalar)
            .any(|value| self.matches(&value))
    }
}

/// A claim-value rule, compiled.
#[derive(Debug, Clone)]
struct ClaimRule {
    path: ClaimPath,
    test: ValueTest,
}

/// An [`AdmissionConfig`] checked and compiled: built once per provider.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    email_domains: Option<Vec<String>>,
    email_claim: Option<ClaimPath>,
    groups_claim: Option<ClaimPath>,
    require_groups: Vec<String>,
    mode: GroupsMode,
    claims: Vec<ClaimRule>,
    lock_on_refusal: bool,
}

/// A refused admission: the rule, and the [`Decision`] that refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule as configured: `admission.email_domains`, `admission.require_groups`,
    /// `admission.claims[0]`.
    pub rule: String,
    /// The decision, as pushed into the trace.
    pub decision: Decision,
}

impl AdmissionConfig {
    /// Checks and compiles the rules; `groups_claim` is the provider's `mapping.groups.claim`
    /// (what `require_groups` reads). An error names the rule: a bad or empty list, a bad
    /// domain, claim path or regex, a claim rule without exactly one test.
    ///
    /// ```
    /// use jit_provision::mapping::admission::AdmissionConfig;
    /// let bad: AdmissionConfig = toml::from_str(r#"
    ///     [[claims]]
    ///     path = "acr"
    ///     regex = "(unclosed"
    /// "#).unwrap();
    /// assert!(bad.compile("groups").unwrap_err().starts_with("admission.claims[0]"));
    /// ```
    pub fn compile(&self, groups_claim: &str) -> Result<Admission, String> {
        let email_domains = self
            .email_domains
            .as_ref()
            .map(|domains| compile_domains(domains))
            .transpose()?;
        let email_claim = match (&self.email_domains, &self.email_claim) {
            (None, _) => None,
            (Some(_), claim) => Some(parse_path(
                "admission.email_claim",
                claim.as_deref().unwrap_or("email"),
            )?),
        };
        let mut require_groups = Vec::new();
        let mut groups_path = None;
        if let Some(groups) = &self.require_groups {
            let rule = "admission.require_groups";
            if groups.is_empty() || groups.len() > MAX_LIST {
                return Err(format!("{rule}: must hold 1 to {MAX_LIST} groups"));
            }
            if groups.iter().any(|g| g.trim().is_empty()) {
                return Err(format!("{rule}: a group name is empty"));
            }
            require_groups.clone_from(groups);
            groups_path = Some(parse_path(rule, groups_claim)?);
        }
        let claims = self
            .claims
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let name = format!("admission.claims[{i}]");
                Ok(ClaimRule {
                    path: parse_path(&name, &rule.path)?,
                    test: ValueTest::compile(
                        &name,
                        rule.equals.as_ref(),
                        rule.one_of.as_deref(),
                        rule.glob.as_deref(),
                        rule.regex.as_deref(),
                    )?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Admission {
            email_domains,
            email_claim,
            groups_claim: groups_path,
            require_groups,
            mode: self.require_groups_mode,
            claims,
            lock_on_refusal: self.lock_on_refusal,
        })
    }
}

/// A claim path, or an error naming the rule.
pub(crate) fn parse_path(rule: &str, path: &str) -> Result<ClaimPath, String> {
    path.parse().map_err(|e| format!("{rule}: {e}"))
}

/// Lowercased domains; `*.` only as a prefix.
fn compile_domains(domains: &[String]) -> Result<Vec<String>, String> {
    let rule = "admission.email_domains";
    if domains.is_empty() || domains.len() > MAX_LIST {
        return Err(format!("{rule}: must hold 1 to {MAX_LIST} domains"));
    }
    domains
        .iter()
        .map(|entry| {
            let domain = entry.strip_prefix("*.").unwrap_or(entry);
            let bad = |c: char| c == '@' || c == '*' || c.is_whitespace() || c.is_control();
            if domain.is_empty()
                || domain.starts_with('.')
                || domain.ends_with('.')
                || domain.contains(bad)
            {
                return Err(format!(
                    "{rule}: `{}` is not a domain or `*.domain`",
                    entry.chars().take(80).collect::<String>()
                ));
            }
            Ok(entry.to_lowercase())
        })
        .collect()
}

/// Whether `domain` (lowercased) is admitted by one of the lowercased `patterns`.
fn domain_matches(patterns: &[String], domain: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(parent) => domain
                .strip_suffix(parent)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => pattern == domain,
        })
}

impl Admission {
    /// True when there is no rule: everyone is admitted.
    pub fn is_empty(&self) -> bool {
        self.email_domains.is_none() && self.groups_claim.is_none() && self.claims.is_empty()
    }

    /// Whether a returning user refused by a rule is locked.
    pub fn locks_on_refusal(&self) -> bool {
        self.lock_on_refusal
    }

    /// Checks every rule against the claims, as asserted; `trust_email` is the provider's
    /// `linking.trust_email`. One [`Decision`] per rule goes into `trace`
    /// ([`Target::Admission`], naming the rule and the claim paths it read, never values);
    /// the first rule that refuses is returned.
    pub fn admit(
        &self,
        claims: &Claims,
        trust_email: bool,
        trace: &mut Trace,
    ) -> Result<(), Refusal> {
        let mut refusal = None;
        let mut decide = |rule: String, read: Vec<String>, ok: bool| {
            let verdict = if ok {
                Verdict::Admitted
            } else {
                Verdict::Refused
            };
            trace.push(Target::Admission, rule.clone(), read, verdict);
            if !ok && refusal.is_none() {
                refusal = trace
                    .0
                    .last()
                    .cloned()
                    .map(|decision| Refusal { rule, decision });
            }
        };
        if let (Some(domains), Some(path)) = (&self.email_domains, &self.email_claim) {
            let verified = trust_email || claims.get("email_verified") == Some(&Value::Bool(true));
            let ok = verified
                && path
                    .first_str(claims)
                    .and_then(|email| {
                        let (_, domain) = email.rsplit_once('@')?;
                        Some(domain_matches(domains, &domain.to_lowercase()))
                    })
                    .unwrap_or(false);
            let mut read = vec![path.to_string()];
            if !trust_email {
                read.push("email_verified".to_owned());
            }
            decide("admission.email_domains".to_owned(), read, ok);
        }
        if let Some(path) = &self.groups_claim {
            let asserted: Vec<String> = path
                .values(claims)
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let held = |pattern: &String| asserted.iter().any(|g| glob(pattern, g));
            let ok = match self.mode {
                GroupsMode::Any => self.require_groups.iter().any(held),
                GroupsMode::All => self.require_groups.iter().all(held),
            };
            decide(
                "admission.require_groups".to_owned(),
                vec![path.to_string()],
                ok,
            );
        }
        for (i, rule) in self.claims.iter().enumerate() {
            let ok = rule.test.any(&rule.path, claims);
            decide(
                format!("admission.claims[{i}]"),
                vec![rule.path.to_string()],
                ok,
            );
        }
        match refusal {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Claims {
        Claims(v.as_object().unwrap().clone())
    }

    fn admission(toml: &str) -> Admission {
        toml::from_str::<AdmissionConfig>(toml)
            .unwrap()
            .compile("groups")
            .unwrap()
    }

    fn refused_by(rules: &Admission, c: Value) -> Option<String> {
        rules
            .admit(&claims(c), false, &mut Trace::default())
            .err()
            .map(|r| r.rule)
    }

    #[test]
    fn email_domains_are_exact_unless_wildcarded_and_need_a_verified_email() {
        let rules = admission(r#"email_domains = ["Example.com", "*.corp.test"]"#);
        let ok = |email: &str| {
            refused_by(
                &rules,
                serde_json::json!({"email": email, "email_verified": true}),
            )
            .is_none()
        };
        assert!(ok("a@example.COM"));
        assert!(!ok("a@eu.example.com"), "exact, not a suffix");
        assert!(!ok("a@badexample.com"));
        assert!(ok("a@eu.corp.test"));
        assert!(!ok("a@corp.test"), "`*.` is subdomains only");
        assert!(!ok("a@evilcorp.test"));
        assert!(!ok("example.com"), "no @");
        // Unverified (absent, false, or the string "true"): refused.
        for verified in [serde_json::json!(false), serde_json::json!("true")] {
            let c = serde_json::json!({"email": "a@example.com", "email_verified": verified});
            assert_eq!(
                refused_by(&rules, c).as_deref(),
                Some("admission.email_domains")
            );
        }
        let unverified = claims(serde_json::json!({"email": "a@example.com"}));
        assert!(
            rules
                .admit(&unverified, false, &mut Trace::default())
                .is_err()
        );
        assert!(
            rules
                .admit(&unverified, true, &mut Trace::default())
                .is_ok()
        );
    }

    #[test]
    fn require_groups_any_or_all_over_the_asserted_names() {
        let any = admission(r#"require_groups = ["staff", "eng-*"]"#);
        assert_eq!(
            refused_by(&any, serde_json::json!({"groups": ["eng-web"]})),
            None
        );
        assert_eq!(
            refused_by(&any, serde_json::json!({"groups": ["finance"]})).as_deref(),
            Some("admission.require_groups")
        );
        assert!(refused_by(&any, serde_json::json!({})).is_some());
        let all = admission(
            r#"require_groups = ["staff", "eng-*"]
               require_groups_mode = "all""#,
        );
        assert!(refused_by(&all, serde_json::json!({"groups": ["eng-web"]})).is_some());
        assert_eq!(
            refused_by(&all, serde_json::json!({"groups": ["eng-web", "staff"]})),
            None
        );
    }

    #[test]
    fn claim_rules_equals_one_of_glob_regex() {
        let rules = admission(
            r#"
            [[claims]]
            path = "acr"
            equals = "mfa"
            [[claims]]
            path = "tenant.id"
            one_of = ["t1", 2]
            [[claims]]
            path = "hd"
            glob = "*.example.com"
            [[claims]]
            path = "amr"
            regex = "pwd|otp"
            "#,
        );
        let good = serde_json::json!({
            "acr": "mfa", "tenant": {"id": 2}, "hd": "eu.example.com", "amr": ["otp", "x"]
        });
        let mut trace = Trace::default();
        assert!(
            rules
                .admit(&claims(good.clone()), false, &mut trace)
                .is_ok()
        );
        assert_eq!(trace.0.len(), 4);
        assert_eq!(trace.0[1].claims, ["tenant.id"]);
        let mut bad = good.clone();
        bad["amr"] = serde_json::json!(["xotp"]);
        assert_eq!(
            refused_by(&rules, bad).as_deref(),
            Some("admission.claims[3]"),
            "a regex matches the whole value"
        );
        let mut bad = good;
        bad.as_object_mut().unwrap().remove("acr");
        assert_eq!(
            refused_by(&rules, bad).as_deref(),
            Some("admission.claims[0]")
        );
    }

    #[test]
    fn invalid_rules_are_refused_at_build_naming_the_rule() {
        for (toml, rule) in [
            ("email_domains = []", "admission.email_domains"),
            (r#"email_domains = ["a@b.c"]"#, "admission.email_domains"),
            (r#"email_domains = ["*"]"#, "admission.email_domains"),
            (r#"email_domains = ["a.*.com"]"#, "admission.email_domains"),
            ("require_groups = []", "admission.require_groups"),
            (
                "[[claims]]\npath = \"a..b\"\nequals = \"x\"",
                "admission.claims[0]",
            ),
            ("[[claims]]\npath = \"a\"", "admission.claims[0]"),
            (
                "[[claims]]\npath = \"a\"\nequals = \"x\"\nglob = \"y\"",
                "admission.claims[0]",
            ),
            (
                "[[claims]]\npath = \"a\"\none_of = []",
                "admission.claims[0]",
            ),
            (
                "[[claims]]\npath = \"a\"\nregex = \"(\"",
                "admission.claims[0]",
            ),
            (
                "[[claims]]\npath = \"a\"\nequals = [1]",
                "admission.claims[0]",
            ),
        ] {
            let config: AdmissionConfig = toml::from_str(toml).unwrap();
            let err = config.compile("groups").unwrap_err();
            assert!(err.starts_with(rule), "{toml}: {err}");
        }
        let huge = format!("[[claims]]\npath = \"a\"\nregex = \"{}\"", "a{1000}{1000}");
        let config: AdmissionConfig = toml::from_str(&huge).unwrap();
        assert!(config.compile("groups").is_err(), "over the size limit");
    }
}
