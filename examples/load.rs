//! # Load generator for the demo
//!
//! Drives a running demo (`cargo run --example demo`) the way many browsers would, for a
//! bounded time: each worker logs in as a random identity out of `--identities` through the
//! demo's development IdP (login start, the IdP's login form, the callback), then makes
//! `--requests` authenticated requests to `/me` with the session cookie, and logs out every
//! tenth time (checking that the old cookie is then refused). Identities log in again and
//! again with changing groups, so first logins, updates and cached sessions all happen.
//!
//! At the end it prints throughput, latency percentiles and error counts; with `--pid` the
//! demo's resident memory over the run (and, with `--memory-check`, fails when it grew by
//! more than a quarter in the second half); with `--database` it checks that the store holds
//! exactly one user and one identity link per distinct identity that logged in. It exits
//! non-zero on any error or count mismatch. `scripts/load` starts a fresh demo and runs this.
//!
//! ```text
//! cargo run --release --example load -- --base http://127.0.0.1:3000 --seconds 60 \
//!     --identities 20000 --concurrency 32 --requests 10 \
//!     --pid $(pgrep -f examples/demo) --database sqlite://jit-demo.db
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jit_provision::dev_idp::{DevIdp, DevUser};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: cargo run --release --example load -- --base URL [--seconds N] \
[--identities N] [--concurrency N] [--requests N] [--pid PID] [--memory-check] \
[--database sqlite://FILE] [--json FILE]";

#[derive(Debug, Clone)]
struct Options {
    base: String,
    seconds: u64,
    identities: u32,
    concurrency: usize,
    requests: u32,
    pid: Option<u32>,
    database: Option<String>,
    json: Option<String>,
    memory_check: bool,
}

impl Options {
    fn parse() -> Result<Self, BoxError> {
        let mut options = Options {
            base: String::new(),
            seconds: 60,
            identities: 20_000,
            concurrency: 32,
            requests: 10,
            pid: None,
            database: None,
            json: None,
            memory_check: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--base" => options.base = value()?.trim_end_matches('/').to_owned(),
                "--seconds" => options.seconds = value()?.parse()?,
                "--identities" => options.identities = value()?.parse()?,
                "--concurrency" => options.concurrency = value()?.parse()?,
                "--requests" => options.requests = value()?.parse()?,
                "--pid" => options.pid = Some(value()?.parse()?),
                "--database" => options.database = Some(value()?),
                "--json" => options.json = Some(value()?),
                "--memory-check" => options.memory_check = true,
                "--help" | "-h" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
            }
        }
        if options.base.is_empty()
            || options.identities == 0
            || options.concurrency == 0
            || options.requests == 0
        {
            return Err(USAGE.into());
        }
        Ok(options)
    }
}

/// What all workers saw: latencies in microseconds, errors by kind, identities logged in and
/// the local user id each one got.
#[derive(Default)]
struct Tally {
    login_us: Vec<u32>,
    request_us: Vec<u32>,
    logouts: u64,
    errors: BTreeMap<String, u64>,
    first_errors: Vec<String>,
    users: HashMap<u32, String>,
}

impl Tally {
    fn error(&mut self, kind: &str, detail: String) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(format!("{kind}: {detail}"));
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<bool, BoxError> {
    let options = Options::parse()?;
    println!(
        "load: {} for {} s, {} workers, {} identities, {} requests per login",
        options.base, options.seconds, options.concurrency, options.identities, options.requests
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let memory = options
        .pid
        .map(|pid| tokio::spawn(sample_memory(pid, deadline)));
    let workers: Vec<_> = (0..options.concurrency)
        .map(|n| tokio::spawn(worker(n as u64, options.clone(), deadline, tally.clone())))
        .collect();
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let memory = match memory {
        Some(task) => Some(task.await?),
        None => None,
    };
    let mut tally = std::mem::take(&mut *tally.lock().unwrap());
    let mut ok = report(&options, &mut tally, elapsed, memory.as_deref());
    if let Some(url) = &options.database {
        ok &= check_store(url, &tally).await?;
    }
    Ok(ok && tally.errors.is_empty())
}

/// One simulated browser after another: a login, requests, sometimes a logout.
async fn worker(n: u64, options: Options, deadline: Instant, tally: Arc<Mutex<Tally>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x10ad ^ n);
    let mut round = 0u64;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client");
    while Instant::now() < deadline {
        round += 1;
        let identity = rng.gen_range(0..options.identities);
        // Groups change from one login to the next, so returning users are updated.
        let group = ["staff", "eng-a", "eng-b"][rng.gen_range(0..3)];
        let user = DevUser::new(
            &format!("load-sub-{identity}"),
            &format!("load-{identity}"),
            &format!("load-{identity}@example.com"),
            &format!("Load {identity}"),
            &[group],
        );
        let mut jar = Jar::default();
        let began = Instant::now();
        match login(&client, &mut jar, &options.base, &user).await {
            Ok(()) => {
                let us = began.elapsed().as_micros() as u32;
                tally.lock().unwrap().login_us.push(us);
            }
            Err((kind, detail)) => {
                tally.lock().unwrap().error(kind, detail);
                continue;
            }
        }
        let mut times = Vec::with_capacity(options.requests as usize);
        let mut seen = None;
        for _ in 0..options.requests {
            let began = Instant::now();
            match me(&client, &mut jar, &options.base).await {
                Ok(body) => {
                    times.push(began.elapsed().as_micros() as u32);
                    let username = body["user"]["username"].as_str().unwrap_or_default();
                    if username != format!("load-{identity}") {
                        tally.lock().unwrap().error(
                            "wrong_user",
                            format!("load-{identity} was served {username:?}"),
                        );
                    }
                    seen = Some(body["user"]["id"].to_string());
                }
                Err((kind, detail)) => tally.lock().unwrap().error(kind, detail),
            }
        }
        {
            let mut t = tally.lock().unwrap();
            t.request_us.extend(times);
            if let Some(id) = seen {
                // One identity, one local user, whatever the concurrency.
                let first = t
                    .users
                    .entry(identity)
                    .or_insert_with(|| id.clone())
                    .clone();
                if first != id {
                    t.error(
                        "second_user",
                        format!("load-{identity} got user {id} after {first}"),
                    );
                }
            }
        }
        if round.is_multiple_of(10) {
            match logout(&client, &mut jar, &options.base).await {
                Ok(()) => tally.lock().unwrap().logouts += 1,
                Err((kind, detail)) => tally.lock().unwrap().error(kind, detail),
            }
        }
    }
}

type StepError = (&'static str, String);

/// The cookies of one simulated browser for the app. Each worker keeps one connection pool
/// (as a browser does) and starts a new jar per login, so a run does not exhaust loopback
/// ports with connections in TIME_WAIT.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    /// Applies a response's `Set-Cookie` headers (an empty value or `Max-Age=0` deletes).
    fn store(&mut self, response: &reqwest::Response) {
        for header in response.headers().get_all("set-cookie") {
            let Ok(text) = header.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if value.is_empty() || expired {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.join("; ")
    }

    /// Sends `request` to the app with these cookies and keeps what it sets.
    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
        step: &'static str,
    ) -> Result<reqwest::Response, StepError> {
        let request = if self.0.is_empty() {
            request
        } else {
            request.header("cookie", self.header())
        };
        let response = request.send().await.map_err(transport(step))?;
        self.store(&response);
        Ok(response)
    }
}

fn location(response: &reqwest::Response) -> Result<String, StepError> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or((
            "no_location",
            format!("{} without Location", response.status()),
        ))
}

fn expect(
    response: &reqwest::Response,
    status: StatusCode,
    step: &'static str,
) -> Result<(), StepError> {
    if response.status() == status {
        Ok(())
    } else {
        Err((step, format!("{} instead of {status}", response.status())))
    }
}

fn transport(step: &'static str) -> impl Fn(reqwest::Error) -> StepError {
    move |e| (step, format!("transport: {e}"))
}

async fn login(
    client: &reqwest::Client,
    jar: &mut Jar,
    base: &str,
    user: &DevUser,
) -> Result<(), StepError> {
    let start = jar
        .send(
            client.get(format!("{base}/auth/dev/login?return_to=/me")),
            "login_start",
        )
        .await?;
    expect(&start, StatusCode::FOUND, "login_start")?;
    let authorize = location(&start)?;
    let issuer = authorize
        .split("/authorize")
        .next()
        .unwrap_or_default()
        .to_owned();
    let approved = client
        .post(format!("{issuer}/authorize"))
        .form(&DevIdp::approve_form(&authorize, user))
        .send()
        .await
        .map_err(transport("idp_login"))?;
    expect(&approved, StatusCode::SEE_OTHER, "idp_login")?;
    let callback = jar
        .send(client.get(location(&approved)?), "callback")
        .await?;
    if callback.status() != StatusCode::SEE_OTHER {
        let status = callback.status();
        let body = callback.text().await.unwrap_or_default();
        return Err(("callback", format!("{status}: {body}")));
    }
    Ok(())
}

async fn me(
    client: &reqwest::Client,
    jar: &mut Jar,
    base: &str,
) -> Result<serde_json::Value, StepError> {
    let response = jar.send(client.get(format!("{base}/me")), "me").await?;
    expect(&response, StatusCode::OK, "me")?;
    response
        .json()
        .await
        .map_err(|e| ("me", format!("body: {e}")))
}

async fn logout(client: &reqwest::Client, jar: &mut Jar, base: &str) -> Result<(), StepError> {
    let session = jar.header();
    let response = jar
        .send(client.post(format!("{base}/auth/logout")), "logout")
        .await?;
    if !response.status().is_redirection() && !response.status().is_success() {
        return Err(("logout", format!("{}", response.status())));
    }
    // The cookie from before the logout (as a thief would replay it) is refused.
    let after = client
        .get(format!("{base}/me"))
        .header("cookie", session)
        .send()
        .await
        .map_err(transport("after_logout"))?;
    expect(&after, StatusCode::UNAUTHORIZED, "after_logout")
}

/// The process's resident set size in KiB, once a second until the deadline.
async fn sample_memory(pid: u32, deadline: Instant) -> Vec<(f64, u64)> {
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        if let Some(kib) = rss_kib(pid) {
            samples.push((started.elapsed().as_secs_f64(), kib));
        }
        if Instant::now() >= deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

/// One line of the report: how many, how fast, and latency percentiles in milliseconds.
fn summary(what: &str, sorted: &[u32], elapsed: f64) {
    println!(
        "  {what:<10} {} ({:.0}/s), latency ms p50 {:.2} p99 {:.2} max {:.1}",
        sorted.len(),
        sorted.len() as f64 / elapsed,
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0),
    );
}

/// Prints the figures (and writes them as JSON with `--json`); with `--memory-check`, false
/// when memory grew during the second half of the run by more than a quarter (make the run
/// at least twice as long as the longest cache lifetime, so the caches are full at half time).
fn report(
    options: &Options,
    tally: &mut Tally,
    elapsed: f64,
    memory: Option<&[(f64, u64)]>,
) -> bool {
    tally.login_us.sort_unstable();
    tally.request_us.sort_unstable();
    let logins = tally.login_us.len();
    let requests = tally.request_us.len();
    let errors: u64 = tally.errors.values().sum();
    println!("load: {elapsed:.0} s");
    summary("logins", &tally.login_us, elapsed);
    summary("requests", &tally.request_us, elapsed);
    println!("  logouts    {}", tally.logouts);
    println!("  identities {} distinct logged in", tally.users.len());
    println!("  errors     {errors} {:?}", tally.errors);
    for e in &tally.first_errors {
        println!("    {e}");
    }
    let mut ok = true;
    let mut rss = serde_json::Value::Null;
    if let Some(samples) = memory.filter(|s| !s.is_empty()) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let at = |fraction: f64| {
            let t = elapsed * fraction;
            samples
                .iter()
                .find(|(s, _)| *s >= t)
                .unwrap_or(samples.last().unwrap())
                .1
        };
        let (first, half, last) = (samples[0].1, at(0.5), samples.last().unwrap().1);
        let peak = samples.iter().map(|(_, k)| *k).max().unwrap_or(0);
        println!(
            "  memory     RSS MiB: start {:.1}, at half time {:.1}, peak {:.1}, end {:.1}",
            mib(first),
            mib(half),
            mib(peak),
            mib(last)
        );
        // The first sample at or after each whole minute.
        let mut per_minute: Vec<String> = Vec::new();
        let mut next = 0.0;
        for (s, k) in samples {
            if *s >= next {
                per_minute.push(format!("{:.0}s {:.1}", s, mib(*k)));
                next = (s / 60.0).floor() * 60.0 + 60.0;
            }
        }
        println!("             by minute: {}", per_minute.join(", "));
        // Caches are bounded: once warm, memory must not keep growing.
        if options.memory_check && last > half + half / 4 {
            println!("  memory grew by more than 25% in the second half of the run");
            ok = false;
        }
        rss = serde_json::json!({
            "start_mib": mib(first), "half_mib": mib(half), "peak_mib": mib(peak),
            "end_mib": mib(last),
            "samples": samples.iter().map(|(s, k)| [*s, mib(*k)]).collect::<Vec<_>>(),
        });
    }
    if let Some(path) = &options.json {
        let figures = serde_json::json!({
            "seconds": elapsed, "workers": options.concurrency,
            "identities": options.identities, "requests_per_login": options.requests,
            "logins": logins, "requests": requests, "logouts": tally.logouts,
            "distinct_identities": tally.users.len(), "errors": tally.errors,
            "login_ms": { "p50": percentile(&tally.login_us, 0.5),
                          "p99": percentile(&tally.login_us, 0.99) },
            "request_ms": { "p50": percentile(&tally.request_us, 0.5),
                            "p99": percentile(&tally.request_us, 0.99) },
            "rss": rss,
        });
        if let Err(e) = std::fs::write(path, figures.to_string()) {
            println!("  cannot write {path}: {e}");
        }
    }
    ok
}

/// The store holds one user and one identity link per distinct identity logged in.
async fn check_store(url: &str, tally: &Tally) -> Result<bool, BoxError> {
    use jit_provision::store::{SqliteStore, UserStore};
    let store = SqliteStore::connect(url).await?;
    let users = store.user_count().await?;
    let links = store.identities_by_provider("dev").await?;
    let linked: HashSet<&str> = links.iter().map(|l| l.subject.as_str()).collect();
    let expected = tally.users.len();
    let load_links = linked.iter().filter(|s| s.starts_with("load-sub-")).count();
    println!(
        "  store      {users} users, {} identity links ({load_links} from this run); \
         {expected} distinct identities logged in",
        links.len()
    );
    let ok = users as usize == expected && links.len() == expected && load_links == expected;
    if !ok {
        println!("  store counts do not match the identities logged in");
    }
    store.pool().close().await;
    Ok(ok)
}
