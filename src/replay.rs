//! One-time values that must be used at most once (OIDC `state`, and later SAML assertion
//! ids): the [`ReplayGuard`] trait, an in-memory guard for one instance, and the SQL stores'
//! guards for several instances on one database.

pub use crate::store::replay::*;
