//! `#[graflow::main]` on a `main` that never returns: compiles as before.

#[graflow::main]
fn main() -> ! {
    std::process::exit(0)
}
