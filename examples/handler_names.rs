//! Prints the names of the execution handlers this program has, one a line.
//!
//! It exists for CI: handlers register themselves with `inventory::submit!`, and nothing else
//! refers to the "docker" handler's registration, so `.ci/run` builds this example with fat LTO
//! and one codegen unit and checks that `docker` (with the feature on, the default), `direct`
//! and `process` are still listed, i.e. that the linker kept every registration. Without the
//! `docker` feature it builds too, and `docker` is simply absent.

fn main() {
    graflow::init();
    for name in graflow::WorkflowEngine::new().handler_names() {
        println!("{name}");
    }
}
