//! [`LoginFlow`]: the state a login (or a logout) carries between two requests of the
//! browser, before there is a session: sealed `__Host-`/`__Secure-` cookies that live
//! `login_ttl` (a SAML pending cookie twice that, so a late answer is told it expired), and the
//! replay guard that makes each of them single use on the server.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cookies::{CookieCodec, SameSite, cookies_named};
use crate::store::StoreError;
use crate::store::replay::ErasedGuard;

/// The sealed cookies and the replay guard of logins and logouts in progress.
pub(crate) struct LoginFlow {
    codec: CookieCodec,
    /// The pending-prompt cookie's name, when any provider has a prompt hook.
    prompt_cookie: Option<String>,
    /// One-time values (OIDC states, SAML ids, prompt ids) already used.
    replay: Arc<dyn ErasedGuard>,
    login_ttl_secs: u64,
    /// The endpoints' path prefix.
    prefix: String,
}

impl LoginFlow {
    /// The flow of a layer: `prompts` when any provider has a prompt hook (then the prompt
    /// cookie has a name), `prefix` the endpoints' path prefix.
    pub(crate) fn new(
        codec: CookieCodec,
        prompts: bool,
        replay: Arc<dyn ErasedGuard>,
        login_ttl_secs: u64,
        prefix: String,
    ) -> Self {
        let prompt_cookie = prompts.then(|| codec.name("jit_prompt", true));
        Self {
            codec,
            prompt_cookie,
            replay,
            login_ttl_secs,
            prefix,
        }
    }

    /// The codec, for a flow cookie with its own name or lifetime.
    pub(crate) fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    /// How long a login in progress lasts, in seconds (a cookie's `Max-Age`).
    pub(crate) fn login_ttl(&self) -> i64 {
        self.login_ttl_secs as i64
    }

    /// The pending-prompt cookie's name, when any provider has a prompt hook.
    pub(crate) fn prompt_cookie(&self) -> Option<&str> {
        self.prompt_cookie.as_deref()
    }

    /// The replay guard, for a one-time value with its own lifetime (a SAML assertion, a
    /// logout token's `jti`).
    pub(crate) fn replay(&self) -> &dyn ErasedGuard {
        &*self.replay
    }

    /// Uses up a one-time value (remembered for `login_ttl`): `false` when it was used
    /// before. Fails closed: a guard that cannot answer is an error.
    pub(crate) async fn first_use(&self, key: &str) -> Result<bool, StoreError> {
        let ttl = Duration::from_secs(self.login_ttl_secs.max(1));
        self.replay.first_use(key, ttl).await
    }

    /// The pending-login cookie's name for a state: one cookie per login in progress, so two
    /// tabs logging in at once do not overwrite each other. `None` for a state we cannot have
    /// issued.
    pub(crate) fn pending_cookie_name(&self, state: &str) -> Option<String> {
        let ok = (16..=128).contains(&state.len())
            && state
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| {
            self.codec
                .name(&format!("jit_login_{}", &state[..16]), false)
        })
    }

    /// The pending-login cookie must reach a `form_post` callback, a cross-site `POST`: it is
    /// `SameSite=None` (hence `Secure`). Without `Secure` (plain-http localhost development)
    /// browsers refuse `None`, and `Lax` works there because loopback ports are same-site.
    pub(crate) fn pending_same_site(&self) -> SameSite {
        if self.codec.secure() {
            SameSite::None
        } else {
            SameSite::Lax
        }
    }

    /// The path a provider's pending-login cookie is scoped to: its endpoints.
    pub(crate) fn pending_path(&self, provider: &str) -> String {
        format!("{}/{provider}/", self.prefix)
    }

    /// `value` as JSON, sealed for the cookie `name`.
    pub(crate) fn seal<T: Serialize>(&self, name: &str, value: &T) -> String {
        let json = serde_json::to_string(value).expect("plain struct serializes");
        self.codec.seal(name, &json)
    }

    /// The `T` in the first cookie `name` of the request that opens (sealed by a key of the
    /// ring for this name); `None` when none opens or it holds no `T`.
    pub(crate) fn open<T: DeserializeOwned>(&self, headers: &HeaderMap, name: &str) -> Option<T> {
        cookies_named(headers, name)
            .find_map(|sealed| self.codec.open(name, sealed))
            .and_then(|json| serde_json::from_str(&json).ok())
    }

    /// The `Set-Cookie` of a flow cookie: lives `login_ttl`.
    pub(crate) fn set_cookie(
        &self,
        name: &str,
        sealed: String,
        path: &str,
        same_site: SameSite,
    ) -> String {
        self.codec
            .set(name, sealed, path, same_site, self.login_ttl())
    }

    /// The `Set-Cookie` that deletes a flow cookie.
    pub(crate) fn clear_cookie(&self, name: &str, path: &str, same_site: SameSite) -> String {
        self.codec.clear(name, path, same_site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookies::SessionKey;
    use crate::store::replay::MemoryReplayGuard;

    fn flow(secure: bool) -> LoginFlow {
        let codec = CookieCodec::new(&SessionKey::generate(), &[], secure);
        let replay = Arc::new(MemoryReplayGuard::new());
        LoginFlow::new(codec, true, replay, 600, "/auth".to_owned())
    }

    fn cookie(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let pair = format!("{name}={value}");
        headers.insert(http::header::COOKIE, pair.parse().unwrap());
        headers
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_own_name() {
        let flow = flow(true);
        let name = flow.pending_cookie_name("abcdefghijklmnop-rest").unwrap();
        assert_eq!(name, "__Secure-jit_login_abcdefghijklmnop");
        let sealed = flow.seal(&name, &vec!["state".to_owned()]);
        let opened: Option<Vec<String>> = flow.open(&cookie(&name, &sealed), &name);
        assert_eq!(opened, Some(vec!["state".to_owned()]));
        // The name is authenticated: the same value under another cookie name does not open.
        let other = "__Secure-jit_login_zzzzzzzzzzzzzzzz";
        let moved: Option<Vec<String>> = flow.open(&cookie(other, &sealed), other);
        assert_eq!(moved, None);
        // Nor does it open as another type.
        let retyped: Option<u64> = flow.open(&cookie(&name, &sealed), &name);
        assert_eq!(retyped, None);
    }

    #[test]
    fn only_states_we_could_have_issued_name_a_cookie() {
        let flow = flow(false);
        assert_eq!(
            flow.pending_cookie_name("abcdefghijklmnop").as_deref(),
            Some("jit_login_abcdefghijklmnop")
        );
        for state in [
            "short",
            "abcdefghijklmno;",
            "abcdefghijklmnop=x",
            &"a".repeat(129),
        ] {
            assert_eq!(flow.pending_cookie_name(state), None, "{state}");
        }
        assert_eq!(flow.pending_path("corp"), "/auth/corp/");
        assert_eq!(flow.prompt_cookie(), Some("jit_prompt"));
        assert_eq!(flow.pending_same_site(), SameSite::Lax);
    }

    #[tokio::test]
    async fn a_one_time_value_is_used_once() {
        let flow = flow(true);
        assert!(flow.first_use("oidc-state:x").await.unwrap());
        assert!(!flow.first_use("oidc-state:x").await.unwrap());
        assert!(flow.first_use("oidc-state:y").await.unwrap());
    }
}
