//! Keeping the caches of several app instances consistent: an [`InvalidationBus`] carries
//! "this user changed" and "this session ended" to every instance, which drops its copies.
//! The PostgreSQL store provides one over `LISTEN`/`NOTIFY`.
//!
//! The bus is only a transport: the layer signs every [`Invalidation`] it sends (an
//! [`InvalidationSigner`], HMAC-SHA256 under a key derived from the first session key) and
//! drops, with a warning, every message it receives that no key of its session key ring
//! verifies. Whoever can write to the transport (any role of the database, for
//! `NOTIFY`) but does not hold a session key can therefore invalidate nothing.
//!
//! ```
//! use jit_provision::invalidation::{Invalidation, InvalidationSigner};
//! use jit_provision::session::SessionKey;
//!
//! let (old, new) = (SessionKey::generate(), SessionKey::generate());
//! let event = Invalidation::User { domain: "PRIMARY".into(), id: jit_provision::store::UserId(7) };
//! let sent = InvalidationSigner::new(&old, &[]).sign(&event);
//! // A ring whose first key is new still verifies what the old key signed.
//! let rotated = InvalidationSigner::new(&new, &[old]);
//! assert_eq!(rotated.verify(&sent).unwrap(), event);
//! assert!(InvalidationSigner::new(&new, &[]).verify(&sent).is_err());
//! ```

pub use crate::store::invalidation::*;
