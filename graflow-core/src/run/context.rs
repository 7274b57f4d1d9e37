//! [`ExecutionContext`]: what a handler sees of a run while it executes one attempt of one task.
//! It also gives the task body its [`TaskContext`] view.

use std::sync::Arc;

use super::RunShared;
use super::feedback::{Waited, Waiter, wait};
use crate::channel::Channel;
use crate::definition::{AttemptError, TaskContext};
use crate::feedback::{AnswerFuture, FeedbackError, FeedbackRequest};
use crate::graph::Task;
use crate::value::{Data, Value, ValueError};

/// What a handler sees of the run while it executes one attempt of one task.
#[derive(Clone)]
pub struct ExecutionContext {
    pub(crate) run: Arc<RunShared>,
    pub(crate) node: u32,
    pub(super) attempt: u32,
    pub(super) cycle: u32,
    /// How many waits for capacity pause the task's timeout now (with a timeout only).
    clock: Option<Arc<tokio::sync::watch::Sender<u32>>>,
    /// How many questions the body asked through this context (their keys: see
    /// [`FeedbackAsk::key`](crate::feedback::FeedbackAsk::key)); a body asks through one
    /// context, so no allocation is shared for it.
    asks: AskCount,
    /// The body runs inline, on the scheduler's thread, or in the CPU queue, holding one of
    /// its slots: neither may wait for a person.
    no_wait: bool,
}

/// How many questions a body asked through a context (a clone starts from the same count).
#[derive(Default)]
struct AskCount(std::sync::atomic::AtomicU32);

impl Clone for AskCount {
    fn clone(&self) -> Self {
        AskCount(std::sync::atomic::AtomicU32::new(
            self.0.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}

/// Pauses the task's timeout while it lives: see [`ExecutionContext::pause_timeout`].
#[derive(Debug)]
#[must_use = "the timeout is paused only while this lives"]
pub struct TimeoutPause {
    clock: Option<Arc<tokio::sync::watch::Sender<u32>>>,
}

impl Drop for TimeoutPause {
    fn drop(&mut self) {
        if let Some(clock) = &self.clock {
            clock.send_modify(|paused| *paused = paused.saturating_sub(1));
        }
    }
}

impl ExecutionContext {
    pub(crate) fn new(run: Arc<RunShared>, node: u32, attempt: u32, cycle: u32) -> Self {
        ExecutionContext {
            run,
            node,
            attempt,
            cycle,
            clock: None,
            asks: AskCount::default(),
            no_wait: false,
        }
    }

    /// This context for a body that must not wait: run inline on the scheduler's thread, or
    /// in the CPU queue.
    pub(crate) fn no_wait(mut self) -> Self {
        self.no_wait = true;
        // Its questions are not asked (the attempt runs again): they count on their own.
        self.asks = AskCount::default();
        self
    }

    /// This context with a timeout clock that waits for capacity can pause.
    pub(crate) fn with_timeout_clock(mut self) -> Self {
        self.clock = Some(Arc::new(tokio::sync::watch::Sender::new(0)));
        self
    }

    /// Whether the timeout clock is paused now, and its changes (`None` without a timeout).
    pub(crate) fn timeout_clock(&self) -> Option<tokio::sync::watch::Receiver<u32>> {
        self.clock.as_ref().map(|clock| clock.subscribe())
    }

    /// Pauses the task's timeout until the returned guard is dropped: for a handler that
    /// waits for capacity (a free warm runner, a place in a queue) before the task can start.
    /// A timeout limits the task's own execution, not the time it waited for room; the
    /// engine's own waits (its CPU queue, its runner pools) pause it this way. Without a
    /// timeout it does nothing.
    pub fn pause_timeout(&self) -> TimeoutPause {
        if let Some(clock) = &self.clock {
            clock.send_modify(|paused| *paused += 1);
        }
        TimeoutPause {
            clock: self.clock.clone(),
        }
    }

    /// The key of this attempt's next question: its run (cycle), then the order it asked in.
    pub(crate) fn next_ask_key(&self) -> String {
        let n = self
            .asks
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}.{n}", self.cycle)
    }

    /// Asks a person, on behalf of this attempt's task, question `key` of the attempt (see
    /// [`FeedbackAsk::key`](crate::feedback::FeedbackAsk::key)): how a handler forwards what its
    /// runner or worker asked. The engine keeps the request in its run store and waits for the
    /// answer, at most the request's timeout, the task's own timeout paused meanwhile; when
    /// nobody answered, the task stops waiting ([`FeedbackError::TimedOut`]) and its run ends
    /// as waiting once nothing else can run. In a runner or a worker the question goes to its
    /// engine.
    pub fn ask_for_task(&self, key: &str, request: FeedbackRequest) -> AnswerFuture {
        let task = self.task_id().to_owned();
        if let Err(message) = request.validate() {
            return Box::pin(std::future::ready(Err(FeedbackError::Invalid {
                task,
                message,
            })));
        }
        if self.no_wait {
            // Neither the scheduler's thread nor a slot of the CPU queue may wait: the attempt
            // is run again on a thread of its own (what it did is discarded), and so is every
            // later run of the body.
            self.run.task(self.node).def.stats.set_asks();
            self.run.desk.rerun(self.node);
            return Box::pin(std::future::ready(Err(FeedbackError::Unavailable {
                task,
                reason: "asked from a thread that must not wait; the attempt runs again on a thread of its own".to_owned(),
            })));
        }
        if let Some(asker) = self.run.asker.get() {
            return asker.ask(&task, key, request);
        }
        let Some(record) = self.run.record.get().cloned() else {
            return Box::pin(std::future::ready(Err(FeedbackError::Unavailable {
                task,
                reason: "this run is recorded nowhere, and a request must be kept where a person can answer it: run it with graflow's run store (GRAFLOW_STORE unset, a sqlite: path or a postgres:// URL; not off), or from WorkflowEngine::execute/run rather than outside a run".to_owned(),
            })));
        };
        let ctx = self.clone();
        let key = key.to_owned();
        Box::pin(async move {
            let _paused = ctx.pause_timeout();
            let waiter = Waiter {
                record,
                desk: &ctx.run.desk,
                run_id: &ctx.run.run_id,
                task: &task,
                key: &key,
            };
            match wait(waiter, &request, || ctx.run.desk.began_waiting()).await {
                Waited::Done(answer) => answer,
                Waited::TimedOut(waiting, error) => {
                    tracing::warn!(target: "graflow::engine", task = %task, request = %waiting.request_id, "nobody answered in time; the task stops and its run will wait");
                    ctx.run.desk.suspend(ctx.node, waiting);
                    Err(error)
                }
                Waited::Cancelled(error) => {
                    ctx.run.desk.stop(ctx.node);
                    Err(error)
                }
            }
        })
    }

    /// Records where this attempt runs (a worker, a container id, a pid): the run report shows
    /// it as the task's [`TaskRecord::runner`](crate::TaskRecord::runner); the last attempt's
    /// description wins. Out-of-process handlers call it once they know.
    pub fn set_runner(&self, description: impl Into<String>) {
        let description: Box<str> = description.into().into_boxed_str();
        self.run.task_event(self.node, self.attempt, || {
            crate::observe::EventKind::TaskRunner {
                runner: description.to_string(),
            }
        });
        self.run
            .runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.node, description);
    }

    /// Whether anyone observes the run's events ([`RunObserver`](crate::RunObserver)) or
    /// records them (a run store): a handler that would do extra work to report them (split
    /// output into lines) can skip it when nobody does.
    pub fn is_observed(&self) -> bool {
        self.run.is_watched()
    }

    /// Reports one line the attempt's runner printed (a child process's, a container's, a
    /// remote worker's output) to the run's observers, as [`EventKind::Log`](crate::observe::EventKind::Log).
    /// Handlers built on [`backend`](crate::backend) get this for free; a custom handler that
    /// captures output calls it per line (logging the line through `tracing` is its own
    /// business).
    pub fn runner_output(&self, line: &str) {
        self.run
            .task_event(self.node, self.attempt, || crate::observe::EventKind::Log {
                line: line.to_owned(),
            });
    }

    /// The task this context executes.
    pub fn task(&self) -> &Task {
        self.run.task(self.node)
    }

    /// The run's id (also in every log line of the run).
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// The workflow's name.
    pub fn workflow_name(&self) -> &str {
        self.run.workflow.name()
    }

    /// The id of the task being executed.
    pub fn task_id(&self) -> &str {
        self.run.task(self.node).id()
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Which run of this task this is, from 1 (iterations and gotos run a task again).
    pub fn cycle(&self) -> u32 {
        self.cycle
    }

    /// The run's channel.
    pub fn channel(&self) -> &Channel {
        &self.run.channel
    }

    /// A copy of the result of task `id`.
    pub fn get_result<T: Data>(&self, id: &str) -> Result<T, ValueError> {
        let node = self.run.node_of(id)?;
        self.run.copy_result(node)
    }

    /// The type-erased result of task `id`, if it has one.
    pub fn result_value(&self, id: &str) -> Option<Value> {
        self.run.index_of(id).and_then(|n| self.run.result_value(n))
    }

    /// The direct upstream results, type-erased, for a handler sending this task elsewhere.
    pub(crate) fn upstream_values(&self) -> Vec<(String, Value)> {
        let run = &self.run;
        run.preds(self.node)
            .iter()
            .filter_map(|&p| Some((run.task(p).id().to_owned(), run.result_value(p)?)))
            .collect()
    }

    /// The context the task body sees; `task` must be the task this context executes.
    pub(crate) fn task_context(&self, task: &Task) -> Result<&TaskContext, AttemptError> {
        let own = self.run.task(self.node);
        if !std::ptr::eq(own, task) && own.id() != task.id() {
            return Err(AttemptError::handler(
                task.id(),
                own.handler(),
                format!(
                    "task.run() was given the context of task '{}'; pass the ExecutionContext the engine gave for this task",
                    own.id()
                ),
            ));
        }
        Ok(TaskContext::new(self))
    }
}

impl std::fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("workflow", &self.workflow_name())
            .field("run_id", &self.run_id())
            .field("task", &self.task_id())
            .field("attempt", &self.attempt)
            .field("cycle", &self.cycle)
            .finish_non_exhaustive()
    }
}
