//! [`JitService`]: routes the layer's own endpoints and attaches the session's user.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use tower_http::sensitive_headers::SetSensitiveRequestHeaders;
use tower_service::Service;

use crate::auth::CurrentUser;
use crate::bearer::{Bearer, BearerError};
use crate::directory::Directory;
use crate::endpoints;
use crate::error::Error;
use crate::provision::{ProvisionError, Provisioner};
use crate::session::Opened;
use crate::state::Shared;

/// The service produced by [`JitLayer`](crate::JitLayer). It keeps the inner service's
/// error type: every failure of its own becomes a response.
///
/// Credentials are marked [sensitive](HeaderValue::set_sensitive), so a tracing middleware
/// such as tower-http's `TraceLayer` shows them as `Sensitive`: the request's `Cookie` and
/// `Authorization` for everything inside this layer (the inner service and its layers), and
/// every `Set-Cookie` of a response leaving it (its own endpoints' and the inner service's)
/// for everything outside. A `TraceLayer` outside this layer sees the request before it does:
/// put tower-http's `SetSensitiveRequestHeadersLayer` outside that `TraceLayer` too.
#[derive(Clone)]
pub struct JitService<S> {
    inner: SetSensitiveRequestHeaders<S>,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for JitService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitService").finish_non_exhaustive()
    }
}

impl<S> JitService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        let inner = SetSensitiveRequestHeaders::new(inner, [header::COOKIE, header::AUTHORIZATION]);
        Self { inner, shared }
    }
}

impl<S, B> Service<Request<B>> for JitService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let req = req.map(Body::new);
        Box::pin(async move {
            let mut response = serve(&shared, &mut inner, req).await?;
            mark_set_cookie_sensitive(response.headers_mut());
            Ok(response)
        })
    }
}

/// Marks every `Set-Cookie` value sensitive (tower-http's `SetSensitiveResponseHeaders`
/// does the same, but as a wrapper its future type would become this service's, and it
/// would not see the responses of the layer's own endpoints).
fn mark_set_cookie_sensitive(headers: &mut HeaderMap) {
    if let header::Entry::Occupied(mut cookies) = headers.entry(header::SET_COOKIE) {
        for value in cookies.iter_mut() {
            value.set_sensitive(true);
        }
    }
}

/// Answers at one of the layer's endpoints, or authenticates the request and calls the inner
/// service.
async fn serve<I>(
    shared: &Arc<Shared>,
    inner: &mut I,
    req: Request<Body>,
) -> Result<Response<Body>, I::Error>
where
    I: Service<Request<Body>, Response = Response<Body>>,
{
    // The cold paths' futures are boxed: held inline, their (large) states would make this
    // future, and the copies of it on every request, as large as theirs.
    if let Some(route) = endpoints::route(&shared.site, &shared.idps, &req) {
        return Ok(Box::pin(endpoints::handle(shared, route, req)).await);
    }
    let mut req = req;
    req.extensions_mut().insert(shared.context.clone());
    if let Some(pending) = endpoints::pending_prompt(&shared.flow, req.headers()) {
        req.extensions_mut().insert(pending);
    }
    if let Some(bearer) = &shared.idps.bearer
        && let Some(authorization) = req.headers().get(header::AUTHORIZATION).cloned()
        && let Some(token) = Bearer::token_of(&authorization)
    {
        return match Box::pin(attach_bearer(
            bearer,
            &shared.provisioner,
            &shared.users,
            token,
            &mut req,
        ))
        .await
        {
            Ok(()) => inner.call(req).await,
            Err(err) => {
                shared.metrics.bearer_refused(err.code());
                Ok(bearer_failure(&err, req.headers()))
            }
        };
    }
    match attach_session(shared, &mut req).await {
        Ok(Attached::Clean) => inner.call(req).await,
        Ok(Attached::Stale) => {
            let mut response = inner.call(req).await?;
            let clear = shared.sessions.clear_cookie();
            if let Ok(value) = HeaderValue::from_str(&clear) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(err) => Ok(err.to_response(req.headers())),
    }
}

enum Attached {
    /// A user was attached, or there was no session cookie at all.
    Clean,
    /// The session cookie is no longer good (expired, revoked, user gone or locked): the
    /// request goes on anonymous and the response deletes the cookie.
    Stale,
}

/// Verifies a bearer token and puts its user in the extensions.
async fn attach_bearer(
    bearer: &Bearer,
    provisioner: &Provisioner,
    users: &Directory,
    token: &[u8],
    req: &mut Request<Body>,
) -> Result<(), BearerError> {
    let verified = bearer.authenticate(token, provisioner).await?;
    let user = users
        .load(&verified.domain, verified.user_id)
        .await
        .map_err(|e| BearerError::Provision(ProvisionError::Store(e)))?
        .ok_or(BearerError::UnknownUser)?;
    if user.locked {
        return Err(BearerError::Provision(ProvisionError::Locked));
    }
    req.extensions_mut().insert(CurrentUser {
        user,
        auth: verified.auth.clone(),
    });
    Ok(())
}

fn bearer_failure(err: &BearerError, request_headers: &http::HeaderMap) -> Response<Body> {
    tracing::warn!(code = err.code(), error = %err, "bearer token refused");
    let mut response = crate::failure::Failure::to_response(err, request_headers);
    if let Some(challenge) = err.challenge() {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Reads the session cookie and, when its session holds and its user is good, puts the user
/// in the extensions.
async fn attach_session(shared: &Arc<Shared>, req: &mut Request<Body>) -> Result<Attached, Error> {
    let session = match shared
        .sessions
        .open(req.headers(), &shared.metrics)
        .await
        .map_err(Error::Session)?
    {
        Opened::None => return Ok(Attached::Clean),
        Opened::Stale => return Ok(Attached::Stale),
        Opened::Live(session) => session,
    };
    let Some(user) = shared
        .users
        .load(&session.auth.domain, session.user_id)
        .await
        .map_err(Error::Store)?
    else {
        return Ok(Attached::Stale);
    };
    if user.locked {
        return Ok(Attached::Stale);
    }
    req.extensions_mut().insert(CurrentUser {
        user,
        auth: session.auth.clone(),
    });
    // For `IdpAccessToken`, when the session's provider keeps tokens.
    if shared.idps.stores_tokens(&session.auth.provider) {
        req.extensions_mut().insert(crate::tokens::TokenSource {
            shared: shared.clone(),
            session,
        });
    }
    Ok(Attached::Clean)
}
