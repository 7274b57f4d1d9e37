//! Misuse of `#[task]` and `workflow!` is a compile error spanned on the offending token.
//! Expected messages are in `tests/ui/*.stderr` (regenerate with `TRYBUILD=overwrite`).

#[test]
fn macro_misuse_is_a_spanned_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    // What must still compile and run: `#[graflow::main]` on mains of every return type.
    cases.pass("tests/ui_pass/*.rs");
}
