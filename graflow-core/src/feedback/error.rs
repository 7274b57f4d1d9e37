//! [`FeedbackError`]: why a task got no answer.

use std::time::Duration;

/// Why a task's request for feedback did not give it an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum FeedbackError {
    /// Nobody answered within the request's timeout. The task stops here (return the error):
    /// the run ends as waiting, checkpointed, and resuming it once someone answered gives the
    /// task the answer without asking again.
    #[error(
        "task '{task}' waited {} for an answer to request {request_id} ({prompt:?}); its run waits: answer it with `--graflow-answer {request_id} VALUE`, then resume the run with `--graflow-resume {run_id}`", humantime::format_duration(*waited)
    )]
    TimedOut {
        /// The asking task.
        task: String,
        /// Its run.
        run_id: String,
        /// The request.
        request_id: String,
        /// The question.
        prompt: String,
        /// How long it waited.
        waited: Duration,
    },

    /// Someone cancelled the request.
    #[error("task '{task}': request {request_id} was cancelled by {by}: {reason}")]
    Cancelled {
        /// The asking task.
        task: String,
        /// The request.
        request_id: String,
        /// Why.
        reason: String,
        /// By whom.
        by: String,
    },

    /// The request itself is not valid (an empty prompt, a selection without options, a
    /// timeout too long).
    #[error("task '{task}' made an invalid request for feedback: {message}")]
    Invalid {
        /// The asking task.
        task: String,
        /// What is wrong.
        message: String,
    },

    /// The stored answer could not be read as the type the task asked for (a custom type
    /// whose `Deserialize` is stricter than its schema).
    #[error(
        "task '{task}': the answer to request {request_id} is not a {expected}: {message}; an answer cannot be changed: accept what the type's JSON schema accepts (its Deserialize is stricter), or ask in a new run"
    )]
    WrongAnswer {
        /// The asking task.
        task: String,
        /// The request.
        request_id: String,
        /// The type asked for.
        expected: String,
        /// Why it could not be read.
        message: String,
    },

    /// The task runs under no engine that can hold a request: outside a run, or in a run
    /// whose engine records nowhere.
    #[error("task '{task}' cannot ask for feedback: {reason}")]
    Unavailable {
        /// The asking task.
        task: String,
        /// Why, and what to do.
        reason: String,
    },

    /// The run store could not keep or read the request; another attempt may succeed.
    #[error("task '{task}': the run store failed its request for feedback: {message}")]
    Store {
        /// The asking task.
        task: String,
        /// What the store said.
        message: String,
    },
}

impl FeedbackError {
    /// Whether another attempt of the task could succeed (a store that failed).
    pub fn is_retryable(&self) -> bool {
        matches!(self, FeedbackError::Store { .. })
    }

    /// The request this error is about, when there is one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            FeedbackError::TimedOut { request_id, .. }
            | FeedbackError::Cancelled { request_id, .. }
            | FeedbackError::WrongAnswer { request_id, .. } => Some(request_id),
            _ => None,
        }
    }
}
