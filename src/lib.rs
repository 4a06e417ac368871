#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod bearer;
pub mod config;
#[cfg(feature = "dev-idp")]
#[cfg_attr(docsrs, doc(cfg(feature = "dev-idp")))]
pub mod dev_idp;
pub mod events;
pub mod invalidation;
pub mod mapping;
pub mod oidc;
pub mod policy;
pub mod prompt;
pub mod replay;
#[cfg(feature = "saml")]
#[cfg_attr(docsrs, doc(cfg(feature = "saml")))]
pub mod saml;
pub mod session;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tokens;

mod admin;
mod auth;
mod cookies;
mod directory;
mod endpoints;
mod error;
mod expiring;
mod extract;
mod failure;
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod idp;
mod layer;
mod metrics;
mod provision;
mod service;
mod state;

pub use auth::{AuthInfo, AuthMethod, CurrentUser};
pub use config::{JitConfig, MappingConfig, ProviderConfig, Unauthenticated};
pub use endpoints::MAX_CALLBACK_BODY;
pub use error::{CallbackError, Error, LogoutError};
pub use extract::{AppUserError, LoginRequired};
pub use failure::escape_html;
pub use layer::{ConfigError, JitLayer, JitLayerBuilder};
pub use mapping::{Claims, MappingError};
pub use metrics::MetricsSnapshot;
pub use provision::{Outcome, ProvisionError};
pub use service::JitService;
pub use tokens::{IdpAccessToken, IdpTokenError, IdpTokenRejection};

/// Makes sure jsonwebtoken has a crypto backend before anything verifies or signs a token.
/// With the `rust-crypto` feature, installs jsonwebtoken's RustCrypto backend as the process
/// default, once: jsonwebtoken picks a backend from its crate features and panics at run time
/// when it finds none or two (another crate in the build may enable `aws_lc_rs`); installing
/// one explicitly removes that failure mode. An application that installed a provider first
/// keeps its own. Without `rust-crypto`, the application provides the backend (installed
/// with [`jsonwebtoken::crypto::CryptoProvider::install_default`] before the layer is built,
/// or exactly one jsonwebtoken backend feature enabled).
///
/// Either way the backend is then tried once (an HMAC verification): with none, jsonwebtoken
/// panics on every token, so this answers `false` (the caller refuses to start) instead of
/// failing each login later. Called when a layer or a development IdP is built.
pub(crate) fn install_jwt_backend() -> bool {
    static ONCE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONCE.get_or_init(|| {
        #[cfg(feature = "rust-crypto")]
        {
            // Err means another crate installed a provider first: that one is used, which is fine.
            let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        }
        std::panic::catch_unwind(|| {
            let key = jsonwebtoken::DecodingKey::from_secret(b"probe");
            jsonwebtoken::crypto::verify("", b"probe", &key, jsonwebtoken::Algorithm::HS256)
        })
        .is_ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_jwt_backend_is_installed_and_answers() {
        assert!(super::install_jwt_backend());
        // Installed once: a second call answers from the first.
        assert!(super::install_jwt_backend());
    }
}
