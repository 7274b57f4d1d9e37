//! The body-execution policy: where a task's body runs in this process.
//!
//! - An async body is polled on the scheduler's task, like any future.
//! - A synchronous body runs inline on the scheduler once it is known to be short (see
//!   [`BodyStats`]): no thread hop, no boxed future.
//! - Any other synchronous body runs on Tokio's blocking pool through the engine's CPU queue
//!   ([`CpuPool`](super::CpuPool)), at most the CPU limit at once: CPU-bound work is limited
//!   by the CPU count, waiting (async) work is not.
//!
//! Panics in a body are caught and become [`AttemptError::Panicked`].

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::ExecutionContext;
use crate::definition::{AttemptError, Body, BodyStats, TaskContext, panic_message};
use crate::graph::Task;
use crate::value::Value;

/// A synchronous body the scheduler may run on its own thread.
pub(crate) type InlineBody = fn(&TaskContext) -> Result<Value, AttemptError>;

impl Task {
    /// Runs the function in this process, with its inputs resolved from `ctx`, and returns its
    /// output. This is what the direct handler does; other handlers may wrap it.
    ///
    /// A panic in the body is caught and returned as [`AttemptError::Panicked`]. A synchronous
    /// body runs inline only once it is known to be short (see the README's *Scheduling*);
    /// otherwise it runs on Tokio's blocking pool, within the engine's CPU limit, so that it
    /// never holds up other tasks.
    pub async fn run(&self, ctx: &ExecutionContext) -> Result<Value, AttemptError> {
        let tctx = ctx.task_context(self)?;
        match self.def.body {
            Body::Async(body) => match AssertUnwindSafe(body(tctx)).catch_unwind().await {
                Ok(result) => result,
                Err(payload) => Err(self.panicked(&*payload)),
            },
            Body::Sync(body) => {
                if self.may_run_inline() {
                    return self.call_inline(body, tctx);
                }
                if !self.def.stats.asks() {
                    let result = self.run_in_cpu_queue(body, ctx).await;
                    if !ctx.run.desk.take_rerun(ctx.node) {
                        return result;
                    }
                    // It asked a person, holding a slot of the CPU queue: what it did is
                    // discarded, and it runs again where it may wait.
                    ctx.run.dynamic.take(ctx.node, ctx.stamp());
                }
                self.run_waiting(body, ctx).await
            }
        }
    }

    /// A synchronous body that asks a person: on a blocking thread of its own, outside the CPU
    /// limit (its wait holds no slot other bodies need).
    async fn run_waiting(
        &self,
        body: InlineBody,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let owned = ctx.clone();
        let span = tracing::Span::current();
        let done = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| body(TaskContext::new(&owned))))
        });
        self.joined(done.await.ok())
    }

    /// A synchronous body in the engine's CPU queue (at most the CPU limit at once).
    async fn run_in_cpu_queue(
        &self,
        body: InlineBody,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let stats = &self.def.stats;
        // A slot of the queue must not wait for a person (see `ask_for_task`).
        let owned = ctx.clone().no_wait();
        // The body's events belong to the span it was called in (the run's, a remote attempt's
        // on a worker), on the blocking thread too.
        let span = tracing::Span::current();
        // Waiting for a place in the CPU queue is not the task's time.
        let queued = ctx.pause_timeout();
        let done = ctx.run.cpu.run(move || {
            drop(queued);
            let _entered = span.enter();
            let started = Instant::now();
            let result =
                std::panic::catch_unwind(AssertUnwindSafe(|| body(TaskContext::new(&owned))));
            stats.record(started.elapsed());
            result
        });
        self.joined(done.await.ok())
    }

    /// What a body run on a blocking thread ended with: its result, its panic, or `None`: no
    /// thread ran it.
    fn joined(
        &self,
        done: Option<std::thread::Result<Result<Value, AttemptError>>>,
    ) -> Result<Value, AttemptError> {
        match done {
            Some(Ok(result)) => result,
            Some(Err(payload)) => Err(self.panicked(&*payload)),
            None => Err(AttemptError::handler(
                self.id(),
                self.handler(),
                "no thread ran the task's body: its runtime is shutting down, or no thread could be started (see the graflow::engine log)",
            )),
        }
    }

    /// The body, if it is synchronous and known to be short (see [`BodyStats`]): the
    /// scheduler's fast path for the direct handler runs it at once with [`Task::run_inline`].
    pub(crate) fn inline_body(&self) -> Option<InlineBody> {
        let Body::Sync(body) = self.def.body else {
            return None;
        };
        self.may_run_inline().then_some(body)
    }

    /// Runs `body` (from [`Task::inline_body`]) on this thread: what [`Task::run`] does in that
    /// case, without a future.
    pub(crate) fn run_inline(
        &self,
        body: InlineBody,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        ctx.task_context(self)
            .and_then(|tctx| self.call_inline(body, tctx))
    }

    /// Timed by the scheduler, which reports slow inline runs to the stats.
    fn call_inline(&self, body: InlineBody, tctx: &TaskContext) -> Result<Value, AttemptError> {
        std::panic::catch_unwind(AssertUnwindSafe(|| body(tctx)))
            .unwrap_or_else(|payload| Err(self.panicked(&*payload)))
    }

    /// Whether a synchronous body may run on the caller's thread (see [`BodyStats`]).
    fn may_run_inline(&self) -> bool {
        !self.def.blocking && self.timeout().is_none() && self.def.stats.inline_ok()
    }

    /// Called by the scheduler with the duration of a node that completed on its first poll:
    /// its body (if synchronous) ran inline for about that long.
    pub(crate) fn record_inline_run(&self, elapsed: Duration) {
        if matches!(self.def.body, Body::Sync(_)) && elapsed > BodyStats::INLINE_LIMIT {
            self.def.stats.record(elapsed);
        }
    }

    fn panicked(&self, payload: &(dyn std::any::Any + Send)) -> AttemptError {
        AttemptError::Panicked {
            task: self.id().to_owned(),
            message: panic_message(payload),
        }
    }
}
