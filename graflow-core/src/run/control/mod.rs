//! Dynamic control: what a running task may ask of its run, through its [`TaskContext`]:
//! add tasks ([`TaskContext::next_task`]), jump to a task ([`TaskContext::goto`]), run itself
//! again ([`TaskContext::next_iteration`]), end the run early ([`TaskContext::terminate`],
//! [`TaskContext::cancel`]) and ask for a checkpoint ([`TaskContext::checkpoint`]).
//!
//! A request is validated when it is made (in this process) or when the attempt's outcome
//! arrives (out of process: the runner records requests and sends them back; see
//! [`ExecutionContext::apply_control`]), and the scheduler applies the requests of an attempt
//! once it has ended: nothing a failed attempt asked for happens, except a cancel.
//!
//! The run's graph grows here: nodes added while running live in an append-only list after
//! the workflow's own, with the edges they bring. A run that asks for nothing pays one relaxed
//! atomic load per completed task.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use rustc_hash::FxHashMap as HashMap;

use graflow_protocol::{Control, EncodedValue};

mod dynamic;
mod record;
mod task_api;

pub(crate) use dynamic::{Dynamic, HandlerLookup};
use task_api::{execution, outside};

use super::handler::Slot;
use super::{ExecutionContext, RunShared};
use crate::definition::{AttemptError, TaskContext, definitions};
use crate::graph::{NodeOptions, Problem, Source, Task};
use crate::value::{Data, Value, ValueError};

/// Why a task's request to its run was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A task added with [`TaskContext::next_task`] failed validation.
    #[error("task '{task}' cannot add task '{added}' to the run ({} problem(s)):{}", problems.len(), Bullets(problems))]
    Invalid {
        /// The asking task.
        task: String,
        /// The id of the task it tried to add.
        added: String,
        /// What is wrong with it.
        problems: Vec<Problem>,
    },

    /// [`TaskContext::goto`] named a task the run does not have.
    #[error(
        "task '{task}' asked to go to task '{target}', which this run does not have; name a task of the workflow, or add a new one with ctx.next_task(...)"
    )]
    NoSuchTask {
        /// The asking task.
        task: String,
        /// The id it named.
        target: String,
    },

    /// Requests of one attempt that contradict each other.
    #[error("task '{task}' made conflicting requests: {message}")]
    Conflict {
        /// The asking task.
        task: String,
        /// What conflicts.
        message: String,
    },

    /// A task asked to run again past its `max_cycles`.
    #[error(
        "task '{task}' has run {runs} time(s), its max_cycles; raise it with #[task(max_cycles = N)] or Task::with_max_cycles, or stop iterating when ctx.cycle() reaches ctx.max_cycles()"
    )]
    CycleLimit {
        /// The task that would run again.
        task: String,
        /// How many times it ran.
        runs: u32,
    },

    /// A task asked to go to a task that has used up its `max_cycles`: the asking task fails
    /// (not retried), and the message names the target and its limit.
    #[error(
        "task '{task}' asked to go to task '{target}', which has run {runs} time(s), its max_cycles ({max_cycles}); raise the target's limit with #[task(max_cycles = N)] or Task::with_max_cycles, or stop going back to it"
    )]
    GotoCycleLimit {
        /// The asking task.
        task: String,
        /// The task it asked to go to.
        target: String,
        /// How many times the target ran.
        runs: u32,
        /// The target's limit.
        max_cycles: u32,
    },

    /// [`TaskContext::checkpoint`] in a run that writes no checkpoints.
    #[error(
        "task '{task}' asked for a checkpoint, but this run writes none; run it with RunOptions::new().checkpoint(path)"
    )]
    NoCheckpoints {
        /// The asking task.
        task: String,
    },

    /// A runner asked to add a task on another handler or configuration than its own.
    #[error(
        "task '{task}' (handler '{handler}') asked from out of process to add task '{added}' on {wanted}; a task added by a runner runs on the asking task's handler with its configuration (a runner must not be able to start work where it could not run itself, e.g. a sandboxed container adding a task on \"direct\"): leave the added task's handler and configuration at its function's defaults, or add it from a task that runs in this process"
    )]
    Untrusted {
        /// The asking task.
        task: String,
        /// Its handler.
        handler: String,
        /// The task it tried to add.
        added: String,
        /// What it asked for.
        wanted: String,
    },

    /// A request that arrived from a runner could not be read.
    #[error("task '{task}' sent a request its run cannot read: {message}")]
    Unreadable {
        /// The asking task.
        task: String,
        /// What is wrong with it.
        message: String,
    },
}

struct Bullets<'a>(&'a [Problem]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// How a task ends its run early.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// As a success: nothing new starts; what runs finishes.
    Terminate(String),
    /// As a failure.
    Cancel(String),
}

/// A task added by a running task, validated.
pub(crate) struct Added {
    pub task: Task,
    /// Where each parameter comes from (decided when it was added).
    pub sources: Vec<Source>,
    /// Its handler (`None` in a runner, which cannot know the engine's handlers).
    pub slot: Option<Slot>,
    /// Whether it replaces the asking task's successors.
    pub goto: bool,
}

/// Which attempt of which run of a node asked: (cycle, attempt).
pub(crate) type Stamp = (u32, u32);

/// What one attempt of one node asked for, in the order it asked.
#[derive(Default)]
pub(crate) struct Requests {
    /// The attempt that asked: a body still running after its attempt was given up (a timed-out
    /// synchronous body) cannot add to a later attempt's requests.
    pub stamp: Stamp,
    pub added: Vec<Added>,
    /// The ids of `added`.
    pub added_ids: rustc_hash::FxHashSet<String>,
    pub goto: Option<String>,
    pub iterate: Option<Vec<(String, Value)>>,
    pub end: Option<End>,
    pub checkpoint: bool,
    /// The attempt's channel writes, in order (`None`: a deletion): the run's channel takes
    /// them when the attempt succeeds.
    pub channel: Vec<(String, Option<Value>)>,
}

/// A node added while the run runs.
pub(crate) struct DynNode {
    pub task: Task,
    pub slot: u32,
    pub sources: Vec<Source>,
    pub result: Mutex<Option<Value>>,
}

/// The next iteration of a task, being described: see [`TaskContext::next_iteration`].
#[must_use = "call .with(name, value) and then .request() to ask for the iteration"]
pub struct Iteration<'a> {
    ctx: &'a TaskContext,
    inputs: Vec<(String, Value)>,
}

impl fmt::Debug for Iteration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iteration")
            .field("task", &self.ctx.task_id())
            .field("inputs", &self.inputs)
            .finish()
    }
}

impl Iteration<'_> {
    /// Binds parameter `name` to `value` for the next run.
    pub fn with<T: Data + Clone>(mut self, name: impl Into<String>, value: T) -> Self {
        self.inputs.push((name.into(), Value::new(value)));
        self
    }

    /// Asks for the iteration.
    pub fn request(self) -> Result<(), ControlError> {
        execution(self.ctx)
            .ok_or_else(|| outside(self.ctx))?
            .next_iteration(self.inputs)
    }
}

/// A handler failure for a request that cannot be applied.
pub(crate) fn refused(task: &Task, error: ControlError) -> AttemptError {
    AttemptError::Control {
        task: task.id().to_owned(),
        source: Box::new(error),
    }
}
