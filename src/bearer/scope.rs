//! [`RequireScope`]: a route layer that lets through only bearer tokens carrying a scope.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use futures_util::future::{Either, Ready, ready};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{AuthMethod, CurrentUser};

/// Requires the request's bearer token to carry `scope` (RFC 6750): no token is a `401`,
/// a token without the scope (or a cookie session, which has no scopes) is a `403`
/// `insufficient_scope`. Put it on API routes under the [`JitLayer`](crate::JitLayer).
///
/// ```
/// use axum::{Router, routing::get};
/// use jit_provision::bearer::RequireScope;
///
/// let api: Router = Router::new()
///     .route("/api/reports", get(|| async { "reports" }))
///     .route_layer(RequireScope::new("reports:read"));
/// # let _ = api;
/// ```
#[derive(Debug, Clone)]
pub struct RequireScope {
    scope: Arc<str>,
}

impl RequireScope {
    /// Requires `scope`.
    pub fn new(scope: impl Into<Arc<str>>) -> Self {
        Self {
            scope: scope.into(),
        }
    }
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            scope: self.scope.clone(),
        }
    }
}

/// The service of [`RequireScope`].
#[derive(Debug, Clone)]
pub struct RequireScopeService<S> {
    inner: S,
    scope: Arc<str>,
}

impl<S, B> Service<Request<B>> for RequireScopeService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let scope = &*self.scope;
        let (status, challenge) = match req.extensions().get::<CurrentUser>() {
            Some(user) => match &user.auth.method {
                AuthMethod::Bearer { scopes, .. } if scopes.iter().any(|s| s == scope) => {
                    return Either::Left(self.inner.call(req));
                }
                _ => (
                    StatusCode::FORBIDDEN,
                    format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                ),
            },
            None => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer scope=\"{scope}\""),
            ),
        };
        let code = if status == StatusCode::FORBIDDEN {
            "insufficient_scope"
        } else {
            "login_required"
        };
        let mut response = crate::failure::render(
            status,
            code,
            &format!("this resource needs the scope `{scope}`"),
            req.headers(),
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        Either::Right(ready(Ok(response)))
    }
}
