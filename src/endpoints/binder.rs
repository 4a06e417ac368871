//! The login binder: a random value kept per browser in a `__Host-` cookie, whose hash every
//! login in progress seals into its pending state. A callback (OIDC) or ACS post (SAML) must
//! carry the binder of the browser that started the login, so a pending-login cookie tossed
//! into another browser (a sibling host may set the `__Secure-` pending cookie with `Domain=`,
//! but never a `__Host-` one) cannot log that browser in (login CSRF).

use base64::Engine;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::constant_time_eq;
use crate::error::CallbackError;
use crate::session::{LoginFlow, cookies_named, random_token};

/// Random bytes of a binder (43 URL-safe base64 characters).
const BINDER_BYTES: usize = 32;

/// The binder cookie's name: `__Host-jit_binder` when secure (scoped to `/`, no `Domain`).
pub(crate) fn cookie_name(flow: &LoginFlow) -> String {
    flow.codec().name("jit_binder", true)
}

/// Whether a cookie value looks like a binder we issued.
fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The browser's binder, kept when the request carries one, else a new one.
pub(crate) fn of_browser(flow: &LoginFlow, headers: &HeaderMap) -> String {
    let name = cookie_name(flow);
    cookies_named(headers, &name)
        .find(|v| well_formed(v))
        .map_or_else(|| random_token(BINDER_BYTES), str::to_owned)
}

/// The hash of a binder, as sealed into a pending login.
pub(crate) fn hash(binder: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(binder.as_bytes()))
}

/// The `Set-Cookie` of the binder, sent at every login start so that it outlives every login
/// in progress. `SameSite` like the pending-login cookie: a `form_post` callback and the SAML
/// ACS are cross-site `POST`s that must carry it.
pub(crate) fn set_cookie(flow: &LoginFlow, binder: &str) -> String {
    flow.set_cookie(
        &cookie_name(flow),
        binder.to_owned(),
        "/",
        flow.pending_same_site(),
    )
}

/// Checks that the request carries the binder whose hash the pending login sealed.
///
/// # Errors
///
/// [`CallbackError::WrongBrowser`] when it carries no binder or another browser's.
pub(crate) fn check(
    flow: &LoginFlow,
    headers: &HeaderMap,
    sealed_hash: &str,
) -> Result<(), CallbackError> {
    let name = cookie_name(flow);
    let bound = cookies_named(headers, &name)
        .any(|v| constant_time_eq(hash(v).as_bytes(), sealed_hash.as_bytes()));
    if bound {
        Ok(())
    } else {
        Err(CallbackError::WrongBrowser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binders_are_random_well_formed_and_hashed_one_way() {
        let a = random_token(BINDER_BYTES);
        let b = random_token(BINDER_BYTES);
        assert!(well_formed(&a) && well_formed(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&a));
        assert!(!hash(&a).contains(&a));
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}!", &a[..42])));
    }
}
