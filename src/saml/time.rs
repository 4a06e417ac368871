//! `xs:dateTime` values as SAML uses them (UTC), to and from Unix seconds.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses an `xs:dateTime` into Unix seconds (fractions dropped). SAML requires UTC
/// (`...Z`); an explicit offset is honoured and a missing zone is read as UTC.
pub(crate) fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(parse("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse("1970-01-01T00:01:00.999Z"), Some(60));
        assert_eq!(parse("1970-01-01T01:01:00+01:00"), Some(60));
        assert_eq!(parse("1970-01-01T00:01:00"), Some(60));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(format(60), "1970-01-01T00:01:00Z");
    }
}
