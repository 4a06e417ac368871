//! Shared set-up of the benches: a development IdP on loopback, a layer configured like the
//! tests' (`tests/common`), and a real login driven in-process (`oneshot` on the router for
//! the app's side, one reqwest `POST` for the IdP's login form).
#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode, header};
use jit_provision::dev_idp::{DevClient, DevIdp, DevUser};
use jit_provision::session::SessionKey;
use jit_provision::store::Identity;
use jit_provision::{Claims, JitConfig, JitLayer, JitLayerBuilder, MappingConfig, ProviderConfig};
use serde_json::Value;
use tower::ServiceExt;

pub const CLIENT_ID: &str = "bench-app";
pub const CLIENT_SECRET: &str = "bench-secret";
/// Only used to build redirect URIs: requests reach the app through `oneshot`, not a socket.
pub const PUBLIC_URL: &str = "http://127.0.0.1:3000";
pub const PROVIDER: &str = "dev";

/// A current-thread runtime: the timed futures run on the bench thread, as `oneshot` calls.
/// The IdP's server task runs inside the same `block_on`s (only during set-up).
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A multi-thread runtime with one worker per core (2 on the reference machine).
pub fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub async fn start_idp() -> DevIdp {
    // RS256: the benches measure (and compare with) RS256 signature checks.
    DevIdp::builder()
        .key_type(jit_provision::dev_idp::DevKeyType::Rs256)
        .client(
            DevClient::new(CLIENT_ID, CLIENT_SECRET)
                .redirect_uri(format!("{PUBLIC_URL}/auth/{PROVIDER}/callback")),
        )
        .start("127.0.0.1:0")
        .await
        .expect("starting the development IdP")
}

/// The provider as the tests configure it (groups mapped, so groups are compared too).
pub fn provider(issuer: &str) -> ProviderConfig {
    ProviderConfig::new(issuer, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .mapping({
            let mut built = MappingConfig::default();
            built.groups = Some(jit_provision::config::GroupsConfig::from_claim("groups"));
            built
        })
}

/// A builder for a layer trusting `idp`, with a user cache of `max_users` entries and a TTL
/// long enough that no cached user expires while a bench runs (the default is 60 s).
pub fn builder(provider: ProviderConfig, max_users: u64) -> JitLayerBuilder {
    let mut config = JitConfig::new(PUBLIC_URL);
    config.cache.max_users = max_users;
    config.cache.ttl_secs = 3600;
    JitLayer::builder()
        .config(config)
        .insecure_cookies_for_localhost()
        .session_key(SessionKey::from_bytes(&[7u8; 64]).expect("64 bytes"))
        .provider(PROVIDER, provider)
}

/// The `i`-th synthetic user: subject `sub-{i}`, username `user{i}`, one group.
pub fn user(i: u64) -> DevUser {
    DevUser::new(
        &format!("sub-{i}"),
        &format!("user{i}"),
        &format!("user{i}@example.com"),
        &format!("User {i}"),
        &["staff"],
    )
}

/// The claims a login of `user` carries (what the mapping looks at), and its identity.
pub fn identity_and_claims(issuer: &str, user: &DevUser) -> (Identity, Claims) {
    let mut claims = user.claims.clone();
    claims.insert("sub".into(), Value::String(user.subject.clone()));
    (
        Identity::new(PROVIDER, issuer, &user.subject),
        Claims(claims),
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// The first `name=value` pair of each `Set-Cookie` of a response.
fn set_cookie_pairs(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .collect()
}

fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).expect("a request")
}

/// A whole OpenID Connect login of `user` against `idp`, the app driven with `oneshot`:
/// login start, the IdP's login form (HTTP), callback (code exchange and ID token validation
/// by the layer, over loopback HTTP). Returns the `jit_session=...` cookie pair.
pub async fn login(app: &Router, idp: &DevIdp, user: &DevUser) -> String {
    let start = app
        .clone()
        .oneshot(get(&format!("/auth/{PROVIDER}/login?return_to=/me"), None))
        .await
        .expect("infallible");
    assert_eq!(start.status(), StatusCode::FOUND, "login start");
    let authorize = start.headers()[header::LOCATION]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let pending = set_cookie_pairs(&start).join("; ");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client");
    let approved = browser
        .post(format!("{}/authorize", idp.issuer()))
        .form(&DevIdp::approve_form(&authorize, user))
        .send()
        .await
        .expect("the IdP answers");
    assert_eq!(approved.status().as_u16(), 303, "IdP approval");
    let callback = approved.headers()["location"]
        .to_str()
        .expect("ASCII")
        .strip_prefix(PUBLIC_URL)
        .expect("a redirect to our callback")
        .to_owned();
    let done = app
        .clone()
        .oneshot(get(&callback, Some(&pending)))
        .await
        .expect("infallible");
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "callback: {done:?}");
    set_cookie_pairs(&done)
        .into_iter()
        .find(|c| c.starts_with("jit_session=") && c.len() > "jit_session=".len())
        .expect("a session cookie")
}

/// A side-by-side measurement that machine load cannot tilt: `rounds` rounds, in each of
/// which every variant runs one batch back to back (the order rotating from round to round),
/// so that a change of load on this shared machine hits every variant of a round alike.
/// Each variant closure runs one batch and returns its time per operation in nanoseconds.
pub struct Interleaved {
    pub names: Vec<String>,
    /// `per_op[variant][round]`, nanoseconds.
    pub per_op: Vec<Vec<f64>>,
}

impl Interleaved {
    pub fn run(rounds: usize, variants: &mut [(&str, &mut dyn FnMut() -> f64)]) -> Self {
        let n = variants.len();
        let mut per_op = vec![Vec::with_capacity(rounds); n];
        for round in 0..rounds {
            for k in 0..n {
                let v = (round + k) % n;
                per_op[v].push((variants[v].1)());
            }
        }
        Self {
            names: variants
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect(),
            per_op,
        }
    }

    pub fn median(&self, variant: usize) -> f64 {
        quantiles(self.per_op[variant].clone()).1
    }

    /// Quartiles over rounds of `f(round's per-op times)`.
    pub fn per_round(&self, f: impl Fn(&[f64]) -> f64) -> (f64, f64, f64) {
        let rounds = self.per_op[0].len();
        quantiles(
            (0..rounds)
                .map(|r| f(&self.per_op.iter().map(|v| v[r]).collect::<Vec<_>>()))
                .collect(),
        )
    }

    pub fn print(&self, title: &str) {
        let medians: Vec<String> = (0..self.names.len())
            .map(|v| format!("{} {:.0} ns", self.names[v], self.median(v)))
            .collect();
        eprintln!(
            "{title}: interleaved, {} rounds, median per op: {}",
            self.per_op[0].len(),
            medians.join(", ")
        );
    }
}

/// (25th percentile, median, 75th percentile).
pub fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}
