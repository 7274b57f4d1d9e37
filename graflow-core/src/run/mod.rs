//! The run: the state one run shares between its tasks, the contexts handlers and bodies see of
//! it, the policy that executes a body (inline, on the blocking pool, under the CPU limit), the
//! handler contract, and the scheduler that walks the graph.

mod body;
mod body_access;
pub(crate) mod checkpoint;
mod context;
pub(crate) mod control;
mod cpu;
mod error;
pub(crate) mod feedback;
pub(crate) mod gate;
mod handler;
pub(crate) mod options;
pub(crate) mod scheduler;
mod standalone;
pub(crate) mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::channel::Channel;
use crate::graph::{Graph, Source, Task, Workflow};
use crate::observe::{EventKind, Observers, RunEvent};
use crate::record::{RecordedEvent, RunRecord};
use crate::value::{Data, Value, ValueError};

pub use checkpoint::{Checkpoint, CheckpointError};
pub use context::{ExecutionContext, TimeoutPause};
pub use control::{ControlError, Iteration};
pub(crate) use cpu::CpuPool;
pub(crate) use error::note_run_end;
pub use error::{GroupFailure, RunCancelled, RunError, RunFailure, RunWaiting};
pub use error::{MainFailed, MainFailedOther, WAITING_EXIT_CODE, exit_if_waiting};
pub use feedback::{Asker, WaitingRequest};
pub use handler::{HandlerRegistration, TaskHandler};
pub use options::RunOptions;

/// The state one run shares between its tasks.
pub(crate) struct RunShared {
    pub run_id: Arc<str>,
    pub workflow: Workflow,
    pub graph: Arc<Graph>,
    pub results: Box<[Mutex<Option<Value>>]>,
    pub channel: Channel,
    /// Where synchronous bodies too long to run inline run: at most the engine's CPU limit at
    /// once, whatever else is in flight.
    pub cpu: Arc<CpuPool>,
    /// In a runner process: the results of the task's direct upstream tasks, as the handler
    /// sent them (the graph there has the one task only). `None` in a normal run.
    pub upstream: Option<Vec<(String, Value)>>,
    /// Where tasks' last attempts ran, as their handlers described it (a worker, a container, a
    /// pid): see [`ExecutionContext::set_runner`]. Only out-of-process handlers write here.
    pub runners: Mutex<rustc_hash::FxHashMap<u32, Box<str>>>,
    /// Nodes, edges and inputs added while the run runs, and the requests tasks made.
    pub dynamic: control::Dynamic,
    /// The engine's handlers, for tasks added while running (`None` in a runner, which records
    /// requests for the engine to validate).
    pub registry: Option<Arc<dyn control::HandlerLookup>>,
    /// Whether the run writes checkpoints (so `ctx.checkpoint()` may ask for one).
    pub checkpoints: bool,
    /// Who sees the run's events; `None`: nobody, and no event is built.
    pub observers: Option<Observers>,
    /// Where the run's events are recorded (a run store), if anywhere: set once the run is
    /// sure to start (its checkpoint restored), before its first event.
    pub record: std::sync::OnceLock<Arc<dyn RunRecord>>,
    /// The workflow's name, shared by the run's events.
    pub workflow_name: Arc<str>,
    /// Where the tasks' questions go when not to the engine's store (a runner's host, a
    /// worker's queue): set once, before the task runs.
    pub asker: std::sync::OnceLock<Arc<dyn feedback::Asker>>,
    /// Which tasks stopped to wait for an answer.
    pub desk: feedback::Desk,
}

impl RunShared {
    /// A run's shared state with nothing added yet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        run_id: Arc<str>,
        workflow: Workflow,
        graph: Arc<Graph>,
        channel: Channel,
        cpu: Arc<CpuPool>,
        upstream: Option<Vec<(String, Value)>>,
        registry: Option<Arc<dyn control::HandlerLookup>>,
        checkpoints: bool,
        observers: Option<Observers>,
    ) -> RunShared {
        let n = graph.len();
        RunShared {
            workflow_name: Arc::from(workflow.name()),
            observers,
            record: std::sync::OnceLock::new(),
            asker: std::sync::OnceLock::new(),
            desk: feedback::Desk::default(),
            run_id,
            workflow,
            graph,
            results: (0..n).map(|_| Mutex::new(None)).collect(),
            channel,
            cpu,
            upstream,
            runners: Mutex::new(rustc_hash::FxHashMap::default()),
            dynamic: control::Dynamic::default(),
            registry,
            checkpoints,
        }
    }

    /// Whether anyone sees the run's events: an observer or a recorder.
    #[inline]
    pub(crate) fn is_watched(&self) -> bool {
        self.observers.is_some() || self.record.get().is_some()
    }

    /// Hands an event of task `node` (`attempt`) to the run's observers and its record, if
    /// any (and builds it only then).
    #[inline]
    pub(crate) fn task_event(&self, node: u32, attempt: u32, kind: impl FnOnce() -> EventKind) {
        if self.is_watched() {
            self.emit_task_event(node, attempt, kind(), None);
        }
    }

    /// [`RunShared::task_event`] for a success, whose record sees the task's result.
    #[inline]
    pub(crate) fn task_succeeded(&self, node: u32, attempt: u32, duration: std::time::Duration) {
        if self.is_watched() {
            let output = match self.record.get() {
                Some(_) => self.result_value(node),
                None => None,
            };
            self.emit_task_event(
                node,
                attempt,
                EventKind::TaskSucceeded { duration },
                output.as_ref(),
            );
        }
    }

    #[cold]
    #[inline(never)]
    fn emit_task_event(&self, node: u32, attempt: u32, kind: EventKind, output: Option<&Value>) {
        let task = self.task(node);
        let at = std::time::SystemTime::now();
        if let Some(record) = self.record.get() {
            record.event(&RecordedEvent {
                at,
                node: Some(node),
                task: Some(task.id()),
                handler: Some(task.handler()),
                attempt,
                kind: &kind,
                output,
            });
        }
        if let Some(observers) = &self.observers {
            observers.emit(&RunEvent {
                at,
                run_id: self.run_id.clone(),
                workflow: self.workflow_name.clone(),
                task: Some(task.id().to_owned()),
                handler: Some(task.handler().to_owned()),
                attempt,
                kind,
            });
        }
    }

    /// Hands an event of the run itself to its observers and its record, if any.
    pub(crate) fn run_event(&self, kind: impl FnOnce() -> EventKind) {
        if self.is_watched() {
            emit_run_event(
                self.observers.as_ref(),
                self.record.get().map(|r| &**r),
                &self.run_id,
                &self.workflow_name,
                kind(),
            );
        }
    }

    pub(crate) fn task(&self, node: u32) -> &Task {
        match self.workflow.tasks().get(node as usize) {
            Some(task) => task,
            None => &self.dyn_node(node).task,
        }
    }

    /// A node added while running (`node` must be one).
    fn dyn_node(&self, node: u32) -> &control::DynNode {
        let at = node as usize - self.static_len();
        self.dynamic
            .nodes
            .get(at)
            .unwrap_or_else(|| unreachable!("node {node} was never added to the run"))
    }

    /// Every node: the workflow's and those added while running.
    pub(crate) fn node_count(&self) -> usize {
        self.static_len() + self.dynamic.nodes.count()
    }

    /// Where each parameter of `node` comes from.
    pub(crate) fn sources(&self, node: u32) -> &[Source] {
        if (node as usize) < self.static_len() {
            self.graph.sources(node)
        } else {
            &self.dyn_node(node).sources
        }
    }

    /// The node with id `id`, the workflow's or one added while running.
    pub(crate) fn index_of(&self, id: &str) -> Option<u32> {
        self.graph.index_of(id).or_else(|| self.dynamic.node_of(id))
    }

    /// The direct predecessors of `node`, edges added while running included.
    pub(crate) fn preds(&self, node: u32) -> Vec<u32> {
        let mut preds = if (node as usize) < self.static_len() {
            self.graph.preds(node).to_vec()
        } else {
            Vec::new()
        };
        preds.extend(self.dynamic.extra_preds(node));
        preds
    }

    fn slot(&self, node: u32) -> MutexGuard<'_, Option<Value>> {
        match self.results.get(node as usize) {
            Some(slot) => slot,
            None => &self.dyn_node(node).result,
        }
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn result_value(&self, node: u32) -> Option<Value> {
        self.slot(node).clone()
    }

    pub(crate) fn store_result(&self, node: u32, value: Value) {
        *self.slot(node) = Some(value);
    }

    pub(crate) fn clear_result(&self, node: u32) {
        *self.slot(node) = None;
    }

    fn node_of(&self, id: &str) -> Result<u32, ValueError> {
        self.index_of(id).ok_or_else(|| ValueError::NoSuchResult {
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

/// Hands an event of a run itself to its observers and its record.
pub(crate) fn emit_run_event(
    observers: Option<&Observers>,
    record: Option<&dyn RunRecord>,
    run_id: &Arc<str>,
    workflow: &Arc<str>,
    kind: EventKind,
) {
    let at = std::time::SystemTime::now();
    if let Some(record) = record {
        record.event(&RecordedEvent {
            at,
            node: None,
            task: None,
            handler: None,
            attempt: 0,
            kind: &kind,
            output: None,
        });
    }
    if let Some(observers) = observers {
        observers.emit(&RunEvent {
            at,
            run_id: run_id.clone(),
            workflow: workflow.clone(),
            task: None,
            handler: None,
            attempt: 0,
            kind,
        });
    }
}
