//! The implementation behind [`crate::invalidation`] (documented there); it lives beside the
//! stores, which implement its trait.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{StoreError, UserId};
use crate::cookies::{KEY_ID_LEN, SessionKey};

/// Something every instance must forget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Invalidation {
    /// The user changed (updated, locked, deleted, logged out): drop its cached copies.
    User {
        /// Its user-store domain.
        #[serde(default = "primary")]
        domain: String,
        /// The user.
        id: UserId,
    },
    /// A session ended (logout, revocation, idle, the IdP's logout): drop its cached
    /// record, so its next request reads the ended record from the session store.
    Session {
        /// The session's record id (the hash of the cookie's secret, never the secret).
        id: String,
    },
    /// Events may have been lost (the bus reconnected): drop every cached user.
    All,
}

fn primary() -> String {
    super::domain::PRIMARY_DOMAIN.to_owned()
}

/// An [`Invalidation`] as it travels on a bus: text holding the event and its MAC, made by
/// [`InvalidationSigner::sign`]. A bus carries it as it is; what a bus receives it hands back
/// with [`from_wire`](Self::from_wire), unverified, and the layer verifies it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedInvalidation(String);

impl SignedInvalidation {
    /// A message as received from the transport (not verified yet).
    pub fn from_wire(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text to send.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text to send, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for SignedInvalidation {
    // It may name a session id: only its size shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedInvalidation({} bytes)", self.0.len())
    }
}

/// What a bus subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusEvent {
    /// A message from some instance (or from anyone who can write to the transport): the
    /// layer applies it only if it verifies.
    Message(SignedInvalidation),
    /// Messages may have been lost (the bus reconnected): the layer drops every cached user.
    Gap,
}

/// Why a received message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnverifiedInvalidation {
    /// Not the signed format.
    #[error("the invalidation is not in the signed format")]
    Malformed,
    /// Signed by no key of the ring (or forged).
    #[error("the invalidation's MAC does not verify under any session key")]
    BadMac,
    /// The MAC verifies but the event cannot be read (sent by a newer version?).
    #[error("the signed invalidation holds no known event")]
    UnknownEvent,
}

/// Signs invalidations with a key derived from the first key of a session key ring, and
/// verifies them with any key of it (so rotating the session key does not cut the bus).
///
/// The layer builds one from its ring and hands it to the bus
/// ([`InvalidationBus::use_signer`]); a program that publishes without a layer (an
/// administration tool on the PostgreSQL store) builds one from the same keys.
#[derive(Clone)]
pub struct InvalidationSigner {
    /// The signing key first.
    keys: Arc<[MacKey]>,
}

struct MacKey {
    id: [u8; KEY_ID_LEN],
    mac: Hmac<Sha256>,
}

impl fmt::Debug for InvalidationSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidationSigner")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// The prefix of the signed format (version 1).
const FORMAT_1: &str = "1.";
const MAC_LEN: usize = 32;

impl InvalidationSigner {
    /// A signer signing with `current` and verifying with it and every key of `previous`.
    pub fn new(current: &SessionKey, previous: &[SessionKey]) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|key| MacKey {
                id: key.id(),
                mac: Hmac::new_from_slice(&key.derive(b"jit-provision invalidation hmac-sha256"))
                    .expect("HMAC takes a key of any length"),
            })
            .collect();
        Self { keys }
    }

    /// `1.` then URL-safe base64 of `key id (4) | HMAC-SHA256 (32)` of the JSON, `.`, the
    /// JSON of the event.
    pub fn sign(&self, event: &Invalidation) -> SignedInvalidation {
        let json = serde_json::to_string(event).expect("an Invalidation serializes");
        let key = &self.keys[0];
        let mut mac = key.mac.clone();
        mac.update(json.as_bytes());
        let mut head = Vec::with_capacity(KEY_ID_LEN + MAC_LEN);
        head.extend_from_slice(&key.id);
        head.extend_from_slice(&mac.finalize().into_bytes());
        let mut text = String::from(FORMAT_1);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&head, &mut text);
        text.push('.');
        text.push_str(&json);
        SignedInvalidation(text)
    }

    /// The event of `message` when a key of the ring signed it.
    pub fn verify(
        &self,
        message: &SignedInvalidation,
    ) -> Result<Invalidation, UnverifiedInvalidation> {
        let (head, json) = message
            .0
            .strip_prefix(FORMAT_1)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(UnverifiedInvalidation::Malformed)?;
        let head = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| UnverifiedInvalidation::Malformed)?;
        if head.len() != KEY_ID_LEN + MAC_LEN {
            return Err(UnverifiedInvalidation::Malformed);
        }
        let (id, tag) = head.split_at(KEY_ID_LEN);
        let verified = self.keys.iter().filter(|key| key.id == id).any(|key| {
            let mut mac = key.mac.clone();
            mac.update(json.as_bytes());
            mac.verify_slice(tag).is_ok()
        });
        if !verified {
            return Err(UnverifiedInvalidation::BadMac);
        }
        serde_json::from_str(json).map_err(|_| UnverifiedInvalidation::UnknownEvent)
    }
}

/// Carries signed [`Invalidation`]s between instances. Dyn-compatible: the layer holds an
/// `Arc<dyn InvalidationBus>`.
///
/// A bus is a transport: it sends [`SignedInvalidation`]s as they are and hands back what it
/// receives; the layer signs and verifies. An instance receives its own messages too;
/// applying one is idempotent, and so is applying a genuine message again (a replay).
pub trait InvalidationBus: Send + Sync + 'static {
    /// Sends a message to every subscribed instance.
    fn publish(&self, message: SignedInvalidation) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The messages from now on. The stream should yield [`BusEvent::Gap`] after any gap in
    /// which messages may have been lost, and end only when the bus shuts down.
    fn subscribe(&self) -> BoxStream<'static, BusEvent>;
    /// Called by [`JitLayerBuilder::build`](crate::JitLayerBuilder::build) with the layer's
    /// signer. A bus that also sends events of its own (the PostgreSQL store tells every
    /// instance about `set_locked` and `delete` in their transaction) signs them with it.
    /// Default: nothing.
    fn use_signer(&self, signer: &InvalidationSigner) {
        let _ = signer;
    }
}

/// The layer's side of a bus: signs what it sends, verifies what it receives.
#[derive(Clone)]
pub(crate) struct SignedBus {
    bus: Arc<dyn InvalidationBus>,
    signer: InvalidationSigner,
}

impl SignedBus {
    pub(crate) fn new(bus: Arc<dyn InvalidationBus>, signer: InvalidationSigner) -> Self {
        bus.use_signer(&signer);
        Self { bus, signer }
    }

    /// Signs and sends `event`.
    pub(crate) async fn publish(&self, event: Invalidation) -> Result<(), StoreError> {
        self.bus.publish(self.signer.sign(&event)).await
    }

    /// The verified events from now on ([`Invalidation::All`] for a gap); a message that does
    /// not verify is dropped with a warning.
    pub(crate) fn subscribe(&self) -> BoxStream<'static, Invalidation> {
        let signer = self.signer.clone();
        self.bus
            .subscribe()
            .filter_map(move |event| {
                let verified = match event {
                    BusEvent::Gap => Some(Invalidation::All),
                    BusEvent::Message(message) => match signer.verify(&message) {
                        Ok(event) => Some(event),
                        Err(err) => {
                            tracing::warn!(
                                error = %err,
                                bytes = message.as_str().len(),
                                "dropping an invalidation that does not verify"
                            );
                            None
                        }
                    },
                };
                std::future::ready(verified)
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_event() -> Invalidation {
        Invalidation::Session { id: "s1".into() }
    }

    #[test]
    fn a_signed_event_verifies_and_any_change_is_refused() {
        let signer = InvalidationSigner::new(&SessionKey::generate(), &[]);
        let sent = signer.sign(&session_event());
        assert!(sent.as_str().starts_with("1."));
        assert_eq!(signer.verify(&sent).unwrap(), session_event());
        let tampered = SignedInvalidation::from_wire(sent.as_str().replace("s1", "s2"));
        assert_eq!(
            signer.verify(&tampered),
            Err(UnverifiedInvalidation::BadMac)
        );
        for junk in [
            r#"{"kind":"all"}"#,
            "1.",
            "1.AAAA.{}",
            "1.not base64.{}",
            "",
        ] {
            assert_eq!(
                signer.verify(&SignedInvalidation::from_wire(junk)),
                Err(UnverifiedInvalidation::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let (old, new, stranger) = (
            SessionKey::generate(),
            SessionKey::generate(),
            SessionKey::generate(),
        );
        let by_old = InvalidationSigner::new(&old, &[]).sign(&Invalidation::All);
        let ring = InvalidationSigner::new(&new, std::slice::from_ref(&old));
        assert_eq!(ring.verify(&by_old).unwrap(), Invalidation::All);
        let by_ring = ring.sign(&Invalidation::All);
        assert!(InvalidationSigner::new(&old, &[]).verify(&by_ring).is_err());
        assert!(InvalidationSigner::new(&new, &[]).verify(&by_ring).is_ok());
        let without_old = InvalidationSigner::new(&new, &[stranger]);
        assert_eq!(
            without_old.verify(&by_old),
            Err(UnverifiedInvalidation::BadMac)
        );
    }

    #[test]
    fn signing_keys_are_not_the_cookie_keys() {
        // The same session key, two purposes: a MAC is not an AEAD key (HKDF info differs).
        let key = SessionKey::generate();
        assert_ne!(
            key.derive(b"jit-provision invalidation hmac-sha256"),
            key.derive(b"jit-provision cookie xchacha20poly1305")
        );
    }
}
