//! A program that does not call `graflow::init()` (here: a test binary without
//! `enable_test_runner!`) cannot serve as a runner; the error says what to do, and the child
//! refuses to start the workflow again.

use graflow::prelude::*;

#[task(handler = "process")]
fn elsewhere() -> u8 {
    1
}

#[test]
fn a_program_without_init_is_detected_and_reported() {
    let result = WorkflowEngine::new().run(&workflow! { elsewhere; }, RunOptions::new());
    if graflow::is_runner() {
        // In the child: the engine refuses to run a workflow, which would recurse.
        let err = result.unwrap_err();
        assert!(matches!(err, RunError::RunnerNotInitialised), "{err}");
        return;
    }
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("failed on handler 'process'"), "{msg}");
    assert!(msg.contains("without answering as a task runner: call graflow::init() at the start of main or use #[graflow::main]"), "{msg}");
    // A runner lost before it answered (from here, a program without init() and one killed
    // while starting look the same).
    let failure = err.failure().expect("the task failed");
    assert_eq!(
        failure.cause.kind(),
        graflow::ErrorKind::Handler(graflow::HandlerFailure::RunnerLost)
    );
}
