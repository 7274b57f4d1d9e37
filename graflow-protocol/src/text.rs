//! Cutting text a peer sent (error messages, log lines) to a byte budget without splitting a
//! UTF-8 character: one implementation for every place that bounds hostile text.

use std::borrow::Cow;

/// The longest prefix of `s` that is at most `max_bytes` long and ends on a character boundary
/// (`s` itself when it fits). Never panics; the result is valid UTF-8 by construction.
pub fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    &s[..s.floor_char_boundary(max_bytes)]
}

/// Cuts `s` in place to at most `max_bytes` on a character boundary; returns how many bytes
/// were cut (0 when it fits), for the caller's own marker (`" [cut]"`, `" [...]"`).
pub fn truncate_in_place(s: &mut String, max_bytes: usize) -> usize {
    let kept = truncate_utf8(s, max_bytes).len();
    let cut = s.len() - kept;
    s.truncate(kept);
    cut
}

/// `s` when it fits in `max_bytes`; else its first `max_bytes` at most (on a character
/// boundary) followed by ` [... N byte(s) cut]`, N the bytes left out. The note comes on top of
/// `max_bytes`.
pub fn truncate_noted(s: &str, max_bytes: usize) -> Cow<'_, str> {
    let kept = truncate_utf8(s, max_bytes);
    if kept.len() == s.len() {
        return Cow::Borrowed(s);
    }
    Cow::Owned(format!("{kept} [... {} byte(s) cut]", s.len() - kept.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_fits_is_kept_whole() {
        assert_eq!(truncate_utf8("", 0), "");
        assert_eq!(truncate_utf8("abc", 3), "abc");
        assert_eq!(truncate_utf8("abc", usize::MAX), "abc");
        assert!(matches!(truncate_noted("abc", 3), Cow::Borrowed("abc")));
        let mut s = String::from("abc");
        assert_eq!(truncate_in_place(&mut s, 10), 0);
        assert_eq!(s, "abc");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is 2 bytes, "€" 3, "🦀" 4.
        let s = "aé€🦀";
        assert_eq!(truncate_utf8(s, 0), "");
        assert_eq!(truncate_utf8(s, 1), "a");
        assert_eq!(truncate_utf8(s, 2), "a");
        assert_eq!(truncate_utf8(s, 3), "aé");
        assert_eq!(truncate_utf8(s, 5), "aé");
        assert_eq!(truncate_utf8(s, 6), "aé€");
        assert_eq!(truncate_utf8(s, 9), "aé€");
        assert_eq!(truncate_utf8(s, 10), s);
    }

    #[test]
    fn the_note_says_how_much_was_cut() {
        assert_eq!(truncate_noted("abcdef", 4), "abcd [... 2 byte(s) cut]");
        assert_eq!(truncate_noted("a🦀", 3), "a [... 4 byte(s) cut]");
        let mut s = String::from("a🦀b");
        assert_eq!(truncate_in_place(&mut s, 4), 5);
        assert_eq!(s, "a");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text, any budget: no panic, a prefix, within the budget, valid UTF-8, and the
        /// longest such prefix (the next character would not fit).
        #[test]
        fn a_truncation_is_the_longest_prefix_within_the_budget(s in "\\PC{0,40}|.{0,40}", max in 0usize..200) {
            let cut = truncate_utf8(&s, max);
            prop_assert!(s.starts_with(cut));
            prop_assert!(cut.len() <= max);
            prop_assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
            if cut.len() < s.len() {
                let next = s[cut.len()..].chars().next().map_or(0, char::len_utf8);
                prop_assert!(cut.len() + next > max);
            }
            let mut owned = s.clone();
            let removed = truncate_in_place(&mut owned, max);
            prop_assert_eq!(owned.as_str(), cut);
            prop_assert_eq!(removed, s.len() - cut.len());
            let noted = truncate_noted(&s, max);
            prop_assert!(noted.starts_with(cut));
            prop_assert_eq!(matches!(noted, Cow::Borrowed(_)), cut.len() == s.len());
        }
    }
}
