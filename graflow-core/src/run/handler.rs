//! The handler contract: what the scheduler asks of a handler, and link-time registration.

use std::borrow::Cow;
use std::sync::Arc;

use super::ExecutionContext;
use crate::definition::AttemptError;
use crate::graph::{Problem, Task};
use crate::value::Value;

/// Executes tasks somewhere: in this process, a child process, a container, a remote worker.
///
/// A handler runs one attempt of one task and returns the task's output; the engine checks its
/// type and stores it as the task's result (a handler cannot store another task's result, nor
/// forget to store one). Errors, panics and timeouts of an attempt are handled by the engine
/// (retries, failing the run), so a handler only reports them.
///
/// ```
/// use graflow_core::{AttemptError, ExecutionContext, Task, TaskHandler, Value, WorkflowEngine};
///
/// struct Timing;
///
/// #[async_trait::async_trait]
/// impl TaskHandler for Timing {
///     async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> Result<Value, AttemptError> {
///         let started = std::time::Instant::now();
///         let output = task.run(ctx).await?; // run it here, inputs resolved
///         tracing::info!("{} took {:?}", task.id(), started.elapsed());
///         Ok(output)
///     }
/// }
/// # let _ = WorkflowEngine::new().with_handler("timing", Timing);
/// ```
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs one attempt of `task` and returns its output (a value of the task function's
    /// output type, e.g. what [`Task::run`] returns).
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError>;

    /// Checks a task's handler configuration before the run starts (the default accepts any).
    /// Return [`Problem::invalid_config`] naming what is wrong.
    fn validate_task(&self, task: &Task) -> Result<(), Problem> {
        let _ = task;
        Ok(())
    }

    /// How many tasks this handler may run at once in one run (`None`, the default: no limit of
    /// its own; the engine's overall `max_concurrency` still applies). The engine can override
    /// it per name with [`WorkflowEngine::set_handler_concurrency`](crate::WorkflowEngine::set_handler_concurrency).
    fn concurrency_limit(&self) -> Option<usize> {
        None
    }

    /// Starts ahead of a run what this handler will need for `tasks` (its tasks in a workflow,
    /// already validated): warm runners for the tasks that reuse them. Returns how many runners
    /// it started (the default starts none). Called by
    /// [`WorkflowEngine::warm_up`](crate::WorkflowEngine::warm_up).
    async fn warm_up(&self, tasks: &[&Task]) -> Result<usize, AttemptError> {
        let _ = tasks;
        Ok(0)
    }
}

/// A handler registered at link time with [`register_handler!`](crate::register_handler).
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerRegistration {
    pub name: &'static str,
    pub module: &'static str,
    pub constructor: fn() -> Arc<dyn TaskHandler>,
}

inventory::collect!(HandlerRegistration);

impl HandlerRegistration {
    pub fn all() -> impl Iterator<Item = &'static HandlerRegistration> {
        inventory::iter::<HandlerRegistration>.into_iter()
    }
}

/// Registers a handler at link time: every [`WorkflowEngine::new`](crate::WorkflowEngine::new)
/// of the program knows it by `name`.
///
/// `constructor` is anything callable with no argument that returns the handler: a function
/// path (`MyHandler::new`, `MyHandler::default`) or a closure (`|| MyHandler { level: 2 }`).
///
/// ```
/// use graflow_core::{AttemptError, ExecutionContext, Task, TaskHandler, Value, WorkflowEngine};
///
/// #[derive(Default)]
/// struct LoggingHandler;
///
/// #[async_trait::async_trait]
/// impl TaskHandler for LoggingHandler {
///     async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> Result<Value, AttemptError> {
///         tracing::info!(task = task.id(), "running");
///         task.run(ctx).await
///     }
/// }
///
/// graflow_core::register_handler!("logging", LoggingHandler::default);
///
/// assert!(WorkflowEngine::new().handler_names().contains(&"logging"));
/// ```
#[macro_export]
macro_rules! register_handler {
    ($name:expr, $constructor:expr $(,)?) => {
        const _: () = {
            fn __graflow_construct() -> $crate::__private::Arc<dyn $crate::TaskHandler> {
                $crate::__private::Arc::new(($constructor)())
            }
            $crate::__private::inventory::submit! {
                $crate::__private::HandlerRegistration {
                    name: $name,
                    module: ::core::module_path!(),
                    constructor: __graflow_construct,
                }
            }
        };
    };
}

/// A handler as the scheduler uses it: one per distinct handler name of the run.
pub(crate) struct Slot {
    /// The name it is registered under.
    pub name: Cow<'static, str>,
    pub handler: Arc<dyn TaskHandler>,
    /// The built-in direct handler: short synchronous bodies run inline, without a future.
    pub direct: bool,
    /// How many of its tasks may be in flight at once in this run.
    pub limit: usize,
    /// How many may be in flight at once over all the engine's runs (`None`: no limit).
    pub gate: Option<Arc<super::gate::Gate>>,
}
