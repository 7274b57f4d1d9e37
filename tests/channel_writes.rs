//! One rule for a task's channel writes, on every handler: an attempt reads its own writes at
//! once; the run's channel takes them when the attempt succeeds; a failed attempt's writes
//! (sets and deletions) are discarded, and its retry does not see them.

use graflow::prelude::*;

mod common;

graflow::enable_test_runner!();

/// Writes, reads its writes back, deletes `initial`, and fails its first attempt.
fn write_then_fail_once(ctx: &TaskContext) -> Result<u32, String> {
    let channel = ctx.channel();
    let attempt = ctx.attempt();
    if channel.contains("attempt_1") {
        return Err("the retry sees the failed attempt's write".to_owned());
    }
    if !channel.contains("initial") {
        return Err(
            "the retry does not see `initial`, which the failed attempt deleted".to_owned(),
        );
    }
    channel.set(format!("attempt_{attempt}"), attempt);
    // Read-your-writes: the attempt sees what it wrote, and its deletion.
    if channel.get::<u32>(&format!("attempt_{attempt}")).ok() != Some(attempt) {
        return Err("the attempt does not read its own write".to_owned());
    }
    channel.delete("initial");
    if channel.contains("initial") || channel.keys().contains(&"initial".to_owned()) {
        return Err("the attempt still sees the key it deleted".to_owned());
    }
    if attempt == 1 {
        return Err("the first attempt fails".to_owned());
    }
    Ok(attempt)
}

#[task(retries = 1, retry_delay = "1ms")]
fn writer(ctx: &TaskContext) -> Result<u32, String> {
    write_then_fail_once(ctx)
}

#[task(handler = "process", retries = 1, retry_delay = "1ms")]
fn writer_in_a_process(ctx: &TaskContext) -> Result<u32, String> {
    write_then_fail_once(ctx)
}

#[cfg(feature = "docker")]
#[task(
    handler = "docker",
    image = "python:3.11-slim",
    retries = 1,
    retry_delay = "1ms"
)]
fn writer_in_a_container(ctx: &TaskContext) -> Result<u32, String> {
    write_then_fail_once(ctx)
}

/// What the next task sees: the successful attempt's writes only.
#[task]
fn reader(ctx: &TaskContext) -> (bool, Option<u32>, bool) {
    let channel = ctx.channel();
    (
        channel.contains("attempt_1"),
        channel.try_get::<u32>("attempt_2").unwrap(),
        channel.contains("initial"),
    )
}

fn check(task: graflow::Task) {
    let handler = task.handler().to_owned();
    let mut wf = Workflow::builder(format!("writes-{handler}"));
    let w = wf.add(task);
    let r = wf.add(reader::task());
    wf.edge(w, r);
    let report = WorkflowEngine::new()
        .run_with(&wf.build(), Channel::new().with("initial", 1u32))
        .unwrap_or_else(|e| panic!("{handler}: {e}"));
    // The successful attempt deleted `initial`: gone for the next task and at the end.
    assert_eq!(
        report
            .result::<(bool, Option<u32>, bool)>("reader")
            .unwrap(),
        (false, Some(2), false),
        "{handler}"
    );
    assert!(!report.channel().contains("attempt_1"), "{handler}");
    assert_eq!(
        report.channel().get::<u32>("attempt_2").unwrap(),
        2,
        "{handler}"
    );
}

#[test]
fn a_failed_attempts_writes_are_discarded_on_direct() {
    check(writer::task());
}

#[test]
fn a_failed_attempts_writes_are_discarded_in_a_process() {
    check(writer_in_a_process::task());
}

#[cfg(feature = "docker")]
#[test]
fn a_failed_attempts_writes_are_discarded_in_a_container() {
    if common::skip_without_docker() {
        return;
    }
    check(writer_in_a_container::task());
}
