//! How one attempt of one task can end badly: the body's error or panic, a timeout, a handler's
//! failure, an input that could not be read, an output of the wrong type.

use std::time::Duration;

use crate::value::ValueError;

/// Any error a task body or a handler may return as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why one attempt of a task failed. A handler returns it from
/// [`TaskHandler::execute_task`](crate::TaskHandler::execute_task); the engine retries the
/// attempt (when the task's retry policy and [`AttemptError::is_retryable`] allow) or fails the
/// run with it as the cause.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// The task body returned an error.
    #[error("task '{task}' returned an error")]
    Task {
        /// The task.
        task: String,
        /// The error the body returned.
        #[source]
        source: BoxError,
    },

    /// The task body panicked; the panic was caught.
    #[error("task '{task}' panicked: {message}")]
    Panicked {
        /// The task.
        task: String,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// An attempt ran longer than the task's `timeout`.
    #[error(
        "task '{task}' timed out after {timeout:?} on handler '{handler}'; raise `timeout` in #[task(...)] or make the task faster"
    )]
    TimedOut {
        /// The task.
        task: String,
        /// The handler it ran on.
        handler: String,
        /// The limit that was hit.
        timeout: Duration,
    },

    /// A handler failed for a reason of its own (infrastructure, configuration, transport).
    /// Its [`HandlerFailure`] says whether another attempt could succeed.
    #[error("handler '{handler}' could not run task '{task}': {message}")]
    Handler {
        /// The task.
        task: String,
        /// The handler.
        handler: String,
        /// What kind of failure: retried only when [`HandlerFailure::Transient`].
        kind: HandlerFailure,
        /// What went wrong and what to do.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// A parameter has no value at run time (an upstream task stored none, a channel key is
    /// unset).
    #[error("task '{task}' cannot run: parameter `{param}: {type_name}` has no value; {hint}")]
    MissingInput {
        /// The task.
        task: String,
        /// The parameter.
        param: String,
        /// The parameter's type.
        type_name: &'static str,
        /// Where the engine looked and what to do.
        hint: String,
    },

    /// A parameter's value could not be read as the parameter's type.
    #[error("task '{task}' cannot read parameter `{param}`")]
    Input {
        /// The task.
        task: String,
        /// The parameter.
        param: String,
        /// What went wrong with the value.
        #[source]
        source: ValueError,
    },

    /// A handler returned an output of another type than the task function's.
    #[error(
        "handler '{handler}' returned a `{found}` for task '{task}', whose function returns `{expected}`; return the output of task.run(ctx) (or a value of the task's output type)"
    )]
    WrongOutput {
        /// The task.
        task: String,
        /// The handler at fault.
        handler: String,
        /// The task function's output type.
        expected: &'static str,
        /// The type the handler returned.
        found: String,
    },

    /// The task asked its run for something the run refuses (an invalid added task, a goto to
    /// no task, past `max_cycles`, ...). Not retried: the same request would be refused again.
    #[error("task '{task}' asked its run for something it cannot do")]
    Control {
        /// The task.
        task: String,
        /// What was refused and why.
        #[source]
        source: BoxError,
    },
}

/// What kind of failure a handler met, so that the engine (and code that matches on it)
/// knows whether another attempt could succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerFailure {
    /// Something else that may pass on another attempt (a protocol error on a noisy transport,
    /// a runner slow to start). Retried as the task's retry policy says.
    Transient,
    /// The infrastructure the task needs is not there now: a Docker daemon or Redis server
    /// unreachable or slow, a resource busy. Retried.
    Unavailable,
    /// The runner (process, container, worker) died or went silent before it answered.
    /// Retried: another runner may finish it.
    RunnerLost,
    /// The task's configuration cannot work on this handler (invalid options, an environment
    /// variable to pass that is not set, a value that cannot be encoded): the same attempt would
    /// fail again. Not retried.
    InvalidConfig,
    /// The place the task would run in cannot run it (an image without a loader, a C library
    /// older than the build's, another architecture). Not retried.
    Incompatible,
}

impl HandlerFailure {
    /// Whether another attempt could succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            HandlerFailure::Transient | HandlerFailure::Unavailable | HandlerFailure::RunnerLost
        )
    }
}

/// What kind of failure ended an attempt ([`AttemptError::kind`]): one value to match on
/// without looking into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task body returned an error. Retried.
    TaskFailed,
    /// The task body panicked. Retried.
    Panicked,
    /// The attempt ran longer than the task's timeout. Retried.
    TimedOut,
    /// The handler failed for a reason of its own; see [`HandlerFailure`].
    Handler(HandlerFailure),
    /// A parameter had no value at run time. Not retried.
    MissingInput,
    /// A parameter's value could not be read as its type. Not retried.
    BadInput,
    /// The handler returned an output of another type. Not retried.
    WrongOutput,
    /// The run refused what the task asked of it. Not retried.
    ControlRefused,
}

impl ErrorKind {
    /// Whether another attempt could succeed.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::TaskFailed | ErrorKind::Panicked | ErrorKind::TimedOut => true,
            ErrorKind::Handler(failure) => failure.is_retryable(),
            ErrorKind::MissingInput
            | ErrorKind::BadInput
            | ErrorKind::WrongOutput
            | ErrorKind::ControlRefused => false,
        }
    }
}

impl AttemptError {
    /// A handler failure with a message (for handler authors): [`HandlerFailure::Transient`],
    /// retried per the task's policy. See [`AttemptError::handler_kind`] for the others.
    pub fn handler(task: &str, handler: &str, message: impl Into<String>) -> Self {
        Self::handler_kind(task, handler, HandlerFailure::Transient, message)
    }

    /// A handler failure of `kind` with a message (for handler authors).
    pub fn handler_kind(
        task: &str,
        handler: &str,
        kind: HandlerFailure,
        message: impl Into<String>,
    ) -> Self {
        AttemptError::Handler {
            task: task.to_owned(),
            handler: handler.to_owned(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A handler failure caused by another error (for handler authors):
    /// [`HandlerFailure::Transient`]; [`AttemptError::with_kind`] sets another kind.
    pub fn handler_source(
        task: &str,
        handler: &str,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        AttemptError::Handler {
            task: task.to_owned(),
            handler: handler.to_owned(),
            kind: HandlerFailure::Transient,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// This handler failure as one of `kind` (other errors are returned as they are).
    #[must_use]
    pub fn with_kind(mut self, new: HandlerFailure) -> Self {
        if let AttemptError::Handler { kind, .. } = &mut self {
            *kind = new;
        }
        self
    }

    /// The id of the task whose attempt failed.
    pub fn task(&self) -> &str {
        match self {
            AttemptError::Task { task, .. }
            | AttemptError::Panicked { task, .. }
            | AttemptError::TimedOut { task, .. }
            | AttemptError::Handler { task, .. }
            | AttemptError::MissingInput { task, .. }
            | AttemptError::Input { task, .. }
            | AttemptError::WrongOutput { task, .. }
            | AttemptError::Control { task, .. } => task,
        }
    }

    /// Whether another attempt could succeed ([`ErrorKind::is_retryable`]): not when an input
    /// is missing or unreadable (the graph decides those), when a handler returns the wrong
    /// type (a bug of the handler), when the run refused a request, nor for a handler failure
    /// that another attempt would meet again (invalid options, an image that cannot run the
    /// task).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AttemptError::Task { .. } => ErrorKind::TaskFailed,
            AttemptError::Panicked { .. } => ErrorKind::Panicked,
            AttemptError::TimedOut { .. } => ErrorKind::TimedOut,
            AttemptError::Handler { kind, .. } => ErrorKind::Handler(*kind),
            AttemptError::MissingInput { .. } => ErrorKind::MissingInput,
            AttemptError::Input { .. } => ErrorKind::BadInput,
            AttemptError::WrongOutput { .. } => ErrorKind::WrongOutput,
            AttemptError::Control { .. } => ErrorKind::ControlRefused,
        }
    }
}

/// The message and its cause chain.
impl std::fmt::Debug for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Chain(self))
    }
}

/// `T` or `Result<T, E>` as returned by a task function.
#[doc(hidden)]
pub trait TaskReturn {
    type Output;
    fn into_task_result(self, task: &str) -> Result<Self::Output, AttemptError>;
}

impl<T, E: Into<BoxError>> TaskReturn for Result<T, E> {
    type Output = T;
    fn into_task_result(self, task: &str) -> Result<T, AttemptError> {
        self.map_err(|e| AttemptError::Task {
            task: task.to_owned(),
            source: e.into(),
        })
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Formats an error followed by every error in its `source()` chain, joined by ": ".
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl Chain<'_> {
    /// The error's message, then each of its sources', in order (what `Display` joins).
    pub fn links(&self) -> Vec<String> {
        let mut links = vec![self.0.to_string()];
        let mut next = self.0.source();
        while let Some(err) = next {
            links.push(err.to_string());
            next = err.source();
        }
        links
    }
}

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(err) = next {
            write!(f, ": {err}")?;
            next = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_another_attempt_could_pass_are_retried() {
        let of = |kind| AttemptError::handler_kind("t", "h", kind, "m");
        assert!(of(HandlerFailure::Transient).is_retryable());
        assert!(of(HandlerFailure::Unavailable).is_retryable());
        assert!(of(HandlerFailure::RunnerLost).is_retryable());
        assert!(!of(HandlerFailure::InvalidConfig).is_retryable());
        assert!(!of(HandlerFailure::Incompatible).is_retryable());
        assert_eq!(
            AttemptError::handler("t", "h", "m").kind(),
            ErrorKind::Handler(HandlerFailure::Transient)
        );
        let lost = AttemptError::handler("t", "h", "m").with_kind(HandlerFailure::RunnerLost);
        assert_eq!(lost.kind(), ErrorKind::Handler(HandlerFailure::RunnerLost));
        let panicked = AttemptError::Panicked {
            task: "t".to_owned(),
            message: "m".to_owned(),
        };
        assert!(panicked.is_retryable());
        assert_eq!(panicked.kind(), ErrorKind::Panicked);
        // with_kind leaves other errors as they are.
        assert_eq!(
            panicked.with_kind(HandlerFailure::InvalidConfig).kind(),
            ErrorKind::Panicked
        );
        let missing = AttemptError::MissingInput {
            task: "t".to_owned(),
            param: "p".to_owned(),
            type_name: "u8",
            hint: String::new(),
        };
        assert_eq!(missing.kind(), ErrorKind::MissingInput);
        assert!(!missing.is_retryable());
    }
}
