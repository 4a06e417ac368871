//! Sessions and encrypted cookies: [`SessionStore`] (server-side session records, the
//! truth about a session), the session of a logged-in user and the pending state of a login
//! in progress. Both are sealed with XChaCha20-Poly1305 under a key derived from the first
//! [`SessionKey`] of the ring (older cookies, AES-256-GCM as the `cookie` crate's private jar
//! seals them, still open), so any app instance holding the keys can read them and nobody
//! else can read or forge them.

mod cache;
mod flow;
mod redirect;
mod sessions;

pub use crate::cookies::SessionKey;
pub(crate) use crate::cookies::{CookieCodec, SameSite, cookies_named};
pub use crate::store::session_store::{
    EndReason, IdpSession, MemorySessionStore, SealedTokens, SessionRecord, SessionStore,
    SessionStoreHandle, TokensUpdate,
};
pub(crate) use cache::{IdentityEntry, OpenedSession, Origin, UserCache};
pub(crate) use flow::LoginFlow;
pub use redirect::{InvalidReturnTo, check_return_to};
pub use sessions::SessionError;
pub(crate) use sessions::{LiveSession, LoginSession, Opened, SessionTokens, Sessions};

use serde::{Deserialize, Serialize};

/// What the session cookie of earlier releases carries, encrypted. Such a cookie still
/// opens: the layer adopts it into a session record at its first request. Kept for the fuzz
/// target of that format.
#[cfg(feature = "__fuzzing")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionData {
    /// The local user.
    #[serde(rename = "u")]
    pub(crate) user_id: crate::store::UserId,
    /// Its user-store domain.
    #[serde(rename = "d", default = "primary")]
    pub(crate) domain: String,
    /// The provider the user logged in through.
    #[serde(rename = "p")]
    pub(crate) provider: String,
    /// The subject at that provider.
    #[serde(rename = "s")]
    pub(crate) subject: String,
    /// Random session id (used to revoke the session at logout).
    #[serde(rename = "id")]
    pub(crate) session_id: String,
    /// Login time, Unix seconds.
    #[serde(rename = "iat")]
    pub(crate) issued_at: i64,
    /// End of the session, Unix seconds.
    #[serde(rename = "exp")]
    pub(crate) expires_at: i64,
}

#[cfg(feature = "__fuzzing")]
fn primary() -> String {
    crate::store::domain::PRIMARY_DOMAIN.to_owned()
}

/// What the pending-login cookie carries between login start and callback, encrypted.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    #[serde(rename = "p")]
    pub(crate) provider: String,
    #[serde(rename = "st")]
    pub(crate) state: String,
    #[serde(rename = "n")]
    pub(crate) nonce: String,
    #[serde(rename = "v")]
    pub(crate) pkce_verifier: String,
    #[serde(rename = "r")]
    pub(crate) return_to: String,
    #[serde(rename = "exp")]
    pub(crate) expires_at: i64,
    /// The hash of the binder cookie of the browser that started the login: its callback
    /// must come from that browser.
    #[serde(rename = "b")]
    pub(crate) binder: String,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("provider", &self.provider)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// A random URL-safe token of `bytes` random bytes.
pub(crate) fn random_token(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
