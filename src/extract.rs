//! The [`CurrentUser`] extractor.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

use crate::auth::CurrentUser;
use crate::config::Unauthenticated;

/// How the extractor rejects an anonymous request (placed in every request's extensions).
#[derive(Debug)]
pub(crate) struct AuthContext {
    pub(crate) prefix: String,
    pub(crate) unauthenticated: Unauthenticated,
    /// Bearer tokens are accepted: anonymous API requests get a `WWW-Authenticate: Bearer`.
    pub(crate) bearer: bool,
}

/// The rejection of [`CurrentUser`]: `401`, or a `303` to the login page for a browser
/// navigation when so configured.
#[derive(Debug)]
pub struct LoginRequired {
    login: Option<String>,
    html: bool,
    bearer: bool,
}

impl LoginRequired {
    /// The status it answers with: `303` to the login page, else `401`.
    pub fn status(&self) -> StatusCode {
        if self.login.is_some() {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::UNAUTHORIZED
        }
    }
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        if let Some(location) = self.login {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            return response;
        }
        let mut headers = http::HeaderMap::new();
        if self.html {
            headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        }
        let mut response = crate::response::render(
            StatusCode::UNAUTHORIZED,
            "login_required",
            "you need to log in",
            &headers,
        );
        if self.bearer {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = LoginRequired;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let html = crate::response::wants_html(&parts.headers);
        let context = parts.extensions.get::<Arc<AuthContext>>();
        let bearer = context.is_some_and(|c| c.bearer);
        let login = match context {
            Some(ctx) => match &ctx.unauthenticated {
                Unauthenticated::RedirectToLogin(provider)
                    if html && parts.method == Method::GET =>
                {
                    let target = parts
                        .uri
                        .path_and_query()
                        .map(|pq| pq.as_str())
                        .unwrap_or("/");
                    let encoded: String =
                        url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
                    Some(format!(
                        "{}/{provider}/login?return_to={encoded}",
                        ctx.prefix
                    ))
                }
                _ => None,
            },
            None => {
                tracing::error!("CurrentUser extracted on a route the JitLayer does not wrap");
                None
            }
        };
        Err(LoginRequired {
            login,
            html,
            bearer,
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<CurrentUser>().cloned())
    }
}
