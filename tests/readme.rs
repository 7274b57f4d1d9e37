//! The README's quick start is `examples/quickstart.rs`, verbatim.

#[test]
fn readme_quick_start_is_the_quickstart_example() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart.rs"
    ))
    .expect("examples/quickstart.rs is readable");
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "the README's quick start differs from examples/quickstart.rs"
    );
}
