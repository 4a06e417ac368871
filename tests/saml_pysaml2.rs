//! Interop with a second real SAML 2.0 identity provider: pysaml2 (PyPI), driven as a browser
//! would. `tests/pysaml2-idp/idp.py` runs on 127.0.0.1 (a free port it reports), with
//! `WantAuthnRequestsSigned="true"` in its metadata and pysaml2's own check of the
//! HTTP-Redirect signature of every AuthnRequest; the layer runs on another port and reads
//! that metadata by URL. A reqwest client with a cookie jar plays the browser: `GET` login →
//! the signed redirect to pysaml2 → its auto-submitting HTTP-POST form → `POST` to our ACS →
//! the session cookie → `/me`.
//!
//! Cases: a signed AuthnRequest and an RSA-SHA256 signed assertion log in (and a request
//! whose signed octets were changed is refused by pysaml2), so does an RSA-SHA256 signed
//! Response alone; pysaml2's defaults, RSA-SHA1 signatures and 3DES (`tripledes-cbc`)
//! encryption, are refused with a message naming the algorithm, and no session (its SHA-1
//! logs in with `allow_sha1`); an IdP that wants signed requests, with no SP key, refuses
//! the provider.
//!
//! Prerequisites: `python3` (`$JIT_PYTHON` to pick another) with `pysaml2` (`pip install
//! pysaml2==7.5.5`) and the `xmlsec1` binary (Debian `xmlsec1`). Missing, the tests print a
//! loud skip notice and pass, unless `JIT_REQUIRE_INTEROP=1`, which makes them fail.

mod saml_common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use jit_provision::saml::SamlConfig;
use jit_provision::store::MemoryStore;
use jit_provision::{CurrentUser, JitLayer, MappingConfig, ProviderConfig};
use reqwest::StatusCode;
use saml_common::{KeyPair, Scratch, keys, skip};
use serde_json::{Value, json};

const PROVIDER: &str = "corp";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// How long pysaml2 may take to start and report its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------------------------

/// What the IdP needs: a Python with pysaml2, and xmlsec1.
struct Prerequisites {
    python: PathBuf,
    xmlsec1: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The prerequisites, or `None` after a loud skip notice; panics under
/// `JIT_REQUIRE_INTEROP=1`.
fn prerequisites(test: &str) -> Option<Prerequisites> {
    let mut missing = Vec::new();
    let python = match std::env::var_os("JIT_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => on_path("python3"),
    };
    match &python {
        None => missing.push("python3 is not on PATH (or set JIT_PYTHON to its path)".to_owned()),
        Some(python) => {
            let import = Command::new(python)
                .args(["-c", "import saml2.server"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !import.is_ok_and(|s| s.success()) {
                missing.push(format!(
                    "{} cannot import pysaml2: run `pip install pysaml2==7.5.5`",
                    python.display()
                ));
            }
        }
    }
    let xmlsec1 = on_path("xmlsec1");
    if xmlsec1.is_none() {
        missing.push("xmlsec1 is not on PATH (Debian: apt-get install xmlsec1)".to_owned());
    }
    if missing.is_empty() {
        return Some(Prerequisites {
            python: python.expect("checked"),
            xmlsec1: xmlsec1.expect("checked"),
        });
    }
    skip(test, "pysaml2", &missing);
    None
}

// ---------------------------------------------------------------------------------------------
// The pysaml2 identity provider
// ---------------------------------------------------------------------------------------------

/// The running IdP: killed and reaped on drop, its stderr shown when the test failed.
struct Idp {
    base: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- pysaml2 IdP stderr ----\n{log}----------------------------");
        }
    }
}

/// How pysaml2 answers (see idp.py).
fn response_options(sign_alg: Option<&str>, encrypt: bool) -> Value {
    json!({
        "sign_alg": sign_alg,
        "digest_alg": sign_alg.map(|_| SHA256),
        "sign_assertion": true,
        // An encrypted assertion comes in a Response signed after encryption.
        "sign_response": encrypt,
        "encrypt_assertion": encrypt,
    })
}

/// Starts idp.py with the IdP key `signing`, fetching the SP metadata from
/// `sp_metadata_url` at its first SSO request.
fn start_idp(
    pre: &Prerequisites,
    scratch: &Scratch,
    signing: &KeyPair,
    sp_metadata_url: &str,
    response: Value,
) -> Idp {
    let settings = json!({
        "key_file": scratch.write("idp-key.pem", &signing.key_pem),
        "cert_file": scratch.write("idp-cert.pem", &signing.cert_pem),
        "sp_metadata_url": sp_metadata_url,
        "xmlsec1": pre.xmlsec1,
        "want_authn_requests_signed": true,
        "response": response,
        "user": {
            "name_id": "u-5678-persistent",
            "attributes": {
                "mail": ["ada@example.com"],
                "displayName": ["Ada Lovelace"],
                "eduPersonAffiliation": ["staff", "admins"],
            },
        },
    });
    let settings = scratch.write("settings.json", &settings.to_string());
    let log = scratch.path("idp-stderr.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pysaml2-idp/idp.py");
    let mut child = Command::new(&pre.python)
        .arg(script)
        .arg(&settings)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {} failed: {e}", pre.python.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut idp = Idp {
        base: String::new(),
        child,
        log,
    };
    let line = rx
        .recv_timeout(START_TIMEOUT)
        .unwrap_or_else(|_| panic!("the pysaml2 IdP did not start within {START_TIMEOUT:?}"));
    let port: u16 = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the pysaml2 IdP did not report its port: {line:?}"));
    idp.base = format!("http://127.0.0.1:{port}");
    idp
}

// ---------------------------------------------------------------------------------------------
// The application under test
// ---------------------------------------------------------------------------------------------

struct App {
    base: String,
    store: MemoryStore,
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn sp_metadata_url(&self) -> String {
        self.url(&format!("/auth/{PROVIDER}/metadata"))
    }
}

/// The SAML provider: the IdP's metadata by URL, the SP key and certificate (`keys().sp`).
fn saml_config(idp_base: &str) -> SamlConfig {
    let mut config = SamlConfig::from_metadata_url(format!("{idp_base}/metadata"));
    config.sp_private_key_pem = Some(keys().sp.key_pem.clone());
    config.sp_certificate_pem = Some(keys().sp.cert_pem.clone());
    config
}

fn provider(config: SamlConfig) -> ProviderConfig {
    ProviderConfig::saml(config).mapping({
        let mut built = MappingConfig::default();
        built.username = "{mail | localpart}".into();
        built.email = "{mail}".into();
        built.display_name = "{displayName}".into();
        built
    })
}

/// Binds the app's port: its URL is in the SP metadata pysaml2 reads.
async fn bind_app() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    (listener, base)
}

fn build(base: &str, provider: ProviderConfig, store: &MemoryStore) -> Result<JitLayer, String> {
    JitLayer::builder()
        .public_url(base)
        .insecure_cookies_for_localhost()
        .provider(PROVIDER, provider)
        .store(store.clone())
        .build()
        .map_err(|e| e.to_string())
}

async fn serve_app(listener: tokio::net::TcpListener, base: String, config: SamlConfig) -> App {
    let store = MemoryStore::new();
    let layer = build(&base, provider(config), &store).expect("layer builds");
    let app = Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move {
                format!(
                    "{}|{}|{}",
                    u.username,
                    u.email.as_deref().unwrap_or_default(),
                    u.auth.provider
                )
            }),
        )
        .layer(layer);
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("app server");
    });
    App { base, store }
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The HTTP-POST binding's auto-submitting form: its action and fields. pysaml2's page is
/// well-formed XHTML but for its `<!DOCTYPE html>`.
fn post_form(html: &str) -> (String, Vec<(String, String)>) {
    let body = html
        .trim_start()
        .strip_prefix("<!DOCTYPE html>")
        .unwrap_or(html);
    let doc = roxmltree::Document::parse(body)
        .unwrap_or_else(|e| panic!("pysaml2's form page is not XHTML ({e}):\n{html}"));
    let form = doc
        .descendants()
        .find(|n| n.has_tag_name("form"))
        .unwrap_or_else(|| panic!("no form in:\n{html}"));
    assert_eq!(form.attribute("method"), Some("post"));
    let fields = form
        .descendants()
        .filter(|n| n.has_tag_name("input") && n.attribute("type") == Some("hidden"))
        .map(|n| {
            (
                n.attribute("name").unwrap().to_owned(),
                n.attribute("value").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (form.attribute("action").unwrap().to_owned(), fields)
}

/// A login as far as the ACS: our redirect (checked to be signed), pysaml2's answer, and our
/// ACS's answer to the form it carried.
async fn login(client: &reqwest::Client, app: &App, idp: &Idp) -> reqwest::Response {
    let start = client
        .get(app.url(&format!("/auth/{PROVIDER}/login?return_to=/me")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let to_idp = location(&start);
    assert!(
        to_idp.starts_with(&format!("{}/sso?", idp.base)),
        "{to_idp}"
    );
    assert_eq!(
        query_param(&to_idp, "SigAlg").as_deref(),
        Some(RSA_SHA256),
        "the IdP wants signed requests: {to_idp}"
    );
    assert!(query_param(&to_idp, "Signature").is_some());
    let page = client.get(&to_idp).send().await.unwrap();
    let status = page.status();
    let html = page.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "pysaml2 refused the request: {html}"
    );
    let (action, fields) = post_form(&html);
    assert_eq!(action, app.url(&format!("/auth/{PROVIDER}/acs")));
    assert!(fields.iter().any(|(k, _)| k == "SAMLResponse"));
    client
        .post(&action)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&fields)
        .send()
        .await
        .unwrap()
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

fn sets_session(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("jit_session=") && !c.starts_with("jit_session=;"))
}

async fn me(client: &reqwest::Client, app: &App) -> (StatusCode, String) {
    let response = client
        .get(app.url("/me"))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The scratch directory, IdP and app of one test (`None` after the skip notice): the app's
/// port first (pysaml2 reads our metadata from it), then pysaml2 (our provider reads its
/// metadata from it), then the app.
async fn setup(
    test: &str,
    response: Value,
    config: impl FnOnce(SamlConfig) -> SamlConfig,
) -> Option<(Scratch, Idp, App)> {
    let pre = prerequisites(test)?;
    let scratch = Scratch::new(&format!("pysaml2-{test}"));
    let (listener, base) = bind_app().await;
    let sp_metadata_url = format!("{base}/auth/{PROVIDER}/metadata");
    let idp = start_idp(&pre, &scratch, &keys().idp, &sp_metadata_url, response);
    let app = serve_app(listener, base, config(saml_config(&idp.base))).await;
    Some((scratch, idp, app))
}

/// A refused login: the ACS's status, code and message; and that nothing was left: no
/// session cookie, `/me` unauthenticated, no user.
async fn assert_refused(
    client: &reqwest::Client,
    app: &App,
    acs: reqwest::Response,
    message: &str,
) {
    assert!(!sets_session(&acs), "a refused login sets no session");
    assert_eq!(acs.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_str(&acs.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "saml_disallowed_algorithm", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(message),
        "the refusal names the algorithm: {body}"
    );
    assert_eq!(me(client, app).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.user_count(), 0, "no user provisioned");
}

/// A whole login that succeeds: the ACS sets the session and sends the browser back to
/// `return_to`, where the provisioned user is seen.
async fn assert_logs_in(client: &reqwest::Client, app: &App, idp: &Idp) {
    let acs = login(client, app, idp).await;
    assert_eq!(
        acs.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        acs.text().await
    );
    assert!(sets_session(&acs));
    assert_eq!(location(&acs), "/me");
    let (status, body) = me(client, app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("ada|ada@example.com|{PROVIDER}"));
    assert_eq!(app.store.user_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn signed_request_and_rsa_sha256_assertion_log_in() {
    let Some((_scratch, idp, app)) = setup(
        "signed_request_and_rsa_sha256_assertion_log_in",
        response_options(Some(RSA_SHA256), false),
        |c| c,
    )
    .await
    else {
        return;
    };
    let client = browser();
    assert_logs_in(&client, &app, &idp).await;

    // Our metadata, as pysaml2 read it at its first SSO request: signed requests, and the
    // certificate to check them with.
    let metadata = get_text(&client, &app.sp_metadata_url()).await;
    assert!(
        metadata.contains(r#"AuthnRequestsSigned="true""#),
        "{metadata}"
    );
    assert!(metadata.contains(r#"<md:KeyDescriptor use="signing">"#));

    // pysaml2 checks the signature for real: the same request with another RelayState (one
    // signed octet changed) is refused.
    let start = client
        .get(app.url(&format!("/auth/{PROVIDER}/login?return_to=/me")))
        .send()
        .await
        .unwrap();
    let to_idp = location(&start);
    let relay = query_param(&to_idp, "RelayState").unwrap();
    let forged = to_idp.replace(
        &format!("RelayState={relay}"),
        &format!("RelayState=x{relay}"),
    );
    let refused = client.get(&forged).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let why = refused.text().await.unwrap();
    assert!(why.starts_with("IncorrectlySigned"), "{why}");
}

/// pysaml2 signing the Response only (RSA-SHA256), the assertion inside unsigned.
#[tokio::test]
async fn pysaml2_signed_response_only_logs_in() {
    let mut response = response_options(Some(RSA_SHA256), false);
    response["sign_assertion"] = json!(false);
    response["sign_response"] = json!(true);
    let Some((_scratch, idp, app)) =
        setup("pysaml2_signed_response_only_logs_in", response, |c| c).await
    else {
        return;
    };
    assert_logs_in(&browser(), &app, &idp).await;
}

/// pysaml2's defaults (RSA-SHA1, SHA-1) are accepted with `allow_sha1`, the documented
/// escape hatch for an IdP that cannot be changed.
#[tokio::test]
async fn pysaml2_defaults_log_in_with_allow_sha1() {
    let allow_sha1 = |mut c: SamlConfig| {
        c.allow_sha1 = true;
        c
    };
    let Some((_scratch, idp, app)) = setup(
        "pysaml2_defaults_log_in_with_allow_sha1",
        response_options(None, false),
        allow_sha1,
    )
    .await
    else {
        return;
    };
    assert_logs_in(&browser(), &app, &idp).await;
}

/// A login whose response pysaml2 makes with `response` options: refused by the ACS with a
/// message containing `message`, leaving nothing behind.
async fn refused_login(test: &str, response: Value, message: &str) {
    let Some((_scratch, idp, app)) = setup(test, response, |c| c).await else {
        return;
    };
    let client = browser();
    let acs = login(&client, &app, &idp).await;
    assert_refused(&client, &app, acs, message).await;
}

#[tokio::test]
async fn pysaml2_default_rsa_sha1_is_refused_by_name() {
    // pysaml2's defaults: RSA-SHA1 over a SHA-1 digest.
    refused_login(
        "pysaml2_default_rsa_sha1_is_refused_by_name",
        response_options(None, false),
        "signature algorithm http://www.w3.org/2000/09/xmldsig#rsa-sha1 is not accepted",
    )
    .await;
}

#[tokio::test]
async fn pysaml2_3des_encryption_is_refused_by_name() {
    // Signed with RSA-SHA256, encrypted the only way pysaml2 does: 3DES-CBC.
    refused_login(
        "pysaml2_3des_encryption_is_refused_by_name",
        response_options(Some(RSA_SHA256), true),
        "encryption algorithm http://www.w3.org/2001/04/xmlenc#tripledes-cbc is not accepted",
    )
    .await;
}

/// An IdP whose metadata wants signed requests, and no SP key to sign with: refused when the
/// provider is built (metadata file), or when its metadata URL is loaded (at the first
/// login), never a silently unsigned request.
#[tokio::test]
async fn an_idp_wanting_signed_requests_needs_the_sp_key() {
    let keyless = |mut c: SamlConfig| {
        c.sp_private_key_pem = None;
        c.sp_certificate_pem = None;
        c
    };
    let Some((scratch, idp, app)) = setup(
        "an_idp_wanting_signed_requests_needs_the_sp_key",
        response_options(Some(RSA_SHA256), false),
        keyless,
    )
    .await
    else {
        return;
    };
    let client = browser();
    let start = client
        .get(app.url(&format!("/auth/{PROVIDER}/login?return_to=/me")))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = serde_json::from_str(&start.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "saml_config_invalid", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#"WantAuthnRequestsSigned="true" needs sp_private_key_pem"#),
        "{body}"
    );

    // The same metadata in a file: the provider is refused at start.
    let metadata = get_text(&client, &format!("{}/metadata", idp.base)).await;
    assert!(metadata.contains(r#"WantAuthnRequestsSigned="true""#));
    let file = scratch.write("idp-metadata.xml", &metadata);
    let (_, base) = bind_app().await;
    let err = build(
        &base,
        provider(SamlConfig::from_metadata_file(&file)),
        &MemoryStore::new(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        err.contains(r#"WantAuthnRequestsSigned="true" needs sp_private_key_pem"#),
        "{err}"
    );
    // With the key and certificate it builds.
    let mut with_key = SamlConfig::from_metadata_file(&file);
    with_key.sp_private_key_pem = Some(keys().sp.key_pem.clone());
    with_key.sp_certificate_pem = Some(keys().sp.cert_pem.clone());
    build(&base, provider(with_key), &MemoryStore::new()).expect("builds with the SP key");
}
