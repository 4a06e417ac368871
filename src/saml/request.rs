//! The `AuthnRequest`, sent by the HTTP-Redirect binding (DEFLATE, base64, URL-encoded),
//! signed with the SP key when the IdP wants signed requests.

use std::io::Write as _;

use base64::Engine as _;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::Signer;
use rand::RngCore as _;
use url::form_urlencoded;

use super::SamlError;
use super::xml::escape;

/// Longest `RelayState` the binding allows (SAML bindings 3.4.3: 80 bytes).
pub const MAX_RELAY_STATE: usize = 80;

/// A fresh request ID: `_` and 32 hex digits (an `xs:ID` must not start with a digit).
pub(crate) fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut id = String::with_capacity(33);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// The parameters of one request.
pub(crate) struct Request<'a> {
    pub id: &'a str,
    pub issue_instant: &'a str,
    pub sso_url: &'a str,
    pub acs_url: &'a str,
    pub sp_entity_id: &'a str,
    /// Ask for a persistent NameID (else no format is asked for).
    pub persistent: bool,
}

/// The `AuthnRequest` XML.
pub(crate) fn authn_request_xml(r: &Request<'_>) -> String {
    let policy = if r.persistent {
        r#"<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="true"/>"#
    } else {
        r#"<samlp:NameIDPolicy AllowCreate="true"/>"#
    };
    format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" "#,
            r#"xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" "#,
            r#"IssueInstant="{instant}" Destination="{dest}" AssertionConsumerServiceURL="{acs}" "#,
            r#"ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{policy}</samlp:AuthnRequest>"
        ),
        id = escape(r.id),
        instant = escape(r.issue_instant),
        dest = escape(r.sso_url),
        acs = escape(r.acs_url),
        issuer = escape(r.sp_entity_id),
        policy = policy,
    )
}

/// `SigAlg` of a signed HTTP-Redirect message: RSA PKCS#1 v1.5 with SHA-256.
pub(crate) const SIG_ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// Which message a Redirect-binding URL carries: its query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// `SAMLRequest`: an `AuthnRequest` or a `LogoutRequest`.
    Request,
    /// `SAMLResponse`: a `LogoutResponse`.
    #[allow(dead_code)] // For the single logout to come.
    Response,
}

impl Message {
    fn parameter(self) -> &'static str {
        match self {
            Self::Request => "SAMLRequest",
            Self::Response => "SAMLResponse",
        }
    }
}

/// A message sent by the HTTP-Redirect binding (SAML bindings 3.4.4): `endpoint` with
/// `SAMLRequest` / `SAMLResponse` (raw DEFLATE, base64) and `RelayState` (omitted when
/// empty) added to its query, and, with a `signing_key`, `SigAlg` and `Signature`
/// (3.4.4.1): RSA-SHA256 over the exact octets `SAMLRequest=..&RelayState=..&SigAlg=..`
/// as they appear in the URL, so the IdP verifies the bytes it received. A query the
/// endpoint already has stays in front and is not signed.
pub(crate) fn redirect_url(
    endpoint: &str,
    message: Message,
    xml: &str,
    relay_state: &str,
    signing_key: Option<&PKey<Private>>,
) -> Result<String, SamlError> {
    if relay_state.len() > MAX_RELAY_STATE {
        return Err(SamlError::Config(format!(
            "RelayState is longer than {MAX_RELAY_STATE} bytes"
        )));
    }
    let mut url = url::Url::parse(endpoint)
        .map_err(|_| SamlError::Config("the IdP endpoint is not a URL".into()))?;
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(xml.as_bytes())
        .and_then(|()| encoder.try_finish())
        .map_err(|e| SamlError::Config(format!("DEFLATE failed: {e}")))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(encoder.get_ref());
    let mut params = form_urlencoded::Serializer::new(String::new());
    params.append_pair(message.parameter(), &encoded);
    if !relay_state.is_empty() {
        params.append_pair("RelayState", relay_state);
    }
    let mut saml = params.finish();
    if let Some(key) = signing_key {
        let mut params = form_urlencoded::Serializer::for_suffix(saml, 0);
        params.append_pair("SigAlg", SIG_ALG_RSA_SHA256);
        let octets = params.finish();
        let signature = sign_rsa_sha256(key, octets.as_bytes())?;
        let mut params = form_urlencoded::Serializer::for_suffix(octets, 0);
        params.append_pair("Signature", &signature);
        saml = params.finish();
    }
    let query = match url.query().filter(|q| !q.is_empty()) {
        Some(existing) => format!("{existing}&{saml}"),
        None => saml,
    };
    url.set_query(Some(&query));
    Ok(url.into())
}

/// RSA PKCS#1 v1.5 with SHA-256 over `octets`, base64.
fn sign_rsa_sha256(key: &PKey<Private>, octets: &[u8]) -> Result<String, SamlError> {
    let fail = |_| SamlError::Config("signing the request with the SP key failed".into());
    let mut signer = Signer::new(MessageDigest::sha256(), key).map_err(fail)?;
    signer.set_rsa_padding(Padding::PKCS1).map_err(fail)?;
    signer.update(octets).map_err(fail)?;
    let signature = signer.sign_to_vec().map_err(fail)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signature))
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn redirect_round_trips() {
        let xml = authn_request_xml(&Request {
            id: "_abc",
            issue_instant: "2024-01-01T00:00:00Z",
            sso_url: "https://idp.example.com/sso?x=1",
            acs_url: "https://sp.example.com/auth/corp/acs",
            sp_entity_id: "https://sp.example.com/auth/corp/metadata",
            persistent: true,
        });
        let url = redirect_url(
            "https://idp.example.com/sso?x=1",
            Message::Request,
            &xml,
            "rs",
            None,
        )
        .unwrap();
        let url = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("x".into(), "1".into()));
        assert_eq!(pairs[2], ("RelayState".into(), "rs".into()));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&pairs[1].1)
            .unwrap();
        let mut inflated = String::new();
        flate2::read::DeflateDecoder::new(&raw[..])
            .read_to_string(&mut inflated)
            .unwrap();
        assert_eq!(inflated, xml);
        assert_eq!(pairs.len(), 3, "unsigned: no SigAlg, no Signature");
        assert!(
            redirect_url(
                "https://idp/",
                Message::Request,
                &xml,
                &"x".repeat(81),
                None
            )
            .is_err()
        );
        assert!(new_request_id().starts_with('_'));
        assert_eq!(new_request_id().len(), 33);
    }

    /// The signature covers the exact octets of `SAMLRequest=..&RelayState=..&SigAlg=..` in
    /// the URL (not the endpoint's own query), and verifies with the SP certificate's key.
    #[test]
    fn signed_redirect_verifies_against_the_certificate() {
        use openssl::rsa::Rsa;
        use openssl::sign::Verifier;

        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let public = PKey::public_key_from_pem(&key.public_key_to_pem().unwrap()).unwrap();
        let xml = "<samlp:AuthnRequest ID=\"_x\"/>";
        let url = redirect_url(
            "https://idp.example.com/sso?tenant=a+b",
            Message::Request,
            xml,
            "relay-1",
            Some(&key),
        )
        .unwrap();
        let query = url::Url::parse(&url).unwrap().query().unwrap().to_owned();
        let (signed, signature) = query.rsplit_once("&Signature=").unwrap();
        let signed = signed.strip_prefix("tenant=a+b&").unwrap();
        assert!(signed.starts_with("SAMLRequest="));
        assert!(signed.contains("&RelayState=relay-1&SigAlg="));
        assert!(
            signed.ends_with(
                "&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256"
            )
        );
        let signature: String = form_urlencoded::parse(format!("s={signature}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .unwrap();
        let check = |octets: &[u8]| {
            let mut v = Verifier::new(MessageDigest::sha256(), &public).unwrap();
            v.set_rsa_padding(Padding::PKCS1).unwrap();
            v.verify_oneshot(&signature, octets).unwrap()
        };
        assert!(check(signed.as_bytes()));
        // One changed octet (another RelayState) does not verify.
        assert!(!check(signed.replace("relay-1", "relay-2").as_bytes()));

        // A response (single logout) without RelayState: `SAMLResponse=..&SigAlg=..`.
        let url = redirect_url("https://idp/slo", Message::Response, xml, "", Some(&key)).unwrap();
        let query = url::Url::parse(&url).unwrap().query().unwrap().to_owned();
        let (signed, _) = query.rsplit_once("&Signature=").unwrap();
        assert!(signed.starts_with("SAMLResponse=") && !signed.contains("RelayState"));
        assert!(signed.contains("&SigAlg="));
    }
}
