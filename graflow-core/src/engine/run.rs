//! Running a workflow: the two entry points (`execute`, `run`), a new run or a resumed one, driving the scheduler under the run's span and signals, and the report or error it ends with.

use super::{
    Arc, AssertUnwindSafe, AtomicU64, AttemptError, BuildHasher, Channel, Checkpoint, Checkpointer,
    Describe, Ended, EventKind, Failure, FutureExt, Graph, GroupFailure, GroupRecord, GroupState,
    HandlerLookup, Hasher, Instant, Instrument, Observers, Ordering, RandomState, Record,
    RunCancelled, RunError, RunFailure, RunOptions, RunReport, RunShared, RunSignals, Slot, Start,
    SystemTime, Task, Value, Workflow, WorkflowEngine, panic_message, scheduler,
};
use crate::definition::Chain;
use crate::record::{RecordError, RecordErrorKind, RunInfo};
use crate::run::options::Resume;
use crate::run::{RunWaiting, emit_run_event};

/// Emits [`EventKind::RunAbandoned`] when a run's future is dropped before the run ended.
pub(super) struct Abandoned<'a> {
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

impl WorkflowEngine {
    /// Starts, before a run, the runners `workflow` will need: each handler's
    /// [`warm_up`](crate::TaskHandler::warm_up) gets the workflow's tasks it runs (for the "process"
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
        // `--graflow-resume ID` is for the program's first run that resumes nothing else.
        let resume = match resume {
            None => crate::program::take_resume_flag().map(Resume::Run),
            given => given,
        };
        let resume = match resume {
            Some(Resume::Path(path)) => Some(path),
            Some(Resume::Run(run_id)) => Some(self.checkpoint_of(workflow, &run_id).await?),
            None => None,
        };
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
                if let Some(other) = options.checkpoint_path()
                    && !same_file(other, &path)
                {
                    return Err(RunError::InvalidOptions {
                        workflow: workflow.name().to_owned(),
                        reason: format!(
                            "a resumed run keeps writing its checkpoints to '{}' as often as before, but RunOptions::checkpoint('{}') was given too; drop it, or start a new run",
                            path.display(),
                            other.display()
                        ),
                    });
                }
                self.resume(workflow, &path, &options).await
            }
            None => self.start(workflow, channel, &options).await,
        }
    }

    /// A new run.
    pub(super) async fn start(
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
        // Recorded once it surely starts (nothing above failed).
        self.begin_record(&shared, options.checkpoint_path(), false)
            .await?;
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
    pub(super) async fn resume(
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
        // Recorded once it surely continues (its checkpoint restored).
        self.begin_record(&shared, Some(path), true).await?;
        self.drive(shared, slots, start, Some(checkpointer), true)
            .await
    }

    /// What `--graflow-list`, `--graflow-graph` and `--graflow-validate` do instead of the
    /// program's first run: print and exit.
    #[cold]
    pub(super) fn describe(&self, workflow: &Workflow, channel: &Channel, describe: Describe) -> ! {
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
    pub(super) fn run_state(
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

    /// Where run `run_id` wrote its checkpoints, as this engine's recorder knows.
    async fn checkpoint_of(
        &self,
        workflow: &Workflow,
        run_id: &str,
    ) -> Result<std::path::PathBuf, RunError> {
        let failed = |source| RunError::Record {
            workflow: workflow.name().to_owned(),
            source,
            report: None,
        };
        let Some(recorder) = &self.recorder else {
            return Err(failed(RecordError::new(
                "off",
                RecordErrorKind::NotFound,
                format!(
                    "cannot resume run {run_id} by its id: this engine records its runs nowhere (GRAFLOW_STORE=off, or set_recorder(None)); resume it from its checkpoint file with RunOptions::resume_from, or give the engine the store that recorded it"
                ),
            )));
        };
        recorder.checkpoint_of(run_id).await.map_err(failed)
    }

    /// Tells the engine's recorder, if any, that a run starts, and gives the run its record.
    async fn begin_record(
        &self,
        shared: &Arc<RunShared>,
        checkpoint: Option<&std::path::Path>,
        resumed: bool,
    ) -> Result<(), RunError> {
        let Some(recorder) = &self.recorder else {
            return Ok(());
        };
        let info = RunInfo {
            run_id: shared.run_id.clone(),
            workflow: shared.workflow.clone(),
            build_id: crate::definition::build_id(),
            checkpoint: checkpoint.map(std::path::Path::to_path_buf),
            resumed,
            started_at: SystemTime::now(),
        };
        match recorder.begin(info).await {
            Ok(record) => {
                let _ = shared.record.set(record);
                Ok(())
            }
            Err(source) => Err(RunError::Record {
                workflow: shared.workflow.name().to_owned(),
                source,
                report: None,
            }),
        }
    }

    /// Runs a prepared run from `start` and reports it.
    pub(super) async fn drive(
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
            armed: shared.is_watched(),
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
                            // The program ends with the signal (no exit handlers run): what
                            // its store has not written yet is written first, for a while.
                            if let Some(record) = shared.record.get() {
                                let _ = tokio::time::timeout(
                                    std::time::Duration::from_secs(5),
                                    record.flush(),
                                )
                                .await;
                            }
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
        let record = shared.record.get().cloned();

        let Ended {
            mut records,
            failure,
            terminated,
            groups,
            checkpoint_error,
            waiting,
            checkpoint_path,
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
            run_id: run_id.clone(),
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
        let outcome = match failure {
            None if !waiting.is_empty() => Err(RunError::Waiting(Box::new(RunWaiting {
                run_id: run_id.to_string(),
                requests: waiting,
                checkpoint: checkpoint_path,
                report,
            }))),
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
        };
        if observers.is_some() || record.is_some() {
            let waiting = outcome
                .as_ref()
                .err()
                .and_then(RunError::waiting)
                .map_or(0, |w| w.requests.len());
            let (succeeded, counts) = match &outcome {
                Ok(report) => (true, report.counts()),
                Err(error) => (
                    false,
                    error.report().map(RunReport::counts).unwrap_or_default(),
                ),
            };
            emit_run_event(
                observers.as_ref(),
                record.as_deref(),
                &run_id,
                &Arc::from(workflow.name()),
                EventKind::RunFinished {
                    succeeded,
                    elapsed,
                    counts,
                    error: outcome.as_ref().err().map(|e| Chain(e).to_string()),
                    waiting,
                },
            );
        }
        crate::run::note_run_end(outcome.as_ref().err().and_then(RunError::waiting));
        let Some(record) = record else {
            return outcome;
        };
        match (record.finish().await, outcome) {
            (Ok(()), outcome) => outcome,
            (Err(source), Ok(report)) => Err(RunError::Record {
                workflow: workflow.name().to_owned(),
                source,
                report: Some(Box::new(report)),
            }),
            (Err(source), Err(error)) => {
                tracing::error!(target: "graflow::engine", run_id = %run_id, error = %source, "the failed run's record is incomplete");
                Err(error)
            }
        }
    }

    /// [`WorkflowEngine::execute`] from a plain (non-async) `main`: runs `workflow` to
    /// completion on graflow's background runtime.
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

    /// Runs a run's future on graflow's background runtime.
    pub(super) fn block_on(
        run: impl std::future::Future<Output = Result<RunReport, RunError>>,
    ) -> Result<RunReport, RunError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(RunError::NestedRuntime);
        }
        // The run's future is driven on this thread; what it spawns (async bodies, the
        // blocking pool's sync bodies) runs on the process's one background runtime, which
        // outlives the run: a cancelled synchronous body still running is not waited for.
        crate::runtime::handle()
            .map_err(RunError::Runtime)?
            .block_on(run)
    }
}

/// Every group's line of the report: the verdicts the scheduler reached for tolerant groups,
/// and for strict ones what their members did.
pub(super) fn group_records(
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

/// Whether `a` and `b` name the same file (both made absolute; the same when either cannot be).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => absolute(a) == absolute(b),
    }
}

pub(super) fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
