//! The SAML 2.0 endpoints: login (an AuthnRequest by HTTP-Redirect), the ACS (HTTP-POST) and
//! the SP metadata. The assertion's identity goes through the same provisioning as an OIDC
//! login.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::{add_cookie, binder, fail, finish_login, pending_path, pending_same_site, redirect};
use crate::error::{CallbackError, Error};
use crate::layer::Shared;
use crate::saml::{MAX_ACS_BODY, SamlError, SamlServiceProvider};
use crate::session::{check_return_to, cookies_named, random_token};
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

fn cookie_name(shared: &Shared, relay_state: &str) -> Option<String> {
    super::pending_cookie_name(shared, relay_state)
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
    shared: &Shared,
    sp: &SamlServiceProvider,
    req: &Parts,
) -> Result<Response<Body>, Error> {
    let return_to = super::query_param(req.uri.query(), "return_to").unwrap_or_else(|| "/".into());
    check_return_to(&return_to)?;
    ready(sp).await?;
    let relay_state = random_token(18);
    let (url, request_id) = sp.authn_request(&relay_state)?;
    let ttl = shared.session.login_ttl_secs as i64;
    let binder = binder::of_browser(shared, &req.headers);
    let pending = PendingSaml {
        provider: sp.provider_id().to_owned(),
        request_id,
        return_to,
        expires_at: now_unix() + ttl,
        binder: binder::hash(&binder),
    };
    let name = cookie_name(shared, &relay_state).expect("our relay state is URL-safe");
    let json = serde_json::to_string(&pending).expect("plain struct serializes");
    let sealed = shared.codec.seal(&name, &json);
    let mut response = redirect(StatusCode::FOUND, &url);
    add_cookie(&mut response, binder::set_cookie(shared, &binder));
    add_cookie(
        &mut response,
        shared.codec.set(
            &name,
            sealed,
            &pending_path(shared, sp.provider_id()),
            pending_same_site(shared),
            ttl,
        ),
    );
    Ok(response)
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
    shared: &Shared,
    sp: &SamlServiceProvider,
    req: Request<Body>,
) -> Response<Body> {
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
            .and_then(|relay| cookie_name(shared, relay))
            .and_then(|name| {
                cookies_named(&headers, &name).find_map(|sealed| shared.codec.open(&name, sealed))
            })
            .and_then(|json| serde_json::from_str::<PendingSaml>(&json).ok())
            .filter(|p| p.provider == id && p.expires_at > now_unix());
        // A login in progress must come back to the browser that started it; an
        // IdP-initiated response (no pending login) has none to check.
        if let Some(pending) = &pending {
            binder::check(shared, &headers, &pending.binder)?;
        }
        ready(sp).await?;
        let now = now_unix();
        let login = sp.verify_response(
            saml_response,
            pending.as_ref().map(|p| p.request_id.as_str()),
            now,
        )?;
        let first = shared
            .replay
            .first_use(
                &login.replay_key(),
                login.replay_ttl(now).max(Duration::from_secs(1)),
            )
            .await
            .map_err(Error::Store)?;
        if !first {
            return Err(SamlError::Replayed.into());
        }
        let return_to = match &pending {
            Some(p) => p.return_to.clone(),
            // IdP-initiated: a RelayState is at most a same-origin path.
            None => form
                .get("RelayState")
                .filter(|r| check_return_to(r).is_ok())
                .cloned()
                .unwrap_or_else(|| "/".into()),
        };
        let policy = shared
            .policies
            .get(&id)
            .ok_or_else(|| Error::UnknownProvider(id.clone()))?;
        let provisioned = shared
            .provisioner
            .provision(policy, &login.identity, &login.claims, None)
            .await?;
        let session = crate::session::LoginSession {
            idp_session: login.session_index.clone(),
            tokens: None,
        };
        Ok::<_, Error>(
            finish_login(shared, &login.identity, provisioned, session, &return_to).await,
        )
    }
    .await;
    let metrics = shared.provisioner.metrics();
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
    if let Some(name) = relay.and_then(|r| cookie_name(shared, &r)) {
        let clear =
            shared
                .codec
                .clear(&name, &pending_path(shared, &id), pending_same_site(shared));
        add_cookie(&mut response, clear);
    }
    response
}

/// The ACS form: `application/x-www-form-urlencoded`, at most [`MAX_ACS_BODY`] bytes.
async fn read_acs_form(req: Request<Body>) -> Result<HashMap<String, String>, Error> {
    if !super::is_form(req.headers()) {
        return Err(CallbackError::UnsupportedMediaType.into());
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_ACS_BODY);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(CallbackError::TooLarge.into());
        }
        Err(_) => return Err(CallbackError::Malformed.into()),
    };
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        if form.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(CallbackError::Malformed.into());
        }
    }
    Ok(form)
}
