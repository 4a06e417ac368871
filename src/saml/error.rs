//! [`SamlError`]: every way a SAML login can fail, with its HTTP status and a short code.

use ::http::StatusCode;

/// Why a SAML login (or the service provider's set-up) failed.
///
/// Every variant maps to one HTTP status ([`status`](Self::status)) and one short
/// machine-readable code ([`code`](Self::code)), like [`OidcError`](crate::oidc::OidcError).
/// Messages never carry the assertion, a NameID or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    /// The `SAMLResponse` parameter is over [`MAX_SAML_RESPONSE_LEN`](super::MAX_SAML_RESPONSE_LEN):
    /// `400`, checked before anything is decoded.
    #[error("the SAML response is larger than {max} bytes")]
    TooLarge {
        /// The limit, in bytes of base64.
        max: usize,
    },
    /// Not base64, not UTF-8, not well-formed XML, or not a SAML `Response`: `400`.
    #[error("the SAML response is malformed: {0}")]
    Malformed(String),
    /// The document carries a DTD (`<!DOCTYPE`), refused before any entity is expanded: `400`.
    #[error("the SAML response carries a DTD, which is never accepted")]
    Dtd,
    /// The identity provider answered with a non-success status: `401`.
    #[error("the identity provider refused the login: {0}")]
    IdpStatus(String),
    /// The document has elements where a genuine response has none (a nested `Response`,
    /// a `Signature` outside the `Response` or `Assertion`, a reference to another element):
    /// the shape of an XML signature wrapping attack. `401`.
    #[error("the SAML response's structure is not accepted: {0}")]
    SignatureWrapping(&'static str),
    /// More than one `Assertion` (or `EncryptedAssertion`) anywhere in the document: `401`.
    #[error("the SAML response carries more than one assertion")]
    MultipleAssertions,
    /// No `Assertion` nor `EncryptedAssertion`: `401`.
    #[error("the SAML response carries no assertion")]
    NoAssertion,
    /// Neither the `Response` nor the `Assertion` is signed: `401`.
    #[error("neither the SAML response nor its assertion is signed")]
    Unsigned,
    /// The assertion is not signed by itself and the provider wants signed assertions: `401`.
    #[error("the assertion is not signed and the provider requires signed assertions")]
    AssertionNotSigned,
    /// A signature's `SignatureMethod` is not accepted (anything but RSA PKCS#1 v1.5 or
    /// ECDSA with SHA-256/384/512; SHA-1 unless `allow_sha1`): `401`. Carries the
    /// algorithm's URI.
    #[error("signature algorithm {0} is not accepted")]
    SignatureAlgorithm(String),
    /// A signature reference's `DigestMethod` is not accepted (anything but SHA-256/384/512;
    /// SHA-1 unless `allow_sha1`): `401`. Carries the algorithm's URI.
    #[error("digest algorithm {0} is not accepted")]
    DigestAlgorithm(String),
    /// A signature's canonicalization or a reference's transform is not accepted (anything
    /// but exclusive c14n and, as a transform, enveloped-signature): `401`. Carries the
    /// algorithm's URI.
    #[error("canonicalization or transform algorithm {0} is not accepted")]
    TransformAlgorithm(String),
    /// An `EncryptedAssertion` uses a key transport (`rsa-1_5`, or an OAEP digest or MGF
    /// other than SHA-1/SHA-2) or a content encryption (anything but AES-GCM and AES-CBC,
    /// such as `tripledes-cbc`) that is not accepted: `401`. Carries the algorithm's URI.
    /// Decided from the algorithm URIs alone, before anything is decrypted (no oracle).
    #[error("encryption algorithm {0} is not accepted")]
    EncryptionAlgorithm(String),
    /// The signature does not verify with any of the identity provider's certificates: `401`.
    #[error("the SAML signature is invalid")]
    BadSignature,
    /// The `EncryptedAssertion` could not be decrypted with the service provider's key, or
    /// what it holds is not a single well-formed assertion whose signature verifies (or, when
    /// its own signature is missing, one the verified `Response` vouches for and
    /// `want_assertions_signed` does not refuse): `401`.
    ///
    /// Deliberately one error, with one message and one log line, for every failure from the
    /// decryption up to and including the inner assertion's signature check (an unsupported
    /// algorithm, a wrong or missing key, bad padding, a plaintext that is not UTF-8 or not
    /// XML, a wrapped, unsigned or badly signed assertion): a service provider that answers
    /// differently for each is a decryption oracle ("How to Break XML Encryption", Jager &
    /// Somorovsky, CCS 2011).
    #[error("the encrypted assertion could not be decrypted and verified")]
    Decryption,
    /// The `EncryptedAssertion` uses AES-CBC and the `Response` around it is not signed:
    /// refused before anything is decrypted, since CBC has no integrity check of its own and
    /// only a verified `Response` signature shows the ciphertext is the IdP's. AES-GCM is
    /// accepted without one. `401`.
    #[error(
        "the assertion is encrypted with AES-CBC, which is accepted only inside a signed Response"
    )]
    CbcWithoutSignedResponse,
    /// The provider requires encrypted assertions and this one came in clear: `401`.
    #[error("the assertion is not encrypted and the provider requires encrypted assertions")]
    NotEncrypted,
    /// An `Issuer` (of the response or the assertion) is not the identity provider's entity
    /// ID: `401`.
    #[error("the SAML issuer is not the configured identity provider")]
    Issuer,
    /// The response's `Destination` is not our ACS URL: `401`.
    #[error("the SAML response's destination is not this service provider's ACS URL")]
    Destination,
    /// `InResponseTo` (of the response or the bearer confirmation) does not match the login
    /// this browser started, or is missing from a solicited response, or is present in an
    /// unsolicited one: `401`.
    #[error("the SAML response does not answer the login request of this browser")]
    InResponseTo,
    /// This assertion was already used (its ID is remembered until it expires).
    #[error("the assertion was already used")]
    Replayed,
    /// An unsolicited (IdP-initiated) response, and this provider does not allow them: `401`.
    #[error(
        "the SAML response answers no login request (an IdP-initiated login), and IdP-initiated login is not enabled for this provider (allow_idp_initiated)"
    )]
    UnsolicitedResponse,
    /// A verified response answers a login request, but this browser has no login in
    /// progress for it: its pending-login cookie did not come back (the login was started in
    /// another browser, or the browser dropped or blocked the cookie): `400`.
    #[error(
        "no login is in progress in this browser for this SAML response (its pending-login cookie did not come back): start the login again"
    )]
    NoLoginInProgress,
    /// A verified response answers this browser's login, which has expired
    /// (`session.login_ttl_secs` after it started): `400`.
    #[error("the login expired before the identity provider answered it: start the login again")]
    LoginExpired,
    /// A verified response answers a login that was already completed (or refused) with
    /// another post to the ACS, for example the same response posted again from the
    /// browser's history: `400`.
    #[error("this login was already used: start the login again")]
    LoginAlreadyUsed,
    /// The assertion (its `Conditions` or bearer confirmation) has expired: `401`.
    #[error("the SAML assertion has expired")]
    Expired,
    /// The assertion is not valid yet (`NotBefore` or `IssueInstant` in the future beyond the
    /// allowed clock skew): `401`.
    #[error("the SAML assertion is not valid yet")]
    NotYetValid,
    /// `AudienceRestriction` is missing or does not name our entity ID: `401`.
    #[error("the SAML assertion is not meant for this service provider")]
    Audience,
    /// No bearer `SubjectConfirmation` names our ACS URL as `Recipient`: `401`.
    #[error("the SAML assertion's recipient is not this service provider's ACS URL")]
    Recipient,
    /// The assertion lacks something the Web Browser SSO profile requires (a bearer
    /// confirmation, its `NotOnOrAfter`, an `AuthnStatement`, ...): `401`.
    #[error("the SAML assertion is invalid: {0}")]
    InvalidAssertion(&'static str),
    /// The subject is not a persistent NameID (and no identity attribute is configured), or
    /// the configured identity attribute is missing, empty or multi-valued: `401`.
    #[error("the SAML assertion carries no usable immutable subject: {0}")]
    Subject(&'static str),
    /// The configured `identity_attribute` names no attribute's `Name`, but an attribute has
    /// it as its `FriendlyName`: `401`, code `saml_invalid_subject`. `identity_attribute`
    /// matches `Name` only (a `FriendlyName` is a display hint, which SAML core 2.7.3.1 says
    /// must not identify an attribute), so the message names the `Name` to configure.
    #[error(
        "the identity attribute `{friendly_name}` is not in the assertion: identity_attribute matches an attribute's Name only; the assertion has an attribute with FriendlyName `{friendly_name}` whose Name is `{name}`: set identity_attribute = \"{name}\""
    )]
    IdentityAttributeIsFriendlyName {
        /// The configured `identity_attribute`, found as a `FriendlyName`.
        friendly_name: String,
        /// The `Name` of that attribute.
        name: String,
    },
    /// The identity provider's metadata could not be loaded or is invalid: `502`.
    #[error("the identity provider's SAML metadata could not be loaded: {0}")]
    Metadata(String),
    /// The provider's configuration is invalid (found when it is built): `500`.
    #[error("invalid SAML provider configuration: {0}")]
    Config(String),
}

impl SamlError {
    /// The HTTP status this failure answers with: `400` for malformed, oversized or DTD
    /// input, `401` for every validation failure, `502` when the IdP metadata cannot be
    /// loaded, `500` for a configuration error.
    pub fn status(&self) -> StatusCode {
        crate::failure::Failure::status(self)
    }

    /// A short machine-readable code (snake_case, stable).
    pub fn code(&self) -> &str {
        crate::failure::Failure::code(self)
    }
}

impl crate::failure::Failure for SamlError {
    fn status(&self) -> ::http::StatusCode {
        match self {
            Self::TooLarge { .. } | Self::Malformed(_) | Self::Dtd => StatusCode::BAD_REQUEST,
            Self::Metadata(_) => StatusCode::BAD_GATEWAY,
            Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::IdpStatus(_)
            | Self::SignatureWrapping(_)
            | Self::MultipleAssertions
            | Self::NoAssertion
            | Self::Unsigned
            | Self::AssertionNotSigned
            | Self::SignatureAlgorithm(_)
            | Self::DigestAlgorithm(_)
            | Self::TransformAlgorithm(_)
            | Self::EncryptionAlgorithm(_)
            | Self::BadSignature
            | Self::Decryption
            | Self::CbcWithoutSignedResponse
            | Self::NotEncrypted
            | Self::Issuer
            | Self::Destination
            | Self::InResponseTo
            | Self::Replayed
            | Self::UnsolicitedResponse
            | Self::Expired
            | Self::NotYetValid
            | Self::Audience
            | Self::Recipient
            | Self::InvalidAssertion(_)
            | Self::Subject(_)
            | Self::IdentityAttributeIsFriendlyName { .. } => StatusCode::UNAUTHORIZED,
            Self::NoLoginInProgress | Self::LoginExpired | Self::LoginAlreadyUsed => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    fn code(&self) -> &str {
        match self {
            Self::TooLarge { .. } => "saml_response_too_large",
            Self::Malformed(_) => "malformed_saml_response",
            Self::Dtd => "saml_dtd_forbidden",
            Self::IdpStatus(_) => "idp_refused_login",
            Self::SignatureWrapping(_) => "saml_signature_wrapping",
            Self::MultipleAssertions => "saml_multiple_assertions",
            Self::NoAssertion => "saml_no_assertion",
            Self::Unsigned => "saml_unsigned",
            Self::AssertionNotSigned => "saml_assertion_not_signed",
            Self::SignatureAlgorithm(_)
            | Self::DigestAlgorithm(_)
            | Self::TransformAlgorithm(_)
            | Self::EncryptionAlgorithm(_) => "saml_disallowed_algorithm",
            Self::BadSignature => "saml_bad_signature",
            Self::Decryption => "saml_decryption_failed",
            Self::CbcWithoutSignedResponse => "saml_cbc_requires_signed_response",
            Self::NotEncrypted => "saml_not_encrypted",
            Self::Issuer => "saml_issuer_mismatch",
            Self::Destination => "saml_destination_mismatch",
            Self::InResponseTo => "saml_in_response_to_mismatch",
            Self::Replayed => "saml_assertion_replayed",
            Self::UnsolicitedResponse => "saml_unsolicited_response",
            Self::Expired => "saml_assertion_expired",
            Self::NotYetValid => "saml_assertion_not_yet_valid",
            Self::Audience => "saml_audience_mismatch",
            Self::Recipient => "saml_recipient_mismatch",
            Self::InvalidAssertion(_) => "invalid_saml_assertion",
            Self::Subject(_) | Self::IdentityAttributeIsFriendlyName { .. } => {
                "saml_invalid_subject"
            }
            Self::NoLoginInProgress => "saml_no_login_in_progress",
            Self::LoginExpired => "saml_login_expired",
            Self::LoginAlreadyUsed => "saml_login_already_used",
            Self::Metadata(_) => "idp_metadata_failed",
            Self::Config(_) => "saml_config_invalid",
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_issue() {
        assert_eq!(SamlError::Dtd.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            SamlError::TooLarge { max: 1 }.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(SamlError::BadSignature.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            SamlError::Metadata("x".into()).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(SamlError::Expired.code(), "saml_assertion_expired");
    }

    #[test]
    fn refused_algorithms_are_named() {
        let sha1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
        assert_eq!(
            SamlError::SignatureAlgorithm(sha1.into()).to_string(),
            format!("signature algorithm {sha1} is not accepted")
        );
        let des = "http://www.w3.org/2001/04/xmlenc#tripledes-cbc";
        let err = SamlError::EncryptionAlgorithm(des.into());
        assert!(err.to_string().contains(des));
        assert_eq!(err.code(), "saml_disallowed_algorithm");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    }
}
