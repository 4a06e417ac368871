//! What the identity providers' protocols share (below OIDC login, bearer tokens and logout
//! tokens): JOSE helpers.

/// A JOSE `typ` as a comparable media type (RFC 7515 §4.1.9): lower case, `application/`
/// prepended when it holds no `/`. An absent `typ` is `""`.
pub(crate) fn media_type(typ: &str) -> String {
    let typ = typ.trim().to_ascii_lowercase();
    if typ.is_empty() || typ.contains('/') {
        typ
    } else {
        format!("application/{typ}")
    }
}
