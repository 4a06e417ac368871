//! XML helpers: parsing that refuses DTDs, namespace names, element look-ups, text, escaping.

use roxmltree::{Document, Node, ParsingOptions};

use super::SamlError;

/// The SAML 2.0 protocol namespace (`samlp:`).
pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// The SAML 2.0 assertion namespace (`saml:`).
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// The SAML 2.0 metadata namespace (`md:`).
pub(crate) const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML-DSig (`ds:`).
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// XML Encryption (`xenc:`).
pub(crate) const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML Encryption 1.1 (`xenc11:`).
pub(crate) const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";

/// Most nodes one document may have (a real response has a few hundred).
const MAX_NODES: u32 = 20_000;

/// Parses `text`, refusing a DTD before anything in it is read, and bounding the node count.
/// roxmltree never loads external entities; with `allow_dtd: false` it stops at the
/// `<!DOCTYPE` with `DtdDetected`, so no entity declared there is ever expanded.
pub(crate) fn parse(text: &str) -> Result<Document<'_>, SamlError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlError::Dtd,
        other => SamlError::Malformed(format!("not well-formed XML ({other})")),
    })
}

/// True when `node` is the element `{ns}name`.
pub(crate) fn is(node: Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

/// The element children of `node` named `{ns}name`.
pub(crate) fn children<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    node.children().filter(move |c| is(*c, ns, name))
}

/// The only element child named `{ns}name`: `Ok(None)` when there is none, `Err(())` when
/// there are several.
pub(crate) fn only_child<'a, 'input>(
    node: Node<'a, 'input>,
    ns: &'a str,
    name: &'a str,
) -> Result<Option<Node<'a, 'input>>, ()> {
    let mut found = children(node, ns, name);
    let first = found.next();
    if found.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// Every element descendant of `node` (itself included) named `{ns}name`.
pub(crate) fn descendants<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    node.descendants().filter(move |c| is(*c, ns, name))
}

/// The whole character content of an element: every text (and CDATA) descendant joined, so
/// a comment or processing instruction splitting the text (`admin@example.com<!---->.evil`)
/// cannot shorten it. `None` when the element has element children (a value is never
/// structured in SAML where this is used).
pub(crate) fn full_text(node: Node<'_, '_>) -> Option<String> {
    if node.children().any(|c| c.is_element()) {
        return None;
    }
    let mut text = String::new();
    for child in node.children() {
        if child.is_text() {
            text.push_str(child.text().unwrap_or_default());
        }
    }
    Some(text)
}

/// [`full_text`], trimmed of XML whitespace.
pub(crate) fn trimmed_text(node: Node<'_, '_>) -> Option<String> {
    full_text(node).map(|t| t.trim_matches([' ', '\t', '\r', '\n']).to_owned())
}

/// Escapes text for an XML attribute value or element content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtd_is_refused_before_entities() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert_eq!(parse(xxe).unwrap_err(), SamlError::Dtd);
        let laughs = r#"<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>"#;
        assert_eq!(parse(laughs).unwrap_err(), SamlError::Dtd);
    }

    #[test]
    fn full_text_joins_around_comments() {
        let doc = parse("<n>admin@evil.com<!---->.attacker.com</n>").unwrap();
        assert_eq!(
            full_text(doc.root_element()).as_deref(),
            Some("admin@evil.com.attacker.com")
        );
        let doc = parse("<n>a<x/>b</n>").unwrap();
        assert_eq!(full_text(doc.root_element()), None);
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape(r#"<a b="c">&'"#),
            "&lt;a b=&quot;c&quot;&gt;&amp;&apos;"
        );
    }
}
