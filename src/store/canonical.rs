//! The one canonical form of usernames and email addresses, computed in Rust so that every
//! store (memory, SQLite, PostgreSQL, yours) folds the same way.

use icu_casemap::CaseMapper;
use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};

/// The canonical form of a username or email address: what uniqueness and lookups compare.
///
/// It is Unicode's *compatibility caseless match* (The Unicode Standard, §3.13, D146),
/// `NFKD(toCasefold(NFKD(toCasefold(NFD(X)))))`, recomposed to NFKC for storage: compatibility
/// characters become their plain equivalents (fullwidth `ａｄｍｉｎ` is `admin`, the ligature
/// `ﬁ` is `fi`, `ſ` is `s`, superscript `²` is `2`) and case is fully folded (`ADMIN` is
/// `admin`, the Kelvin sign `K` (U+212A) is `k`, `ß` is `ss`). Two names with the same
/// canonical form are one name: the second is refused as taken.
///
/// Applying it twice changes nothing. It does not map characters of different scripts that
/// merely look alike (Cyrillic `а` and Latin `a`): restrict a domain's `allowed_chars` if
/// that matters.
///
/// ```
/// use jit_provision::store::canonical;
///
/// assert_eq!(canonical("ａｄｍｉｎ"), "admin");
/// assert_eq!(canonical("\u{212A}ate"), "kate");
/// assert_eq!(canonical("Jane.Doe@Example.COM"), "jane.doe@example.com");
/// assert_eq!(canonical("Straße"), canonical("STRASSE"));
/// ```
pub fn canonical(value: &str) -> String {
    let fold = CaseMapper::new();
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let decomposed = nfd.normalize(value);
    let folded = fold.fold_string(&decomposed);
    let once = nfkd.normalize(&folded);
    let twice = fold.fold_string(&once);
    nfkc.normalize(&twice).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusables_fold_to_the_plain_name() {
        assert_eq!(canonical("ａｄｍｉｎ"), "admin");
        assert_eq!(canonical("ＡＤＭＩＮ"), "admin");
        assert_eq!(canonical("Admin"), "admin");
        assert_eq!(canonical("\u{212A}elvin"), "kelvin");
        assert_eq!(canonical("\u{212B}ngstr\u{f6}m"), canonical("ångström"));
        assert_eq!(canonical("o\u{308}"), "\u{f6}", "recomposed");
        assert_eq!(canonical("ﬁnance"), "finance");
        assert_eq!(canonical("ſam"), "sam");
        assert_eq!(canonical("user²"), "user2");
        assert_eq!(canonical("ΣΊΣΥΦΟΣ"), canonical("σίσυφος"));
        assert_eq!(canonical("jane.doe@example.com"), "jane.doe@example.com");
    }

    #[test]
    fn folding_twice_changes_nothing() {
        // Every assigned code point of the BMP and the supplementary planes in use.
        for c in (0..0x3_0000u32).filter_map(char::from_u32) {
            let once = canonical(&c.to_string());
            assert_eq!(canonical(&once), once, "U+{:04X}", c as u32);
        }
    }
}
