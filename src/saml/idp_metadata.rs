//! The identity provider as this service provider trusts it: entity ID, SSO URL and signing
//! certificates, from SAML metadata XML or from inline configuration.

use base64::Engine as _;
use openssl::x509::X509;
use roxmltree::Node;

use super::SamlError;
use super::xml::{self, NS_DSIG, NS_METADATA, NS_PROTOCOL, children, descendants, is};

/// The HTTP-Redirect binding.
pub(crate) const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding.
pub(crate) const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// Largest metadata document accepted (a file or a download).
pub(crate) const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// The identity provider's trusted parameters.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct IdpMetadata {
    /// Its entity ID: the `Issuer` of every response and assertion.
    pub entity_id: String,
    /// Its SingleSignOnService for the HTTP-Redirect binding, when it has one.
    pub sso_url: Option<String>,
    /// Its signing certificates, DER; a signature by any of them is accepted.
    pub certificates: Vec<Vec<u8>>,
    /// `WantAuthnRequestsSigned="true"` on its `IDPSSODescriptor`: requests to it are
    /// signed with the SP key.
    pub want_authn_requests_signed: bool,
    /// Its SingleLogoutService for the HTTP-Redirect binding: `(Location, ResponseLocation)`.
    pub slo_redirect: Option<(String, Option<String>)>,
    /// Its SingleLogoutService for the HTTP-POST binding: `(Location, ResponseLocation)`.
    pub slo_post: Option<(String, Option<String>)>,
}

impl std::fmt::Debug for IdpMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpMetadata")
            .field("entity_id", &self.entity_id)
            .field("sso_url", &self.sso_url)
            .field("certificates", &self.certificates.len())
            .field(
                "want_authn_requests_signed",
                &self.want_authn_requests_signed,
            )
            .field("slo_redirect", &self.slo_redirect)
            .field("slo_post", &self.slo_post)
            .finish()
    }
}

/// Parses PEM certificates (each string may hold several) into DER, checking each is an
/// X.509 certificate.
pub(crate) fn certificates_from_pem(pems: &[String]) -> Result<Vec<Vec<u8>>, SamlError> {
    let mut out = Vec::new();
    for pem in pems {
        let stack = X509::stack_from_pem(pem.as_bytes())
            .map_err(|_| SamlError::Config("an IdP certificate is not valid PEM".into()))?;
        if stack.is_empty() {
            return Err(SamlError::Config(
                "an IdP certificate entry is empty".into(),
            ));
        }
        for cert in stack {
            out.push(
                cert.to_der()
                    .map_err(|_| SamlError::Config("an IdP certificate is invalid".into()))?,
            );
        }
    }
    Ok(out)
}

/// Reads IdP metadata: an `EntityDescriptor`, or an `EntitiesDescriptor` from which the
/// entity `wanted` (or else the only one with an `IDPSSODescriptor`) is taken. `now` (Unix
/// seconds) is compared with `validUntil`.
pub(crate) fn parse_metadata(
    text: &str,
    wanted: Option<&str>,
    now: i64,
) -> Result<IdpMetadata, SamlError> {
    let bad = |why: &str| SamlError::Metadata(why.to_owned());
    if text.len() > MAX_METADATA_BYTES {
        return Err(bad("the metadata document is too large"));
    }
    let doc = xml::parse(text).map_err(|e| match e {
        SamlError::Dtd => bad("the metadata carries a DTD"),
        _ => bad("the metadata is not well-formed XML"),
    })?;
    let root = doc.root_element();
    if !is(root, NS_METADATA, "EntityDescriptor") && !is(root, NS_METADATA, "EntitiesDescriptor") {
        return Err(bad(
            "the root is not an EntityDescriptor or EntitiesDescriptor",
        ));
    }
    // validUntil on the root or any enclosing EntitiesDescriptor is checked with the entity.
    let candidates: Vec<Node<'_, '_>> = descendants(root, NS_METADATA, "EntityDescriptor")
        .filter(|e| idp_descriptor(*e).is_some())
        .filter(|e| wanted.is_none_or(|w| e.attribute("entityID") == Some(w)))
        .collect();
    let entity = match candidates.as_slice() {
        [one] => *one,
        [] => {
            return Err(bad(match wanted {
                Some(_) => "no IdP entity with the configured idp_entity_id",
                None => "no entity with an IDPSSODescriptor for SAML 2.0",
            }));
        }
        _ => return Err(bad("several IdP entities: set idp_entity_id to pick one")),
    };
    for scope in entity.ancestors().filter(|n| n.is_element()) {
        if let Some(until) = scope.attribute("validUntil") {
            let until = super::time::parse(until).ok_or_else(|| bad("invalid validUntil"))?;
            if until <= now {
                return Err(bad("the metadata has expired (validUntil)"));
            }
        }
    }
    let entity_id = entity
        .attribute("entityID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad("the entity has no entityID"))?
        .to_owned();
    let idp = idp_descriptor(entity).expect("filtered above");
    let sso_url = children(idp, NS_METADATA, "SingleSignOnService")
        .find(|s| s.attribute("Binding") == Some(BINDING_REDIRECT))
        .and_then(|s| s.attribute("Location"))
        .map(str::to_owned);
    let certificates = signing_certificates(idp)?;
    if certificates.is_empty() {
        return Err(bad("the IDPSSODescriptor has no signing certificate"));
    }
    // xs:boolean: "true" or "1".
    let want_authn_requests_signed = matches!(
        idp.attribute("WantAuthnRequestsSigned").map(str::trim),
        Some("true" | "1")
    );
    let slo = |binding: &str| {
        children(idp, NS_METADATA, "SingleLogoutService")
            .find(|s| s.attribute("Binding") == Some(binding))
            .and_then(|s| {
                let location = s.attribute("Location").filter(|l| !l.is_empty())?;
                let response = s.attribute("ResponseLocation").filter(|l| !l.is_empty());
                Some((location.to_owned(), response.map(str::to_owned)))
            })
    };
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        certificates,
        want_authn_requests_signed,
        slo_redirect: slo(BINDING_REDIRECT),
        slo_post: slo(BINDING_POST),
    })
}

/// The entity's `IDPSSODescriptor` supporting SAML 2.0, if any.
fn idp_descriptor<'a, 'input>(entity: Node<'a, 'input>) -> Option<Node<'a, 'input>> {
    children(entity, NS_METADATA, "IDPSSODescriptor").find(|d| {
        d.attribute("protocolSupportEnumeration")
            .is_some_and(|p| p.split_whitespace().any(|s| s == NS_PROTOCOL))
    })
}

/// Certificates of `KeyDescriptor`s for signing (`use="signing"` or no `use`).
fn signing_certificates(idp: Node<'_, '_>) -> Result<Vec<Vec<u8>>, SamlError> {
    let mut out = Vec::new();
    for descriptor in children(idp, NS_METADATA, "KeyDescriptor") {
        if descriptor.attribute("use").is_some_and(|u| u != "signing") {
            continue;
        }
        for cert in descendants(descriptor, NS_DSIG, "X509Certificate") {
            let text: String = xml::full_text(cert)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| SamlError::Metadata("an X509Certificate is not base64".into()))?;
            X509::from_der(&der).map_err(|_| {
                SamlError::Metadata("an X509Certificate is not a certificate".into())
            })?;
            if !out.contains(&der) {
                out.push(der);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_dtd_and_wrong_roots() {
        let err = parse_metadata("<!DOCTYPE x []><x/>", None, 0).unwrap_err();
        assert!(matches!(err, SamlError::Metadata(m) if m.contains("DTD")));
        let err = parse_metadata("<x/>", None, 0).unwrap_err();
        assert!(matches!(err, SamlError::Metadata(_)));
    }

    #[test]
    fn needs_an_idp_entity() {
        let md = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x">
            <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>
        </md:EntityDescriptor>"#;
        assert!(matches!(
            parse_metadata(md, None, 0),
            Err(SamlError::Metadata(_))
        ));
    }
}
