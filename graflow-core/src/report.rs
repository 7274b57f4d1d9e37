//! The report of a run: what ran where, for how long, with which outcome, and every result.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::channel::Channel;
use crate::graph::{Graph, Workflow};
use crate::value::{Data, Value, ValueError};

/// How a task's part in a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskStatus {
    /// It ran and stored its result.
    Succeeded,
    /// Its last attempt failed; this failed the run.
    Failed,
    /// It was running when the run failed and was stopped.
    Cancelled,
    /// It never started, because the run failed first.
    Skipped,
}

impl TaskStatus {
    /// Lower-case name, as printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Skipped => "skipped",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the scheduler records per node (compact: one per task of a possibly huge graph).
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub status: TaskStatus,
    pub attempts: u32,
    /// Start and duration, relative to the run's start.
    pub start: Option<Duration>,
    pub duration: Option<Duration>,
    pub error: Option<Box<str>>,
    /// Where the last attempt ran, as its handler described it.
    pub runner: Option<Box<str>>,
}

impl Record {
    pub const SKIPPED: Record = Record {
        status: TaskStatus::Skipped,
        attempts: 0,
        start: None,
        duration: None,
        error: None,
        runner: None,
    };
}

/// One task's line of a [`RunReport`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct TaskRecord<'a> {
    /// The task id.
    pub id: &'a str,
    /// The handler it ran on.
    pub handler: &'a str,
    /// How it ended.
    pub status: TaskStatus,
    /// Attempts made (0 if it never started).
    pub attempts: u32,
    /// When it started, relative to the start of the run.
    pub start: Option<Duration>,
    /// How long it took, retries and backoff included.
    pub duration: Option<Duration>,
    /// The error of its last attempt, with its cause chain.
    pub error: Option<&'a str>,
    /// Where its last attempt ran, when its handler said (out-of-process handlers: the worker,
    /// container or process; `None` in this process).
    pub runner: Option<&'a str>,
}

/// The report of a run: per task status, handler, attempts, start and duration; every result;
/// the final channel. `Display` prints a summary table.
pub struct RunReport {
    pub(crate) workflow: Workflow,
    pub(crate) graph: Arc<Graph>,
    pub(crate) run_id: Arc<str>,
    pub(crate) started_at: SystemTime,
    pub(crate) elapsed: Duration,
    pub(crate) records: Vec<Record>,
    pub(crate) results: Vec<Option<Value>>,
    pub(crate) channel: Channel,
}

impl RunReport {
    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        self.workflow.name()
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// When the run started.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// How long the run took, validation excluded.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Whether every task succeeded.
    pub fn succeeded(&self) -> bool {
        self.records
            .iter()
            .all(|r| r.status == TaskStatus::Succeeded)
    }

    /// Number of tasks with each status: (succeeded, failed, cancelled, skipped).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for r in &self.records {
            match r.status {
                TaskStatus::Succeeded => counts.0 += 1,
                TaskStatus::Failed => counts.1 += 1,
                TaskStatus::Cancelled => counts.2 += 1,
                TaskStatus::Skipped => counts.3 += 1,
            }
        }
        counts
    }

    /// A copy of the result of task `id`.
    pub fn result<T: Data>(&self, id: &str) -> Result<T, ValueError> {
        let value = self
            .result_value(id)
            .ok_or_else(|| ValueError::NoSuchResult {
                task: id.to_owned(),
                reason: match self.graph.index_of(id) {
                    None => format!("workflow '{}' has no task with that id", self.workflow()),
                    Some(n) => format!(
                        "the task {} in this run",
                        match self.records[n as usize].status {
                            TaskStatus::Succeeded => "stored no result",
                            TaskStatus::Failed => "failed",
                            TaskStatus::Cancelled => "was cancelled",
                            TaskStatus::Skipped => "never started",
                        }
                    ),
                },
            })?;
        value.copy_as(|| format!("the result of task '{id}'"))
    }

    /// The type-erased result of task `id`.
    pub fn result_value(&self, id: &str) -> Option<Value> {
        let node = self.graph.index_of(id)?;
        self.results[node as usize].clone()
    }

    /// The line of task `id`.
    pub fn task(&self, id: &str) -> Option<TaskRecord<'_>> {
        self.graph.index_of(id).map(|n| self.record(n as usize))
    }

    /// Every task's line, in the order the tasks were added to the workflow.
    pub fn tasks(&self) -> impl ExactSizeIterator<Item = TaskRecord<'_>> {
        (0..self.records.len()).map(|n| self.record(n))
    }

    /// The channel as the run left it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    fn record(&self, n: usize) -> TaskRecord<'_> {
        let task = &self.workflow.tasks()[n];
        let r = &self.records[n];
        TaskRecord {
            id: task.id(),
            handler: task.handler(),
            status: r.status,
            attempts: r.attempts,
            start: r.start,
            duration: r.duration,
            error: r.error.as_deref(),
            runner: r.runner.as_deref(),
        }
    }
}

impl fmt::Debug for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ok, failed, cancelled, skipped) = self.counts();
        f.debug_struct("RunReport")
            .field("workflow", &self.workflow())
            .field("run_id", &self.run_id)
            .field("elapsed", &self.elapsed)
            .field("succeeded", &ok)
            .field("failed", &failed)
            .field("cancelled", &cancelled)
            .field("skipped", &skipped)
            .finish()
    }
}

fn millis(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.3} ms", d.as_secs_f64() * 1e3),
        None => "-".to_owned(),
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ok, failed, cancelled, skipped) = self.counts();
        writeln!(
            f,
            "workflow '{}' (run {}): {} in {:.3} ms; {ok} succeeded, {failed} failed, {cancelled} cancelled, {skipped} skipped",
            self.workflow(),
            self.run_id,
            if failed + cancelled + skipped == 0 {
                "succeeded"
            } else {
                "failed"
            },
            self.elapsed.as_secs_f64() * 1e3,
        )?;
        let rows: Vec<[String; 6]> = self
            .tasks()
            .map(|t| {
                [
                    t.id.to_owned(),
                    match t.runner {
                        Some(runner) => format!("{} ({runner})", t.handler),
                        None => t.handler.to_owned(),
                    },
                    t.status.to_string(),
                    t.attempts.to_string(),
                    millis(t.start),
                    millis(t.duration),
                ]
            })
            .collect();
        let header = ["TASK", "HANDLER", "STATUS", "ATTEMPTS", "START", "DURATION"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 6]| -> fmt::Result {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let sep = if i == 0 { "" } else { "  " };
                if i < 3 {
                    text += &format!("{sep}{cell:<w$}", w = widths[i]);
                } else {
                    text += &format!("{sep}{cell:>w$}", w = widths[i]);
                }
            }
            writeln!(f, "{}", text.trim_end())
        };
        line(f, header)?;
        for row in &rows {
            line(f, row.each_ref().map(String::as_str))?;
        }
        for t in self.tasks() {
            if let Some(error) = t.error {
                writeln!(f, "{}: {error}", t.id)?;
            }
        }
        Ok(())
    }
}
