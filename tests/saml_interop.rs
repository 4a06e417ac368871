//! Interop: responses signed (and encrypted) by samlify, a SAML identity provider from npm
//! that nobody here wrote, verified by `SamlServiceProvider`.
//!
//! samlify reads this service provider's own metadata (`metadata_xml`), parses and
//! schema-validates (xmllint, with the SAML XSDs) the `AuthnRequest` from the redirect URL
//! of `authn_request`, and signs with xml-crypto / encrypts with xml-encryption. Each
//! positive path checks the identity (IdP entity ID + persistent NameID, or the configured
//! attribute) and the claims.
//!
//! Prerequisites: see `tests/saml_common/mod.rs` (`npm ci --prefix tests/saml-idp`).

mod saml_common;

use std::sync::OnceLock;

use jit_provision::saml::{SamlError, SamlLogin, SamlServiceProvider};
use saml_common::*;
use serde_json::{Value, json};

/// The genuine responses of this file, made by one samlify run.
struct Fixtures {
    /// (request id, base64 SAMLResponse) per named job.
    responses: Vec<(&'static str, Option<String>, String)>,
    metadata: String,
}

/// Builds every job of this file with one SP identity (the one `sp()` builds), runs
/// samlify once, and hands out the responses by name. `None` when samlify is unavailable
/// (after the skip notice).
fn fixtures(test: &str) -> Option<&'static Fixtures> {
    static FIXTURES: OnceLock<Option<Fixtures>> = OnceLock::new();
    let node = node(test)?;
    FIXTURES
        .get_or_init(|| {
            let sp = sp();
            let metadata = sp.metadata_xml();
            let mut named: Vec<(&'static str, Option<String>, Value)> = Vec::new();
            let mut solicited = |name: &'static str, f: &dyn Fn(&str) -> Value| {
                let (url, id) = sp.authn_request("relay-123").unwrap();
                named.push((name, Some(id), f(&url)));
            };
            solicited("signed_assertion", &|url| job(Some(url), true, false));
            solicited("signed_response", &|url| job(Some(url), false, true));
            solicited("signed_both", &|url| job(Some(url), true, true));
            solicited("encrypted_gcm", &|url| {
                let mut j = job(Some(url), true, false);
                j["encrypt"] = json!(true);
                j["data_encryption"] = json!("aes256-gcm");
                j
            });
            // CBC is accepted only inside a signed Response: samlify encrypts, then signs.
            solicited("encrypted_cbc", &|url| {
                let mut j = job(Some(url), true, true);
                j["encrypt"] = json!(true);
                j["data_encryption"] = json!("aes128-cbc");
                j
            });
            solicited("encrypted_then_signed", &|url| {
                let mut j = job(Some(url), false, true);
                j["encrypt"] = json!(true);
                j
            });
            solicited("rsa_sha512", &|url| {
                let mut j = job(Some(url), true, false);
                j["signature_algorithm"] = json!("rsa-sha512");
                j
            });
            named.push(("unsolicited", None, job(None, true, false)));
            let k = keys();
            let out = run_idp(
                &node,
                idp_settings(&k.idp, &[&k.idp]),
                &metadata,
                named.iter().map(|(_, _, j)| j.clone()).collect(),
            );
            let responses = named
                .into_iter()
                .zip(out.responses)
                .map(|((name, id, _), r)| {
                    (
                        name,
                        id,
                        r.unwrap_or_else(|e| panic!("samlify job {name}: {e}")),
                    )
                })
                .collect();
            Some(Fixtures {
                responses,
                metadata: out.metadata,
            })
        })
        .as_ref()
}

fn response(f: &Fixtures, name: &str) -> (Option<String>, String) {
    let (_, id, r) = f.responses.iter().find(|(n, _, _)| *n == name).unwrap();
    (id.clone(), r.clone())
}

fn verify(sp: &SamlServiceProvider, f: &Fixtures, name: &str) -> Result<SamlLogin, SamlError> {
    let (id, r) = response(f, name);
    sp.verify_response(&r, id.as_deref(), now())
}

fn assert_jane(login: &SamlLogin) {
    assert_eq!(login.identity.provider, PROVIDER_ID);
    assert_eq!(login.identity.issuer, IDP_ENTITY_ID);
    assert_eq!(login.identity.subject, "u-1234-persistent");
    let c = &login.claims;
    assert_eq!(
        c.str("urn:oid:0.9.2342.19200300.100.1.3").as_deref(),
        Some("jane@example.com")
    );
    assert_eq!(c.str("mail").as_deref(), Some("jane@example.com"));
    assert_eq!(c.get("isMemberOf"), Some(&json!(["staff", "admins"])));
    assert_eq!(
        c.get("urn:oid:1.3.6.1.4.1.5923.1.5.1.1"),
        Some(&json!(["staff", "admins"]))
    );
    assert_eq!(c.str("employeeNumber").as_deref(), Some("E-42"));
    assert!(login.assertion_id.starts_with('_'));
    let n = now();
    // samlify: 5 minutes of validity, plus our 60 s of skew.
    assert!(login.not_on_or_after > n + 200 && login.not_on_or_after <= n + 400);
}

#[test]
fn signed_assertion_sp_initiated() {
    let Some(f) = fixtures("signed_assertion_sp_initiated") else {
        return;
    };
    let login = verify(&sp(), f, "signed_assertion").unwrap();
    assert_jane(&login);
}

#[test]
fn signed_response_only() {
    let Some(f) = fixtures("signed_response_only") else {
        return;
    };
    assert_jane(&verify(&sp(), f, "signed_response").unwrap());
}

#[test]
fn signed_response_and_assertion() {
    let Some(f) = fixtures("signed_response_and_assertion") else {
        return;
    };
    let mut config = sp_config();
    config.want_assertions_signed = true;
    assert_jane(&verify(&sp_with(config), f, "signed_both").unwrap());
}

#[test]
fn want_assertions_signed_accepts_a_signed_assertion() {
    let Some(f) = fixtures("want_assertions_signed_accepts_a_signed_assertion") else {
        return;
    };
    let mut config = sp_config();
    config.want_assertions_signed = true;
    assert_jane(&verify(&sp_with(config), f, "signed_assertion").unwrap());
}

#[test]
fn encrypted_assertion_aes_gcm() {
    let Some(f) = fixtures("encrypted_assertion_aes_gcm") else {
        return;
    };
    let mut config = sp_config();
    config.require_encrypted_assertions = true;
    assert_jane(&verify(&sp_with(config), f, "encrypted_gcm").unwrap());
}

/// AES-CBC inside a Response signed after encryption (an unsigned one is refused before
/// decryption: `tests/saml_security.rs`).
#[test]
fn encrypted_assertion_aes_cbc() {
    let Some(f) = fixtures("encrypted_assertion_aes_cbc") else {
        return;
    };
    assert_jane(&verify(&sp(), f, "encrypted_cbc").unwrap());
}

#[test]
fn encrypted_assertion_in_a_signed_response() {
    let Some(f) = fixtures("encrypted_assertion_in_a_signed_response") else {
        return;
    };
    assert_jane(&verify(&sp(), f, "encrypted_then_signed").unwrap());
    // The assertion inside is unsigned: refused when signed assertions are required, with
    // the one error of every failure after decryption.
    let mut config = sp_config();
    config.want_assertions_signed = true;
    assert_eq!(
        verify(&sp_with(config), f, "encrypted_then_signed").unwrap_err(),
        SamlError::Decryption
    );
}

#[test]
fn encrypted_assertion_needs_the_sp_key() {
    let Some(f) = fixtures("encrypted_assertion_needs_the_sp_key") else {
        return;
    };
    let mut config = sp_config();
    config.sp_private_key_pem = Some(keys().stranger.key_pem.clone());
    config.sp_certificate_pem = None;
    let err = verify(&sp_with(config), f, "encrypted_gcm").unwrap_err();
    assert_eq!(err, SamlError::Decryption);
    assert_eq!(err.status(), 401);
}

#[test]
fn plain_assertion_refused_when_encryption_is_required() {
    let Some(f) = fixtures("plain_assertion_refused_when_encryption_is_required") else {
        return;
    };
    let mut config = sp_config();
    config.require_encrypted_assertions = true;
    assert_eq!(
        verify(&sp_with(config), f, "signed_assertion").unwrap_err(),
        SamlError::NotEncrypted
    );
}

#[test]
fn rsa_sha512() {
    let Some(f) = fixtures("rsa_sha512") else {
        return;
    };
    assert_jane(&verify(&sp(), f, "rsa_sha512").unwrap());
}

#[test]
fn idp_initiated_only_when_enabled() {
    let Some(f) = fixtures("idp_initiated_only_when_enabled") else {
        return;
    };
    let (_, r) = response(f, "unsolicited");
    assert_eq!(
        sp().verify_response(&r, None, now()).unwrap_err(),
        SamlError::UnsolicitedResponse
    );
    let mut config = sp_config();
    config.allow_idp_initiated = true;
    let login = sp_with(config).verify_response(&r, None, now()).unwrap();
    assert_jane(&login);
    // A solicited response presented without the pending login is not unsolicited.
    let mut config = sp_config();
    config.allow_idp_initiated = true;
    let (_, solicited) = response(f, "signed_assertion");
    assert_eq!(
        sp_with(config)
            .verify_response(&solicited, None, now())
            .unwrap_err(),
        SamlError::InResponseTo
    );
}

#[test]
fn identity_from_a_configured_attribute() {
    let Some(f) = fixtures("identity_from_a_configured_attribute") else {
        return;
    };
    let mut config = sp_config();
    config.identity_attribute = Some("employeeNumber".into());
    let login = verify(&sp_with(config), f, "signed_assertion").unwrap();
    assert_eq!(login.identity.subject, "E-42");
    // A multi-valued attribute is no identity.
    let mut config = sp_config();
    config.identity_attribute = Some("isMemberOf".into());
    assert!(matches!(
        verify(&sp_with(config), f, "signed_assertion").unwrap_err(),
        SamlError::Subject(_)
    ));
    // Neither is a missing one.
    let mut config = sp_config();
    config.identity_attribute = Some("urn:oid:2.5.4.45".into());
    assert!(matches!(
        verify(&sp_with(config), f, "signed_assertion").unwrap_err(),
        SamlError::Subject(_)
    ));
}

#[test]
fn the_identity_attribute_is_a_claim_path_checked_at_start_up() {
    // A URI or OID is a verbatim attribute name (dots and colons included).
    let mut config = sp_config();
    config.identity_attribute = Some("urn:oid:2.5.4.45".into());
    assert!(SamlServiceProvider::new(PROVIDER_ID, config, ACS_URL, METADATA_URL).is_ok());
    for bad in ["employee..number", "\"unclosed", "trailing."] {
        let mut config = sp_config();
        config.identity_attribute = Some(bad.into());
        let err = SamlServiceProvider::new(PROVIDER_ID, config, ACS_URL, METADATA_URL).unwrap_err();
        assert!(
            matches!(&err, SamlError::Config(why) if why.contains("identity_attribute: claim path")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn idp_metadata_from_samlify_file() {
    let Some(f) = fixtures("idp_metadata_from_samlify_file") else {
        return;
    };
    let dir = Scratch::new("metadata-file");
    let path = dir.path("idp.xml");
    std::fs::write(&path, &f.metadata).unwrap();
    let mut config = jit_provision::saml::SamlConfig::from_metadata_file(&path);
    config.sp_private_key_pem = Some(keys().sp.key_pem.clone());
    config.sp_certificate_pem = Some(keys().sp.cert_pem.clone());
    let sp = sp_with(config);
    assert_eq!(sp.idp_entity_id().as_deref(), Some(IDP_ENTITY_ID));
    assert_jane(&verify(&sp, f, "signed_assertion").unwrap());
    // Its SSO URL is where the AuthnRequest goes.
    let (url, _) = sp.authn_request("").unwrap();
    assert!(url.starts_with(IDP_SSO_URL), "{url}");
}

#[tokio::test]
async fn idp_metadata_from_a_url() {
    let Some(f) = fixtures("idp_metadata_from_a_url") else {
        return;
    };
    let metadata = f.metadata.clone();
    let app = axum::Router::new().route(
        "/idp-metadata",
        axum::routing::get(move || async move { metadata }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = jit_provision::saml::SamlConfig::from_metadata_url(format!(
        "http://127.0.0.1:{port}/idp-metadata"
    ));
    config.sp_private_key_pem = Some(keys().sp.key_pem.clone());
    let sp = sp_with(config);
    // Not loaded yet: a 502.
    let err = verify(&sp, f, "signed_assertion").unwrap_err();
    assert_eq!(err.status(), 502);
    sp.load_metadata().await.unwrap();
    assert_jane(&verify(&sp, f, "signed_assertion").unwrap());

    // A URL that does not answer with metadata: 502, and the loaded metadata stays.
    let mut config = jit_provision::saml::SamlConfig::from_metadata_url(format!(
        "http://127.0.0.1:{port}/nothing-here"
    ));
    config.sp_private_key_pem = Some(keys().sp.key_pem.clone());
    let broken = sp_with(config);
    let err = broken.load_metadata().await.unwrap_err();
    assert!(matches!(err, SamlError::Metadata(_)));
    assert_eq!(err.status(), 502);
    server.abort();
}

#[test]
fn key_rollover_two_certificates_in_metadata() {
    let Some(node) = node("key_rollover_two_certificates_in_metadata") else {
        return;
    };
    let k = keys();
    let sp_plain = sp();
    let metadata = sp_plain.metadata_xml();
    let (url, id) = sp_plain.authn_request("").unwrap();
    // The IdP publishes the current and the next certificate and signs with the next key.
    let out = run_idp(
        &node,
        idp_settings(&k.idp_next, &[&k.idp, &k.idp_next]),
        &metadata,
        vec![job(Some(&url), true, false)],
    );
    let r = out.responses[0].clone().unwrap();
    let dir = Scratch::new("rollover");
    let path = dir.path("idp.xml");
    std::fs::write(&path, &out.metadata).unwrap();
    let mut config = jit_provision::saml::SamlConfig::from_metadata_file(&path);
    config.sp_private_key_pem = Some(k.sp.key_pem.clone());
    let rolled = sp_with(config);
    assert_jane(&rolled.verify_response(&r, Some(&id), now()).unwrap());
    // The same response against the old certificate alone: refused.
    assert_eq!(
        sp().verify_response(&r, Some(&id), now()).unwrap_err(),
        SamlError::BadSignature
    );
    // Inline configuration with both certificates works too.
    let mut config = sp_config();
    config.idp_certificates = vec![k.idp.cert_pem.clone(), k.idp_next.cert_pem.clone()];
    assert_jane(
        &sp_with(config)
            .verify_response(&r, Some(&id), now())
            .unwrap(),
    );
}

/// ECDSA (P-256, SHA-256): samlify's xml-crypto signs RSA only, so this assertion is signed
/// by xmlsec (through samael) from a signature template, as an ECDSA IdP would.
#[test]
fn ecdsa_sha256_signed_assertion() {
    let k = keys();
    let sp_ec = {
        let mut config = sp_config();
        config.idp_certificates = vec![k.idp_ec.cert_pem.clone()];
        sp_with(config)
    };
    let (_, request_id) = sp_ec.authn_request("").unwrap();
    let xml = ecdsa_response(&request_id);
    let der = k.idp_ec.key.private_key_to_pkcs8().unwrap();
    use samael::crypto::CryptoProvider as _;
    let signed = samael::crypto::Crypto::sign_xml(&xml, &der).unwrap();
    let login = sp_ec
        .verify_response(&b64(&signed), Some(&request_id), now())
        .unwrap();
    assert_eq!(login.identity.subject, "ec-user");
    // The RSA IdP certificate does not verify it.
    assert_eq!(
        sp().verify_response(&b64(&signed), Some(&request_id), now())
            .unwrap_err(),
        SamlError::BadSignature
    );
    // A rollover from the RSA key to the EC key: both published, the EC one verifies.
    let mut config = sp_config();
    config.idp_certificates = vec![k.idp.cert_pem.clone(), k.idp_ec.cert_pem.clone()];
    let login = sp_with(config)
        .verify_response(&b64(&signed), Some(&request_id), now())
        .unwrap();
    assert_eq!(login.identity.subject, "ec-user");
}

/// samlify validates our AuthnRequest against the SAML 2.0 XSDs (xmllint) before it
/// answers it; a request that breaks the schema is refused by the same run.
#[test]
fn authn_request_passes_samlify_schema_validation() {
    let Some(node) = node("authn_request_passes_samlify_schema_validation") else {
        return;
    };
    let k = keys();
    let sp = sp();
    let (url, id) = sp.authn_request("relay").unwrap();
    // The same request with an element the schema does not allow where it is.
    let broken = {
        let parsed = url::Url::parse(&url).unwrap();
        let request = parsed
            .query_pairs()
            .find(|(k, _)| k == "SAMLRequest")
            .unwrap()
            .1
            .into_owned();
        let xml = inflate(&request);
        let xml = xml.replace(
            "</samlp:AuthnRequest>",
            "<saml:Bogus/></samlp:AuthnRequest>",
        );
        let mut out = url::Url::parse(IDP_SSO_URL).unwrap();
        out.query_pairs_mut()
            .append_pair("SAMLRequest", &deflate(&xml));
        out.to_string()
    };
    let out = run_idp_with(
        &node,
        idp_settings(&k.idp, &[&k.idp]),
        &sp.metadata_xml(),
        vec![
            job(Some(&url), true, false),
            job(Some(&broken), true, false),
        ],
        true,
    );
    let r = out.responses[0].clone().unwrap();
    assert_jane(&sp.verify_response(&r, Some(&id), now()).unwrap());
    let err = out.responses[1].clone().unwrap_err();
    assert!(err.contains("ERR_INVALID_XML"), "{err}");
}

/// samlify as an IdP that wants signed requests: its metadata says
/// `WantAuthnRequestsSigned="true"`, the SP built from that metadata signs its
/// AuthnRequests (and says so in its own metadata), samlify verifies the signature over the
/// raw `SAMLRequest=..&RelayState=..&SigAlg=..` octets with the certificate of our metadata
/// and answers; a request with one signed octet changed, or unsigned, is refused.
#[test]
fn signed_authn_requests_are_verified_by_samlify() {
    let Some(node) = node("signed_authn_requests_are_verified_by_samlify") else {
        return;
    };
    let k = keys();
    let mut idp = idp_settings(&k.idp, &[&k.idp]);
    idp["want_authn_requests_signed"] = json!(true);
    let metadata = run_idp(&node, idp.clone(), &sp().metadata_xml(), vec![]).metadata;
    assert!(
        metadata.contains(r#"WantAuthnRequestsSigned="true""#),
        "{metadata}"
    );
    let dir = Scratch::new("signed-requests");
    let path = dir.path("idp.xml");
    std::fs::write(&path, &metadata).unwrap();
    let mut config = jit_provision::saml::SamlConfig::from_metadata_file(&path);
    config.sp_private_key_pem = Some(k.sp.key_pem.clone());
    config.sp_certificate_pem = Some(k.sp.cert_pem.clone());
    let signing = sp_with(config);
    assert!(signing.signs_requests());
    let sp_metadata = signing.metadata_xml();
    assert!(sp_metadata.contains(r#"AuthnRequestsSigned="true""#));

    let (url, id) = signing.authn_request("relay-7").unwrap();
    let pairs: Vec<(String, String)> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["SAMLRequest", "RelayState", "SigAlg", "Signature"]);
    assert_eq!(
        pairs[2].1,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    );
    let forged = url.replace("RelayState=relay-7", "RelayState=relay-8");
    // The inline SP (no WantAuthnRequestsSigned, no sign_requests) does not sign.
    let (unsigned, _) = sp().authn_request("relay-7").unwrap();
    assert!(!unsigned.contains("Signature="));
    let out = run_idp(
        &node,
        idp,
        &sp_metadata,
        vec![
            job(Some(&url), true, false),
            job(Some(&forged), true, false),
            job(Some(&unsigned), true, false),
        ],
    );
    let response = out.responses[0]
        .clone()
        .expect("samlify verified the request");
    assert_jane(
        &signing
            .verify_response(&response, Some(&id), now())
            .unwrap(),
    );
    let forged = out.responses[1].clone().unwrap_err();
    assert!(
        forged.contains("ERR_FAILED_MESSAGE_SIGNATURE_VERIFICATION"),
        "{forged}"
    );
    let unsigned = out.responses[2].clone().unwrap_err();
    assert!(unsigned.contains("ERR_MISSING_SIG_ALG"), "{unsigned}");
}

/// `sign_requests` signs for an IdP that does not ask; signing needs the SP key (RSA) and
/// the certificate the IdP verifies with, refused at start without them.
#[test]
fn sign_requests_needs_the_sp_key_and_certificate() {
    let mut config = sp_config();
    config.sign_requests = true;
    let sp = sp_with(config.clone());
    assert!(sp.signs_requests());
    let (url, _) = sp.authn_request("").unwrap();
    assert!(
        url.contains("&SigAlg=") && url.contains("&Signature="),
        "{url}"
    );
    assert!(sp.metadata_xml().contains(r#"AuthnRequestsSigned="true""#));
    assert!(
        !sp_with(sp_config())
            .metadata_xml()
            .contains(r#"AuthnRequestsSigned="true""#)
    );

    let refused = |config: jit_provision::saml::SamlConfig| {
        SamlServiceProvider::new(PROVIDER_ID, config, ACS_URL, METADATA_URL)
            .unwrap_err()
            .to_string()
    };
    let mut keyless = config.clone();
    keyless.sp_private_key_pem = None;
    keyless.sp_certificate_pem = None;
    assert_eq!(
        refused(keyless),
        "invalid SAML provider configuration: sign_requests needs sp_private_key_pem (and sp_certificate_pem) to sign AuthnRequests"
    );
    let mut no_certificate = config.clone();
    no_certificate.sp_certificate_pem = None;
    assert!(refused(no_certificate).contains("sign_requests needs sp_certificate_pem"));
    let mut ec = config;
    ec.sp_private_key_pem = Some(keys().idp_ec.key_pem.clone());
    ec.sp_certificate_pem = Some(keys().idp_ec.cert_pem.clone());
    assert!(refused(ec).contains("sign_requests needs an RSA sp_private_key_pem"));
}

fn inflate(b64: &str) -> String {
    use std::io::Read as _;
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    let mut out = String::new();
    flate2::read::DeflateDecoder::new(&raw[..])
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn deflate(xml: &str) -> String {
    use std::io::Write as _;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(xml.as_bytes()).unwrap();
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        e.finish().unwrap(),
    )
}

#[test]
fn sp_metadata_is_what_samlify_reads() {
    // samlify builds its SP from metadata_xml in every test above; here, what it says.
    let sp = sp();
    let xml = sp.metadata_xml();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("entityID"), Some(METADATA_URL));
    let acs = doc
        .descendants()
        .find(|n| n.tag_name().name() == "AssertionConsumerService")
        .unwrap();
    assert_eq!(acs.attribute("Location"), Some(ACS_URL));
    assert_eq!(
        acs.attribute("Binding"),
        Some("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    );
    assert!(xml.contains("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"));
    assert!(xml.contains(r#"use="encryption""#));
}

fn ecdsa_response(request_id: &str) -> String {
    let n = now();
    let t = |offset: i64| {
        chrono::DateTime::from_timestamp(n + offset, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_resp1" Version="2.0" IssueInstant="{now}" Destination="{acs}" InResponseTo="{req}">"#,
            r#"<saml:Issuer>{idp}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#,
            r#"<saml:Assertion ID="_ec1" Version="2.0" IssueInstant="{now}"><saml:Issuer>{idp}</saml:Issuer>"#,
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>"#,
            r##"<ds:Reference URI="#_ec1"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>"#,
            r#"</ds:SignedInfo><ds:SignatureValue/></ds:Signature>"#,
            r#"<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">ec-user</saml:NameID>"#,
            r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{later}" Recipient="{acs}" InResponseTo="{req}"/></saml:SubjectConfirmation></saml:Subject>"#,
            r#"<saml:Conditions NotBefore="{before}" NotOnOrAfter="{later}"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#,
            r#"<saml:AuthnStatement AuthnInstant="{now}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
            r#"</saml:Assertion></samlp:Response>"#
        ),
        now = t(0),
        before = t(-30),
        later = t(300),
        acs = ACS_URL,
        req = request_id,
        idp = IDP_ENTITY_ID,
        aud = METADATA_URL,
    )
}
