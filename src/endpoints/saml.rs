//! The SAML 2.0 endpoints: login (an AuthnRequest by HTTP-Redirect), the ACS (HTTP-POST),
//! the SP metadata, and Single Logout (the `LogoutRequest` at logout, the SLO service). The assertion's identity goes through the same provisioning as an OIDC
//! login.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::{Completion, add_cookie, binder, complete_login, fail, policy_of, redirect};
use crate::error::{CallbackError, Error};
use crate::saml::{
    Incoming, Kind, MAX_ACS_BODY, NameId, Outgoing, SamlError, SamlLogin, SamlServiceProvider,
    SloError,
};
use crate::session::{LoginFlow, Sessions, check_return_to, random_token};
use crate::state::Idps;
use crate::store::now_unix;

/// What the pending SAML login cookie carries, sealed.
#[derive(Serialize, Deserialize)]
struct PendingSaml {
    #[serde(rename = "p")]
    provider: String,
    #[serde(rename = "id")]
    request_id: String,
    #[serde(rename = "r")]
    return_to: String,
    #[serde(rename = "exp")]
    expires_at: i64,
    /// The hash of the binder of the browser that started the login.
    #[serde(rename = "b")]
    binder: String,
}

/// The pending request of this provider the request's cookie `name` holds, if not expired.
fn pending_of(
    flow: &LoginFlow,
    headers: &http::HeaderMap,
    name: &str,
    provider: &str,
) -> Option<PendingSaml> {
    flow.open::<PendingSaml>(headers, name)
        .filter(|p| p.provider == provider && p.expires_at > now_unix())
}

/// The provider's IdP parameters, loading its metadata URL at first use.
async fn ready(sp: &SamlServiceProvider) -> Result<(), SamlError> {
    if sp.idp_entity_id().is_none() {
        sp.load_metadata().await?;
    }
    Ok(())
}

/// `GET {prefix}/{provider}/login`: an AuthnRequest by HTTP-Redirect, its ID remembered in a
/// sealed cookie that reaches the cross-site ACS `POST`.
pub(crate) async fn login(
    flow: &LoginFlow,
    sp: &SamlServiceProvider,
    req: &Parts,
) -> Result<Response<Body>, Error> {
    let return_to = super::query_param(req.uri.query(), "return_to").unwrap_or_else(|| "/".into());
    check_return_to(&return_to)?;
    ready(sp).await?;
    let relay_state = random_token(18);
    let (url, request_id) = sp.authn_request(&relay_state)?;
    let sent = Sent {
        url: &url,
        request_id,
        relay_state: &relay_state,
    };
    Ok(send_pending(
        flow,
        sp,
        &req.headers,
        sent,
        return_to,
        StatusCode::FOUND,
    ))
}

/// A request sent to the IdP by HTTP-Redirect, whose answer comes back with `relay_state`.
struct Sent<'a> {
    url: &'a str,
    request_id: String,
    relay_state: &'a str,
}

/// The redirect to the IdP with `sent`, its request ID and `return_to` remembered in a
/// sealed pending cookie named after the `RelayState` (one per request in progress), bound
/// to this browser by its binder, and readable by the cross-site `POST` of the answer.
fn send_pending(
    flow: &LoginFlow,
    sp: &SamlServiceProvider,
    headers: &http::HeaderMap,
    sent: Sent<'_>,
    return_to: String,
    status: StatusCode,
) -> Response<Body> {
    let ttl = flow.login_ttl();
    let binder = binder::of_browser(flow, headers);
    let pending = PendingSaml {
        provider: sp.provider_id().to_owned(),
        request_id: sent.request_id,
        return_to,
        expires_at: now_unix() + ttl,
        binder: binder::hash(&binder),
    };
    let name = flow
        .pending_cookie_name(sent.relay_state)
        .expect("our relay state is URL-safe");
    let sealed = flow.seal(&name, &pending);
    // A LogoutRequest carries the NameID (an AuthnRequest nothing secret, marked alike).
    let mut response = super::sensitive_redirect(status, sent.url);
    add_cookie(&mut response, binder::set_cookie(flow, &binder));
    // The cookie outlives the login it seals by as long again, so that an answer arriving
    // late is told `saml_login_expired` rather than "no login in progress".
    add_cookie(
        &mut response,
        flow.codec().set(
            &name,
            sealed,
            &flow.pending_path(sp.provider_id()),
            flow.pending_same_site(),
            ttl.saturating_mul(2),
        ),
    );
    response
}

/// `GET {prefix}/{provider}/metadata`.
pub(crate) fn metadata(sp: &SamlServiceProvider) -> Response<Body> {
    let mut response = Response::new(Body::from(sp.metadata_xml()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    response
}

/// `POST {prefix}/{provider}/acs`.
pub(crate) async fn acs(
    completion: Completion<'_>,
    sp: &SamlServiceProvider,
    req: Request<Body>,
) -> Response<Body> {
    let flow = completion.flow;
    let headers = req.headers().clone();
    let id = sp.provider_id().to_owned();
    let relay_state = std::sync::Mutex::new(None::<String>);
    let result = async {
        let form = read_acs_form(req).await?;
        let saml_response = form
            .get("SAMLResponse")
            .ok_or_else(|| SamlError::Malformed("no SAMLResponse".into()))?;
        *relay_state.lock().unwrap_or_else(|e| e.into_inner()) = form.get("RelayState").cloned();
        let pending = form
            .get("RelayState")
            .and_then(|relay| flow.pending_cookie_name(relay))
            .and_then(|name| flow.open::<PendingSaml>(&headers, &name))
            .filter(|p| p.provider == id);
        ready(sp).await?;
        let (login, return_to) =
            verified_login(flow, sp, &form, saml_response, pending, &headers).await?;
        let policy = policy_of(completion.provisioner, &id)?;
        // With single logout, the NameID as asserted goes into the (sealed) record: the
        // LogoutRequest names it.
        let tokens = sp
            .single_logout()
            .then(|| crate::session::SessionTokens {
                saml_name_id: login.name_id.clone(),
                ..Default::default()
            })
            .filter(|t| t.saml_name_id.is_some());
        let session = crate::session::LoginSession {
            idp_session: login.session_index.clone(),
            tokens,
        };
        complete_login(
            completion,
            policy,
            &login.identity,
            &login.claims,
            None,
            session,
            &return_to,
        )
        .await
    }
    .await;
    let metrics = completion.provisioner.metrics();
    let mut response = match result {
        Ok(response) => {
            metrics.login(&id, crate::metrics::Protocol::Saml, None);
            response
        }
        Err(err) => {
            metrics.login(&id, crate::metrics::Protocol::Saml, Some(err.code()));
            fail(&id, &err, &headers)
        }
    };
    // The pending login is single-use: whatever happened, it is over.
    let relay = relay_state.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(name) = relay.and_then(|r| flow.pending_cookie_name(&r)) {
        let clear = flow.clear_cookie(&name, &flow.pending_path(&id), flow.pending_same_site());
        add_cookie(&mut response, clear);
    }
    response
}

/// The verified login of an ACS post, and where it returns to: the answer to this
/// browser's login in progress (bound by its binder, single use), or an IdP-initiated login
/// when the provider allows them. Anything else is refused with what happened: the login
/// expired, was already answered, or none is in progress.
async fn verified_login(
    flow: &LoginFlow,
    sp: &SamlServiceProvider,
    form: &HashMap<String, String>,
    saml_response: &str,
    pending: Option<PendingSaml>,
    headers: &http::HeaderMap,
) -> Result<(SamlLogin, String), Error> {
    let now = now_unix();
    Ok(match pending {
        Some(pending) if pending.expires_at > now => {
            // A login in progress must come back to the browser that started it.
            binder::check(flow, headers, &pending.binder)?;
            let login = sp.verify_response(saml_response, Some(&pending.request_id), now)?;
            first_use_of_assertion(flow, &login, now).await?;
            if !first_answer(flow, &login, &pending.request_id, now).await? {
                return Err(SamlError::LoginAlreadyUsed.into());
            }
            (login, pending.return_to)
        }
        expired => {
            // No login in progress here: what the verified response answers says why.
            let login = sp.verify_any_response(saml_response, now)?;
            match login.in_response_to.as_deref() {
                Some(request_id) => {
                    let why = if !first_answer(flow, &login, request_id, now).await? {
                        SamlError::LoginAlreadyUsed
                    } else if expired.is_some_and(|p| p.request_id == request_id) {
                        SamlError::LoginExpired
                    } else {
                        SamlError::NoLoginInProgress
                    };
                    return Err(why.into());
                }
                None if sp.allows_idp_initiated() => {
                    // Checked again as unsolicited: then neither the Response nor the
                    // confirmation may name a request.
                    let login = sp.verify_response(saml_response, None, now)?;
                    first_use_of_assertion(flow, &login, now).await?;
                    // IdP-initiated: a RelayState is at most a same-origin path.
                    let return_to = form
                        .get("RelayState")
                        .filter(|r| check_return_to(r).is_ok())
                        .cloned()
                        .unwrap_or_else(|| "/".into());
                    (login, return_to)
                }
                None => return Err(SamlError::UnsolicitedResponse.into()),
            }
        }
    })
}

/// Refuses a second use of the assertion (its ID, until it expires).
async fn first_use_of_assertion(
    flow: &LoginFlow,
    login: &SamlLogin,
    now: i64,
) -> Result<(), Error> {
    let ttl = login.replay_ttl(now).max(Duration::from_secs(1));
    if flow
        .replay()
        .first_use(&login.replay_key(), ttl)
        .await
        .map_err(Error::Store)?
    {
        Ok(())
    } else {
        Err(SamlError::Replayed.into())
    }
}

/// Records that the login request `request_id` (the verified `InResponseTo` of `login`) has
/// had its answer at the ACS, for as long as that answer could be posted again; `false`
/// when it already had one. The request ID comes from a verified response, so only the IdP
/// can name one; it is hashed to bound the key's length.
async fn first_answer(
    flow: &LoginFlow,
    login: &SamlLogin,
    request_id: &str,
    now: i64,
) -> Result<bool, Error> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(request_id.as_bytes());
    let key = format!(
        "saml-request:{}:{}",
        login.identity.provider,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    );
    let ttl = login.replay_ttl(now).max(Duration::from_secs(1));
    flow.replay()
        .first_use(&key, ttl)
        .await
        .map_err(Error::Store)
}

/// The ACS (and SLO) form: `application/x-www-form-urlencoded`, at most [`MAX_ACS_BODY`]
/// bytes, each name at most once.
async fn read_acs_form(req: Request<Body>) -> Result<HashMap<String, String>, Error> {
    let bytes = super::read_form_up_to(req, MAX_ACS_BODY).await?;
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        if form.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(CallbackError::Malformed.into());
        }
    }
    Ok(form)
}

/// What a logout sends to the IdP's Single Logout service: the provider, the NameID and the
/// IdP session of the session that ends.
pub(crate) struct LogoutSubject {
    sp: std::sync::Arc<SamlServiceProvider>,
    name_id: NameId,
    session_index: Option<String>,
}

/// The [`LogoutSubject`] of the request's session, when it is a live session of a SAML
/// provider with `single_logout` whose record kept the NameID. Read before the session
/// ends; a store failure here only means a local logout.
pub(crate) async fn logout_subject(
    sessions: &Sessions,
    idps: &Idps,
    headers: &http::HeaderMap,
) -> Option<LogoutSubject> {
    let record = match sessions.record_of(headers).await {
        Ok(record) => record?,
        Err(err) => {
            tracing::warn!(error = %err, "could not read the session for single logout");
            return None;
        }
    };
    let sp = idps.saml.get(&record.provider)?.clone();
    if !sp.single_logout() || !record.is_live(now_unix()) {
        return None;
    }
    let name_id = sessions.tokens(&record)?.saml_name_id?;
    Some(LogoutSubject {
        sp,
        name_id,
        session_index: record.idp_session,
    })
}

/// After the local session ended: `303` to the IdP's Single Logout service with a
/// `LogoutRequest`, its ID remembered in a pending cookie bound to this browser (named
/// after the random `RelayState`, single use), so the `LogoutResponse` lands on
/// `return_to`. When the IdP has no HTTP-Redirect SingleLogoutService or the request
/// cannot be made, `303` to `return_to` (the local logout holds).
pub(crate) async fn start_logout(
    flow: &LoginFlow,
    subject: LogoutSubject,
    return_to: &str,
    headers: &http::HeaderMap,
) -> Response<Body> {
    let sp = &subject.sp;
    let relay_state = random_token(18);
    let now = now_unix();
    let started = async {
        ready(sp).await?;
        sp.logout_request(
            &subject.name_id,
            subject.session_index.as_deref(),
            &relay_state,
            now,
        )
    }
    .await;
    let (url, request_id) = match started {
        Ok(Some(started)) => started,
        Ok(None) => return redirect(StatusCode::SEE_OTHER, return_to),
        Err(err) => {
            tracing::warn!(provider = %sp.provider_id(), code = err.code(), error = %err, "single logout not started; logged out here only");
            return redirect(StatusCode::SEE_OTHER, return_to);
        }
    };
    let sent = Sent {
        url: &url,
        request_id,
        relay_state: &relay_state,
    };
    let response = send_pending(
        flow,
        sp,
        headers,
        sent,
        return_to.to_owned(),
        StatusCode::SEE_OTHER,
    );
    tracing::info!(provider = %sp.provider_id(), "single logout sent to the identity provider");
    response
}

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
const STATUS_PARTIAL: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";

/// `GET|POST {prefix}/{provider}/slo`: the IdP's `LogoutResponse` (to our logout) or its
/// `LogoutRequest` (a logout started elsewhere), by HTTP-Redirect or HTTP-POST.
pub(crate) async fn slo(
    flow: &LoginFlow,
    sessions: &Sessions,
    sp: &SamlServiceProvider,
    req: Request<Body>,
) -> Response<Body> {
    let headers = req.headers().clone();
    let id = sp.provider_id().to_owned();
    let mut clear_pending = None;
    let result = async {
        if !sp.single_logout() {
            return Err(SloError::NotEnabled.into());
        }
        let form;
        let query;
        let incoming = if req.method() == http::Method::POST {
            form = read_acs_form(req).await?;
            Incoming::Post(&form)
        } else {
            query = req.uri().query().unwrap_or("").to_owned();
            Incoming::Redirect(&query)
        };
        ready(sp).await?;
        let decoded = sp.decode_logout(incoming)?;
        match decoded.kind {
            Kind::Response => {
                let name = decoded
                    .relay_state
                    .as_deref()
                    .and_then(|relay| flow.pending_cookie_name(relay));
                clear_pending.clone_from(&name);
                let pending = name
                    .and_then(|name| pending_of(flow, &headers, &name, &id))
                    .ok_or(SloError::UnknownLogout)?;
                binder::check(flow, &headers, &pending.binder)
                    .map_err(|_| SloError::UnknownLogout)?;
                sp.verify_logout_response(&decoded, Some(&pending.request_id), now_unix())?;
                tracing::info!("the identity provider confirmed the single logout");
                Ok(redirect(StatusCode::SEE_OTHER, &pending.return_to))
            }
            Kind::Request => idp_logout(flow, sessions, sp, &decoded).await,
        }
    }
    .await;
    let mut response = result.unwrap_or_else(|err: Error| {
        let status = err.status();
        if status.is_server_error() {
            tracing::error!(provider = %id, code = err.code(), error = %err, "single logout failed");
        } else {
            tracing::warn!(provider = %id, code = err.code(), error = %err, "single logout refused");
        }
        err.to_response(&headers)
    });
    // A pending logout is single-use: whatever happened, it is over.
    if let Some(name) = clear_pending {
        let clear = flow.clear_cookie(&name, &flow.pending_path(&id), flow.pending_same_site());
        add_cookie(&mut response, clear);
    }
    response
}

/// An IdP-initiated logout: the verified, first-seen `LogoutRequest` ends the sessions of
/// its NameID (the subject, when the NameID is the identity) and `SessionIndex`es on every
/// instance, and a signed `LogoutResponse` goes back: `Success` (also when no session
/// matched: none is left), `Responder` + `PartialLogout` when the sessions could not be
/// identified (an identity attribute and no `SessionIndex`) or when it names more than
/// 16 of them (only the first 16 end), `Responder` when the session store failed. The request's ID is checked against the replay guard first but recorded
/// only once its sessions have ended: after a `Responder` for a store outage the IdP may
/// send the same request again.
async fn idp_logout(
    flow: &LoginFlow,
    sessions: &Sessions,
    sp: &SamlServiceProvider,
    decoded: &crate::saml::Decoded,
) -> Result<Response<Body>, Error> {
    let now = now_unix();
    let request = sp.verify_logout_request(decoded, now)?;
    let ttl = Duration::from_secs(request.accepted_until.saturating_sub(now).max(1) as u64);
    // The request's ID is recorded only once its sessions have ended (as a back-channel
    // logout token's `jti`): the IdP's retry after a session store outage must work.
    let replay_key = format!("saml-slo:{}:{}", sp.provider_id(), request.id);
    if flow
        .replay()
        .was_used(&replay_key)
        .await
        .map_err(Error::Store)?
    {
        return Err(SloError::Replayed.into());
    }
    let subject = sp.logout_subject(&request);
    let mut status = (STATUS_SUCCESS, None);
    let mut store_failed = false;
    let mut ended = 0;
    let selections: Vec<Option<&str>> = if request.session_indexes.is_empty() {
        vec![None]
    } else {
        request
            .session_indexes
            .iter()
            .map(|s| Some(s.as_str()))
            .collect()
    };
    if subject.is_none() && request.session_indexes.is_empty() {
        status = (STATUS_RESPONDER, Some(STATUS_PARTIAL));
    } else {
        // Only the first SessionIndex values end sessions: the IdP is told it was partial.
        if request.session_indexes_truncated {
            status = (STATUS_RESPONDER, Some(STATUS_PARTIAL));
        }
        for sid in selections {
            match sessions
                .end_by_idp_session(sp.provider_id(), sid, subject)
                .await
            {
                Ok(n) => ended += n,
                Err(err) => {
                    tracing::error!(error = %err, "ending sessions for a SAML logout failed");
                    status = (STATUS_RESPONDER, None);
                    store_failed = true;
                }
            }
        }
    }
    // Not recorded when the store failed, so that the IdP may send it again.
    if !store_failed {
        let first = flow
            .replay()
            .first_use(&replay_key, ttl)
            .await
            .map_err(Error::Store)?;
        if !first {
            return Err(SloError::Replayed.into());
        }
    }
    tracing::info!(ended, status = status.0, "identity provider logout");
    let outgoing = sp.logout_response(&request.id, status, decoded.relay_state.as_deref(), now)?;
    Ok(match outgoing {
        Outgoing::Redirect(url) => redirect(StatusCode::SEE_OTHER, &url),
        Outgoing::Post {
            url,
            saml_response,
            relay_state,
        } => {
            let mut response = Response::new(Body::from(crate::saml::post_form(
                &url,
                &saml_response,
                &relay_state,
            )));
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    })
}
