//! [`IdpAccessToken`]: the access token of the current session's identity provider, for
//! calling APIs on the user's behalf (providers with `store_tokens = true`).
//!
//! The token comes from the session record (sealed with the session key ring). Once it
//! expires within `token_refresh_margin_secs` (at most half its lifetime) it is refreshed with
//! the refresh token at the provider's token endpoint, **once** however many requests and
//! instances need it at that moment:
//!
//! - in a process, concurrent requests of one session share one refresh (moka's
//!   `try_get_with` coalesces them; the refresh runs in a task of its own, so a request that
//!   goes away does not abandon a refresh token the provider already rotated);
//! - across processes, the refresh runs under the store's lock of the session record
//!   ([`SessionStore::update_tokens`](crate::session::SessionStore::update_tokens): a row lock
//!   in PostgreSQL, the write lock in SQLite), which re-reads the record first: when another
//!   instance refreshed in the meantime, its tokens are used and the provider is not asked.
//!
//! A rotated refresh token replaces the old one; without one the old one is kept. When the
//! provider refuses the refresh token (`invalid_grant`) the session ends, on every instance.
//! With `resync_on_refresh = true` the claims are read again at each refresh and go through
//! the same provisioning update as a login; when reading them fails (userinfo down) after the
//! token endpoint answered, the new tokens are stored all the same (the provider rotated the
//! refresh token already) and the request fails with `idp_refresh_failed`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::auth::CurrentUser;
use crate::extract::LoginRequired;
use crate::mapping::Claims;
use crate::oidc::{OidcError, OidcProvider};
use crate::provision::{ProvisionError, Provisioned, Provisioner};
use crate::session::OpenedSession;
use crate::session::{EndReason, SessionError, SessionRecord, SessionTokens, Sessions};
pub(crate) use crate::state::Refresher;
use crate::state::Shared;
use crate::store::{Identity, StoreError, now_unix};

/// A valid access token of the identity provider the current session logged in through,
/// refreshed when it expires (see the [module docs](self)). Needs `store_tokens = true` on the
/// provider. Its `Debug` never shows the token.
///
/// As an axum extractor it rejects with [`IdpTokenRejection`]: an anonymous request as
/// [`CurrentUser`] does (`401` or a redirect to the login page); a session without tokens
/// `401 no_idp_token`; an expired token without a refresh token `401 idp_token_expired`; a
/// refresh the provider refused `401 idp_refresh_refused` (the session is ended); a provider
/// that fails `502`.
///
/// ```
/// use jit_provision::IdpAccessToken;
///
/// async fn calendar(token: IdpAccessToken) -> String {
///     // e.g. reqwest::Client::new().get(url).bearer_auth(token.secret())
///     format!("a token of {} bytes", token.secret().len())
/// }
/// # let _ = calendar;
/// ```
#[derive(Clone)]
pub struct IdpAccessToken {
    secret: String,
    expires_at: Option<i64>,
    provider: String,
}

impl IdpAccessToken {
    /// The access token, to send as `Authorization: Bearer`.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// When it expires, Unix seconds (`None`: the provider did not say).
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// The provider it was issued by.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

impl std::fmt::Debug for IdpAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpAccessToken")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no access token could be given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdpTokenError {
    /// The request was not authenticated by a session (a bearer token): `401`.
    #[error("the request has no session at an identity provider")]
    NoSession,
    /// The session keeps no access token: its provider does not `store_tokens`, is not an
    /// OpenID Connect provider, or the login happened before it did: `401`.
    #[error("this session keeps no access token of its identity provider; log in again")]
    NotStored,
    /// The access token expired and there is no refresh token: `401`.
    #[error("the identity provider's access token expired and cannot be refreshed; log in again")]
    Expired,
    /// The session ended while the request ran: `401`.
    #[error("the session has ended")]
    SessionEnded,
    /// The provider refused the refresh token (`invalid_grant`), or its answer carried an ID
    /// token that does not validate: `401`, and the session is ended.
    #[error("the identity provider refused to refresh the session; log in again")]
    Refused(#[source] OidcError),
    /// The provider could not be reached or failed: `502`; the session is kept.
    #[error("the identity provider failed to refresh the access token: {0}")]
    Idp(#[source] OidcError),
    /// The claims read again at the refresh (`resync_on_refresh`) were refused by the
    /// provisioning policy: its status (`403` ...), and the session is ended; or the user store
    /// failed (`503`, the session kept).
    #[error("{0}")]
    Resync(#[source] ProvisionError),
    /// The session store failed: `503` or `500`.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl IdpTokenError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for IdpTokenError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::NoSession
            | Self::NotStored
            | Self::Expired
            | Self::SessionEnded
            | Self::Refused(_) => StatusCode::UNAUTHORIZED,
            Self::Idp(_) => StatusCode::BAD_GATEWAY,
            Self::Resync(err) => err.status(),
            Self::Session(err) => err.status(),
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::NoSession => "no_idp_session",
            Self::NotStored => "no_idp_token",
            Self::Expired => "idp_token_expired",
            Self::SessionEnded => "session_ended",
            Self::Refused(_) => "idp_refresh_refused",
            Self::Idp(_) => "idp_refresh_failed",
            Self::Resync(err) => err.code(),
            Self::Session(err) => err.code(),
        }
    }
}
/// The rejection of [`IdpAccessToken`]: that of [`CurrentUser`] for an anonymous request,
/// else an [`IdpTokenError`]'s status, code and message (JSON, or HTML for a browser).
#[derive(Debug)]
pub struct IdpTokenRejection {
    kind: Rejection,
    html: bool,
}

#[derive(Debug)]
enum Rejection {
    Login(LoginRequired),
    Token {
        status: StatusCode,
        code: String,
        message: String,
    },
}

impl IdpTokenRejection {
    fn token(err: &IdpTokenError, html: bool) -> Self {
        Self {
            kind: Rejection::Token {
                status: err.status(),
                code: err.code().to_owned(),
                message: err.to_string(),
            },
            html,
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            Rejection::Login(login) => login.status(),
            Rejection::Token { status, .. } => *status,
        }
    }

    /// Its machine-readable code (`login_required` for an anonymous request).
    pub fn code(&self) -> &str {
        match &self.kind {
            Rejection::Login(_) => "login_required",
            Rejection::Token { code, .. } => code,
        }
    }
}

impl IntoResponse for IdpTokenRejection {
    fn into_response(self) -> Response {
        match self.kind {
            Rejection::Login(login) => login.into_response(),
            Rejection::Token {
                status,
                code,
                message,
            } => crate::failure::render_as(status, &code, &message, self.html),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdpAccessToken {
    type Rejection = IdpTokenRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let html = crate::failure::wants_html(&parts.headers);
        let Some(source) = parts.extensions.get::<TokenSource>().cloned() else {
            // The layer attaches a source to the sessions of providers that keep tokens.
            let err = match <CurrentUser>::from_request_parts(parts, state).await {
                Err(login) => {
                    return Err(IdpTokenRejection {
                        kind: Rejection::Login(login),
                        html,
                    });
                }
                Ok(user) if user.auth.method == crate::AuthMethod::Session => {
                    IdpTokenError::NotStored
                }
                Ok(_) => IdpTokenError::NoSession,
            };
            return Err(IdpTokenRejection::token(&err, html));
        };
        source.access_token().await.map_err(|err| {
            tracing::warn!(code = err.code(), error = %err, "no identity provider access token");
            IdpTokenRejection::token(&err, html)
        })
    }
}

/// The live session of a request, for [`IdpAccessToken`] (in the request extensions).
#[derive(Clone)]
pub(crate) struct TokenSource {
    pub(crate) shared: Arc<Shared>,
    pub(crate) session: Arc<OpenedSession>,
}

impl TokenSource {
    async fn access_token(&self) -> Result<IdpAccessToken, Arc<IdpTokenError>> {
        let shared = &self.shared;
        let provider = shared
            .idps
            .oidc
            .get(&self.session.auth.provider)
            .ok_or(IdpTokenError::NotStored)?;
        let tokens = shared
            .sessions
            .session_tokens(&self.session)
            .await
            .map_err(IdpTokenError::Session)?
            .ok_or(IdpTokenError::NotStored)?;
        if tokens.access_token.is_none() {
            return Err(IdpTokenError::NotStored.into());
        }
        let margin = provider.config.token_refresh_margin_secs;
        if fresh(&tokens, margin, now_unix()) {
            return Ok(handed_out(&tokens, &provider.id));
        }
        let tokens = shared
            .refresher
            .refresh(shared.clone(), self.session.clone(), provider.clone())
            .await?;
        Ok(handed_out(&tokens, &provider.id))
    }
}

fn handed_out(tokens: &SessionTokens, provider: &str) -> IdpAccessToken {
    IdpAccessToken {
        secret: tokens.access_token.clone().unwrap_or_default(),
        expires_at: tokens.expires_at,
        provider: provider.to_owned(),
    }
}

/// Whether an access token is good at `now`: it does not expire within the margin (at most
/// half its lifetime, so a token shorter-lived than the margin is not refreshed at every
/// request). A token of unknown expiry is good.
fn fresh(tokens: &SessionTokens, margin_secs: u64, now: i64) -> bool {
    let Some(expires_at) = tokens.expires_at else {
        return true;
    };
    let lifetime = tokens
        .obtained_at
        .map_or(i64::MAX, |at| expires_at.saturating_sub(at));
    let margin = i64::try_from(margin_secs)
        .unwrap_or(i64::MAX)
        .min(lifetime / 2);
    now < expires_at.saturating_sub(margin)
}

// The refresher is held by the shared state (`state::Refresher`); the refresh itself is here.
impl Refresher {
    /// Refreshes the tokens of `session`, joining a refresh of it already under way here.
    async fn refresh(
        &self,
        shared: Arc<Shared>,
        session: Arc<OpenedSession>,
        provider: Arc<OidcProvider>,
    ) -> Result<SessionTokens, Arc<IdpTokenError>> {
        let id = session.id.clone();
        let result = self
            .in_flight
            .try_get_with(id.clone(), async move {
                // In a task of its own: once the provider rotated the refresh token, the new
                // one must be stored even if every waiting request went away.
                tokio::spawn(refresh_session(shared, session, provider))
                    .await
                    .unwrap_or_else(|_| {
                        Err(
                            SessionError::from(StoreError::backend("the token refresh failed"))
                                .into(),
                        )
                    })
                    .map(Arc::new)
            })
            .await;
        self.in_flight.invalidate(&id).await;
        result.map(|tokens| (*tokens).clone())
    }
}

/// What a refresh found under the session's lock.
enum Found {
    /// The record is ended or expired.
    Ended,
    /// It keeps no access token.
    NotStored,
    /// Its token is good (another instance refreshed it).
    Fresh(SessionTokens),
    /// Its token expired and it has no refresh token.
    NoRefreshToken,
    /// The provider refreshed it (the new tokens are stored); the claims read again, when
    /// asked for, or why reading them failed.
    Refreshed(SessionTokens, Option<Result<Claims, OidcError>>),
    /// The provider failed or refused.
    Failed(OidcError),
}

/// The refresh of one session: under the store's lock, re-read the record and refresh at the
/// provider unless another instance just did; then end the session on a refusal, or run the
/// provisioning update on the claims read again.
async fn refresh_session(
    shared: Arc<Shared>,
    session: Arc<OpenedSession>,
    provider: Arc<OidcProvider>,
) -> Result<SessionTokens, IdpTokenError> {
    let at_provider = provider.clone();
    let found = shared
        .sessions
        .update_tokens(&session.id, move |record, tokens| async move {
            refresh_locked(&at_provider, &record, tokens).await
        })
        .await?
        .unwrap_or(Found::Ended);
    match found {
        Found::Ended => Err(IdpTokenError::SessionEnded),
        Found::NotStored => Err(IdpTokenError::NotStored),
        Found::NoRefreshToken => Err(IdpTokenError::Expired),
        Found::Fresh(tokens) => Ok(tokens),
        Found::Refreshed(tokens, claims) => {
            tracing::debug!(provider = %provider.id, "refreshed a session's tokens");
            match claims {
                None => {}
                Some(Ok(claims)) => {
                    let (provisioner, sessions) = (&shared.provisioner, &shared.sessions);
                    resync(provisioner, sessions, &session, &provider, &claims).await?;
                }
                // The rotated tokens are stored: the session holds, this request fails.
                Some(Err(err)) => {
                    tracing::warn!(provider = %provider.id, error = %err, "reading the claims again after a refresh failed; the new tokens are kept");
                    return Err(IdpTokenError::Idp(err));
                }
            }
            Ok(tokens)
        }
        Found::Failed(err) => {
            let refused = match &err {
                OidcError::TokenRejected(code) => code == "invalid_grant",
                OidcError::IdToken(_) => true,
                _ => false,
            };
            if !refused {
                return Err(IdpTokenError::Idp(err));
            }
            tracing::info!(provider = %provider.id, error = %err, "the identity provider refused a refresh: the session ends");
            shared
                .sessions
                .end(&session.id, EndReason::RefreshRefused)
                .await?;
            Err(IdpTokenError::Refused(err))
        }
    }
}

/// The decision under the lock; answers the tokens to store (`None`: none).
async fn refresh_locked(
    provider: &OidcProvider,
    record: &SessionRecord,
    tokens: Option<SessionTokens>,
) -> (Option<SessionTokens>, Found) {
    let now = now_unix();
    if record.ended_at.is_some() || record.expires_at <= now {
        return (None, Found::Ended);
    }
    let Some(tokens) = tokens.filter(|t| t.access_token.is_some()) else {
        return (None, Found::NotStored);
    };
    if fresh(&tokens, provider.config.token_refresh_margin_secs, now) {
        return (None, Found::Fresh(tokens));
    }
    let Some(refresh_token) = tokens.refresh_token.as_deref() else {
        return (None, Found::NoRefreshToken);
    };
    let read_claims = provider.config.resync_on_refresh;
    match provider
        .refresh(&tokens, refresh_token, &record.subject, read_claims)
        .await
    {
        Ok(refreshed) => (
            Some(refreshed.tokens.clone()),
            Found::Refreshed(
                refreshed.tokens,
                refreshed.claims.map(|claims| claims.map(Claims)),
            ),
        ),
        Err(err) => (None, Found::Failed(err)),
    }
}

/// The provisioning update of a login, on the claims a refresh read again: a refusal ends the
/// session; a store failure keeps it.
async fn resync(
    provisioner: &Provisioner,
    sessions: &Sessions,
    session: &OpenedSession,
    provider: &OidcProvider,
    claims: &Claims,
) -> Result<(), IdpTokenError> {
    let Some(policy) = provisioner.policy(&provider.id) else {
        return Ok(());
    };
    let identity = Identity::new(
        provider.id.clone(),
        provider.config.issuer().to_owned(),
        session.auth.subject.clone(),
    );
    let refusal = match provisioner.provision(policy, &identity, claims, None).await {
        Ok(Provisioned::Done { user, .. }) if user.id == session.user_id && !user.locked => {
            return Ok(());
        }
        Ok(_) => ProvisionError::Locked,
        Err(err @ ProvisionError::Store(_)) => return Err(IdpTokenError::Resync(err)),
        Err(err) => err,
    };
    tracing::info!(provider = %provider.id, code = refusal.code(), "the claims of a refresh are refused: the session ends");
    sessions.end(&session.id, EndReason::ResyncRefused).await?;
    Err(IdpTokenError::Resync(refusal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(expires_at: Option<i64>, obtained_at: Option<i64>) -> SessionTokens {
        SessionTokens {
            access_token: Some("at".into()),
            expires_at,
            obtained_at,
            ..Default::default()
        }
    }

    #[test]
    fn a_token_is_refreshed_within_the_margin_at_most_half_its_lifetime() {
        // An hour-long token, 60 s margin.
        let long = tokens(Some(1_000 + 3_600), Some(1_000));
        assert!(fresh(&long, 60, 1_000));
        assert!(fresh(&long, 60, 4_539));
        assert!(!fresh(&long, 60, 4_540));
        // A 10 s token: the margin is 5 s, not 60.
        let short = tokens(Some(1_010), Some(1_000));
        assert!(fresh(&short, 60, 1_004));
        assert!(!fresh(&short, 60, 1_005));
        // No margin: good until it expires.
        assert!(fresh(&short, 0, 1_009));
        assert!(!fresh(&short, 0, 1_010));
        // Unknown expiry: good; unknown age: the full margin.
        assert!(fresh(&tokens(None, None), 60, i64::MAX));
        assert!(!fresh(&tokens(Some(1_050), None), 60, 1_000));
    }

    #[test]
    fn debug_never_shows_a_token() {
        let token = IdpAccessToken {
            secret: "the-secret-access-token".into(),
            expires_at: Some(5),
            provider: "corp".into(),
        };
        assert!(!format!("{token:?}").contains("the-secret"));
        let stored = SessionTokens {
            id_token: Some("the-secret-id-token".into()),
            access_token: Some("the-secret-access-token".into()),
            refresh_token: Some("the-secret-refresh-token".into()),
            nonce: Some("the-secret-nonce".into()),
            ..Default::default()
        };
        assert!(!format!("{stored:?}").contains("the-secret"));
    }

    #[test]
    fn errors_answer_their_status_and_code() {
        let refused = IdpTokenError::Refused(OidcError::TokenRejected("invalid_grant".into()));
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.code(), "idp_refresh_refused");
        let down = IdpTokenError::Idp(OidcError::TokenEndpoint("refused".into()));
        assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
        let rejection = IdpTokenRejection::token(&down, false);
        assert_eq!(rejection.code(), "idp_refresh_failed");
        assert_eq!(rejection.into_response().status(), StatusCode::BAD_GATEWAY);
    }
}
