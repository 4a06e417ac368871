//! The shape of a SAML response, checked before any signature is verified: one `Response`,
//! one assertion as its direct child, signatures only where a genuine response has them,
//! each referencing the element it sits in, with allowed algorithms only.
//!
//! These checks turn every classic XML signature wrapping layout (a second assertion, a
//! moved or nested signed element, a signature pointing elsewhere) into a refusal, instead
//! of relying only on "use exactly the verified bytes" (which [`super::signature`] also
//! enforces).

use std::collections::HashSet;

use roxmltree::{Document, Node};

use super::SamlError;
use super::xml::{NS_ASSERTION, NS_DSIG, NS_PROTOCOL, children, descendants, is};

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Signature methods accepted: RSA PKCS#1 v1.5 and ECDSA, with SHA-2.
const SIGNATURE_METHODS: [&str; 6] = [
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
/// Added by `allow_sha1`.
const SHA1_SIGNATURE_METHODS: [&str; 2] = [
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
];
const DIGEST_METHODS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const SHA1_DIGEST: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// What [`check_response`] found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a, 'input> {
    /// The root `samlp:Response`.
    pub response: Node<'a, 'input>,
    /// The single `saml:Assertion` or `saml:EncryptedAssertion`, a child of `response`.
    pub assertion: Node<'a, 'input>,
    /// Whether `assertion` is an `EncryptedAssertion`.
    pub encrypted: bool,
    /// The response carries its own signature.
    pub response_signed: bool,
    /// The (plain) assertion carries its own signature.
    pub assertion_signed: bool,
}

/// Checks a whole `Response` document. `Err(IdpStatus)` for a non-success status comes
/// before the assertion checks (a refusal carries no assertion).
pub(crate) fn check_response<'a, 'input>(
    doc: &'a Document<'input>,
    allow_sha1: bool,
) -> Result<Shape<'a, 'input>, SamlError> {
    let response = doc.root_element();
    if !is(response, NS_PROTOCOL, "Response") {
        return Err(SamlError::Malformed(
            "the root element is not a samlp:Response".into(),
        ));
    }
    check_status(response)?;
    if descendants(response, NS_PROTOCOL, "Response").count() > 1 {
        return Err(SamlError::SignatureWrapping(
            "a Response inside the Response",
        ));
    }
    unique_ids(response)?;

    // Every assertion, plain or encrypted, must be a direct child of the Response.
    let assertions: Vec<Node<'a, 'input>> = response
        .descendants()
        .filter(|n| is(*n, NS_ASSERTION, "Assertion") || is(*n, NS_ASSERTION, "EncryptedAssertion"))
        .collect();
    if assertions.iter().any(|a| a.parent() != Some(response)) {
        return Err(SamlError::SignatureWrapping(
            "an assertion outside its place in the Response",
        ));
    }
    // Signatures only as a direct child of the Response or of an assertion in its place.
    for signature in descendants(response, NS_DSIG, "Signature") {
        let parent = signature.parent().filter(|p| p.is_element());
        let allowed = parent.is_some_and(|p| p == response || assertions.contains(&p));
        if !allowed {
            return Err(SamlError::SignatureWrapping(
                "a Signature in an unexpected place",
            ));
        }
    }
    let assertion = match assertions.as_slice() {
        [] => return Err(SamlError::NoAssertion),
        [one] => *one,
        _ => return Err(SamlError::MultipleAssertions),
    };
    let encrypted = is(assertion, NS_ASSERTION, "EncryptedAssertion");
    if encrypted && children(assertion, NS_DSIG, "Signature").next().is_some() {
        return Err(SamlError::SignatureWrapping(
            "a Signature on an EncryptedAssertion",
        ));
    }
    let response_signed = enveloped_signature(response, allow_sha1)?;
    let assertion_signed = !encrypted && enveloped_signature(assertion, allow_sha1)?;
    Ok(Shape {
        response,
        assertion,
        encrypted,
        response_signed,
        assertion_signed,
    })
}

/// Checks a lone `Assertion` (the root element of `doc`, or the only element child of a
/// wrapper root, as after decryption); returns it and whether it is signed.
pub(crate) fn check_assertion<'a, 'input>(
    doc: &'a Document<'input>,
    allow_sha1: bool,
) -> Result<(Node<'a, 'input>, bool), SamlError> {
    let root = doc.root_element();
    let assertion = if is(root, NS_ASSERTION, "Assertion") {
        root
    } else {
        let mut elements = root.children().filter(|c| c.is_element());
        match (elements.next(), elements.next()) {
            (Some(only), None) if is(only, NS_ASSERTION, "Assertion") => only,
            _ => return Err(SamlError::Malformed("not a single saml:Assertion".into())),
        }
    };
    if assertion
        .descendants()
        .skip(1)
        .any(|n| is(n, NS_ASSERTION, "Assertion") || is(n, NS_PROTOCOL, "Response"))
    {
        return Err(SamlError::MultipleAssertions);
    }
    unique_ids(assertion)?;
    for signature in descendants(assertion, NS_DSIG, "Signature") {
        if signature.parent() != Some(assertion) {
            return Err(SamlError::SignatureWrapping(
                "a Signature in an unexpected place",
            ));
        }
    }
    let signed = enveloped_signature(assertion, allow_sha1)?;
    Ok((assertion, signed))
}

/// Checks a lone Single Logout message, `samlp:{name}` as the root of `doc`: no duplicate
/// `ID`, a signature only as its direct child, referencing it, with allowed algorithms.
/// Returns it and whether it is signed (XML-DSig, as the HTTP-POST binding carries it).
pub(crate) fn check_logout_message<'a, 'input>(
    doc: &'a Document<'input>,
    name: &str,
    allow_sha1: bool,
) -> Result<(Node<'a, 'input>, bool), SamlError> {
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, name) {
        return Err(SamlError::Malformed(format!(
            "the root element is not a samlp:{name}"
        )));
    }
    unique_ids(root)?;
    for signature in descendants(root, NS_DSIG, "Signature") {
        if signature.parent() != Some(root) {
            return Err(SamlError::SignatureWrapping(
                "a Signature in an unexpected place",
            ));
        }
    }
    let signed = enveloped_signature(root, allow_sha1)?;
    Ok((root, signed))
}

/// `samlp:Status/samlp:StatusCode/@Value` must be Success.
fn check_status(response: Node<'_, '_>) -> Result<(), SamlError> {
    const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
    let code = children(response, NS_PROTOCOL, "Status")
        .next()
        .and_then(|s| children(s, NS_PROTOCOL, "StatusCode").next())
        .ok_or_else(|| SamlError::Malformed("the Response has no StatusCode".into()))?;
    match code.attribute("Value") {
        Some(SUCCESS) => Ok(()),
        Some(other) => {
            // The second-level code says more (AuthnFailed, RequestDenied, ...).
            let sub = children(code, NS_PROTOCOL, "StatusCode")
                .next()
                .and_then(|s| s.attribute("Value"));
            let shown = sub.unwrap_or(other);
            Err(SamlError::IdpStatus(
                shown
                    .rsplit(':')
                    .next()
                    .unwrap_or(shown)
                    .chars()
                    .take(64)
                    .collect(),
            ))
        }
        None => Err(SamlError::Malformed("the StatusCode has no Value".into())),
    }
}

/// No two elements may carry the same `ID`: a reference must have exactly one target.
/// `xml:id` (which libxml2 registers as an ID by itself) counts as an `ID` too.
fn unique_ids(root: Node<'_, '_>) -> Result<(), SamlError> {
    const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
    let mut seen = HashSet::new();
    for node in root.descendants().filter(|n| n.is_element()) {
        let ids = [node.attribute("ID"), node.attribute((XML_NS, "id"))];
        for id in ids.into_iter().flatten() {
            if !seen.insert(id) {
                return Err(SamlError::SignatureWrapping("two elements share one ID"));
            }
        }
    }
    Ok(())
}

/// Whether `element` carries an enveloped signature; when it does, the signature must be
/// the only one, reference exactly `element` (by its `ID`) and use allowed algorithms.
fn enveloped_signature(element: Node<'_, '_>, allow_sha1: bool) -> Result<bool, SamlError> {
    let mut signatures = children(element, NS_DSIG, "Signature");
    let Some(signature) = signatures.next() else {
        return Ok(false);
    };
    if signatures.next().is_some() {
        return Err(SamlError::SignatureWrapping(
            "two Signatures on one element",
        ));
    }
    let id =
        element
            .attribute("ID")
            .filter(|id| !id.is_empty())
            .ok_or(SamlError::SignatureWrapping(
                "a signed element without an ID",
            ))?;
    let signed_info = single(signature, NS_DSIG, "SignedInfo")?;
    let c14n = algorithm(single(signed_info, NS_DSIG, "CanonicalizationMethod")?)?;
    if c14n != EXC_C14N {
        return Err(SamlError::TransformAlgorithm(c14n.to_owned()));
    }
    let method = algorithm(single(signed_info, NS_DSIG, "SignatureMethod")?)?;
    let sha1_ok = allow_sha1 && SHA1_SIGNATURE_METHODS.contains(&method);
    if !SIGNATURE_METHODS.contains(&method) && !sha1_ok {
        return Err(SamlError::SignatureAlgorithm(method.to_owned()));
    }
    let reference = single(signed_info, NS_DSIG, "Reference")?;
    if reference.attribute("URI") != Some(&format!("#{id}")) {
        return Err(SamlError::SignatureWrapping(
            "the Signature references another element than the one it sits in",
        ));
    }
    if let Some(transforms) = children(reference, NS_DSIG, "Transforms").next() {
        for transform in transforms.children().filter(|c| c.is_element()) {
            if !is(transform, NS_DSIG, "Transform") {
                return Err(SamlError::Malformed(
                    "unexpected element in Transforms".into(),
                ));
            }
            let uri = algorithm(transform)?;
            if uri != ENVELOPED && uri != EXC_C14N {
                return Err(SamlError::TransformAlgorithm(uri.to_owned()));
            }
        }
    }
    let digest = algorithm(single(reference, NS_DSIG, "DigestMethod")?)?;
    let sha1_digest_ok = allow_sha1 && digest == SHA1_DIGEST;
    if !DIGEST_METHODS.contains(&digest) && !sha1_digest_ok {
        return Err(SamlError::DigestAlgorithm(digest.to_owned()));
    }
    Ok(true)
}

fn single<'a, 'input>(
    parent: Node<'a, 'input>,
    ns: &'static str,
    name: &'static str,
) -> Result<Node<'a, 'input>, SamlError> {
    let mut found = children(parent, ns, name);
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(SamlError::Malformed(format!("the Signature lacks {name}"))),
        (Some(_), Some(_)) => Err(SamlError::SignatureWrapping(
            "a Signature with several SignedInfo, methods or References",
        )),
    }
}

fn algorithm<'a>(node: Node<'a, '_>) -> Result<&'a str, SamlError> {
    node.attribute("Algorithm")
        .ok_or_else(|| SamlError::Malformed("an Algorithm attribute is missing".into()))
}
