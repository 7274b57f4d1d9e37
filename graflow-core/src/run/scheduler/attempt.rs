//! One attempt of one node: started (inline when it completes on its first poll), timed, its panic caught, its output checked and stored.

use super::{
    Arc, AssertUnwindSafe, AttemptError, Chain, ControlError, EventKind, ExecutionContext,
    FutureExt, Instant, Instrument, NodeDone, RunShared, Slot, Task, TaskHandler, Value,
    panic_message, refused,
};

pub(super) fn cycle_limit(task: &Task, runs: u32) -> AttemptError {
    refused(
        task,
        ControlError::CycleLimit {
            task: task.id().to_owned(),
            runs,
        },
    )
}

/// The first attempt through the handler's `try_execute_now`, when it takes it: `Ok` with the
/// node's end, or `Err` with the start and error when a retry is due. `None`: await instead.
pub(super) fn try_now(
    shared: &Arc<RunShared>,
    slot: &Slot,
    node: u32,
    cycle: u32,
) -> Option<NodeDone> {
    let task = shared.task(node);
    if !slot.direct || task.timeout().is_some() {
        return None;
    }
    let body = task.inline_body()?;
    let ctx = ExecutionContext::new(shared.clone(), node, 1, cycle).no_wait();
    let span = attempt_span(task, 1);
    let entered = span.enter();
    shared.task_event(node, 1, || EventKind::TaskStarted);
    let start = Instant::now();
    // (A body's panic is caught inside; nothing else here can panic.)
    let result = task
        .run_inline(body, &ctx)
        .map(|output| store(shared, node, output));
    let end = Instant::now();
    drop(entered);
    if shared.desk.take_rerun(node) {
        // It asked a person: what it did is discarded, and it runs again where it may wait.
        shared.dynamic.take(node, (cycle, 1));
        shared.clear_result(node);
        return None;
    }
    task.record_inline_run(end.saturating_duration_since(start));
    tracing::debug!(
        target: "graflow::handlers",
        task = %task.id(),
        handler = %task.handler(),
        attempt = 1,
        elapsed_us = end.saturating_duration_since(start).as_micros() as u64,
        ok = result.is_ok(),
        inline = true,
        "attempt finished"
    );
    Some(attempt_done(shared, node, cycle, 1, start, end, result))
}

/// The end of attempt `attempt` of `node`: to retry after a backoff when it failed, may be
/// retried and attempts are left (what it asked for is dropped then), else final.
pub(super) fn attempt_done(
    shared: &RunShared,
    node: u32,
    cycle: u32,
    attempt: u32,
    start: Instant,
    end: Instant,
    result: Result<(), AttemptError>,
) -> NodeDone {
    let task = shared.task(node);
    let policy = task.retry_policy();
    let backoff = match &result {
        Err(error)
            if attempt < policy.max_attempts()
                && error.is_retryable()
                && !shared.dynamic.cancels(node, (cycle, attempt))
                && !shared.desk.stops(node) =>
        {
            // What the failed attempt asked for is dropped.
            shared.dynamic.take(node, (cycle, attempt));
            let delay = policy.delay_after(attempt);
            log_retry(task, attempt, error, delay);
            shared.task_event(node, attempt, || EventKind::TaskRetrying {
                error: Chain(error).to_string(),
                kind: error.kind(),
                delay,
            });
            shared.clear_result(node);
            Some(delay)
        }
        _ => None,
    };
    NodeDone {
        node,
        attempts: attempt,
        start,
        end,
        result,
        backoff,
    }
}

/// Waits out a retry's backoff; says which node may retry now. Dropped when the run stops:
/// observers then hear that the task was cancelled.
pub(super) async fn backoff(
    shared: Arc<RunShared>,
    node: u32,
    attempt: u32,
    delay: std::time::Duration,
) -> u32 {
    let mut guard = CancelGuard {
        shared: &shared,
        node,
        attempt,
        armed: shared.is_watched(),
    };
    tokio::time::sleep(delay).await;
    guard.armed = false;
    node
}

/// The span of one attempt, a child of the run's: what `tracing-opentelemetry` exports as the
/// attempt's span (named after the task), with the task, its handler and the attempt as fields
/// (the attempt as an `i64`: exporters record unsigned integers as text).
#[inline]
pub(super) fn attempt_span(task: &Task, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        target: "graflow::engine",
        "task",
        task = %task.id(),
        handler = %task.handler(),
        attempt = i64::from(attempt),
        otel.name = %task.id(),
    )
}

/// Tells observers that a task was cancelled when its future is dropped before it ended (the
/// run stopped during an attempt or a backoff wait, with the attempt it was at); disarmed when
/// the task ends. Armed only when the run is observed.
struct CancelGuard<'a> {
    shared: &'a RunShared,
    node: u32,
    attempt: u32,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .task_event(self.node, self.attempt, || EventKind::TaskCancelled);
        }
    }
}

pub(super) fn log_retry(
    task: &Task,
    attempt: u32,
    error: &AttemptError,
    delay: std::time::Duration,
) {
    tracing::warn!(
        target: "graflow::engine",
        task = %task.id(),
        handler = %task.handler(),
        attempt,
        retry_in_ms = delay.as_millis() as u64,
        error = %Chain(error),
        "attempt failed; retrying"
    );
}

/// Runs attempt `attempt` of one node (its first started at `start`).
pub(super) async fn run_node(
    shared: Arc<RunShared>,
    handler: Arc<dyn TaskHandler>,
    node: u32,
    cycle: u32,
    attempt: u32,
    start: Instant,
) -> NodeDone {
    let task = shared.task(node);
    let mut guard = CancelGuard {
        shared: &shared,
        node,
        attempt,
        armed: shared.is_watched(),
    };
    let mut ctx = ExecutionContext::new(shared.clone(), node, attempt, cycle);
    if task.timeout().is_some() {
        ctx = ctx.with_timeout_clock();
    }
    let attempt_start = if attempt == 1 { start } else { Instant::now() };
    shared.task_event(node, attempt, || EventKind::TaskStarted);
    let result = attempt_once(handler.as_ref(), task, &ctx)
        .instrument(attempt_span(task, attempt))
        .await
        .map(|output| store(&shared, node, output));
    // (Fields are evaluated only when the event is enabled: no clock read otherwise.)
    tracing::debug!(
        target: "graflow::handlers",
        task = %task.id(),
        handler = %task.handler(),
        attempt,
        elapsed_us = attempt_start.elapsed().as_micros() as u64,
        ok = result.is_ok(),
        "attempt finished"
    );
    guard.armed = false;
    attempt_done(&shared, node, cycle, attempt, start, Instant::now(), result)
}

/// Stores a checked output as the node's result.
pub(super) fn store(shared: &RunShared, node: u32, output: Value) {
    shared.store_result(node, output);
}

/// `Ok` if `output` has the type of the task function's output, as a handler must return.
pub(super) fn checked(task: &Task, output: Value) -> Result<Value, AttemptError> {
    let expected = task.def.output;
    if output.matches(expected) {
        Ok(output)
    } else {
        Err(AttemptError::WrongOutput {
            task: task.id().to_owned(),
            handler: task.handler().to_owned(),
            expected: expected.name(),
            found: output.type_name().to_owned(),
        })
    }
}

pub(super) fn handler_panicked(task: &Task, payload: &(dyn std::any::Any + Send)) -> AttemptError {
    AttemptError::handler(
        task.id(),
        task.handler(),
        format!("the handler panicked: {}", panic_message(payload)),
    )
}

/// Ends when the task has run for `limit`, not counting the time the clock was paused (the
/// attempt waited for capacity: see [`ExecutionContext::pause_timeout`]).
pub(super) async fn deadline(
    limit: std::time::Duration,
    clock: Option<tokio::sync::watch::Receiver<u32>>,
) {
    let Some(mut paused) = clock else {
        return tokio::time::sleep(limit).await;
    };
    let mut left = limit;
    loop {
        while *paused.borrow_and_update() > 0 {
            if paused.changed().await.is_err() {
                // The context is gone: nothing can pause it any more.
                break;
            }
        }
        let running = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(left) => return,
            changed = paused.changed() => {
                left = left.saturating_sub(running.elapsed());
                if changed.is_err() {
                    return tokio::time::sleep(left).await;
                }
            }
        }
    }
}

/// One attempt: the handler, under the task's timeout, with panics caught, and the check that
/// the handler's output has the task's output type.
pub(super) async fn attempt_once(
    handler: &dyn TaskHandler,
    task: &Task,
    ctx: &ExecutionContext,
) -> Result<Value, AttemptError> {
    // A hand-written impl may panic before it even returns its future.
    let future =
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.execute_task(task, ctx))) {
            Ok(future) => future,
            Err(payload) => return Err(handler_panicked(task, &*payload)),
        };
    let execution = AssertUnwindSafe(future).catch_unwind();
    let outcome = match task.timeout() {
        Some(limit) => {
            tokio::select! {
                biased;
                outcome = execution => outcome,
                () = deadline(limit, ctx.timeout_clock()) => {
                    return Err(AttemptError::TimedOut {
                        task: task.id().to_owned(),
                        handler: task.handler().to_owned(),
                        timeout: limit,
                    });
                }
            }
        }
        None => execution.await,
    };
    match outcome {
        Ok(result) => result.and_then(|output| checked(task, output)),
        Err(payload) => Err(handler_panicked(task, &*payload)),
    }
}
