//! The "direct" handler: runs the task in this process.

use crate::context::ExecutionContext;
use crate::error::Result;
use crate::handler::TaskHandler;
use crate::task::Task;

/// Runs tasks in-process: the default handler, registered as "direct" in every engine.
///
/// Register it under another name to run those tasks locally, e.g. a Docker workflow on a
/// developer's machine: `engine.register_handler("docker", DirectHandler)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectHandler;

#[async_trait::async_trait]
impl TaskHandler for DirectHandler {
    async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> Result<()> {
        let output = task.run(ctx).await?;
        ctx.set_result(task.id(), output)
    }

    fn try_execute_now(&self, task: &Task, ctx: &ExecutionContext) -> Option<Result<()>> {
        let output = task.try_run_now(ctx)?;
        Some(output.and_then(|output| ctx.set_result(task.id(), output)))
    }
}
