//! Failure: an error, a panic or a timeout, after retries, fails the run; nothing new starts;
//! the error names the task, its handler, the attempt count and the cause chain.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use graflow::TaskStatus;
use graflow::prelude::*;

mod common;

use common::{DiskFull, PROMPTLY, SaveFailed};

static AFTER_RUNS: AtomicU32 = AtomicU32::new(0);

#[task]
fn prepare() -> u32 {
    1
}

#[task]
fn save(prepare: u32) -> Result<u32, SaveFailed> {
    let _ = prepare;
    Err(SaveFailed(DiskFull))
}

#[task]
fn after_save(save: u32) -> u32 {
    AFTER_RUNS.fetch_add(1, Ordering::SeqCst);
    save
}

#[test]
fn an_error_stops_successors_and_names_task_handler_attempts_and_chain() {
    let wf = workflow! { name: "fails"; prepare >> save >> after_save; };
    let err = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "task 'save' failed on handler 'direct' after 1 attempt(s): task 'save' returned an error: could not save the model: disk full"
    );
    assert_eq!(AFTER_RUNS.load(Ordering::SeqCst), 0);
    let report = err.report().expect("a failed run carries its report");
    assert_eq!(
        report.task("prepare").unwrap().status,
        TaskStatus::Succeeded
    );
    assert_eq!(report.task("save").unwrap().status, TaskStatus::Failed);
    assert_eq!(
        report.task("after_save").unwrap().status,
        TaskStatus::Skipped
    );
    assert_eq!(report.task("after_save").unwrap().attempts, 0);
    // Results of what did run are not lost.
    assert_eq!(report.result::<u32>("prepare").unwrap(), 1);
    assert!(!report.succeeded());
    let table = report.to_string();
    assert!(
        table.contains("save: task 'save' returned an error: could not save the model: disk full"),
        "{table}"
    );
    // The cause keeps its typed source chain.
    let cause = err.cause().unwrap();
    assert!(matches!(cause, AttemptError::Task { .. }));
    let source = std::error::Error::source(cause).unwrap();
    assert_eq!(source.to_string(), "could not save the model");
}

#[task]
fn explode() -> u8 {
    panic!("boom at row 17")
}

#[task]
async fn explode_async() -> u8 {
    tokio::task::yield_now().await;
    panic!("async boom")
}

#[test]
fn a_panic_is_caught_and_reported() {
    let err = WorkflowEngine::new()
        .run(&workflow! { explode; }, RunOptions::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task 'explode' failed on handler 'direct' after 1 attempt(s): task 'explode' panicked: boom at row 17"
    );
    let err = WorkflowEngine::new()
        .run(&workflow! { explode_async; }, RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("task 'explode_async' panicked: async boom"),
        "{err}"
    );
    // The process is alive and the engine still works.
    let report = WorkflowEngine::new()
        .run(&workflow! { prepare; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<u32>("prepare").unwrap(), 1);
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(retries = 3, retry_delay = "40ms", retry_backoff = 2.0)]
fn flaky(ctx: &TaskContext) -> Result<u32, String> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < 3 {
        Err(format!("attempt {} failed", ctx.attempt()))
    } else {
        Ok(ctx.attempt())
    }
}

#[test]
fn retries_are_counted_and_back_off_exponentially() {
    let started = Instant::now();
    let report = WorkflowEngine::new()
        .run(&workflow! { flaky; }, RunOptions::new())
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.result::<u32>("flaky").unwrap(), 3);
    assert_eq!(report.task("flaky").unwrap().attempts, 3);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);
    // Two waits: 40 ms then 80 ms (a lower bound; the machine may be slower, never faster).
    assert!(elapsed >= Duration::from_millis(120), "{elapsed:?}");
    assert!(report.task("flaky").unwrap().duration.unwrap() >= Duration::from_millis(120));
}

#[task(retries = 2, retry_delay = "1ms")]
fn always_fails(ctx: &TaskContext) -> Result<(), String> {
    Err(format!("nope #{}", ctx.attempt()))
}

#[test]
fn spent_retries_report_the_attempt_count_and_last_error() {
    let err = WorkflowEngine::new()
        .run(&workflow! { always_fails; }, RunOptions::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task 'always_fails' failed on handler 'direct' after 3 attempt(s): task 'always_fails' returned an error: nope #3"
    );
    assert_eq!(
        err.report().unwrap().task("always_fails").unwrap().attempts,
        3
    );
}

#[task(timeout = "100ms")]
async fn sleepy_async() -> u8 {
    tokio::time::sleep(Duration::from_secs(30)).await;
    0
}

#[task(timeout = "100ms")]
fn sleepy_sync() -> u8 {
    // Far longer than `PROMPTLY`: a run that ends within that bound did not wait for the body.
    std::thread::sleep(Duration::from_secs(300));
    0
}

#[test]
fn a_timeout_fails_the_task() {
    for (wf, id) in [
        (workflow! { sleepy_async; }, "sleepy_async"),
        (workflow! { sleepy_sync; }, "sleepy_sync"),
    ] {
        let started = Instant::now();
        let err = WorkflowEngine::new()
            .run(&wf, RunOptions::new())
            .unwrap_err();
        assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
        assert!(
            matches!(err.cause(), Some(AttemptError::TimedOut { .. })),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!(
                "task '{id}' timed out after 100ms on handler 'direct'; raise `timeout` in #[task(...)]"
            )),
            "{err}"
        );
    }
}

/// What became of `slow_sibling`'s body: it started, its future was dropped, it finished.
static SLOW_STARTED: AtomicBool = AtomicBool::new(false);
static SLOW_DROPPED: AtomicBool = AtomicBool::new(false);
static SLOW_FINISHED: AtomicBool = AtomicBool::new(false);

/// Sets its flag when dropped: with the future that owns it, if that is cancelled.
struct SetOnDrop(&'static AtomicBool);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[task]
async fn slow_sibling() -> u8 {
    SLOW_STARTED.store(true, Ordering::SeqCst);
    let _dropped = SetOnDrop(&SLOW_DROPPED);
    // Far longer than `PROMPTLY`: a future dropped within that bound was cancelled.
    tokio::time::sleep(Duration::from_secs(300)).await;
    SLOW_FINISHED.store(true, Ordering::SeqCst);
    0
}

#[task]
async fn quick_failure() -> Result<u8, String> {
    // Fails once its sibling runs (on a busy machine a fixed delay may pass before it starts).
    let deadline = Instant::now() + PROMPTLY;
    while !SLOW_STARTED.load(Ordering::SeqCst) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err("bad input".to_owned())
}

#[task]
fn after_both(slow_sibling: u8, quick_failure: u8) -> u8 {
    slow_sibling + quick_failure
}

#[tokio::test]
async fn a_failure_cancels_running_tasks_and_starts_nothing_new() {
    let started = Instant::now();
    let wf = workflow! { (slow_sibling | quick_failure) >> after_both; };
    let err = WorkflowEngine::new()
        .execute(&wf, RunOptions::new())
        .await
        .unwrap_err();
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    let report = err.report().unwrap();
    assert_eq!(
        report.task("quick_failure").unwrap().status,
        TaskStatus::Failed
    );
    assert_eq!(
        report.task("slow_sibling").unwrap().status,
        TaskStatus::Cancelled
    );
    assert_eq!(
        report.task("after_both").unwrap().status,
        TaskStatus::Skipped
    );
    let counts = report.counts();
    assert_eq!(counts.succeeded, 0);
    assert_eq!(counts.failed, 1);
    assert_eq!(counts.cancelled, 1);
    assert_eq!(counts.skipped, 1);
    // The sibling was running, and is cancelled for real: its future is dropped (now, or soon
    // if the runtime drops it), well before its 300 s sleep could end. A body left running
    // detached would never be dropped in time, and would finish later.
    assert!(
        SLOW_STARTED.load(Ordering::SeqCst),
        "slow_sibling never started"
    );
    let deadline = Instant::now() + PROMPTLY;
    while !SLOW_DROPPED.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "slow_sibling's future was not dropped within {PROMPTLY:?} of the failure"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !SLOW_FINISHED.load(Ordering::SeqCst),
        "slow_sibling ran to its end"
    );
}

#[task(retries = 2, retry_delay = "5ms")]
fn inline_flaky(ctx: &TaskContext) -> Result<u32, String> {
    if ctx.attempt() == 1 {
        Err("the first attempt fails".to_owned())
    } else {
        Ok(ctx.attempt())
    }
}

#[test]
fn a_retry_follows_a_first_attempt_that_ran_inline() {
    // The first run teaches the engine that the body is short (it runs on the blocking pool);
    // in the later runs the first attempt runs inline on the scheduler, and the retry after it
    // continues asynchronously.
    let engine = WorkflowEngine::new();
    for _ in 0..3 {
        let report = engine
            .run(&workflow! { inline_flaky; }, RunOptions::new())
            .unwrap();
        assert_eq!(report.result::<u32>("inline_flaky").unwrap(), 2);
        assert_eq!(report.task("inline_flaky").unwrap().attempts, 2);
    }
}
