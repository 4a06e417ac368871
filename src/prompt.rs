//! Prompts before provisioning (WSO2's "prompt for username, password and consent"): a hook
//! can send a first-time user to an application page (consent, choose a username, set a
//! password) and resume the provisioning afterwards. Silent when no hook is registered.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::mapping::Claims;
use crate::store::{Identity, Profile};

/// What a prompt hook is told about the user about to be created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptRequest {
    /// The provider id.
    pub provider: String,
    /// The validated identity.
    pub identity: Identity,
    /// The profile the mapping produced (username, email, ...): what would be created.
    pub profile: Profile,
}

/// A hook run before a user is created at a first login.
///
/// ```
/// use std::collections::HashMap;
/// use jit_provision::prompt::{ProvisionPrompt, PromptRequest};
/// use jit_provision::store::Profile;
///
/// /// Asks for consent, and lets the user pick another username.
/// struct Consent;
/// impl ProvisionPrompt for Consent {
///     fn before_create(&self, _: &PromptRequest) -> Option<String> {
///         Some("/welcome".into()) // the app's page; it posts its form to /auth/resume
///     }
///     fn resume(&self, req: &PromptRequest, form: &HashMap<String, String>) -> Result<Profile, String> {
///         if form.get("consent").map(String::as_str) != Some("yes") {
///             return Err("consent is required".into());
///         }
///         let mut profile = req.profile.clone();
///         if let Some(name) = form.get("username").filter(|n| !n.is_empty()) {
///             profile.username = name.clone();
///         }
///         Ok(profile)
///     }
/// }
/// # let _ = Consent;
/// ```
pub trait ProvisionPrompt: Send + Sync + 'static {
    /// `None` creates the user at once (silent); `Some(path)` sends the browser to that
    /// same-origin application page first. The page reads the pending request from the
    /// [`PendingPrompt`] request extension and posts its form to `{prefix}/resume`.
    fn before_create(&self, request: &PromptRequest) -> Option<String>;

    /// The page's form came back: the profile to create (the username the user chose, say),
    /// or a reason to refuse (`403`, nothing created).
    ///
    /// The returned profile only fills what creation asks for: the username (checked by the
    /// domain's username policy; one that is taken is `409 username_taken`, never a link to
    /// its account), the display name, and attributes the identity provider did not assert.
    /// The email, the groups and every attribute the provider asserted stay as
    /// [`PromptRequest::profile`] has them, and whether the identity is linked to an existing
    /// account, and in which user-store domain the user is created, are decided from what the
    /// provider asserted alone, never from the form.
    fn resume(
        &self,
        request: &PromptRequest,
        form: &HashMap<String, String>,
    ) -> Result<Profile, String>;
}

/// A provisioning waiting for the user, put in the request extensions of every request that
/// carries the pending-prompt cookie, so the application's prompt page can show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingPrompt {
    /// What the hook was asked.
    pub request: PromptRequest,
    /// Where the login goes once provisioned.
    pub return_to: String,
    /// When the prompt expires (Unix seconds).
    pub expires_at: i64,
}

/// What the pending-prompt cookie carries, sealed: the [`PendingPrompt`] the application's
/// page sees, and what a resume decides by, all of it as the identity provider asserted it.
///
/// Kept small for the 4 KiB cookie limit: of the claims only those linking reads
/// ([`LINKING_CLAIMS`](crate::provision::LINKING_CLAIMS)); the mapped profile is the one in
/// the request.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PromptState {
    /// The pending prompt (its request's profile is the mapped profile).
    #[serde(rename = "p")]
    pub(crate) pending: PendingPrompt,
    /// Single-use id, consumed in the replay guard at the first resume (or at logout).
    #[serde(rename = "id")]
    pub(crate) id: String,
    /// The user-store domain the mapped username resolved to.
    #[serde(rename = "d")]
    pub(crate) domain: String,
    /// The claims linking reads, as asserted.
    #[serde(rename = "c")]
    pub(crate) claims: Claims,
    /// The IdP's session of the login (OIDC `sid`, SAML `SessionIndex`), for the session the
    /// resume starts. (Its tokens are not carried: the cookie would not hold them.)
    #[serde(rename = "is", default, skip_serializing_if = "Option::is_none")]
    pub(crate) idp_session: Option<String>,
}

impl std::fmt::Debug for PromptState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptState")
            .field("pending", &self.pending)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}
