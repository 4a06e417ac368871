#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod config;
#[cfg(feature = "dev-idp")]
// pub mod dev_idp;
pub mod mapping;
pub mod oidc;
pub mod session;
pub mod store;

mod cache;
mod endpoints;
mod error;
mod extract;
mod layer;
mod provision;
mod service;

pub use config::{JitConfig, MappingConfig, ProviderConfig, Unauthenticated};
pub use endpoints::MAX_CALLBACK_BODY;
pub use error::{CallbackError, Error, escape_html};
pub use extract::{CurrentUser, LoginRequired};
pub use layer::{ConfigError, JitLayer, JitLayerBuilder};
pub use mapping::{Claims, MappingError};
pub use provision::{Outcome, ProvisionError};
pub use service::JitService;

#[cfg(all(not(feature = "rust-crypto"), not(feature = "aws-lc-rs")))]
compile_error!(
    "jit-provision needs one jsonwebtoken crypto backend: enable the `rust-crypto` (default) or the `aws-lc-rs` feature"
);
