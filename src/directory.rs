//! The user directory: the user-store domains, the cache of their users in front of them, and
//! the invalidation bus that keeps every instance's cache honest. Provisioning writes through
//! it; the request path reads through it ([`Directory::load`]); the admin API lists it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::DomainPolicy;
use crate::invalidation::{Invalidation, SignedBus};
use crate::metrics::Metrics;
use crate::session::UserCache;
use crate::store::{Identity, SharedStore, StoreError, User, UserId, now_unix};

/// One user-store domain: its store and username policy.
pub(crate) struct Domain {
    pub(crate) name: Arc<str>,
    pub(crate) store: SharedStore,
    pub(crate) policy: DomainPolicy,
}

/// The domains and the user cache, shared by every clone (a cheap handle).
#[derive(Clone)]
pub(crate) struct Directory {
    domains: Arc<HashMap<Arc<str>, Arc<Domain>>>,
    cache: UserCache,
    bus: Option<SignedBus>,
    metrics: Arc<Metrics>,
}

impl Directory {
    /// The directory of these domains, with `cache` in front of them; `bus` carries its
    /// invalidations to the other instances.
    pub(crate) fn new(
        domains: HashMap<Arc<str>, Arc<Domain>>,
        cache: UserCache,
        bus: Option<SignedBus>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            domains: Arc::new(domains),
            cache,
            bus,
            metrics,
        }
    }

    /// The domain called `name` (the shared `Arc` of its name, for cache keys).
    #[inline]
    pub(crate) fn domain(&self, name: &str) -> Option<&Arc<Domain>> {
        self.domains.get(name)
    }

    /// Every domain, in no particular order.
    pub(crate) fn domains(&self) -> impl Iterator<Item = &Arc<Domain>> {
        self.domains.values()
    }

    /// The cache of users by id and by identity (and of the application's users).
    pub(crate) fn cache(&self) -> &UserCache {
        &self.cache
    }

    /// Whether invalidations reach other instances.
    pub(crate) fn has_bus(&self) -> bool {
        self.bus.is_some()
    }

    /// Applies an invalidation here and sends it to the other instances, if there is a bus.
    /// A bus failure is logged: the other instances then catch up after their cache TTL.
    pub(crate) async fn announce(&self, event: Invalidation) {
        self.cache.announce(self.bus.as_ref(), event).await;
    }

    /// The user with this id in this domain, through the cache: `Ok(None)` when there is no
    /// such user (or domain). Concurrent misses of one user share one store read.
    ///
    /// On every authenticated request (hence `#[inline]`: it was the service's own code before
    /// the directory had a module; BENCHMARKS.md §1 compares the two).
    #[inline]
    pub(crate) async fn load(
        &self,
        domain: &str,
        id: UserId,
    ) -> Result<Option<Arc<User>>, StoreError> {
        let Some(domain) = self.domain(domain) else {
            return Ok(None);
        };
        let cache = &self.cache.by_id;
        let key = (domain.name.clone(), id);
        // The common case, a cached user, without the coalescing machinery.
        let cached = cache.get(&key).await;
        self.metrics.user_cache(cached.is_some());
        if let Some(user) = cached {
            return Ok(Some(user));
        }
        let store = &domain.store;
        let loaded = Box::pin(cache.try_get_with(key, async {
            match store.find_by_id(id).await {
                Ok(Some(user)) => Ok(Arc::new(user)),
                Ok(None) => Err(None),
                Err(e) => Err(Some(e)),
            }
        }))
        .await;
        match loaded {
            Ok(user) => Ok(Some(user)),
            Err(shared_err) => match &*shared_err {
                None => Ok(None),
                Some(e) => {
                    tracing::error!(error = %e, "loading a user failed");
                    Err(e.duplicate())
                }
            },
        }
    }

    /// Records the login time of an identity in its domain; a failure (or an unknown domain)
    /// is only logged: the login goes on.
    pub(crate) async fn record_login(&self, domain: &str, identity: &Identity) {
        let Some(domain) = self.domain(domain) else {
            return;
        };
        if let Err(err) = domain.store.record_login(&identity.key(), now_unix()).await {
            tracing::warn!(error = %err, "could not record the login time");
        }
    }
}
