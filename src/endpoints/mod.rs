//! The layer's own endpoints: login start, callback, logout.

use std::collections::HashMap;

use axum::body::Body;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tracing::Instrument;

mod binder;
mod logout;
#[cfg(feature = "saml")]
mod saml;

use crate::directory::Directory;
use crate::error::{CallbackError, Error};
use crate::events::{LogoutReason, ProvisioningEvent};
use crate::invalidation::Invalidation;
use crate::mapping::Claims;
use crate::metrics::Protocol;
use crate::oidc::{OidcError, OidcProvider};
use crate::prompt::{PendingPrompt, PromptState};
use crate::provision::{Policy, ProvisionError, Provisioned, Provisioner, Resumed};
use crate::session::{
    EndReason, LoginFlow, LoginSession, Opened, PendingLogin, SameSite, Sessions, check_return_to,
    random_token,
};
use crate::state::{Idps, Shared, Site};
use crate::store::{Identity, now_unix};

/// Largest `form_post` callback body accepted (also for the prompt's resume form and for
/// logout). A `POST` whose `Content-Length` is larger is refused with `413 body_too_large`
/// before its body is read.
pub const MAX_CALLBACK_BODY: usize = 64 * 1024;

pub(crate) enum Route {
    Login(String),
    Callback(String),
    #[cfg(feature = "saml")]
    SamlLogin(String),
    #[cfg(feature = "saml")]
    Acs(String),
    #[cfg(feature = "saml")]
    Metadata(String),
    #[cfg(feature = "saml")]
    Slo(String),
    Logout,
    LogoutEverywhere,
    /// `GET {prefix}/logout/done`: the return from RP-initiated logout.
    LogoutDone,
    /// `POST {prefix}/{provider}/backchannel-logout`.
    Backchannel(String),
    /// `GET {prefix}/{provider}/frontchannel-logout`.
    Frontchannel(String),
    Resume,
    MethodNotAllowed(&'static str),
}

/// Which of the layer's endpoints, if any, this request is for.
pub(crate) fn route(site: &Site, idps: &Idps, req: &Request<Body>) -> Option<Route> {
    let rest = req
        .uri()
        .path()
        .strip_prefix(site.prefix.as_str())?
        .strip_prefix('/')?;
    let method = req.method();
    if rest == "resume" {
        return Some(if method == Method::POST {
            Route::Resume
        } else {
            Route::MethodNotAllowed("POST")
        });
    }
    // GET only, as for the front-channel page: a HEAD (a link checker) must not use up
    // the state or end a session.
    if rest == "logout/done" {
        return Some(if method == Method::GET {
            Route::LogoutDone
        } else {
            Route::MethodNotAllowed("GET")
        });
    }
    if rest == "logout" || rest == "logout/everywhere" {
        return Some(if method != Method::POST {
            Route::MethodNotAllowed("POST")
        } else if rest == "logout" {
            Route::Logout
        } else {
            Route::LogoutEverywhere
        });
    }
    let (provider, action) = rest.split_once('/')?;
    #[cfg(feature = "saml")]
    if idps.saml.contains_key(provider) {
        return match action {
            "login" if method == Method::GET || method == Method::HEAD => {
                Some(Route::SamlLogin(provider.to_owned()))
            }
            "metadata" if method == Method::GET || method == Method::HEAD => {
                Some(Route::Metadata(provider.to_owned()))
            }
            "login" | "metadata" => Some(Route::MethodNotAllowed("GET, HEAD")),
            "acs" if method == Method::POST => Some(Route::Acs(provider.to_owned())),
            "acs" => Some(Route::MethodNotAllowed("POST")),
            "slo" if method == Method::GET || method == Method::POST => {
                Some(Route::Slo(provider.to_owned()))
            }
            "slo" => Some(Route::MethodNotAllowed("GET, POST")),
            _ => None,
        };
    }
    match action {
        "login" if method == Method::GET || method == Method::HEAD => {
            Some(Route::Login(provider.to_owned()))
        }
        "login" => Some(Route::MethodNotAllowed("GET, HEAD")),
        "callback" if method == Method::GET || method == Method::POST => {
            Some(Route::Callback(provider.to_owned()))
        }
        "callback" => Some(Route::MethodNotAllowed("GET, POST")),
        "backchannel-logout" | "frontchannel-logout" => {
            logout_route(idps, provider, action, method)
        }
        _ => None,
    }
}

/// The IdP-initiated logout endpoints, served only for providers that enable them.
fn logout_route(idps: &Idps, id: &str, action: &str, method: &Method) -> Option<Route> {
    let config = &idps.oidc.get(id)?.config;
    match action {
        "backchannel-logout" if config.backchannel_logout => Some(if method == Method::POST {
            Route::Backchannel(id.to_owned())
        } else {
            Route::MethodNotAllowed("POST")
        }),
        "frontchannel-logout" if config.frontchannel_logout => Some(if method == Method::GET {
            Route::Frontchannel(id.to_owned())
        } else {
            Route::MethodNotAllowed("GET")
        }),
        _ => None,
    }
}

/// Answers at the endpoint `route`, giving it the handles it uses.
pub(crate) async fn handle(shared: &Shared, route: Route, req: Request<Body>) -> Response<Body> {
    if let Some((provider, limit)) = body_limit(&route, req.method())
        && declared_length(req.headers()).is_some_and(|length| length > limit as u64)
    {
        // Refused on the declared length, before a byte of the body is read (the bounded
        // readers below still stop a chunked body at the same limit).
        return fail(provider, &CallbackError::TooLarge.into(), req.headers());
    }
    match route {
        Route::Login(provider) => {
            let (parts, _) = req.into_parts();
            let span = tracing::info_span!("jit.login", provider = %provider);
            let login = async {
                let oidc = shared.idps.oidc_provider(&provider)?;
                login(&shared.flow, oidc, &parts).await
            };
            match login.instrument(span).await {
                Ok(response) => response,
                Err(err) => fail(&provider, &err, &parts.headers),
            }
        }
        Route::Callback(provider) => {
            let span = tracing::info_span!("jit.callback", provider = %provider);
            callback(&shared.idps, completion(shared), &provider, req)
                .instrument(span)
                .await
        }
        Route::Resume => resume(&shared.site, completion(shared), req).await,
        #[cfg(feature = "saml")]
        Route::SamlLogin(provider) => {
            let (parts, _) = req.into_parts();
            let sp = &shared.idps.saml[&provider];
            let span = tracing::info_span!("jit.login", provider = %provider);
            let login = saml::login(&shared.flow, sp, &parts);
            match login.instrument(span).await {
                Ok(response) => response,
                Err(err) => fail(&provider, &err, &parts.headers),
            }
        }
        #[cfg(feature = "saml")]
        Route::Acs(provider) => {
            let sp = &shared.idps.saml[&provider];
            let span = tracing::info_span!("jit.acs", provider = %provider);
            saml::acs(completion(shared), sp, req)
                .instrument(span)
                .await
        }
        #[cfg(feature = "saml")]
        Route::Metadata(provider) => saml::metadata(&shared.idps.saml[&provider]),
        #[cfg(feature = "saml")]
        Route::Slo(provider) => {
            let sp = &shared.idps.saml[&provider];
            let span = tracing::info_span!("jit.slo", provider = %provider);
            saml::slo(&shared.flow, &shared.sessions, sp, req)
                .instrument(span)
                .await
        }
        Route::Logout => {
            let (parts, _) = req.into_parts();
            logout(shared, &parts, false).await
        }
        Route::LogoutEverywhere => {
            let (parts, _) = req.into_parts();
            logout(shared, &parts, true).await
        }
        Route::LogoutDone => {
            let (parts, _) = req.into_parts();
            logout::done(&shared.flow, &parts).await
        }
        Route::Backchannel(provider) => {
            let oidc = &shared.idps.oidc[&provider];
            let span = tracing::info_span!("jit.backchannel_logout", provider = %provider);
            logout::backchannel(&shared.flow, &shared.sessions, oidc, req)
                .instrument(span)
                .await
        }
        Route::Frontchannel(provider) => {
            let oidc = &shared.idps.oidc[&provider];
            let (parts, _) = req.into_parts();
            let span = tracing::info_span!("jit.frontchannel_logout", provider = %provider);
            logout::frontchannel(&shared.sessions, oidc, &parts)
                .instrument(span)
                .await
        }
        Route::MethodNotAllowed(allow) => {
            let mut response = crate::failure::render(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
                req.headers(),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}

/// The largest body a `POST` to this endpoint may carry, with the provider to log it under:
/// the OIDC callback, the prompt's resume and logout [`MAX_CALLBACK_BODY`], the SAML ACS
/// [`MAX_ACS_BODY`](crate::saml::MAX_ACS_BODY).
fn body_limit<'a>(route: &'a Route, method: &Method) -> Option<(&'a str, usize)> {
    if method != Method::POST {
        return None;
    }
    match route {
        Route::Callback(provider) => Some((provider, MAX_CALLBACK_BODY)),
        Route::Resume | Route::Logout => Some(("-", MAX_CALLBACK_BODY)),
        #[cfg(feature = "saml")]
        Route::Acs(provider) => Some((provider, crate::saml::MAX_ACS_BODY)),
        _ => None,
    }
}

/// The request's `Content-Length`, when it has one that parses.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn fail(provider: &str, err: &Error, request_headers: &HeaderMap) -> Response<Body> {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(provider, code = err.code(), error = %err, "login failed");
    } else {
        tracing::warn!(provider, code = err.code(), error = %err, "login refused");
    }
    err.to_response(request_headers)
}

pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A redirect to `location`, percent-encoding what a header cannot carry (non-ASCII
/// characters of a `return_to` like `/café`, controls), so the `Location` is never lost.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    let encoded = percent_encoding::utf8_percent_encode(location, percent_encoding::CONTROLS);
    let value = HeaderValue::try_from(encoded.to_string())
        .expect("percent-encoded text is visible ASCII and spaces only");
    response.headers_mut().insert(header::LOCATION, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// [`redirect`] to a `Location` carrying a credential or a personal identifier (an
/// `id_token_hint`, a SAML NameID): the header is marked sensitive, so that header logging
/// that honours it (tower-http's `SetSensitiveResponseHeaders`, `trace`) leaves it out.
pub(crate) fn sensitive_redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = redirect(status, location);
    if let Some(value) = response.headers_mut().get_mut(header::LOCATION) {
        value.set_sensitive(true);
    }
    response
}

pub(crate) fn add_cookie(response: &mut Response<Body>, set_cookie: String) {
    if let Ok(value) = HeaderValue::from_str(&set_cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `GET {prefix}/{provider}/login`: sends the browser to the provider's authorization
/// endpoint, with the login's state sealed in a pending-login cookie.
async fn login(
    flow: &LoginFlow,
    provider: &OidcProvider,
    req: &Parts,
) -> Result<Response<Body>, Error> {
    let id = provider.id.as_str();
    let return_to = query_param(req.uri.query(), "return_to").unwrap_or_else(|| "/".into());
    check_return_to(&return_to)?;
    let auth = provider.authorization_request().await?;
    let binder = binder::of_browser(flow, &req.headers);
    let pending = PendingLogin {
        provider: id.to_owned(),
        state: auth.state,
        nonce: auth.nonce,
        pkce_verifier: auth.pkce_verifier,
        return_to,
        expires_at: now_unix() + flow.login_ttl(),
        binder: binder::hash(&binder),
    };
    let name = flow
        .pending_cookie_name(&pending.state)
        .expect("openidconnect's state is 22 URL-safe characters");
    let sealed = flow.seal(&name, &pending);
    let mut response = redirect(StatusCode::FOUND, auth.url.as_str());
    add_cookie(&mut response, binder::set_cookie(flow, &binder));
    add_cookie(
        &mut response,
        flow.set_cookie(
            &name,
            sealed,
            &flow.pending_path(id),
            flow.pending_same_site(),
        ),
    );
    tracing::debug!("redirecting to the identity provider");
    Ok(response)
}

/// The parameters of an authorization response.
#[derive(Default)]
pub(crate) struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// Whether the request body is `application/x-www-form-urlencoded`.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// The body of a form `POST` (`application/x-www-form-urlencoded`, at most
/// [`MAX_CALLBACK_BODY`] bytes).
pub(crate) async fn read_form(req: Request<Body>) -> Result<Vec<u8>, CallbackError> {
    read_form_up_to(req, MAX_CALLBACK_BODY).await
}

/// The body of a form `POST` of at most `limit` bytes: the one bounded reader of the
/// endpoints (a chunked body is stopped at the limit too, not only a declared length).
pub(crate) async fn read_form_up_to(
    req: Request<Body>,
    limit: usize,
) -> Result<Vec<u8>, CallbackError> {
    if !is_form(req.headers()) {
        return Err(CallbackError::UnsupportedMediaType);
    }
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(CallbackError::TooLarge),
        Err(_) => Err(CallbackError::Malformed),
    }
}

async fn read_params(req: Request<Body>) -> Result<CallbackParams, CallbackError> {
    let raw: Vec<u8> = if req.method() == Method::POST {
        read_form(req).await?
    } else {
        req.uri().query().unwrap_or("").as_bytes().to_vec()
    };
    parse_params(&raw)
}

/// The authorization response parameters of a query string or form body.
pub(crate) fn parse_params(raw: &[u8]) -> Result<CallbackParams, CallbackError> {
    let mut seen: HashMap<String, String> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if matches!(&*k, "state" | "code" | "error" | "iss")
            && seen.insert(k.into_owned(), v.into_owned()).is_some()
        {
            // RFC 6749 3.1: parameters must not be included more than once.
            return Err(CallbackError::Malformed);
        }
    }
    Ok(CallbackParams {
        state: seen.remove("state"),
        code: seen.remove("code"),
        error: seen.remove("error"),
        iss: seen.remove("iss"),
    })
}

/// `GET|POST {prefix}/{provider}/callback`: the authorization response. Whatever happens,
/// the pending login is over.
async fn callback(
    idps: &Idps,
    completion: Completion<'_>,
    id: &str,
    req: Request<Body>,
) -> Response<Body> {
    let flow = completion.flow;
    let headers = req.headers().clone();
    let provider = match idps.oidc_provider(id) {
        Ok(p) => p,
        Err(err) => return fail(id, &err, &headers),
    };
    let params = match read_params(req).await {
        Ok(p) => p,
        Err(err) => return fail(id, &err.into(), &headers),
    };
    let cookie_name = params
        .state
        .as_deref()
        .and_then(|s| flow.pending_cookie_name(s));
    let metrics = completion.provisioner.metrics();
    let mut response = match complete(
        completion,
        provider,
        &headers,
        params,
        cookie_name.as_deref(),
    )
    .await
    {
        Ok(response) => {
            metrics.login(id, Protocol::Oidc, None);
            response
        }
        Err(err) => {
            metrics.login(id, Protocol::Oidc, Some(err.code()));
            fail(id, &err, &headers)
        }
    };
    // The pending login is single-use: whatever happened, it is over.
    if let Some(name) = cookie_name {
        let clear = flow.clear_cookie(&name, &flow.pending_path(id), flow.pending_same_site());
        add_cookie(&mut response, clear);
    }
    response
}

async fn complete(
    completion: Completion<'_>,
    provider: &OidcProvider,
    headers: &HeaderMap,
    params: CallbackParams,
    cookie_name: Option<&str>,
) -> Result<Response<Body>, Error> {
    let state = params.state.ok_or(CallbackError::MissingState)?;
    let name = cookie_name.ok_or(CallbackError::UnknownState)?;
    let pending: PendingLogin = completion
        .flow
        .open(headers, name)
        .ok_or(CallbackError::UnknownState)?;
    if !constant_time_eq(pending.state.as_bytes(), state.as_bytes())
        || pending.expires_at <= now_unix()
    {
        return Err(CallbackError::UnknownState.into());
    }
    if pending.provider != provider.id {
        return Err(CallbackError::WrongProvider.into());
    }
    binder::check(completion.flow, headers, &pending.binder)?;
    if !first_use(completion.flow, &format!("oidc-state:{state}")).await? {
        return Err(CallbackError::Replayed.into());
    }
    if let Some(error) = params.error {
        let error = error.chars().take(64).collect();
        return Err(OidcError::Authorization { error }.into());
    }
    provider
        .check_response_issuer(params.iss.as_deref())
        .await?;
    let code = params.code.ok_or(CallbackError::MissingCode)?;
    let login = provider
        .finish(code, pending.nonce, pending.pkce_verifier)
        .await?;
    let policy = policy_of(completion.provisioner, &provider.id)?;
    complete_login(
        completion,
        policy,
        &login.identity,
        &login.claims,
        None,
        login.session,
        &pending.return_to,
    )
    .await
}

/// The handles that end a verified login ([`complete_login`]): provisioning, the user
/// directory, the sessions, and the login flow (for a prompt).
#[derive(Clone, Copy)]
pub(crate) struct Completion<'a> {
    pub(crate) provisioner: &'a Provisioner,
    pub(crate) users: &'a Directory,
    pub(crate) sessions: &'a Sessions,
    pub(crate) flow: &'a LoginFlow,
}

/// The [`Completion`] handles of `shared`.
fn completion(shared: &Shared) -> Completion<'_> {
    Completion {
        provisioner: &shared.provisioner,
        users: &shared.users,
        sessions: &shared.sessions,
        flow: &shared.flow,
    }
}

/// The provisioning policy of provider `id`.
pub(crate) fn policy_of<'a>(provisioner: &'a Provisioner, id: &str) -> Result<&'a Policy, Error> {
    provisioner
        .policy(id)
        .map(|policy| &**policy)
        .ok_or_else(|| Error::UnknownProvider(id.to_owned()))
}

/// "policy → provision → finish login", shared by the OIDC callback, the SAML ACS and the
/// prompt resume: provisions the user of a verified login under `policy` (with the choices
/// of a resumed prompt, if any), then ends the login with [`finish_login`].
pub(crate) async fn complete_login(
    completion: Completion<'_>,
    policy: &Policy,
    identity: &Identity,
    claims: &Claims,
    resumed: Option<Resumed>,
    session: LoginSession,
    return_to: &str,
) -> Result<Response<Body>, Error> {
    let provisioned = completion
        .provisioner
        .provision(policy, identity, claims, resumed)
        .await?;
    Ok(finish_login(completion, identity, provisioned, session, return_to).await)
}

/// Ends a successful login: a session cookie and a redirect to `return_to`, or, when a
/// prompt hook asks for it, the pending-prompt cookie and a redirect to the hook's page.
pub(crate) async fn finish_login(
    completion: Completion<'_>,
    identity: &Identity,
    provisioned: Provisioned,
    login: LoginSession,
    return_to: &str,
) -> Response<Body> {
    let (user, domain, outcome) = match provisioned {
        Provisioned::Done {
            user,
            domain,
            outcome,
        } => (user, domain, outcome),
        Provisioned::Prompt {
            path,
            request,
            domain,
            claims,
        } => {
            let state = PromptState {
                pending: PendingPrompt {
                    request: *request,
                    return_to: return_to.to_owned(),
                    expires_at: now_unix() + completion.flow.login_ttl(),
                },
                id: random_token(16),
                domain: domain.to_string(),
                claims,
                idp_session: login.idp_session,
            };
            return start_prompt(completion.flow, path, state);
        }
    };
    completion.users.record_login(&domain, identity).await;
    let cookie = match completion
        .sessions
        .issue(&domain, user.id, identity, login)
        .await
    {
        Ok(cookie) => cookie,
        Err(err) => return fail(&identity.provider, &err.into(), &HeaderMap::new()),
    };
    tracing::info!(user_id = %user.id, outcome = ?outcome, "login succeeded");
    let mut response = redirect(StatusCode::SEE_OTHER, return_to);
    add_cookie(&mut response, cookie);
    response
}

/// Browsers keep a cookie whose name and value together are at most this long.
const MAX_COOKIE: usize = 4096;

/// Sends the browser to the prompt hook's page with the sealed prompt state.
fn start_prompt(flow: &LoginFlow, path: String, state: PromptState) -> Response<Body> {
    let provider = state.pending.request.provider.clone();
    let Ok(path) = check_return_to(&path).map(str::to_owned) else {
        tracing::error!("the prompt hook returned a target that is not a same-origin path");
        return fail(
            &provider,
            &Error::Provision(ProvisionError::PromptRefused(
                "misconfigured prompt page".into(),
            )),
            &HeaderMap::new(),
        );
    };
    let Some(name) = flow.prompt_cookie() else {
        unreachable!("prompts happen only when a hook is registered");
    };
    let sealed = flow.seal(name, &state);
    let bytes = name.len() + sealed.len();
    if bytes > MAX_COOKIE {
        // A browser would drop the cookie, and the resume would find no prompt.
        let err = ProvisionError::PromptTooLarge { bytes };
        return fail(&provider, &err.into(), &HeaderMap::new());
    }
    let mut response = redirect(StatusCode::SEE_OTHER, &path);
    add_cookie(
        &mut response,
        flow.set_cookie(name, sealed, "/", SameSite::Lax),
    );
    response
}

/// The prompt state a request carries, if any (and not expired).
fn prompt_state(flow: &LoginFlow, headers: &HeaderMap) -> Option<PromptState> {
    let name = flow.prompt_cookie()?;
    flow.open::<PromptState>(headers, name)
        .filter(|state| state.pending.expires_at > now_unix())
}

/// The pending prompt a request carries, if any (and not expired).
pub(crate) fn pending_prompt(flow: &LoginFlow, headers: &HeaderMap) -> Option<PendingPrompt> {
    prompt_state(flow, headers).map(|state| state.pending)
}

/// Uses up a prompt state in the replay guard: `false` when it was used before.
async fn consume_prompt(flow: &LoginFlow, state: &PromptState) -> Result<bool, Error> {
    first_use(flow, &format!("prompt:{}", state.id)).await
}

/// Uses up a one-time value of a login or logout in progress (remembered for
/// `login_ttl_secs`): `false` when it was used before.
pub(crate) async fn first_use(flow: &LoginFlow, key: &str) -> Result<bool, Error> {
    flow.first_use(key).await.map_err(Error::Store)
}

/// `POST {prefix}/resume`: the application's prompt page posts its form here; the hook turns
/// it into the profile to create, and the login ends as usual. The prompt state is single
/// use (replay guard); linking and the domain are decided from what it sealed.
async fn resume(site: &Site, completion: Completion<'_>, req: Request<Body>) -> Response<Body> {
    let flow = completion.flow;
    let headers = req.headers().clone();
    if let Err(err) = site.check_same_origin(&headers) {
        return fail("-", &err, &headers);
    }
    let Some(state) = prompt_state(flow, &headers) else {
        return fail("-", &CallbackError::UnknownState.into(), &headers);
    };
    let provider = state.pending.request.provider.clone();
    let form = match read_form(req).await {
        Ok(raw) => url::form_urlencoded::parse(&raw)
            .into_owned()
            .collect::<HashMap<_, _>>(),
        Err(err) => return fail(&provider, &err.into(), &headers),
    };
    let result = async {
        if !consume_prompt(flow, &state).await? {
            return Err(CallbackError::Replayed.into());
        }
        let policy = policy_of(completion.provisioner, &provider)?;
        let hook = completion
            .provisioner
            .prompt_hook(&provider)
            .ok_or_else(|| ProvisionError::PromptNotConfigured(provider.clone()))?;
        let request = &state.pending.request;
        let chosen = hook
            .resume(request, &form)
            .map_err(ProvisionError::PromptRefused)?;
        let resumed = Resumed {
            domain: state.domain.clone(),
            asserted: request.profile.clone(),
            chosen,
        };
        let identity = &request.identity;
        // The IdP's session of the login before the prompt comes through it; its tokens do
        // not (the prompt cookie would not hold them).
        let login = LoginSession {
            idp_session: state.idp_session.clone(),
            tokens: None,
        };
        complete_login(
            completion,
            policy,
            identity,
            &state.claims,
            Some(resumed),
            login,
            &state.pending.return_to,
        )
        .await
    }
    .await;
    let mut response = result.unwrap_or_else(|err| fail(&provider, &err, &headers));
    if let Some(name) = flow.prompt_cookie() {
        add_cookie(&mut response, flow.clear_cookie(name, "/", SameSite::Lax));
    }
    response
}

/// `POST {prefix}/logout` ends the request's session (its record, in the store and on every
/// instance); with `everywhere` (`POST {prefix}/logout/everywhere`), every session of its user
/// if the session is live.
///
/// The one endpoint that ends everything of a session: its record, its user's cached copies,
/// a prompt in progress, and then the session at the provider; hence the handles of most
/// concerns (all but provisioning).
async fn logout(shared: &Shared, req: &Parts, everywhere: bool) -> Response<Body> {
    let Shared {
        site,
        idps,
        users,
        sessions,
        flow,
        events,
        metrics,
        ..
    } = shared;
    if let Err(err) = site.check_same_origin(&req.headers) {
        return fail("-", &err, &req.headers);
    }
    // RP-initiated logout's `id_token_hint`, read before the session ends.
    let id_token = logout::id_token_hint(sessions, idps, &req.headers).await;
    // A SAML session with single logout: what its LogoutRequest names, read before it ends.
    #[cfg(feature = "saml")]
    let single_logout = saml::logout_subject(sessions, idps, &req.headers).await;
    let ended = async {
        if everywhere {
            // Everywhere only from a live session. A cookie that no longer holds (or none) is
            // answered so, not taken for success: the user's other sessions may still be live.
            let Opened::Live(session) = sessions.open(&req.headers, metrics).await? else {
                sessions.end_cookie(&req.headers, EndReason::Logout).await?;
                return Err(Error::EverywhereNeedsLogin);
            };
            sessions
                .end_for_user(&session.auth.domain, session.user_id, EndReason::Everywhere)
                .await?;
            return Ok(Some(session));
        }
        Ok::<_, Error>(sessions.end_cookie(&req.headers, EndReason::Logout).await?)
    }
    .await;
    let mut provider = None;
    match ended {
        Ok(Some(session)) => {
            users
                .announce(Invalidation::User {
                    domain: session.auth.domain.clone(),
                    id: session.user_id,
                })
                .await;
            tracing::info!(user_id = %session.user_id, provider = %session.auth.provider, everywhere, "logged out");
            provider = Some(session.auth.provider.clone());
            events
                .emit(ProvisioningEvent::LoggedOut {
                    provider: session.auth.provider.clone(),
                    domain: session.auth.domain.clone(),
                    user_id: session.user_id,
                    reason: LogoutReason::User,
                })
                .await;
        }
        Ok(None) => {}
        // The cookie goes anyway, but the session may still hold elsewhere: say so.
        Err(err) => {
            let mut response = fail("-", &err, &req.headers);
            add_cookie(&mut response, sessions.clear_cookie());
            return response;
        }
    }
    // A prompt in progress ends too, also for a copy of its cookie.
    if let Some(state) = prompt_state(flow, &req.headers)
        && let Err(err) = consume_prompt(flow, &state).await
    {
        tracing::warn!(error = %err, "could not use up the pending prompt at logout");
    }
    let target = query_param(req.uri.query(), "return_to")
        .filter(|t| check_return_to(t).is_ok())
        .unwrap_or_else(|| "/".to_owned());
    // Then at the provider too: SAML Single Logout, or OpenID Connect RP-initiated logout.
    #[cfg(feature = "saml")]
    let at_provider = match single_logout {
        Some(subject) => Some(saml::start_logout(flow, subject, &target, &req.headers).await),
        None => None,
    };
    #[cfg(not(feature = "saml"))]
    let at_provider = None;
    let at_provider = match (at_provider, &provider) {
        (Some(response), _) => Some(response),
        (None, Some(id)) => match idps.oidc.get(id) {
            Some(oidc) => {
                logout::rp_initiated(flow, site, oidc, id_token.as_deref(), &target).await
            }
            None => None,
        },
        (None, None) => None,
    };
    let mut response = at_provider.unwrap_or_else(|| redirect(StatusCode::SEE_OTHER, &target));
    add_cookie(&mut response, sessions.clear_cookie());
    if let Some(prompt) = flow.prompt_cookie() {
        add_cookie(&mut response, flow.clear_cookie(prompt, "/", SameSite::Lax));
    }
    response
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_always_carries_its_location_percent_encoded() {
        for (target, location) in [
            ("/café?q=ü#é", "/caf%C3%A9?q=%C3%BC#%C3%A9"),
            ("/a%2Fb?x=1&y=2", "/a%2Fb?x=1&y=2"),
            ("/ctrl\r\n\u{7f}", "/ctrl%0D%0A%7F"),
            (
                "https://idp.example/authorize?a=b",
                "https://idp.example/authorize?a=b",
            ),
        ] {
            let response = redirect(StatusCode::SEE_OTHER, target);
            assert_eq!(response.headers()[header::LOCATION], location, "{target:?}");
        }
    }
}
