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
        .run(&wf.build(), RunOptions::new().param("initial", 1u32))
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

#[task]
fn first_step() -> u32 {
    1
}

/// Writes the channel, then asks for a goto the run refuses (its target used its one run):
/// the attempt fails in the engine after the runner answered, and its write goes with it.
#[task(handler = "process")]
fn writes_then_asks_too_much(first_step: u32, ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.channel().set("from_a_refused_attempt", first_step);
    ctx.goto("first_step")?;
    Ok(first_step)
}

#[test]
fn writes_of_an_attempt_the_engine_refuses_after_its_answer_are_discarded() {
    let mut wf = Workflow::builder("refused-after-answer");
    let a = wf.add(first_step::task().with_max_cycles(1));
    let b = wf.add(writes_then_asks_too_much::task());
    wf.edge(a, b);
    let error = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap_err();
    assert_eq!(
        error.failure().unwrap().task,
        "writes_then_asks_too_much",
        "{error}"
    );
    let report = error.report().unwrap();
    assert!(
        !report.channel().contains("from_a_refused_attempt"),
        "a failed attempt's write was kept"
    );
}
