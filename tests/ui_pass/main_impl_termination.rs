//! `#[graflow::main]` on a `main` returning `impl Termination`: compiles and runs as before.

#[graflow::main]
fn main() -> impl std::process::Termination {
    std::process::ExitCode::SUCCESS
}
