//! The name of the primary user-store domain (re-exported as `config::PRIMARY_DOMAIN`).

/// The name of the domain of the store given to [`JitLayerBuilder::store`](crate::JitLayerBuilder::store).
pub const PRIMARY_DOMAIN: &str = "PRIMARY";
