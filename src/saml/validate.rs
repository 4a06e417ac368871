//! The Web Browser SSO profile's checks on a verified response and assertion: issuer,
//! destination, `InResponseTo`, conditions with a bounded skew, audience, the bearer
//! subject confirmation, the authentication statement; then the subject and attributes.

use roxmltree::Node;
use serde_json::{Map, Value};

use super::SamlError;
use super::time;
use super::xml::{NS_ASSERTION, children, full_text, is, only_child, trimmed_text};
use crate::mapping::Claims;

const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const ENTITY: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
/// Longest subject accepted (SAML caps persistent NameIDs at 256 characters).
const MAX_SUBJECT: usize = 256;
/// Most attribute values kept from one assertion.
const MAX_VALUES: usize = 4096;

/// What `InResponseTo` must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answering<'a> {
    /// The ID of the AuthnRequest this browser sent.
    Request(&'a str),
    /// Nothing: an unsolicited (IdP-initiated) response.
    Unsolicited,
    /// Any request or none, reported in [`Checked::in_response_to`]: for an ACS post with no
    /// login in progress, to tell the browser what happened. Never provisions by itself.
    Any,
}

/// What a response must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The request the response must answer.
    pub in_response_to: Answering<'a>,
    pub skew: i64,
    pub now: i64,
    pub identity_attribute: Option<&'a str>,
}

/// What a valid assertion yields.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub subject: String,
    pub claims: Claims,
    pub assertion_id: String,
    /// When the assertion stops being accepted (skew included), Unix seconds.
    pub not_on_or_after: i64,
    /// The `InResponseTo` of the bearer confirmation that held: the request answered.
    pub in_response_to: Option<String>,
    /// The `SessionIndex` of the (first) `AuthnStatement`, if any.
    pub session_index: Option<String>,
    /// The subject's plain `NameID` as asserted (for a Single Logout), if any.
    pub name_id: Option<super::NameId>,
}

/// Checks the `Response` element itself. `signed`: the response is the verified element,
/// which makes `Destination` mandatory (SAML bindings 3.5.5.2).
pub(crate) fn check_response(
    response: Node<'_, '_>,
    expected: &Expected<'_>,
    signed: bool,
) -> Result<(), SamlError> {
    if response.attribute("Version") != Some("2.0") {
        return Err(SamlError::Malformed("the Response is not SAML 2.0".into()));
    }
    match response.attribute("Destination") {
        Some(d) if d == expected.acs_url => {}
        None if !signed => {}
        _ => return Err(SamlError::Destination),
    }
    match only_child(response, NS_ASSERTION, "Issuer") {
        Ok(None) => {}
        Ok(Some(issuer)) => check_issuer(issuer, expected)?,
        Err(()) => return Err(SamlError::Issuer),
    }
    match (response.attribute("InResponseTo"), expected.in_response_to) {
        (None, _) | (Some(_), Answering::Any) => {}
        (Some(got), Answering::Request(want)) if got == want => {}
        _ => return Err(SamlError::InResponseTo),
    }
    Ok(())
}

/// Checks a verified assertion and extracts the identity and claims.
pub(crate) fn check_assertion(
    assertion: Node<'_, '_>,
    expected: &Expected<'_>,
) -> Result<Checked, SamlError> {
    let invalid = SamlError::InvalidAssertion;
    if assertion.attribute("Version") != Some("2.0") {
        return Err(invalid("not SAML 2.0"));
    }
    let assertion_id = assertion
        .attribute("ID")
        .filter(|id| !id.is_empty())
        .ok_or(invalid("no ID"))?
        .to_owned();
    let issued = assertion
        .attribute("IssueInstant")
        .and_then(time::parse)
        .ok_or(invalid("no valid IssueInstant"))?;
    if issued > expected.now + expected.skew {
        return Err(SamlError::NotYetValid);
    }
    match only_child(assertion, NS_ASSERTION, "Issuer") {
        Ok(Some(issuer)) => check_issuer(issuer, expected)?,
        _ => return Err(SamlError::Issuer),
    }
    let subject = only_child(assertion, NS_ASSERTION, "Subject")
        .ok()
        .flatten()
        .ok_or(invalid("no single Subject"))?;
    let mut not_on_or_after = check_conditions(assertion, expected)?;
    let (confirmed_until, in_response_to) = check_bearer(subject, expected)?;
    not_on_or_after = not_on_or_after.min(confirmed_until);
    let session_index = check_authn_statement(assertion, expected)?;

    let claims = attributes(assertion);
    let name_id = super::logout::name_id_of(subject);
    let subject = match expected.identity_attribute {
        None => persistent_name_id(subject, expected)?,
        Some(name) => identity_attribute(assertion, name)?,
    };
    Ok(Checked {
        subject,
        claims,
        assertion_id,
        not_on_or_after: not_on_or_after.saturating_add(expected.skew),
        in_response_to,
        session_index,
        name_id,
    })
}

fn check_issuer(issuer: Node<'_, '_>, expected: &Expected<'_>) -> Result<(), SamlError> {
    if issuer.attribute("Format").is_some_and(|f| f != ENTITY) {
        return Err(SamlError::Issuer);
    }
    match trimmed_text(issuer) {
        Some(text) if text == expected.idp_entity_id => Ok(()),
        _ => Err(SamlError::Issuer),
    }
}

/// `Conditions`: validity window and audience. Returns the window's end (or `i64::MAX`).
fn check_conditions(assertion: Node<'_, '_>, expected: &Expected<'_>) -> Result<i64, SamlError> {
    let conditions = only_child(assertion, NS_ASSERTION, "Conditions")
        .map_err(|()| SamlError::InvalidAssertion("several Conditions"))?
        .ok_or(SamlError::Audience)?;
    if let Some(nb) = conditions.attribute("NotBefore") {
        let nb = time::parse(nb).ok_or(SamlError::InvalidAssertion("invalid NotBefore"))?;
        if expected.now + expected.skew < nb {
            return Err(SamlError::NotYetValid);
        }
    }
    let mut until = i64::MAX;
    if let Some(noa) = conditions.attribute("NotOnOrAfter") {
        until = time::parse(noa).ok_or(SamlError::InvalidAssertion("invalid NotOnOrAfter"))?;
        if expected.now >= until.saturating_add(expected.skew) {
            return Err(SamlError::Expired);
        }
    }
    let mut restrictions = 0;
    for condition in conditions.children().filter(|c| c.is_element()) {
        if is(condition, NS_ASSERTION, "AudienceRestriction") {
            restrictions += 1;
            // Audiences within one restriction are alternatives; restrictions all apply.
            let ours = children(condition, NS_ASSERTION, "Audience")
                .any(|a| trimmed_text(a).as_deref() == Some(expected.sp_entity_id));
            if !ours {
                return Err(SamlError::Audience);
            }
        } else if is(condition, NS_ASSERTION, "OneTimeUse")
            || is(condition, NS_ASSERTION, "ProxyRestriction")
        {
            // One-time use is what the replay guard enforces; we never proxy.
        } else {
            return Err(SamlError::InvalidAssertion("an unknown Condition"));
        }
    }
    if restrictions == 0 {
        return Err(SamlError::Audience);
    }
    Ok(until)
}

/// At least one bearer `SubjectConfirmation` must hold. Returns its `NotOnOrAfter` and its
/// `InResponseTo`. When none holds, the first one's failure is reported.
fn check_bearer(
    subject: Node<'_, '_>,
    expected: &Expected<'_>,
) -> Result<(i64, Option<String>), SamlError> {
    let mut first_error = None;
    for confirmation in children(subject, NS_ASSERTION, "SubjectConfirmation") {
        if confirmation.attribute("Method") != Some(BEARER) {
            continue;
        }
        match check_confirmation(confirmation, expected) {
            Ok(held) => return Ok(held),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(SamlError::InvalidAssertion("no bearer SubjectConfirmation")))
}

fn check_confirmation(
    confirmation: Node<'_, '_>,
    expected: &Expected<'_>,
) -> Result<(i64, Option<String>), SamlError> {
    let data = only_child(confirmation, NS_ASSERTION, "SubjectConfirmationData")
        .ok()
        .flatten()
        .ok_or(SamlError::InvalidAssertion("no SubjectConfirmationData"))?;
    if data.attribute("Recipient") != Some(expected.acs_url) {
        return Err(SamlError::Recipient);
    }
    let until = data
        .attribute("NotOnOrAfter")
        .ok_or(SamlError::InvalidAssertion(
            "the bearer confirmation has no NotOnOrAfter",
        ))
        .and_then(|t| time::parse(t).ok_or(SamlError::InvalidAssertion("invalid NotOnOrAfter")))?;
    if expected.now >= until.saturating_add(expected.skew) {
        return Err(SamlError::Expired);
    }
    if let Some(nb) = data.attribute("NotBefore") {
        let nb = time::parse(nb).ok_or(SamlError::InvalidAssertion("invalid NotBefore"))?;
        if expected.now + expected.skew < nb {
            return Err(SamlError::NotYetValid);
        }
    }
    let answered = data.attribute("InResponseTo");
    match (answered, expected.in_response_to) {
        (Some(got), Answering::Request(want)) if got == want => {}
        (None, Answering::Unsolicited) | (_, Answering::Any) => {}
        _ => return Err(SamlError::InResponseTo),
    }
    Ok((until, answered.map(str::to_owned)))
}

/// Checks the `AuthnStatement`s; the `SessionIndex` of the first.
fn check_authn_statement(
    assertion: Node<'_, '_>,
    expected: &Expected<'_>,
) -> Result<Option<String>, SamlError> {
    let mut any = false;
    let mut session_index = None;
    for statement in children(assertion, NS_ASSERTION, "AuthnStatement") {
        if !any {
            session_index = statement.attribute("SessionIndex").map(str::to_owned);
        }
        any = true;
        if let Some(end) = statement.attribute("SessionNotOnOrAfter") {
            let end = time::parse(end)
                .ok_or(SamlError::InvalidAssertion("invalid SessionNotOnOrAfter"))?;
            if expected.now >= end.saturating_add(expected.skew) {
                return Err(SamlError::Expired);
            }
        }
    }
    if any {
        Ok(session_index)
    } else {
        Err(SamlError::InvalidAssertion("no AuthnStatement"))
    }
}

/// The persistent NameID: its whole text (comments cannot cut it short).
fn persistent_name_id(subject: Node<'_, '_>, expected: &Expected<'_>) -> Result<String, SamlError> {
    if children(subject, NS_ASSERTION, "EncryptedID")
        .next()
        .is_some()
    {
        return Err(SamlError::Subject("an encrypted NameID is not supported"));
    }
    let name_id = only_child(subject, NS_ASSERTION, "NameID")
        .ok()
        .flatten()
        .ok_or(SamlError::Subject("no single NameID"))?;
    if name_id.attribute("Format") != Some(PERSISTENT) {
        return Err(SamlError::Subject(
            "the NameID is not persistent (configure identity_attribute)",
        ));
    }
    if name_id
        .attribute("NameQualifier")
        .is_some_and(|q| q != expected.idp_entity_id)
        || name_id
            .attribute("SPNameQualifier")
            .is_some_and(|q| q != expected.sp_entity_id)
    {
        return Err(SamlError::Subject(
            "the NameID is qualified for another party",
        ));
    }
    let value = full_text(name_id).ok_or(SamlError::Subject("the NameID is not text"))?;
    subject_value(value)
}

/// The single value of the configured identity attribute.
fn identity_attribute(assertion: Node<'_, '_>, name: &str) -> Result<String, SamlError> {
    let mut values = Vec::new();
    for statement in children(assertion, NS_ASSERTION, "AttributeStatement") {
        for attribute in children(statement, NS_ASSERTION, "Attribute") {
            if attribute.attribute("Name") == Some(name) {
                for value in children(attribute, NS_ASSERTION, "AttributeValue") {
                    values.push(full_text(value));
                }
            }
        }
    }
    match values.as_slice() {
        [] => Err(friendly_name_hint(assertion, name)
            .unwrap_or(SamlError::Subject("the identity attribute is missing"))),
        [Some(value)] => subject_value(value.clone()),
        [None] => Err(SamlError::Subject("the identity attribute is not text")),
        _ => Err(SamlError::Subject(
            "the identity attribute has several values",
        )),
    }
}

/// When no attribute has `name` as its `Name` but exactly one `Name` has it as its
/// `FriendlyName`: the error naming that `Name`, the one to configure.
fn friendly_name_hint(assertion: Node<'_, '_>, name: &str) -> Option<SamlError> {
    /// Longest attribute name quoted in the message.
    const MAX_QUOTED: usize = 256;
    let mut names: Vec<&str> = children(assertion, NS_ASSERTION, "AttributeStatement")
        .flat_map(|statement| children(statement, NS_ASSERTION, "Attribute"))
        .filter(|attribute| attribute.attribute("FriendlyName") == Some(name))
        .filter_map(|attribute| attribute.attribute("Name"))
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [full] => Some(SamlError::IdentityAttributeIsFriendlyName {
            friendly_name: name.chars().take(MAX_QUOTED).collect(),
            name: full.chars().take(MAX_QUOTED).collect(),
        }),
        _ => None,
    }
}

fn subject_value(value: String) -> Result<String, SamlError> {
    let value = value.trim_matches([' ', '\t', '\r', '\n']);
    if value.is_empty() {
        return Err(SamlError::Subject("the subject is empty"));
    }
    if value.chars().count() > MAX_SUBJECT || value.chars().any(char::is_control) {
        return Err(SamlError::Subject(
            "the subject is too long or has control characters",
        ));
    }
    Ok(value.to_owned())
}

/// Attributes as claims: keyed by `Name` and, when present and not itself a `Name`, by
/// `FriendlyName`; one value is a string, several an array; `xsi:nil` is `null`;
/// structured values are skipped.
fn attributes(assertion: Node<'_, '_>) -> Claims {
    const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
    let mut by_name: Vec<(String, Option<String>, Vec<Value>)> = Vec::new();
    let mut count = 0;
    for statement in children(assertion, NS_ASSERTION, "AttributeStatement") {
        for attribute in children(statement, NS_ASSERTION, "Attribute") {
            let Some(name) = attribute.attribute("Name").filter(|n| !n.is_empty()) else {
                continue;
            };
            let mut values = Vec::new();
            for value in children(attribute, NS_ASSERTION, "AttributeValue") {
                if count >= MAX_VALUES {
                    break;
                }
                count += 1;
                if value.attribute((XSI, "nil")) == Some("true") {
                    values.push(Value::Null);
                } else if let Some(text) = full_text(value) {
                    values.push(Value::String(text));
                }
            }
            let friendly = attribute.attribute("FriendlyName").map(str::to_owned);
            match by_name.iter_mut().find(|(n, _, _)| n == name) {
                Some((_, f, existing)) => {
                    existing.extend(values);
                    if f.is_none() {
                        *f = friendly;
                    }
                }
                None => by_name.push((name.to_owned(), friendly, values)),
            }
        }
    }
    let mut map = Map::new();
    let shape = |mut values: Vec<Value>| match values.len() {
        1 => values.remove(0),
        _ => Value::Array(values),
    };
    for (name, _, values) in &by_name {
        map.insert(name.clone(), shape(values.clone()));
    }
    for (_, friendly, values) in by_name {
        if let Some(friendly) = friendly.filter(|f| !f.is_empty())
            && !map.contains_key(&friendly)
        {
            map.insert(friendly, shape(values));
        }
    }
    Claims(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes_xml(attributes: &str) -> String {
        format!(
            r#"<saml:Assertion xmlns:saml="{NS_ASSERTION}"><saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion>"#
        )
    }

    fn attribute(name: &str, friendly: &str) -> String {
        format!(
            r#"<saml:Attribute Name="{name}" FriendlyName="{friendly}"><saml:AttributeValue>v</saml:AttributeValue></saml:Attribute>"#
        )
    }

    #[test]
    fn a_friendly_name_is_named_only_when_it_points_at_one_name() {
        let hint = |xml: &str, configured: &str| {
            let doc = roxmltree::Document::parse(xml).unwrap();
            identity_attribute(doc.root_element(), configured).unwrap_err()
        };
        let one = attributes_xml(&attribute("urn:oid:0.9.2342.19200300.100.1.1", "uid"));
        assert_eq!(
            hint(&one, "uid"),
            SamlError::IdentityAttributeIsFriendlyName {
                friendly_name: "uid".into(),
                name: "urn:oid:0.9.2342.19200300.100.1.1".into(),
            }
        );
        // Two attributes with one Name and FriendlyName: still one Name to name.
        let twice = attributes_xml(&format!(
            "{}{}",
            attribute("urn:x:a", "uid"),
            attribute("urn:x:a", "uid")
        ));
        assert!(matches!(
            hint(&twice, "uid"),
            SamlError::IdentityAttributeIsFriendlyName { name, .. } if name == "urn:x:a"
        ));
        // Ambiguous (two Names share the FriendlyName), or no such FriendlyName: just missing.
        let ambiguous = attributes_xml(&format!(
            "{}{}",
            attribute("urn:x:a", "uid"),
            attribute("urn:x:b", "uid")
        ));
        for (xml, configured) in [(&ambiguous, "uid"), (&one, "mail")] {
            assert_eq!(
                hint(xml, configured),
                SamlError::Subject("the identity attribute is missing")
            );
        }
    }
}
