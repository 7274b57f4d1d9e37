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
use crate::observe::{EventKind, Observers, ProgressBar, RunEvent, RunObserver};
use crate::program::Describe;
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

/// Emits [`EventKind::RunAbandoned`] when a run's future is dropped before the run ended.
struct Abandoned<'a> {
    shared: &'a RunShared,
    start: Instant,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.run_event(|| EventKind::RunAbandoned {
                elapsed: self.start.elapsed(),
                reason: "the run's future was dropped before it ended".to_owned(),
            });
        }
    }
}

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
        }
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

    /// Starts, before a run, the runners `workflow` will need: each handler's
    /// [`warm_up`](TaskHandler::warm_up) gets the workflow's tasks it runs (for the "process"
    /// and "docker" handlers, warm runners for the tasks that reuse them, up to the pool's size
    /// per environment). The workflow is validated first, as [`Self::validate`] does except for
    /// parameters fed from the initial channel. Returns how many runners were started.
    pub async fn warm_up(&self, workflow: &Workflow) -> Result<usize, RunError> {
        // A describing flag (`--graflow-list`...) starts nothing: the first run prints and exits.
        if crate::program::flags().describe.is_some() {
            return Ok(0);
        }
        let (graph, handlers) = self.prepare_with(workflow, None)?;
        let tasks = workflow.tasks();
        let warm_ups = handlers.iter().enumerate().map(|(h, slot)| {
            let mine: Vec<&Task> = tasks
                .iter()
                .enumerate()
                .filter(|&(node, _)| graph.node_handler[node] as usize == h)
                .map(|(_, task)| task)
                .collect();
            async move {
                if mine.is_empty() {
                    return Ok(0);
                }
                AssertUnwindSafe(slot.handler.warm_up(&mine))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|payload| {
                        Err(AttemptError::handler(
                            mine[0].id(),
                            mine[0].handler(),
                            format!("warm_up panicked: {}", panic_message(&*payload)),
                        ))
                    })
            }
        });
        let mut started = 0;
        for result in futures_util::future::join_all(warm_ups).await {
            started += result.map_err(|source| RunError::WarmUp {
                workflow: workflow.name().to_owned(),
                source: Box::new(source),
            })?;
        }
        tracing::info!(target: "graflow::engine", workflow = %workflow.name(), started, "runners warmed up");
        Ok(started)
    }

    /// Runs `workflow` as `options` say: its initial channel and parameters, checkpoints,
    /// observers of this run, or continuing a run from its checkpoint
    /// ([`RunOptions::resume_from`]). The one async entry point; [`WorkflowEngine::run`] is the
    /// same from a plain `main`.
    ///
    /// Everything is validated first; nothing runs if anything is wrong. Dropping the returned
    /// future cancels the run (tasks waiting on I/O or timers are dropped).
    pub async fn execute(
        &self,
        workflow: &Workflow,
        options: RunOptions,
    ) -> Result<RunReport, RunError> {
        let (channel, resume, options) = options.into_parts();
        match resume {
            Some(path) => {
                if !channel.is_empty() {
                    return Err(RunError::InvalidOptions {
                        workflow: workflow.name().to_owned(),
                        reason: format!(
                            "a resumed run continues with the channel of its checkpoint '{}', but {} initial channel value(s) were given; drop RunOptions::channel/param, or start a new run",
                            path.display(),
                            channel.len()
                        ),
                    });
                }
                self.resume(workflow, &path, &options).await
            }
            None => self.start(workflow, channel, &options).await,
        }
    }

    /// A new run.
    async fn start(
        &self,
        workflow: &Workflow,
        channel: Channel,
        options: &RunOptions,
    ) -> Result<RunReport, RunError> {
        if let Some(describe) = crate::program::flags().describe {
            self.describe(workflow, &channel, describe);
        }
        let (graph, slots) = self.prepare(workflow, &channel)?;
        let run_id: Arc<str> = Arc::from(new_run_id());
        let cadence = options.cadence();
        let shared = self.run_state(
            &run_id,
            workflow,
            graph,
            channel,
            cadence.is_some(),
            options.observers(),
        );
        let start = Start::fresh(&shared);
        let checkpointer = cadence
            .map(|c| Checkpointer::new(c, workflow, &run_id, 0))
            .transpose()?;
        self.drive(shared, slots, start, checkpointer, false).await
    }

    /// Continues the run whose checkpoint is at `path`: tasks it recorded as done do not run
    /// again; the others run as they would have (tasks that were running when it was written
    /// run again). The run keeps its id and writes its checkpoints to the same file, as often
    /// as before. A checkpoint of a finished run returns its report at once.
    ///
    /// Refused, with nothing run, when the file is not a whole checkpoint, or belongs to
    /// another workflow (name, tasks, handlers, edges or groups differ) or another build of the
    /// program ([`RunError::Checkpoint`]).
    async fn resume(
        &self,
        workflow: &Workflow,
        path: &std::path::Path,
        options: &RunOptions,
    ) -> Result<RunReport, RunError> {
        if let Some(describe) = crate::program::flags().describe {
            // Validated against the checkpoint's channel when it can be read.
            let channel = Checkpoint::load(path)
                .map(|mut c| c.channel())
                .unwrap_or_default();
            self.describe(workflow, &channel, describe);
        }
        // The lock first: what is read below is what the holder, if any, may be rewriting.
        let cadence_lock = Checkpointer::lock_for(path)?;
        let mut checkpoint = Checkpoint::load(path)?;
        checkpoint.check(workflow)?;
        let channel = checkpoint.channel();
        let (graph, slots) = self.prepare(workflow, &channel)?;
        let run_id: Arc<str> = Arc::from(checkpoint.run_id());
        let cadence = checkpoint.cadence();
        let sequence = checkpoint.sequence();
        let shared = self.run_state(&run_id, workflow, graph, channel, true, options.observers());
        let lookup = self.lookup();
        let mut slots = slots;
        let start = checkpoint.restore(&shared, &mut |handler, task| {
            if let Some(i) = slots.iter().position(|s| s.name == handler) {
                return Ok(i as u32);
            }
            let slot = lookup.lookup(handler, task).map_err(|p| p.to_string())?;
            slots.push(slot);
            Ok((slots.len() - 1) as u32)
        })?;
        tracing::info!(
            target: "graflow::engine",
            workflow = %workflow.name(),
            run_id = %run_id,
            done = start.records.iter().filter(|r| r.status == crate::report::TaskStatus::Succeeded).count(),
            "resuming from a checkpoint"
        );
        let checkpointer =
            Checkpointer::with_lock(cadence, workflow, &run_id, sequence, cadence_lock);
        self.drive(shared, slots, start, Some(checkpointer), true)
            .await
    }

    /// What `--graflow-list`, `--graflow-graph` and `--graflow-validate` do instead of the
    /// program's first run: print and exit.
    #[cold]
    fn describe(&self, workflow: &Workflow, channel: &Channel, describe: Describe) -> ! {
        use crate::program::print_and_exit;
        match describe {
            Describe::List => print_and_exit(&crate::program::list(workflow), 0),
            Describe::Mermaid => print_and_exit(&workflow.to_mermaid(), 0),
            Describe::Dot => print_and_exit(&workflow.to_dot(), 0),
            Describe::Validate => match self.prepare(workflow, channel) {
                Ok((graph, slots)) => {
                    let handlers: Vec<&str> = slots.iter().map(|s| &*s.name).collect();
                    print_and_exit(
                        &format!(
                            "workflow '{}' is valid: {} task(s), {} edge(s), handlers: {}\n",
                            workflow.name(),
                            graph.len(),
                            workflow.edges().count(),
                            handlers.join(", ")
                        ),
                        0,
                    )
                }
                Err(error) => print_and_exit(&format!("{error}\n"), 1),
            },
        }
    }

    /// A run's shared state, in this process, with this engine's handlers for tasks added while
    /// it runs.
    fn run_state(
        &self,
        run_id: &Arc<str>,
        workflow: &Workflow,
        graph: Arc<Graph>,
        channel: Channel,
        checkpoints: bool,
        observers: &Observers,
    ) -> Arc<RunShared> {
        let observers = self.observers.with(observers);
        Arc::new(RunShared::new(
            run_id.clone(),
            workflow.clone(),
            graph,
            channel,
            self.cpu.clone(),
            None,
            Some(Arc::new(self.lookup())),
            checkpoints,
            (!observers.is_empty()).then_some(observers),
        ))
    }

    /// Runs a prepared run from `start` and reports it.
    async fn drive(
        &self,
        shared: Arc<RunShared>,
        slots: Vec<Slot>,
        start: Start,
        checkpointer: Option<Checkpointer>,
        resumed: bool,
    ) -> Result<RunReport, RunError> {
        let workflow = shared.workflow.clone();
        let run_id = shared.run_id.clone();
        let graph = shared.graph.clone();
        let n = graph.len();
        let span = tracing::info_span!(target: "graflow::engine", "run", workflow = %workflow.name(), run_id = %run_id);
        let started_at = SystemTime::now();
        let run_start = Instant::now();
        let mut signals = if self.handle_signals {
            RunSignals::install()
        } else {
            None
        };
        shared.run_event(|| EventKind::RunStarted {
            // A resumed run's own tasks and those its checkpoint had added.
            tasks: start.records.len(),
            resumed,
            done: start
                .records
                .iter()
                .filter(|r| {
                    r.status == crate::report::TaskStatus::Succeeded
                        || (r.status == crate::report::TaskStatus::Failed && r.tolerated)
                })
                .count(),
        });
        // Tells observers if this future is dropped before the run has its report.
        let mut abandoned = Abandoned {
            shared: &shared,
            start: run_start,
            armed: shared.observers.is_some(),
        };
        let ended = async {
            tracing::info!(target: "graflow::engine", tasks = n, max_concurrency = self.max_concurrency, cpu_limit = self.cpu_limit, resumed, "run started");
            let run = scheduler::run(
                shared.clone(),
                slots,
                start,
                self.max_concurrency,
                run_start,
                checkpointer,
            );
            let ended = match signals.as_mut() {
                None => run.await,
                Some(catcher) => {
                    let ended = tokio::select! {
                        ended = run => Ok(ended),
                        signal = catcher.caught() => Err(signal),
                    };
                    match ended {
                        Ok(ended) => ended,
                        Err(signal) => {
                            // The run's future is dropped by now: its tasks are cancelled.
                            tracing::warn!(target: "graflow::engine", signal, "signal caught; the run is cancelled");
                            shared.run_event(|| EventKind::RunAbandoned {
                                elapsed: run_start.elapsed(),
                                reason: format!("the program was interrupted by signal {signal}"),
                            });
                            match signals.take() {
                                Some(catcher) => catcher.finish_interrupted(signal).await,
                                None => std::process::exit(128 + signal),
                            }
                        }
                    }
                }
            };
            tracing::info!(
                target: "graflow::engine",
                elapsed_us = run_start.elapsed().as_micros() as u64,
                failed = ended.failure.is_some(),
                "run finished"
            );
            ended
        }
        .instrument(span)
        .await;
        abandoned.armed = false;
        drop(abandoned);
        drop(signals);
        let elapsed = run_start.elapsed();
        let observers = shared.observers.clone();

        let Ended {
            mut records,
            failure,
            terminated,
            groups,
            checkpoint_error,
        } = ended;
        for (node, runner) in std::mem::take(
            &mut *shared
                .runners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ) {
            if let Some(record) = records.get_mut(node as usize) {
                record.runner = Some(runner);
            }
        }
        let total = shared.node_count();
        let added: Vec<Task> = (n..total).map(|i| shared.task(i as u32).clone()).collect();
        let group_records = group_records(&workflow, &records, &groups);
        // Tasks cancelled on a blocking thread may still hold the run; copy out in that case.
        let (results, channel) = match Arc::try_unwrap(shared) {
            Ok(run) => {
                let mut results: Vec<Option<Value>> = run
                    .results
                    .into_vec()
                    .into_iter()
                    .map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
                    .collect();
                for node in run.dynamic.nodes {
                    results.push(node.result.into_inner().unwrap_or_else(|e| e.into_inner()));
                }
                (results, run.channel)
            }
            Err(run) => (
                (0..total as u32).map(|i| run.result_value(i)).collect(),
                run.channel.snapshot(),
            ),
        };
        let terminated = terminated.map(|(node, message)| {
            let id = match workflow.tasks().get(node as usize) {
                Some(task) => task.id().to_owned(),
                None => added[node as usize - n].id().to_owned(),
            };
            (id, message)
        });
        let task_of = |node: u32| -> &Task {
            match workflow.tasks().get(node as usize) {
                Some(task) => task,
                None => &added[node as usize - n],
            }
        };
        let failed_task = match &failure {
            Some(Failure::Task { node, .. } | Failure::Cancelled { node, .. }) => {
                let task = task_of(*node);
                Some((task.id().to_owned(), task.handler().to_owned()))
            }
            _ => None,
        };
        let report = RunReport {
            workflow: workflow.clone(),
            graph,
            run_id,
            started_at,
            elapsed,
            records,
            results,
            channel,
            added,
            groups: group_records,
            failed: failure.is_some(),
            terminated,
            checkpoint_error,
            resumed,
        };
        if let Some(observers) = observers {
            observers.emit(&RunEvent {
                at: SystemTime::now(),
                run_id: report.run_id.clone(),
                workflow: Arc::from(workflow.name()),
                task: None,
                handler: None,
                attempt: 0,
                kind: EventKind::RunFinished {
                    succeeded: !report.failed,
                    elapsed,
                    counts: report.counts(),
                },
            });
        }
        match failure {
            None => Ok(report),
            Some(Failure::Task {
                attempts, error, ..
            }) => {
                let (task, handler) = failed_task.unwrap_or_default();
                Err(RunError::Failed(Box::new(RunFailure {
                    task,
                    handler,
                    attempts,
                    cause: error,
                    report,
                })))
            }
            Some(Failure::Cancelled { message, .. }) => {
                let (task, handler) = failed_task.unwrap_or_default();
                Err(RunError::Cancelled(Box::new(RunCancelled {
                    task,
                    handler,
                    message,
                    report,
                })))
            }
            Some(Failure::Group { group, reason }) => {
                let record = report.groups.get(group as usize);
                Err(RunError::GroupFailed(Box::new(GroupFailure {
                    group: record.map(|g| g.name.clone()).unwrap_or_default(),
                    policy: record.map(|g| g.policy.clone()).unwrap_or_default(),
                    reason,
                    failed: record.map(|g| g.failed.clone()).unwrap_or_default(),
                    report,
                })))
            }
        }
    }

    /// [`WorkflowEngine::execute`] from a plain (non-async) `main`: runs `workflow` to
    /// completion on a Tokio runtime of its own.
    ///
    /// ```
    /// # use graflow_core::{RunOptions, Workflow, WorkflowEngine};
    /// # #[graflow_macros::task(crate = "graflow_core")] fn hello() -> u32 { 1 }
    /// let mut wf = Workflow::builder("hello");
    /// wf.add(hello::task());
    /// let report = WorkflowEngine::new().run(&wf.build(), RunOptions::new()).unwrap();
    /// assert_eq!(report.counts().succeeded, 1);
    /// ```
    pub fn run(&self, workflow: &Workflow, options: RunOptions) -> Result<RunReport, RunError> {
        Self::block_on(self.execute(workflow, options))
    }

    /// Runs a run's future on a Tokio runtime of its own.
    fn block_on(
        run: impl std::future::Future<Output = Result<RunReport, RunError>>,
    ) -> Result<RunReport, RunError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(RunError::NestedRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("graflow-worker")
            .build()
            .map_err(RunError::Runtime)?;
        let result = runtime.block_on(run);
        // A cancelled synchronous body may still be running on a blocking thread; do not wait.
        runtime.shutdown_background();
        result
    }

    /// Validation: the graph's structure, every handler name, every handler's view of its
    /// tasks' configuration, and the parameters the initial channel must provide. Every
    /// problem is collected.
    fn prepare(&self, workflow: &Workflow, channel: &Channel) -> Result<Prepared, RunError> {
        self.prepare_with(workflow, Some(channel))
    }

    /// [`Self::prepare`]; without a channel, parameters fed from the channel are not checked.
    fn prepare_with(
        &self,
        workflow: &Workflow,
        channel: Option<&Channel>,
    ) -> Result<Prepared, RunError> {
        if crate::runner::uninitialised_runner() {
            return Err(RunError::RunnerNotInitialised);
        }
        let invalid = |problems| RunError::Invalid {
            workflow: workflow.name().to_owned(),
            problems,
        };
        let graph = workflow.graph().map_err(invalid)?;
        let tasks = workflow.tasks();
        let mut problems = Vec::new();

        let lookup = self.lookup();
        let mut handlers: Vec<Option<Slot>> = Vec::with_capacity(graph.handler_names.len());
        for (h, name) in graph.handler_names.iter().enumerate() {
            let node = graph
                .node_handler
                .iter()
                .position(|&x| x as usize == h)
                .unwrap_or(0);
            handlers.push(match lookup.lookup(name, tasks[node].id()) {
                Ok(slot) => Some(slot),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            });
        }

        for (node, task) in tasks.iter().enumerate() {
            if let Some(slot) = &handlers[graph.node_handler[node] as usize] {
                match std::panic::catch_unwind(AssertUnwindSafe(|| {
                    slot.handler.validate_task(task)
                })) {
                    Ok(Ok(())) => {}
                    Ok(Err(problem)) => problems.push(problem),
                    Err(payload) => problems.push(Problem::invalid_config(
                        task.id(),
                        task.handler(),
                        format!("validate_task panicked: {}", panic_message(&*payload)),
                    )),
                }
            }
        }

        let empty = Channel::new();
        let (needs, channel) = match channel {
            Some(channel) => (&graph.channel_needs[..], channel),
            None => (&[][..], &empty),
        };
        for need in needs {
            let task = &tasks[need.node as usize];
            let param = &task.def.params[need.param as usize];
            match channel.value(param.name) {
                None => problems.push(Problem::MissingInput {
                    task: task.id().to_owned(),
                    param: param.name.to_owned(),
                    type_name: param.ty.name(),
                    hint: format!(
                        "no upstream task has the id '{0}' or declares #[task(writes = [\"{0}\"])], and the run's initial channel has no key '{0}'; pass it with RunOptions::new().param(\"{0}\", value)",
                        param.name
                    ),
                }),
                Some(value) if !value.matches(param.ty) => problems.push(Problem::InputType {
                    task: task.id().to_owned(),
                    param: param.name.to_owned(),
                    expected: param.ty.name(),
                    found: value.type_name().to_owned(),
                    source_desc: format!("key '{}' of the run's initial channel", param.name),
                }),
                Some(_) => {}
            }
        }

        if problems.is_empty() {
            let handlers: Vec<Slot> = handlers.into_iter().flatten().collect();
            Ok((graph, handlers))
        } else {
            Err(invalid(problems))
        }
    }
}

/// The engine's handlers, as a run looks them up.
struct Lookup {
    handlers: Arc<BTreeMap<String, Registered>>,
    limits: Arc<BTreeMap<String, usize>>,
    per_run: Arc<BTreeMap<String, usize>>,
    gates: Gates,
}

/// Per handler with a limit, the gate every run of the engine (and of its clones) shares.
type Gates = Arc<std::sync::Mutex<BTreeMap<String, Arc<Gate>>>>;

impl Lookup {
    /// The engine's gate of handler `name`, made anew when its limit changed (runs already
    /// going keep the one they have).
    fn gate(&self, name: &str, limit: usize) -> Arc<Gate> {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match gates.get(name) {
            Some(gate) if gate.limit() == limit => gate.clone(),
            _ => {
                let gate = Gate::new(limit);
                gates.insert(name.to_owned(), gate.clone());
                gate
            }
        }
    }

    fn limit(&self, name: &str) -> Option<usize> {
        if let Some(&limit) = self.limits.get(name) {
            return Some(limit);
        }
        match self.handlers.get(name) {
            Some(Registered::Handler(entry)) => entry.handler.concurrency_limit().map(|l| l.max(1)),
            _ => None,
        }
    }
}

impl HandlerLookup for Lookup {
    fn lookup(&self, name: &str, task: &str) -> Result<Slot, Problem> {
        match self.handlers.get(name) {
            Some(Registered::Handler(entry)) => Ok(Slot {
                name: Cow::Owned(name.to_owned()),
                handler: entry.handler.clone(),
                direct: entry.direct,
                limit: self.per_run.get(name).copied().unwrap_or(usize::MAX),
                gate: self.limit(name).map(|limit| self.gate(name, limit)),
            }),
            Some(Registered::Ambiguous(modules)) => Err(Problem::AmbiguousHandler {
                task: task.to_owned(),
                handler: name.to_owned(),
                modules: modules.clone(),
            }),
            Some(Registered::Broken { module, message }) => Err(Problem::BrokenHandler {
                task: task.to_owned(),
                handler: name.to_owned(),
                module,
                message: message.clone(),
            }),
            None => Err(Problem::UnknownHandler {
                task: task.to_owned(),
                handler: name.to_owned(),
                registered: self.handlers.keys().cloned().collect(),
            }),
        }
    }
}

/// Every group's line of the report: the verdicts the scheduler reached for tolerant groups,
/// and for strict ones what their members did.
fn group_records(
    workflow: &Workflow,
    records: &[Record],
    states: &[GroupState],
) -> Vec<GroupRecord> {
    workflow
        .group_list()
        .iter()
        .enumerate()
        .map(|(g, group)| {
            let id = |m: u32| workflow.tasks()[m as usize].id().to_owned();
            let failed: Vec<(String, String)> = group
                .members
                .iter()
                .filter(|&&m| records[m as usize].status == crate::report::TaskStatus::Failed)
                .map(|&m| {
                    (
                        id(m),
                        records[m as usize]
                            .error
                            .as_deref()
                            .unwrap_or("failed")
                            .to_owned(),
                    )
                })
                .collect();
            let verdict = if group.policy.is_strict() {
                let all_done = group
                    .members
                    .iter()
                    .all(|&m| records[m as usize].status == crate::report::TaskStatus::Succeeded);
                match failed.first() {
                    Some((task, _)) => Some(Err(format!(
                        "member '{task}' failed; a strict group needs every member to succeed"
                    ))),
                    None if all_done => {
                        Some(Ok(format!("all {} members succeeded", group.members.len())))
                    }
                    None => None,
                }
            } else {
                states.get(g).and_then(|s| s.verdict.clone())
            };
            GroupRecord {
                name: group.name.clone(),
                policy: group.policy.describe(),
                members: group.members.iter().map(|&m| id(m)).collect(),
                failed,
                verdict,
            }
        })
        .collect()
}

fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
