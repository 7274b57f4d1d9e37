//! A one-task run outside any workflow: what a runner process executes in, and
//! [`ExecutionContext::for_task`] for testing a handler in isolation.

use std::sync::Arc;

use super::{CpuPool, ExecutionContext, RunError, RunShared, cpu_count};
use crate::channel::Channel;
use crate::graph::{Task, Workflow};
use crate::value::Value;

impl ExecutionContext {
    /// A context for running `task` outside any workflow run: to test a handler in isolation
    /// (`handler.execute_task(ctx.task(), &ctx)`), or to call `task.run(&ctx)` directly. The
    /// task's parameters must be bound with [`Task::with_input`]; its channel starts empty.
    pub fn for_task(task: Task) -> Result<ExecutionContext, RunError> {
        Self::standalone(
            "standalone".to_owned(),
            "standalone".to_owned(),
            task,
            Channel::new(),
            None,
            1,
            1,
        )
    }

    /// A one-task run: what a runner process and [`ExecutionContext::for_task`] execute in.
    pub(crate) fn standalone(
        workflow: String,
        run_id: String,
        task: Task,
        channel: Channel,
        upstream: Option<Vec<(String, Value)>>,
        attempt: u32,
        cycle: u32,
    ) -> Result<ExecutionContext, RunError> {
        let mut builder = Workflow::builder(workflow);
        builder.add(task);
        let workflow = builder.build();
        let graph = workflow.graph().map_err(|problems| RunError::Invalid {
            workflow: workflow.name().to_owned(),
            problems,
        })?;
        let run = Arc::new(RunShared::new(
            Arc::from(run_id),
            workflow,
            graph,
            channel,
            CpuPool::new(cpu_count()),
            upstream,
            None,
            false,
            None,
        ));
        Ok(ExecutionContext::new(run, 0, attempt, cycle))
    }
}
