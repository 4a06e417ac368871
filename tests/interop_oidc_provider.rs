//! Interop: full OpenID Connect logins against `oidc-provider`, a certified OpenID Provider
//! from npm that nobody here wrote, driven over HTTP the way a browser drives it.
//!
//! The provider runs as `node tests/interop/oidc-provider.mjs` with its built-in development
//! login and consent pages. The test follows every redirect by hand (so each hop can be
//! checked), fills in and submits the provider's HTML forms, and posts the `form_post`
//! auto-submitting form itself, until the layer's callback answers `303` to `return_to`.
//!
//! Prerequisites: node (found as `$JIT_NODE`, else `node` on `PATH`) and
//! `tests/interop/node_modules/oidc-provider` (`npm ci --prefix tests/interop`). When they
//! are missing the tests print a loud skip notice and pass, unless `JIT_REQUIRE_INTEROP=1`,
//! which makes them fail instead (CI sets it after `npm ci`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use jit_provision::config::ResponseMode;
use jit_provision::store::{IdentityKey, SqliteStore, UserStore};
use jit_provision::{CurrentUser, JitLayer, MappingConfig, ProviderConfig};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use url::Url;

const PROVIDER_ID: &str = "op";
const CLIENT_ID: &str = "jit-interop-app";
/// Characters that client_secret_basic must form-urlencode (RFC 6749 2.3.1) on both sides.
const CLIENT_SECRET: &str = "s3cr:t/with+special chars&=%";
/// How long one start of oidc-provider may take to print `READY` (it takes well under a
/// second). A start that prints nothing by then is killed and started once more: in this
/// suite a start has hung, rarely, with Node.js alive and silent for the whole 120 s it
/// was once given (not reproduced alone).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Starts of oidc-provider tried before giving up.
const START_ATTEMPTS: u32 = 2;
/// Most hops (redirects and form submissions) one login may take.
const MAX_HOPS: usize = 20;
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

// ---------------------------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------------------------

struct Prerequisites {
    node: PathBuf,
    script: PathBuf,
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// `$JIT_NODE` when set, else the first executable `node` on `PATH`.
fn find_node() -> Result<PathBuf, String> {
    if let Some(explicit) = std::env::var_os("JIT_NODE").filter(|v| !v.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if is_executable(&explicit) {
            Ok(explicit)
        } else {
            Err(format!(
                "JIT_NODE={} is not an executable file",
                explicit.display()
            ))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("node"), dir.join("node.exe")])
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| "node is not on PATH (or set JIT_NODE to its path)".to_owned())
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Node and the installed package, or `None` after a loud skip notice; panics instead of
/// skipping under `JIT_REQUIRE_INTEROP=1`.
fn prerequisites(test: &str) -> Option<Prerequisites> {
    let dir = interop_dir();
    let mut missing = Vec::new();
    let node = find_node();
    if let Err(why) = &node {
        missing.push(why.clone());
    }
    let package = dir.join("node_modules/oidc-provider/package.json");
    if !package.is_file() {
        missing.push(format!(
            "{} is missing: run `npm ci --prefix tests/interop`",
            package.display()
        ));
    }
    if missing.is_empty() {
        return Some(Prerequisites {
            node: node.expect("checked above"),
            script: dir.join("oidc-provider.mjs"),
        });
    }
    let detail = missing.join("\n  - ");
    if std::env::var("JIT_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        panic!(
            "JIT_REQUIRE_INTEROP=1 but the oidc-provider interop test cannot run:\n  - {detail}"
        );
    }
    // Straight to the process's stderr, past the test harness's output capture, so the
    // notice shows even for a passing run.
    let notice = format!(
        "\n==================== SKIPPED: {test} ====================\n\
         the oidc-provider interop test did not run:\n  - {detail}\n\
         (set JIT_REQUIRE_INTEROP=1 to make this a failure)\n\
         ==========================================================\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    None
}

// ---------------------------------------------------------------------------------------------
// Scratch files
// ---------------------------------------------------------------------------------------------

/// A directory of its own under cargo's target tmp dir, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("interop-{test}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the accounts file atomically (write then rename), so the provider never reads a
/// half-written file.
fn write_accounts(path: &Path, accounts: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(accounts).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The OpenID Provider process
// ---------------------------------------------------------------------------------------------

struct OpenIdProvider {
    issuer: String,
    _child: Child,
    /// Held open: the script exits when its stdin closes.
    _stdin: ChildStdin,
    log: Arc<Mutex<String>>,
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("---- oidc-provider output ----\n{log}------------------------------");
        }
    }
}

fn drain_into<R>(reader: R, log: Arc<Mutex<String>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader = reader;
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&text);
        }
    });
}

async fn start_provider(
    pre: &Prerequisites,
    redirect_uri: &str,
    accounts_file: &Path,
) -> OpenIdProvider {
    start_provider_with(pre, redirect_uri, accounts_file, &[]).await
}

/// [`start_provider`] with more of the script's environment (`OP_POST_LOGOUT_REDIRECT_URIS`,
/// `OP_BACKCHANNEL_LOGOUT_URI`).
async fn start_provider_with(
    pre: &Prerequisites,
    redirect_uri: &str,
    accounts_file: &Path,
    env: &[(&str, &str)],
) -> OpenIdProvider {
    let mut attempt = 1;
    loop {
        let mut child = Command::new(&pre.node)
            .arg(&pre.script)
            .arg("0")
            .current_dir(interop_dir())
            .env("OP_CLIENT_ID", CLIENT_ID)
            .env("OP_CLIENT_SECRET", CLIENT_SECRET)
            .env("OP_REDIRECT_URIS", redirect_uri)
            .env("OP_ACCOUNTS_FILE", accounts_file)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} failed: {e}", pre.node.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let log = Arc::new(Mutex::new(String::new()));
        drain_into(child.stderr.take().expect("piped stderr"), log.clone());
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            let mut line = String::new();
            loop {
                line.clear();
                if stdout.read_line(&mut line).await.ok()? == 0 {
                    return None; // the process ended before it was ready
                }
                if let Some(port) = line.trim().strip_prefix("READY ") {
                    return port.parse::<u16>().ok();
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&line);
            }
        })
        .await;
        let port = match ready {
            Ok(Some(port)) => port,
            // A start that hangs is tried once more; one that fails is not.
            Err(_) if attempt < START_ATTEMPTS => {
                let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                eprintln!(
                    "oidc-provider printed no READY in {READY_TIMEOUT:?}; starting it again. Its log:\n{log}"
                );
                let _ = child.kill().await;
                attempt += 1;
                continue;
            }
            other => {
                let status = child.try_wait().ok().flatten();
                let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                panic!(
                    "oidc-provider did not print READY ({}; attempt {attempt}, exit status {status:?}):\n{log}",
                    if other.is_err() {
                        "timed out"
                    } else {
                        "stdout closed"
                    }
                );
            }
        };
        drain_into(stdout, log.clone());
        return OpenIdProvider {
            issuer: format!("http://127.0.0.1:{port}"),
            _child: child,
            _stdin: stdin,
            log,
        };
    }
}

// ---------------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------------

async fn me(user: CurrentUser) -> Json<Value> {
    Json(json!({
        "id": user.id.0,
        "username": user.username,
        "email": user.email,
        "display_name": user.display_name,
        "groups": user.groups,
        "provider": user.auth.provider,
        "subject": user.auth.subject,
    }))
}

struct App {
    base: String,
    callback: String,
    store: SqliteStore,
}

/// Binds the app's port (needed for the provider's redirect URI) before anything else.
async fn bind_app() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    (listener, base)
}

async fn serve_app(
    listener: tokio::net::TcpListener,
    base: String,
    provider: ProviderConfig,
    db: &Path,
) -> App {
    serve_app_with(listener, base.clone(), &base, provider, db, |b| b).await
}

/// [`serve_app`] behind `public_url` (another instance's, as behind a load balancer), with
/// `builder` adjusting the layer.
async fn serve_app_with(
    listener: tokio::net::TcpListener,
    base: String,
    public_url: &str,
    provider: ProviderConfig,
    db: &Path,
    builder: impl FnOnce(jit_provision::JitLayerBuilder) -> jit_provision::JitLayerBuilder,
) -> App {
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the SQLite store");
    let layer = builder(
        JitLayer::builder()
            .public_url(public_url)
            .insecure_cookies_for_localhost()
            .provider(PROVIDER_ID, provider)
            .store(store.clone())
            .replay_guard(store.clone()),
    )
    .build()
    .expect("layer builds");
    let app = Router::new().route("/me", get(me)).layer(layer);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("app server");
    });
    App {
        callback: format!("{public_url}/auth/{PROVIDER_ID}/callback"),
        base,
        store,
    }
}

/// The provider as the app configures it: scopes `openid email profile groups`, groups mapped
/// from the `groups` claim. `userinfo` stays off (the default), so every claim the app maps
/// must come from the ID token: that is what the query-mode test proves. (With
/// oidc-provider's default `conformIdTokenClaims: true` the scope claims would only be at
/// userinfo, and that login fails with `missing_attribute`.)
fn provider_config(issuer: &str, mode: ResponseMode) -> ProviderConfig {
    let mut provider = ProviderConfig::new(issuer, CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .response_mode(mode)
        .mapping({
            let mut built = MappingConfig::default();
            built.groups = Some(jit_provision::config::GroupsConfig::from_claim("groups"));
            built
        });
    provider.scopes.push("groups".into());
    provider
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// A minimal HTML form reader
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Form {
    action: String,
    method: String,
    /// `(type, name, value)` of every `<input>` with a name, in document order.
    inputs: Vec<(String, String, String)>,
}

impl Form {
    fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|(_, n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, v)| v.as_str())
    }

    /// What a browser submits, with `fill` replacing the values of the named fields.
    fn submission(&self, fill: &[(&str, &str)]) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .map(|(_, name, value)| {
                let value = fill
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(value.as_str(), |(_, v)| v);
                (name.clone(), value.to_owned())
            })
            .collect()
    }
}

/// The end (exclusive) of the tag starting at `start` (a `<`), skipping quoted values.
fn tag_end(html: &str, start: usize) -> Option<usize> {
    let mut quote = None;
    for (i, c) in html[start..].char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(start + i + 1),
            _ => {}
        }
    }
    None
}

/// The attributes of a tag such as `<input type="hidden" name="a" value="b"/>`, names
/// lowercased and values entity-decoded.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let inner = tag
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim_end_matches('/');
    let inner = inner.trim_start_matches(|c: char| !c.is_whitespace()); // the tag name
    let chars: Vec<char> = inner.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        if start == i {
            break;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let quote = chars[i];
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                value = chars[start..i].iter().collect();
                i += 1;
            } else {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[start..i].iter().collect();
            }
        }
        out.push((name, decode_entities(&value)));
    }
    out
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&s| s <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn attribute<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Every `<form>` of a page with its named `<input>`s.
fn parse_forms(html: &str) -> Vec<Form> {
    // ASCII lowercasing keeps byte offsets, so positions found here index `html` too.
    let lower = html.to_ascii_lowercase();
    let mut forms = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("<form").map(|p| p + from) {
        let Some(open_end) = tag_end(html, pos) else {
            break;
        };
        let close = lower[open_end..]
            .find("</form")
            .map_or(html.len(), |p| p + open_end);
        let attrs = attributes(&html[pos..open_end]);
        let mut inputs = Vec::new();
        let mut at = open_end;
        while let Some(ipos) = lower[at..close].find("<input").map(|p| p + at) {
            let Some(iend) = tag_end(html, ipos) else {
                break;
            };
            let input = attributes(&html[ipos..iend]);
            if let Some(name) = attribute(&input, "name") {
                inputs.push((
                    attribute(&input, "type")
                        .unwrap_or("text")
                        .to_ascii_lowercase(),
                    name.to_owned(),
                    attribute(&input, "value").unwrap_or("").to_owned(),
                ));
            }
            at = iend;
        }
        forms.push(Form {
            action: attribute(&attrs, "action").unwrap_or("").to_owned(),
            method: attribute(&attrs, "method")
                .unwrap_or("get")
                .to_ascii_lowercase(),
            inputs,
        });
        from = close.max(open_end);
    }
    forms
}

#[test]
fn form_reader_reads_oidc_provider_shaped_pages() {
    let html = r#"<h1>Sign-in</h1><form autocomplete="off" action="http://127.0.0.1:1/interaction/a&amp;b" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
  <input required type='password' name=password placeholder="and > password">
  <button type="submit">Sign-in</button></form>
  <form method="POST" action="/cb"><input type="hidden" name="code" value="a&#x2F;b&#39;&quot;c"/></form>"#;
    let forms = parse_forms(html);
    assert_eq!(forms.len(), 2);
    assert_eq!(forms[0].action, "http://127.0.0.1:1/interaction/a&b");
    assert_eq!(forms[0].method, "post");
    assert_eq!(
        forms[0].submission(&[("login", "alice"), ("password", "pw")]),
        [
            ("prompt".to_owned(), "login".to_owned()),
            ("login".to_owned(), "alice".to_owned()),
            ("password".to_owned(), "pw".to_owned())
        ]
    );
    assert_eq!(forms[0].inputs[2].0, "password");
    assert_eq!(forms[1].method, "post");
    assert_eq!(forms[1].value("code"), Some("a/b'\"c"));
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/// What happened along one login, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The app's login endpoint redirected to the provider's authorization endpoint.
    Authorize(Url),
    /// The provider's login page was filled in and submitted.
    LoginForm,
    /// The provider's consent page was submitted.
    ConsentForm,
    /// The provider redirected to the app's callback with the response in the query.
    QueryCallback(Url),
    /// The provider answered with an auto-submitting form, posted to the app's callback.
    FormPostCallback(Form),
}

/// Short names of the steps, for messages.
fn labels(steps: &[Step]) -> Vec<&'static str> {
    steps
        .iter()
        .map(|step| match step {
            Step::Authorize(_) => "authorize",
            Step::LoginForm => "login form",
            Step::ConsentForm => "consent form",
            Step::QueryCallback(_) => "redirect to callback",
            Step::FormPostCallback(_) => "form_post to callback",
        })
        .collect()
}

struct Browser {
    client: reqwest::Client,
}

impl Browser {
    fn new() -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent("jit-provision-interop-test")
            .build()
            .unwrap();
        Self { client }
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    async fn post_form(&self, url: &str, fields: &[(String, String)]) -> reqwest::Response {
        self.client
            .post(url)
            .header(reqwest::header::ACCEPT, BROWSER_ACCEPT)
            .form(fields)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    async fn me(&self, app: &App) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}/me", app.base))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Logs in as `login` through the provider, from the app's login endpoint to the
    /// callback's `303` to `return_to`, asserting every hop. Returns the steps taken.
    async fn login(&self, app: &App, issuer: &str, login: &str, return_to: &str) -> Vec<Step> {
        let mut steps = Vec::new();
        let return_enc: String =
            url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        let start = format!(
            "{}/auth/{PROVIDER_ID}/login?return_to={return_enc}",
            app.base
        );
        let response = self.get(&start).await;
        assert_eq!(response.status(), StatusCode::FOUND, "login start: {start}");
        assert!(
            response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("jit_login_")),
            "login start sets the pending-login cookie"
        );
        let authorize = location(&response, &Url::parse(&start).unwrap());
        assert_eq!(
            authorize.as_str().split('?').next(),
            Some(format!("{issuer}/auth").as_str()),
            "login start redirects to the provider's authorization endpoint (from discovery)"
        );
        steps.push(Step::Authorize(authorize.clone()));

        let mut current = authorize;
        let mut response = self.get(current.as_str()).await;
        for _ in 0..MAX_HOPS {
            let status = response.status();
            if status.is_redirection() {
                let next = location(&response, &current);
                if next.as_str().split('?').next() == Some(app.callback.as_str()) {
                    steps.push(Step::QueryCallback(next.clone()));
                    let done = self.get(next.as_str()).await;
                    assert_callback_done(done, return_to).await;
                    return steps;
                }
                assert_eq!(
                    next.origin(),
                    Url::parse(issuer).unwrap().origin(),
                    "the provider only redirects within itself or to the registered callback"
                );
                response = self.get(next.as_str()).await;
                current = next;
                continue;
            }
            let is_html = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/html"));
            let body = response.text().await.unwrap();
            assert!(
                status == StatusCode::OK && is_html,
                "unexpected answer {status} from {current}:\n{body}"
            );
            let forms = parse_forms(&body);
            let [form] = forms.as_slice() else {
                panic!(
                    "expected one form at {current}, found {}:\n{body}",
                    forms.len()
                );
            };
            assert_eq!(form.method, "post", "form at {current}");
            let action = current.join(&form.action).unwrap();
            if action.as_str() == app.callback {
                // response_mode=form_post: what the page's script would submit.
                steps.push(Step::FormPostCallback(form.clone()));
                let done = self.post_form(action.as_str(), &form.submission(&[])).await;
                assert_callback_done(done, return_to).await;
                return steps;
            }
            assert_eq!(
                action.origin(),
                current.origin(),
                "the provider's own pages post to the provider"
            );
            let fields = if form.has_input("login") {
                assert_eq!(form.value("prompt"), Some("login"));
                steps.push(Step::LoginForm);
                form.submission(&[("login", login), ("password", "any password")])
            } else {
                assert_eq!(
                    form.value("prompt"),
                    Some("consent"),
                    "consent page:\n{body}"
                );
                steps.push(Step::ConsentForm);
                form.submission(&[])
            };
            response = self.post_form(action.as_str(), &fields).await;
            current = action;
        }
        panic!("no callback after {MAX_HOPS} hops: {steps:#?}");
    }
}

fn location(response: &reqwest::Response, base: &Url) -> Url {
    let value = response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("{} from {base} has no Location", response.status()))
        .to_str()
        .unwrap();
    base.join(value).unwrap()
}

/// The callback must answer `303` to `return_to`, setting the session cookie and clearing
/// the pending-login cookie.
async fn assert_callback_done(response: reqwest::Response, return_to: &str) {
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let cookies: Vec<String> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::SEE_OTHER, "callback answered:\n{body}");
    assert_eq!(location.as_deref(), Some(return_to));
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("jit_session=") && !c.starts_with("jit_session=;")),
        "callback sets the session cookie: {cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("jit_login_") && c.contains("Max-Age=0")),
        "callback clears the pending-login cookie: {cookies:?}"
    );
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The authorization request the layer sent: code flow, PKCE S256, state, nonce, scopes.
fn assert_authorization_request(steps: &[Step], app: &App, mode: ResponseMode) {
    let Some(Step::Authorize(url)) = steps.first() else {
        panic!("no authorization request: {steps:#?}");
    };
    assert_eq!(query(url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query(url, "redirect_uri").as_deref(),
        Some(app.callback.as_str())
    );
    assert_eq!(query(url, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query(url, "code_challenge").is_some_and(|c| c.len() == 43));
    assert!(query(url, "state").is_some_and(|s| !s.is_empty()));
    assert!(query(url, "nonce").is_some_and(|s| !s.is_empty()));
    let scope = query(url, "scope").unwrap_or_default();
    let mut scopes: Vec<&str> = scope.split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["email", "groups", "openid", "profile"]);
    let expected_mode = match mode {
        ResponseMode::FormPost => Some("form_post"),
        _ => None,
    };
    assert_eq!(query(url, "response_mode").as_deref(), expected_mode);
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

fn alice(email: &str, name: &str, groups: &[&str]) -> Value {
    json!({
        "alice": {
            "preferred_username": "asmith",
            "email": email,
            "email_verified": true,
            "name": name,
            "groups": groups,
        },
        "bob": {
            "preferred_username": "bob",
            "email": "bob@example.org",
            "email_verified": false,
            "name": "Bob",
            "groups": ["support"],
        }
    })
}

/// Query response mode: first login creates the user; the provider then changes the user's
/// claims, and a login after logout updates the same local user.
#[tokio::test]
async fn query_mode_login_provisions_then_updates_on_next_login() {
    let Some(pre) = prerequisites("query_mode_login_provisions_then_updates_on_next_login") else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("query");
    let accounts = scratch.path("accounts.json");
    write_accounts(
        &accounts,
        &alice(
            "alice@example.org",
            "Alice Smith",
            &["admins", "developers"],
        ),
    );
    let (listener, base) = bind_app().await;
    let callback = format!("{base}/auth/{PROVIDER_ID}/callback");
    let op = start_provider(&pre, &callback, &accounts).await;
    let app = serve_app(
        listener,
        base,
        provider_config(&op.issuer, ResponseMode::Query),
        &scratch.path("users.db"),
    )
    .await;
    let browser = Browser::new();

    // Nobody is logged in yet.
    assert_eq!(browser.me(&app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.user_count().await.unwrap(), 0);

    // Phase 1: first login, through the provider's login and consent pages.
    let steps = browser
        .login(&app, &op.issuer, "alice", "/me?tab=profile")
        .await;
    assert_authorization_request(&steps, &app, ResponseMode::Query);
    assert!(steps.contains(&Step::LoginForm), "{steps:#?}");
    assert!(steps.contains(&Step::ConsentForm), "{steps:#?}");
    let Some(Step::QueryCallback(callback_url)) = steps.last() else {
        panic!("query mode ends with a redirect to the callback: {steps:#?}");
    };
    assert!(query(callback_url, "code").is_some());
    // RFC 9207: the provider names itself, and the layer accepted it.
    assert_eq!(
        query(callback_url, "iss").as_deref(),
        Some(op.issuer.as_str())
    );

    let (status, me) = browser.me(&app).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "asmith", "username from preferred_username");
    assert_eq!(me["email"], "alice@example.org");
    assert_eq!(me["display_name"], "Alice Smith");
    assert_eq!(me["groups"], json!(["admins", "developers"]));
    assert_eq!(me["provider"], PROVIDER_ID);
    assert_eq!(me["subject"], "alice", "sub is the provider's account id");

    assert_eq!(app.store.user_count().await.unwrap(), 1);
    let key = IdentityKey {
        provider: PROVIDER_ID.into(),
        subject: "alice".into(),
    };
    let stored = app
        .store
        .find_by_identity(&key)
        .await
        .unwrap()
        .expect("the identity is linked in SQLite");
    assert_eq!(stored.id.0, me["id"].as_i64().unwrap());
    assert_eq!(stored.username, "asmith");
    assert_eq!(stored.email.as_deref(), Some("alice@example.org"));
    assert_eq!(
        stored.groups.iter().map(String::as_str).collect::<Vec<_>>(),
        ["admins", "developers"]
    );

    // The same authorization response cannot be used twice.
    let replay = browser.get(callback_url.as_str()).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        browser.me(&app).await.0,
        StatusCode::OK,
        "the session survives"
    );

    // Phase 3: the provider changes alice's claims; log out, log in again.
    write_accounts(
        &accounts,
        &alice(
            "alice.smith@example.com",
            "Alice Smith-Jones",
            &["developers"],
        ),
    );
    let logout = browser
        .post_form(&format!("{}/auth/logout", app.base), &[])
        .await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        browser.me(&app).await.0,
        StatusCode::UNAUTHORIZED,
        "logged out"
    );

    let steps = browser.login(&app, &op.issuer, "alice", "/me").await;
    assert_authorization_request(&steps, &app, ResponseMode::Query);
    assert!(
        matches!(steps.last(), Some(Step::QueryCallback(_))),
        "{steps:#?}"
    );
    eprintln!("second login: {:?}", labels(&steps));

    let (status, me) = browser.me(&app).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"].as_i64(), Some(stored.id.0), "the same local user");
    assert_eq!(
        me["username"], "asmith",
        "the username is fixed at creation"
    );
    assert_eq!(me["email"], "alice.smith@example.com");
    assert_eq!(me["display_name"], "Alice Smith-Jones");
    assert_eq!(
        me["groups"],
        json!(["developers"]),
        "the removed group is gone"
    );
    assert_eq!(app.store.user_count().await.unwrap(), 1);
    let updated = app.store.find_by_identity(&key).await.unwrap().unwrap();
    assert_eq!(updated.id, stored.id);
    assert_eq!(updated.email.as_deref(), Some("alice.smith@example.com"));
    assert_eq!(updated.display_name.as_deref(), Some("Alice Smith-Jones"));
    assert_eq!(
        updated
            .groups
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["developers"]
    );
    drop(op);
}

/// `response_mode=form_post`: the provider answers with an auto-submitting HTML form that the
/// browser posts to the callback; userinfo is fetched too.
#[tokio::test]
async fn form_post_login_provisions_a_user() {
    let Some(pre) = prerequisites("form_post_login_provisions_a_user") else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("form-post");
    let accounts = scratch.path("accounts.json");
    write_accounts(
        &accounts,
        &alice("alice@example.org", "Alice Smith", &["admins"]),
    );
    let (listener, base) = bind_app().await;
    let callback = format!("{base}/auth/{PROVIDER_ID}/callback");
    let op = start_provider(&pre, &callback, &accounts).await;
    let mut provider = provider_config(&op.issuer, ResponseMode::FormPost);
    provider.userinfo = true;
    let app = serve_app(listener, base, provider, &scratch.path("users.db")).await;
    let browser = Browser::new();

    let steps = browser.login(&app, &op.issuer, "bob", "/me").await;
    assert_authorization_request(&steps, &app, ResponseMode::FormPost);
    assert!(steps.contains(&Step::LoginForm), "{steps:#?}");
    assert!(steps.contains(&Step::ConsentForm), "{steps:#?}");
    assert!(
        !steps.iter().any(|s| matches!(s, Step::QueryCallback(_))),
        "form_post never puts the response in a redirect: {steps:#?}"
    );
    let Some(Step::FormPostCallback(form)) = steps.last() else {
        panic!("form_post ends with a form posted to the callback: {steps:#?}");
    };
    assert!(form.value("code").is_some_and(|c| !c.is_empty()));
    assert!(form.value("state").is_some_and(|s| !s.is_empty()));
    assert_eq!(form.value("iss"), Some(op.issuer.as_str()));
    assert!(form.inputs.iter().all(|(kind, _, _)| kind == "hidden"));

    let (status, me) = browser.me(&app).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "bob");
    assert_eq!(me["email"], "bob@example.org");
    assert_eq!(me["display_name"], "Bob");
    assert_eq!(me["groups"], json!(["support"]));
    assert_eq!(me["subject"], "bob");

    assert_eq!(app.store.user_count().await.unwrap(), 1);
    let stored = app
        .store
        .find_by_identity(&IdentityKey {
            provider: PROVIDER_ID.into(),
            subject: "bob".into(),
        })
        .await
        .unwrap()
        .expect("the identity is linked in SQLite");
    assert_eq!(stored.username, "bob");
    assert_eq!(
        stored.groups.iter().map(String::as_str).collect::<Vec<_>>(),
        ["support"]
    );
    drop(op);
}

// ---------------------------------------------------------------------------------------------
// Logout with the provider
// ---------------------------------------------------------------------------------------------

/// A fresh PostgreSQL database: the invalidation bus between two instances, or the store two
/// instances share.
#[cfg(feature = "postgres")]
#[path = "common/pg.rs"]
mod pg;

/// oidc-provider's logout confirmation page: its form (`op.logoutForm`, holding `xsrf`),
/// submitted with the "Yes, sign me out" button (`logout=yes`, outside the form, tied to it by
/// `form=`) as a browser submits it. Returns the provider's answer.
async fn confirm_logout_at_provider(
    browser: &Browser,
    page: reqwest::Response,
) -> reqwest::Response {
    let at = page.url().clone();
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the logout confirmation page"
    );
    let body = page.text().await.unwrap();
    let forms = parse_forms(&body);
    let [form] = forms.as_slice() else {
        panic!("expected the logout form at {at}:\n{body}");
    };
    assert!(form.has_input("xsrf"), "{body}");
    assert!(body.contains("name=\"logout\""), "{body}");
    let mut fields = form.submission(&[]);
    fields.push(("logout".into(), "yes".into()));
    browser
        .post_form(at.join(&form.action).unwrap().as_str(), &fields)
        .await
}

/// RP-Initiated Logout 1.0 against oidc-provider: the app's logout ends the local session and
/// sends the browser to the provider's `end_session_endpoint` with `id_token_hint`,
/// `client_id`, `state` and `post_logout_redirect_uri`; the provider's confirmation is
/// submitted; it returns to `/auth/logout/done` with the state, and the app lands on
/// `return_to`. The provider's session is gone too: the next login shows its login page.
#[tokio::test]
async fn rp_initiated_logout_round_trip() {
    let Some(pre) = prerequisites("rp_initiated_logout_round_trip") else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("rp-logout");
    let accounts = scratch.path("accounts.json");
    write_accounts(&accounts, &alice("alice@example.org", "Alice", &["admins"]));
    let (listener, base) = bind_app().await;
    let callback = format!("{base}/auth/{PROVIDER_ID}/callback");
    let done = format!("{base}/auth/logout/done");
    let op = start_provider_with(
        &pre,
        &callback,
        &accounts,
        &[("OP_POST_LOGOUT_REDIRECT_URIS", &done)],
    )
    .await;
    let mut provider = provider_config(&op.issuer, ResponseMode::Query);
    provider.rp_initiated_logout = true;
    let app = serve_app(listener, base, provider, &scratch.path("users.db")).await;
    let browser = Browser::new();

    let steps = browser.login(&app, &op.issuer, "alice", "/me").await;
    assert!(steps.contains(&Step::LoginForm), "{steps:#?}");
    assert_eq!(browser.me(&app).await.0, StatusCode::OK);

    let logout = browser
        .post_form(
            &format!("{}/auth/logout?return_to=/me%3Fbye", app.base),
            &[],
        )
        .await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let end_session = location(&logout, logout.url());
    assert_eq!(
        end_session.as_str().split('?').next(),
        Some(format!("{}/session/end", op.issuer).as_str()),
        "the end_session_endpoint from discovery"
    );
    assert_eq!(query(&end_session, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        query(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(done.as_str())
    );
    let state = query(&end_session, "state").expect("state");
    assert!(query(&end_session, "id_token_hint").is_some_and(|t| t.split('.').count() == 3));
    assert_eq!(
        browser.me(&app).await.0,
        StatusCode::UNAUTHORIZED,
        "the local session ended first"
    );

    // At the provider: it checks the hint and the registered URI, asks for confirmation.
    let page = browser.get(end_session.as_str()).await;
    let confirmed = confirm_logout_at_provider(&browser, page).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    let back = location(&confirmed, confirmed.url());
    assert_eq!(back.as_str().split('?').next(), Some(done.as_str()));
    assert_eq!(query(&back, "state").as_deref(), Some(state.as_str()));

    // Back at the app: the state is checked and used up, and the browser lands on return_to.
    let landed = browser.get(back.as_str()).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()[LOCATION], "/me?bye");
    assert_eq!(browser.me(&app).await.0, StatusCode::UNAUTHORIZED);
    let again = browser.get(back.as_str()).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "single use");

    // The provider's session ended too: a new login asks for the login again.
    let steps = browser.login(&app, &op.issuer, "alice", "/me").await;
    assert!(
        steps.contains(&Step::LoginForm),
        "the provider asks who logs in: {:?}",
        labels(&steps)
    );
    assert_eq!(browser.me(&app).await.0, StatusCode::OK);
    drop(op);
}

/// Back-Channel Logout 1.0 against oidc-provider: a logout confirmed at the provider (its
/// end-session page, not through the app) makes it post a logout token (`sub` and `sid`) to
/// the app's back-channel URI at instance A, and the session ends on both instances A and B,
/// which share one SQLite file and a PostgreSQL invalidation bus (B had the session cached).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn backchannel_logout_from_the_provider_ends_the_session_on_both_instances() {
    let test = "backchannel_logout_from_the_provider_ends_the_session_on_both_instances";
    let Some(pre) = prerequisites(test) else {
        return;
    };
    let Some(pg_url) = pg::fresh_database().await else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("backchannel");
    let accounts = scratch.path("accounts.json");
    write_accounts(&accounts, &alice("alice@example.org", "Alice", &["admins"]));
    let (listener_a, base_a) = bind_app().await;
    let (listener_b, base_b) = bind_app().await;
    let callback = format!("{base_a}/auth/{PROVIDER_ID}/callback");
    let backchannel = format!("{base_a}/auth/{PROVIDER_ID}/backchannel-logout");
    let op = start_provider_with(
        &pre,
        &callback,
        &accounts,
        &[("OP_BACKCHANNEL_LOGOUT_URI", &backchannel)],
    )
    .await;
    let mut provider = provider_config(&op.issuer, ResponseMode::Query);
    provider.backchannel_logout = true;
    let key = jit_provision::session::SessionKey::generate();
    let db = scratch.path("users.db");
    let mut instances = Vec::new();
    for (listener, base) in [(listener_a, base_a.clone()), (listener_b, base_b)] {
        let bus = jit_provision::store::PostgresStore::connect(&pg_url)
            .await
            .expect("the PostgreSQL bus");
        let key = key.clone();
        let app = serve_app_with(listener, base, &base_a, provider.clone(), &db, |b| {
            b.session_key(key).invalidation_bus(bus)
        })
        .await;
        instances.push(app);
    }
    let (a, b) = (&instances[0], &instances[1]);
    let browser = Browser::new();

    browser.login(a, &op.issuer, "alice", "/me").await;
    assert_eq!(browser.me(a).await.0, StatusCode::OK, "logged in at A");
    let (status, me) = browser.me(b).await;
    assert_eq!(status, StatusCode::OK, "and at B (the same cookie): {me}");
    assert_eq!(me["subject"], "alice");

    // Logged out at the provider itself: its end-session page, confirmed.
    let page = browser.get(&format!("{}/session/end", op.issuer)).await;
    let confirmed = confirm_logout_at_provider(&browser, page).await;
    assert!(
        confirmed.status().is_redirection() || confirmed.status() == StatusCode::OK,
        "{}",
        confirmed.status()
    );
    // The provider awaits the delivery before answering: A has ended the session.
    assert_eq!(
        browser.me(a).await.0,
        StatusCode::UNAUTHORIZED,
        "ended at A"
    );
    // B hears it on the bus (asynchronously; without the bus its cached record would serve
    // for cache.ttl_secs, 60 s).
    let mut at_b = browser.me(b).await.0;
    for _ in 0..500 {
        if at_b == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        at_b = browser.me(b).await.0;
    }
    assert_eq!(
        at_b,
        StatusCode::UNAUTHORIZED,
        "ended at B, which had it cached"
    );
    drop(op);
}

// ---------------------------------------------------------------------------------------------
// Tokens for calling APIs on the user's behalf
// ---------------------------------------------------------------------------------------------

/// How long access tokens live at the provider in the refresh tests, in seconds.
const ACCESS_TOKEN_TTL: &str = "4";
/// Past the point where the layer refreshes such a token: half its lifetime (the margin, 60 s
/// by default, is capped at half the lifetime).
const PAST_REFRESH_POINT: Duration = Duration::from_secs(3);

async fn idp_token(token: jit_provision::IdpAccessToken) -> Json<Value> {
    Json(json!({ "token": token.secret(), "expires_at": token.expires_at() }))
}

/// The session key of every instance in the token tests (cookies open on all of them).
const SESSION_KEY: [u8; 64] = [7; 64];

/// One instance of the app, with `/me` and `/token` (an `IdpAccessToken` handler), its users
/// and sessions in the SQLite file `db` (which other instances may share).
async fn serve_token_app(
    listener: tokio::net::TcpListener,
    base: String,
    provider: ProviderConfig,
    db: &Path,
) -> App {
    let store = SqliteStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the SQLite store");
    serve_token_app_on(listener, base, provider, store.clone(), store).await
}

/// [`serve_token_app`] on `store` (users, sessions, one-time values); `sqlite` is the
/// [`App`]'s own store (for a PostgreSQL instance, an unused one).
async fn serve_token_app_on<S>(
    listener: tokio::net::TcpListener,
    base: String,
    provider: ProviderConfig,
    store: S,
    sqlite: SqliteStore,
) -> App
where
    S: UserStore + jit_provision::replay::ReplayGuard + Clone,
{
    let key = jit_provision::session::SessionKey::from_bytes(&SESSION_KEY).unwrap();
    let layer = JitLayer::builder()
        .public_url(base.clone())
        .insecure_cookies_for_localhost()
        .session_key(key)
        .provider(PROVIDER_ID, provider)
        .store(store.clone())
        .replay_guard(store)
        .build()
        .expect("layer builds");
    let app = Router::new()
        .route("/me", get(me))
        .route("/token", get(idp_token))
        .layer(layer);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("app server");
    });
    App {
        callback: format!("{base}/auth/{PROVIDER_ID}/callback"),
        base,
        store: sqlite,
    }
}

/// The provider with `store_tokens`.
fn token_provider(issuer: &str) -> ProviderConfig {
    let mut provider = provider_config(issuer, ResponseMode::Query);
    provider.store_tokens = true;
    provider
}

/// `GET /token` at `app`: the status and the JSON answer.
async fn token_at(browser: &Browser, app: &App) -> (StatusCode, Value) {
    let response = browser
        .client
        .get(format!("{}/token", app.base))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The token of a `200` answer of `/token`.
fn token_of((status, body): &(StatusCode, Value)) -> String {
    assert_eq!(*status, StatusCode::OK, "{body}");
    body["token"].as_str().expect("a token").to_owned()
}

/// The provider's userinfo with an access token: the status and its `sub`.
async fn userinfo_with(op: &OpenIdProvider, token: &str) -> (StatusCode, Option<String>) {
    let response = reqwest::Client::new()
        .get(format!("{}/me", op.issuer))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["sub"].as_str().map(str::to_owned))
}

/// The refresh requests the provider has seen: (answered, refused).
fn refreshes(op: &OpenIdProvider) -> (usize, usize) {
    let log = op.log.lock().unwrap_or_else(|e| e.into_inner());
    let count = |line: &str| log.lines().filter(|l| l.trim() == line).count();
    (count("REFRESH ok"), count("REFRESH error"))
}

/// The refresh requests once the provider's output reached at least `total` of them (its
/// stdout is read by a task of its own), and a moment later, so that one more would show.
async fn settled_refreshes(op: &OpenIdProvider, total: usize) -> (usize, usize) {
    for _ in 0..100 {
        let (ok, refused) = refreshes(op);
        if ok + refused >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    refreshes(op)
}

/// How and why the sessions in `app`'s store ended.
async fn session_ends(app: &App) -> Vec<Option<String>> {
    sqlx::query_scalar("SELECT end_reason FROM jit_sessions ORDER BY created_at")
        .fetch_all(app.store.pool())
        .await
        .unwrap()
}

/// With `store_tokens`, a handler taking `IdpAccessToken` gets the provider's access token;
/// past its refresh point, eight concurrent requests at two instances sharing one SQLite file
/// get one new token from ONE refresh request at the provider; the rotated refresh token was
/// stored, since the next refresh (which needs it: the old one is spent) succeeds too.
#[tokio::test]
async fn stored_tokens_refresh_once_across_two_instances_with_rotation() {
    let Some(pre) = prerequisites("stored_tokens_refresh_once_across_two_instances_with_rotation")
    else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("refresh");
    let db = scratch.path("users.db");
    refresh_once_at_two_instances(&pre, &scratch, |listener, base, provider| {
        serve_token_app(listener, base, provider, &db)
    })
    .await;
}

/// As [`stored_tokens_refresh_once_across_two_instances_with_rotation`], the two instances
/// sharing one PostgreSQL database (the row lock, `SELECT ... FOR UPDATE`).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn stored_tokens_refresh_once_across_two_instances_on_postgres() {
    let Some(pre) = prerequisites("stored_tokens_refresh_once_across_two_instances_on_postgres")
    else {
        return;
    };
    let Some(url) = pg::fresh_database().await else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("refresh-pg");
    refresh_once_at_two_instances(&pre, &scratch, |listener, base, provider| {
        let url = url.clone();
        async move {
            let store = jit_provision::store::PostgresStore::connect(&url)
                .await
                .expect("connect to PostgreSQL");
            let unused = SqliteStore::connect("sqlite::memory:").await.unwrap();
            serve_token_app_on(listener, base, provider, store, unused).await
        }
    })
    .await;
}

/// A provider issuing refresh tokens and short-lived access tokens, `accounts` in its accounts
/// file, and the app's listener (its callback registered): the provider, the listener, the
/// app's base and the accounts file.
async fn start_refreshing_provider(
    pre: &Prerequisites,
    scratch: &Scratch,
    accounts: &Value,
) -> (OpenIdProvider, tokio::net::TcpListener, String, PathBuf) {
    let file = scratch.path("accounts.json");
    write_accounts(&file, accounts);
    let (listener, base) = bind_app().await;
    let callback = format!("{base}/auth/{PROVIDER_ID}/callback");
    let op = start_provider_with(
        pre,
        &callback,
        &file,
        &[("OP_ACCESS_TOKEN_TTL", ACCESS_TOKEN_TTL)],
    )
    .await;
    (op, listener, base, file)
}

/// The body of the two tests above: `serve` starts an instance on the shared store.
async fn refresh_once_at_two_instances<F, Fut>(pre: &Prerequisites, scratch: &Scratch, serve: F)
where
    F: Fn(tokio::net::TcpListener, String, ProviderConfig) -> Fut,
    Fut: std::future::Future<Output = App>,
{
    let accounts = alice("alice@example.org", "Alice", &["admins"]);
    let (op, listener, base, _) = start_refreshing_provider(pre, scratch, &accounts).await;
    let a = serve(listener, base, token_provider(&op.issuer)).await;
    let (listener, base) = bind_app().await;
    let b = serve(listener, base, token_provider(&op.issuer)).await;
    let browser = Browser::new();
    browser.login(&a, &op.issuer, "alice", "/me").await;

    let first = token_of(&token_at(&browser, &a).await);
    assert_eq!(
        userinfo_with(&op, &first).await,
        (StatusCode::OK, Some("alice".to_owned())),
        "the handler got the provider's access token"
    );
    let (ok, refused) = settled_refreshes(&op, 0).await;
    assert_eq!(refused, 0);

    tokio::time::sleep(PAST_REFRESH_POINT).await;
    let answers = futures_util::future::join_all(
        (0..8).map(|i| token_at(&browser, if i % 2 == 0 { &a } else { &b })),
    )
    .await;
    let tokens: Vec<String> = answers.iter().map(token_of).collect();
    assert_ne!(tokens[0], first, "a refreshed token");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let (ok_after, refused_after) = settled_refreshes(&op, ok + 1).await;
    eprintln!(
        "measured: {} refresh request(s) at the provider for 8 concurrent requests at 2 instances",
        ok_after + refused_after - ok - refused
    );
    assert_eq!(
        (ok_after - ok, refused_after),
        (1, 0),
        "one refresh request"
    );
    assert_eq!(
        userinfo_with(&op, &tokens[0]).await.0,
        StatusCode::OK,
        "the refreshed token works at the provider"
    );

    // The second refresh spends the rotated refresh token (the first one is used up: the
    // provider would refuse it and revoke the grant).
    tokio::time::sleep(PAST_REFRESH_POINT).await;
    let third = token_of(&token_at(&browser, &b).await);
    assert_ne!(third, tokens[0]);
    assert_eq!(settled_refreshes(&op, ok + 2).await, (ok + 2, 0));
    assert_eq!(token_of(&token_at(&browser, &a).await), third);
    assert_eq!(browser.me(&a).await.0, StatusCode::OK);
    let log = op.log.lock().unwrap().clone();
    assert!(!log.contains("already used"), "{log}");
    drop(op);
}

/// The provider refuses the refresh token (`invalid_grant`: the account is gone): the
/// extractor answers `401 idp_refresh_refused` and the session is over, in the store too.
#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    let Some(pre) = prerequisites("a_refused_refresh_ends_the_session") else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("refresh-refused");
    let with_alice = alice("alice@example.org", "Alice", &["admins"]);
    let (op, listener, base, accounts) =
        start_refreshing_provider(&pre, &scratch, &with_alice).await;
    let app = serve_token_app(
        listener,
        base,
        token_provider(&op.issuer),
        &scratch.path("users.db"),
    )
    .await;
    let browser = Browser::new();
    browser.login(&app, &op.issuer, "alice", "/me").await;
    token_of(&token_at(&browser, &app).await);

    let mut without_alice = with_alice;
    without_alice.as_object_mut().unwrap().remove("alice");
    write_accounts(&accounts, &without_alice);
    tokio::time::sleep(PAST_REFRESH_POINT).await;
    let (status, body) = token_at(&browser, &app).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "idp_refresh_refused", "{body}");
    assert_eq!(settled_refreshes(&op, 1).await.1, 1, "the provider refused");
    assert_eq!(browser.me(&app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        session_ends(&app).await,
        [Some("refresh_refused".to_owned())]
    );
    drop(op);
}

/// With `resync_on_refresh`, a refresh reads the claims again from the refreshed ID token
/// and updates the user as a login does: a group removed at the provider is gone without a
/// new login; once the admission rules refuse the claims, the session ends.
#[tokio::test]
async fn resync_on_refresh_applies_changed_claims() {
    let Some(pre) = prerequisites("resync_on_refresh_applies_changed_claims") else {
        return;
    };
    init_tracing();
    let scratch = Scratch::new("resync");
    let staff = alice("alice@example.org", "Alice", &["admins", "staff"]);
    let (op, listener, base, accounts) = start_refreshing_provider(&pre, &scratch, &staff).await;
    let mut provider = token_provider(&op.issuer);
    provider.resync_on_refresh = true;
    provider.admission.require_groups = Some(vec!["staff".into()]);
    let app = serve_token_app(listener, base, provider, &scratch.path("users.db")).await;
    let browser = Browser::new();
    browser.login(&app, &op.issuer, "alice", "/me").await;
    let (status, me) = browser.me(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["groups"], json!(["admins", "staff"]));

    write_accounts(
        &accounts,
        &alice("alice@example.org", "Alice Smith", &["staff"]),
    );
    tokio::time::sleep(PAST_REFRESH_POINT).await;
    token_of(&token_at(&browser, &app).await);
    let (status, me) = browser.me(&app).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me["groups"],
        json!(["staff"]),
        "the group removed at the IdP"
    );
    assert_eq!(me["display_name"], "Alice Smith");

    write_accounts(&accounts, &alice("alice@example.org", "Alice Smith", &[]));
    tokio::time::sleep(PAST_REFRESH_POINT).await;
    let (status, body) = token_at(&browser, &app).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(browser.me(&app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        session_ends(&app).await,
        [Some("resync_refused".to_owned())]
    );
    drop(op);
}
