//! Why a mapping produced what it did: one [`Decision`] per username, attribute, group, role
//! and admission rule, naming the rule and the claim paths it read — never claim values, so a
//! trace may go into events and logs.

use serde::Serialize;

/// What a [`Decision`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// The username.
    Username,
    /// The email.
    Email,
    /// The display name.
    DisplayName,
    /// A mapped attribute, by its local name.
    Attribute(String),
    /// A local group, by its local name (or the IdP's, when dropped).
    Group(String),
    /// A role, by its name.
    Role(String),
    /// An admission rule.
    Admission,
}

/// What happened to a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// The value was set from the claims.
    Set,
    /// The value came from a default or a constant.
    Defaulted,
    /// Nothing was set (absent claim, not managed, not owned at this login).
    Skipped,
    /// A group or role was granted.
    Granted,
    /// A group or role the IdP named was not granted.
    Dropped,
    /// An admission rule was satisfied.
    Admitted,
    /// An admission rule refused the login.
    Refused,
}

/// One decision of a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What the decision is about.
    pub target: Target,
    /// The rule that decided, as configured (`attributes.department = "{dept}"`,
    /// `groups.rename idp-admins -> admins`, `roles[2]`, `admission.email_domains`).
    pub rule: String,
    /// The claim paths the rule read.
    pub claims: Vec<String>,
    /// What happened.
    pub verdict: Verdict,
}

/// Every decision of one mapping, in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Trace(pub Vec<Decision>);

impl Trace {
    /// Records a decision.
    pub fn push(
        &mut self,
        target: Target,
        rule: impl Into<String>,
        claims: impl IntoIterator<Item = impl Into<String>>,
        verdict: Verdict,
    ) {
        self.0.push(Decision {
            target,
            rule: rule.into(),
            claims: claims.into_iter().map(Into::into).collect(),
            verdict,
        });
    }

    /// The first refusal, if any.
    pub fn refusal(&self) -> Option<&Decision> {
        self.0.iter().find(|d| d.verdict == Verdict::Refused)
    }
}
