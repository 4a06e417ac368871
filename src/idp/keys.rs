//! An issuer's signing keys for bearer tokens: a jsonwebtoken `JwkSet` held with a TTL,
//! refetched once (rate limited) on an unknown `kid`, and served stale while the issuer is
//! down.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::http::HttpClient;
use super::jwks::Refetch;

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// No published key has this `kid` (after a refetch when one was allowed).
    Unknown,
    /// The issuer's keys could not be fetched and none are cached.
    Unavailable(String),
}

#[derive(Default)]
struct Attempts {
    /// The last refetch caused by an unknown `kid`.
    kid_refetch: Option<Instant>,
    /// The last fetch that failed.
    failure: Option<Instant>,
}

struct Cached {
    keys: Arc<JwkSet>,
    fetched: Instant,
}

pub(crate) struct KeySource {
    issuer: String,
    configured_uri: Option<String>,
    ttl: Duration,
    min_refetch: Duration,
    jwks_uri: RwLock<Option<String>>,
    cached: RwLock<Option<Cached>>,
    /// Serialises fetches and rate-limits them.
    attempts: tokio::sync::Mutex<Attempts>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl KeySource {
    pub(crate) fn new(
        issuer: String,
        configured_uri: Option<String>,
        ttl: Duration,
        min_refetch: Duration,
    ) -> Self {
        Self {
            issuer,
            configured_uri,
            ttl,
            min_refetch,
            jwks_uri: RwLock::new(None),
            cached: RwLock::new(None),
            attempts: tokio::sync::Mutex::new(Attempts::default()),
        }
    }

    /// Whether the keys come from a `jwks_uri` of the configuration (not from discovery).
    pub(crate) fn has_configured_uri(&self) -> bool {
        self.configured_uri.is_some()
    }

    /// Stores keys fetched elsewhere just now (by the login discovery of the same issuer, from
    /// its `jwks_uri`), so that one fetch serves login, logout and bearer tokens.
    pub(crate) fn seed(&self, keys: JwkSet, jwks_uri: &str) {
        *self.jwks_uri.write().unwrap_or_else(|e| e.into_inner()) = Some(jwks_uri.to_owned());
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
            keys: Arc::new(keys),
            fetched: Instant::now(),
        });
    }

    /// The key set as it is now (fresh within the TTL, or refreshed; stale if the issuer is
    /// down), without regard to any particular `kid`.
    pub(crate) async fn current(&self, http: &HttpClient) -> Result<Arc<JwkSet>, KeyError> {
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        self.fetch(http, None).await
    }

    fn fresh(&self) -> Option<Arc<JwkSet>> {
        let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|c| c.fetched.elapsed() < self.ttl)
            .map(|c| c.keys.clone())
    }

    fn stale(&self) -> Option<Arc<JwkSet>> {
        let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
        cached.as_ref().map(|c| c.keys.clone())
    }

    /// The key set holding `kid`: from the cache, or after one rate-limited refetch.
    pub(crate) async fn for_kid(
        &self,
        http: &HttpClient,
        kid: &str,
    ) -> Result<Arc<JwkSet>, KeyError> {
        let keys = self.current(http).await?;
        if keys.find(kid).is_some() {
            return Ok(keys);
        }
        let keys = self.fetch(http, Some(&keys)).await?;
        if keys.find(kid).is_some() {
            Ok(keys)
        } else {
            Err(KeyError::Unknown)
        }
    }

    /// The unknown-`kid` refetch for a caller that had `seen`, with what it did.
    pub(crate) async fn refetch(
        &self,
        http: &HttpClient,
        seen: &Arc<JwkSet>,
    ) -> Result<(Arc<JwkSet>, Refetch), KeyError> {
        self.fetch_outcome(http, Some(seen)).await
    }

    async fn fetch(
        &self,
        http: &HttpClient,
        seen: Option<&Arc<JwkSet>>,
    ) -> Result<Arc<JwkSet>, KeyError> {
        self.fetch_outcome(http, seen).await.map(|(keys, _)| keys)
    }

    /// Fetches the key set unless another task just did (`seen` is the set the caller had)
    /// or the last attempt is more recent than the refetch interval.
    async fn fetch_outcome(
        &self,
        http: &HttpClient,
        seen: Option<&Arc<JwkSet>>,
    ) -> Result<(Arc<JwkSet>, Refetch), KeyError> {
        let mut attempts = self.attempts.lock().await;
        let recent = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < self.min_refetch);
        if let Some(now) = self.stale() {
            match seen {
                // Another task replaced the set while we waited for the lock.
                Some(seen) if !Arc::ptr_eq(seen, &now) => return Ok((now, Refetch::Fetched)),
                // Another task refreshed an expired set while we waited.
                None if self.fresh().is_some() => return Ok((now, Refetch::Fetched)),
                _ => {}
            }
            // Rate limits: one unknown-kid refetch per interval, and no retry of a failed
            // fetch within the interval. Serve what we have instead.
            if recent(attempts.failure) {
                return Ok((now, Refetch::Failed));
            }
            if seen.is_some() && recent(attempts.kid_refetch) {
                return Ok((now, Refetch::TooSoon));
            }
        } else if recent(attempts.failure) {
            return Err(KeyError::Unavailable(
                "the issuer's keys could not be fetched recently".into(),
            ));
        }
        if seen.is_some() {
            attempts.kid_refetch = Some(Instant::now());
        }
        match self.download(http).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                });
                attempts.failure = None;
                Ok((keys, Refetch::Fetched))
            }
            Err(reason) => {
                attempts.failure = Some(Instant::now());
                match self.stale() {
                    Some(keys) => {
                        tracing::warn!(issuer = %self.issuer, error = %reason, "could not refresh the signing keys; serving the cached ones");
                        Ok((keys, Refetch::Failed))
                    }
                    None => Err(KeyError::Unavailable(reason)),
                }
            }
        }
    }

    async fn download(&self, http: &HttpClient) -> Result<JwkSet, String> {
        let uri = match self.jwks_uri() {
            Some(uri) => uri,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let doc: serde_json::Value = http.get_json(&url).await?;
                if doc["issuer"].as_str() != Some(self.issuer.as_str()) {
                    return Err("the discovery document names another issuer".into());
                }
                let uri = doc["jwks_uri"]
                    .as_str()
                    .ok_or("the discovery document has no jwks_uri")?
                    .to_owned();
                *self.jwks_uri.write().unwrap_or_else(|e| e.into_inner()) = Some(uri.clone());
                uri
            }
        };
        http.get_json(&uri).await
    }

    fn jwks_uri(&self) -> Option<String> {
        self.configured_uri.clone().or_else(|| {
            self.jwks_uri
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }
}
