//! Logout with the identity provider, both ways (OpenID Connect):
//!
//! - **Back-channel** (Back-Channel Logout 1.0): `POST {prefix}/{provider}/backchannel-logout`,
//!   called by the IdP server to server (no cookies, no `Origin` check) with a form field
//!   `logout_token`. A valid token ([`crate::oidc::LogoutTokenError`] lists every check) ends
//!   the sessions it names that were created by its `iat` (give or take `clock_skew_secs`), on
//!   every instance: `200`, `Cache-Control: no-store`. A bad token (a replay too):
//!   `400 {"error":"invalid_request","error_description":...,"code":...}` and no session
//!   change; a session store that fails: `503`, and the token's `jti` is not recorded, so the
//!   identity provider's retry of it succeeds (the `jti` is recorded once the sessions ended).
//! - **RP-initiated** (RP-Initiated Logout 1.0): `POST {prefix}/logout` of a session whose
//!   provider enables it sends the browser on to the provider's `end_session_endpoint` with
//!   `id_token_hint`, `client_id`, `post_logout_redirect_uri` and a `state` sealed into a
//!   short-lived cookie of this browser; `GET {prefix}/logout/done?state=...` uses that state
//!   up (once) and redirects to the logout's checked `return_to`. A missing or foreign state
//!   gets an error page, never a redirect.
//! - **Front-channel** (Front-Channel Logout 1.0): `GET {prefix}/{provider}/frontchannel-logout`
//!   `?iss=..&sid=..`, loaded by the IdP in an iframe: ends the session and answers a small
//!   page that only the IdP's origin may frame.

use axum::body::Body;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use openidconnect::{ClientId, CsrfToken, EndSessionUrl, PostLogoutRedirectUrl};
use serde::{Deserialize, Serialize};

use super::{add_cookie, constant_time_eq, query_param, read_form, redirect};
use crate::error::{Error, LogoutError};
use crate::oidc::{LogoutTokenError, OidcProvider};
use crate::session::{
    EndReason, IdpSession, LoginFlow, SameSite, Sessions, check_return_to, random_token,
};
use crate::state::{Idps, Site};
use crate::store::now_unix;

/// The back-channel answer: JSON, never cached.
fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A refused back-channel request (§2.8): `error` is `invalid_request` for a bad request,
/// `temporarily_unavailable` for our failure; `code` is the specific reason.
fn refuse(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let error = if status.is_server_error() {
        "temporarily_unavailable"
    } else {
        "invalid_request"
    };
    json(
        status,
        serde_json::json!({ "error": error, "error_description": description, "code": code }),
    )
}

/// The `logout_token` of a form body: exactly one.
fn logout_token(body: &[u8]) -> Option<String> {
    let mut tokens = url::form_urlencoded::parse(body).filter(|(k, _)| k == "logout_token");
    let (_, token) = tokens.next()?;
    tokens.next().is_none().then(|| token.into_owned())
}

/// `POST {prefix}/{provider}/backchannel-logout`.
pub(crate) async fn backchannel(
    flow: &LoginFlow,
    sessions: &Sessions,
    provider: &OidcProvider,
    req: Request<Body>,
) -> Response<Body> {
    let id = provider.id.as_str();
    let body = match read_form(req).await {
        Ok(body) => body,
        Err(err) => {
            tracing::warn!(
                provider = id,
                code = err.code(),
                "back-channel logout refused"
            );
            return refuse(err.status(), err.code(), &err.to_string());
        }
    };
    let Some(token) = logout_token(&body) else {
        tracing::warn!(
            provider = id,
            code = "missing_logout_token",
            "back-channel logout refused"
        );
        return refuse(
            StatusCode::BAD_REQUEST,
            "missing_logout_token",
            "the request carries no logout_token (or several)",
        );
    };
    let request = match provider.verify_logout_token(&token, flow.replay()).await {
        Ok(request) => request,
        Err(err) => return refuse_token(id, &err),
    };
    // The jti is recorded only once the sessions have ended: a retry after a store outage
    // must work, and `verify_logout_token` already refused a token recorded before.
    let ended = match sessions
        .end_selected(
            IdpSession::new(id, request.sid.as_deref(), request.sub.as_deref())
                .created_at_most(request.sessions_created_by),
        )
        .await
    {
        Ok(ended) => ended,
        Err(err) => {
            tracing::error!(provider = id, error = %err, "back-channel logout: the session store failed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_store_unavailable",
                "the session store is unavailable",
            );
        }
    };
    if let Err(err) = provider.record_logout_token(&request, flow.replay()).await {
        return refuse_token(id, &err);
    }
    tracing::info!(
        provider = id,
        subject = request.sub.as_deref().unwrap_or("-"),
        by_sid = request.sid.is_some(),
        ended,
        "back-channel logout"
    );
    json(StatusCode::OK, serde_json::json!({ "ended": ended }))
}

fn refuse_token(provider: &str, err: &LogoutTokenError) -> Response<Body> {
    if err.status().is_server_error() {
        tracing::error!(provider, code = err.code(), error = %err, "back-channel logout failed");
    } else {
        tracing::warn!(provider, code = err.code(), error = %err, "back-channel logout token refused");
    }
    refuse(err.status(), err.code(), &err.to_string())
}

/// What the logout-state cookie carries between `POST {prefix}/logout` and the provider's
/// return to `{prefix}/logout/done`.
#[derive(Serialize, Deserialize)]
struct PendingLogout {
    #[serde(rename = "st")]
    state: String,
    #[serde(rename = "r")]
    return_to: String,
    #[serde(rename = "exp")]
    expires_at: i64,
}

/// The ID token kept in the record of the request's session, when its provider does
/// RP-initiated logout (the `id_token_hint`).
pub(crate) async fn id_token_hint(
    sessions: &Sessions,
    idps: &Idps,
    headers: &HeaderMap,
) -> Option<String> {
    let record = sessions.record_of(headers).await.ok()??;
    let provider = idps.oidc.get(&record.provider)?;
    if !provider.config.rp_initiated_logout {
        return None;
    }
    sessions.tokens(&record)?.id_token
}

fn logout_cookie(flow: &LoginFlow) -> String {
    flow.codec().name("jit_logout", true)
}

/// The redirect of an RP-initiated logout to the provider's `end_session_endpoint`, when the
/// session's provider enables it and publishes one; `None` (the logout stays local) else, or
/// when its discovery document cannot be had (logged). `id_token` is the session's ID token
/// (`id_token_hint`), `return_to` the checked target after the provider's return.
pub(crate) async fn rp_initiated(
    flow: &LoginFlow,
    site: &Site,
    provider: &OidcProvider,
    id_token: Option<&str>,
    return_to: &str,
) -> Option<Response<Body>> {
    if !provider.config.rp_initiated_logout {
        return None;
    }
    let endpoint = match provider.end_session_endpoint().await {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => {
            tracing::warn!(provider = %provider.id, "rp_initiated_logout is on but the provider publishes no end_session_endpoint: logged out locally only");
            return None;
        }
        Err(err) => {
            tracing::warn!(provider = %provider.id, error = %err, "the provider's discovery failed: logged out locally only");
            return None;
        }
    };
    let state = random_token(16);
    let post_logout = PostLogoutRedirectUrl::new(site.post_logout_redirect_uri(provider))
        .expect("built from the checked public_url and a checked path");
    let mut url = openidconnect::LogoutRequest::from(EndSessionUrl::from_url(endpoint))
        .set_client_id(ClientId::new(provider.config.client_id().to_owned()))
        .set_post_logout_redirect_uri(post_logout)
        .set_state(CsrfToken::new(state.clone()))
        .http_get_url();
    // openidconnect's `id_token_hint` setter wants an ID token parsed into its own types;
    // the hint is the text the session kept.
    if let Some(id_token) = id_token {
        url.query_pairs_mut().append_pair("id_token_hint", id_token);
    }
    let pending = PendingLogout {
        state,
        return_to: return_to.to_owned(),
        expires_at: now_unix() + flow.login_ttl(),
    };
    let name = logout_cookie(flow);
    let sealed = flow.seal(&name, &pending);
    // The URL carries the ID token.
    let mut response = super::sensitive_redirect(StatusCode::SEE_OTHER, url.as_str());
    add_cookie(
        &mut response,
        flow.set_cookie(&name, sealed, "/", SameSite::Lax),
    );
    tracing::info!(provider = %provider.id, "logging out at the identity provider");
    Some(response)
}

/// `GET {prefix}/logout/done?state=...`: the provider's return from RP-initiated logout.
pub(crate) async fn done(flow: &LoginFlow, req: &Parts) -> Response<Body> {
    let name = logout_cookie(flow);
    let result = async {
        let state = query_param(req.uri.query(), "state").ok_or(LogoutError::UnknownState)?;
        let pending: PendingLogout = flow
            .open(&req.headers, &name)
            .filter(|p: &PendingLogout| p.expires_at > now_unix())
            .ok_or(LogoutError::UnknownState)?;
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(LogoutError::UnknownState.into());
        }
        if !super::first_use(flow, &format!("logout-state:{state}")).await? {
            return Err(LogoutError::Replayed.into());
        }
        let target = check_return_to(&pending.return_to)
            .unwrap_or("/")
            .to_owned();
        Ok::<_, Error>(redirect(StatusCode::SEE_OTHER, &target))
    }
    .await;
    let mut response = result.unwrap_or_else(|err| super::fail("-", &err, &req.headers));
    add_cookie(&mut response, flow.clear_cookie(&name, "/", SameSite::Lax));
    response
}

/// `GET {prefix}/{provider}/frontchannel-logout?iss=..&sid=..`.
pub(crate) async fn frontchannel(
    sessions: &Sessions,
    provider: &OidcProvider,
    req: &Parts,
) -> Response<Body> {
    let id = provider.id.as_str();
    let result = async {
        let iss = query_param(req.uri.query(), "iss");
        let sid = query_param(req.uri.query(), "sid");
        if iss.as_deref().is_some_and(|iss| iss != provider.issuer()) {
            return Err(Error::from(LogoutError::WrongIssuer));
        }
        // §3: `iss` and `sid` come together or not at all; a provider that says it sends
        // them must send them (discovery is read only then).
        match (iss, sid) {
            (Some(_), Some(sid)) => {
                sessions
                    .end_by_idp_session(id, Some(&sid), None)
                    .await
                    .map_err(Error::Session)?;
            }
            (None, None) if !provider.frontchannel_session_supported().await? => {
                end_browser_session(sessions, id, &req.headers).await?;
            }
            _ => return Err(LogoutError::MissingSession.into()),
        }
        Ok(())
    }
    .await;
    let mut response = match result {
        Ok(()) => {
            tracing::info!(provider = id, "front-channel logout");
            let mut response = Response::new(Body::from(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Logged out</title>\
                 </head><body><p>Logged out.</p></body></html>",
            ));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(err) => super::fail(id, &err, &req.headers),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let issuer = url::Url::parse(provider.issuer())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "'none'".into());
    if let Ok(csp) = HeaderValue::from_str(&format!("frame-ancestors {issuer}")) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// Ends the session of this browser's cookie when it belongs to `provider` (a front-channel
/// request without `sid`). Browsers send `SameSite=Lax` cookies to a cross-site iframe only
/// rarely: providers that send `sid` are the reliable case.
async fn end_browser_session(
    sessions: &Sessions,
    provider: &str,
    headers: &HeaderMap,
) -> Result<(), Error> {
    let Some(Some(session)) = sessions.cookie(headers, None).await else {
        return Ok(());
    };
    if session.auth.provider == provider {
        sessions
            .end(&session.id, EndReason::IdpLogout)
            .await
            .map_err(Error::Session)?;
    }
    Ok(())
}
