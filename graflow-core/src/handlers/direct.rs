//! The "direct" handler: runs the task in this process.

use crate::definition::AttemptError;
use crate::graph::Task;
use crate::run::{ExecutionContext, TaskHandler};
use crate::value::Value;

/// Runs tasks in-process: the default handler, registered as "direct" in every engine.
///
/// Register it under another name to run those tasks locally, e.g. a Docker workflow on a
/// developer's machine: `engine.register_handler("docker", DirectHandler)`. (Registered with
/// [`WorkflowEngine::register_handler`](crate::WorkflowEngine::register_handler), it keeps the
/// engine's fast path for short synchronous bodies under any name.)
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectHandler;

#[async_trait::async_trait]
impl TaskHandler for DirectHandler {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        task.run(ctx).await
    }
}
