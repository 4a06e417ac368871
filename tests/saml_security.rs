//! The negative suite: every response here is refused with one specific [`SamlError`] and
//! its status. The responses start as genuine ones, signed by samlify (npm), and are then
//! tampered with the way an attacker would: XML signature wrapping XSW1 to XSW8 (after
//! "On Breaking SAML", Somorovsky et al., 2012, as SAML Raider names them), comment
//! injection, stripped or added assertions, DTDs. The values the IdP itself puts wrong
//! (audience, recipient, destination, issuer, validity) are made by samlify through
//! overrides and signed by it.
//!
//! Prerequisites: see `tests/saml_common/mod.rs` (`npm ci --prefix tests/saml-idp`).

mod saml_common;

use std::sync::OnceLock;

use jit_provision::replay::{MemoryReplayGuard, ReplayGuard};
use jit_provision::saml::{MAX_SAML_RESPONSE_LEN, SamlError, SamlServiceProvider};
use saml_common::*;
use serde_json::{Value, json};

struct Fixture {
    request_id: String,
    /// The response XML (decoded).
    xml: String,
}

/// Every genuine response of this file, from one samlify run.
fn fixtures(test: &str) -> Option<&'static Vec<(&'static str, Fixture)>> {
    static FIXTURES: OnceLock<Vec<(&'static str, Fixture)>> = OnceLock::new();
    let node = node(test)?;
    Some(FIXTURES.get_or_init(|| {
        let sp = sp();
        let specs: Vec<(&'static str, Job)> = vec![
            (
                "assertion_signed",
                Box::new(|url: &str| job(Some(url), true, false)),
            ),
            (
                "response_signed",
                Box::new(|url: &str| job(Some(url), false, true)),
            ),
            (
                "comment",
                with(Box::new(|j: &mut Value| {
                    j["name_id"] = json!("admin@evil.com.attacker.com")
                })),
            ),
            (
                "comment_response_signed",
                Box::new(|url: &str| {
                    let mut j = job(Some(url), false, true);
                    j["name_id"] = json!("admin@evil.com.attacker.com");
                    j
                }),
            ),
            (
                "expired",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({
                        "issue_instant_offset_s": -900, "not_before_offset_s": -900,
                        "not_on_or_after_offset_s": -300, "scd_not_on_or_after_offset_s": -300,
                    })
                })),
            ),
            (
                "bearer_expired",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({ "scd_not_on_or_after_offset_s": -300 })
                })),
            ),
            (
                "not_yet_valid",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({ "not_before_offset_s": 600 })
                })),
            ),
            (
                "issued_in_future",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({ "issue_instant_offset_s": 600 })
                })),
            ),
            (
                "wrong_audience",
                with(Box::new(
                    |j: &mut Value| {
                        j["overrides"] =
                            json!({ "audience": "https://other-sp.example.test/metadata" })
                    },
                )),
            ),
            (
                "wrong_recipient",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({ "recipient": "https://other-sp.example.test/acs" })
                })),
            ),
            (
                "wrong_destination",
                Box::new(|url: &str| {
                    let mut j = job(Some(url), false, true);
                    j["overrides"] = json!({ "destination": "https://other-sp.example.test/acs" });
                    j
                }),
            ),
            (
                "no_destination_signed_response",
                Box::new(|url: &str| {
                    let mut j = job(Some(url), false, true);
                    j["overrides"] = json!({ "destination": null });
                    j
                }),
            ),
            (
                "wrong_issuer",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({ "issuer": "https://evil-idp.example.test" })
                })),
            ),
            (
                "wrong_scd_in_response_to",
                with(Box::new(|j: &mut Value| {
                    j["overrides"] = json!({ "scd_in_response_to": "_not_the_request" })
                })),
            ),
            (
                "sha1",
                with(Box::new(|j: &mut Value| {
                    j["signature_algorithm"] = json!("rsa-sha1")
                })),
            ),
            (
                "rsa_1_5",
                with(Box::new(|j: &mut Value| {
                    j["encrypt"] = json!(true);
                    j["key_encryption"] = json!("rsa-1_5");
                })),
            ),
            (
                "cbc_unsigned_response",
                with(Box::new(|j: &mut Value| {
                    j["encrypt"] = json!(true);
                    j["data_encryption"] = json!("aes128-cbc");
                })),
            ),
            (
                "cbc_signed_response",
                Box::new(|url: &str| {
                    let mut j = job(Some(url), true, true);
                    j["encrypt"] = json!(true);
                    j["data_encryption"] = json!("aes128-cbc");
                    j
                }),
            ),
            (
                "cbc_signed_response_only",
                Box::new(|url: &str| {
                    let mut j = job(Some(url), false, true);
                    j["encrypt"] = json!(true);
                    j["data_encryption"] = json!("aes256-cbc");
                    j
                }),
            ),
            (
                "email_name_id",
                with(Box::new(|j: &mut Value| {
                    j["name_id"] = json!("jane@example.com");
                    j["name_id_format"] =
                        json!("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress");
                })),
            ),
        ];
        let mut ids = Vec::new();
        let mut jobs = Vec::new();
        for (_, make) in &specs {
            let (url, id) = sp.authn_request("").unwrap();
            jobs.push(make(&url));
            ids.push(id);
        }
        let k = keys();
        let out = run_idp(
            &node,
            idp_settings(&k.idp, &[&k.idp]),
            &sp.metadata_xml(),
            jobs,
        );
        specs
            .iter()
            .zip(ids)
            .zip(out.responses)
            .map(|(((name, _), request_id), r)| {
                let r = r.unwrap_or_else(|e| panic!("samlify job {name}: {e}"));
                (
                    *name,
                    Fixture {
                        request_id,
                        xml: unb64(&r),
                    },
                )
            })
            .collect()
    }))
}

type Job = Box<dyn Fn(&str) -> Value>;

/// A job signing the assertion, changed by `f`.
fn with(f: Box<dyn Fn(&mut Value)>) -> Job {
    Box::new(move |url: &str| {
        let mut j = job(Some(url), true, false);
        f(&mut j);
        j
    })
}

fn fixture(test: &str, name: &str) -> Option<&'static Fixture> {
    let all = fixtures(test)?;
    Some(&all.iter().find(|(n, _)| *n == name).unwrap().1)
}

/// The XML of fixture `name`, once samlify is known to be available.
fn fixture_xml(name: &str) -> String {
    fixture("fixture_xml", name).unwrap().xml.clone()
}

/// Verifies `xml` (as the IdP would post it) for the login `request_id`.
fn verify_xml(sp: &SamlServiceProvider, xml: &str, request_id: &str) -> Result<(), SamlError> {
    sp.verify_response(&b64(xml), Some(request_id), now())
        .map(|_| ())
}

/// Asserts `xml` is refused with `expected`, with a 401 unless the variant says otherwise.
fn refused(sp: &SamlServiceProvider, xml: &str, request_id: &str, expected: SamlError) {
    let err = verify_xml(sp, xml, request_id).expect_err("the response must be refused");
    assert_eq!(err, expected, "{err}");
    let status = match expected {
        SamlError::TooLarge { .. } | SamlError::Malformed(_) | SamlError::Dtd => 400,
        _ => 401,
    };
    assert_eq!(err.status(), status);
}

/// The genuine response verifies: the tampering below is the only reason for a refusal.
fn genuine(f: &Fixture) {
    verify_xml(&sp(), &f.xml, &f.request_id).expect("the genuine response verifies");
}

// ---------------------------------------------------------------------------------------------
// Building the wrapped documents
// ---------------------------------------------------------------------------------------------

const EVIL: &str = "admin";

/// `element` (a Response or an Assertion, as text) with a new ID and the attacker's NameID.
fn evil(element: &str, new_id: &str) -> String {
    let doc = roxmltree::Document::parse(element).unwrap();
    let old_id = doc.root_element().attribute("ID").unwrap().to_owned();
    let out = replace_once(
        element,
        &format!("ID=\"{old_id}\""),
        &format!("ID=\"{new_id}\""),
    );
    replace_once(&out, ">u-1234-persistent<", &format!(">{EVIL}<"))
}

/// Inserts `what` right after the first `</saml:Issuer>` of `xml`.
fn after_issuer(xml: &str, what: &str) -> String {
    replace_once(xml, "</saml:Issuer>", &format!("</saml:Issuer>{what}"))
}

/// XSW1: an evil Response whose Signature carries, in a ds:Object, the original signed
/// Response (without its signature, which is what the digest covers).
fn xsw1(signed_response: &str) -> String {
    let sig = element(signed_response, "Signature", None);
    let original = without_signature(signed_response);
    let wrapped_sig = replace_once(
        sig,
        "</ds:Signature>",
        &format!("<ds:Object>{original}</ds:Object></ds:Signature>"),
    );
    after_issuer(&evil(&original, "_evil_response"), &wrapped_sig)
}

/// XSW2: like XSW1, with the original Response beside the (now detached) Signature.
fn xsw2(signed_response: &str) -> String {
    let sig = element(signed_response, "Signature", None);
    let original = without_signature(signed_response);
    after_issuer(
        &evil(&original, "_evil_response"),
        &format!("{original}{sig}"),
    )
}

/// The signed assertion of a response, and the response with `replacement` in its place.
fn split_assertion(response: &str) -> (String, String, String) {
    let range = element_range(response, "Assertion", None);
    (
        response[..range.start].to_owned(),
        response[range.clone()].to_owned(),
        response[range.end..].to_owned(),
    )
}

/// XSW3: an unsigned evil assertion inserted before the signed one.
fn xsw3(response: &str) -> String {
    let (head, original, tail) = split_assertion(response);
    let evil_assertion = evil(&without_signature(&original), "_evil_assertion");
    format!("{head}{evil_assertion}{original}{tail}")
}

/// XSW4: the signed assertion wrapped inside the evil one.
fn xsw4(response: &str) -> String {
    let (head, original, tail) = split_assertion(response);
    let evil_assertion = evil(&without_signature(&original), "_evil_assertion");
    let wrapping = evil_assertion.replacen(
        "</saml:Assertion>",
        &format!("{original}</saml:Assertion>"),
        1,
    );
    format!("{head}{wrapping}{tail}")
}

/// XSW5: the evil assertion keeps the original's Signature (which still references the
/// original's ID); the original, unsigned, is appended at the end of the Response.
fn xsw5(response: &str) -> String {
    let (head, original, tail) = split_assertion(response);
    let evil_assertion = evil(&original, "_evil_assertion");
    let unsigned_original = without_signature(&original);
    let tail = replace_once(
        &tail,
        "</samlp:Response>",
        &format!("{unsigned_original}</samlp:Response>"),
    );
    format!("{head}{evil_assertion}{tail}")
}

/// XSW6: the evil assertion keeps the Signature, inside which sits the original assertion
/// (without its signature).
fn xsw6(response: &str) -> String {
    let (head, original, tail) = split_assertion(response);
    let unsigned_original = without_signature(&original);
    let evil_assertion = evil(&original, "_evil_assertion");
    let evil_assertion = replace_once(
        &evil_assertion,
        "</ds:Signature>",
        &format!("{unsigned_original}</ds:Signature>"),
    );
    format!("{head}{evil_assertion}{tail}")
}

/// XSW7: the signed assertion moved into an Extensions element; an unsigned evil
/// assertion in its place.
fn xsw7(response: &str) -> String {
    let (head, original, tail) = split_assertion(response);
    let evil_assertion = evil(&without_signature(&original), "_evil_assertion");
    let head = after_issuer(
        &head,
        &format!("<samlp:Extensions>{original}</samlp:Extensions>"),
    );
    format!("{head}{evil_assertion}{tail}")
}

/// XSW8: the evil assertion keeps the Signature, with the original assertion (without its
/// signature) in a ds:Object inside it.
fn xsw8(response: &str) -> String {
    let (head, original, tail) = split_assertion(response);
    let unsigned_original = without_signature(&original);
    let evil_assertion = evil(&original, "_evil_assertion");
    let evil_assertion = replace_once(
        &evil_assertion,
        "</ds:Signature>",
        &format!("<ds:Object>{unsigned_original}</ds:Object></ds:Signature>"),
    );
    format!("{head}{evil_assertion}{tail}")
}

// ---------------------------------------------------------------------------------------------
// XSW1 - XSW8
// ---------------------------------------------------------------------------------------------

macro_rules! xsw_test {
    ($name:ident, $fixture:literal, $wrap:ident, $expected:expr) => {
        #[test]
        fn $name() {
            let Some(f) = fixture(stringify!($name), $fixture) else {
                return;
            };
            genuine(f);
            let wrapped = $wrap(&f.xml);
            assert!(wrapped.contains(&format!(">{EVIL}<")));
            refused(&sp(), &wrapped, &f.request_id, $expected);
            // Also with the wrapping checked after a signed-assertion requirement.
            let mut config = sp_config();
            config.want_assertions_signed = $fixture == "assertion_signed";
            let err = verify_xml(&sp_with(config), &wrapped, &f.request_id).unwrap_err();
            assert_eq!(err.status(), 401);
        }
    };
}

xsw_test!(
    xsw1_response_in_signature_object,
    "response_signed",
    xsw1,
    SamlError::SignatureWrapping("a Response inside the Response")
);
xsw_test!(
    xsw2_detached_response_signature,
    "response_signed",
    xsw2,
    SamlError::SignatureWrapping("a Response inside the Response")
);
xsw_test!(
    xsw3_evil_assertion_before_signed_one,
    "assertion_signed",
    xsw3,
    SamlError::MultipleAssertions
);
xsw_test!(
    xsw4_signed_assertion_inside_evil_one,
    "assertion_signed",
    xsw4,
    SamlError::SignatureWrapping("an assertion outside its place in the Response")
);
xsw_test!(
    xsw5_signature_moved_to_evil_assertion,
    "assertion_signed",
    xsw5,
    SamlError::MultipleAssertions
);
xsw_test!(
    xsw6_original_inside_the_signature,
    "assertion_signed",
    xsw6,
    SamlError::SignatureWrapping("an assertion outside its place in the Response")
);
xsw_test!(
    xsw7_signed_assertion_in_extensions,
    "assertion_signed",
    xsw7,
    SamlError::SignatureWrapping("an assertion outside its place in the Response")
);
xsw_test!(
    xsw8_original_in_signature_object,
    "assertion_signed",
    xsw8,
    SamlError::SignatureWrapping("an assertion outside its place in the Response")
);

/// The evil assertion alone, carrying the original's signature (which references an ID
/// no longer in the document).
#[test]
fn signature_moved_to_a_lone_evil_assertion() {
    let Some(f) = fixture(
        "signature_moved_to_a_lone_evil_assertion",
        "assertion_signed",
    ) else {
        return;
    };
    let (head, original, tail) = split_assertion(&f.xml);
    let wrapped = format!("{head}{}{tail}", evil(&original, "_evil_assertion"));
    refused(
        &sp(),
        &wrapped,
        &f.request_id,
        SamlError::SignatureWrapping(
            "the Signature references another element than the one it sits in",
        ),
    );
}

/// Two elements with the ID the signature references.
#[test]
fn duplicate_ids() {
    let Some(f) = fixture("duplicate_ids", "assertion_signed") else {
        return;
    };
    let (head, original, tail) = split_assertion(&f.xml);
    let id = id_of(&original, "Assertion");
    let copy = replace_once(
        &without_signature(&original),
        ">u-1234-persistent<",
        ">admin<",
    );
    let wrapped = format!("{head}{original}{tail}").replace(
        "</samlp:Response>",
        &format!("<samlp:Extensions>{copy}</samlp:Extensions></samlp:Response>"),
    );
    assert!(wrapped.matches(&format!("ID=\"{id}\"")).count() == 2);
    refused(
        &sp(),
        &wrapped,
        &f.request_id,
        SamlError::SignatureWrapping("two elements share one ID"),
    );
}

/// An `xml:id` (registered as an ID by libxml2 itself) naming the signed assertion's ID on
/// another element.
#[test]
fn xml_id_duplicating_the_signed_id() {
    let Some(f) = fixture("xml_id_duplicating_the_signed_id", "assertion_signed") else {
        return;
    };
    let id = id_of(&f.xml, "Assertion");
    let wrapped = replace_once(
        &f.xml,
        "<samlp:Status>",
        &format!("<samlp:Status xml:id=\"{id}\">"),
    );
    refused(
        &sp(),
        &wrapped,
        &f.request_id,
        SamlError::SignatureWrapping("two elements share one ID"),
    );
}

// ---------------------------------------------------------------------------------------------
// Comment injection, tampering, unsigned assertions
// ---------------------------------------------------------------------------------------------

/// `<NameID>admin@evil.com<!---->.attacker.com</NameID>` keeps a valid signature (exclusive
/// c14n drops comments); the subject must be the full text, never `admin@evil.com`.
#[test]
fn comment_injection_in_name_id_yields_the_full_text() {
    for name in ["comment", "comment_response_signed"] {
        let Some(f) = fixture("comment_injection_in_name_id_yields_the_full_text", name) else {
            return;
        };
        let injected = replace_once(
            &f.xml,
            ">admin@evil.com.attacker.com<",
            ">admin@evil.com<!---->.attacker.com<",
        );
        let login = sp()
            .verify_response(&b64(&injected), Some(&f.request_id), now())
            .expect("the signature still verifies");
        assert_eq!(login.identity.subject, "admin@evil.com.attacker.com");
        // Same with the identity taken from an attribute value split by a comment.
        let injected = replace_once(&injected, ">E-42<", ">E<!-- x -->-42<");
        let mut config = sp_config();
        config.identity_attribute = Some("employeeNumber".into());
        let login = sp_with(config)
            .verify_response(&b64(&injected), Some(&f.request_id), now())
            .unwrap();
        assert_eq!(login.identity.subject, "E-42");
        assert_eq!(login.claims.str("employeeNumber").as_deref(), Some("E-42"));
    }
}

#[test]
fn tampered_signed_assertion() {
    let Some(f) = fixture("tampered_signed_assertion", "assertion_signed") else {
        return;
    };
    let tampered = replace_once(&f.xml, ">u-1234-persistent<", ">admin<");
    refused(&sp(), &tampered, &f.request_id, SamlError::BadSignature);
    let tampered = replace_once(&f.xml, ">E-42<", ">E-1<");
    refused(&sp(), &tampered, &f.request_id, SamlError::BadSignature);
}

#[test]
fn tampered_signed_response() {
    let Some(f) = fixture("tampered_signed_response", "response_signed") else {
        return;
    };
    let tampered = replace_once(&f.xml, ">u-1234-persistent<", ">admin<");
    refused(&sp(), &tampered, &f.request_id, SamlError::BadSignature);
}

#[test]
fn signed_by_another_key() {
    let Some(f) = fixture("signed_by_another_key", "assertion_signed") else {
        return;
    };
    let mut config = sp_config();
    config.idp_certificates = vec![keys().stranger.cert_pem.clone()];
    refused(
        &sp_with(config),
        &f.xml,
        &f.request_id,
        SamlError::BadSignature,
    );
}

/// A Response signed by the IdP whose assertion is not signed by itself: refused when the
/// provider wants signed assertions.
#[test]
fn unsigned_assertion_inside_a_signed_response() {
    let Some(f) = fixture(
        "unsigned_assertion_inside_a_signed_response",
        "response_signed",
    ) else {
        return;
    };
    genuine(f);
    let mut config = sp_config();
    config.want_assertions_signed = true;
    refused(
        &sp_with(config),
        &f.xml,
        &f.request_id,
        SamlError::AssertionNotSigned,
    );
    // An unsigned assertion added beside the signed response's own.
    let (head, original, tail) = split_assertion(&f.xml);
    let added = format!(
        "{head}{original}{}{tail}",
        evil(&original, "_evil_assertion")
    );
    refused(&sp(), &added, &f.request_id, SamlError::MultipleAssertions);
    // The signed response's assertion replaced by an unsigned evil one.
    let replaced = format!("{head}{}{tail}", evil(&original, "_evil_assertion"));
    refused(&sp(), &replaced, &f.request_id, SamlError::BadSignature);
}

/// The assertion's signature stripped, the response unsigned: nothing vouches for it.
#[test]
fn signature_stripped() {
    let Some(f) = fixture("signature_stripped", "assertion_signed") else {
        return;
    };
    let stripped = without_signature(&f.xml);
    refused(&sp(), &stripped, &f.request_id, SamlError::Unsigned);
}

// ---------------------------------------------------------------------------------------------
// Conditions, audience, recipient, destination, issuer, InResponseTo
// ---------------------------------------------------------------------------------------------

macro_rules! idp_made_test {
    ($name:ident, $fixture:literal, $expected:expr) => {
        #[test]
        fn $name() {
            let Some(f) = fixture(stringify!($name), $fixture) else {
                return;
            };
            refused(&sp(), &f.xml, &f.request_id, $expected);
        }
    };
}

idp_made_test!(expired_assertion, "expired", SamlError::Expired);
idp_made_test!(
    expired_bearer_confirmation,
    "bearer_expired",
    SamlError::Expired
);
idp_made_test!(not_yet_valid, "not_yet_valid", SamlError::NotYetValid);
idp_made_test!(
    issued_in_the_future,
    "issued_in_future",
    SamlError::NotYetValid
);
idp_made_test!(wrong_audience, "wrong_audience", SamlError::Audience);
idp_made_test!(wrong_recipient, "wrong_recipient", SamlError::Recipient);
idp_made_test!(
    wrong_destination,
    "wrong_destination",
    SamlError::Destination
);
idp_made_test!(
    signed_response_without_destination,
    "no_destination_signed_response",
    SamlError::Destination
);
idp_made_test!(wrong_issuer, "wrong_issuer", SamlError::Issuer);
idp_made_test!(
    bearer_in_response_to_mismatch,
    "wrong_scd_in_response_to",
    SamlError::InResponseTo
);
idp_made_test!(
    sha1_refused_by_default,
    "sha1",
    SamlError::SignatureAlgorithm("http://www.w3.org/2000/09/xmldsig#rsa-sha1".into())
);
idp_made_test!(
    rsa_1_5_key_transport_refused,
    "rsa_1_5",
    SamlError::EncryptionAlgorithm("http://www.w3.org/2001/04/xmlenc#rsa-1_5".into())
);
idp_made_test!(
    email_name_id_is_no_identity,
    "email_name_id",
    SamlError::Subject("the NameID is not persistent (configure identity_attribute)")
);

#[test]
fn sha1_accepted_when_enabled() {
    let Some(f) = fixture("sha1_accepted_when_enabled", "sha1") else {
        return;
    };
    let mut config = sp_config();
    config.allow_sha1 = true;
    verify_xml(&sp_with(config), &f.xml, &f.request_id).unwrap();
}

#[test]
fn clock_skew_is_bounded() {
    let Some(f) = fixture("clock_skew_is_bounded", "assertion_signed") else {
        return;
    };
    let sp = sp();
    let r = b64(&f.xml);
    // samlify: NotBefore now-30 s, NotOnOrAfter now+300 s; skew 60 s.
    assert!(
        sp.verify_response(&r, Some(&f.request_id), now() + 330)
            .is_ok()
    );
    assert_eq!(
        sp.verify_response(&r, Some(&f.request_id), now() + 400)
            .unwrap_err(),
        SamlError::Expired
    );
    assert_eq!(
        sp.verify_response(&r, Some(&f.request_id), now() - 200)
            .unwrap_err(),
        SamlError::NotYetValid
    );
}

#[test]
fn in_response_to_mismatch() {
    let Some(f) = fixture("in_response_to_mismatch", "assertion_signed") else {
        return;
    };
    let err = sp()
        .verify_response(&b64(&f.xml), Some("_another_login"), now())
        .unwrap_err();
    assert_eq!(err, SamlError::InResponseTo);
    assert_eq!(err.status(), 401);
    // Without the pending login (no cookie), a solicited response is refused too.
    assert_eq!(
        sp().verify_response(&b64(&f.xml), None, now()).unwrap_err(),
        SamlError::UnsolicitedResponse
    );
}

/// The replay contract: `verify_response` is stateless, the caller's guard refuses a
/// second use of the assertion ID until the assertion expires.
#[tokio::test]
async fn replayed_assertion_is_refused_by_the_guard() {
    let Some(f) = fixture(
        "replayed_assertion_is_refused_by_the_guard",
        "assertion_signed",
    ) else {
        return;
    };
    let sp = sp();
    let guard = MemoryReplayGuard::new();
    let first = sp
        .verify_response(&b64(&f.xml), Some(&f.request_id), now())
        .unwrap();
    let ttl = first.replay_ttl(now());
    assert!(ttl.as_secs() > 200 && ttl.as_secs() <= 400, "{ttl:?}");
    assert!(guard.first_use(&first.replay_key(), ttl).await.unwrap());
    let again = sp
        .verify_response(&b64(&f.xml), Some(&f.request_id), now())
        .unwrap();
    assert_eq!(again.replay_key(), first.replay_key());
    assert!(!guard.first_use(&again.replay_key(), ttl).await.unwrap());
    assert!(first.replay_key().starts_with("saml:corp:_"));
}

// ---------------------------------------------------------------------------------------------
// DTD / XXE, size, malformed input
// ---------------------------------------------------------------------------------------------

/// A loopback listener that counts connections: an XXE resolver would connect to it.
fn canary() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn dtd_and_xxe_are_refused_before_any_entity_is_expanded() {
    let Some(f) = fixture(
        "dtd_and_xxe_are_refused_before_any_entity_is_expanded",
        "assertion_signed",
    ) else {
        return;
    };
    let (listener, port) = canary();
    let body = f.xml.trim_start_matches(|c| c != '<');
    let external_entity = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM \"http://127.0.0.1:{port}/xxe\">]>{}",
        replace_once(body, ">u-1234-persistent<", ">&xxe;<")
    );
    let file_entity = format!(
        "<!DOCTYPE samlp:Response [<!ENTITY xxe SYSTEM \"file:///etc/hostname\">]>{}",
        replace_once(body, ">u-1234-persistent<", ">&xxe;<")
    );
    let external_dtd =
        format!("<!DOCTYPE samlp:Response SYSTEM \"http://127.0.0.1:{port}/dtd\">{body}");
    let laughs = format!(
        "<!DOCTYPE samlp:Response [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\">]>{}",
        replace_once(body, ">u-1234-persistent<", ">&c;<")
    );
    // An internal subset that only declares the ID attribute (a trick to move IDs).
    let attlist =
        format!("<!DOCTYPE samlp:Response [<!ATTLIST saml:Assertion ID ID #IMPLIED>]>{body}");
    for doc in [external_entity, file_entity, external_dtd, laughs, attlist] {
        refused(&sp(), &doc, &f.request_id, SamlError::Dtd);
    }
    assert!(
        listener.accept().is_err(),
        "something fetched an external entity"
    );
}

#[test]
fn oversized_body_is_refused_first() {
    let sp = sp();
    let huge = "A".repeat(MAX_SAML_RESPONSE_LEN + 1);
    let err = sp.verify_response(&huge, Some("_x"), now()).unwrap_err();
    assert_eq!(
        err,
        SamlError::TooLarge {
            max: MAX_SAML_RESPONSE_LEN
        }
    );
    assert_eq!(err.status(), 400);
    // Even a DTD never gets parsed past the limit.
    let dtd = b64(&format!(
        "<!DOCTYPE r []><r>{}</r>",
        " ".repeat(MAX_SAML_RESPONSE_LEN)
    ));
    assert!(matches!(
        sp.verify_response(&dtd, Some("_x"), now()).unwrap_err(),
        SamlError::TooLarge { .. }
    ));
}

#[test]
fn malformed_input() {
    let sp = sp();
    for (input, what) in [
        ("%%%not base64%%%".to_owned(), "not base64"),
        (b64("<samlp:Response"), "not XML"),
        (b64("<x/>"), "not a Response"),
        (
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xff, 0xfe]),
            "not UTF-8",
        ),
    ] {
        let err = sp.verify_response(&input, Some("_x"), now()).unwrap_err();
        assert!(matches!(err, SamlError::Malformed(_)), "{what}: {err:?}");
        assert_eq!(err.status(), 400, "{what}");
        assert_eq!(err.code(), "malformed_saml_response");
    }
}

#[test]
fn idp_refusal_status() {
    let xml = concat!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r" Version="2.0" IssueInstant="2024-01-01T00:00:00Z">"#,
        r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder">"#,
        r#"<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode></samlp:Status></samlp:Response>"#
    );
    let err = sp()
        .verify_response(&b64(xml), Some("_x"), now())
        .unwrap_err();
    assert_eq!(err, SamlError::IdpStatus("AuthnFailed".into()));
    assert_eq!(err.status(), 401);
}

// ---------------------------------------------------------------------------------------------
// EncryptedAssertion: AES-CBC only inside a verified Response, one error after decryption
// ("How to Break XML Encryption", Jager & Somorovsky, CCS 2011)
// ---------------------------------------------------------------------------------------------

fn b64_bytes(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

/// An `EncryptedAssertion` of `blocks` (padded by the caller) under AES-128-CBC, its fresh
/// content key sent to the service provider.
fn cbc(blocks: &[u8]) -> String {
    let key = random_bytes(16);
    encrypted_assertion_xml(
        AES128_CBC,
        &b64_bytes(&rsa_oaep(&keys().sp.key, &key)),
        &b64_bytes(&aes128_cbc(&key, blocks)),
    )
}

/// An `EncryptedAssertion` of `plaintext` under AES-128-GCM: what anyone can make with the
/// SP's public key.
fn gcm(plaintext: &[u8]) -> String {
    let key = random_bytes(16);
    encrypted_assertion_xml(
        AES128_GCM,
        &b64_bytes(&rsa_oaep(&keys().sp.key, &key)),
        &b64_bytes(&aes128_gcm(&key, plaintext)),
    )
}

/// `bytes` with its last byte set to `last` (the XML Encryption padding length).
fn last_byte(mut bytes: Vec<u8>, last: u8) -> Vec<u8> {
    *bytes.last_mut().unwrap() = last;
    bytes
}

/// An unsigned Response around a CBC ciphertext is refused before anything is decrypted:
/// with a key that could not decrypt it, without a key, with garbage for ciphertexts, and
/// whatever the AES key size, the answer is the same specific refusal.
#[test]
fn cbc_in_an_unsigned_response_is_refused_before_decryption() {
    let Some(f) = fixture(
        "cbc_in_an_unsigned_response_is_refused_before_decryption",
        "cbc_unsigned_response",
    ) else {
        return;
    };
    assert!(f.xml.contains("xmlenc#aes128-cbc") && !f.xml.contains("<ds:Signature"));
    let refused_cbc = |sp: &SamlServiceProvider, xml: &str| {
        let err = verify_xml(sp, xml, &f.request_id).expect_err("an unsigned CBC response");
        assert_eq!(err, SamlError::CbcWithoutSignedResponse, "{err}");
        assert_eq!(err.status(), 401);
        assert_eq!(err.code(), "saml_cbc_requires_signed_response");
    };
    // The genuine samlify response: the assertion inside is signed, and still refused.
    refused_cbc(&sp(), &f.xml);
    // A key that cannot decrypt it, and no key at all: the same refusal, so nothing was
    // decrypted (else these would fail as `saml_decryption_failed`).
    let mut stranger = sp_config();
    stranger.sp_private_key_pem = Some(keys().stranger.key_pem.clone());
    stranger.sp_certificate_pem = None;
    refused_cbc(&sp_with(stranger), &f.xml);
    let mut keyless = sp_config();
    keyless.sp_private_key_pem = None;
    keyless.sp_certificate_pem = None;
    refused_cbc(&sp_with(keyless), &f.xml);
    // Ciphertexts that are not even base64, an assertion made here, every CBC key size.
    let doc = roxmltree::Document::parse(&f.xml).unwrap();
    let garbage = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "CipherValue")
        .fold(f.xml.clone(), |xml, value| {
            xml.replace(value.text().unwrap(), "%%% not base64 %%%")
        });
    refused_cbc(&sp(), &garbage);
    let plain = element(&fixture_xml("assertion_signed"), "Assertion", None).to_owned();
    refused_cbc(
        &sp(),
        &response_around(&cbc(&xmlenc_pad(plain.as_bytes())), None),
    );
    for bits in ["192", "256"] {
        let other = f
            .xml
            .replace("xmlenc#aes128-cbc", &format!("xmlenc#aes{bits}-cbc"));
        refused_cbc(&sp(), &other);
    }
}

/// A content or key-transport algorithm that is not accepted is refused by name, before
/// any key is used: inside a Response the IdP signed and inside an unsigned one, with the
/// SP key and without. pysaml2 encrypts with 3DES (`tripledes-cbc`) by default.
#[test]
fn refused_encryption_algorithms_are_named() {
    let Some(f) = fixture(
        "refused_encryption_algorithms_are_named",
        "assertion_signed",
    ) else {
        return;
    };
    let plain = element(&f.xml, "Assertion", None).to_owned();
    let des = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc";
    let rsa_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
    let oaep = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
    let encrypted = gcm(plain.as_bytes());
    let mut keyless = sp_config();
    keyless.sp_private_key_pem = None;
    keyless.sp_certificate_pem = None;
    let sps = [sp(), sp_with(keyless)];
    for signer in [Some(&keys().idp), None] {
        for (xml, uri) in [
            (encrypted.replace(AES128_GCM, des), des),
            (encrypted.replace(oaep, rsa_1_5), rsa_1_5),
        ] {
            let xml = response_around(&xml, signer);
            for sp in &sps {
                let err = verify_xml(sp, &xml, &f.request_id).unwrap_err();
                assert_eq!(err, SamlError::EncryptionAlgorithm(uri.into()));
                assert_eq!(
                    err.to_string(),
                    format!("encryption algorithm {uri} is not accepted")
                );
                assert_eq!(err.code(), "saml_disallowed_algorithm");
            }
        }
    }
}

/// Inside a Response whose signature verified, CBC is decrypted: samlify's
/// encrypt-then-sign, with and without a signature on the assertion itself.
#[test]
fn cbc_in_a_signed_response_is_decrypted() {
    let Some(f) = fixture(
        "cbc_in_a_signed_response_is_decrypted",
        "cbc_signed_response",
    ) else {
        return;
    };
    assert!(f.xml.contains("xmlenc#aes128-cbc"));
    let mut want_signed = sp_config();
    want_signed.want_assertions_signed = true;
    for sp in [sp(), sp_with(want_signed)] {
        let login = sp
            .verify_response(&b64(&f.xml), Some(&f.request_id), now())
            .expect("CBC inside a verified Response");
        assert_eq!(login.identity.subject, "u-1234-persistent");
        assert_eq!(
            login.claims.str("mail").as_deref(),
            Some("jane@example.com")
        );
    }
    let only = fixture(
        "cbc_in_a_signed_response_is_decrypted",
        "cbc_signed_response_only",
    )
    .unwrap();
    assert!(only.xml.contains("xmlenc#aes256-cbc"));
    let login = sp()
        .verify_response(&b64(&only.xml), Some(&only.request_id), now())
        .unwrap();
    assert_eq!(login.identity.subject, "u-1234-persistent");
    // The same ciphertext with the Response's signature broken: refused before decryption.
    let tampered = replace_once(
        &only.xml,
        "Version=\"2.0\"",
        "Version=\"2.0\" Consent=\"x\"",
    );
    refused(&sp(), &tampered, &only.request_id, SamlError::BadSignature);
}

/// The ways a ciphertext or the assertion inside it can be wrong, each inside a Response the
/// IdP signed (CBC) or an unsigned one (GCM, which anyone can make with the SP's public
/// key). The genuine assertion encrypted the same way verifies first.
fn decryption_failures(test: &str) -> Option<Vec<(&'static str, String)>> {
    let signed = fixture(test, "assertion_signed")?;
    let signed = element(&signed.xml, "Assertion", None).to_owned();
    let sha1 = element(&fixture_xml("sha1"), "Assertion", None).to_owned();
    let tampered = replace_once(&signed, ">u-1234-persistent<", ">admin<");
    let unsigned = without_signature(&signed);
    let signature = element(&signed, "Signature", None).to_owned();
    let moved = replace_once(
        &unsigned,
        "<saml:Subject>",
        &format!("<saml:Subject>{signature}"),
    );
    let padded = xmlenc_pad(signed.as_bytes());
    let idp = Some(&keys().idp);
    let in_signed = |assertion: String| response_around(&assertion, idp);
    let key = random_bytes(16);
    let cbc_with = |wrapped: &[u8], ciphertext: &[u8]| {
        in_signed(encrypted_assertion_xml(
            AES128_CBC,
            &b64_bytes(wrapped),
            &b64_bytes(ciphertext),
        ))
    };
    let to_sp = rsa_oaep(&keys().sp.key, &key);
    let ciphertext = aes128_cbc(&key, &padded);
    let gcm_ciphertext = aes128_gcm(&key, signed.as_bytes());
    let in_unsigned = |assertion: String| response_around(&assertion, None);
    let cases = vec![
        (
            "CBC: padding length 0",
            in_signed(cbc(&last_byte(padded.clone(), 0))),
        ),
        (
            "CBC: padding length 17",
            in_signed(cbc(&last_byte(padded.clone(), 17))),
        ),
        (
            "CBC: padding length 255",
            in_signed(cbc(&last_byte(padded.clone(), 255))),
        ),
        (
            "CBC: another content key than the one sent",
            cbc_with(&rsa_oaep(&keys().sp.key, &random_bytes(16)), &ciphertext),
        ),
        (
            "CBC: the content key sent to another party",
            cbc_with(&rsa_oaep(&keys().stranger.key, &key), &ciphertext),
        ),
        (
            "CBC: a 32-byte key for AES-128",
            cbc_with(&rsa_oaep(&keys().sp.key, &random_bytes(32)), &ciphertext),
        ),
        (
            "CBC: a truncated ciphertext",
            cbc_with(&to_sp, &ciphertext[..ciphertext.len() - 5]),
        ),
        ("CBC: an IV alone", cbc_with(&to_sp, &ciphertext[..16])),
        (
            "CBC: the last block flipped",
            cbc_with(&to_sp, &{
                let mut c = ciphertext.clone();
                let n = c.len();
                c[n - 20] ^= 0x01;
                c
            }),
        ),
        (
            "CBC: no EncryptedKey",
            in_signed(
                cbc(&padded).split("<ds:KeyInfo").next().unwrap().to_owned()
                    + "<xenc:CipherData><xenc:CipherValue>AAAA</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>",
            ),
        ),
        (
            "CBC: a cipher value that is not base64",
            in_signed(encrypted_assertion_xml(
                AES128_CBC,
                &b64_bytes(&to_sp),
                "%%%",
            )),
        ),
        (
            "CBC: plaintext not UTF-8",
            in_signed(cbc(&xmlenc_pad(&[0xff, 0xfe, 0x3c]))),
        ),
        (
            "CBC: plaintext not XML",
            in_signed(cbc(&xmlenc_pad(b"<saml:Assertion"))),
        ),
        (
            "CBC: plaintext with a DTD",
            in_signed(cbc(&xmlenc_pad(
                format!("<!DOCTYPE x [<!ENTITY e \"admin\">]>{signed}").as_bytes(),
            ))),
        ),
        (
            "CBC: plaintext not an assertion",
            in_signed(cbc(&xmlenc_pad(
                br#"<saml:Subject xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>"#,
            ))),
        ),
        (
            "CBC: two assertions",
            in_signed(cbc(&xmlenc_pad(format!("{signed}{signed}").as_bytes()))),
        ),
        (
            "CBC: an assertion inside the assertion",
            in_signed(cbc(&xmlenc_pad(
                replace_once(
                    &signed,
                    "</saml:Subject>",
                    &format!("</saml:Subject>{unsigned}"),
                )
                .as_bytes(),
            ))),
        ),
        (
            "CBC: the inner signature does not verify",
            in_signed(cbc(&xmlenc_pad(tampered.as_bytes()))),
        ),
        (
            "CBC: the inner signature uses SHA-1",
            in_signed(cbc(&xmlenc_pad(sha1.as_bytes()))),
        ),
        (
            "CBC: the inner signature in the wrong place",
            in_signed(cbc(&xmlenc_pad(moved.as_bytes()))),
        ),
        (
            "GCM: the tag does not verify",
            in_unsigned(encrypted_assertion_xml(
                AES128_GCM,
                &b64_bytes(&to_sp),
                &b64_bytes(&last_byte(
                    gcm_ciphertext.clone(),
                    gcm_ciphertext[gcm_ciphertext.len() - 1] ^ 1,
                )),
            )),
        ),
        (
            "GCM: plaintext not XML",
            in_unsigned(gcm(b"<saml:Assertion")),
        ),
        (
            "GCM: the inner signature does not verify",
            in_unsigned(gcm(tampered.as_bytes())),
        ),
        (
            "GCM: an unsigned assertion",
            in_unsigned(gcm(unsigned.as_bytes())),
        ),
        (
            "GCM: the inner signature uses SHA-1",
            in_unsigned(gcm(sha1.as_bytes())),
        ),
    ];
    // The controls: the genuine assertion, encrypted each way, verifies.
    let request_id = &fixture(test, "assertion_signed")?.request_id;
    for control in [
        in_signed(cbc(&padded)),
        cbc_with(&to_sp, &ciphertext),
        in_unsigned(gcm(signed.as_bytes())),
        in_unsigned(encrypted_assertion_xml(
            AES128_GCM,
            &b64_bytes(&to_sp),
            &b64_bytes(&gcm_ciphertext),
        )),
    ] {
        let login = verify_xml(&sp(), &control, request_id);
        assert!(login.is_ok(), "the control must verify: {login:?}");
    }
    Some(cases)
}

/// Every failure from the decryption up to and including the inner signature check is the
/// same error: same status, code and message (so the same log line, see below).
#[test]
fn every_failure_after_decryption_is_one_error() {
    let Some(cases) = decryption_failures("every_failure_after_decryption_is_one_error") else {
        return;
    };
    let request_id = &fixture(
        "every_failure_after_decryption_is_one_error",
        "assertion_signed",
    )
    .unwrap()
    .request_id;
    let mut want_signed = sp_config();
    want_signed.want_assertions_signed = true;
    let sps = [sp(), sp_with(want_signed)];
    let mut answers = std::collections::BTreeSet::new();
    for (what, xml) in &cases {
        for sp in &sps {
            let err = verify_xml(sp, xml, request_id).expect_err(what);
            assert_eq!(err, SamlError::Decryption, "{what}: {err:?}");
            answers.insert((err.status(), err.code().to_owned(), err.to_string()));
        }
    }
    // An unsigned assertion inside the signed Response: accepted by default, and the same
    // error when signed assertions are required.
    let signed = element(&fixture_xml("assertion_signed"), "Assertion", None).to_owned();
    let unsigned = without_signature(&signed);
    let xml = response_around(&cbc(&xmlenc_pad(unsigned.as_bytes())), Some(&keys().idp));
    verify_xml(&sps[0], &xml, request_id).expect("vouched for by the signed Response");
    let err = verify_xml(&sps[1], &xml, request_id).unwrap_err();
    answers.insert((err.status(), err.code().to_owned(), err.to_string()));
    assert_eq!(
        answers.into_iter().collect::<Vec<_>>(),
        [(
            http::StatusCode::UNAUTHORIZED,
            "saml_decryption_failed".to_owned(),
            "the encrypted assertion could not be decrypted and verified".to_owned()
        )]
    );
}

/// Everything a test's subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The layer with the SAML provider of these tests (its ACS is `ACS_URL`).
fn layer_app() -> axum::Router {
    use jit_provision::{JitLayer, MappingConfig, ProviderConfig};
    let provider = ProviderConfig::saml(sp_config()).mapping({
        let mut built = MappingConfig::default();
        built.username = "{mail | localpart}".into();
        built.email = "{mail}".into();
        built.display_name = String::new();
        built
    });
    let layer = JitLayer::builder()
        .public_url("https://app.example.test")
        .provider(PROVIDER_ID, provider)
        .store(jit_provision::store::MemoryStore::new())
        .build()
        .unwrap();
    axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .layer(layer)
}

/// Starts a login in a fresh browser and posts `saml_response` to the ACS with that
/// browser's cookies and RelayState: the status, content type and body of the answer.
async fn post_acs(app: &axum::Router, saml_response: &str) -> (u16, String, String) {
    use http::{Request, header};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let login = app
        .clone()
        .oneshot(
            Request::get("/auth/corp/login?return_to=/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(login.status(), 302);
    let location = login.headers()[header::LOCATION].to_str().unwrap();
    let relay = url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned();
    let cookies = login
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", saml_response)
        .append_pair("RelayState", &relay)
        .finish();
    let response = app
        .clone()
        .oneshot(
            Request::post("/auth/corp/acs")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookies)
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Through the layer, failures of every kind after decryption give one answer (status,
/// content type, body) and one log line; an unsigned CBC response its own refusal.
#[tokio::test]
async fn decryption_failures_look_alike_through_the_layer() {
    let Some(cases) = decryption_failures("decryption_failures_look_alike_through_the_layer")
    else {
        return;
    };
    let logs = LogBuffer::default();
    let writer = logs.clone();
    // This test alone takes the layer's logging callsites in this binary (thread-local
    // subscriber on a current-thread runtime).
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish(),
    );
    let app = layer_app();
    let mut answers = std::collections::BTreeSet::new();
    for (_, xml) in &cases {
        answers.insert(post_acs(&app, &b64(xml)).await);
    }
    assert_eq!(answers.len(), 1, "{answers:#?}");
    let (status, _, body) = answers.first().unwrap();
    assert_eq!(*status, 401);
    assert!(body.contains("saml_decryption_failed"), "{body}");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("login refused"))
        .collect();
    assert_eq!(refusals.len(), cases.len(), "{text}");
    let distinct: std::collections::BTreeSet<&str> = refusals.iter().copied().collect();
    assert_eq!(distinct.len(), 1, "{distinct:#?}");
    assert!(
        refusals[0].contains("saml_decryption_failed"),
        "{}",
        refusals[0]
    );

    // CBC in an unsigned Response: refused with its own code, before decryption.
    let plain = element(&fixture_xml("assertion_signed"), "Assertion", None).to_owned();
    let unsigned_cbc = response_around(&cbc(&xmlenc_pad(plain.as_bytes())), None);
    let (status, _, body) = post_acs(&app, &b64(&unsigned_cbc)).await;
    assert_eq!(status, 401);
    assert!(body.contains("saml_cbc_requires_signed_response"), "{body}");
}
