//! [`SamlConfig`]: one SAML identity provider as the configuration names it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Longest clock skew accepted in a configuration: ten minutes.
pub const MAX_CLOCK_SKEW_SECS: u64 = 600;

/// One SAML 2.0 identity provider, and how this service provider talks to it.
///
/// The identity provider comes from exactly one source: its metadata in a file
/// (`idp_metadata_file`), its metadata at a URL (`idp_metadata_url`, loaded by
/// [`SamlServiceProvider::load_metadata`](super::SamlServiceProvider::load_metadata)), or
/// inline (`idp_entity_id` + `idp_sso_url` + `idp_certificates`).
///
/// ```
/// let config: jit_provision::saml::SamlConfig = serde_json::from_value(serde_json::json!({
///     "idp_metadata_url": "https://idp.example.com/metadata",
///     "identity_attribute": "urn:oid:0.9.2342.19200300.100.1.1"
/// })).unwrap();
/// assert!(!config.allow_idp_initiated && !config.single_logout);
/// assert_eq!(config.clock_skew_secs, 60);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SamlConfig {
    /// Path of the identity provider's metadata XML (an `EntityDescriptor`, or an
    /// `EntitiesDescriptor` holding it, then picked by `idp_entity_id`). Default: none.
    #[serde(default)]
    pub idp_metadata_file: Option<PathBuf>,
    /// URL of the identity provider's metadata XML, fetched by `load_metadata` (HTTPS, or
    /// HTTP on a loopback address only). Default: none.
    #[serde(default)]
    pub idp_metadata_url: Option<String>,
    /// The identity provider's entity ID. Required without metadata; with metadata it picks
    /// the entity out of an `EntitiesDescriptor` and must match. Default: none.
    #[serde(default)]
    pub idp_entity_id: Option<String>,
    /// The identity provider's SingleSignOnService URL for the HTTP-Redirect binding.
    /// Required without metadata, where it overrides the metadata's. Default: none.
    #[serde(default)]
    pub idp_sso_url: Option<String>,
    /// The identity provider's signing certificates, PEM (several for a key rollover: a
    /// signature made by any of them is accepted). Required without metadata, not allowed
    /// with it. Default: empty.
    #[serde(default)]
    pub idp_certificates: Vec<String>,
    /// This service provider's entity ID, the audience assertions must name. Default: the
    /// SP metadata URL (`{public_url}{prefix}/{provider}/metadata`).
    #[serde(default)]
    pub sp_entity_id: Option<String>,
    /// Accept unsolicited responses (IdP-initiated login, no `InResponseTo`). Default: false.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Accept SHA-1 signatures and digests (RSA-SHA1). Default: false.
    #[serde(default)]
    pub allow_sha1: bool,
    /// Clock skew allowed on `NotBefore`, `NotOnOrAfter` and `IssueInstant`, in seconds (at
    /// most 600). Default: 60.
    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
    /// The identity key. `None`: the persistent NameID (format
    /// `urn:oasis:names:tc:SAML:2.0:nameid-format:persistent`, required then). `Some(name)`:
    /// the single value of the attribute with that `Name` (an immutable identifier such as
    /// an employee number or an object GUID; never an email address). It is checked at
    /// start-up as a [claim path](crate::mapping::ClaimPath); since SAML attribute values
    /// are text, it always names an attribute `Name` verbatim (URIs and OIDs as they are).
    /// It never matches a `FriendlyName`: naming one is refused at login with
    /// [`SamlError::IdentityAttributeIsFriendlyName`](super::SamlError::IdentityAttributeIsFriendlyName),
    /// whose message names the `Name` to configure. Default: none.
    #[serde(default)]
    pub identity_attribute: Option<String>,
    /// This service provider's private key, PEM (PKCS#8 or PKCS#1 RSA): decrypts
    /// `EncryptedAssertion`, and signs `AuthnRequest`s when they are signed (see
    /// `sign_requests`). Default: none (encrypted assertions are then refused).
    #[serde(default)]
    pub sp_private_key_pem: Option<String>,
    /// This service provider's certificate, PEM, published in the SP metadata for signing
    /// and encryption. Must match `sp_private_key_pem`. Default: none.
    #[serde(default)]
    pub sp_certificate_pem: Option<String>,
    /// Require the assertion itself to be signed (a signed `Response` alone is then not
    /// enough); published as `WantAssertionsSigned`. Default: false (a signed `Response` or
    /// a signed `Assertion` is accepted).
    #[serde(default)]
    pub want_assertions_signed: bool,
    /// Require the assertion to come encrypted (`EncryptedAssertion`). Default: false.
    #[serde(default)]
    pub require_encrypted_assertions: bool,
    /// Sign every `AuthnRequest` (HTTP-Redirect binding signature, RSA-SHA256) with
    /// `sp_private_key_pem`, even when the IdP's metadata does not say
    /// `WantAuthnRequestsSigned="true"` (when it does, requests are signed anyway). Signing
    /// needs `sp_private_key_pem` (RSA) and `sp_certificate_pem`, published in the SP
    /// metadata with `AuthnRequestsSigned="true"`; without them such a provider is refused
    /// when it is built (or when its metadata URL is loaded). Default: false.
    #[serde(default)]
    pub sign_requests: bool,
    /// SAML Single Logout: `POST {prefix}/logout` of a session of this provider sends the
    /// browser on to the IdP's HTTP-Redirect `SingleLogoutService` (from its metadata) with a
    /// `LogoutRequest` (NameID and SessionIndex of the login; signed like `AuthnRequest`s, or
    /// with the SP key when one is configured), and `{prefix}/{provider}/slo` (HTTP-Redirect
    /// and HTTP-POST, advertised in the SP metadata) takes the IdP's `LogoutResponse` and
    /// its signed `LogoutRequest`s, which end the sessions they name on every instance.
    /// Default: false.
    #[serde(default)]
    pub single_logout: bool,
    /// Time limit for fetching `idp_metadata_url`, in seconds. Default: 10.
    #[serde(default = "default_metadata_timeout")]
    pub metadata_timeout_secs: u64,
}

fn default_skew() -> u64 {
    60
}

fn default_metadata_timeout() -> u64 {
    10
}

impl Default for SamlConfig {
    /// No identity provider yet, every other field at its documented default.
    fn default() -> Self {
        Self {
            idp_metadata_file: None,
            idp_metadata_url: None,
            idp_entity_id: None,
            idp_sso_url: None,
            idp_certificates: Vec::new(),
            sp_entity_id: None,
            allow_idp_initiated: false,
            allow_sha1: false,
            clock_skew_secs: default_skew(),
            identity_attribute: None,
            sp_private_key_pem: None,
            sp_certificate_pem: None,
            want_assertions_signed: false,
            require_encrypted_assertions: false,
            sign_requests: false,
            single_logout: false,
            metadata_timeout_secs: default_metadata_timeout(),
        }
    }
}

impl std::fmt::Debug for SamlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlConfig")
            .field("idp_metadata_file", &self.idp_metadata_file)
            .field("idp_metadata_url", &self.idp_metadata_url)
            .field("idp_entity_id", &self.idp_entity_id)
            .field("idp_sso_url", &self.idp_sso_url)
            .field("idp_certificates", &self.idp_certificates.len())
            .field("sp_entity_id", &self.sp_entity_id)
            .field("allow_idp_initiated", &self.allow_idp_initiated)
            .field("allow_sha1", &self.allow_sha1)
            .field("clock_skew_secs", &self.clock_skew_secs)
            .field("identity_attribute", &self.identity_attribute)
            .field(
                "sp_private_key_pem",
                &self.sp_private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("sp_certificate_pem", &self.sp_certificate_pem.is_some())
            .field("want_assertions_signed", &self.want_assertions_signed)
            .field(
                "require_encrypted_assertions",
                &self.require_encrypted_assertions,
            )
            .field("sign_requests", &self.sign_requests)
            .field("single_logout", &self.single_logout)
            .field("metadata_timeout_secs", &self.metadata_timeout_secs)
            .finish()
    }
}

impl SamlConfig {
    /// A configuration with an inline identity provider and every other field at its
    /// default.
    ///
    /// ```
    /// let c = jit_provision::saml::SamlConfig::inline(
    ///     "https://idp.example.com", "https://idp.example.com/sso", vec![]);
    /// assert_eq!(c.idp_entity_id.as_deref(), Some("https://idp.example.com"));
    /// ```
    pub fn inline(
        entity_id: impl Into<String>,
        sso_url: impl Into<String>,
        certificates_pem: Vec<String>,
    ) -> Self {
        Self {
            idp_entity_id: Some(entity_id.into()),
            idp_sso_url: Some(sso_url.into()),
            idp_certificates: certificates_pem,
            ..Self::default()
        }
    }

    /// A configuration reading the identity provider's metadata from a file.
    pub fn from_metadata_file(path: impl Into<PathBuf>) -> Self {
        Self {
            idp_metadata_file: Some(path.into()),
            ..Self::default()
        }
    }

    /// A configuration fetching the identity provider's metadata from a URL.
    pub fn from_metadata_url(url: impl Into<String>) -> Self {
        Self {
            idp_metadata_url: Some(url.into()),
            ..Self::default()
        }
    }
}
