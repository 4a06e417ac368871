use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cookie::{Cookie, Key};
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// A key that seals the layer's cookies: 64 bytes of key material from which the cipher keys
/// are derived (HKDF-SHA256), one per purpose.
///
/// The layer holds a ring of them: the first ([`JitLayerBuilder::session_key`](crate::JitLayerBuilder::session_key),
/// `session.key`) seals, and every one (also
/// [`previous_session_key`](crate::JitLayerBuilder::previous_session_key),
/// `session.previous_keys`) opens, so a key can be rotated without logging anyone out.
#[derive(Clone)]
pub struct SessionKey(Key);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// Length of a key id in cookie format 2 and in signed invalidations.
pub(crate) const KEY_ID_LEN: usize = 4;

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

    /// A 32-byte key for one purpose (`info`), derived with HKDF-SHA256 from the key material.
    pub(crate) fn derive(&self, info: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(None, self.0.master())
            .expand(info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// A short public name of this key (derived one-way), carried by what it seals so the
    /// opener picks the key directly.
    pub(crate) fn id(&self) -> [u8; KEY_ID_LEN] {
        let derived = self.derive(b"jit-provision key id");
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&derived[..KEY_ID_LEN]);
        id
    }
}

/// `SameSite` of a cookie we set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SameSite {
    Lax,
    None,
}

/// One key of the ring, with both ciphers' key schedules computed once.
struct RingKey {
    id: [u8; KEY_ID_LEN],
    /// Format 2: XChaCha20-Poly1305 under a key derived for cookies.
    current: XChaCha20Poly1305,
    /// Format 1 (opening only): AES-256-GCM under the encryption half of the key.
    legacy: Aes256Gcm,
}

/// Seals, opens and formats the layer's cookies.
///
/// Format 2, the one sealed: `2.` then URL-safe base64 (unpadded) of
/// `key id (4) | nonce (24) | XChaCha20-Poly1305 ciphertext | tag (16)`, the cookie name as
/// associated data, under a key derived (HKDF-SHA256) from the ring's first [`SessionKey`].
/// The 192-bit random nonces make a repeated nonce negligible however many cookies one key
/// seals (AES-GCM's 96-bit random nonces are good for about 2^32 messages per key).
///
/// Format 1, opened under every key of the ring so an upgrade logs nobody out: the `cookie`
/// crate's private-cookie format, standard base64 of `nonce (12) | AES-256-GCM ciphertext |
/// tag (16)` under the encryption half of the key, the cookie name as associated data. Its
/// alphabet has no `.`, so the two cannot be confused.
#[derive(Clone)]
pub(crate) struct CookieCodec {
    /// The sealing key first.
    ring: Arc<[RingKey]>,
    secure: bool,
}

/// The prefix of format 2.
const FORMAT_2: &str = "2.";
const NONCE_LEN: usize = 24;
const LEGACY_NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Largest cookie value we attempt to decrypt (browsers cap a cookie at 4096 bytes).
const MAX_COOKIE_VALUE: usize = 4096;

impl CookieCodec {
    /// A codec sealing with `current` and opening with it and every key of `previous`.
    pub(crate) fn new(current: &SessionKey, previous: &[SessionKey], secure: bool) -> Self {
        let ring = std::iter::once(current)
            .chain(previous)
            .map(|key| RingKey {
                id: key.id(),
                current: XChaCha20Poly1305::new(
                    &key.derive(b"jit-provision cookie xchacha20poly1305").into(),
                ),
                legacy: Aes256Gcm::new_from_slice(key.0.encryption())
                    .expect("a cookie::Key's encryption half is 32 bytes"),
            })
            .collect();
        Self { ring, secure }
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

    /// Encrypts `value` for the cookie `name` (the name is authenticated too), in format 2
    /// under the ring's first key.
    pub(crate) fn seal(&self, name: &str, value: &str) -> String {
        use rand::RngCore;
        let key = &self.ring[0];
        let mut data = vec![0u8; KEY_ID_LEN + NONCE_LEN + value.len() + TAG_LEN];
        let (id, rest) = data.split_at_mut(KEY_ID_LEN);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(value.len());
        id.copy_from_slice(&key.id);
        rand::rngs::OsRng.fill_bytes(nonce);
        body.copy_from_slice(value.as_bytes());
        let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().expect("NONCE_LEN bytes");
        let sealed_tag = key
            .current
            .encrypt_in_place_detached(&XNonce::from(nonce), name.as_bytes(), body)
            .expect("XChaCha20-Poly1305 encrypts any cookie-sized value");
        tag.copy_from_slice(&sealed_tag);
        let mut out = String::with_capacity(FORMAT_2.len() + data.len().div_ceil(3) * 4);
        out.push_str(FORMAT_2);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&data, &mut out);
        out
    }

    /// Decrypts the value of cookie `name`; `None` when it was not sealed for this name by a
    /// key of the ring.
    pub(crate) fn open(&self, name: &str, sealed: &str) -> Option<String> {
        if sealed.len() > MAX_COOKIE_VALUE {
            return None;
        }
        self.open_blob(name, sealed)
    }

    /// [`open`](Self::open) for a value kept server-side (sealed tokens): no cookie size
    /// limit.
    pub(crate) fn open_blob(&self, name: &str, sealed: &str) -> Option<String> {
        let body = match sealed.strip_prefix(FORMAT_2) {
            Some(encoded) => self.open_current(name, encoded)?,
            None => self.open_legacy(name, sealed)?,
        };
        String::from_utf8(body).ok()
    }

    /// Format 2: the key named by the key id.
    fn open_current(&self, name: &str, encoded: &str) -> Option<Vec<u8>> {
        let mut data = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()?;
        if data.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (id, rest) = data.split_at_mut(KEY_ID_LEN);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = XNonce::from(<[u8; NONCE_LEN]>::try_from(&*nonce).ok()?);
        let tag = chacha20poly1305::Tag::from(<[u8; TAG_LEN]>::try_from(&*tag).ok()?);
        // Ids are 32 bits: two keys of one ring sharing one is unlikely, not impossible. A
        // failed check leaves the buffer as it was, so the next key sees the ciphertext.
        let opened = self.ring.iter().filter(|key| key.id == *id).any(|key| {
            key.current
                .decrypt_in_place_detached(&nonce, name.as_bytes(), body, &tag)
                .is_ok()
        });
        opened.then(|| body.to_vec())
    }

    /// Format 1: no key id, so every key of the ring is tried.
    fn open_legacy(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        let mut data = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .ok()?;
        if data.len() < LEGACY_NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = data.split_at_mut(LEGACY_NONCE_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = Nonce::from(<[u8; LEGACY_NONCE_LEN]>::try_from(&*nonce).ok()?);
        let tag = Tag::from(<[u8; TAG_LEN]>::try_from(&*tag).ok()?);
        let opened = self.ring.iter().any(|key| {
            key.legacy
                .decrypt_in_place_detached(&nonce, name.as_bytes(), body, &tag)
                .is_ok()
        });
        opened.then(|| body.to_vec())
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

    fn codec(key: &SessionKey) -> CookieCodec {
        CookieCodec::new(key, &[], true)
    }

    /// A value sealed as the `cookie` crate's private jar does (format 1).
    fn legacy_seal(key: &SessionKey, name: &str, value: &str) -> String {
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(&key.0)
            .add(Cookie::new(name.to_owned(), value.to_owned()));
        jar.get(name).unwrap().value().to_owned()
    }

    #[test]
    fn sealed_value_opens_only_under_its_name_and_key() {
        let codec = codec(&SessionKey::generate());
        let sealed = codec.seal("a", "secret value");
        assert!(!sealed.contains("secret"));
        assert_eq!(codec.open("a", &sealed).as_deref(), Some("secret value"));
        assert_eq!(codec.open("b", &sealed), None);
        let other = CookieCodec::new(&SessionKey::generate(), &[], true);
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
        let codec = codec(&SessionKey::generate());
        let header = codec.set("__Host-s", "v".into(), "/", SameSite::Lax, 60);
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(header.contains(attr), "{header} lacks {attr}");
        }
    }

    #[test]
    fn new_values_are_format_2_and_the_cookie_crates_format_still_opens() {
        let key = SessionKey::generate();
        let codec = codec(&key);
        let sealed = codec.seal("n", "ours");
        // Format 2: a version prefix, the key id, a 24-byte nonce.
        let body = sealed.strip_prefix("2.").expect("format 2");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap();
        assert_eq!(raw.len(), KEY_ID_LEN + NONCE_LEN + "ours".len() + TAG_LEN);
        assert_eq!(raw[..KEY_ID_LEN], key.id());
        // Format 1 (the cookie crate's private jar, what earlier releases sealed) opens.
        let theirs = legacy_seal(&key, "n", "theirs");
        assert_eq!(codec.open("n", &theirs).as_deref(), Some("theirs"));
        assert_eq!(codec.open("m", &theirs), None);
        // The cookie crate cannot open format 2: it is not the same key or cipher.
        let mut jar = cookie::CookieJar::new();
        jar.add_original(Cookie::new("n", sealed));
        assert!(jar.private(&key.0).get("n").is_none());
        for junk in ["AAAA", "not base64!", "2.", "2.AAAA", "2.not base64!"] {
            assert_eq!(codec.open("n", junk), None, "{junk}");
        }
    }

    #[test]
    fn the_first_key_seals_and_every_key_of_the_ring_opens() {
        let (old, new, stranger) = (
            SessionKey::generate(),
            SessionKey::generate(),
            SessionKey::generate(),
        );
        let before = codec(&old);
        let ring = CookieCodec::new(&new, std::slice::from_ref(&old), true);
        let old_value = before.seal("n", "v1");
        let old_legacy = legacy_seal(&old, "n", "v0");
        assert_eq!(ring.open("n", &old_value).as_deref(), Some("v1"));
        assert_eq!(ring.open("n", &old_legacy).as_deref(), Some("v0"));
        let new_value = ring.seal("n", "v2");
        assert_eq!(ring.open("n", &new_value).as_deref(), Some("v2"));
        assert_eq!(before.open("n", &new_value), None, "sealed by the old key");
        assert_eq!(codec(&new).open("n", &new_value).as_deref(), Some("v2"));
        // The old key gone from the ring: its values are refused, in both formats.
        let after = CookieCodec::new(&new, std::slice::from_ref(&stranger), true);
        assert_eq!(after.open("n", &old_value), None);
        assert_eq!(after.open("n", &old_legacy), None);
        assert_eq!(after.open("n", &new_value).as_deref(), Some("v2"));
    }

    #[test]
    fn the_key_id_picks_the_key() {
        let (a, b) = (SessionKey::generate(), SessionKey::generate());
        let sealed = codec(&b).seal("n", "v");
        // Rewrite the key id to the other key's: the id only picks candidates.
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sealed[2..])
            .unwrap();
        let mut forged = raw.clone();
        forged[..KEY_ID_LEN].copy_from_slice(&a.id());
        let forged = format!(
            "2.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged)
        );
        let ring = CookieCodec::new(&a, std::slice::from_ref(&b), true);
        assert_eq!(ring.open("n", &forged), None, "a's id, b's ciphertext");
        assert_eq!(ring.open("n", &sealed).as_deref(), Some("v"));
    }

    #[test]
    fn key_round_trips_through_base64() {
        let key = SessionKey::generate();
        let again = SessionKey::from_base64(&key.to_base64()).unwrap();
        let a = codec(&key);
        let b = codec(&again);
        assert_eq!(b.open("n", &a.seal("n", "v")).as_deref(), Some("v"));
        assert_eq!(key.id(), again.id());
        assert_ne!(key.id(), SessionKey::generate().id());
    }
}
