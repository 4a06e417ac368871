//! The assembled components the service and the endpoints share between requests (built by
//! [`JitLayerBuilder::build`](crate::JitLayerBuilder::build)), and what is derived from them
//! alone. Below the endpoints and the service: neither imports the layer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SessionConfig;
use crate::oidc::OidcProvider;
use crate::provision::{Policy, Provisioner};
use crate::replay::ErasedGuard;
use crate::session::{CookieCodec, SessionTokens, Sessions};

/// Everything the service shares between requests.
pub(crate) struct Shared {
    pub(crate) prefix: String,
    /// The origin of `public_url`: the only `Origin` a logout or resume may come from.
    pub(crate) origin: url::Origin,
    pub(crate) providers: HashMap<String, Arc<OidcProvider>>,
    pub(crate) provisioner: Provisioner,
    /// The sessions: issue, open, end.
    pub(crate) sessions: Sessions,
    /// Each provider's provisioning policy.
    pub(crate) policies: HashMap<String, Arc<Policy>>,
    /// The SAML providers.
    #[cfg(feature = "saml")]
    pub(crate) saml: HashMap<String, Arc<crate::saml::SamlServiceProvider>>,
    pub(crate) codec: CookieCodec,
    /// The pending-prompt cookie's name, when any provider has a prompt hook.
    pub(crate) prompt_cookie: Option<String>,
    pub(crate) session: SessionConfig,
    /// One-time values (OIDC states) already used.
    pub(crate) replay: Arc<dyn ErasedGuard>,
    pub(crate) context: Arc<crate::extract::AuthContext>,
    pub(crate) bearer: Option<crate::bearer::Bearer>,
    /// The token refreshes in flight ([`IdpAccessToken`](crate::IdpAccessToken)).
    pub(crate) refresher: Refresher,
    /// Tells the invalidation follower to stop when the layer is gone.
    pub(crate) stop: Arc<tokio::sync::Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.notify_one();
    }
}

/// One refresh in flight per session in this process.
#[derive(Clone)]
pub(crate) struct Refresher {
    pub(crate) in_flight: moka::future::Cache<Arc<str>, Arc<SessionTokens>>,
}

impl Refresher {
    pub(crate) fn new() -> Self {
        Self {
            // An entry lives from the end of its refresh until its waiters took it: the
            // refreshed record is in the record cache by then.
            in_flight: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(1))
                .build(),
        }
    }
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher").finish_non_exhaustive()
    }
}

/// `{origin}{prefix}/{provider}/{action}`: a provider's endpoint URI as registered at its IdP.
pub(crate) fn provider_endpoint(shared: &Shared, provider: &str, action: &str) -> String {
    format!(
        "{}{}/{provider}/{action}",
        shared.origin.ascii_serialization(),
        shared.prefix
    )
}

/// The `post_logout_redirect_uri` of a provider: its `post_logout_redirect_path` on our
/// origin, else `{origin}{prefix}/logout/done`.
pub(crate) fn post_logout_redirect_uri(shared: &Shared, provider: &OidcProvider) -> String {
    let origin = shared.origin.ascii_serialization();
    match &provider.config.post_logout_redirect_path {
        Some(path) => format!("{origin}{path}"),
        None => format!("{origin}{}/logout/done", shared.prefix),
    }
}
