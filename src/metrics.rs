//! Counters of what the layer did, for dashboards and tests: a [`MetricsSnapshot`] of the
//! layer's own counters, and the same events (and more) through the
//! [`metrics`](https://docs.rs/metrics) facade, for whatever exporter the application
//! installs (Prometheus, OpenTelemetry, ...). The names and labels are listed in the
//! README's "Metrics" section and in [`names`].
//!
//! Labels are bounded sets: provider ids (configured), error codes (`&'static str`),
//! protocols, outcomes, cache and store-operation names. Never a user id, subject, username
//! or claim value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::metrics::{Counter, counter, histogram};

/// The metric names this crate emits through the `metrics` facade.
pub(crate) mod names {
    /// Counter `{provider, protocol, outcome}`: interactive logins (OIDC callback, SAML
    /// ACS); `outcome` is `success` or `failure`.
    pub(crate) const LOGINS: &str = "jit_logins_total";
    /// Counter `{provider, code}`: interactive logins refused or failed, by error code.
    pub(crate) const LOGIN_REFUSALS: &str = "jit_login_refusals_total";
    /// Counter `{provider, outcome}`: provisioning runs (logins and bearer tokens);
    /// `outcome` is `created`, `linked`, `updated`, `update_queued`, `unchanged`, `prompt`
    /// or `refused`.
    pub(crate) const PROVISIONING: &str = "jit_provisioning_total";
    /// Counter `{provider}`: background updates that failed after their retries.
    pub(crate) const UPDATE_FAILURES: &str = "jit_update_failures_total";
    /// Counter `{cache, result}`: user lookups of the request path; `cache` is `session`
    /// (decrypted session cookies) or `user` (users by id), `result` is `hit` or `miss`.
    pub(crate) const CACHE_REQUESTS: &str = "jit_cache_requests_total";
    /// Histogram `{operation}`, seconds: the duration of each user-store call (timeouts
    /// included), `operation` being the store method (`find_by_identity`, `create`, ...).
    pub(crate) const STORE_CALL_DURATION: &str = "jit_store_call_duration_seconds";
    /// Counter `{result}`: bearer tokens; `result` is `verified` (signature and claims
    /// checked), `cached` (answered from the verified-token cache) or `refused`.
    pub(crate) const BEARER: &str = "jit_bearer_total";
    /// Counter `{code}`: bearer tokens refused, by error code.
    pub(crate) const BEARER_REFUSALS: &str = "jit_bearer_refusals_total";
}

/// The protocol label of [`names::LOGINS`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocol {
    Oidc,
    #[cfg_attr(not(feature = "saml"), allow(dead_code))]
    Saml,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Saml => "saml",
        }
    }
}

/// Live counters, shared by every clone of a layer, and the facade handles of the request
/// path (registered once, when the layer is built: a cache hit costs one atomic add, not a
/// registry lookup of its labels).
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) logins: AtomicU64,
    pub(crate) login_failures: AtomicU64,
    pub(crate) users_created: AtomicU64,
    pub(crate) users_updated: AtomicU64,
    pub(crate) update_failures: AtomicU64,
    pub(crate) bearer_verified: AtomicU64,
    pub(crate) bearer_cache_hits: AtomicU64,
    pub(crate) bearer_failures: AtomicU64,
    session_hit: Counter,
    session_miss: Counter,
    user_hit: Counter,
    user_miss: Counter,
    /// `jit_bearer_total{result="cached"}`: a repeated bearer token is a hot path too.
    bearer_cached_total: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let cache = |cache: &'static str, result: &'static str| counter!(names::CACHE_REQUESTS, "cache" => cache, "result" => result);
        Self {
            logins: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
            users_created: AtomicU64::new(0),
            users_updated: AtomicU64::new(0),
            update_failures: AtomicU64::new(0),
            bearer_verified: AtomicU64::new(0),
            bearer_cache_hits: AtomicU64::new(0),
            bearer_failures: AtomicU64::new(0),
            session_hit: cache("session", "hit"),
            session_miss: cache("session", "miss"),
            user_hit: cache("user", "hit"),
            user_miss: cache("user", "miss"),
            bearer_cached_total: counter!(names::BEARER, "result" => "cached"),
        }
    }
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An interactive login (OIDC callback or SAML ACS) ended: with a session (or a
    /// prompt), or refused with the error `code`.
    pub(crate) fn login(&self, provider: &str, protocol: Protocol, refused: Option<&str>) {
        let provider = provider.to_owned();
        let outcome = match refused {
            None => {
                Self::add(&self.logins);
                "success"
            }
            Some(code) => {
                Self::add(&self.login_failures);
                counter!(names::LOGIN_REFUSALS, "provider" => provider.clone(), "code" => code.to_owned())
                    .increment(1);
                "failure"
            }
        };
        counter!(names::LOGINS, "provider" => provider, "protocol" => protocol.label(), "outcome" => outcome)
            .increment(1);
    }

    /// A user's mapped attributes were written by a later login (blocking or background).
    pub(crate) fn updated(&self) {
        Self::add(&self.users_updated);
    }

    /// A background update of `provider` failed for good.
    pub(crate) fn update_failed(&self, provider: &str) {
        Self::add(&self.update_failures);
        counter!(names::UPDATE_FAILURES, "provider" => provider.to_owned()).increment(1);
    }

    /// A session-cookie lookup in the decrypted-session cache.
    pub(crate) fn session_cache(&self, hit: bool) {
        if hit {
            &self.session_hit
        } else {
            &self.session_miss
        }
        .increment(1);
    }

    /// A user-by-id lookup in the user cache.
    pub(crate) fn user_cache(&self, hit: bool) {
        if hit { &self.user_hit } else { &self.user_miss }.increment(1);
    }

    /// A bearer token's signature and claims were checked.
    pub(crate) fn bearer_verified(&self) {
        Self::add(&self.bearer_verified);
        counter!(names::BEARER, "result" => "verified").increment(1);
    }

    /// A bearer token was answered from the verified-token cache.
    pub(crate) fn bearer_cached(&self) {
        Self::add(&self.bearer_cache_hits);
        self.bearer_cached_total.increment(1);
    }

    /// A bearer token was refused with the error `code`.
    pub(crate) fn bearer_refused(&self, code: &str) {
        Self::add(&self.bearer_failures);
        counter!(names::BEARER, "result" => "refused").increment(1);
        counter!(names::BEARER_REFUSALS, "code" => code.to_owned()).increment(1);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            logins: get(&self.logins),
            login_failures: get(&self.login_failures),
            users_created: get(&self.users_created),
            users_updated: get(&self.users_updated),
            update_failures: get(&self.update_failures),
            bearer_verified: get(&self.bearer_verified),
            bearer_cache_hits: get(&self.bearer_cache_hits),
            bearer_failures: get(&self.bearer_failures),
        }
    }
}

/// Records how long a user-store call of `operation` took.
pub(crate) fn store_call(operation: &'static str, took: Duration) {
    histogram!(names::STORE_CALL_DURATION, "operation" => operation).record(took.as_secs_f64());
}

/// A copy of the layer's counters at one moment ([`JitLayer::metrics`](crate::JitLayer::metrics)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Interactive logins (OIDC and SAML) that ended with a session.
    pub logins: u64,
    /// Interactive logins (OIDC and SAML) refused or failed.
    pub login_failures: u64,
    /// Users created just in time (logins and bearer tokens).
    pub users_created: u64,
    /// Users whose mapped attributes changed and were written.
    pub users_updated: u64,
    /// Background (non-blocking) updates that failed after their retries.
    pub update_failures: u64,
    /// Bearer tokens whose signature and claims were checked.
    pub bearer_verified: u64,
    /// Bearer requests answered from the verified-token cache (no signature check).
    pub bearer_cache_hits: u64,
    /// Bearer tokens refused.
    pub bearer_failures: u64,
}
