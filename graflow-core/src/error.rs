//! Typed errors. Every message says what went wrong, which task and handler, and what to do.

use std::fmt;
use std::time::Duration;

use crate::report::RunReport;

/// Any error a task body or a handler may return as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in graflow.
///
/// Validation problems are collected and reported together in [`Error::Invalid`], before any
/// task runs. A failed run is [`Error::TaskFailed`], which names the task, its handler, the
/// number of attempts and the cause chain, and carries the [`RunReport`] of everything that did
/// run (see [`Error::report`]).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- validation: reported before any task runs -----
    /// The workflow failed validation; every problem found is listed.
    #[error("workflow '{workflow}' is invalid; nothing was run ({} problem(s)):{}", problems.len(), Bullets(problems))]
    Invalid {
        /// The workflow's name.
        workflow: String,
        /// Every problem found, in graph order.
        problems: Vec<Error>,
    },

    /// The workflow has no task.
    #[error(
        "workflow '{workflow}' has no task: add one with workflow! {{ my_task; }} or WorkflowBuilder::add"
    )]
    EmptyWorkflow {
        /// The workflow's name.
        workflow: String,
    },

    /// Two nodes of one workflow share an id.
    #[error(
        "task id '{id}' is used twice (by `{first}` and `{second}`); give one of them another id with #[task(id = \"...\")] or Task::with_id"
    )]
    DuplicateTaskId {
        /// The shared id.
        id: String,
        /// The registry name of the first task.
        first: &'static str,
        /// The registry name of the second task.
        second: &'static str,
    },

    /// The dependencies form a cycle.
    #[error("cycle in the workflow: {}; remove one of these edges", path.join(" >> "))]
    Cycle {
        /// The task ids on the cycle, the first repeated at the end.
        path: Vec<String>,
    },

    /// A task names a handler that no one registered.
    #[error(
        "Unknown handler type: {handler}. Registered: {}. Register it with engine.register_handler() or graflow::register_handler! (used by task '{task}')",
        registered.join(", ")
    )]
    UnknownHandler {
        /// The task that asked for the handler.
        task: String,
        /// The handler name it asked for.
        handler: String,
        /// The names the engine knows.
        registered: Vec<String>,
    },

    /// Two link-time registrations claim one handler name.
    #[error(
        "handler '{handler}' (used by task '{task}') is registered more than once at link time, in {}; register the one you want with engine.register_handler(\"{handler}\", ...)",
        modules.join(" and ")
    )]
    AmbiguousHandler {
        /// The task that asked for the handler.
        task: String,
        /// The contested name.
        handler: String,
        /// The modules whose `register_handler!` claimed it.
        modules: Vec<&'static str>,
    },

    /// A handler rejected a task's handler configuration.
    #[error("handler '{handler}' rejects the configuration of task '{task}': {message}")]
    InvalidConfig {
        /// The task.
        task: String,
        /// The handler.
        handler: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// An input bound with `Task::with_input` matches no parameter of the function.
    #[error(
        "task '{task}' has an input named '{input}' but its function has no such parameter (parameters: {}); fix the name given to Task::with_input",
        params.join(", ")
    )]
    UnknownInput {
        /// The task.
        task: String,
        /// The bound name.
        input: String,
        /// The function's parameter names.
        params: Vec<&'static str>,
    },

    /// A parameter has no value: no bound input, no upstream task with its name, no channel key.
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

    /// A parameter's value has another type than the parameter.
    #[error(
        "task '{task}' cannot run: parameter `{param}` expects `{expected}` but {source_desc} is `{found}`; make the types agree"
    )]
    InputType {
        /// The task.
        task: String,
        /// The parameter.
        param: String,
        /// The parameter's type.
        expected: &'static str,
        /// The type of the value found.
        found: String,
        /// Where the value came from ("the result of task 'x'", "channel key 'k'", ...).
        source_desc: String,
    },

    // ----- one attempt of one task -----
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

    /// A handler returned `Ok` without storing the task's result.
    #[error(
        "handler '{handler}' returned Ok for task '{task}' without setting its result; call ctx.set_result(task.id(), output) before returning Ok"
    )]
    NoResult {
        /// The task.
        task: String,
        /// The handler at fault.
        handler: String,
    },

    /// A handler failed for a reason of its own (infrastructure, configuration, transport).
    #[error("handler '{handler}' could not run task '{task}': {message}")]
    Handler {
        /// The task.
        task: String,
        /// The handler.
        handler: String,
        /// What went wrong and what to do.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    // ----- a run -----
    /// A task failed after its retries were spent; the run stopped.
    #[error(
        "task '{task}' failed on handler '{handler}' after {attempts} attempt(s): {}",
        Chain(cause.as_ref())
    )]
    TaskFailed {
        /// The task.
        task: String,
        /// The handler it ran on.
        handler: String,
        /// How many attempts were made.
        attempts: u32,
        /// The error of the last attempt (its chain is part of this error's message).
        cause: Box<Error>,
        /// What ran, what failed, what was cancelled or skipped, and every result produced.
        report: Box<RunReport>,
    },

    // ----- values, results and the channel -----
    /// No result is stored for a task.
    #[error("no result for task '{task}': {reason}")]
    NoSuchResult {
        /// The task id asked for.
        task: String,
        /// Why there is none.
        reason: String,
    },

    /// A value was asked for as another type than the one stored.
    #[error("{what} holds a `{found}`, not a `{expected}`; ask for the type the producer returns")]
    TypeMismatch {
        /// Which value ("the result of task 'x'", "channel key 'k'").
        what: String,
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: String,
    },

    /// A channel key is not set.
    #[error(
        "channel key '{key}' is not set; set it in the run's initial Channel or in an upstream task"
    )]
    ChannelKeyMissing {
        /// The key.
        key: String,
    },

    /// A value could not be encoded, decoded or copied.
    #[error("cannot copy a value of type `{type_name}` through serde: {message}")]
    Codec {
        /// The value's type.
        type_name: String,
        /// The codec's message.
        message: String,
    },

    // ----- the engine -----
    /// A process started as a task runner ran a workflow: its program did not call `init()`.
    #[error(
        "this process was started as a graflow task runner ({} is set) but its program did not call graflow::init(): call graflow::init() at the start of main or use #[graflow::main] (in an integration test file: graflow::enable_test_runner!())",
        crate::protocol::RUNNER_ENV
    )]
    RunnerNotInitialised,

    /// `engine.run()` was called where a Tokio runtime is already running.
    #[error(
        "engine.run() was called inside a Tokio runtime, which cannot block; use engine.execute(&workflow).await there"
    )]
    NestedRuntime,

    /// The Tokio runtime for `engine.run()` could not start.
    #[error("could not start a Tokio runtime for engine.run(): {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// A handler failure with a message (for handler authors).
    pub fn handler(task: &str, handler: &str, message: impl Into<String>) -> Self {
        Error::Handler {
            task: task.to_owned(),
            handler: handler.to_owned(),
            message: message.into(),
            source: None,
        }
    }

    /// A handler failure caused by another error (for handler authors).
    pub fn handler_source(
        task: &str,
        handler: &str,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Handler {
            task: task.to_owned(),
            handler: handler.to_owned(),
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A configuration rejected by a handler (for [`TaskHandler::validate_task`](crate::TaskHandler::validate_task)).
    pub fn invalid_config(task: &str, handler: &str, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            task: task.to_owned(),
            handler: handler.to_owned(),
            message: message.into(),
        }
    }

    /// The report of the run, when this error ended one.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            Error::TaskFailed { report, .. } => Some(report),
            _ => None,
        }
    }

    /// The error of the failed attempt, for [`Error::TaskFailed`].
    pub fn cause(&self) -> Option<&Error> {
        match self {
            Error::TaskFailed { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// The validation problems, for [`Error::Invalid`].
    pub fn problems(&self) -> &[Error] {
        match self {
            Error::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }

    /// Whether another attempt could succeed. Input errors cannot: they are decided by the graph.
    pub(crate) fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Error::MissingInput { .. } | Error::InputType { .. } | Error::UnknownInput { .. }
        )
    }
}

/// Like anyhow's: the message and its cause chain, so `fn main() -> graflow::Result<()>` prints
/// something a person can act on. Match on the variants for the structured fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Chain(self))
    }
}

/// Formats an error followed by every error in its `source()` chain, joined by ": ".
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(err) = next {
            write!(f, ": {err}")?;
            next = err.source();
        }
        Ok(())
    }
}

struct Bullets<'a>(&'a [Error]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.0 {
            write!(f, "\n  - {}", Chain(problem))?;
        }
        Ok(())
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
