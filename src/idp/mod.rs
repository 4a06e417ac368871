//! What the identity-provider protocols share, below OIDC login, bearer tokens and logout
//! tokens: the HTTP client ([`HttpClient`]: no redirects, bounded in time and size), the
//! signing-key caches of an issuer, and JOSE helpers.
//!
//! Key caches: [`KeySource`] (bearer tokens, `jsonwebtoken` types) is the one cache of an
//! issuer that also has a bearer section: its login and logout tokens read it too, through
//! [`SharedKeys`]. A provider without bearer tokens keeps its own [`JwksCache`] (keys from
//! the discovery document, `openidconnect` types).

pub(crate) mod http;
mod jwks;
mod keys;

pub(crate) use self::http::HttpClient;
pub(crate) use self::jwks::{JwksCache, LoginKeys, Refetch, SharedKeys};
pub(crate) use self::keys::{KeyError, KeySource};

/// A JOSE `typ` as a comparable media type (RFC 7515 §4.1.9): lower case, `application/`
/// prepended when it holds no `/`. An absent `typ` is `""`.
pub(crate) fn media_type(typ: &str) -> String {
    let typ = typ.trim().to_ascii_lowercase();
    if typ.is_empty() || typ.contains('/') {
        typ
    } else {
        format!("application/{typ}")
    }
}
