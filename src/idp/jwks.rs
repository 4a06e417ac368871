//! The signing keys of one issuer: cached for a TTL, refetched at most once per interval when
//! a token names a key we do not know, and kept while the issuer cannot be reached.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openidconnect::JsonWebKeySetUrl;
use openidconnect::core::CoreJsonWebKeySet;

use super::http::HttpClient;

/// When the last fetch started and whether it failed (`None`: none since discovery, so the
/// first unknown `kid` may refetch at once). A fetch whose request was dropped midway counts
/// as not failed.
type LastFetch = Option<(Instant, bool)>;

#[derive(Debug)]
pub(crate) struct JwksCache {
    url: JsonWebKeySetUrl,
    /// The keys and when they were fetched.
    keys: RwLock<(Arc<CoreJsonWebKeySet>, Instant)>,
    /// Serialises fetches; see [`LastFetch`].
    last_fetch: tokio::sync::Mutex<LastFetch>,
    min_interval: Duration,
    ttl: Duration,
}

/// What a refetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refetch {
    /// New keys were fetched.
    Fetched,
    /// A fetch ran too recently (possibly concurrently): the keys are as fresh as allowed.
    TooSoon,
    /// The issuer could not be reached (now, or at the refetch too recent to repeat); the
    /// cached keys stay in use.
    Failed,
}

impl JwksCache {
    /// Keys fetched just now (with the discovery document), used for `ttl`.
    pub(crate) fn new(
        url: JsonWebKeySetUrl,
        initial: CoreJsonWebKeySet,
        min_interval: Duration,
        ttl: Duration,
    ) -> Self {
        Self {
            url,
            keys: RwLock::new((Arc::new(initial), Instant::now())),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval,
            ttl,
        }
    }

    fn cached(&self) -> (Arc<CoreJsonWebKeySet>, Instant) {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key set to check a token against: the cached one while younger than the TTL, else
    /// a fresh one. The stale set is served instead when another task is fetching right now,
    /// when the last fetch failed less than the refetch interval ago, or when this fetch
    /// fails, so an unreachable issuer costs one fetch per interval, not one per login.
    pub(crate) async fn current(&self, http: &HttpClient) -> Arc<CoreJsonWebKeySet> {
        let (keys, fetched) = self.cached();
        if fetched.elapsed() < self.ttl {
            return keys;
        }
        let Ok(mut last) = self.last_fetch.try_lock() else {
            return keys;
        };
        let (keys, fetched) = self.cached();
        if fetched.elapsed() < self.ttl || self.failed_recently(&last) {
            return keys;
        }
        self.fetch(http, &mut last).await.unwrap_or(keys)
    }

    /// Refetches the key set unless one was fetched less than `min_interval` ago.
    /// `seen` is the key set the caller failed with: when another task already replaced it
    /// while we waited, no fetch is needed.
    pub(crate) async fn refetch(
        &self,
        http: &HttpClient,
        seen: &Arc<CoreJsonWebKeySet>,
    ) -> Refetch {
        let mut last = self.last_fetch.lock().await;
        if !Arc::ptr_eq(seen, &self.cached().0) {
            return Refetch::Fetched;
        }
        if let Some((at, failed)) = *last
            && at.elapsed() < self.min_interval
        {
            return if failed {
                Refetch::Failed
            } else {
                Refetch::TooSoon
            };
        }
        match self.fetch(http, &mut last).await {
            Some(_) => Refetch::Fetched,
            None => Refetch::Failed,
        }
    }

    fn failed_recently(&self, last: &LastFetch) -> bool {
        matches!(*last, Some((at, true)) if at.elapsed() < self.min_interval)
    }

    /// Fetches and stores the key set; `None` (logged) when it cannot be had.
    async fn fetch(
        &self,
        http: &HttpClient,
        last: &mut LastFetch,
    ) -> Option<Arc<CoreJsonWebKeySet>> {
        let started = Instant::now();
        *last = Some((started, false));
        match CoreJsonWebKeySet::fetch_async(&self.url, http).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) =
                    (keys.clone(), Instant::now());
                tracing::info!(jwks_uri = %self.url.url(), "fetched the signing keys");
                Some(keys)
            }
            Err(err) => {
                *last = Some((started, true));
                tracing::warn!(jwks_uri = %self.url.url(), error = %err, "could not fetch the signing keys; keeping the cached ones");
                None
            }
        }
    }
}

/// The keys login and logout tokens are checked with: the provider's own cache, or the
/// issuer's key source shared with its bearer tokens (one fetch, one cache, the bearer
/// rate limits: one unknown-`kid` refetch per interval, no retry within the interval after
/// a failure, cached keys served while the issuer is down).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per discovery, never moved around
pub(crate) enum LoginKeys {
    Own(JwksCache),
    Shared(SharedKeys),
}

/// A [`KeySource`](super::KeySource) seen as `openidconnect` key sets: each set it serves is
/// converted once.
#[derive(Debug)]
pub(crate) struct SharedKeys {
    source: Arc<super::KeySource>,
    /// The last set served and its conversion.
    converted: std::sync::Mutex<Option<(Arc<jsonwebtoken::jwk::JwkSet>, Arc<CoreJsonWebKeySet>)>>,
}

impl SharedKeys {
    /// Shares `source`, seeding it with the keys the discovery just fetched from `url`.
    pub(crate) fn new(
        source: Arc<super::KeySource>,
        url: &JsonWebKeySetUrl,
        initial: &CoreJsonWebKeySet,
    ) -> Self {
        match serde_json::to_value(initial).and_then(serde_json::from_value) {
            Ok(keys) => source.seed(keys, url.as_str()),
            Err(err) => {
                tracing::warn!(jwks_uri = %url.url(), error = %err, "the discovered signing keys do not convert; the shared key source fetches its own");
            }
        }
        Self {
            source,
            converted: std::sync::Mutex::new(None),
        }
    }

    fn convert(&self, keys: Arc<jsonwebtoken::jwk::JwkSet>) -> Arc<CoreJsonWebKeySet> {
        let mut converted = self.converted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, to)) = &*converted
            && Arc::ptr_eq(from, &keys)
        {
            return to.clone();
        }
        let to = Arc::new(
            serde_json::to_value(&*keys)
                .and_then(serde_json::from_value)
                .unwrap_or_else(|err| {
                    // Fail closed: no key, so every token is refused as signed by an unknown key.
                    tracing::warn!(error = %err, "the signing keys do not convert for ID tokens");
                    CoreJsonWebKeySet::new(Vec::new())
                }),
        );
        *converted = Some((keys, to.clone()));
        to
    }

    /// The set a converted one came from.
    fn source_of(&self, seen: &Arc<CoreJsonWebKeySet>) -> Option<Arc<jsonwebtoken::jwk::JwkSet>> {
        let converted = self.converted.lock().unwrap_or_else(|e| e.into_inner());
        converted
            .as_ref()
            .filter(|(_, to)| Arc::ptr_eq(to, seen))
            .map(|(from, _)| from.clone())
    }
}

impl LoginKeys {
    /// The key set to check a token against (empty when none can be had: every token then
    /// names an unknown key, and the refetch reports the failure).
    pub(crate) async fn current(&self, http: &HttpClient) -> Arc<CoreJsonWebKeySet> {
        match self {
            Self::Own(cache) => cache.current(http).await,
            Self::Shared(shared) => match shared.source.current(http).await {
                Ok(keys) => shared.convert(keys),
                Err(_) => Arc::new(CoreJsonWebKeySet::new(Vec::new())),
            },
        }
    }

    /// The rate-limited refetch after a token named a key not in `seen`.
    pub(crate) async fn refetch(
        &self,
        http: &HttpClient,
        seen: &Arc<CoreJsonWebKeySet>,
    ) -> Refetch {
        match self {
            Self::Own(cache) => cache.refetch(http, seen).await,
            Self::Shared(shared) => {
                let Some(from) = shared.source_of(seen) else {
                    // `seen` is not the last set served (another replaced it, or it was the
                    // empty one of an unreachable issuer): what the source has now.
                    return match shared.source.current(http).await {
                        Ok(keys) => {
                            shared.convert(keys);
                            Refetch::Fetched
                        }
                        Err(_) => Refetch::Failed,
                    };
                };
                match shared.source.refetch(http, &from).await {
                    Ok((keys, outcome)) => {
                        shared.convert(keys);
                        outcome
                    }
                    Err(_) => Refetch::Failed,
                }
            }
        }
    }
}
