//! [`TaskContext`]: what a task body sees of its run. The run layer provides it (through
//! [`BodyAccess`]), so that a definition needs to know nothing of runs.

use super::access::BodyAccess;
use crate::definition::{AttemptError, TaskChannel};
use crate::value::{Data, ValueError};

/// What a task body sees: declare a parameter of type `&TaskContext` to get it.
#[repr(transparent)]
pub struct TaskContext {
    access: dyn BodyAccess,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("run_id", &self.run_id())
            .field("task", &self.task_id())
            .field("attempt", &self.attempt())
            .field("cycle", &self.cycle())
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// A view of the run's accessors as the task sees them (no copy).
    pub(crate) fn new<'a>(access: &'a (dyn BodyAccess + 'static)) -> &'a TaskContext {
        // SAFETY: TaskContext is #[repr(transparent)] over `dyn BodyAccess`: same layout and
        // the same pointer metadata (the vtable).
        unsafe { &*(access as *const (dyn BodyAccess + 'static) as *const TaskContext) }
    }

    /// The run's accessors.
    pub(crate) fn access(&self) -> &dyn BodyAccess {
        &self.access
    }

    /// The run's side of this context.
    pub(crate) fn run_access(&self) -> &dyn std::any::Any {
        self.access.as_any()
    }

    /// The id of this task.
    pub fn task_id(&self) -> &str {
        self.access.task_id()
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        self.access.run_id()
    }

    /// The attempt number, from 1 (higher on retries).
    pub fn attempt(&self) -> u32 {
        self.access.attempt()
    }

    /// Which run of this task this is, from 1: iterations
    /// ([`TaskContext::next_iteration`]) and gotos run a task again, up to
    /// [`TaskContext::max_cycles`] times.
    pub fn cycle(&self) -> u32 {
        self.access.cycle()
    }

    /// How many times this task may run in one run (`#[task(max_cycles = N)]`).
    pub fn max_cycles(&self) -> u32 {
        self.access.max_cycles()
    }

    /// The run's channel: read and write typed values shared by all tasks of the run. This
    /// attempt's writes are its own until it succeeds (it reads them back at once); the run's
    /// channel takes them then, and a failed attempt's writes are discarded, on every handler.
    pub fn channel(&self) -> TaskChannel<'_> {
        TaskChannel::new(&self.access)
    }

    /// A copy of the result of task `id` (an upstream task, to be sure it exists; out of
    /// process, only the direct upstream tasks' results are there).
    pub fn result<T: Data>(&self, id: &str) -> Result<T, ValueError> {
        self.access
            .result(id)?
            .copy_as(|| format!("the result of task '{id}'"))
    }

    /// The ids of the direct upstream tasks that have a result, in graph order (a member whose
    /// failure its group's policy tolerated has none and is left out).
    pub fn upstream_ids(&self) -> Vec<&str> {
        self.access.upstream_ids()
    }

    /// Copies of the results of all direct upstream tasks, in the order of
    /// [`TaskContext::upstream_ids`] (e.g. a sink summing a parallel group).
    pub fn upstream<T: Data>(&self) -> Result<Vec<T>, ValueError> {
        self.access
            .upstream()?
            .into_iter()
            .map(|(id, value)| value.copy_as(|| format!("the result of task '{id}'")))
            .collect()
    }

    /// Resolves input parameter `index` of this task (generated code calls this).
    #[doc(hidden)]
    pub fn __input<T: Data>(&self, index: usize) -> Result<T, AttemptError> {
        let (value, param) = self.access.input(index)?;
        value
            .copy_as(|| {
                format!(
                    "the value of parameter `{param}` of task '{}'",
                    self.task_id()
                )
            })
            .map_err(|source| AttemptError::Input {
                task: self.task_id().to_owned(),
                param: param.to_owned(),
                source,
            })
    }
}
