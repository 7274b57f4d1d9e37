//! Turning records into rows: the writer's memory of each run it writes (task ids by index,
//! the try each task is on, its log count), and one [`Batch`] of rows per write, in which an
//! attempt that started and ended between two writes is one row.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use graflow_core::Workflow;
use graflow_core::record::{RemoteAttempt, RunInfo};

use super::rec::{Flushed, Rec, RunKey, RunWhat, TaskWhat, kind_name, micros};
use crate::limits::{MAX_ERROR, MAX_LOG_LINE, MAX_LOG_LINES, MAX_NAME, MAX_PREVIEW, clean};

/// A run's row as it starts.
pub(crate) struct RunRow {
    pub id: Arc<str>,
    pub workflow: String,
    pub fingerprint: String,
    pub build_id: String,
    pub started_at: i64,
    pub checkpoint: Option<String>,
    pub resumed: bool,
    pub tasks: i64,
}

/// A run's row as it ends.
pub(crate) struct RunEnd {
    pub id: Arc<str>,
    pub status: &'static str,
    pub ended_at: i64,
    pub error: Option<String>,
    pub succeeded: i64,
    pub failed: i64,
    pub total: i64,
}

/// A task's row (inserted when new, its status updated otherwise).
pub(crate) struct TaskRow {
    pub id: String,
    pub handler: String,
    pub added_by: Option<String>,
    pub status: &'static str,
    pub attempts: i64,
}

/// What a batch knows of one try of a task (`None`: unchanged).
#[derive(Default)]
pub(crate) struct AttemptRow {
    pub attempt: i64,
    pub runner: Option<String>,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub status: Option<&'static str>,
    pub error_kind: Option<&'static str>,
    pub error: Option<String>,
    pub result_size: Option<i64>,
    pub result_preview: Option<String>,
}

pub(crate) struct EventRow {
    pub run: Arc<str>,
    pub seq: i64,
    pub at: i64,
    pub node: Option<i64>,
    pub attempt: i64,
    pub kind: &'static str,
    pub detail: Option<String>,
}

pub(crate) struct LogRow {
    pub run: Arc<str>,
    pub node: i64,
    pub seq: i64,
    pub attempt: i64,
    pub at: i64,
    pub line: String,
}

/// The rows of one write.
#[derive(Default)]
pub(crate) struct Batch {
    pub begins: Vec<RunRow>,
    pub new_tasks: Vec<(Arc<str>, i64, TaskRow)>,
    pub edges: Vec<(Arc<str>, String, String)>,
    pub task_status: HashMap<(Arc<str>, u32), TaskRow>,
    pub attempts: BTreeMap<(Arc<str>, u32, u32), AttemptRow>,
    pub events: Vec<EventRow>,
    pub logs: Vec<LogRow>,
    pub cuts: HashMap<(Arc<str>, u32), (i64, i64)>,
    pub ends: Vec<RunEnd>,
    pub remote: Vec<RemoteAttempt>,
    pub lost: HashMap<Arc<str>, u64>,
    pub flushes: Vec<Flushed>,
    /// How many records this batch holds, in all and per run (what is lost if it is dropped).
    pub records: u64,
    pub per_run: HashMap<Arc<str>, u64>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.records == 0 && self.flushes.is_empty()
    }
}

/// What the writer remembers of a run it writes.
pub(crate) struct RunMemory {
    pub(crate) id: Arc<str>,
    workflow: Workflow,
    added: Vec<(Box<str>, Box<str>)>,
    /// Per task: the try it is on (0: none yet), whether that try ended, the time it became
    /// ready, its log lines.
    tries: Vec<u32>,
    ended: Vec<bool>,
    queued: Vec<Option<i64>>,
    logs: Vec<u32>,
    /// Where a resumed run's tries start (the highest stored, per task).
    pub(crate) try_base: HashMap<u32, u32>,
}

impl RunMemory {
    fn id_of(&self, node: u32) -> (&str, &str) {
        match self.workflow.tasks().get(node as usize) {
            Some(task) => (task.id(), task.handler()),
            None => self
                .added
                .get(node as usize - self.workflow.tasks().len())
                .filter(|(id, _)| !id.is_empty())
                .map_or(("?", "?"), |(id, handler)| (&**id, &**handler)),
        }
    }

    /// The try task `node` is on (the first when none started: an event before any start).
    fn current_try(&mut self, node: u32, base: u32) -> u32 {
        base + (*Self::slot(&mut self.tries, node)).max(1)
    }

    fn slot<T: Default + Clone>(list: &mut Vec<T>, node: u32) -> &mut T {
        let i = node as usize;
        if list.len() <= i {
            list.resize(i + 1, T::default());
        }
        &mut list[i]
    }
}

/// A number that orders a process's events and log lines.
fn next_seq() -> i64 {
    static SEQ: AtomicI64 = AtomicI64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Adds `rec` to `batch`, remembering what later records of its run need in `runs`.
pub(crate) fn absorb(rec: Rec, batch: &mut Batch, runs: &mut HashMap<RunKey, RunMemory>) {
    let id = match &rec {
        Rec::Flush(_) | Rec::Remote(_) => None,
        Rec::Begin(_, info) => Some(Arc::from(clean(&info.run_id, MAX_NAME))),
        Rec::Task { run, .. } | Rec::Run { run, .. } => runs.get(run).map(|m| m.id.clone()),
        // Counted when the run ended: its memory may be gone.
        Rec::Dropped { run, .. } => Some(Arc::from(clean(run, MAX_NAME))),
    };
    if !matches!(rec, Rec::Flush(_)) {
        batch.records += 1;
    }
    if let Some(id) = &id {
        *batch.per_run.entry(id.clone()).or_default() += 1;
    }
    match rec {
        Rec::Flush(done) => batch.flushes.push(done),
        Rec::Remote(attempt) => batch.remote.push(*attempt),
        Rec::Begin(key, info) => begin(key, *info, batch, runs),
        // A run whose start this writer never saw (dropped): nothing to attach it to.
        _ if id.is_none() => {}
        Rec::Dropped { count, .. } => {
            if let Some(id) = id {
                *batch.lost.entry(id).or_default() += count;
            }
        }
        Rec::Run { run: key, at, what } => {
            let Some(run) = id else { return };
            let (kind, detail) = match &what {
                RunWhat::Started => ("run_started", None),
                RunWhat::Finished { error, .. } => (
                    "run_finished",
                    error.as_deref().map(|e| clean(e, MAX_ERROR)),
                ),
                RunWhat::Abandoned { reason } => ("run_abandoned", Some(clean(reason, MAX_ERROR))),
            };
            batch.events.push(EventRow {
                run: run.clone(),
                seq: next_seq(),
                at,
                node: None,
                attempt: 0,
                kind,
                detail: detail.clone(),
            });
            let end = match what {
                RunWhat::Started => None,
                RunWhat::Finished {
                    succeeded,
                    waiting,
                    counts,
                    ..
                } => Some(RunEnd {
                    id: run.clone(),
                    status: if succeeded {
                        "succeeded"
                    } else if waiting {
                        "waiting"
                    } else {
                        "failed"
                    },
                    ended_at: at,
                    error: detail,
                    succeeded: counts.succeeded as i64,
                    failed: counts.failed as i64,
                    total: counts.total() as i64,
                }),
                RunWhat::Abandoned { .. } => Some(RunEnd {
                    id: run.clone(),
                    status: "cancelled",
                    ended_at: at,
                    error: detail,
                    succeeded: -1,
                    failed: -1,
                    total: -1,
                }),
            };
            if let Some(end) = end {
                batch.ends.push(end);
                runs.remove(&key);
            }
        }
        Rec::Task {
            run: key,
            node,
            attempt,
            at,
            what,
        } => {
            let (Some(run), Some(memory)) = (id, runs.get_mut(&key)) else {
                return;
            };
            task(&run, memory, node, attempt, at, what, batch);
        }
    }
}

fn begin(key: RunKey, info: RunInfo, batch: &mut Batch, runs: &mut HashMap<RunKey, RunMemory>) {
    // A resumed run's id comes from its checkpoint file: outside data like any other.
    let run: Arc<str> = Arc::from(clean(&info.run_id, MAX_NAME));
    let workflow = info.workflow;
    batch.begins.push(RunRow {
        id: run.clone(),
        workflow: clean(workflow.name(), MAX_NAME),
        fingerprint: format!("{:016x}", workflow.fingerprint()),
        build_id: clean(info.build_id, MAX_NAME),
        started_at: micros(info.started_at),
        checkpoint: info.checkpoint.as_deref().map(|p| {
            clean(
                &std::path::absolute(p)
                    .unwrap_or_else(|_| p.to_path_buf())
                    .to_string_lossy(),
                4096,
            )
        }),
        resumed: info.resumed,
        tasks: workflow.tasks().len() as i64,
    });
    // A resumed run's tasks are there already, unless another store saw its start.
    for (node, task) in workflow.tasks().iter().enumerate() {
        batch.new_tasks.push((
            run.clone(),
            node as i64,
            TaskRow {
                id: clean(task.id(), MAX_NAME),
                handler: clean(task.handler(), MAX_NAME),
                added_by: None,
                status: "pending",
                attempts: 0,
            },
        ));
    }
    if !info.resumed {
        for (a, b) in workflow.edges() {
            batch
                .edges
                .push((run.clone(), clean(a, MAX_NAME), clean(b, MAX_NAME)));
        }
    }
    runs.insert(
        key,
        RunMemory {
            id: run,
            workflow,
            added: Vec::new(),
            tries: Vec::new(),
            ended: Vec::new(),
            queued: Vec::new(),
            logs: Vec::new(),
            try_base: HashMap::new(),
        },
    );
}

#[allow(clippy::too_many_lines)]
fn task(
    run: &Arc<str>,
    memory: &mut RunMemory,
    node: u32,
    attempt: u32,
    at: i64,
    what: TaskWhat,
    batch: &mut Batch,
) {
    // The events every task has (ready, started, succeeded) are its attempt's queued, start and
    // end times; the others are rows of their own, in order.
    let mut event = |kind: &'static str, detail: Option<String>| {
        batch.events.push(EventRow {
            run: run.clone(),
            seq: next_seq(),
            at,
            node: Some(i64::from(node)),
            attempt: i64::from(attempt),
            kind,
            detail,
        });
    };
    let status = |memory: &RunMemory, status: &'static str, attempts: u32| {
        let (id, handler) = memory.id_of(node);
        // A task this writer does not know (restored from a checkpoint, added before): its
        // row, if any, keeps its id.
        TaskRow {
            id: clean(id, MAX_NAME),
            handler: clean(handler, MAX_NAME),
            added_by: None,
            status,
            attempts: i64::from(attempts),
        }
    };
    let base = memory.try_base.get(&node).copied().unwrap_or(0);
    match what {
        TaskWhat::Added(added) => {
            let (id, handler, by, successors) = *added;
            event("task_added", Some(clean(&by, MAX_NAME)));
            let (id, handler, by) = (
                clean(&id, MAX_NAME),
                clean(&handler, MAX_NAME),
                clean(&by, MAX_NAME),
            );
            batch.edges.push((run.clone(), by.clone(), id.clone()));
            for successor in successors {
                batch
                    .edges
                    .push((run.clone(), id.clone(), clean(&successor, MAX_NAME)));
            }
            batch.new_tasks.push((
                run.clone(),
                i64::from(node),
                TaskRow {
                    id: id.clone(),
                    handler: handler.clone(),
                    added_by: Some(by),
                    status: "pending",
                    attempts: 0,
                },
            ));
            // By its index: added tasks are numbered after the workflow's, in order.
            let at = (node as usize).saturating_sub(memory.workflow.tasks().len());
            if memory.added.len() <= at {
                memory.added.resize(at + 1, (Box::from(""), Box::from("")));
            }
            memory.added[at] = (id.into(), handler.into());
        }
        TaskWhat::Ready => {
            *RunMemory::slot(&mut memory.queued, node) = Some(at);
            batch
                .task_status
                .insert((run.clone(), node), status(memory, "ready", 0));
        }
        TaskWhat::Started => {
            *RunMemory::slot(&mut memory.ended, node) = false;
            let tries = RunMemory::slot(&mut memory.tries, node);
            *tries += 1;
            let try_no = base + *tries;
            let queued = RunMemory::slot(&mut memory.queued, node).take();
            let row = batch
                .attempts
                .entry((run.clone(), node, try_no))
                .or_default();
            row.attempt = i64::from(attempt);
            row.queued_at = queued;
            row.started_at = Some(at);
            row.status = Some("running");
            batch
                .task_status
                .insert((run.clone(), node), status(memory, "running", attempt));
        }
        TaskWhat::Runner(runner) => {
            let runner = clean(&runner, MAX_NAME);
            event("task_runner", Some(runner.clone()));
            let try_no = memory.current_try(node, base);
            let row = batch
                .attempts
                .entry((run.clone(), node, try_no))
                .or_default();
            row.attempt = i64::from(attempt);
            row.runner = Some(runner);
        }
        TaskWhat::Log(line) => {
            let count = RunMemory::slot(&mut memory.logs, node);
            *count += 1;
            if *count > MAX_LOG_LINES {
                let cut = batch.cuts.entry((run.clone(), node)).or_default();
                cut.0 += 1;
                cut.1 += line.len() as i64;
                return;
            }
            batch.logs.push(LogRow {
                run: run.clone(),
                node: i64::from(node),
                seq: next_seq(),
                attempt: i64::from(attempt),
                at,
                line: clean(&line, MAX_LOG_LINE),
            });
        }
        TaskWhat::Succeeded { output } => {
            let row = end_try(memory, batch, (run, node, attempt), at, base, "succeeded");
            // The user's Serialize runs here: a panic in it costs the preview, not the writer.
            let summary = output.and_then(|output| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    output.summary(MAX_PREVIEW)
                }))
                .ok()
            });
            if let Some((size, preview)) = summary {
                row.result_size = size.map(|s| s as i64);
                row.result_preview = preview.map(|p| clean(&p, MAX_PREVIEW + 64));
            }
            batch
                .task_status
                .insert((run.clone(), node), status(memory, "succeeded", attempt));
        }
        TaskWhat::Retrying { error, kind } => {
            let error = clean(&error, MAX_ERROR);
            event("task_retrying", Some(error.clone()));
            fail_try(
                memory,
                batch,
                (run, node, attempt),
                at,
                base,
                Some(kind_name(kind)),
                error,
            );
            batch
                .task_status
                .insert((run.clone(), node), status(memory, "retrying", attempt));
        }
        TaskWhat::Failed {
            error,
            kind,
            tolerated,
        } => {
            let error = clean(&error, MAX_ERROR);
            event("task_failed", Some(error.clone()));
            fail_try(
                memory,
                batch,
                (run, node, attempt),
                at,
                base,
                kind.map(kind_name),
                error,
            );
            let state = if tolerated {
                "failed_tolerated"
            } else {
                "failed"
            };
            batch
                .task_status
                .insert((run.clone(), node), status(memory, state, attempt));
        }
        TaskWhat::Waiting { error } => {
            let error = clean(&error, MAX_ERROR);
            event("task_waiting", Some(error.clone()));
            let row = end_try(memory, batch, (run, node, attempt), at, base, "waiting");
            row.error = Some(error);
            batch
                .task_status
                .insert((run.clone(), node), status(memory, "waiting", attempt));
        }
        TaskWhat::Cancelled => {
            event("task_cancelled", None);
            batch
                .task_status
                .insert((run.clone(), node), status(memory, "cancelled", attempt));
            if std::mem::replace(RunMemory::slot(&mut memory.ended, node), true) {
                // Cancelled while waiting to retry: the try that failed stays failed.
                return;
            }
            end_try(memory, batch, (run, node, attempt), at, base, "cancelled");
        }
    }
}

/// Ends the try task `node` is on with `status`: its row in this batch.
fn end_try<'b>(
    memory: &mut RunMemory,
    batch: &'b mut Batch,
    (run, node, attempt): (&Arc<str>, u32, u32),
    at: i64,
    base: u32,
    status: &'static str,
) -> &'b mut AttemptRow {
    *RunMemory::slot(&mut memory.ended, node) = true;
    let try_no = memory.current_try(node, base);
    let row = batch
        .attempts
        .entry((run.clone(), node, try_no))
        .or_default();
    row.attempt = i64::from(attempt);
    row.ended_at = Some(at);
    row.status = Some(status);
    row
}

/// Ends the try task `node` is on as failed, with its error.
fn fail_try(
    memory: &mut RunMemory,
    batch: &mut Batch,
    at_try: (&Arc<str>, u32, u32),
    at: i64,
    base: u32,
    kind: Option<&'static str>,
    error: String,
) {
    let row = end_try(memory, batch, at_try, at, base, "failed");
    row.error_kind = kind;
    row.error = Some(error);
}
