//! The engine: the handler registry, validation, and running workflows.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tracing::Instrument;

use crate::channel::Channel;
use crate::context::RunShared;
use crate::error::{Error, Result, panic_message};
use crate::handler::{HandlerRegistration, TaskHandler};
use crate::handlers::{DirectHandler, ProcessHandler};
use crate::interrupt::RunSignals;
use crate::report::RunReport;
use crate::scheduler;
use crate::workflow::{Graph, Workflow};

/// A validated run: the compiled graph and one handler per distinct handler name.
type Prepared = (Arc<Graph>, Vec<Arc<dyn TaskHandler>>);

#[derive(Clone)]
enum Registered {
    Handler(Arc<dyn TaskHandler>),
    /// Claimed by several `register_handler!` of the program.
    Ambiguous(Vec<&'static str>),
    /// Its `register_handler!` constructor panicked.
    Broken {
        module: &'static str,
        message: String,
    },
}

/// Runs workflows. Knows the "direct" handler, every handler registered at link time with
/// [`register_handler!`](crate::register_handler), and those added with
/// [`WorkflowEngine::register_handler`].
#[derive(Clone)]
pub struct WorkflowEngine {
    handlers: BTreeMap<String, Registered>,
    max_concurrency: usize,
    handle_signals: bool,
}

impl Default for WorkflowEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkflowEngine {
    /// An engine with "direct", the link-time handlers, and a concurrency limit of the number
    /// of CPUs.
    pub fn new() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "direct".to_owned(),
            Registered::Handler(Arc::new(DirectHandler)),
        );
        handlers.insert(
            "process".to_owned(),
            Registered::Handler(Arc::new(ProcessHandler::new())),
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
                    Ok(handler) => Registered::Handler(handler),
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
        let max_concurrency = std::thread::available_parallelism().map_or(1, |n| n.get());
        WorkflowEngine {
            handlers,
            max_concurrency,
            handle_signals: true,
        }
    }

    /// Adds `handler` under `name`, replacing any handler of that name (replacing "docker" with
    /// [`DirectHandler`] runs a Docker workflow locally).
    pub fn register_handler(
        &mut self,
        name: impl Into<String>,
        handler: impl TaskHandler,
    ) -> &mut Self {
        self.register_handler_arc(name, Arc::new(handler))
    }

    /// [`WorkflowEngine::register_handler`] for a handler already in an `Arc`.
    pub fn register_handler_arc(
        &mut self,
        name: impl Into<String>,
        handler: Arc<dyn TaskHandler>,
    ) -> &mut Self {
        let name = name.into();
        tracing::debug!(target: "graflow::engine", handler = %name, "handler registered");
        self.handlers.insert(name, Registered::Handler(handler));
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
            Some(Registered::Handler(handler)) => Some(handler.clone()),
            _ => None,
        }
    }

    /// How many tasks may wait on I/O, timers or the blocking pool at once.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Sets the concurrency limit (at least 1).
    pub fn set_max_concurrency(&mut self, limit: usize) -> &mut Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// Builder form of [`WorkflowEngine::set_max_concurrency`].
    pub fn with_max_concurrency(mut self, limit: usize) -> Self {
        self.set_max_concurrency(limit);
        self
    }

    /// Checks `workflow` without running it, as a run with an empty initial channel would.
    pub fn validate(&self, workflow: &Workflow) -> Result<()> {
        self.validate_with(workflow, &Channel::new())
    }

    /// Whether a run catches SIGINT and SIGTERM (default: yes, when the program has no handler
    /// of its own). A caught signal cancels the run, waits for its clean-up (child processes
    /// killed, containers removed) and then ends the program as the signal would have; see
    /// the `interrupt` module. `false` leaves signals entirely to the program.
    pub fn with_signal_handling(mut self, enabled: bool) -> Self {
        self.handle_signals = enabled;
        self
    }

    /// Checks `workflow` as a run with this initial channel would.
    pub fn validate_with(&self, workflow: &Workflow, channel: &Channel) -> Result<()> {
        self.prepare(workflow, channel).map(drop)
    }

    /// Runs `workflow` with an empty initial channel.
    pub async fn execute(&self, workflow: &Workflow) -> Result<RunReport> {
        self.execute_with(workflow, Channel::new()).await
    }

    /// Runs `workflow` with `channel` as its initial channel.
    ///
    /// Everything is validated first; nothing runs if anything is wrong. Dropping the returned
    /// future cancels the run (tasks waiting on I/O or timers are dropped).
    pub async fn execute_with(&self, workflow: &Workflow, channel: Channel) -> Result<RunReport> {
        let (graph, handlers) = self.prepare(workflow, &channel)?;
        let n = graph.len();
        let run_id: Arc<str> = Arc::from(new_run_id());
        let span = tracing::info_span!(target: "graflow::engine", "run", workflow = %workflow.name(), run_id = %run_id);
        let shared = Arc::new(RunShared {
            run_id: run_id.clone(),
            workflow: workflow.clone(),
            graph: graph.clone(),
            handlers,
            results: (0..n).map(|_| Mutex::new(None)).collect(),
            channel,
            upstream: None,
        });
        let started_at = SystemTime::now();
        let run_start = Instant::now();
        let mut signals = if self.handle_signals {
            RunSignals::install()
        } else {
            None
        };
        let (records, failure) = async {
            tracing::info!(target: "graflow::engine", tasks = n, max_concurrency = self.max_concurrency, "run started");
            let run = scheduler::run(shared.clone(), self.max_concurrency, run_start);
            let outcome = match signals.as_mut() {
                None => run.await,
                Some(catcher) => {
                    let ended = tokio::select! {
                        outcome = run => Ok(outcome),
                        signal = catcher.caught() => Err(signal),
                    };
                    match ended {
                        Ok(outcome) => outcome,
                        Err(signal) => {
                            // The run's future is dropped by now: its tasks are cancelled.
                            tracing::warn!(target: "graflow::engine", signal, "signal caught; the run is cancelled");
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
                failed = outcome.1.is_some(),
                "run finished"
            );
            outcome
        }
        .instrument(span)
        .await;
        drop(signals);
        let elapsed = run_start.elapsed();

        // Tasks cancelled on a blocking thread may still hold the run; copy out in that case.
        let (results, channel) = match Arc::try_unwrap(shared) {
            Ok(run) => (
                run.results
                    .into_vec()
                    .into_iter()
                    .map(|slot| slot.into_inner().unwrap_or_else(|e| e.into_inner()))
                    .collect(),
                run.channel,
            ),
            Err(run) => (
                (0..n as u32).map(|i| run.result_value(i)).collect(),
                run.channel.snapshot(),
            ),
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
        };
        match failure {
            None => Ok(report),
            Some(failure) => {
                let task = &workflow.tasks()[failure.node as usize];
                Err(Error::TaskFailed {
                    task: task.id().to_owned(),
                    handler: task.handler().to_owned(),
                    attempts: failure.attempts,
                    cause: Box::new(failure.error),
                    report: Box::new(report),
                })
            }
        }
    }

    /// Runs `workflow` to completion from a plain (non-async) `main`, on a Tokio runtime of its
    /// own.
    pub fn run(&self, workflow: &Workflow) -> Result<RunReport> {
        self.run_with(workflow, Channel::new())
    }

    /// [`WorkflowEngine::run`] with an initial channel.
    pub fn run_with(&self, workflow: &Workflow, channel: Channel) -> Result<RunReport> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::NestedRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("graflow-worker")
            .build()
            .map_err(Error::Runtime)?;
        let result = runtime.block_on(self.execute_with(workflow, channel));
        // A cancelled synchronous body may still be running on a blocking thread; do not wait.
        runtime.shutdown_background();
        result
    }

    /// Validation: the graph's structure, every handler name, every handler's view of its
    /// tasks' configuration, and the parameters the initial channel must provide. Every
    /// problem is collected.
    fn prepare(&self, workflow: &Workflow, channel: &Channel) -> Result<Prepared> {
        crate::runner::check_initialised()?;
        let invalid = |problems| Error::Invalid {
            workflow: workflow.name().to_owned(),
            problems,
        };
        let graph = workflow.graph().map_err(invalid)?;
        let tasks = workflow.tasks();
        let mut problems = Vec::new();

        let mut handlers: Vec<Option<Arc<dyn TaskHandler>>> =
            Vec::with_capacity(graph.handler_names.len());
        for (h, name) in graph.handler_names.iter().enumerate() {
            let first_user = || {
                let node = graph
                    .node_handler
                    .iter()
                    .position(|&x| x as usize == h)
                    .unwrap_or(0);
                tasks[node].id().to_owned()
            };
            handlers.push(match self.handlers.get(name.as_ref()) {
                Some(Registered::Handler(handler)) => Some(handler.clone()),
                Some(Registered::Ambiguous(modules)) => {
                    problems.push(Error::AmbiguousHandler {
                        task: first_user(),
                        handler: name.to_string(),
                        modules: modules.clone(),
                    });
                    None
                }
                Some(Registered::Broken { module, message }) => {
                    problems.push(Error::handler(
                        &first_user(),
                        name,
                        format!("its constructor (register_handler! in {module}) panicked when the engine was created: {message}"),
                    ));
                    None
                }
                None => {
                    problems.push(Error::UnknownHandler {
                        task: first_user(),
                        handler: name.to_string(),
                        registered: self.handlers.keys().cloned().collect(),
                    });
                    None
                }
            });
        }

        for (node, task) in tasks.iter().enumerate() {
            if let Some(handler) = &handlers[graph.node_handler[node] as usize] {
                match std::panic::catch_unwind(AssertUnwindSafe(|| handler.validate_task(task))) {
                    Ok(Ok(())) => {}
                    Ok(Err(problem)) => problems.push(problem),
                    Err(payload) => problems.push(Error::handler(
                        task.id(),
                        task.handler(),
                        format!("validate_task panicked: {}", panic_message(&*payload)),
                    )),
                }
            }
        }

        for need in &graph.channel_needs {
            let task = &tasks[need.node as usize];
            let param = &task.def.params[need.param as usize];
            match channel.value(param.name) {
                None => problems.push(Error::MissingInput {
                    task: task.id().to_owned(),
                    param: param.name.to_owned(),
                    type_name: param.ty.name(),
                    hint: format!(
                        "no upstream task has the id '{0}' or declares #[task(writes = [\"{0}\"])], and the run's initial channel has no key '{0}'; pass it with engine.execute_with(&workflow, Channel::new().with(\"{0}\", value))",
                        param.name
                    ),
                }),
                Some(value) if !value.matches(param.ty) => problems.push(Error::InputType {
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
            let handlers = handlers.into_iter().flatten().collect();
            Ok((graph, handlers))
        } else {
            Err(invalid(problems))
        }
    }
}

fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
