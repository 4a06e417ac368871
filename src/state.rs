//! The assembled components the service and the endpoints share between requests (built by
//! [`JitLayerBuilder::build`](crate::JitLayerBuilder::build)): one handle per concern, each
//! endpoint given only those it uses. Below the endpoints and the service: neither imports
//! the layer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, header};

use crate::bearer::Bearer;
use crate::directory::Directory;
use crate::error::Error;
use crate::events::Events;
use crate::extract::AuthContext;
use crate::metrics::Metrics;
use crate::oidc::OidcProvider;
use crate::provision::Provisioner;
use crate::session::{LoginFlow, SessionTokens, Sessions};

/// Everything the service shares between requests.
pub(crate) struct Shared {
    /// Where the layer answers.
    pub(crate) site: Site,
    /// The identity providers.
    pub(crate) idps: Idps,
    /// The user-store domains and their cache.
    pub(crate) users: Directory,
    /// Provisioning by each provider's policy.
    pub(crate) provisioner: Provisioner,
    /// The sessions: issue, open, end.
    pub(crate) sessions: Sessions,
    /// The sealed state of logins and logouts in progress.
    pub(crate) flow: LoginFlow,
    pub(crate) events: Events,
    pub(crate) metrics: Arc<Metrics>,
    /// What the extractors read from the request's extensions.
    pub(crate) context: Arc<AuthContext>,
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

/// Where the layer answers: the `public_url` origin and the endpoints' path prefix.
pub(crate) struct Site {
    pub(crate) prefix: String,
    /// The origin of `public_url`: the only `Origin` a logout or resume may come from.
    pub(crate) origin: url::Origin,
}

impl Site {
    /// `{origin}{prefix}/{provider}/{action}`: a provider's endpoint URI as registered at its
    /// IdP.
    pub(crate) fn endpoint(&self, provider: &str, action: &str) -> String {
        format!(
            "{}{}/{provider}/{action}",
            self.origin.ascii_serialization(),
            self.prefix
        )
    }

    /// The `post_logout_redirect_uri` of a provider: its `post_logout_redirect_path` on our
    /// origin, else `{origin}{prefix}/logout/done`.
    pub(crate) fn post_logout_redirect_uri(&self, provider: &OidcProvider) -> String {
        let origin = self.origin.ascii_serialization();
        match &provider.config.post_logout_redirect_path {
            Some(path) => format!("{origin}{path}"),
            None => format!("{origin}{}/logout/done", self.prefix),
        }
    }

    /// Refuses a cross-site request to a state-changing endpoint: `Sec-Fetch-Site` must be
    /// `same-origin` or `none` (typed or bookmarked); without it, an `Origin` must be the
    /// `public_url` origin. A request with neither (not a browser) passes. The admin router's
    /// write routes use it too.
    pub(crate) fn check_same_origin(&self, headers: &HeaderMap) -> Result<(), Error> {
        let allowed = match headers.get("sec-fetch-site") {
            Some(site) => {
                site.as_bytes().eq_ignore_ascii_case(b"same-origin")
                    || site.as_bytes().eq_ignore_ascii_case(b"none")
            }
            None => headers.get(header::ORIGIN).is_none_or(|origin| {
                origin
                    .to_str()
                    .ok()
                    .and_then(|o| url::Url::parse(o).ok())
                    .is_some_and(|o| o.origin() == self.origin)
            }),
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::CrossSite)
        }
    }
}

/// The identity providers: OpenID Connect, SAML, and the bearer-token verifier (one HTTP
/// client and one key cache per issuer among them).
pub(crate) struct Idps {
    pub(crate) oidc: HashMap<String, Arc<OidcProvider>>,
    #[cfg(feature = "saml")]
    pub(crate) saml: HashMap<String, Arc<crate::saml::SamlServiceProvider>>,
    pub(crate) bearer: Option<Bearer>,
}

impl Idps {
    /// The OpenID Connect provider `id`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownProvider`] when there is none by that id.
    pub(crate) fn oidc_provider(&self, id: &str) -> Result<&Arc<OidcProvider>, Error> {
        self.oidc
            .get(id)
            .ok_or_else(|| Error::UnknownProvider(id.chars().take(64).collect()))
    }

    /// Whether the sessions of provider `id` keep its tokens.
    #[inline]
    pub(crate) fn stores_tokens(&self, id: &str) -> bool {
        self.oidc.get(id).is_some_and(|p| p.config.store_tokens)
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
