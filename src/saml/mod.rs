//! SAML 2.0 service provider (feature `saml`): SP-initiated login by HTTP-Redirect (the
//! AuthnRequest signed with the SP key when the IdP's metadata says
//! `WantAuthnRequestsSigned="true"` or `sign_requests` is set), the assertion consumer
//! service (HTTP-POST), SP metadata, and response verification that is safe against XML
//! signature wrapping.
//!
//! How a response is verified, in order (see `docs/saml.md` for the reasoning):
//!
//! 1. The `SAMLResponse` parameter is at most [`MAX_SAML_RESPONSE_LEN`] bytes (`400`).
//! 2. base64, UTF-8, then XML parsed by `roxmltree` with DTDs refused: a `<!DOCTYPE` stops
//!    the parse before any entity is declared, let alone expanded (`400`).
//! 3. The shape: the root is a `samlp:Response` with a success status, there is exactly one
//!    `Assertion` or `EncryptedAssertion` and it is a direct child of the root, no other
//!    `Response` anywhere, no duplicate `ID`, every `ds:Signature` sits directly in the
//!    `Response` or the assertion and references exactly that element, with exclusive c14n,
//!    RSA or ECDSA over SHA-2 (SHA-1 only when allowed) (`401`; a refused algorithm is named:
//!    [`SamlError::SignatureAlgorithm`], [`DigestAlgorithm`](SamlError::DigestAlgorithm),
//!    [`TransformAlgorithm`](SamlError::TransformAlgorithm)).
//! 4. xmlsec (through `samael`) verifies every signature with the IdP's certificates and
//!    hands back the canonical bytes it digested; those bytes are parsed again and are the
//!    only source of what is used: the verified `Response`, or the verified `Assertion`.
//! 5. An `EncryptedAssertion` is decrypted with the SP key: AES-GCM always, AES-CBC only
//!    out of a verified `Response` (else `saml_cbc_requires_signed_response`, before
//!    anything is decrypted; any other algorithm is [`SamlError::EncryptionAlgorithm`], named,
//!    before any key is used); a signature inside it is verified the same way. Every failure
//!    from the decryption up to and including that signature check is the one
//!    `saml_decryption_failed`: no padding or parsing oracle.
//! 6. The profile checks: issuers, `Destination`, `InResponseTo`, `Conditions` with a
//!    bounded clock skew, `AudienceRestriction`, the bearer `SubjectConfirmation`
//!    (`Recipient`, `NotOnOrAfter`, `InResponseTo`), an `AuthnStatement`; then the
//!    subject: the persistent NameID's full text, or the configured immutable attribute.
//!
//! What stays with the caller: the assertion-ID replay check ([`SamlLogin::assertion_id`]
//! until [`SamlLogin::not_on_or_after`], with a [`ReplayGuard`](crate::replay::ReplayGuard)),
//! the request ID of the login this browser started (`expected_in_response_to`), and
//! provisioning.

mod config;
mod decrypt;
mod error;
mod idp_metadata;
mod logout;
mod request;
mod signature;
mod sp_metadata;
mod structure;
mod time;
mod validate;
mod xml;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

pub use self::config::{MAX_CLOCK_SKEW_SECS, SamlConfig};
use self::decrypt::Integrity;
pub use self::error::SamlError;
use self::idp_metadata::{IdpMetadata, MAX_METADATA_BYTES};
pub(crate) use self::logout::{Decoded, Incoming, Kind, Outgoing, SloFailure, post_form};
pub use self::logout::{NameId, SloError};
pub use self::request::MAX_RELAY_STATE;
use self::validate::{Answering, Expected};
use crate::mapping::Claims;
use crate::store::Identity;

/// Largest `SAMLResponse` form value accepted, in bytes of base64 (256 KiB), checked before
/// anything is decoded. A signed response with a few dozen attributes is under 16 KiB.
pub const MAX_SAML_RESPONSE_LEN: usize = 256 * 1024;

/// Largest ACS request body (`application/x-www-form-urlencoded`) that can carry a
/// `SAMLResponse` of [`MAX_SAML_RESPONSE_LEN`]: form encoding turns each `+`, `/` and `=` of
/// base64 into three bytes, plus room for `RelayState`. A layer answers `413` above it and
/// passes the decoded value to [`SamlServiceProvider::verify_response`], which applies the
/// tighter limit.
pub const MAX_ACS_BODY: usize = 3 * MAX_SAML_RESPONSE_LEN + 4096;

/// A login the identity provider vouched for, from a verified assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct SamlLogin {
    /// `provider`: the provider id; `issuer`: the IdP entity ID; `subject`: the persistent
    /// NameID, or the value of the configured identity attribute.
    pub identity: Identity,
    /// The assertion's attributes, keyed by `Name` (and by `FriendlyName` too when it is
    /// present and not also some attribute's `Name`): one value is a string, several an
    /// array of strings, `xsi:nil` is `null`. Plus the subject (`identity.subject`) as
    /// [`SUBJECT_CLAIM`] (`sub`) and [`USERNAME_CLAIM`] (`preferred_username`), each unless
    /// an attribute already has that name: so the default username template
    /// `{preferred_username}` is the IdP's `preferred_username` attribute when it sends one,
    /// else the subject.
    pub claims: Claims,
    /// The assertion's `ID`: the caller refuses a second use of it (replay) until
    /// [`not_on_or_after`](Self::not_on_or_after).
    pub assertion_id: String,
    /// Unix seconds from which this assertion is refused anyway: the earliest of the
    /// bearer confirmation's and the conditions' `NotOnOrAfter`, plus the clock skew.
    pub not_on_or_after: i64,
    /// The `InResponseTo` of the verified bearer confirmation: the ID of the request this
    /// login answers (`None` for an IdP-initiated one).
    pub(crate) in_response_to: Option<String>,
    /// The `SessionIndex` of the assertion's `AuthnStatement`: the IdP's session, which its
    /// Single Logout names.
    pub session_index: Option<String>,
    /// The subject's plain `NameID` with its qualifiers, as asserted: what a Single Logout's
    /// `LogoutRequest` names.
    pub name_id: Option<NameId>,
}

/// The claim holding the subject (the persistent NameID, or the identity attribute's value)
/// for the mapping, unless an attribute is named so.
pub const SUBJECT_CLAIM: &str = "sub";

/// The claim the default username template (`{preferred_username}`) reads: the subject,
/// unless an attribute is named so.
pub const USERNAME_CLAIM: &str = "preferred_username";

impl SamlLogin {
    /// The replay-guard key for this assertion: `saml:{provider}:{assertion_id}`.
    pub fn replay_key(&self) -> String {
        format!("saml:{}:{}", self.identity.provider, self.assertion_id)
    }

    /// How long the replay guard must remember [`replay_key`](Self::replay_key), counted
    /// from `now` (Unix seconds); at least one second.
    pub fn replay_ttl(&self, now: i64) -> Duration {
        Duration::from_secs(self.not_on_or_after.saturating_sub(now).max(1) as u64)
    }
}

/// One configured SAML identity provider, seen from this service provider.
pub struct SamlServiceProvider {
    provider_id: String,
    config: SamlConfig,
    acs_url: String,
    /// `.../{provider}/slo`, beside the ACS (`None` when the ACS URL does not end in `/acs`).
    slo_url: Option<String>,
    metadata_url: String,
    sp_entity_id: String,
    sp_key: Option<PKey<Private>>,
    sp_certificate: Option<Vec<u8>>,
    idp: RwLock<Option<Arc<IdpMetadata>>>,
    /// The client metadata is fetched with: the layer's, or one built at the first load.
    http: std::sync::OnceLock<crate::idp::HttpClient>,
}

impl std::fmt::Debug for SamlServiceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlServiceProvider")
            .field("provider_id", &self.provider_id)
            .field("sp_entity_id", &self.sp_entity_id)
            .field("acs_url", &self.acs_url)
            .field("idp", &self.idp.read().ok().and_then(|g| g.clone()))
            .finish_non_exhaustive()
    }
}

impl SamlServiceProvider {
    /// Builds the service provider for `provider_id`. `acs_url` is the exact URL of
    /// `POST .../{provider}/acs` (compared byte for byte with `Destination` and
    /// `Recipient`); `metadata_url` that of `GET .../{provider}/metadata` (the default
    /// entity ID). An inline IdP or a metadata file is loaded here; a metadata URL only
    /// by [`load_metadata`](Self::load_metadata).
    pub fn new(
        provider_id: impl Into<String>,
        config: SamlConfig,
        acs_url: impl Into<String>,
        metadata_url: impl Into<String>,
    ) -> Result<Self, SamlError> {
        let acs_url = acs_url.into();
        let metadata_url = metadata_url.into();
        for url in [&acs_url, &metadata_url] {
            url::Url::parse(url)
                .map_err(|_| config_error("the ACS and metadata URLs must be absolute"))?;
        }
        let inline = Self::check_idp_source(&config)?;
        let (sp_key, sp_certificate) = Self::sp_credentials(&config)?;
        let sp_entity_id = config
            .sp_entity_id
            .clone()
            .unwrap_or_else(|| metadata_url.clone());
        let idp = Self::initial_idp(&config, inline, sp_key.as_ref(), sp_certificate.is_some())?;
        if let Some(url) = &config.idp_sso_url {
            url::Url::parse(url).map_err(|_| config_error("idp_sso_url is not a URL"))?;
        }
        let slo_url = Self::slo_url_beside(&config, &acs_url)?;
        Ok(Self {
            provider_id: provider_id.into(),
            config,
            slo_url,
            acs_url,
            metadata_url,
            sp_entity_id,
            sp_key,
            sp_certificate,
            idp: RwLock::new(idp),
            http: std::sync::OnceLock::new(),
        })
    }

    /// Checks the clock skew, that exactly one IdP source is set (a metadata file, a metadata
    /// URL, or an inline IdP) and the identity attribute; `true` for an inline IdP.
    fn check_idp_source(config: &SamlConfig) -> Result<bool, SamlError> {
        if config.clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(config_error("clock_skew_secs is over 600"));
        }
        let sources = [
            config.idp_metadata_file.is_some(),
            config.idp_metadata_url.is_some(),
            config.idp_metadata_file.is_none()
                && config.idp_metadata_url.is_none()
                && (config.idp_sso_url.is_some() || !config.idp_certificates.is_empty()),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(config_error(
                "set exactly one of idp_metadata_file, idp_metadata_url, or idp_entity_id + idp_sso_url + idp_certificates",
            ));
        }
        let inline = sources[2];
        if !inline && !config.idp_certificates.is_empty() {
            return Err(config_error(
                "idp_certificates is only for an inline IdP (no metadata)",
            ));
        }
        if let Some(url) = &config.idp_metadata_url {
            check_metadata_url(url)?;
        }
        if config.identity_attribute.as_deref() == Some("") {
            return Err(config_error("identity_attribute is empty"));
        }
        // A claim path like every claim reference of the mapping; SAML attribute values are
        // text, so it always names an attribute `Name` verbatim (a URI or OID as it is).
        if let Some(name) = &config.identity_attribute {
            name.parse::<crate::mapping::ClaimPath>()
                .map_err(|e| config_error(&format!("identity_attribute: {e}")))?;
        }
        Ok(inline)
    }

    /// The SP's private key and certificate (DER), parsed and checked against each other and
    /// against the options that need them (encrypted assertions, signed requests).
    fn sp_credentials(config: &SamlConfig) -> Result<SpCredentials, SamlError> {
        let sp_key = config
            .sp_private_key_pem
            .as_deref()
            .map(|pem| {
                PKey::private_key_from_pem(pem.as_bytes())
                    .map_err(|_| config_error("sp_private_key_pem is not a PEM private key"))
            })
            .transpose()?;
        let sp_certificate = config
            .sp_certificate_pem
            .as_deref()
            .map(|pem| {
                X509::from_pem(pem.as_bytes())
                    .map_err(|_| config_error("sp_certificate_pem is not a PEM certificate"))
            })
            .transpose()?;
        if let (Some(key), Some(cert)) = (&sp_key, &sp_certificate) {
            let public = cert
                .public_key()
                .map_err(|_| config_error("sp_certificate_pem has no key"))?;
            if !public.public_eq(key) {
                return Err(config_error(
                    "sp_certificate_pem does not match sp_private_key_pem",
                ));
            }
        }
        if config.require_encrypted_assertions && sp_key.is_none() {
            return Err(config_error(
                "require_encrypted_assertions needs sp_private_key_pem",
            ));
        }
        if config.sign_requests {
            check_signing_key(sp_key.as_ref(), sp_certificate.is_some(), "sign_requests")?;
        }
        let sp_certificate = sp_certificate
            .map(|c| {
                c.to_der()
                    .map_err(|_| config_error("sp_certificate_pem is invalid"))
            })
            .transpose()?;
        Ok((sp_key, sp_certificate))
    }

    /// The IdP known at start: an inline one, or one read from the metadata file (and checked
    /// against what it wants of the SP); `None` for a metadata URL, loaded later by
    /// [`load_metadata`](Self::load_metadata).
    fn initial_idp(
        config: &SamlConfig,
        inline: bool,
        sp_key: Option<&PKey<Private>>,
        has_sp_certificate: bool,
    ) -> Result<Option<Arc<IdpMetadata>>, SamlError> {
        if inline {
            let entity_id = config
                .idp_entity_id
                .clone()
                .filter(|e| !e.is_empty())
                .ok_or_else(|| config_error("an inline IdP needs idp_entity_id"))?;
            let sso_url = config
                .idp_sso_url
                .clone()
                .ok_or_else(|| config_error("an inline IdP needs idp_sso_url"))?;
            let certificates = idp_metadata::certificates_from_pem(&config.idp_certificates)?;
            if certificates.is_empty() {
                return Err(config_error("an inline IdP needs idp_certificates"));
            }
            return Ok(Some(Arc::new(IdpMetadata {
                entity_id,
                sso_url: Some(sso_url),
                certificates,
                want_authn_requests_signed: false,
                slo_redirect: None,
                slo_post: None,
            })));
        }
        let Some(path) = &config.idp_metadata_file else {
            return Ok(None);
        };
        let text = std::fs::read(path)
            .map_err(|e| SamlError::Metadata(format!("cannot read {}: {e}", path.display())))?;
        let idp = Self::metadata_from(config, &text)?;
        Self::check_idp_wants(&idp, sp_key, has_sp_certificate)?;
        Ok(Some(Arc::new(idp)))
    }

    /// `.../{provider}/slo` beside an ACS URL ending in `/acs`; required by `single_logout`.
    fn slo_url_beside(config: &SamlConfig, acs_url: &str) -> Result<Option<String>, SamlError> {
        let slo_url = acs_url
            .strip_suffix("/acs")
            .map(|base| format!("{base}/slo"));
        if config.single_logout && slo_url.is_none() {
            return Err(config_error(
                "single_logout needs an ACS URL ending in /acs",
            ));
        }
        Ok(slo_url)
    }

    fn metadata_from(config: &SamlConfig, bytes: &[u8]) -> Result<IdpMetadata, SamlError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| SamlError::Metadata("the metadata is not UTF-8".into()))?;
        let mut idp = idp_metadata::parse_metadata(
            text,
            config.idp_entity_id.as_deref(),
            crate::store::now_unix(),
        )?;
        if let Some(sso) = &config.idp_sso_url {
            idp.sso_url = Some(sso.clone());
        }
        if idp.sso_url.is_none() {
            return Err(SamlError::Metadata(
                "the IdP has no HTTP-Redirect SingleSignOnService (set idp_sso_url)".into(),
            ));
        }
        Ok(idp)
    }

    /// Fetches metadata with `http` (the layer's one client; the per-request time limit stays
    /// `metadata_timeout_secs`). Without it the first load builds a client of its own.
    pub(crate) fn use_http(&self, http: crate::idp::HttpClient) {
        let _ = self.http.set(http);
    }

    /// Fetches `idp_metadata_url` (again) and replaces the IdP's parameters; with a file or
    /// an inline IdP, re-reads nothing and returns `Ok`. Fails with
    /// [`SamlError::Metadata`] (`502`) and keeps the previous parameters.
    pub async fn load_metadata(&self) -> Result<(), SamlError> {
        let Some(url) = &self.config.idp_metadata_url else {
            return Ok(());
        };
        let fail = |why: String| SamlError::Metadata(why);
        let timeout = Duration::from_secs(self.config.metadata_timeout_secs.max(1));
        let client = self
            .http
            .get_or_init(|| crate::idp::HttpClient::new(timeout));
        let mut response = client
            .reqwest()
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP status {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_METADATA_BYTES {
                return Err(fail("the metadata document is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let idp = Self::metadata_from(&self.config, &body)?;
        Self::check_idp_wants(&idp, self.sp_key.as_ref(), self.sp_certificate.is_some())?;
        *self.idp.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(idp));
        Ok(())
    }

    /// An IdP that wants signed requests needs the SP key and certificate.
    fn check_idp_wants(
        idp: &IdpMetadata,
        key: Option<&PKey<Private>>,
        certificate: bool,
    ) -> Result<(), SamlError> {
        if idp.want_authn_requests_signed {
            check_signing_key(
                key,
                certificate,
                "the IdP metadata's WantAuthnRequestsSigned=\"true\"",
            )?;
        }
        Ok(())
    }

    fn idp(&self) -> Result<Arc<IdpMetadata>, SamlError> {
        self.idp
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| SamlError::Metadata("the IdP metadata has not been loaded".into()))
    }

    /// The provider id this service provider was built for.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// This service provider's entity ID (the audience it requires).
    pub fn sp_entity_id(&self) -> &str {
        &self.sp_entity_id
    }

    /// The ACS URL responses must be addressed to.
    pub fn acs_url(&self) -> &str {
        &self.acs_url
    }

    /// The IdP's entity ID, once its metadata is loaded.
    pub fn idp_entity_id(&self) -> Option<String> {
        self.idp().ok().map(|m| m.entity_id.clone())
    }

    /// Whether unsolicited (IdP-initiated) responses are accepted.
    pub fn allows_idp_initiated(&self) -> bool {
        self.config.allow_idp_initiated
    }

    /// Whether requests to the IdP are signed: `sign_requests`, or the IdP's metadata says
    /// `WantAuthnRequestsSigned="true"` (known once its metadata is loaded; the SP metadata's
    /// `AuthnRequestsSigned` follows). Signing needs the SP key and certificate:
    ///
    /// ```
    /// use jit_provision::saml::{SamlConfig, SamlServiceProvider};
    /// let mut config = SamlConfig::from_metadata_url("https://idp.example.com/metadata");
    /// config.sign_requests = true;
    /// let err = SamlServiceProvider::new(
    ///     "corp",
    ///     config,
    ///     "https://app.example.com/auth/corp/acs",
    ///     "https://app.example.com/auth/corp/metadata",
    /// )
    /// .unwrap_err();
    /// assert!(err.to_string().contains("sign_requests needs sp_private_key_pem"));
    /// ```
    pub fn signs_requests(&self) -> bool {
        self.config.sign_requests || self.idp().is_ok_and(|idp| self.signs_for(&idp))
    }

    fn signs_for(&self, idp: &IdpMetadata) -> bool {
        self.config.sign_requests || idp.want_authn_requests_signed
    }

    /// The SP key when requests to `idp` are signed ([`signs_requests`](Self::signs_requests)).
    fn request_signing_key(&self, idp: &IdpMetadata) -> Result<Option<&PKey<Private>>, SamlError> {
        if !self.signs_for(idp) {
            return Ok(None);
        }
        // Checked when the provider was built and when the metadata was loaded.
        self.sp_key
            .as_ref()
            .map(Some)
            .ok_or_else(|| SamlError::Config("signed requests need sp_private_key_pem".into()))
    }

    /// Starts an SP-initiated login: returns the URL to redirect the browser to (the IdP's
    /// SSO URL with a DEFLATE-encoded `AuthnRequest` and `relay_state`, at most
    /// [`MAX_RELAY_STATE`] bytes, empty for none; signed by the HTTP-Redirect binding's
    /// `SigAlg` and `Signature`, RSA-SHA256, when [`signs_requests`](Self::signs_requests))
    /// and the request's ID, which the caller keeps (in the pending-login cookie) and passes
    /// to [`verify_response`](Self::verify_response) as `expected_in_response_to`.
    pub fn authn_request(&self, relay_state: &str) -> Result<(String, String), SamlError> {
        let idp = self.idp()?;
        let sso_url = idp
            .sso_url
            .as_deref()
            .ok_or_else(|| SamlError::Metadata("the IdP has no SSO URL".into()))?;
        let id = request::new_request_id();
        let instant = time::format(crate::store::now_unix());
        let xml = request::authn_request_xml(&request::Request {
            id: &id,
            issue_instant: &instant,
            sso_url,
            acs_url: &self.acs_url,
            sp_entity_id: &self.sp_entity_id,
            persistent: self.config.identity_attribute.is_none(),
        });
        let key = self.request_signing_key(&idp)?;
        let url =
            request::redirect_url(sso_url, request::Message::Request, &xml, relay_state, key)?;
        Ok((url, id))
    }

    /// This service provider's metadata XML: entity ID, the ACS (HTTP-POST), NameIDFormat
    /// persistent (when the identity is the NameID), `WantAssertionsSigned`,
    /// `AuthnRequestsSigned` ([`signs_requests`](Self::signs_requests)), the SP
    /// certificate for signing and encryption when configured, and the
    /// `SingleLogoutService` (HTTP-Redirect and HTTP-POST at [`slo_url`](Self::slo_url))
    /// when `single_logout` is on.
    pub fn metadata_xml(&self) -> String {
        sp_metadata::metadata_xml(&sp_metadata::SpMetadata {
            entity_id: &self.sp_entity_id,
            acs_url: &self.acs_url,
            certificate: self.sp_certificate.as_deref(),
            want_assertions_signed: self.config.want_assertions_signed,
            authn_requests_signed: self.signs_requests() && self.sp_certificate.is_some(),
            persistent: self.config.identity_attribute.is_none(),
            slo_url: self
                .slo_url
                .as_deref()
                .filter(|_| self.config.single_logout),
        })
    }

    /// The SP metadata URL this provider was built with.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// Verifies the `SAMLResponse` form value of a POST to the ACS.
    ///
    /// `expected_in_response_to`: the ID from [`authn_request`](Self::authn_request) of
    /// the login this browser started (from its pending-login cookie), or `None` for an
    /// unsolicited response, refused unless `allow_idp_initiated`. `now`: Unix seconds.
    ///
    /// Does not check assertion-ID replay: the caller does, with
    /// [`SamlLogin::replay_key`] and [`SamlLogin::replay_ttl`].
    pub fn verify_response(
        &self,
        saml_response_b64: &str,
        expected_in_response_to: Option<&str>,
        now: i64,
    ) -> Result<SamlLogin, SamlError> {
        let answering = match expected_in_response_to {
            Some(id) => Answering::Request(id),
            None => Answering::Unsolicited,
        };
        self.verify(saml_response_b64, answering, now)
    }

    /// Verifies a response like [`verify_response`](Self::verify_response) (every signature,
    /// structure and profile check), but accepts whatever request it answers, or none, and
    /// reports it in [`SamlLogin::in_response_to`]. For an ACS post with no login in progress
    /// in the browser: what the verified response answers tells an expired or already used
    /// login from no login at all. The login it returns is not to be provisioned unless it
    /// answers nothing and IdP-initiated logins are allowed.
    pub(crate) fn verify_any_response(
        &self,
        saml_response_b64: &str,
        now: i64,
    ) -> Result<SamlLogin, SamlError> {
        self.verify(saml_response_b64, Answering::Any, now)
    }

    fn verify(
        &self,
        saml_response_b64: &str,
        answering: Answering<'_>,
        now: i64,
    ) -> Result<SamlLogin, SamlError> {
        if saml_response_b64.len() > MAX_SAML_RESPONSE_LEN {
            return Err(SamlError::TooLarge {
                max: MAX_SAML_RESPONSE_LEN,
            });
        }
        let compact: Vec<u8> = saml_response_b64
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|_| SamlError::Malformed("SAMLResponse is not base64".into()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| SamlError::Malformed("SAMLResponse is not UTF-8".into()))?;
        let raw = xml::parse(&text)?;
        if answering == Answering::Unsolicited && !self.config.allow_idp_initiated {
            return Err(SamlError::UnsolicitedResponse);
        }
        let idp = self.idp()?;
        let expected = Expected {
            idp_entity_id: &idp.entity_id,
            sp_entity_id: &self.sp_entity_id,
            acs_url: &self.acs_url,
            in_response_to: answering,
            skew: self.config.clock_skew_secs as i64,
            now,
            identity_attribute: self.config.identity_attribute.as_deref(),
        };
        let allow_sha1 = self.config.allow_sha1;
        let shape = structure::check_response(&raw, allow_sha1)?;
        if !shape.encrypted && self.config.require_encrypted_assertions {
            return Err(SamlError::NotEncrypted);
        }
        if !shape.encrypted && !shape.response_signed && !shape.assertion_signed {
            return Err(SamlError::Unsigned);
        }
        if !shape.encrypted && self.config.want_assertions_signed && !shape.assertion_signed {
            return Err(SamlError::AssertionNotSigned);
        }

        // The verified bytes: the Response when it is signed, else the Assertion (plain).
        let verified = if shape.response_signed || shape.assertion_signed {
            Some(signature::verified_bytes(
                &text,
                &idp.certificates,
                allow_sha1,
            )?)
        } else {
            None
        };

        if shape.response_signed {
            let verified = verified.expect("signed");
            let doc = xml::parse(&verified)?;
            let vshape = structure::check_response(&doc, allow_sha1)?;
            if vshape.response.attribute("ID") != shape.response.attribute("ID")
                || vshape.assertion.attribute("ID") != shape.assertion.attribute("ID")
                || vshape.encrypted != shape.encrypted
            {
                return Err(SamlError::SignatureWrapping(
                    "the verified Response is not the one received",
                ));
            }
            validate::check_response(vshape.response, &expected, true)?;
            if vshape.encrypted {
                self.decrypted(vshape.assertion, &idp, &expected, Integrity::SignedResponse)
            } else {
                let checked = validate::check_assertion(vshape.assertion, &expected)?;
                Ok(self.login(&idp, checked))
            }
        } else if shape.assertion_signed {
            let verified = verified.expect("signed");
            let doc = xml::parse(&verified)?;
            // Its own signature is gone: the enveloped-signature transform removed it.
            let (assertion, _) = structure::check_assertion(&doc, allow_sha1)?;
            if doc.root_element() != assertion
                || assertion.attribute("ID") != shape.assertion.attribute("ID")
            {
                return Err(SamlError::SignatureWrapping(
                    "the verified Assertion is not the one received",
                ));
            }
            validate::check_response(shape.response, &expected, false)?;
            let checked = validate::check_assertion(assertion, &expected)?;
            Ok(self.login(&idp, checked))
        } else {
            // Unsigned Response, EncryptedAssertion: AES-GCM only, and the assertion inside
            // must be signed.
            validate::check_response(shape.response, &expected, false)?;
            self.decrypted(shape.assertion, &idp, &expected, Integrity::Unsigned)
        }
    }

    /// Decrypts an `EncryptedAssertion` and checks the assertion inside. `integrity`: whether
    /// the `Response` around it was verified (then AES-CBC is accepted, and an unsigned inner
    /// assertion unless `want_assertions_signed`).
    fn decrypted(
        &self,
        encrypted: roxmltree::Node<'_, '_>,
        idp: &IdpMetadata,
        expected: &Expected<'_>,
        integrity: Integrity,
    ) -> Result<SamlLogin, SamlError> {
        let assertion_xml = self.open_encrypted(encrypted, idp, integrity)?;
        // What `open_encrypted` returned has been parsed and checked already: no error here.
        let doc = xml::parse(&assertion_xml).map_err(|_| SamlError::Decryption)?;
        let (assertion, _) = structure::check_assertion(&doc, self.config.allow_sha1)
            .map_err(|_| SamlError::Decryption)?;
        let checked = validate::check_assertion(assertion, expected)?;
        Ok(self.login(idp, checked))
    }

    /// The assertion inside `encrypted`, decrypted and verified, as XML whose only
    /// assertion is the one to use (xmlsec's verified bytes, or the decrypted plaintext when
    /// the verified `Response` vouches for an unsigned assertion).
    ///
    /// Every failure from the decryption up to and including the inner signature check is
    /// the one [`SamlError::Decryption`]: same status, code, message and log line, so that
    /// no padding, parsing or signature oracle is exposed. Only what is decided from the
    /// algorithm URIs before anything is decrypted has an error of its own: a CBC ciphertext
    /// outside a verified `Response` ([`SamlError::CbcWithoutSignedResponse`]) and a refused
    /// algorithm ([`SamlError::EncryptionAlgorithm`]).
    fn open_encrypted(
        &self,
        encrypted: roxmltree::Node<'_, '_>,
        idp: &IdpMetadata,
        integrity: Integrity,
    ) -> Result<String, SamlError> {
        let plaintext = match decrypt::decrypt_assertion(encrypted, self.sp_key.as_ref(), integrity)
        {
            Err(e @ (SamlError::CbcWithoutSignedResponse | SamlError::EncryptionAlgorithm(_))) => {
                return Err(e);
            }
            other => other.map_err(|_| SamlError::Decryption)?,
        };
        self.verify_decrypted(encrypted, &plaintext, idp, integrity)
            .map_err(|_| SamlError::Decryption)
    }

    /// Checks a decrypted assertion's structure and signature; every error is turned into
    /// [`SamlError::Decryption`] by the caller.
    fn verify_decrypted(
        &self,
        encrypted: roxmltree::Node<'_, '_>,
        plaintext: &str,
        idp: &IdpMetadata,
        integrity: Integrity,
    ) -> Result<String, SamlError> {
        let allow_sha1 = self.config.allow_sha1;
        let wrapped = in_context(encrypted, plaintext);
        let doc = xml::parse(&wrapped)?;
        let (assertion, signed) = structure::check_assertion(&doc, allow_sha1)?;
        if !signed {
            if integrity != Integrity::SignedResponse {
                return Err(SamlError::Unsigned);
            }
            if self.config.want_assertions_signed {
                return Err(SamlError::AssertionNotSigned);
            }
            return Ok(wrapped);
        }
        let verified = signature::verified_bytes(&wrapped, &idp.certificates, allow_sha1)?;
        let vdoc = xml::parse(&verified)?;
        let (vassertion, _) = structure::check_assertion(&vdoc, allow_sha1)?;
        if vdoc.root_element() != vassertion
            || vassertion.attribute("ID") != assertion.attribute("ID")
        {
            return Err(SamlError::SignatureWrapping(
                "the verified Assertion is not the one decrypted",
            ));
        }
        Ok(verified)
    }

    fn login(&self, idp: &IdpMetadata, checked: validate::Checked) -> SamlLogin {
        let mut claims = checked.claims;
        // The subject for the mapping's templates, unless an attribute has the name: `sub`
        // as in OpenID Connect, and `preferred_username`, so that the default username
        // template works for SAML providers too.
        for name in [SUBJECT_CLAIM, USERNAME_CLAIM] {
            claims
                .0
                .entry(name.to_owned())
                .or_insert_with(|| checked.subject.clone().into());
        }
        SamlLogin {
            identity: Identity::new(&self.provider_id, &idp.entity_id, checked.subject),
            claims,
            assertion_id: checked.assertion_id,
            not_on_or_after: checked.not_on_or_after,
            in_response_to: checked.in_response_to,
            session_index: checked.session_index,
            name_id: checked.name_id,
        }
    }
}

/// The decrypted `plaintext`, an element serialized out of its context, inside a wrapper
/// element that declares the namespaces in scope at the `EncryptedAssertion`.
fn in_context(encrypted: roxmltree::Node<'_, '_>, plaintext: &str) -> String {
    let mut wrapped = String::from("<jit-decrypted");
    for ns in encrypted.namespaces() {
        match ns.name() {
            Some("xml") => continue,
            Some(prefix) => wrapped.push_str(&format!(" xmlns:{prefix}=\"")),
            None => wrapped.push_str(" xmlns=\""),
        }
        wrapped.push_str(&xml::escape(ns.uri()));
        wrapped.push('"');
    }
    wrapped.push('>');
    let mut body = plaintext.trim_start();
    if body.starts_with("<?xml") {
        body = body.split_once("?>").map_or("", |(_, rest)| rest);
    }
    wrapped.push_str(body);
    wrapped.push_str("</jit-decrypted>");
    wrapped
}

/// The SP's private key and its certificate (DER), each if configured.
type SpCredentials = (Option<PKey<Private>>, Option<Vec<u8>>);

/// A refused SAML setting, saying `why`.
fn config_error(why: &str) -> SamlError {
    SamlError::Config(why.to_owned())
}

/// Signing requests (because of `why`) needs an RSA SP key and the certificate published
/// for the IdP to verify with.
fn check_signing_key(
    key: Option<&PKey<Private>>,
    certificate: bool,
    why: &str,
) -> Result<(), SamlError> {
    let bad = |what: &str| SamlError::Config(format!("{why} needs {what} to sign AuthnRequests"));
    match key {
        None => return Err(bad("sp_private_key_pem (and sp_certificate_pem)")),
        Some(key) if key.rsa().is_err() => return Err(bad("an RSA sp_private_key_pem")),
        Some(_) => {}
    }
    if !certificate {
        return Err(bad("sp_certificate_pem (published in the SP metadata)"));
    }
    Ok(())
}

/// HTTPS, or HTTP to a loopback address (tests, local IdPs).
fn check_metadata_url(url: &str) -> Result<(), SamlError> {
    let parsed = url::Url::parse(url)
        .map_err(|_| SamlError::Config("idp_metadata_url is not a URL".into()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(SamlError::Config(
            "idp_metadata_url must be https (http only on loopback)".into(),
        )),
    }
}
