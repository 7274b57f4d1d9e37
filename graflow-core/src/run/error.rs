//! How a run ends when it does not succeed: [`RunError`], with the [`RunFailure`] of a task
//! whose retries were spent.

use std::fmt;

use crate::definition::{AttemptError, Chain};
use crate::graph::Problem;
use crate::record::RecordError;
use crate::report::RunReport;
use crate::run::checkpoint::CheckpointError;

/// How a run ended without a report of success.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The workflow failed validation; every problem found is listed. Nothing was run.
    #[error("workflow '{workflow}' is invalid; nothing was run ({} problem(s)):{}", problems.len(), Bullets(problems))]
    Invalid {
        /// The workflow's name.
        workflow: String,
        /// Every problem found, in graph order.
        problems: Vec<Problem>,
    },

    /// A task failed after its retries were spent; the run stopped.
    #[error(transparent)]
    Failed(Box<RunFailure>),

    /// A parallel group's policy was not met (too few members succeeded, a critical member
    /// failed, a custom policy said no); the run stopped.
    #[error(transparent)]
    GroupFailed(Box<GroupFailure>),

    /// A task cancelled the run ([`TaskContext::cancel`](crate::TaskContext::cancel)).
    #[error(transparent)]
    Cancelled(Box<RunCancelled>),

    /// Tasks wait for a person's answer (nobody answered within their requests' timeouts):
    /// the run stopped, checkpointed, holding nothing. Answer the requests, then resume the run
    /// ([`RunOptions::resume_run`](crate::RunOptions::resume_run), `--graflow-resume RUN_ID`).
    /// A program whose `#[graflow::main]` returns this error exits with
    /// [`WAITING_EXIT_CODE`](crate::WAITING_EXIT_CODE).
    #[error(transparent)]
    Waiting(Box<RunWaiting>),

    /// A checkpoint could not be read or does not belong to this workflow and build; nothing
    /// was run.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    /// The run's options contradict each other (an initial channel given to a resumed run,
    /// which continues with its checkpoint's); nothing was run.
    #[error("workflow '{workflow}' was not run: {reason}")]
    InvalidOptions {
        /// The workflow's name.
        workflow: String,
        /// What contradicts what, and what to do.
        reason: String,
    },

    /// A process started as a task runner ran a workflow: its program did not call `init()`.
    #[error(
        "this process was started as a graflow task runner ({} is set) but its program did not call graflow::init(): call graflow::init() at the start of main or use #[graflow::main] (in an integration test file: graflow::enable_test_runner!())",
        graflow_protocol::RUNNER_ENV
    )]
    RunnerNotInitialised,

    /// `engine.run()` was called where a Tokio runtime is already running.
    #[error(
        "engine.run() was called inside a Tokio runtime, which cannot block; use engine.execute(&workflow, RunOptions::new()).await there"
    )]
    NestedRuntime,

    /// `engine.warm_up` could not start a runner.
    #[error("could not start the runners of workflow '{workflow}' ahead of its run: {source}")]
    WarmUp {
        /// The workflow's name.
        workflow: String,
        /// What failed, naming the task and handler.
        #[source]
        source: Box<AttemptError>,
    },

    /// The run store could not do what the run needed: a mandatory store could not record the
    /// run (then `report` is the run's, which ran; or `None`: nothing ran), or resuming by run
    /// id found no checkpoint of that run (nothing ran).
    #[error("workflow '{workflow}': {source}")]
    Record {
        /// The workflow's name.
        workflow: String,
        /// What the store said.
        #[source]
        source: RecordError,
        /// The run's report, when the run ran.
        report: Option<Box<RunReport>>,
    },

    /// The background Tokio runtime `engine.run()` runs on could not start.
    #[error("could not start a Tokio runtime for engine.run(): {0}")]
    Runtime(#[source] std::io::Error),
}

impl RunError {
    /// The report of the run, when a task failed.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            RunError::Failed(failure) => Some(&failure.report),
            RunError::GroupFailed(failure) => Some(&failure.report),
            RunError::Cancelled(cancelled) => Some(&cancelled.report),
            RunError::Waiting(waiting) => Some(&waiting.report),
            RunError::Record {
                report: Some(report),
                ..
            } => Some(report),
            _ => None,
        }
    }

    /// The error of the failed attempt, when a task failed.
    pub fn cause(&self) -> Option<&AttemptError> {
        match self {
            RunError::Failed(failure) => Some(&failure.cause),
            _ => None,
        }
    }

    /// The validation problems, for [`RunError::Invalid`].
    pub fn problems(&self) -> &[Problem] {
        match self {
            RunError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }

    /// The run's requests and how to resume it, when it waits for answers.
    pub fn waiting(&self) -> Option<&RunWaiting> {
        match self {
            RunError::Waiting(waiting) => Some(waiting),
            _ => None,
        }
    }

    /// The failure, when a task failed.
    pub fn failure(&self) -> Option<&RunFailure> {
        match self {
            RunError::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// Like anyhow's: the message and its cause chain.
impl fmt::Debug for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Chain(self))
    }
}

/// A task failed after its retries were spent, and the run stopped.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunFailure {
    /// The task.
    pub task: String,
    /// The handler it ran on.
    pub handler: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// The error of the last attempt (its chain is part of this error's message).
    pub cause: AttemptError,
    /// What ran, what failed, what was cancelled or skipped, and every result produced.
    pub report: RunReport,
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task '{}' failed on handler '{}' after {} attempt(s): {}",
            self.task,
            self.handler,
            self.attempts,
            Chain(&self.cause)
        )
    }
}

impl std::error::Error for RunFailure {}

/// A parallel group's policy was not met, and the run stopped.
#[derive(Debug)]
#[non_exhaustive]
pub struct GroupFailure {
    /// The group's name.
    pub group: String,
    /// Its policy, as reports print it.
    pub policy: String,
    /// Why the policy was not met.
    pub reason: String,
    /// The members that failed, with their errors.
    pub failed: Vec<(String, String)>,
    /// What ran, what failed, what was cancelled or skipped, and every result produced.
    pub report: RunReport,
}

impl fmt::Display for GroupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group '{}' failed its policy {}: {}",
            self.group, self.policy, self.reason
        )?;
        for (task, error) in &self.failed {
            write!(f, "\n  - task '{task}': {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GroupFailure {}

/// A task cancelled the run.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunCancelled {
    /// The task that cancelled it.
    pub task: String,
    /// Its handler.
    pub handler: String,
    /// The message it gave.
    pub message: String,
    /// What ran, what was cancelled or skipped, and every result produced.
    pub report: RunReport,
}

impl fmt::Display for RunCancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workflow '{}' was cancelled by task '{}' (handler '{}'): {}",
            self.report.workflow(),
            self.task,
            self.handler,
            self.message
        )
    }
}

impl std::error::Error for RunCancelled {}

struct Bullets<'a>(&'a [Problem]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.0 {
            write!(f, "\n  - {}", Chain(problem))?;
        }
        Ok(())
    }
}

/// The exit code of a program whose run waits for answers (`#[graflow::main]`): 75, as
/// `EX_TEMPFAIL`: try again later (once someone answered).
pub const WAITING_EXIT_CODE: i32 = 75;

/// A run that stopped to wait for answers: see [`RunError::Waiting`].
#[derive(Debug)]
#[non_exhaustive]
pub struct RunWaiting {
    /// The run, to resume by its id.
    pub run_id: String,
    /// The requests its tasks wait for.
    pub requests: Vec<crate::run::WaitingRequest>,
    /// Its checkpoint (`None`: it could not be written, and the run cannot be resumed; the
    /// report says why).
    pub checkpoint: Option<std::path::PathBuf>,
    /// What ran, and what waits.
    pub report: RunReport,
}

impl fmt::Display for RunWaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workflow '{}' waits for {} answer(s) (run {}):",
            self.report.workflow(),
            self.requests.len(),
            self.run_id
        )?;
        for request in &self.requests {
            write!(
                f,
                "\n  - task '{}' asks {:?}: answer with `--graflow-answer {} VALUE`",
                request.task, request.prompt, request.request_id
            )?;
        }
        match &self.checkpoint {
            Some(path) => write!(
                f,
                "\nthen resume the run with `--graflow-resume {}` (checkpoint {})",
                self.run_id,
                path.display()
            ),
            None => write!(
                f,
                "\nits checkpoint could not be written ({}), so it cannot be resumed",
                self.report
                    .checkpoint_error()
                    .unwrap_or("the run's store gives no place for one")
            ),
        }
    }
}

impl std::error::Error for RunWaiting {}

/// How the program's last run ended, if it ended to wait for answers (and can be resumed): the
/// message `#[graflow::main]` prints before it exits with
/// [`WAITING_EXIT_CODE`].
static LAST_RUN_WAITS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Notes how a run of this program ended (every run: the last one counts).
pub(crate) fn note_run_end(waiting: Option<&RunWaiting>) {
    let message = waiting
        .filter(|w| w.checkpoint.is_some())
        .map(ToString::to_string);
    *LAST_RUN_WAITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = message;
}

/// What `#[graflow::main]` does when `main` returns: when it failed (`failed`) and the
/// program's last run ended to wait for answers ([`RunError::Waiting`], resumable), the program
/// prints how to answer and resume and exits with [`WAITING_EXIT_CODE`],
/// whatever error type `main` returns; anything else is `main`'s own business.
#[doc(hidden)]
pub fn exit_if_waiting(failed: bool) {
    if !failed {
        return;
    }
    let message = LAST_RUN_WAITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(message) = message {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{message}");
        std::process::exit(WAITING_EXIT_CODE);
    }
}

/// Whether `main`'s result is an error: `Result`s say (the generated code calls this through
/// autoref, so that any other return type takes [`MainFailedOther`]).
#[doc(hidden)]
pub trait MainFailed {
    fn __graflow_failed(&self) -> bool;
}

impl<T, E> MainFailed for Result<T, E> {
    fn __graflow_failed(&self) -> bool {
        self.is_err()
    }
}

/// Any other return type of `main` (`()`, `ExitCode`): not an error.
#[doc(hidden)]
pub trait MainFailedOther {
    fn __graflow_failed(&self) -> bool;
}

impl<T> MainFailedOther for &T {
    fn __graflow_failed(&self) -> bool {
        false
    }
}
