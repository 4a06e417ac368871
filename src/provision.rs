//! Just-in-time provisioning: find the local user of a validated identity, create it when
//! absent (and allowed), update its mapped attributes when they changed.

use std::sync::Arc;

use http::StatusCode;

use crate::cache::UserCache;
use crate::config::{MappingConfig, ProviderConfig};
use crate::invalidation::{Invalidation, InvalidationBus};
use crate::mapping::{Claims, MappingError, map_claims};
use crate::metrics::Metrics;
use crate::store::{Identity, SharedStore, StoreError, User};

/// Why provisioning refused or failed. Nothing half-written stays behind: the store writes
/// a user and its identity link atomically, and no session is issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The identity is unknown and just-in-time creation is off for the provider: `403`.
    #[error(
        "no local account is linked to this identity, and accounts are not created automatically"
    )]
    JitDisabled,
    /// The local user is locked: `403`.
    #[error("this account is locked")]
    Locked,
    /// The claims do not map to a user: `403`.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The username is held by another local account: `409`.
    #[error("the username `{0}` is already taken by another account")]
    UsernameTaken(String),
    /// The store failed: `503`.
    #[error("the user store is unavailable")]
    Store(#[source] StoreError),
    /// No provider with this id is configured: `404`.
    #[error("no identity provider `{0}` is configured")]
    UnknownProvider(String),
}

impl ProvisionError {
    /// The HTTP status this failure answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::JitDisabled | Self::Locked | Self::Mapping(_) => StatusCode::FORBIDDEN,
            Self::UsernameTaken(_) => StatusCode::CONFLICT,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnknownProvider(_) => StatusCode::NOT_FOUND,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::JitDisabled => "jit_disabled",
            Self::Locked => "user_locked",
            Self::Mapping(MappingError::MissingClaim(_)) => "missing_attribute",
            Self::Mapping(_) => "invalid_attribute",
            Self::UsernameTaken(_) => "username_taken",
            Self::Store(_) => "store_unavailable",
            Self::UnknownProvider(_) => "unknown_provider",
        }
    }
}

impl ProvisionError {
    /// A copy for another waiter of a shared (moka-coalesced) failure. Store errors keep
    /// their kind and message; their source chain is not cloneable.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::JitDisabled => Self::JitDisabled,
            Self::Locked => Self::Locked,
            Self::Mapping(m) => Self::Mapping(m.clone()),
            Self::UsernameTaken(n) => Self::UsernameTaken(n.clone()),
            Self::Store(e) => Self::Store(e.duplicate()),
            Self::UnknownProvider(id) => Self::UnknownProvider(id.clone()),
        }
    }
}

impl From<StoreError> for ProvisionError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UsernameTaken(name) => Self::UsernameTaken(name),
            other => Self::Store(other),
        }
    }
}

/// What a login did to the local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The user was created by this login.
    Created,
    /// Mapped attributes had changed and were written.
    Updated,
    /// The user existed and nothing changed: nothing was written.
    Unchanged,
}

#[derive(Clone)]
pub(crate) struct Provisioner {
    store: SharedStore,
    cache: UserCache,
    metrics: Arc<Metrics>,
    bus: Option<Arc<dyn InvalidationBus>>,
}

impl Provisioner {
    pub(crate) fn new(
        store: SharedStore,
        cache: UserCache,
        metrics: Arc<Metrics>,
        bus: Option<Arc<dyn InvalidationBus>>,
    ) -> Self {
        Self {
            store,
            cache,
            metrics,
            bus,
        }
    }

    /// Applies an invalidation here and sends it to the other instances, if there is a bus.
    /// A bus failure is logged: the other instances then catch up after their cache TTL.
    pub(crate) async fn announce(&self, event: Invalidation) {
        self.cache.apply(&event).await;
        if let Some(bus) = &self.bus
            && let Err(err) = bus.publish(event).await
        {
            tracing::warn!(error = %err, "could not publish a cache invalidation");
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn cache(&self) -> &UserCache {
        &self.cache
    }

    pub(crate) fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Finds or creates the user of `identity` and syncs its mapped attributes.
    ///
    /// Concurrent first logins of one identity are coalesced by the identity cache
    /// (`try_get_with` runs one lookup-or-create per key); across processes the store's
    /// uniqueness decides, and the loser reads the winner's row.
    pub(crate) async fn provision(
        &self,
        provider: &ProviderConfig,
        identity: &Identity,
        claims: &Claims,
    ) -> Result<(Arc<User>, Outcome), ProvisionError> {
        self.provision_with(&provider.mapping, provider.jit, identity, claims)
            .await
    }

    /// [`provision`](Self::provision) with an explicit mapping and JIT switch.
    pub(crate) async fn provision_with(
        &self,
        mapping: &MappingConfig,
        jit: bool,
        identity: &Identity,
        claims: &Claims,
    ) -> Result<(Arc<User>, Outcome), ProvisionError> {
        let profile = map_claims(mapping, claims)?;
        let key = identity.key();
        let created = std::sync::atomic::AtomicBool::new(false);
        let user = self
            .cache
            .by_identity
            .try_get_with(key.clone(), async {
                if let Some(user) = self.store.find_by_identity(&key).await? {
                    return Ok(Arc::new(user));
                }
                if !jit {
                    return Err(ProvisionError::JitDisabled);
                }
                match self.store.create(identity, &profile).await {
                    Ok(user) => {
                        created.store(true, std::sync::atomic::Ordering::SeqCst);
                        Ok(Arc::new(user))
                    }
                    // Another process linked it first: use its user.
                    Err(StoreError::IdentityExists) => self
                        .store
                        .find_by_identity(&key)
                        .await?
                        .map(Arc::new)
                        .ok_or(ProvisionError::Store(StoreError::NotFound)),
                    Err(e) => Err(e.into()),
                }
            })
            .await
            .map_err(|shared| Arc::try_unwrap(shared).unwrap_or_else(|e| e.duplicate()))?;
        if user.locked {
            return Err(ProvisionError::Locked);
        }
        if created.load(std::sync::atomic::Ordering::SeqCst) {
            Metrics::add(&self.metrics.users_created);
            self.cache.by_id.insert(user.id, user.clone()).await;
            return Ok((user, Outcome::Created));
        }
        let changes = profile.changes_from(&user);
        if changes.is_empty() {
            return Ok((user, Outcome::Unchanged));
        }
        let updated = match self.store.update(user.id, &changes).await {
            Ok(updated) => Arc::new(updated),
            Err(err) => {
                self.cache.by_identity.invalidate(&key).await;
                return Err(err.into());
            }
        };
        if updated.locked {
            self.cache.forget(updated.id).await;
            return Err(ProvisionError::Locked);
        }
        if self.bus.is_some() {
            // Other instances drop their copies; ours is refreshed just below.
            self.announce(Invalidation::User { id: updated.id }).await;
        }
        self.cache.store(Some(key), updated.clone()).await;
        Metrics::add(&self.metrics.users_updated);
        Ok((updated, Outcome::Updated))
    }
}
