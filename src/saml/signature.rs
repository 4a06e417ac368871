//! XML-DSig verification by xmlsec (through `samael`), returning exactly the bytes that
//! were verified.
//!
//! `samael`'s `reduce_xml_to_signed` verifies every `ds:Signature` of the document with
//! xmlsec against the identity provider's certificates (the document's `KeyInfo` is never
//! trusted: the key is set on the context), and in [`ReduceMode::PreDigest`] returns
//! xmlsec's *pre-digest buffer*: the exclusive-c14n serialization of the referenced element
//! that was hashed into the verified `DigestValue`. Everything the service provider then
//! reads comes from parsing that buffer, so the element used is by construction the
//! element whose signature was verified.

use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};

use super::SamlError;

/// SHA-2 RSA and ECDSA: xmlsec refuses anything else before computing a digest.
const SHA2_ONLY: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Verifies every signature in `xml` with any of `certificates` (DER) and returns the
/// canonical bytes of the verified element: the `Response` when it is signed (its own
/// signature removed by the enveloped transform), else the `Assertion`.
///
/// `allow_sha1` lifts `samael`'s algorithm allowlist (it has no SHA-1 entry); the
/// allowlist of [`super::structure`] has then already limited the algorithms to SHA-2 and
/// SHA-1 RSA/ECDSA.
pub(crate) fn verified_bytes(
    xml: &str,
    certificates: &[Vec<u8>],
    allow_sha1: bool,
) -> Result<String, SamlError> {
    if certificates.is_empty() {
        return Err(SamlError::Config(
            "the identity provider has no signing certificate".into(),
        ));
    }
    let allowed = (!allow_sha1).then_some(&SHA2_ONLY[..]);
    // One certificate at a time: given several, samael stops at the first one whose key
    // type cannot verify the signature (an RSA certificate for an ECDSA signature) instead
    // of trying the next, which would break a rollover between key types. Every signature
    // of the document must verify with the one certificate.
    for der in certificates {
        let certificate = [CertificateDer::from(der.clone())];
        if let Ok(verified) = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &certificate,
            ReduceMode::PreDigest,
            allowed,
        ) {
            return Ok(verified);
        }
    }
    Err(SamlError::BadSignature)
}

#[cfg(test)]
pub(super) mod tests {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509, X509NameBuilder};

    use super::*;

    pub(in crate::saml) fn key_and_cert() -> (Vec<u8>, Vec<u8>) {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "idp").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (
            key.private_key_to_pkcs8().unwrap(),
            b.build().to_der().unwrap(),
        )
    }

    const ASSERTION: &str = concat!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0">"#,
        r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
        r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
        r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
        r##"<ds:Reference URI="#a1"><ds:Transforms>"##,
        r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
        r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
        r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>"#,
        r#"</ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>"#,
        r#"<saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion>"#
    );

    fn response(assertions: &str) -> String {
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="r1" Version="2.0">{assertions}</samlp:Response>"#
        )
    }

    /// Second line of defense behind the structure checks: whatever the wrapping, what
    /// comes back is the element the signature covers, never the attacker's.
    #[test]
    fn verified_bytes_are_the_signed_element_even_when_wrapped() {
        let (key, cert) = key_and_cert();
        let signed = Crypto::sign_xml(response(ASSERTION), &key).unwrap();
        let verified = verified_bytes(&signed, std::slice::from_ref(&cert), false).unwrap();
        assert!(verified.starts_with("<saml:Assertion"), "{verified}");
        assert!(verified.contains(">alice<"));
        assert!(
            !verified.contains("SignatureValue"),
            "enveloped signature removed"
        );

        // XSW5-like: an evil assertion carries the signature, the original is elsewhere.
        let start = signed.find("<saml:Assertion").unwrap();
        let end = signed.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
        let original = &signed[start..end];
        let sig_start = original.find("<ds:Signature").unwrap();
        let sig_end = original.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let unsigned = format!("{}{}", &original[..sig_start], &original[sig_end..]);
        let evil = original
            .replace("ID=\"a1\"", "ID=\"evil\"")
            .replace(">alice<", ">admin<");
        let wrapped = response(&format!("{evil}{unsigned}"));
        let verified = verified_bytes(&wrapped, std::slice::from_ref(&cert), false).unwrap();
        assert!(verified.contains(">alice<") && !verified.contains(">admin<"));

        // Tampering with the signed element itself: refused.
        let tampered = signed.replace(">alice<", ">admin<");
        assert_eq!(
            verified_bytes(&tampered, &[cert], false).unwrap_err(),
            SamlError::BadSignature
        );
    }
}
