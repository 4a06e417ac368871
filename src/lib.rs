#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod bearer;
pub mod config;
#[cfg(feature = "dev-idp")]
pub mod dev_idp;
pub mod events;
pub mod invalidation;
pub mod mapping;
pub mod oidc;
pub mod policy;
pub mod prompt;
pub mod replay;
#[cfg(feature = "saml")]
pub mod saml;
pub mod session;
pub mod store;
pub mod tokens;

mod admin;
mod cache;
mod endpoints;
mod error;
mod expiring;
mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod layer;
mod metrics;
mod provision;
mod service;

pub use config::{JitConfig, MappingConfig, ProviderConfig, Unauthenticated};
pub use endpoints::MAX_CALLBACK_BODY;
pub use error::{CallbackError, Error, escape_html};
pub use extract::{AuthInfo, AuthMethod, CurrentUser, LoginRequired};
pub use layer::{ConfigError, JitLayer, JitLayerBuilder};
pub use mapping::{Claims, MappingError};
pub use metrics::MetricsSnapshot;
pub use provision::{Outcome, ProvisionError};
pub use service::JitService;
pub use tokens::{IdpAccessToken, IdpTokenError, IdpTokenRejection};

#[cfg(not(feature = "rust-crypto"))]
compile_error!(
    "jit-provision needs jsonwebtoken's crypto backend: enable the `rust-crypto` feature (on by default)"
);

/// Installs jsonwebtoken's RustCrypto backend as the process default, once. jsonwebtoken
/// picks a backend from its crate features and panics at run time when it finds none or two
/// (another crate in the build may enable `aws_lc_rs`); installing one explicitly removes that
/// failure mode. Called when a layer or a development IdP is built.
pub(crate) fn install_jwt_backend() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another crate installed a provider first: that one is used, which is fine.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}
