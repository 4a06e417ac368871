use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use cookie::{Cookie, Key};
use std::fmt;

/// The key that seals the layer's cookies (AES-256-GCM, through the `cookie` crate).
#[derive(Clone)]
pub struct SessionKey(Key);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl SessionKey {
    /// A fresh random key. Sessions sealed with it die with the process.
    pub fn generate() -> Self {
        Self(Key::generate())
    }

    /// A key from at least 64 bytes of key material.
    ///
    /// ```
    /// assert!(jit_provision::session::SessionKey::from_bytes(&[7u8; 64]).is_some());
    /// assert!(jit_provision::session::SessionKey::from_bytes(&[7u8; 16]).is_none());
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Key::try_from(bytes).ok().map(Self)
    }

    /// A key from base64 (standard or URL-safe, padded or not) of at least 64 bytes.
    pub fn from_base64(text: &str) -> Option<Self> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .and_then(|bytes| Self::from_bytes(&bytes))
    }

    /// The key as URL-safe base64, to put in a configuration file.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.master())
    }
}

/// `SameSite` of a cookie we set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SameSite {
    Lax,
    None,
}

/// Seals, opens and formats the layer's cookies.
///
/// The sealed format is the `cookie` crate's private-cookie format — base64 of
/// `nonce (12) | AES-256-GCM ciphertext | tag (16)`, the cookie name as associated data,
/// keyed by the encryption half of the [`SessionKey`] — done here with the cipher's key
/// schedule computed once instead of at every request.
#[derive(Clone)]
pub(crate) struct CookieCodec {
    cipher: Aes256Gcm,
    secure: bool,
}

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Largest cookie value we attempt to decrypt (browsers cap a cookie at 4096 bytes).
const MAX_COOKIE_VALUE: usize = 4096;

impl CookieCodec {
    pub(crate) fn new(key: &SessionKey, secure: bool) -> Self {
        Self {
            cipher: Aes256Gcm::new_from_slice(key.0.encryption())
                .expect("a cookie::Key's encryption half is 32 bytes"),
            secure,
        }
    }

    pub(crate) fn secure(&self) -> bool {
        self.secure
    }

    /// The full cookie name: when secure, `__Host-` prefixed for a cookie scoped to `/`,
    /// `__Secure-` prefixed for one scoped to a deeper path.
    pub(crate) fn name(&self, base: &str, path_is_root: bool) -> String {
        match (self.secure, path_is_root) {
            (true, true) => format!("__Host-{base}"),
            (true, false) => format!("__Secure-{base}"),
            (false, _) => base.to_owned(),
        }
    }

    /// Encrypts `value` for the cookie `name` (the name is authenticated too).
    pub(crate) fn seal(&self, name: &str, value: &str) -> String {
        use rand::RngCore;
        let mut data = vec![0u8; NONCE_LEN + value.len() + TAG_LEN];
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(value.len());
        rand::rngs::OsRng.fill_bytes(nonce);
        body.copy_from_slice(value.as_bytes());
        let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().expect("NONCE_LEN bytes");
        let sealed_tag = self
            .cipher
            .encrypt_in_place_detached(&Nonce::from(nonce), name.as_bytes(), body)
            .expect("AES-GCM encrypts any cookie-sized value");
        tag.copy_from_slice(&sealed_tag);
        base64::engine::general_purpose::STANDARD.encode(&data)
    }

    /// Decrypts the value of cookie `name`; `None` when it was not sealed by us for this name.
    pub(crate) fn open(&self, name: &str, sealed: &str) -> Option<String> {
        if sealed.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let mut data = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if data.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = data.split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().ok()?;
        let tag: [u8; TAG_LEN] = (&*tag).try_into().ok()?;
        self.cipher
            .decrypt_in_place_detached(&Nonce::from(nonce), name.as_bytes(), body, &Tag::from(tag))
            .ok()?;
        String::from_utf8(body.to_vec()).ok()
    }

    /// A `Set-Cookie` value setting `name` to an already sealed value.
    pub(crate) fn set(
        &self,
        name: &str,
        sealed: String,
        path: &str,
        same_site: SameSite,
        max_age_secs: i64,
    ) -> String {
        let mut cookie = Cookie::new(name.to_owned(), sealed);
        cookie.set_path(path.to_owned());
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(match same_site {
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        });
        cookie.set_max_age(cookie::time::Duration::seconds(max_age_secs));
        cookie.to_string()
    }

    /// A `Set-Cookie` value deleting `name`.
    pub(crate) fn clear(&self, name: &str, path: &str, same_site: SameSite) -> String {
        self.set(name, String::new(), path, same_site, 0)
    }
}

/// The values of the request's cookies called `name`, in header order.
pub(crate) fn cookies_named<'a>(
    headers: &'a http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(http::header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n.trim() == name).then(|| value.trim().trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_value_opens_only_under_its_name_and_key() {
        let codec = CookieCodec::new(&SessionKey::generate(), true);
        let sealed = codec.seal("a", "secret value");
        assert!(!sealed.contains("secret"));
        assert_eq!(codec.open("a", &sealed).as_deref(), Some("secret value"));
        assert_eq!(codec.open("b", &sealed), None);
        let other = CookieCodec::new(&SessionKey::generate(), true);
        assert_eq!(other.open("a", &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            codec.open("a", std::str::from_utf8(&tampered).unwrap()),
            None
        );
    }

    #[test]
    fn set_cookie_carries_the_security_attributes() {
        let codec = CookieCodec::new(&SessionKey::generate(), true);
        let header = codec.set("__Host-s", "v".into(), "/", SameSite::Lax, 60);
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(header.contains(attr), "{header} lacks {attr}");
        }
    }

    #[test]
    fn sealed_values_are_the_cookie_crates_private_format() {
        let key = SessionKey::generate();
        let codec = CookieCodec::new(&key, true);
        // Ours opens the cookie crate's, and the cookie crate opens ours.
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&key.0).add(Cookie::new("n", "theirs"));
        let theirs = jar.get("n").unwrap().value().to_owned();
        assert_eq!(codec.open("n", &theirs).as_deref(), Some("theirs"));
        let mut jar = cookie::CookieJar::new();
        jar.add_original(Cookie::new("n", codec.seal("n", "ours")));
        assert_eq!(jar.private(&key.0).get("n").unwrap().value(), "ours");
        assert_eq!(codec.open("n", "AAAA"), None);
        assert_eq!(codec.open("n", "not base64!"), None);
    }

    #[test]
    fn key_round_trips_through_base64() {
        let key = SessionKey::generate();
        let again = SessionKey::from_base64(&key.to_base64()).unwrap();
        let a = CookieCodec::new(&key, true);
        let b = CookieCodec::new(&again, true);
        assert_eq!(b.open("n", &a.seal("n", "v")).as_deref(), Some("v"));
    }
}
