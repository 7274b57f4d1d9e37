//! The requests as a task makes them, through its TaskContext: next_task, goto, next_iteration, terminate, cancel, checkpoint.

use super::{ControlError, End, ExecutionContext, Iteration, Task, TaskContext};

pub(super) fn execution(ctx: &TaskContext) -> Option<&ExecutionContext> {
    ctx.run_access().downcast_ref::<ExecutionContext>()
}

pub(super) fn outside(ctx: &TaskContext) -> ControlError {
    ControlError::Unreadable {
        task: ctx.task_id().to_owned(),
        message: "this context does not belong to a run".to_owned(),
    }
}

/// Dynamic control, from inside a task body.
impl TaskContext {
    /// Adds `task` to the run. It runs after this task, and this task's successors wait for it
    /// too (so a task can fan out into tasks decided at run time, and its successors gather
    /// their results with [`TaskContext::upstream`]). It is validated now: a unique id, a known
    /// handler that accepts it, every parameter resolvable (bound with
    /// [`Task::with_input`], the result of a task that has finished or of this task, or a channel
    /// key that is set or that this task declares in `writes`). Out of process, it is validated
    /// when this attempt's outcome arrives, and a problem fails the attempt.
    ///
    /// It is added only if this attempt succeeds.
    pub fn next_task(&self, task: Task) -> Result<(), ControlError> {
        execution(self)
            .ok_or_else(|| outside(self))?
            .next_task(task, false)
    }

    /// [`TaskContext::next_task`], but `task` runs instead of this task's successors: they are
    /// skipped, unless something else leads to them.
    pub fn next_task_instead(&self, task: Task) -> Result<(), ControlError> {
        execution(self)
            .ok_or_else(|| outside(self))?
            .next_task(task, true)
    }

    /// Jumps to task `id` of the run once this task finished: it runs next (again, if it ran
    /// already), then the tasks after it, as if they had not run; this task's successors are
    /// skipped unless that path leads to them. Every run of a task counts against its
    /// `max_cycles`.
    pub fn goto(&self, id: &str) -> Result<(), ControlError> {
        execution(self).ok_or_else(|| outside(self))?.goto(id)
    }

    /// Runs this task again once this attempt succeeded, before its successors, with `name`
    /// bound to `value` (call [`Iteration::with`] for more inputs; parameters not bound keep
    /// their usual source). Every run counts against the task's `max_cycles` (`#[task(max_cycles
    /// = N)]`): past it, the task fails.
    pub fn next_iteration(&self) -> Iteration<'_> {
        Iteration {
            ctx: self,
            inputs: Vec::new(),
        }
    }

    /// Ends the run once this task finished, as a success: nothing new starts, tasks already
    /// running finish, the rest are reported skipped, and the report says why.
    pub fn terminate(&self, message: impl Into<String>) {
        if let Some(ctx) = execution(self) {
            ctx.end(End::Terminate(message.into()));
        }
    }

    /// Ends the run as a failure, whatever this attempt returns: its result is not kept, tasks
    /// running are cancelled and the run returns
    /// [`RunError::Cancelled`](crate::RunError::Cancelled) with `message`.
    pub fn cancel(&self, message: impl Into<String>) {
        if let Some(ctx) = execution(self) {
            ctx.end(End::Cancel(message.into()));
        }
    }

    /// Writes a checkpoint once this task completed (the run must have a checkpoint path:
    /// `RunOptions::new().checkpoint(path)`).
    pub fn checkpoint(&self) -> Result<(), ControlError> {
        execution(self).ok_or_else(|| outside(self))?.checkpoint()
    }
}
