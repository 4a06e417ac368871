//! Single Logout (SAML profiles 4.4): the `LogoutRequest` this service provider sends when
//! the user logs out, and the Single Logout service at `{prefix}/{provider}/slo` that
//! receives the identity provider's `LogoutResponse` (the answer to ours) and its
//! `LogoutRequest` (a logout started elsewhere), by HTTP-Redirect or HTTP-POST.
//!
//! What is received is verified before anything is read from it: the HTTP-Redirect
//! signature over the exact octets of the query (SAML bindings 3.4.4.1), or the XML
//! signature of the HTTP-POST message (its verified bytes are the only ones used), with the
//! identity provider's certificates; then `Issuer`, `Destination`, the validity window and,
//! for a response, `InResponseTo`. Every refusal is a [`SloError`].

use std::io::Read as _;

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::Verifier;
use openssl::x509::X509;
use roxmltree::Node;
use serde::{Deserialize, Serialize};

use super::idp_metadata::IdpMetadata;
use super::xml::{self, NS_ASSERTION, NS_PROTOCOL, children, escape, only_child};
use super::{SamlError, SamlServiceProvider, request, signature, structure, time};

/// Largest Single Logout message accepted, in bytes of XML (after inflating).
const MAX_LOGOUT_XML: usize = 64 * 1024;
/// How long after its `IssueInstant` a `LogoutRequest` without `NotOnOrAfter` is accepted,
/// in seconds (the clock skew comes on top). Its ID is remembered that long.
pub(crate) const MAX_LOGOUT_AGE_SECS: i64 = 300;

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// A subject's `NameID` as the identity provider asserted it: what a `LogoutRequest`
/// must name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NameId {
    /// The NameID's text.
    #[serde(rename = "v")]
    pub value: String,
    /// Its `Format`.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Its `NameQualifier`.
    #[serde(rename = "nq", default, skip_serializing_if = "Option::is_none")]
    pub name_qualifier: Option<String>,
    /// Its `SPNameQualifier`.
    #[serde(rename = "spq", default, skip_serializing_if = "Option::is_none")]
    pub sp_name_qualifier: Option<String>,
}

impl NameId {
    /// A NameID with a value only.
    ///
    /// ```
    /// let n = jit_provision::saml::NameId::new("u-1");
    /// assert_eq!(n.value, "u-1");
    /// assert!(n.format.is_none());
    /// ```
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            format: None,
            name_qualifier: None,
            sp_name_qualifier: None,
        }
    }

    fn xml(&self) -> String {
        let mut out = String::from("<saml:NameID");
        for (name, value) in [
            ("Format", &self.format),
            ("NameQualifier", &self.name_qualifier),
            ("SPNameQualifier", &self.sp_name_qualifier),
        ] {
            if let Some(value) = value {
                out.push_str(&format!(" {name}=\"{}\"", escape(value)));
            }
        }
        out.push_str(&format!(">{}</saml:NameID>", escape(&self.value)));
        out
    }
}

impl std::fmt::Debug for NameId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value identifies a person: never in logs.
        f.debug_struct("NameId")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// The plain `NameID` of a `Subject` (or of a `LogoutRequest`), if it has one.
pub(crate) fn name_id_of(parent: Node<'_, '_>) -> Option<NameId> {
    let node = only_child(parent, NS_ASSERTION, "NameID").ok().flatten()?;
    let value = xml::trimmed_text(node).filter(|v| !v.is_empty())?;
    let attr = |name: &str| node.attribute(name).map(str::to_owned);
    Some(NameId {
        value,
        format: attr("Format"),
        name_qualifier: attr("NameQualifier"),
        sp_name_qualifier: attr("SPNameQualifier"),
    })
}

/// Why a Single Logout message was refused, or a logout did not complete.
///
/// Every refusal of a received message is `400` with its own code, and changes no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SloError {
    /// `single_logout` is off for this provider: `404`.
    #[error("single logout is not enabled for this provider")]
    NotEnabled,
    /// Not a usable Single Logout message (no or two `SAMLRequest`/`SAMLResponse`, not
    /// base64, not DEFLATE, too large, not XML, a DTD, the wrong root, a missing ID or
    /// `IssueInstant`, an encrypted NameID): `400`.
    #[error("the SAML logout message is malformed: {0}")]
    Malformed(String),
    /// The message carries no signature (HTTP-Redirect: no `Signature` parameter;
    /// HTTP-POST: no XML signature): `400`.
    #[error("the SAML logout message is not signed")]
    Unsigned,
    /// The signature does not verify with the identity provider's certificates, or its
    /// structure is not accepted (a signature elsewhere than on the message): `400`.
    #[error("the SAML logout message's signature is invalid")]
    BadSignature,
    /// The signature algorithm (`SigAlg`, or the XML signature's methods) is not accepted:
    /// `400`. Carries the algorithm's URI.
    #[error("signature algorithm {0} is not accepted")]
    Algorithm(String),
    /// The `Issuer` is missing or not the identity provider's entity ID: `400`.
    #[error("the SAML logout message's issuer is not the configured identity provider")]
    Issuer,
    /// The `Destination` is missing or not this provider's Single Logout URL: `400`.
    #[error("the SAML logout message's destination is not this service provider's SLO URL")]
    Destination,
    /// `NotOnOrAfter` has passed, or the `IssueInstant` is older than the accepted age: `400`.
    #[error("the SAML logout message has expired")]
    Expired,
    /// The `IssueInstant` is in the future beyond the clock skew: `400`.
    #[error("the SAML logout message is not valid yet")]
    NotYetValid,
    /// This `LogoutRequest` ID was seen before: `400`.
    #[error("the SAML logout request was already used")]
    Replayed,
    /// A `LogoutResponse` that answers no logout this browser started (no pending logout,
    /// another browser's, or another `InResponseTo`): `400`.
    #[error("the SAML logout response does not answer a logout of this browser")]
    UnknownLogout,
    /// The identity provider answered our `LogoutRequest` with another status than
    /// `Success`: `502`. The session here had already ended.
    #[error("the identity provider did not log you out ({0}); your session here has already ended")]
    IdpDidNotLogOut(String),
}

impl SloError {
    /// The HTTP status: `400` for every refused message, `404` when single logout is off,
    /// `502` when the identity provider did not log out.
    pub fn status(&self) -> http::StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code (snake_case, stable).
    ///
    /// ```
    /// use jit_provision::saml::SloError;
    /// assert_eq!(SloError::Unsigned.code(), "saml_logout_unsigned");
    /// assert_eq!(SloError::Unsigned.status(), 400);
    /// ```
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for SloError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::NotEnabled => http::StatusCode::NOT_FOUND,
            Self::IdpDidNotLogOut(_) => http::StatusCode::BAD_GATEWAY,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::NotEnabled => "saml_slo_disabled",
            Self::Malformed(_) => "malformed_saml_logout",
            Self::Unsigned => "saml_logout_unsigned",
            Self::BadSignature => "saml_logout_bad_signature",
            Self::Algorithm(_) => "saml_logout_disallowed_algorithm",
            Self::Issuer => "saml_logout_issuer_mismatch",
            Self::Destination => "saml_logout_destination_mismatch",
            Self::Expired => "saml_logout_expired",
            Self::NotYetValid => "saml_logout_not_yet_valid",
            Self::Replayed => "saml_logout_replayed",
            Self::UnknownLogout => "saml_logout_unknown_request",
            Self::IdpDidNotLogOut(_) => "saml_idp_logout_failed",
        }
    }
}
/// What a structure or signature check found, as a Single Logout refusal.
fn refused(err: SamlError) -> SloError {
    match err {
        SamlError::SignatureAlgorithm(a)
        | SamlError::DigestAlgorithm(a)
        | SamlError::TransformAlgorithm(a) => SloError::Algorithm(a),
        SamlError::Dtd => SloError::Malformed("a DTD is never accepted".into()),
        SamlError::Malformed(why) => SloError::Malformed(why),
        _ => SloError::BadSignature,
    }
}

/// A Single Logout message as it arrived.
pub(crate) enum Incoming<'a> {
    /// HTTP-Redirect: the raw query string.
    Redirect(&'a str),
    /// HTTP-POST: the form, decoded (each name at most once).
    Post(&'a std::collections::HashMap<String, String>),
}

/// Which message a received one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Response,
}

/// A decoded message: its kind, its XML, its `RelayState` and, for HTTP-Redirect, whether
/// its query signature verified.
pub(crate) struct Decoded {
    pub kind: Kind,
    xml: String,
    pub relay_state: Option<String>,
    redirect_signed: Option<bool>,
}

/// A `LogoutRequest` from the identity provider, verified.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct LogoutRequestReceived {
    /// Its `ID` (the replay key and the `InResponseTo` of the answer).
    pub id: String,
    /// The `NameID` it names.
    pub name_id: NameId,
    /// Its `SessionIndex` values (none: every session of the subject).
    pub session_indexes: Vec<String>,
    /// It named more than [`MAX_SESSION_INDEXES`]: only the first ones end, and the answer
    /// is `Responder` + `PartialLogout`.
    pub session_indexes_truncated: bool,
    /// Unix seconds until which it is accepted (skew included): its ID is remembered so long.
    pub accepted_until: i64,
}

/// How many `SessionIndex` values of one `LogoutRequest` end sessions (each is a store call).
pub(crate) const MAX_SESSION_INDEXES: usize = 16;

/// The non-empty `SessionIndex` values of a `LogoutRequest`, at most
/// [`MAX_SESSION_INDEXES`], and whether it named more.
fn session_indexes_of(root: roxmltree::Node<'_, '_>) -> (Vec<String>, bool) {
    let mut all = children(root, NS_PROTOCOL, "SessionIndex")
        .filter_map(xml::trimmed_text)
        .filter(|s| !s.is_empty());
    let kept = all.by_ref().take(MAX_SESSION_INDEXES).collect();
    (kept, all.next().is_some())
}

impl std::fmt::Debug for LogoutRequestReceived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequestReceived")
            .field("id", &self.id)
            .field("session_indexes", &self.session_indexes.len())
            .finish_non_exhaustive()
    }
}

/// A message to send to the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// HTTP-Redirect: the URL to send the browser to.
    Redirect(String),
    /// HTTP-POST: a form to auto-submit to `url`.
    Post {
        url: String,
        saml_response: String,
        relay_state: String,
    },
}

/// Decodes what the Single Logout service received.
fn decode(
    incoming: Incoming<'_>,
    idp: &IdpMetadata,
    allow_sha1: bool,
) -> Result<Decoded, SloError> {
    match incoming {
        Incoming::Redirect(query) => decode_redirect(query, idp, allow_sha1),
        Incoming::Post(form) => {
            let (name, value) = match (form.get("SAMLRequest"), form.get("SAMLResponse")) {
                (Some(v), None) => ("SAMLRequest", v),
                (None, Some(v)) => ("SAMLResponse", v),
                _ => return Err(no_message()),
            };
            let bytes = base64_decode(value)?;
            Ok(Decoded {
                kind: kind_of(name),
                xml: utf8(bytes)?,
                relay_state: form.get("RelayState").cloned(),
                redirect_signed: None,
            })
        }
    }
}

fn no_message() -> SloError {
    SloError::Malformed("no SAMLRequest or SAMLResponse, or both".into())
}

fn kind_of(name: &str) -> Kind {
    if name == "SAMLRequest" {
        Kind::Request
    } else {
        Kind::Response
    }
}

fn base64_decode(value: &str) -> Result<Vec<u8>, SloError> {
    if value.len() > 2 * MAX_LOGOUT_XML {
        return Err(SloError::Malformed("the message is too large".into()));
    }
    let compact: Vec<u8> = value.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SloError::Malformed("the message is not base64".into()))
}

fn utf8(bytes: Vec<u8>) -> Result<String, SloError> {
    if bytes.len() > MAX_LOGOUT_XML {
        return Err(SloError::Malformed("the message is too large".into()));
    }
    String::from_utf8(bytes).map_err(|_| SloError::Malformed("the message is not UTF-8".into()))
}

/// The HTTP-Redirect binding: the raw `name=value` pairs of the query are what the
/// signature covers, in the order `SAMLRequest|SAMLResponse`, `RelayState`, `SigAlg`.
fn decode_redirect(query: &str, idp: &IdpMetadata, allow_sha1: bool) -> Result<Decoded, SloError> {
    let mut message: Option<(String, &str)> = None;
    let mut relay: Option<&str> = None;
    let mut sig_alg: Option<&str> = None;
    let mut signature: Option<&str> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        let slot = match name {
            "SAMLRequest" | "SAMLResponse" => {
                if message.replace((name.to_owned(), pair)).is_some() {
                    return Err(no_message());
                }
                continue;
            }
            "RelayState" => &mut relay,
            "SigAlg" => &mut sig_alg,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(pair).is_some() {
            return Err(SloError::Malformed("a parameter appears twice".into()));
        }
    }
    let (name, pair) = message.ok_or_else(no_message)?;
    let value_of = |pair: &str| -> String {
        url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let deflated = base64_decode(&value_of(pair))?;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .take(MAX_LOGOUT_XML as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| SloError::Malformed("the message is not DEFLATE-encoded".into()))?;
    let xml = utf8(inflated)?;
    let redirect_signed = match (signature, sig_alg) {
        (None, _) => false,
        (Some(_), None) => return Err(SloError::Malformed("Signature without SigAlg".into())),
        (Some(signature), Some(alg)) => {
            let octets: Vec<&str> = [Some(pair), relay, Some(alg)]
                .into_iter()
                .flatten()
                .collect();
            let octets = octets.join("&");
            let signature = base64_decode(&value_of(signature))?;
            verify_query_signature(
                &value_of(alg),
                octets.as_bytes(),
                &signature,
                idp,
                allow_sha1,
            )?;
            true
        }
    };
    Ok(Decoded {
        kind: kind_of(&name),
        xml,
        relay_state: relay.map(value_of),
        redirect_signed: Some(redirect_signed),
    })
}

/// Verifies an HTTP-Redirect signature (RSA PKCS#1 v1.5 with SHA-2; SHA-1 with
/// `allow_sha1`) with any of the IdP's certificates.
fn verify_query_signature(
    alg: &str,
    octets: &[u8],
    signature: &[u8],
    idp: &IdpMetadata,
    allow_sha1: bool,
) -> Result<(), SloError> {
    let digest = match alg {
        request::SIG_ALG_RSA_SHA256 => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => MessageDigest::sha512(),
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1" if allow_sha1 => MessageDigest::sha1(),
        other => return Err(SloError::Algorithm(other.chars().take(128).collect())),
    };
    let verifies = |der: &Vec<u8>| -> Option<bool> {
        let key = X509::from_der(der).ok()?.public_key().ok()?;
        key.rsa().ok()?;
        let mut verifier = Verifier::new(digest, &key).ok()?;
        verifier.set_rsa_padding(Padding::PKCS1).ok()?;
        verifier.verify_oneshot(signature, octets).ok()
    };
    if idp
        .certificates
        .iter()
        .any(|der| verifies(der) == Some(true))
    {
        Ok(())
    } else {
        Err(SloError::BadSignature)
    }
}

/// The message's XML to read, once its signature is verified: for HTTP-Redirect the
/// received XML (the query signature covers it), for HTTP-POST xmlsec's verified bytes.
fn verified_xml(
    decoded: &Decoded,
    root_name: &str,
    idp: &IdpMetadata,
    allow_sha1: bool,
) -> Result<String, SloError> {
    let doc = xml::parse(&decoded.xml).map_err(refused)?;
    let (root, xml_signed) =
        structure::check_logout_message(&doc, root_name, allow_sha1).map_err(refused)?;
    match decoded.redirect_signed {
        Some(true) => Ok(decoded.xml.clone()),
        Some(false) => Err(SloError::Unsigned),
        None if !xml_signed => Err(SloError::Unsigned),
        None => {
            let verified = signature::verified_bytes(&decoded.xml, &idp.certificates, allow_sha1)
                .map_err(refused)?;
            let vdoc = xml::parse(&verified).map_err(refused)?;
            let (vroot, _) =
                structure::check_logout_message(&vdoc, root_name, allow_sha1).map_err(refused)?;
            if vroot.attribute("ID") != root.attribute("ID") {
                return Err(SloError::BadSignature);
            }
            Ok(verified)
        }
    }
}

/// `Version`, `ID`, `IssueInstant` (not in the future), `Issuer` and `Destination` of a
/// verified message; its `ID` and `IssueInstant`.
fn check_common(
    root: Node<'_, '_>,
    idp: &IdpMetadata,
    slo_url: &str,
    skew: i64,
    now: i64,
) -> Result<(String, i64), SloError> {
    let malformed = |why: &str| SloError::Malformed(why.to_owned());
    if root.attribute("Version") != Some("2.0") {
        return Err(malformed("not SAML 2.0"));
    }
    let id = root
        .attribute("ID")
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .ok_or_else(|| malformed("no ID"))?
        .to_owned();
    let issued = root
        .attribute("IssueInstant")
        .and_then(time::parse)
        .ok_or_else(|| malformed("no valid IssueInstant"))?;
    if issued > now + skew {
        return Err(SloError::NotYetValid);
    }
    let issuer = only_child(root, NS_ASSERTION, "Issuer")
        .ok()
        .flatten()
        .and_then(xml::trimmed_text);
    if issuer.as_deref() != Some(idp.entity_id.as_str()) {
        return Err(SloError::Issuer);
    }
    if root.attribute("Destination") != Some(slo_url) {
        return Err(SloError::Destination);
    }
    Ok((id, issued))
}

/// Why a Single Logout message was refused: the SP's SAML set-up, or the message itself.
/// Becomes [`Error::Saml`](crate::Error::Saml) or [`Error::Slo`](crate::Error::Slo).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SloFailure {
    /// The SP's set-up (single logout off, no IdP metadata).
    #[error(transparent)]
    Saml(#[from] SamlError),
    /// The message.
    #[error(transparent)]
    Slo(#[from] SloError),
}

impl SamlServiceProvider {
    /// Decodes a message received by the Single Logout service (and verifies an
    /// HTTP-Redirect query signature).
    pub(crate) fn decode_logout(&self, incoming: Incoming<'_>) -> Result<Decoded, SloFailure> {
        let (idp, _) = self.slo_parts()?;
        Ok(decode(incoming, &idp, self.config.allow_sha1)?)
    }

    /// The IdP's metadata and the SLO URL, when single logout is on.
    fn slo_parts(&self) -> Result<(std::sync::Arc<IdpMetadata>, &str), SamlError> {
        let url = self
            .slo_url
            .as_deref()
            .filter(|_| self.config.single_logout)
            .ok_or_else(|| SamlError::Config("single_logout is off".into()))?;
        Ok((self.idp()?, url))
    }

    /// Whether `single_logout` is on for this provider.
    pub fn single_logout(&self) -> bool {
        self.config.single_logout && self.slo_url.is_some()
    }

    /// The URL of this provider's Single Logout service (`.../{provider}/slo`, next to the
    /// ACS), published in the SP metadata when [`single_logout`](Self::single_logout).
    pub fn slo_url(&self) -> Option<&str> {
        self.slo_url.as_deref()
    }

    /// The key Single Logout messages are signed with: as AuthnRequests when they are
    /// signed, else the SP key when an RSA key and its certificate are configured.
    fn slo_signing_key(&self, idp: &IdpMetadata) -> Result<Option<&PKey<Private>>, SamlError> {
        if let Some(key) = self.request_signing_key(idp)? {
            return Ok(Some(key));
        }
        Ok(self
            .sp_key
            .as_ref()
            .filter(|k| k.rsa().is_ok() && self.sp_certificate.is_some()))
    }

    /// An SP-initiated logout: the URL sending the browser to the IdP's HTTP-Redirect
    /// SingleLogoutService with a `LogoutRequest` for `name_id` and `session_index`, signed
    /// like AuthnRequests (or with the SP key when one is configured), and its ID. `None`
    /// when single logout is off or the IdP has no such endpoint.
    pub(crate) fn logout_request(
        &self,
        name_id: &NameId,
        session_index: Option<&str>,
        relay_state: &str,
        now: i64,
    ) -> Result<Option<(String, String)>, SamlError> {
        if !self.single_logout() {
            return Ok(None);
        }
        let idp = self.idp()?;
        let Some((endpoint, _)) = &idp.slo_redirect else {
            return Ok(None);
        };
        let id = request::new_request_id();
        let session_index = session_index
            .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(s)))
            .unwrap_or_default();
        let xml = format!(
            concat!(
                r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
                r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
                r#"IssueInstant="{instant}" Destination="{dest}" NotOnOrAfter="{until}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer>{name_id}{session_index}</samlp:LogoutRequest>"
            ),
            id = escape(&id),
            instant = time::format(now),
            dest = escape(endpoint),
            until = time::format(now + MAX_LOGOUT_AGE_SECS),
            issuer = escape(&self.sp_entity_id),
            name_id = name_id.xml(),
            session_index = session_index,
        );
        let key = self.slo_signing_key(&idp)?;
        let url =
            request::redirect_url(endpoint, request::Message::Request, &xml, relay_state, key)?;
        Ok(Some((url, id)))
    }

    /// Checks the IdP's `LogoutResponse` to our `LogoutRequest` `expected_id`: signature,
    /// `Issuer`, `Destination`, `InResponseTo`, then its status (`Success`, else
    /// [`SloError::IdpDidNotLogOut`]).
    pub(crate) fn verify_logout_response(
        &self,
        decoded: &Decoded,
        expected_id: Option<&str>,
        now: i64,
    ) -> Result<(), SloFailure> {
        let (idp, slo_url) = self.slo_parts()?;
        let allow_sha1 = self.config.allow_sha1;
        let verified = verified_xml(decoded, "LogoutResponse", &idp, allow_sha1)?;
        let doc = xml::parse(&verified).map_err(refused)?;
        let root = doc.root_element();
        check_common(root, &idp, slo_url, self.config.clock_skew_secs as i64, now)?;
        match (root.attribute("InResponseTo"), expected_id) {
            (Some(got), Some(want)) if got == want => {}
            _ => return Err(SloError::UnknownLogout.into()),
        }
        let code = children(root, NS_PROTOCOL, "Status")
            .next()
            .and_then(|s| children(s, NS_PROTOCOL, "StatusCode").next());
        let value = code.and_then(|c| c.attribute("Value"));
        if value == Some(STATUS_SUCCESS) {
            return Ok(());
        }
        let sub = code
            .and_then(|c| children(c, NS_PROTOCOL, "StatusCode").next())
            .and_then(|s| s.attribute("Value"));
        let shown = sub.or(value).unwrap_or("no status");
        let shown = shown.rsplit(':').next().unwrap_or(shown);
        Err(SloError::IdpDidNotLogOut(shown.chars().take(64).collect()).into())
    }

    /// Checks the IdP's `LogoutRequest`: signature (required), `Issuer`, `Destination`,
    /// `IssueInstant`, `NotOnOrAfter`, a plain `NameID`. The caller refuses a second use of
    /// its ID (replay) and ends the sessions it names.
    pub(crate) fn verify_logout_request(
        &self,
        decoded: &Decoded,
        now: i64,
    ) -> Result<LogoutRequestReceived, SloFailure> {
        let (idp, slo_url) = self.slo_parts()?;
        let allow_sha1 = self.config.allow_sha1;
        let skew = self.config.clock_skew_secs as i64;
        let verified = verified_xml(decoded, "LogoutRequest", &idp, allow_sha1)?;
        let doc = xml::parse(&verified).map_err(refused)?;
        let root = doc.root_element();
        let (id, issued) = check_common(root, &idp, slo_url, skew, now)?;
        let mut accepted_until = issued.saturating_add(MAX_LOGOUT_AGE_SECS);
        if let Some(until) = root.attribute("NotOnOrAfter") {
            let until = time::parse(until)
                .ok_or_else(|| SloError::Malformed("invalid NotOnOrAfter".into()))?;
            accepted_until = accepted_until.min(until);
        }
        let accepted_until = accepted_until.saturating_add(skew);
        if now >= accepted_until {
            return Err(SloError::Expired.into());
        }
        if children(root, NS_ASSERTION, "EncryptedID").next().is_some() {
            return Err(SloError::Malformed("an encrypted NameID is not supported".into()).into());
        }
        let name_id =
            name_id_of(root).ok_or_else(|| SloError::Malformed("no single plain NameID".into()))?;
        let (session_indexes, session_indexes_truncated) = session_indexes_of(root);
        Ok(LogoutRequestReceived {
            id,
            name_id,
            session_indexes,
            session_indexes_truncated,
            accepted_until,
        })
    }

    /// The subject a verified `LogoutRequest` names here: the NameID when it is the
    /// identity (no `identity_attribute`), else unknown (the `SessionIndex` decides).
    pub(crate) fn logout_subject<'a>(&self, request: &'a LogoutRequestReceived) -> Option<&'a str> {
        self.config
            .identity_attribute
            .is_none()
            .then_some(request.name_id.value.as_str())
    }

    /// The signed `LogoutResponse` answering `in_response_to` with `status` (a top-level
    /// status code URI, and an optional second-level one), to the IdP's SingleLogoutService:
    /// HTTP-Redirect when it has one, else an HTTP-POST form (XML-signed).
    pub(crate) fn logout_response(
        &self,
        in_response_to: &str,
        status: (&str, Option<&str>),
        relay_state: Option<&str>,
        now: i64,
    ) -> Result<Outgoing, SamlError> {
        let (idp, _) = self.slo_parts()?;
        let (binding_post, (location, response_location)) = match (&idp.slo_redirect, &idp.slo_post)
        {
            (Some(redirect), _) => (false, redirect),
            (None, Some(post)) => (true, post),
            (None, None) => {
                return Err(SamlError::Metadata(
                    "the IdP has no SingleLogoutService".into(),
                ));
            }
        };
        let endpoint = response_location.as_deref().unwrap_or(location);
        let id = request::new_request_id();
        let second = status
            .1
            .map(|s| format!(r#"<samlp:StatusCode Value="{}"/>"#, escape(s)))
            .unwrap_or_default();
        let signature = if binding_post {
            SIGNATURE_TEMPLATE.replace("{id}", &id)
        } else {
            String::new()
        };
        let xml = format!(
            concat!(
                r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
                r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
                r#"IssueInstant="{instant}" Destination="{dest}" InResponseTo="{irt}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
                r#"<samlp:Status><samlp:StatusCode Value="{top}">{second}</samlp:StatusCode></samlp:Status>"#,
                "</samlp:LogoutResponse>"
            ),
            id = escape(&id),
            instant = time::format(now),
            dest = escape(endpoint),
            irt = escape(in_response_to),
            issuer = escape(&self.sp_entity_id),
            signature = signature,
            top = escape(status.0),
            second = second,
        );
        let key = self.slo_signing_key(&idp)?;
        let relay = relay_state
            .filter(|r| r.len() <= request::MAX_RELAY_STATE)
            .unwrap_or("");
        if !binding_post {
            let url =
                request::redirect_url(endpoint, request::Message::Response, &xml, relay, key)?;
            return Ok(Outgoing::Redirect(url));
        }
        let key = key.ok_or_else(|| {
            SamlError::Config("an HTTP-POST LogoutResponse needs sp_private_key_pem".into())
        })?;
        let der = key
            .private_key_to_der()
            .map_err(|_| SamlError::Config("the SP key cannot be exported".into()))?;
        use samael::crypto::CryptoProvider as _;
        let signed = samael::crypto::Crypto::sign_xml(xml, &der)
            .map_err(|_| SamlError::Config("signing the LogoutResponse failed".into()))?;
        Ok(Outgoing::Post {
            url: endpoint.to_owned(),
            saml_response: base64::engine::general_purpose::STANDARD.encode(signed),
            relay_state: relay.to_owned(),
        })
    }
}

/// The enveloped XML signature template (exclusive c14n, RSA-SHA256, SHA-256) that xmlsec
/// fills in, for the message whose `ID` replaces `{id}`.
const SIGNATURE_TEMPLATE: &str = concat!(
    r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
    r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
    r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
    r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
    r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
    r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
    r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>"#,
    r#"</ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>"#
);

/// The auto-submitting HTML form of an HTTP-POST message.
pub(crate) fn post_form(url: &str, saml_response: &str, relay_state: &str) -> String {
    let relay = if relay_state.is_empty() {
        String::new()
    } else {
        format!(
            r#"<input type="hidden" name="RelayState" value="{}">"#,
            escape(relay_state)
        )
    };
    format!(
        concat!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Logging out</title></head>",
            "<body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{url}\">",
            "<input type=\"hidden\" name=\"SAMLResponse\" value=\"{response}\">{relay}",
            "<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>"
        ),
        url = escape(url),
        response = escape(saml_response),
        relay = relay,
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::Arc;

    use super::*;
    use crate::saml::SamlConfig;
    use crate::saml::signature::tests::key_and_cert;

    const IDP: &str = "https://idp.example.com/metadata";

    /// A provider with single logout whose "IdP" certificate is the SP's own, so what it
    /// signs can be checked as the IdP would; the IdP's SLO endpoints as given.
    fn provider(redirect: Option<&str>, post: Option<&str>) -> (SamlServiceProvider, Vec<u8>) {
        let (key, cert) = key_and_cert();
        let key_pem = PKey::private_key_from_pkcs8(&key)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        let cert_pem = X509::from_der(&cert).unwrap().to_pem().unwrap();
        let cert_pem = String::from_utf8(cert_pem).unwrap();
        let mut config =
            SamlConfig::inline(IDP, "https://idp.example.com/sso", vec![cert_pem.clone()]);
        config.sp_private_key_pem = Some(String::from_utf8(key_pem).unwrap());
        config.sp_certificate_pem = Some(cert_pem);
        config.single_logout = true;
        let sp = SamlServiceProvider::new(
            "corp",
            config,
            "https://sp.example.com/auth/corp/acs",
            "https://sp.example.com/auth/corp/metadata",
        )
        .unwrap();
        *sp.idp.write().unwrap() = Some(Arc::new(IdpMetadata {
            entity_id: IDP.into(),
            sso_url: Some("https://idp.example.com/sso".into()),
            certificates: vec![cert.clone()],
            want_authn_requests_signed: false,
            slo_redirect: redirect.map(|u| (u.to_owned(), None)),
            slo_post: post.map(|u| (u.to_owned(), None)),
        }));
        (sp, cert)
    }

    fn inflated(url: &str, parameter: &str) -> String {
        let url = url::Url::parse(url).unwrap();
        let value = url
            .query_pairs()
            .find(|(k, _)| k == parameter)
            .unwrap()
            .1
            .into_owned();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_string(&mut xml)
            .unwrap();
        xml
    }

    #[test]
    fn the_logout_request_names_the_name_id_as_asserted_and_is_signed() {
        let (sp, _) = provider(Some("https://idp.example.com/slo?x=1"), None);
        assert_eq!(sp.slo_url(), Some("https://sp.example.com/auth/corp/slo"));
        let name_id = NameId {
            value: "u<1>".into(),
            format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into()),
            name_qualifier: Some(IDP.into()),
            sp_name_qualifier: Some("https://sp.example.com/auth/corp/metadata".into()),
        };
        let (url, id) = sp
            .logout_request(&name_id, Some("s-1"), "relay", 1_000_000)
            .unwrap()
            .unwrap();
        assert!(url.starts_with("https://idp.example.com/slo?x=1&SAMLRequest="));
        assert!(url.contains("&Signature="));
        let xml = inflated(&url, "SAMLRequest");
        for part in [
            format!(r#"ID="{id}""#),
            r#"Destination="https://idp.example.com/slo?x=1""#.to_owned(),
            "<saml:Issuer>https://sp.example.com/auth/corp/metadata</saml:Issuer>".to_owned(),
            format!(r#"NameQualifier="{IDP}""#),
            r#"SPNameQualifier="https://sp.example.com/auth/corp/metadata">u&lt;1&gt;</saml:NameID>"#
                .to_owned(),
            "<samlp:SessionIndex>s-1</samlp:SessionIndex>".to_owned(),
        ] {
            assert!(xml.contains(&part), "{xml} lacks {part}");
        }
        // No SLO endpoint at the IdP: no LogoutRequest (a local logout).
        let (sp, _) = provider(None, Some("https://idp.example.com/slo-post"));
        assert_eq!(sp.logout_request(&name_id, None, "r", 0).unwrap(), None);
    }

    /// An IdP with only an HTTP-POST SLO endpoint gets an XML-signed LogoutResponse that
    /// verifies with the SP certificate; a changed byte does not.
    #[test]
    fn a_post_logout_response_is_xml_signed() {
        let (sp, cert) = provider(None, Some("https://idp.example.com/slo-post"));
        let out = sp
            .logout_response("_req1", (STATUS_SUCCESS, None), Some("rs"), 1_000_000)
            .unwrap();
        let Outgoing::Post {
            url,
            saml_response,
            relay_state,
        } = out
        else {
            panic!("expected a POST form");
        };
        assert_eq!(url, "https://idp.example.com/slo-post");
        assert_eq!(relay_state, "rs");
        let xml = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(saml_response)
                .unwrap(),
        )
        .unwrap();
        let verified = signature::verified_bytes(&xml, std::slice::from_ref(&cert), false).unwrap();
        assert!(verified.contains(r#"InResponseTo="_req1""#), "{verified}");
        assert!(verified.contains(STATUS_SUCCESS));
        let tampered = xml.replace("_req1", "_req2");
        assert!(signature::verified_bytes(&tampered, &[cert], false).is_err());
        let form = post_form(&url, "abc", &relay_state);
        assert!(form.contains(r#"name="RelayState" value="rs""#), "{form}");

        // With a Redirect endpoint: a signed SAMLResponse by HTTP-Redirect, with status.
        let (sp, _) = provider(Some("https://idp.example.com/slo"), None);
        let out = sp
            .logout_response(
                "_req1",
                (
                    "urn:oasis:names:tc:SAML:2.0:status:Responder",
                    Some("urn:oasis:names:tc:SAML:2.0:status:PartialLogout"),
                ),
                None,
                0,
            )
            .unwrap();
        let Outgoing::Redirect(url) = out else {
            panic!("expected a redirect");
        };
        assert!(url.contains("&Signature=") && !url.contains("RelayState"));
        let xml = inflated(&url, "SAMLResponse");
        assert!(xml.contains("status:Responder\"><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:PartialLogout\"/>"), "{xml}");
    }

    /// More than [`MAX_SESSION_INDEXES`] values: the first ones are kept and the cut is said.
    #[test]
    fn session_indexes_beyond_the_limit_are_cut_and_flagged() {
        let request = |n: usize| {
            let indexes: String = (0..n)
                .map(|i| format!("<samlp:SessionIndex> s-{i} </samlp:SessionIndex>"))
                .collect();
            format!(
                r#"<samlp:LogoutRequest xmlns:samlp="{NS_PROTOCOL}"><samlp:SessionIndex></samlp:SessionIndex>{indexes}</samlp:LogoutRequest>"#
            )
        };
        for (n, kept, truncated) in [
            (0, 0, false),
            (MAX_SESSION_INDEXES, MAX_SESSION_INDEXES, false),
            (MAX_SESSION_INDEXES + 1, MAX_SESSION_INDEXES, true),
        ] {
            let xml = request(n);
            let doc = xml::parse(&xml).unwrap();
            let (indexes, cut) = session_indexes_of(doc.root_element());
            assert_eq!((indexes.len(), cut), (kept, truncated), "{n}");
            if n > 0 {
                assert_eq!(indexes[0], "s-0");
            }
        }
    }

    /// What the SLO service refuses before reading anything: a second message parameter,
    /// a Signature without SigAlg, an unknown SigAlg, DEFLATE garbage.
    #[test]
    fn redirect_decoding_refuses_ambiguous_queries() {
        let (sp, _) = provider(Some("https://idp.example.com/slo"), None);
        let idp = sp.idp().unwrap();
        let refused = |query: &str| decode(Incoming::Redirect(query), &idp, false).err();
        assert!(matches!(
            refused("RelayState=x"),
            Some(SloError::Malformed(_))
        ));
        assert!(matches!(
            refused("SAMLRequest=AA%3D%3D&SAMLResponse=AA%3D%3D"),
            Some(SloError::Malformed(_))
        ));
        assert!(matches!(
            refused("SAMLRequest=AA%3D%3D&RelayState=a&RelayState=b"),
            Some(SloError::Malformed(_))
        ));
        assert!(matches!(
            refused("SAMLRequest=%25%25"),
            Some(SloError::Malformed(_))
        ));
        let url = request::redirect_url(
            "https://sp.example.com/auth/corp/slo",
            request::Message::Request,
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>"#,
            "",
            None,
        )
        .unwrap();
        let query = url.split_once('?').unwrap().1.to_owned();
        assert!(
            matches!(refused(&format!("{query}&Signature=AA%3D%3D")), Some(SloError::Malformed(m)) if m.contains("SigAlg"))
        );
        assert!(matches!(
            refused(&format!(
                "{query}&SigAlg=http%3A%2F%2Fwww.w3.org%2F2000%2F09%2Fxmldsig%23rsa-sha1&Signature=AA%3D%3D"
            )),
            Some(SloError::Algorithm(_))
        ));
        // Unsigned: decoded, and refused when its XML is read.
        let decoded = decode(Incoming::Redirect(&query), &idp, false).unwrap();
        assert_eq!(decoded.kind, Kind::Request);
        assert!(matches!(
            verified_xml(&decoded, "LogoutRequest", &idp, false),
            Err(SloError::Unsigned)
        ));
    }
}
