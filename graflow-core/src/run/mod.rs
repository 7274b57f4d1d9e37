//! The run: the state one run shares between its tasks, the contexts handlers and bodies see of
//! it, the policy that executes a body (inline, on the blocking pool, under the CPU limit), the
//! handler contract, and the scheduler that walks the graph.

mod body;
mod context;
mod error;
mod handler;
pub(crate) mod scheduler;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Semaphore;

use crate::channel::Channel;
use crate::graph::{Graph, Task, Workflow};
use crate::value::{Data, Value, ValueError};

pub use context::ExecutionContext;
pub use error::{RunError, RunFailure};
pub use handler::{HandlerRegistration, TaskHandler};

/// The state one run shares between its tasks.
pub(crate) struct RunShared {
    pub run_id: Arc<str>,
    pub workflow: Workflow,
    pub graph: Arc<Graph>,
    pub results: Box<[Mutex<Option<Value>>]>,
    pub channel: Channel,
    /// Permits for synchronous bodies on the blocking pool: CPU-bound work runs at most this
    /// many at once (the engine's CPU limit), whatever else is in flight.
    pub cpu: Arc<Semaphore>,
    /// In a runner process: the results of the task's direct upstream tasks, as the handler
    /// sent them (the graph there has the one task only). `None` in a normal run.
    pub upstream: Option<Vec<(String, Value)>>,
    /// Where tasks' last attempts ran, as their handlers described it (a worker, a container, a
    /// pid): see [`ExecutionContext::set_runner`]. Only out-of-process handlers write here.
    pub runners: Mutex<rustc_hash::FxHashMap<u32, Box<str>>>,
}

impl RunShared {
    pub fn task(&self, node: u32) -> &Task {
        &self.workflow.tasks()[node as usize]
    }

    fn slot(&self, node: u32) -> MutexGuard<'_, Option<Value>> {
        self.results[node as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn result_value(&self, node: u32) -> Option<Value> {
        self.slot(node).clone()
    }

    pub fn store_result(&self, node: u32, value: Value) {
        *self.slot(node) = Some(value);
    }

    pub fn clear_result(&self, node: u32) {
        *self.slot(node) = None;
    }

    fn node_of(&self, id: &str) -> Result<u32, ValueError> {
        self.graph
            .index_of(id)
            .ok_or_else(|| ValueError::NoSuchResult {
                task: id.to_owned(),
                reason: format!(
                    "workflow '{}' has no task with that id",
                    self.workflow.name()
                ),
            })
    }

    fn stored_result(&self, node: u32) -> Result<Value, ValueError> {
        self.result_value(node)
            .ok_or_else(|| ValueError::NoSuchResult {
                task: self.task(node).id().to_owned(),
                reason: "it has not completed (yet); only upstream tasks are sure to have results"
                    .to_owned(),
            })
    }

    fn copy_result<T: Data>(&self, node: u32) -> Result<T, ValueError> {
        let id = self.task(node).id();
        self.stored_result(node)?
            .copy_as(|| format!("the result of task '{id}'"))
    }
}

/// The default CPU limit: the number of CPUs this process may use.
pub(crate) fn cpu_count() -> usize {
    // Asked once: it reads cgroup files under /proc, which a worker creating a context per
    // remote attempt would otherwise do thousands of times a second.
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
