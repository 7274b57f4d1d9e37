//! The handler trait, and link-time handler registration.

use std::sync::Arc;

use crate::context::ExecutionContext;
use crate::error::Result;
use crate::task::Task;

/// Executes tasks somewhere: in this process, a child process, a container, a remote worker.
///
/// A handler runs one attempt of one task and stores its result with
/// [`ExecutionContext::set_result`]; returning `Ok` without doing so is an error naming the
/// handler. Errors, panics and timeouts of an attempt are handled by the engine (retries,
/// failing the run), so a handler only reports them.
///
/// ```ignore
/// struct Timing;
///
/// #[graflow::async_trait]
/// impl TaskHandler for Timing {
///     async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> graflow::Result<()> {
///         let started = std::time::Instant::now();
///         let output = task.run(ctx).await?;            // run it here, inputs resolved
///         tracing::info!("{} took {:?}", task.id(), started.elapsed());
///         ctx.set_result(task.id(), output)
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs one attempt of `task` and stores its result in `ctx`.
    async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> Result<()>;

    /// Runs the attempt at once, on the caller's thread, when this handler can do so without
    /// waiting for anything; returns `None` (the default) to have `execute_task` awaited
    /// instead. The engine tries this first for tasks without a timeout: the direct handler
    /// uses it for short synchronous bodies, which then cost no boxed future.
    fn try_execute_now(&self, task: &Task, ctx: &ExecutionContext) -> Option<Result<()>> {
        let _ = (task, ctx);
        None
    }

    /// Checks a task's handler configuration before the run starts (the default accepts any).
    /// Return [`Error::invalid_config`](crate::Error::invalid_config) naming what is wrong.
    fn validate_task(&self, task: &Task) -> Result<()> {
        let _ = task;
        Ok(())
    }
}

/// A handler registered at link time with [`register_handler!`](crate::register_handler).
#[doc(hidden)]
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
/// ```ignore
/// graflow::register_handler!("logging", LoggingHandler::default);
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
