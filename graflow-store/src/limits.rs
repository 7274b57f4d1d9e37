//! How much of anything is stored: every text that reaches the database goes through
//! [`clean`], so a hostile task id, error, log line or result is stored bounded, as valid UTF-8
//! without NUL (which PostgreSQL's TEXT refuses).

/// The longest error message stored, in bytes.
pub const MAX_ERROR: usize = 8 * 1024;
/// The longest log line stored, in bytes.
pub const MAX_LOG_LINE: usize = 4 * 1024;
/// How many log lines of one task are stored; the rest are counted.
pub const MAX_LOG_LINES: u32 = 1_000;
/// The longest result preview stored, in bytes.
pub const MAX_PREVIEW: usize = 1024;
/// The longest id (task, handler, worker) or name stored, in bytes.
pub const MAX_NAME: usize = 512;
/// How many records wait for the writer at most; newer ones are dropped and counted.
pub const MAX_PENDING: usize = 500_000;

/// `text` without NUL characters (each becomes U+FFFD) and cut to at most `max` bytes on a
/// character boundary, with ` …[N bytes cut]` when it was cut.
pub fn clean(text: &str, max: usize) -> String {
    let mut out: String = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    };
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        let cut = out.len() - end;
        out.truncate(end);
        out.push_str(&format!(" …[{cut} bytes cut]"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cleaned_text_is_bounded_and_has_no_nul(text in ".*", max in 1usize..64) {
            let cleaned = clean(&text, max);
            prop_assert!(!cleaned.contains('\0'));
            prop_assert!(cleaned.len() <= max + " …[18446744073709551615 bytes cut]".len());
            if text.len() <= max && !text.contains('\0') {
                prop_assert_eq!(cleaned, text);
            }
        }
    }

    #[test]
    fn a_cut_lands_on_a_character_boundary() {
        assert_eq!(clean("ééé", 3), "é …[4 bytes cut]");
        assert_eq!(clean("a\0b", 10), "a\u{FFFD}b");
    }
}
