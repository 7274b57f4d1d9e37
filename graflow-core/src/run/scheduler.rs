//! The scheduler: runs every node once, after all its predecessors succeeded, as many at once as
//! the concurrency limit allows.
//!
//! The hot path is one loop over a ready queue, inside the future the caller awaits: no task is
//! spawned per node and no lock is held while a body runs. A node whose future completes on its
//! first poll (a short synchronous body on the direct handler) never leaves the loop; one that
//! waits (I/O, a timer, a body sent to the blocking pool) joins a `FuturesUnordered` and is
//! polled from the same loop. Per node that is O(1): decrement the in-degree of its successors.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, Stream};

use super::{ExecutionContext, RunShared, TaskHandler};
use crate::definition::{AttemptError, BoxFuture, Chain, panic_message};
use crate::graph::Task;
use crate::report::{Record, TaskStatus};
use crate::value::Value;

/// How many nodes the loop handles before it yields to the runtime once.
const BUDGET: u32 = 256;

/// A handler as the scheduler uses it: one per distinct handler name of the workflow.
pub(crate) struct Slot {
    pub handler: Arc<dyn TaskHandler>,
    /// The built-in direct handler: short synchronous bodies run inline, without a future.
    pub direct: bool,
    /// How many of its tasks may be in flight at once.
    pub limit: usize,
}

/// The end of one node, after its retries.
struct NodeDone {
    node: u32,
    attempts: u32,
    start: Instant,
    end: Instant,
    result: Result<(), AttemptError>,
}

/// The first failure of a run.
pub(crate) struct Failure {
    pub node: u32,
    pub attempts: u32,
    pub error: AttemptError,
}

struct Scheduler {
    shared: Arc<RunShared>,
    handlers: Arc<[Slot]>,
    /// Per handler: its tasks in flight, and its ready tasks held back by its limit.
    running: Vec<usize>,
    held: Vec<VecDeque<u32>>,
    indegree: Vec<u32>,
    ready: VecDeque<u32>,
    inflight: FuturesUnordered<BoxFuture<'static, NodeDone>>,
    records: Vec<Record>,
    failure: Option<Failure>,
    max_concurrency: usize,
    run_start: Instant,
}

/// Runs the workflow of `shared` to completion or first failure.
pub(crate) async fn run(
    shared: Arc<RunShared>,
    handlers: Arc<[Slot]>,
    max_concurrency: usize,
    run_start: Instant,
) -> (Vec<Record>, Option<Failure>) {
    let graph = shared.graph.clone();
    let n = graph.len();
    let mut scheduler = Scheduler {
        running: vec![0; handlers.len()],
        held: (0..handlers.len()).map(|_| VecDeque::new()).collect(),
        handlers,
        indegree: (0..n as u32).map(|i| graph.preds(i).len() as u32).collect(),
        ready: graph.roots.iter().copied().collect(),
        inflight: FuturesUnordered::new(),
        records: vec![Record::SKIPPED; n],
        failure: None,
        max_concurrency: max_concurrency.max(1),
        run_start,
        shared,
    };
    std::future::poll_fn(|cx| scheduler.poll(cx)).await;
    // Whatever is still in flight is cancelled by dropping it.
    drop(std::mem::take(&mut scheduler.inflight));
    (scheduler.records, scheduler.failure)
}

impl Scheduler {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut budget = BUDGET;
        loop {
            while self.failure.is_none() && self.inflight.len() < self.max_concurrency {
                let Some(node) = self.ready.pop_front() else {
                    break;
                };
                let h = self.shared.graph.node_handler[node as usize] as usize;
                if self.running[h] >= self.handlers[h].limit {
                    self.held[h].push_back(node);
                    continue;
                }
                self.running[h] += 1;
                // Provisional: a node still marked so when the run stops was running, and is
                // reported as cancelled; `complete` overwrites it.
                self.records[node as usize].status = TaskStatus::Cancelled;
                let future = match try_now(&self.shared, &self.handlers[h], node) {
                    // Its handler ran it at once (a short synchronous body on "direct").
                    Some(Ok(done)) => {
                        self.complete(done);
                        None
                    }
                    // That first attempt failed and may be retried: continue asynchronously.
                    Some(Err((start, error))) => Some(Box::pin(run_node(
                        self.shared.clone(),
                        self.handlers.clone(),
                        node,
                        start,
                        Some(error),
                    ))
                        as BoxFuture<'static, NodeDone>),
                    None => Some(Box::pin(run_node(
                        self.shared.clone(),
                        self.handlers.clone(),
                        node,
                        Instant::now(),
                        None,
                    )) as BoxFuture<'static, NodeDone>),
                };
                if let Some(mut future) = future {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(done) => {
                            // Completed on its first poll: a synchronous body ran inline.
                            self.shared
                                .task(node)
                                .record_inline_run(done.end.saturating_duration_since(done.start));
                            self.complete(done)
                        }
                        Poll::Pending => self.inflight.push(future),
                    }
                }
                budget -= 1;
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if self.failure.is_some() {
                return Poll::Ready(());
            }
            match Pin::new(&mut self.inflight).poll_next(cx) {
                Poll::Ready(Some(done)) => {
                    self.complete(done);
                    budget -= 1;
                    if budget == 0 {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(None) if self.ready.is_empty() => return Poll::Ready(()),
                Poll::Ready(None) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn complete(&mut self, done: NodeDone) {
        let node = done.node;
        let h = self.shared.graph.node_handler[node as usize] as usize;
        self.running[h] -= 1;
        if let Some(next) = self.held[h].pop_front() {
            self.ready.push_front(next);
        }
        let record = &mut self.records[node as usize];
        record.attempts = done.attempts;
        record.start = Some(done.start.saturating_duration_since(self.run_start));
        record.duration = Some(done.end.saturating_duration_since(done.start));
        match done.result {
            Ok(()) => {
                record.status = TaskStatus::Succeeded;
                let graph = &self.shared.graph;
                for &next in graph.succs(node) {
                    let pending = &mut self.indegree[next as usize];
                    *pending -= 1;
                    if *pending == 0 {
                        self.ready.push_back(next);
                    }
                }
            }
            Err(error) => {
                record.status = TaskStatus::Failed;
                record.error = Some(Chain(&error).to_string().into_boxed_str());
                if self.failure.is_none() {
                    tracing::error!(
                        target: "graflow::engine",
                        task = %self.shared.task(node).id(),
                        attempts = done.attempts,
                        error = %Chain(&error),
                        "task failed; stopping the run"
                    );
                    self.failure = Some(Failure {
                        node,
                        attempts: done.attempts,
                        error,
                    });
                }
            }
        }
    }
}

/// The first attempt through the handler's `try_execute_now`, when it takes it: `Ok` with the
/// node's end, or `Err` with the start and error when a retry is due. `None`: await instead.
#[allow(clippy::result_large_err)]
fn try_now(
    shared: &Arc<RunShared>,
    slot: &Slot,
    node: u32,
) -> Option<Result<NodeDone, (Instant, AttemptError)>> {
    let task = shared.task(node);
    if !slot.direct || task.timeout().is_some() {
        return None;
    }
    let ctx = ExecutionContext::new(shared.clone(), node, 1);
    let start = Instant::now();
    // (A body's panic is caught inside; nothing else here can panic.)
    let result = task
        .try_run_now(&ctx)?
        .map(|output| store(shared, node, output));
    let end = Instant::now();
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
    match result {
        Err(error) if task.retry_policy().max_attempts() > 1 && error.is_retryable() => {
            Some(Err((start, error)))
        }
        result => Some(Ok(NodeDone {
            node,
            attempts: 1,
            start,
            end,
            result,
        })),
    }
}

fn log_retry(task: &Task, attempt: u32, error: &AttemptError, delay: std::time::Duration) {
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

/// Runs the attempts of one node, with backoff between them. `failed_first` is the error of
/// a first attempt already made (by `try_now`): this then starts with the retry.
async fn run_node(
    shared: Arc<RunShared>,
    handlers: Arc<[Slot]>,
    node: u32,
    start: Instant,
    failed_first: Option<AttemptError>,
) -> NodeDone {
    let task = shared.task(node);
    let handler = &handlers[shared.graph.node_handler[node as usize] as usize].handler;
    let policy = *task.retry_policy();
    let mut attempt = 1;
    let mut failed = failed_first;
    let result = loop {
        if let Some(error) = failed.take() {
            let delay = policy.delay_after(attempt);
            log_retry(task, attempt, &error, delay);
            shared.clear_result(node);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
        let ctx = ExecutionContext::new(shared.clone(), node, attempt);
        let attempt_start = if attempt == 1 { start } else { Instant::now() };
        let result = attempt_once(handler.as_ref(), task, &ctx)
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
        match result {
            Ok(()) => break Ok(()),
            Err(error) if attempt < policy.max_attempts() && error.is_retryable() => {
                failed = Some(error)
            }
            Err(error) => break Err(error),
        }
    };
    NodeDone {
        node,
        attempts: attempt,
        start,
        end: Instant::now(),
        result,
    }
}

/// Stores a checked output as the node's result.
fn store(shared: &RunShared, node: u32, output: Value) {
    shared.store_result(node, output);
}

/// `Ok` if `output` has the type of the task function's output, as a handler must return.
fn checked(task: &Task, output: Value) -> Result<Value, AttemptError> {
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

fn handler_panicked(task: &Task, payload: &(dyn std::any::Any + Send)) -> AttemptError {
    AttemptError::handler(
        task.id(),
        task.handler(),
        format!("the handler panicked: {}", panic_message(payload)),
    )
}

/// One attempt: the handler, under the task's timeout, with panics caught, and the check that
/// the handler's output has the task's output type.
async fn attempt_once(
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
        Some(limit) => match tokio::time::timeout(limit, execution).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(AttemptError::TimedOut {
                    task: task.id().to_owned(),
                    handler: task.handler().to_owned(),
                    timeout: limit,
                });
            }
        },
        None => execution.await,
    };
    match outcome {
        Ok(result) => result.and_then(|output| checked(task, output)),
        Err(payload) => Err(handler_panicked(task, &*payload)),
    }
}
