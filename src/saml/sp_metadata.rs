//! This service provider's metadata (`EntityDescriptor` with an `SPSSODescriptor`).

use base64::Engine as _;

use super::xml::escape;

/// What the SP metadata publishes.
pub(crate) struct SpMetadata<'a> {
    pub entity_id: &'a str,
    pub acs_url: &'a str,
    /// The SP certificate, DER, published for signing and encryption.
    pub certificate: Option<&'a [u8]>,
    pub want_assertions_signed: bool,
    /// AuthnRequests are signed with the key of `certificate` (`AuthnRequestsSigned`).
    pub authn_requests_signed: bool,
    /// Ask for a persistent NameID.
    pub persistent: bool,
    /// The Single Logout service (HTTP-Redirect and HTTP-POST), when single logout is on.
    pub slo_url: Option<&'a str>,
}

/// The metadata XML.
pub(crate) fn metadata_xml(m: &SpMetadata<'_>) -> String {
    let mut keys = String::new();
    if let Some(der) = m.certificate {
        let cert = base64::engine::general_purpose::STANDARD.encode(der);
        for usage in ["signing", "encryption"] {
            keys.push_str(&format!(
                concat!(
                    r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data>"#,
                    "<ds:X509Certificate>{cert}</ds:X509Certificate>",
                    "</ds:X509Data></ds:KeyInfo>{methods}</md:KeyDescriptor>"
                ),
                usage = usage,
                cert = cert,
                methods = if usage == "encryption" {
                    concat!(
                        r#"<md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>"#,
                        r#"<md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes128-gcm"/>"#,
                        r#"<md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>"#,
                    )
                } else {
                    ""
                },
            ));
        }
    }
    let name_id_format = if m.persistent {
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>"
    } else {
        ""
    };
    // SAML metadata's order: KeyDescriptor, SingleLogoutService, NameIDFormat, ACS.
    let slo = m
        .slo_url
        .map(|url| {
            ["HTTP-Redirect", "HTTP-POST"]
                .iter()
                .map(|binding| {
                    format!(
                        r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" Location="{}"/>"#,
                        escape(url)
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" "#,
            r#"xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="{want}" "#,
            r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            "{keys}{slo}{format}",
            r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" "#,
            r#"Location="{acs}" index="0" isDefault="true"/>"#,
            "</md:SPSSODescriptor></md:EntityDescriptor>"
        ),
        entity = escape(m.entity_id),
        signed = m.authn_requests_signed,
        want = m.want_assertions_signed,
        keys = keys,
        slo = slo,
        format = name_id_format,
        acs = escape(m.acs_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_well_formed_and_escaped() {
        let xml = metadata_xml(&SpMetadata {
            entity_id: "https://sp.example.com/a?b=1&c=2",
            acs_url: "https://sp.example.com/auth/corp/acs",
            certificate: Some(b"not really a certificate"),
            want_assertions_signed: true,
            authn_requests_signed: true,
            persistent: true,
            slo_url: None,
        });
        let descriptor = doc_descriptor(&xml);
        assert_eq!(descriptor.0.as_deref(), Some("true"));
        assert!(descriptor.1, "a signing KeyDescriptor");
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(
            doc.root_element().attribute("entityID"),
            Some("https://sp.example.com/a?b=1&c=2")
        );
        assert!(xml.contains("nameid-format:persistent"));
        assert!(xml.contains(r#"use="encryption""#));
    }

    /// `AuthnRequestsSigned`, and whether a `KeyDescriptor use="signing"` is published.
    fn doc_descriptor(xml: &str) -> (Option<String>, bool) {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let sp = doc
            .descendants()
            .find(|n| n.has_tag_name("SPSSODescriptor"))
            .unwrap();
        let signing = sp
            .children()
            .any(|k| k.has_tag_name("KeyDescriptor") && k.attribute("use") == Some("signing"));
        (
            sp.attribute("AuthnRequestsSigned").map(str::to_owned),
            signing,
        )
    }

    #[test]
    fn unsigned_requests_are_advertised_as_such() {
        let xml = metadata_xml(&SpMetadata {
            entity_id: "https://sp.example.com/m",
            acs_url: "https://sp.example.com/acs",
            certificate: None,
            want_assertions_signed: false,
            authn_requests_signed: false,
            persistent: false,
            slo_url: None,
        });
        assert_eq!(doc_descriptor(&xml), (Some("false".into()), false));
    }
}
