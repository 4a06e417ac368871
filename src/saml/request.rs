//! The `AuthnRequest`, sent by the HTTP-Redirect binding (DEFLATE, base64, URL-encoded).

use std::io::Write as _;

use base64::Engine as _;
use flate2::Compression;
use flate2::write::DeflateEncoder;
use rand::RngCore as _;

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

/// The redirect URL: the SSO URL with `SAMLRequest` (raw DEFLATE, base64) and `RelayState`
/// added to its query.
pub(crate) fn redirect_url(
    sso_url: &str,
    xml: &str,
    relay_state: &str,
) -> Result<String, SamlError> {
    if relay_state.len() > MAX_RELAY_STATE {
        return Err(SamlError::Config(format!(
            "RelayState is longer than {MAX_RELAY_STATE} bytes"
        )));
    }
    let mut url = url::Url::parse(sso_url)
        .map_err(|_| SamlError::Config("the IdP SSO URL is not a URL".into()))?;
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(xml.as_bytes())
        .and_then(|()| encoder.try_finish())
        .map_err(|e| SamlError::Config(format!("DEFLATE failed: {e}")))?;
    let deflated = encoder.get_ref();
    let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("SAMLRequest", &encoded);
        if !relay_state.is_empty() {
            query.append_pair("RelayState", relay_state);
        }
    }
    Ok(url.into())
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
        let url = redirect_url("https://idp.example.com/sso?x=1", &xml, "rs").unwrap();
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
        assert!(redirect_url("https://idp/", &xml, &"x".repeat(81)).is_err());
        assert!(new_request_id().starts_with('_'));
        assert_eq!(new_request_id().len(), 33);
    }
}
