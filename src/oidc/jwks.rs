//! The signing keys of one issuer: cached, refetched at most once per interval when a token
//! names a key we do not know, and kept while the issuer cannot be reached.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openidconnect::JsonWebKeySetUrl;
use openidconnect::core::CoreJsonWebKeySet;

use super::http::HttpClient;

#[derive(Debug)]
pub(crate) struct JwksCache {
    url: JsonWebKeySetUrl,
    keys: RwLock<Arc<CoreJsonWebKeySet>>,
    /// Serialises refetches and remembers when the last refetch started and whether it
    /// failed (`None`: never refetched since discovery, so the first unknown `kid` may
    /// refetch at once). A refetch whose request was dropped midway counts as not failed.
    last_fetch: tokio::sync::Mutex<Option<(Instant, bool)>>,
    min_interval: Duration,
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
    pub(crate) fn new(
        url: JsonWebKeySetUrl,
        initial: CoreJsonWebKeySet,
        min_interval: Duration,
    ) -> Self {
        Self {
            url,
            keys: RwLock::new(Arc::new(initial)),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval,
        }
    }

    pub(crate) fn current(&self) -> Arc<CoreJsonWebKeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
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
        if !Arc::ptr_eq(seen, &self.current()) {
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
        let started = Instant::now();
        *last = Some((started, false));
        match CoreJsonWebKeySet::fetch_async(&self.url, http).await {
            Ok(keys) => {
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                tracing::info!(jwks_uri = %self.url.url(), "refetched the signing keys");
                Refetch::Fetched
            }
            Err(err) => {
                *last = Some((started, true));
                tracing::warn!(jwks_uri = %self.url.url(), error = %err, "could not refetch the signing keys; keeping the cached ones");
                Refetch::Failed
            }
        }
    }
}
