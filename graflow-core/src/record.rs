//! A durable record of runs: the interface a run store implements ([`RunRecorder`]), what the
//! engine hands it ([`RunInfo`], [`RecordedEvent`]), and the link-time registration of the
//! program's default recorder ([`register_recorder!`](crate::register_recorder)).
//!
//! The core knows no store: `graflow-store` implements these traits and registers itself, so
//! that every engine a program makes records its runs (unless it is told otherwise:
//! [`WorkflowEngine::set_recorder`](crate::WorkflowEngine::set_recorder)).
//!
//! Unlike a [`RunObserver`](crate::RunObserver), a recorder sees events borrowed, with the
//! task's index in the run: nothing is allocated for it on the scheduler's path, so that a store
//! that is always on costs a run next to nothing. Writing is the recorder's business, off the
//! scheduler's thread; only [`RunRecord::finish`] may be awaited, at the run's end.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::feedback::{FeedbackAsk, FeedbackState};
use crate::graph::Workflow;
use crate::observe::EventKind;
use crate::value::Value;

/// A boxed future, as the recorder's methods return them.
pub type RecordFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RecordError>> + Send + 'a>>;

/// A recorder could not do what it was asked: what failed, and whether trying again later
/// could pass ([`RecordError::is_retryable`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("run store {store}: {message}")]
pub struct RecordError {
    /// The store, as its recorder describes it (`sqlite:/home/me/.graflow/runs.db`).
    pub store: String,
    /// What went wrong, and what to do about it.
    pub message: String,
    /// What kind of failure it was.
    pub kind: RecordErrorKind,
}

/// What kind of failure a [`RecordError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordErrorKind {
    /// The store cannot be reached or written now (a server down, a file locked, a disk full).
    /// Trying again later may pass.
    Unavailable,
    /// The store is not usable by this program: not a database, or of a newer schema. Not
    /// retried.
    Unusable,
    /// What was asked for is not in the store (an unknown run id, a run without a checkpoint).
    NotFound,
    /// The store's records of a run were lost (buffers full, the store unavailable until the
    /// end): the run's record is incomplete.
    Lost,
    /// The store refuses what it was given (a request for feedback it cannot keep: a custom
    /// answer's schema that is no usable JSON schema). Not retried.
    Refused,
}

impl RecordError {
    /// An error of `kind` about `store`.
    pub fn new(
        store: impl Into<String>,
        kind: RecordErrorKind,
        message: impl Into<String>,
    ) -> Self {
        RecordError {
            store: store.into(),
            message: message.into(),
            kind,
        }
    }

    /// Whether trying again later could pass.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, RecordErrorKind::Unavailable)
    }
}

/// What a recorder is told of a run as it starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run's id (a resumed run keeps its id).
    pub run_id: Arc<str>,
    /// The workflow (its tasks, handlers, edges and groups, its
    /// [`fingerprint`](Workflow::fingerprint); tasks added while it runs come with
    /// [`EventKind::TaskAdded`]).
    pub workflow: Workflow,
    /// The program's build ([`backend::build_id`](crate::backend::build_id)).
    pub build_id: &'static str,
    /// Where the run writes its checkpoints, if it does.
    pub checkpoint: Option<PathBuf>,
    /// Whether it continues from a checkpoint.
    pub resumed: bool,
    /// When it started.
    pub started_at: SystemTime,
}

/// One event of a run, borrowed: what [`RunRecord::event`] sees.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RecordedEvent<'a> {
    /// When it happened.
    pub at: SystemTime,
    /// The task's index in the run, for task events: the workflow's tasks first, in order, then
    /// those added while it runs, in the order of their [`EventKind::TaskAdded`].
    pub node: Option<u32>,
    /// The task's id, for task events.
    pub task: Option<&'a str>,
    /// The task's handler, for task events.
    pub handler: Option<&'a str>,
    /// Which attempt (as in [`RunEvent::attempt`](crate::RunEvent::attempt)).
    pub attempt: u32,
    /// What happened.
    pub kind: &'a EventKind,
    /// The task's result, with [`EventKind::TaskSucceeded`].
    pub output: Option<&'a Value>,
}

/// What one run's events go to ([`RunRecorder::begin`]).
pub trait RunRecord: Send + Sync + 'static {
    /// One event, on the thread where it happened (the scheduler's, or the one reading a
    /// runner's output for [`EventKind::Log`]). Must not block: hand the event on.
    fn event(&self, event: &RecordedEvent<'_>);

    /// The run ended (its last event was handed over): resolves once the run's records are
    /// written, or known lost. An error only when the recorder is mandatory: then the run
    /// fails with [`RunError::Record`](crate::RunError::Record).
    fn finish(&self) -> RecordFuture<'static, ()>;

    /// Resolves once everything handed over so far is written (or known lost): before a
    /// program ends in a way that runs no exit handler (a signal). The caller bounds the wait.
    fn flush(&self) -> RecordFuture<'static, ()>;

    /// Keeps a task's request for feedback, or finds it (the same run, task and key: a task
    /// asking again after a retry or a resume), and says where it stands. Written at once (a
    /// person may list it the next moment), not batched.
    ///
    /// The default refuses: a recorder that keeps no requests cannot hold a run that waits.
    fn ask<'a>(&'a self, ask: FeedbackAsk<'a>) -> RecordFuture<'a, FeedbackState> {
        let _ = ask;
        Box::pin(std::future::ready(Err(RecordError::new(
            "of this engine",
            RecordErrorKind::Unusable,
            "this recorder keeps no requests for feedback; use graflow's run store (GRAFLOW_STORE)",
        ))))
    }

    /// Where request `id` (of this run) stands now.
    fn feedback<'a>(&'a self, id: &'a str) -> RecordFuture<'a, FeedbackState> {
        let _ = id;
        Box::pin(std::future::ready(Err(RecordError::new(
            "of this engine",
            RecordErrorKind::Unusable,
            "this recorder keeps no requests for feedback",
        ))))
    }

    /// The task gave up waiting for request `id` (it stays open: an answer given later is
    /// the resumed run's). For notifications; nothing waits for it.
    fn feedback_timed_out(&self, id: &str) {
        let _ = id;
    }

    /// Where a run that must wait for an answer and has no checkpoint file of its own writes
    /// one, so that it can be resumed by its id; `None`: it cannot be.
    fn suspend_path(&self) -> Option<PathBuf> {
        None
    }
}

/// A durable record of runs: a run store, as the engine sees it.
pub trait RunRecorder: Send + Sync + 'static {
    /// Where it records, for messages (`sqlite:/home/me/.graflow/runs.db`).
    fn describe(&self) -> String;

    /// A run starts: where its events go. An error only when the recorder is mandatory and
    /// cannot record the run: then nothing runs, and the run fails with
    /// [`RunError::Record`](crate::RunError::Record).
    fn begin(&self, run: RunInfo) -> RecordFuture<'_, Arc<dyn RunRecord>>;

    /// Where run `run_id` writes its checkpoints: what resuming it by id
    /// ([`RunOptions::resume_run`](crate::RunOptions::resume_run), `--graflow-resume ID`) reads.
    fn checkpoint_of<'a>(&'a self, run_id: &'a str) -> RecordFuture<'a, PathBuf>;

    /// An attempt a worker of a queue ran for another program's run (the engine that queued it
    /// records the attempt itself; this adds where and when the worker ran it).
    fn remote_attempt(&self, attempt: RemoteAttempt);
}

/// An attempt a queue worker ran, as it records it ([`RunRecorder::remote_attempt`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteAttempt {
    /// The run the attempt belongs to.
    pub run_id: String,
    /// The task.
    pub task: String,
    /// Which attempt, from 1.
    pub attempt: u32,
    /// Who ran it (`worker host-1234 (pid 1234 on host)`).
    pub runner: String,
    /// When the worker started it.
    pub started_at: SystemTime,
    /// When the worker finished it.
    pub ended_at: SystemTime,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// Its error, when it failed.
    pub error: Option<String>,
}

impl RemoteAttempt {
    /// An attempt of `task` (attempt number `attempt`) of run `run_id`, run by `runner`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: impl Into<String>,
        task: impl Into<String>,
        attempt: u32,
        runner: impl Into<String>,
        started_at: SystemTime,
        ended_at: SystemTime,
        error: Option<String>,
    ) -> Self {
        RemoteAttempt {
            run_id: run_id.into(),
            task: task.into(),
            attempt,
            runner: runner.into(),
            started_at,
            ended_at,
            succeeded: error.is_none(),
            error,
        }
    }
}

/// A program's default recorder, registered at link time by a store crate with
/// [`register_recorder!`](crate::register_recorder): `open` is called once, by the first engine
/// the program makes, and says what every engine records to (`None`: nothing, e.g. the store
/// is turned off).
pub struct RecorderFactory {
    /// Makes the default recorder (it must not block: open the store lazily).
    pub open: fn() -> Option<Arc<dyn RunRecorder>>,
}

impl fmt::Debug for RecorderFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecorderFactory")
    }
}

inventory::collect!(RecorderFactory);

/// Registers a program's default [`RunRecorder`] (a store crate does, once).
///
/// ```ignore
/// graflow_core::register_recorder!(graflow_core::RecorderFactory { open: my_store::open_default });
/// ```
#[macro_export]
macro_rules! register_recorder {
    ($factory:expr $(,)?) => {
        $crate::__private::inventory::submit! { $factory }
    };
}

/// The program's default recorder: the first registered factory's, made once.
pub fn default_recorder() -> Option<Arc<dyn RunRecorder>> {
    static DEFAULT: OnceLock<Option<Arc<dyn RunRecorder>>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| {
            inventory::iter::<RecorderFactory>
                .into_iter()
                .find_map(|f| (f.open)())
        })
        .clone()
}
