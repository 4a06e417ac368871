//! The layer's error type: one variant per concern, each with its HTTP status, rendered as a
//! short JSON or HTML body by `Accept`. Bodies and logs never carry tokens or secrets.

use http::{HeaderMap, StatusCode};

use crate::failure::Failure;

use crate::oidc::OidcError;
use crate::provision::ProvisionError;
use crate::replay::ReplayGuardFull;
use crate::session::InvalidReturnTo;
use crate::store::StoreError;

/// Why an authorization response (the callback request) was refused before any token was
/// exchanged. Every variant but the size and media-type ones is a `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// No `state` parameter.
    #[error("the callback carries no state")]
    MissingState,
    /// No `code` parameter.
    #[error("the callback carries no authorization code")]
    MissingCode,
    /// No pending login matches the `state`: it expired, started in another browser, or was
    /// forged.
    #[error(
        "no login in progress matches this callback (it may have expired); please log in again"
    )]
    UnknownState,
    /// The `state` was already used once.
    #[error("this login response was already used")]
    Replayed,
    /// The callback reached another provider's endpoint than the login started at.
    #[error("the callback does not belong to this provider")]
    WrongProvider,
    /// The callback (or SAML ACS post) does not carry the binder cookie of the browser that
    /// started the login: the pending login was started in, or planted from, another
    /// browser (login CSRF by cookie tossing).
    #[error("this login was started in another browser; please log in again")]
    WrongBrowser,
    /// The form body is larger than allowed: `413`.
    #[error("the callback body is too large")]
    TooLarge,
    /// A `POST` callback that is not `application/x-www-form-urlencoded`: `415`.
    #[error("the callback body must be application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    /// Parameters that cannot be parsed.
    #[error("the callback parameters are malformed")]
    Malformed,
}

impl CallbackError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for CallbackError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::MissingState => "missing_state",
            Self::MissingCode => "missing_code",
            Self::UnknownState => "unknown_state",
            Self::Replayed => "replayed_state",
            Self::WrongProvider => "wrong_provider",
            Self::WrongBrowser => "browser_mismatch",
            Self::TooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Malformed => "malformed_callback",
        }
    }
}
/// Why a logout step with the identity provider was refused (RP-initiated logout's return,
/// front-channel logout). Every variant is a `400`, and no redirect follows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutError {
    /// `GET {prefix}/logout/done` without the `state` of a logout this browser started (no
    /// state, no or an expired logout cookie, or another state).
    #[error("no logout in progress matches this request (it may have expired)")]
    UnknownState,
    /// The logout's `state` was already used once.
    #[error("this logout response was already used")]
    Replayed,
    /// A front-channel logout names another issuer than the provider's.
    #[error("the logout request names another issuer")]
    WrongIssuer,
    /// A front-channel logout carries only one of `iss` and `sid` (they come together), or
    /// neither although the provider says it sends them
    /// (`frontchannel_logout_session_supported`).
    #[error("the logout request must name its issuer and session together (iss and sid)")]
    MissingSession,
}

impl LogoutError {
    /// A short machine-readable code.
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for LogoutError {
    fn status(&self) -> ::http::StatusCode {
        ::http::StatusCode::BAD_REQUEST
    }

    fn code(&self) -> &str {
        match self {
            Self::UnknownState => "unknown_logout_state",
            Self::Replayed => "replayed_logout_state",
            Self::WrongIssuer => "wrong_issuer",
            Self::MissingSession => "missing_iss_or_sid",
        }
    }
}
/// Everything the layer can answer with instead of passing a request on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No provider with this id is configured: `404`.
    #[error("no identity provider `{0}` is configured")]
    UnknownProvider(String),
    /// `return_to` is not a same-origin path: `400`.
    #[error(transparent)]
    ReturnTo(#[from] InvalidReturnTo),
    /// The callback request itself is unusable.
    #[error(transparent)]
    Callback(#[from] CallbackError),
    /// The OpenID Connect exchange or token validation failed.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// A logout step with the identity provider was refused: `400`.
    #[error(transparent)]
    Logout(#[from] LogoutError),
    /// Provisioning refused or failed. (A store failure of provisioning is [`Error::Store`],
    /// an unknown provider [`Error::UnknownProvider`]: `From<ProvisionError>` maps them.)
    #[error(transparent)]
    Provision(ProvisionError),
    /// A SAML login failed (see [`SamlError::status`](crate::saml::SamlError::status)).
    #[cfg(feature = "saml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "saml")))]
    #[error(transparent)]
    Saml(#[from] crate::saml::SamlError),
    /// A SAML Single Logout message was refused, or the IdP did not log out (see
    /// [`SloError::status`](crate::saml::SloError::status)).
    #[cfg(feature = "saml")]
    #[error(transparent)]
    Slo(#[from] crate::saml::SloError),
    /// A store failed: provisioning's user store, loading the session's user, or recording a
    /// one-time value: `503`
    /// (a store's [`Refusal`](crate::store::Refusal): its `409` or `403`;
    /// `replay_guard_full` when the in-memory replay guard is full, see
    /// [`ReplayGuardFull`](crate::replay::ReplayGuardFull)).
    #[error("{}", store_message(.0))]
    Store(#[source] StoreError),
    /// A cross-site request to `POST {prefix}/logout` or `POST {prefix}/resume`
    /// (`Sec-Fetch-Site` other than `same-origin` or `none`, or else an `Origin` that is not
    /// the `public_url` origin): `403`, no cookie touched.
    #[error("cross-site requests to this endpoint are refused")]
    CrossSite,
    /// `POST {prefix}/logout/everywhere` from a request without a live session (no cookie, or
    /// one that expired or was ended): `401 login_required`, the cookie deleted. Which user's
    /// sessions to end is known only from a live session, so the user logs in again first.
    #[error("log in again to end all your sessions")]
    EverywhereNeedsLogin,
    /// The session store failed while opening, issuing or ending a session: `503` when it
    /// is unavailable, else `500`. No session is issued.
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
}

impl Error {
    /// The HTTP status of this error.
    ///
    /// ```
    /// use jit_provision::{Error, CallbackError};
    /// assert_eq!(Error::from(CallbackError::Replayed).status(), 400);
    /// ```
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code, the `error` field of JSON bodies (a store's
    /// [`Refusal`](crate::store::Refusal) carries the application's own).
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }

    /// Renders the error for a request with these headers: HTML for browsers (`Accept`
    /// naming `text/html`), JSON otherwise.
    pub fn to_response(&self, request_headers: &HeaderMap) -> http::Response<axum::body::Body> {
        crate::failure::Failure::to_response(self, request_headers)
    }
}

/// One place per failure: a provisioning failure that has its own variant here (the store's,
/// an unknown provider) becomes that variant, so a failure renders the same whichever path
/// it took.
impl From<ProvisionError> for Error {
    fn from(err: ProvisionError) -> Self {
        match err {
            ProvisionError::Store(e) => Self::Store(e),
            ProvisionError::UnknownProvider(id) => Self::UnknownProvider(id),
            other => Self::Provision(other),
        }
    }
}

/// A store failure answers the same wherever it happens (a login's provisioning, the replay
/// guard, loading a session's user): `503 store_unavailable` (`replay_guard_full` for a full
/// in-memory replay guard), `500` when the store panicked, a [`Refusal`](crate::store::Refusal)'s
/// own status and code.
impl Failure for StoreError {
    fn status(&self) -> StatusCode {
        match self {
            StoreError::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
            StoreError::Refused(r) => r.status(),
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &str {
        match self {
            StoreError::Refused(r) => r.code(),
            e if ReplayGuardFull::is(e) => "replay_guard_full",
            _ => "store_unavailable",
        }
    }
}

impl crate::failure::Failure for Error {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::UnknownProvider(_) => StatusCode::NOT_FOUND,
            Self::ReturnTo(_) => StatusCode::BAD_REQUEST,
            Self::Callback(e) => e.status(),
            Self::Oidc(e) => e.status(),
            Self::Logout(_) => StatusCode::BAD_REQUEST,
            Self::Provision(e) => e.status(),
            #[cfg(feature = "saml")]
            Self::Saml(e) => e.status(),
            #[cfg(feature = "saml")]
            Self::Slo(e) => e.status(),
            Self::Store(e) => e.status(),
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::EverywhereNeedsLogin => StatusCode::UNAUTHORIZED,
            Self::Session(e) => e.status(),
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::UnknownProvider(_) => "unknown_provider",
            Self::ReturnTo(_) => "invalid_return_to",
            Self::Callback(e) => e.code(),
            Self::Oidc(e) => e.code(),
            Self::Logout(e) => e.code(),
            Self::Provision(e) => e.code(),
            #[cfg(feature = "saml")]
            Self::Saml(e) => e.code(),
            #[cfg(feature = "saml")]
            Self::Slo(e) => e.code(),
            Self::Store(e) => e.code(),
            Self::CrossSite => "cross_site_request",
            Self::EverywhereNeedsLogin => "login_required",
            Self::Session(e) => e.code(),
        }
    }
}

#[cfg(feature = "saml")]
impl From<crate::saml::SloFailure> for Error {
    fn from(failure: crate::saml::SloFailure) -> Self {
        match failure {
            crate::saml::SloFailure::Saml(err) => Self::Saml(err),
            crate::saml::SloFailure::Slo(err) => Self::Slo(err),
        }
    }
}

/// The message of [`Error::Store`].
fn store_message(err: &StoreError) -> String {
    if let StoreError::Refused(refusal) = err {
        refusal.to_string()
    } else if ReplayGuardFull::is(err) {
        ReplayGuardFull.to_string()
    } else {
        "the user store is unavailable".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::ReplayGuardFull;
    use crate::store::Refusal;

    /// One variant per failure at the layer's level: provisioning's unknown provider and
    /// store failure become `Error`'s own, with the same status, code and message.
    #[test]
    fn provisioning_failures_become_errors_own_variants() {
        let err = Error::from(ProvisionError::UnknownProvider("corp".into()));
        assert!(
            matches!(&err, Error::UnknownProvider(id) if id == "corp"),
            "{err:?}"
        );
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::NOT_FOUND, "unknown_provider")
        );
        assert_eq!(err.to_string(), "no identity provider `corp` is configured");

        let err = Error::from(ProvisionError::Store(StoreError::unavailable(
            ReplayGuardFull,
        )));
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "replay_guard_full")
        );
        let err = Error::from(ProvisionError::Store(StoreError::Panicked));
        assert!(matches!(err, Error::Store(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // Everything else stays a provisioning failure.
        assert!(matches!(
            Error::from(ProvisionError::Locked),
            Error::Provision(ProvisionError::Locked)
        ));
    }

    /// A store failure answers the same as `Error::Store` and as `ProvisionError::Store`.
    #[test]
    fn a_store_failure_renders_the_same_on_both_paths() {
        let failures = || {
            [
                StoreError::Panicked,
                StoreError::unavailable(ReplayGuardFull),
                StoreError::Refused(Refusal::conflict("email", "email_in_use", "taken")),
                StoreError::NotFound,
            ]
        };
        for (a, b) in failures().into_iter().zip(failures()) {
            let (layer, provision) = (Error::Store(a), ProvisionError::Store(b));
            assert_eq!(
                (layer.status(), layer.code()),
                (provision.status(), provision.code()),
                "{layer:?}"
            );
        }
        let refused = ProvisionError::Store(StoreError::Refused(Refusal::conflict(
            "email",
            "email_in_use",
            "taken",
        )));
        assert_eq!(
            (refused.status(), refused.code()),
            (StatusCode::CONFLICT, "email_in_use")
        );
    }

    /// A resumed prompt whose provider has no hook is a stale login (`400`), not an unknown
    /// provider (`404`).
    #[test]
    fn a_missing_prompt_hook_is_not_an_unknown_provider() {
        let err = Error::from(ProvisionError::PromptNotConfigured("corp".into()));
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::BAD_REQUEST, "prompt_not_configured")
        );
        assert!(err.to_string().contains("log in again"), "{err}");
    }

    /// The one renderer: JSON `{error, message}` by default, HTML for browsers, never cached.
    #[test]
    fn one_renderer_for_json_and_html() {
        let err = Error::from(CallbackError::Replayed);
        let json = err.to_response(&HeaderMap::new());
        assert_eq!(json.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            json.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        assert_eq!(json.headers()[http::header::CACHE_CONTROL], "no-store");
        let mut browser = HeaderMap::new();
        browser.insert(http::header::ACCEPT, "text/html".parse().unwrap());
        let html = err.to_response(&browser);
        assert_eq!(
            html.headers()[http::header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }
}
