//! Shared by the SAML tests: keys and certificates made at run time, the service provider
//! under test, and the samlify identity provider (`node tests/saml-idp/idp.mjs`), run once
//! per batch of responses.
//!
//! Prerequisites: node (`$JIT_NODE`, else `node` on `PATH`) and `tests/saml-idp/node_modules`
//! (`npm ci --prefix tests/saml-idp`). Missing, the tests print a loud skip notice and pass,
//! unless `JIT_REQUIRE_INTEROP=1`, which makes them fail.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use jit_provision::saml::{SamlConfig, SamlServiceProvider};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const PROVIDER_ID: &str = "corp";
pub const IDP_ENTITY_ID: &str = "https://idp.example.test/saml/metadata";
pub const IDP_SSO_URL: &str = "https://idp.example.test/saml/sso";
pub const ACS_URL: &str = "https://app.example.test/auth/corp/acs";
pub const METADATA_URL: &str = "https://app.example.test/auth/corp/metadata";
/// Longest a samlify batch may take.
const IDP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// A private key and its self-signed certificate, PEM.
#[derive(Clone)]
pub struct KeyPair {
    pub key_pem: String,
    pub cert_pem: String,
    pub key: PKey<Private>,
}

/// The keys of a test run: two IdP RSA keys (a rollover), the SP's RSA key, an IdP EC key.
pub struct Keys {
    pub idp: KeyPair,
    pub idp_next: KeyPair,
    pub sp: KeyPair,
    pub idp_ec: KeyPair,
    pub stranger: KeyPair,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        idp: self_signed(rsa(), "idp"),
        idp_next: self_signed(rsa(), "idp-next"),
        sp: self_signed(rsa(), "sp"),
        idp_ec: self_signed(ec(), "idp-ec"),
        stranger: self_signed(rsa(), "stranger"),
    })
}

fn rsa() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn ec() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn self_signed(key: PKey<Private>, cn: &str) -> KeyPair {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_u32())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    builder.set_serial_number(&serial).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(3650).unwrap())
        .unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = builder.build();
    KeyPair {
        key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        cert_pem: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        key,
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    openssl::rand::rand_bytes(&mut b).unwrap();
    u32::from_le_bytes(b) >> 1
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// A directory of its own under cargo's target tmp dir, removed at the end of the test.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("saml-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to the file `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The service provider under test
// ---------------------------------------------------------------------------------------------

/// An inline IdP trusting `keys().idp`, with the SP key for decryption.
pub fn sp_config() -> SamlConfig {
    let k = keys();
    let mut config = SamlConfig::inline(IDP_ENTITY_ID, IDP_SSO_URL, vec![k.idp.cert_pem.clone()]);
    config.sp_private_key_pem = Some(k.sp.key_pem.clone());
    config.sp_certificate_pem = Some(k.sp.cert_pem.clone());
    config
}

pub fn sp_with(config: SamlConfig) -> SamlServiceProvider {
    SamlServiceProvider::new(PROVIDER_ID, config, ACS_URL, METADATA_URL).expect("valid SP")
}

pub fn sp() -> SamlServiceProvider {
    sp_with(sp_config())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml.as_bytes())
}

pub fn unb64(value: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value.as_bytes())
            .unwrap(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The samlify identity provider
// ---------------------------------------------------------------------------------------------

pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/saml-idp")
}

/// `$JIT_NODE` when set, else the first executable `node` on `PATH`.
fn find_node() -> Result<PathBuf, String> {
    if let Some(explicit) = std::env::var_os("JIT_NODE").filter(|v| !v.is_empty()) {
        let explicit = PathBuf::from(explicit);
        return if explicit.is_file() {
            Ok(explicit)
        } else {
            Err(format!("JIT_NODE={} is not a file", explicit.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "node is not on PATH (or set JIT_NODE to its path)".to_owned())
}

/// Node, or `None` after a loud skip notice; panics under `JIT_REQUIRE_INTEROP=1`.
pub fn node(test: &str) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let node = find_node();
    if let Err(why) = &node {
        missing.push(why.clone());
    }
    for package in ["samlify", "@authenio/samlify-node-xmllint"] {
        let manifest = idp_dir()
            .join("node_modules")
            .join(package)
            .join("package.json");
        if !manifest.is_file() {
            missing.push(format!(
                "{} is missing: run `npm ci --prefix tests/saml-idp`",
                manifest.display()
            ));
        }
    }
    if missing.is_empty() {
        return node.ok();
    }
    skip(test, "samlify", &missing);
    None
}

/// `test` cannot run because the `idp` SAML identity provider is not available (`missing`
/// says why): a loud notice on stderr, or a panic under `JIT_REQUIRE_INTEROP=1`.
pub fn skip(test: &str, idp: &str, missing: &[String]) {
    let detail = missing.join("\n  - ");
    if std::env::var("JIT_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        panic!("JIT_REQUIRE_INTEROP=1 but the {idp} SAML IdP cannot run:\n  - {detail}");
    }
    // Straight to stderr: the test harness captures `eprintln!`, and a skip must be seen.
    let notice = format!(
        "\n==================== SKIPPED: {test} ====================\n\
         the {idp} SAML identity provider is not available:\n  - {detail}\n\
         (set JIT_REQUIRE_INTEROP=1 to make this a failure)\n\
         ==========================================================\n"
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
}

/// The IdP's settings for one batch: entity, SSO URL, the signing key and the certificates
/// its metadata publishes.
pub fn idp_settings(signing: &KeyPair, published: &[&KeyPair]) -> Value {
    json!({
        "entity_id": IDP_ENTITY_ID,
        "sso_url": IDP_SSO_URL,
        "private_key_pem": signing.key_pem,
        "signing_certificate_pem": signing.cert_pem,
        "certificates_pem": published.iter().map(|k| k.cert_pem.clone()).collect::<Vec<_>>(),
    })
}

/// What one batch produced.
pub struct IdpOutput {
    /// The IdP's metadata XML, as samlify publishes it.
    pub metadata: String,
    /// Per job: the base64 `SAMLResponse`, or the job's error.
    pub responses: Vec<Result<String, String>>,
}

/// A child process killed (and reaped) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `script` of tests/saml-idp with `input` as JSON on stdin; its JSON output. Bounded
/// by `IDP_TIMEOUT`.
pub fn run_script(node: &Path, script: &str, input: &Value) -> Value {
    let mut child = Reaped(
        Command::new(node)
            .arg(idp_dir().join(script))
            .current_dir(idp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} failed: {e}", node.display())),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let payload = serde_json::to_vec(input).unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&payload);
    });
    let mut stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + IDP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            panic!("the samlify IdP did not finish within {IDP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(
        status.success(),
        "the samlify IdP failed ({status}):\n{stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the samlify IdP printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// Runs samlify once over `jobs` (each a JSON object, see idp.mjs), with `sp_metadata` as
/// the service provider's metadata. Bounded by `IDP_TIMEOUT`.
pub fn run_idp(node: &Path, idp: Value, sp_metadata: &str, jobs: Vec<Value>) -> IdpOutput {
    run_idp_with(node, idp, sp_metadata, jobs, false)
}

/// [`run_idp`], with samlify validating each AuthnRequest against the SAML XSDs (xmllint)
/// when `schema_validation` (slow to start: seconds).
pub fn run_idp_with(
    node: &Path,
    idp: Value,
    sp_metadata: &str,
    jobs: Vec<Value>,
    schema_validation: bool,
) -> IdpOutput {
    let input = json!({
        "idp": idp,
        "sp_metadata": sp_metadata,
        "jobs": jobs,
        "schema_validation": schema_validation,
    });
    let output = run_script(node, "idp.mjs", &input);
    let responses = output["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["saml_response"].as_str() {
            Some(s) => Ok(s.to_owned()),
            None => Err(r["error"].as_str().unwrap_or("no result").to_owned()),
        })
        .collect();
    IdpOutput {
        metadata: output["idp_metadata"].as_str().unwrap().to_owned(),
        responses,
    }
}

/// A job for a solicited login: `request_url` from `SamlServiceProvider::authn_request`.
pub fn job(request_url: Option<&str>, sign_assertion: bool, sign_response: bool) -> Value {
    json!({
        "request_url": request_url,
        "name_id": "u-1234-persistent",
        "sign_assertion": sign_assertion,
        "sign_response": sign_response,
        "attributes": [
            { "name": "urn:oid:0.9.2342.19200300.100.1.3", "friendly_name": "mail",
              "values": ["jane@example.com"] },
            { "name": "urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "friendly_name": "isMemberOf",
              "values": ["staff", "admins"] },
            { "name": "employeeNumber", "values": ["E-42"] },
        ],
    })
}

// ---------------------------------------------------------------------------------------------
// XML surgery on genuine responses (for the negative suite)
// ---------------------------------------------------------------------------------------------

/// The byte range of the first element `{ns}name` in `xml` (optionally the one with `ID`).
pub fn element_range(xml: &str, local: &str, id: Option<&str>) -> std::ops::Range<usize> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == local
                && id.is_none_or(|id| n.attribute("ID") == Some(id))
        })
        .unwrap_or_else(|| panic!("no <{local}> in the response"))
        .range()
}

/// The text of the first element `local` (with `ID` when given).
pub fn element<'a>(xml: &'a str, local: &str, id: Option<&str>) -> &'a str {
    &xml[element_range(xml, local, id)]
}

/// The `ID` of the first element `local`.
pub fn id_of(xml: &str, local: &str) -> String {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)
        .and_then(|n| n.attribute("ID"))
        .unwrap()
        .to_owned()
}

/// `xml` without its first `ds:Signature` element.
pub fn without_signature(xml: &str) -> String {
    // Only the first Signature inside `xml` (callers pass the element itself).
    let range = element_range(xml, "Signature", None);
    format!("{}{}", &xml[..range.start], &xml[range.end..])
}

/// Replaces the first occurrence of `from` by `to`, asserting there is one.
pub fn replace_once(xml: &str, from: &str, to: &str) -> String {
    assert!(xml.contains(from), "`{from}` is not in the response");
    xml.replacen(from, to, 1)
}

// ---------------------------------------------------------------------------------------------
// Responses built here: XML Encryption and the IdP's signature, for ciphertexts no IdP makes
// ---------------------------------------------------------------------------------------------

/// XML Encryption's AES-128-CBC.
pub const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
/// XML Encryption 1.1's AES-128-GCM.
pub const AES128_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes128-gcm";

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b
}

/// `plaintext` padded as XML Encryption pads a CBC block: PKCS#7, one valid form of it.
pub fn xmlenc_pad(plaintext: &[u8]) -> Vec<u8> {
    let pad = 16 - plaintext.len() % 16;
    let mut out = plaintext.to_vec();
    out.extend(std::iter::repeat_n(pad as u8, pad));
    out
}

/// AES-128-CBC of `blocks` (a whole number of 16-byte blocks, padded by the caller) under
/// `key`, laid out as XML Encryption does: a random IV, then the ciphertext.
pub fn aes128_cbc(key: &[u8], blocks: &[u8]) -> Vec<u8> {
    use openssl::symm::{Cipher, Crypter, Mode};
    assert_eq!(blocks.len() % 16, 0, "whole blocks only");
    let iv = random_bytes(16);
    let mut crypter = Crypter::new(Cipher::aes_128_cbc(), Mode::Encrypt, key, Some(&iv)).unwrap();
    crypter.pad(false);
    let mut out = vec![0; blocks.len() + 16];
    let mut n = crypter.update(blocks, &mut out).unwrap();
    n += crypter.finalize(&mut out[n..]).unwrap();
    out.truncate(n);
    [iv, out].concat()
}

/// AES-128-GCM of `plaintext` under `key`, as XML Encryption 1.1 lays it out: a random
/// 12-byte IV, the ciphertext, the 16-byte tag.
pub fn aes128_gcm(key: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use openssl::symm::{Cipher, encrypt_aead};
    let iv = random_bytes(12);
    let mut tag = [0; 16];
    let body = encrypt_aead(
        Cipher::aes_128_gcm(),
        key,
        Some(&iv),
        &[],
        plaintext,
        &mut tag,
    )
    .unwrap();
    [iv, body, tag.to_vec()].concat()
}

/// `content_key` encrypted to `recipient`'s RSA key with RSA-OAEP (MGF1 and digest SHA-1,
/// XML Encryption's `rsa-oaep-mgf1p`).
pub fn rsa_oaep(recipient: &PKey<Private>, content_key: &[u8]) -> Vec<u8> {
    use openssl::pkey_ctx::PkeyCtx;
    let mut ctx = PkeyCtx::new(recipient).unwrap();
    ctx.encrypt_init().unwrap();
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .unwrap();
    let mut out = Vec::new();
    ctx.encrypt_to_vec(content_key, &mut out).unwrap();
    out
}

/// A `saml:EncryptedAssertion`: content `algorithm`, the key transported in an
/// `EncryptedKey` (RSA-OAEP) inside `KeyInfo`; both cipher values as given (base64).
pub fn encrypted_assertion_xml(
    algorithm: &str,
    wrapped_key_b64: &str,
    ciphertext_b64: &str,
) -> String {
    format!(
        concat!(
            r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="{algorithm}"/>"#,
            r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>"#,
            r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{key}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>"#,
            r#"<xenc:CipherData><xenc:CipherValue>{data}</xenc:CipherValue></xenc:CipherData>"#,
            r#"</xenc:EncryptedData></saml:EncryptedAssertion>"#
        ),
        algorithm = algorithm,
        key = wrapped_key_b64,
        data = ciphertext_b64,
    )
}

/// A success `samlp:Response` to our ACS around `assertion` (an `Assertion` or an
/// `EncryptedAssertion`, as XML), without `InResponseTo`; signed by `signer` (enveloped,
/// RSA-SHA256, exclusive c14n, by xmlsec through samael) unless `None`.
pub fn response_around(assertion: &str, signer: Option<&KeyPair>) -> String {
    let id = format!("_r{}", hex(&random_bytes(8)));
    let instant = chrono::DateTime::from_timestamp(now(), 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    let signature = match signer {
        None => String::new(),
        Some(_) => format!(
            concat!(
                r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
                r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
                r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
                r##"<ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"##,
                r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
                r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>"#,
                r#"</ds:SignedInfo><ds:SignatureValue/></ds:Signature>"#
            ),
            id = id
        ),
    };
    let xml = format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{acs}">"#,
            r#"<saml:Issuer>{idp}</saml:Issuer>{signature}"#,
            r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#,
            r#"{assertion}</samlp:Response>"#
        ),
        id = id,
        instant = instant,
        acs = ACS_URL,
        idp = IDP_ENTITY_ID,
        signature = signature,
        assertion = assertion,
    );
    match signer {
        None => xml,
        Some(signer) => {
            use samael::crypto::CryptoProvider as _;
            let der = signer.key.private_key_to_pkcs8().unwrap();
            samael::crypto::Crypto::sign_xml(&xml, &der).unwrap()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Driving the layer as a browser would
// ---------------------------------------------------------------------------------------------

pub fn set_cookies(response: &http::Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub fn session_of(response: &http::Response<Body>) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find(|c| c.starts_with("__Host-jit_session=") && !c.starts_with("__Host-jit_session=;"))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

pub fn relay_state(location: &str) -> String {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned()
}

pub fn acs(saml_response: &str, relay: &str, cookie: &str) -> Request<Body> {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", saml_response)
        .append_pair("RelayState", relay)
        .finish();
    Request::post("/auth/corp/acs")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .unwrap()
}

pub async fn error_code(response: http::Response<Body>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["error"].as_str().unwrap().to_owned()
}

/// Starts a login: the redirect to the IdP and the cookies it sets (pending login, binder),
/// checked as a `Secure` layer sets them.
pub async fn start(app: &Router) -> (String, String) {
    let (location, cookies) = start_unchecked(app).await;
    let cookie = cookies.last().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=None", "Path=/auth/corp/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    // The browser sends back the pending login and its binder.
    (location, cookie_header(&cookies))
}

/// The `Cookie` header a browser sends back for these `Set-Cookie`s.
pub fn cookie_header(set_cookies: &[String]) -> String {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect();
    pairs.join("; ")
}

/// [`start`] without the cookie checks: the redirect and every `Set-Cookie`.
pub async fn start_unchecked(app: &Router) -> (String, Vec<String>) {
    let response = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/login?return_to=/me")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(location.starts_with(IDP_SSO_URL) && location.contains("SAMLRequest="));
    (location, set_cookies(&response))
}

/// `GET /auth/corp/metadata`: the SP metadata XML.
pub async fn sp_metadata_of(app: &Router) -> String {
    let response = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/metadata")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}
