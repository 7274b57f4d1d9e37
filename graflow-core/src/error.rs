//! The one error type a program can `?` everything into. Each layer has its own typed error:
//! [`ValueError`] (reading values, results, channel keys), [`Problem`] (validation),
//! [`AttemptError`] (one attempt of one task) and [`RunError`] (how a run ended); each converts
//! into [`Error`], which converts into `anyhow::Error` and `Box<dyn Error>`.

use std::fmt;

use crate::definition::{AttemptError, Chain};
use crate::graph::Problem;
use crate::report::RunReport;
use crate::run::{RunError, RunFailure};
use crate::value::ValueError;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error of graflow: `fn main() -> graflow::Result<()>` takes every layer's error with `?`.
/// Match on the variant for the layer's own typed error.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A run ended without success: invalid workflow, failed task, or an engine problem.
    #[error(transparent)]
    Run(#[from] RunError),
    /// One attempt of one task failed (from a handler or [`Task::run`](crate::Task::run)).
    #[error(transparent)]
    Attempt(#[from] AttemptError),
    /// A value, result or channel key could not be read.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// A workflow problem found by validation.
    #[error(transparent)]
    Problem(#[from] Problem),
    /// A task's request to its run was refused (dynamic tasks, goto, iterations, checkpoints).
    #[error(transparent)]
    Control(#[from] crate::run::ControlError),
    /// A checkpoint could not be read or resumed.
    #[error(transparent)]
    Checkpoint(#[from] crate::run::CheckpointError),
    /// A run's report could not be saved.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
}

impl Error {
    /// The report of the run, when a task failed.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            Error::Run(run) => run.report(),
            _ => None,
        }
    }

    /// The error of the failed attempt: the attempt itself, or the last attempt of a failed run.
    pub fn cause(&self) -> Option<&AttemptError> {
        match self {
            Error::Run(run) => run.cause(),
            Error::Attempt(attempt) => Some(attempt),
            _ => None,
        }
    }

    /// The validation problems of an invalid workflow.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Run(run) => run.problems(),
            Error::Problem(problem) => std::slice::from_ref(problem),
            _ => &[],
        }
    }

    /// The failure, when a task failed.
    pub fn failure(&self) -> Option<&RunFailure> {
        match self {
            Error::Run(run) => run.failure(),
            _ => None,
        }
    }
}

/// Like anyhow's: the message and its cause chain, so `fn main() -> graflow::Result<()>` prints
/// something a person can act on.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Chain(self))
    }
}
