/// The `return_to` target was refused: only same-origin relative paths are allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("return_to must be a same-origin path starting with a single `/`")]
pub struct InvalidReturnTo;

/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 2048;

/// Checks that `target` is a same-origin relative path (`/dashboard?tab=1`), refusing
/// absolute URLs, scheme-relative `//host`, backslash tricks (`/\host`), control
/// characters and anything that would resolve to another origin.
///
/// ```
/// use jit_provision::session::check_return_to;
/// assert!(check_return_to("/profile?tab=groups").is_ok());
/// assert!(check_return_to("https://evil.example").is_err());
/// assert!(check_return_to("//evil.example").is_err());
/// assert!(check_return_to("/\\evil.example").is_err());
/// ```
pub fn check_return_to(target: &str) -> Result<&str, InvalidReturnTo> {
    let bytes = target.as_bytes();
    if target.is_empty()
        || target.len() > MAX_RETURN_TO
        || bytes[0] != b'/'
        || bytes.get(1).is_some_and(|b| *b == b'/' || *b == b'\\')
        || target.chars().any(|c| c.is_control() || c == '\\')
    {
        return Err(InvalidReturnTo);
    }
    // Belt and braces: resolving against a fixed origin must keep that origin.
    let base = url::Url::parse("http://same-origin.invalid/").expect("static URL");
    match base.join(target) {
        Ok(url) if url.origin() == base.origin() => Ok(target),
        _ => Err(InvalidReturnTo),
    }
}

#[cfg(test)]
mod tests {
    use super::check_return_to;

    #[test]
    fn refuses_every_open_redirect_shape() {
        for bad in [
            "",
            "evil.example",
            "http://evil.example/",
            "javascript:alert(1)",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/%0d%0aLocation:x\r\n",
            "/a\tb",
            "///evil.example",
        ] {
            assert!(check_return_to(bad).is_err(), "accepted {bad:?}");
        }
        for good in ["/", "/a/b?c=d#e", "/%2F%2Fevil.example"] {
            assert_eq!(check_return_to(good), Ok(good));
        }
    }
}
