//! The engine: the handler registry, validation, running workflows, and how a run ends
//! ([`RunError`]).

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use tracing::Instrument;

use crate::channel::Channel;
use crate::definition::{AttemptError, panic_message};
use crate::graph::{Graph, Problem, Task, Workflow};
use crate::handlers::{DirectHandler, ProcessHandler};
use crate::interrupt::RunSignals;
use crate::observe::{EventKind, Observers, ProgressBar, RunObserver};
use crate::program::Describe;
use crate::record::RunRecorder;
use crate::report::{GroupRecord, Record, RunReport};
use crate::run::checkpoint::{Checkpoint, Checkpointer};
use crate::run::control::HandlerLookup;
use crate::run::gate::Gate;
use crate::run::scheduler::{self, Ended, Failure, GroupState, Slot, Start};
use crate::run::{
    CpuPool, GroupFailure, HandlerRegistration, RunCancelled, RunError, RunFailure, RunOptions,
    RunShared, TaskHandler, cpu_count,
};
use crate::value::Value;
use futures_util::FutureExt;

mod prepare;
mod run;

use prepare::{Gates, Lookup};

/// A validated run: the compiled graph and one slot per distinct handler name.
type Prepared = (Arc<Graph>, Vec<Slot>);

/// The default overall limit of tasks in flight in one run.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;

#[derive(Clone)]
struct Entry {
    handler: Arc<dyn TaskHandler>,
    /// The built-in [`DirectHandler`], which has the scheduler's inline fast path.
    direct: bool,
}

#[derive(Clone)]
enum Registered {
    Handler(Entry),
    /// Claimed by several `register_handler!` of the program.
    Ambiguous(Vec<&'static str>),
    /// Its `register_handler!` constructor panicked.
    Broken {
        module: &'static str,
        message: String,
    },
}

/// Runs workflows. Knows the "direct" and "process" handlers, every handler registered at link
/// time with [`register_handler!`](crate::register_handler) (with the `docker` feature of
/// `graflow`, "docker"), and those added with [`WorkflowEngine::register_handler`].
///
/// How many tasks run at once depends on the kind of work:
/// - synchronous bodies that run on the blocking pool run at most [`cpu_limit`](WorkflowEngine::cpu_limit)
///   at once (default: the number of CPUs), in the order they became ready: CPU-bound work
///   never oversubscribes the machine;
/// - async bodies and out-of-process tasks only wait, and are limited by their handler's limit
///   ([`TaskHandler::concurrency_limit`], "docker": 16, or [`WorkflowEngine::set_handler_concurrency`])
///   and the overall [`max_concurrency`](WorkflowEngine::max_concurrency) (default 1024).
#[derive(Clone)]
pub struct WorkflowEngine {
    handlers: Arc<BTreeMap<String, Registered>>,
    handler_limits: Arc<BTreeMap<String, usize>>,
    per_run_limits: Arc<BTreeMap<String, usize>>,
    /// The handlers' limits over all runs, shared by the runs (and the engine's clones).
    gates: Gates,
    max_concurrency: usize,
    cpu: Arc<CpuPool>,
    cpu_limit: usize,
    handle_signals: bool,
    observers: Observers,
    /// Where runs are recorded: the program's default recorder unless set otherwise.
    recorder: Option<Arc<dyn RunRecorder>>,
}

impl std::fmt::Debug for WorkflowEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowEngine")
            .field("handlers", &self.handler_names())
            .field("handler_limits", &self.handler_limits)
            .field("max_concurrency", &self.max_concurrency)
            .field("cpu_limit", &self.cpu_limit)
            .field("handle_signals", &self.handle_signals)
            .field("observers", &self.observers)
            .field("recorder", &self.recorder.as_ref().map(|r| r.describe()))
            .finish_non_exhaustive()
    }
}

impl Default for WorkflowEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkflowEngine {
    /// An engine with "direct", "process" and the link-time handlers; a CPU limit of the number
    /// of CPUs and an overall limit of [`DEFAULT_MAX_CONCURRENCY`] tasks in flight.
    pub fn new() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "direct".to_owned(),
            Registered::Handler(Entry {
                handler: Arc::new(DirectHandler),
                direct: true,
            }),
        );
        handlers.insert(
            "process".to_owned(),
            Registered::Handler(Entry {
                handler: Arc::new(ProcessHandler::new()),
                direct: false,
            }),
        );
        let mut by_name: BTreeMap<&'static str, Vec<&'static HandlerRegistration>> =
            BTreeMap::new();
        for registration in HandlerRegistration::all() {
            by_name
                .entry(registration.name)
                .or_default()
                .push(registration);
        }
        for (name, registrations) in by_name {
            let entry = match registrations.as_slice() {
                [one] => match std::panic::catch_unwind(AssertUnwindSafe(one.constructor)) {
                    Ok(handler) => Registered::Handler(Entry {
                        handler,
                        direct: false,
                    }),
                    Err(payload) => Registered::Broken {
                        module: one.module,
                        message: panic_message(&*payload),
                    },
                },
                many => {
                    let mut modules: Vec<&'static str> = many.iter().map(|r| r.module).collect();
                    modules.sort_unstable();
                    Registered::Ambiguous(modules)
                }
            };
            handlers.insert(name.to_owned(), entry);
        }
        let cpu_limit = cpu_count();
        let mut observers = Observers::default();
        if crate::program::flags().progress {
            observers.push(Arc::new(ProgressBar::stderr()));
        }
        WorkflowEngine {
            handlers: Arc::new(handlers),
            handler_limits: Arc::new(BTreeMap::new()),
            per_run_limits: Arc::new(BTreeMap::new()),
            gates: Gates::default(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            cpu: CpuPool::new(cpu_limit),
            cpu_limit,
            handle_signals: true,
            observers,
            recorder: crate::record::default_recorder(),
        }
    }

    /// Where this engine records its runs: `Some(recorder)` (a run store, e.g.
    /// `graflow::store::Store`'s), or `None` for nowhere. By default, the program's default
    /// recorder: with the `store` feature of `graflow`, the store `GRAFLOW_STORE` names
    /// (`sqlite:$GRAFLOW_HOME/runs.db` when unset; `off` for none).
    pub fn set_recorder(&mut self, recorder: Option<Arc<dyn RunRecorder>>) -> &mut Self {
        self.recorder = recorder;
        self
    }

    /// Where this engine records its runs ([`WorkflowEngine::set_recorder`]).
    pub fn recorder(&self) -> Option<&Arc<dyn RunRecorder>> {
        self.recorder.as_ref()
    }

    /// Adds an observer of every run this engine starts afterwards: it sees each
    /// [`RunEvent`](crate::RunEvent) (run started and finished; task ready, started, retrying,
    /// succeeded, failed, cancelled; runners' output lines). An engine without observers builds
    /// no event. [`RunOptions::observer`] adds one for a single run.
    pub fn add_observer(&mut self, observer: impl RunObserver) -> &mut Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Adds `handler` under `name`, replacing any handler of that name (replacing "docker" with
    /// [`DirectHandler`] runs a Docker workflow locally).
    pub fn register_handler<H: TaskHandler>(
        &mut self,
        name: impl Into<String>,
        handler: H,
    ) -> &mut Self {
        let direct = TypeId::of::<H>() == TypeId::of::<DirectHandler>();
        self.insert(name.into(), Arc::new(handler), direct)
    }

    /// [`WorkflowEngine::register_handler`] for a handler already in an `Arc`.
    pub fn register_handler_arc(
        &mut self,
        name: impl Into<String>,
        handler: Arc<dyn TaskHandler>,
    ) -> &mut Self {
        self.insert(name.into(), handler, false)
    }

    fn insert(&mut self, name: String, handler: Arc<dyn TaskHandler>, direct: bool) -> &mut Self {
        tracing::debug!(target: "graflow::engine", handler = %name, "handler registered");
        Arc::make_mut(&mut self.handlers)
            .insert(name, Registered::Handler(Entry { handler, direct }));
        self
    }

    /// Builder form of [`WorkflowEngine::register_handler`].
    pub fn with_handler(mut self, name: impl Into<String>, handler: impl TaskHandler) -> Self {
        self.register_handler(name, handler);
        self
    }

    /// The registered handler names, sorted.
    pub fn handler_names(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }

    /// The handler registered under `name`.
    pub fn handler(&self, name: &str) -> Option<Arc<dyn TaskHandler>> {
        match self.handlers.get(name) {
            Some(Registered::Handler(entry)) => Some(entry.handler.clone()),
            _ => None,
        }
    }

    /// The overall limit of tasks in flight in one run, whatever their kind (default
    /// [`DEFAULT_MAX_CONCURRENCY`]).
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Sets the overall limit of tasks in flight in one run (at least 1).
    pub fn set_max_concurrency(&mut self, limit: usize) -> &mut Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// How many synchronous bodies may run on the blocking pool at once, across the runs of
    /// this engine (default: the number of CPUs).
    pub fn cpu_limit(&self) -> usize {
        self.cpu_limit
    }

    /// Sets the CPU limit (at least 1). Runs started afterwards use it.
    pub fn set_cpu_limit(&mut self, limit: usize) -> &mut Self {
        self.cpu_limit = limit.max(1);
        self.cpu = CpuPool::new(self.cpu_limit);
        self
    }

    /// Builder form of [`WorkflowEngine::set_cpu_limit`].
    pub fn with_cpu_limit(mut self, limit: usize) -> Self {
        self.set_cpu_limit(limit);
        self
    }

    /// How many tasks of handler `name` may be in flight at once in one run: what
    /// [`WorkflowEngine::set_handler_concurrency`] set, else the handler's own
    /// [`TaskHandler::concurrency_limit`], else `None` (only the overall limit applies).
    pub fn handler_concurrency(&self, name: &str) -> Option<usize> {
        self.lookup().limit(name)
    }

    /// The handler registry as a run sees it (for tasks added while it runs).
    fn lookup(&self) -> Lookup {
        Lookup {
            handlers: self.handlers.clone(),
            limits: self.handler_limits.clone(),
            per_run: self.per_run_limits.clone(),
            gates: self.gates.clone(),
        }
    }

    /// Limits how many tasks of handler `name` this engine has in flight at once, over all
    /// its runs (at least 1), replacing the handler's own limit: e.g.
    /// `engine.set_handler_concurrency("docker", 4)`. Runs started afterwards use it.
    pub fn set_handler_concurrency(&mut self, name: impl Into<String>, limit: usize) -> &mut Self {
        Arc::make_mut(&mut self.handler_limits).insert(name.into(), limit.max(1));
        self
    }

    /// Limits how many tasks of handler `name` one run has in flight at once (at least 1), on
    /// top of the engine's limit over all runs ([`WorkflowEngine::set_handler_concurrency`]):
    /// for a program that runs many workflows at once and wants each to get its share.
    pub fn set_handler_concurrency_per_run(
        &mut self,
        name: impl Into<String>,
        limit: usize,
    ) -> &mut Self {
        Arc::make_mut(&mut self.per_run_limits).insert(name.into(), limit.max(1));
        self
    }

    /// Builder form of [`WorkflowEngine::set_handler_concurrency`].
    pub fn with_handler_concurrency(mut self, name: impl Into<String>, limit: usize) -> Self {
        self.set_handler_concurrency(name, limit);
        self
    }

    /// Builder form of [`WorkflowEngine::set_max_concurrency`].
    pub fn with_max_concurrency(mut self, limit: usize) -> Self {
        self.set_max_concurrency(limit);
        self
    }

    /// Checks `workflow` without running it, as a run with an empty initial channel would.
    pub fn validate(&self, workflow: &Workflow) -> Result<(), RunError> {
        self.validate_with(workflow, &Channel::new())
    }

    /// Whether a run catches SIGINT and SIGTERM (default: yes, each that the program neither
    /// handles nor ignores). A caught signal cancels the run, waits for its clean-up (child
    /// processes killed, containers removed) and then ends the program as the signal would
    /// have; see the `interrupt` module. `false` leaves signals entirely to the program.
    pub fn with_signal_handling(mut self, enabled: bool) -> Self {
        self.handle_signals = enabled;
        self
    }

    /// Checks `workflow` as a run with this initial channel would.
    pub fn validate_with(&self, workflow: &Workflow, channel: &Channel) -> Result<(), RunError> {
        self.prepare(workflow, channel).map(drop)
    }
}
