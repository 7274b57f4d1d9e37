//! The report of a run: what ran where, for how long, with which outcome, and every result.

mod json;
mod timeline;

pub use json::ReportError;

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::channel::Channel;
use crate::graph::{Graph, Task, Workflow};
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
    /// It stopped to wait for a person's answer ([`TaskContext::approval`](crate::TaskContext::approval)
    /// and the like): the run ended as waiting, and resuming it runs the task again, with the
    /// answer if someone gave it.
    Waiting,
}

/// How many of a run's tasks ended with each [`TaskStatus`] ([`RunReport::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Tasks that ran and stored their result.
    pub succeeded: usize,
    /// Tasks whose last attempt failed.
    pub failed: usize,
    /// Tasks stopped while running.
    pub cancelled: usize,
    /// Tasks that never started.
    pub skipped: usize,
    /// Tasks that stopped to wait for an answer.
    pub waiting: usize,
}

impl TaskCounts {
    /// Every task of the run.
    pub fn total(&self) -> usize {
        self.succeeded + self.failed + self.cancelled + self.skipped + self.waiting
    }
}

impl TaskStatus {
    /// Lower-case name, as printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Waiting => "waiting",
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
    /// `error` and its sources, one message each (`None` in a run resumed from a checkpoint:
    /// `error` alone then).
    pub error_chain: Option<Box<[Box<str>]>>,
    /// Where the last attempt ran, as its handler described it.
    pub runner: Option<Box<str>>,
    /// How many times the node started (iterations and gotos run it again).
    pub runs: u32,
    /// Its failure was tolerated by its group's policy.
    pub tolerated: bool,
}

impl Record {
    pub(crate) const SKIPPED: Record = Record {
        status: TaskStatus::Skipped,
        attempts: 0,
        start: None,
        duration: None,
        error: None,
        error_chain: None,
        runner: None,
        runs: 0,
        tolerated: false,
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
    /// The error of its last attempt, with its cause chain (the messages joined by ": ").
    pub error: Option<&'a str>,
    /// The same error as a list: its message, then each of its sources' (empty when it did not
    /// fail; one message in a run resumed from a checkpoint).
    pub error_chain: &'a [Box<str>],
    /// Where its last attempt ran, when its handler said (out-of-process handlers: the worker,
    /// container or process; `None` in this process).
    pub runner: Option<&'a str>,
    /// How many times it started (more than once after iterations or gotos); the other fields
    /// describe the last time.
    pub runs: u32,
    /// It failed, and its group's policy tolerated the failure.
    pub tolerated: bool,
    /// It was added while the run ran ([`TaskContext::next_task`](crate::TaskContext::next_task)).
    pub added: bool,
}

/// One parallel group's line of a [`RunReport`]: its members, which failed, and whether its
/// policy was met.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GroupRecord {
    /// The group's name.
    pub name: String,
    /// Its policy, as `strict`, `best_effort`, `at_least(2)`, `critical(a, b)` or a custom
    /// policy's name.
    pub policy: String,
    /// Its members' ids.
    pub members: Vec<String>,
    /// The members that failed, with their errors.
    pub failed: Vec<(String, String)>,
    /// `Ok(why it passed)`, `Err(why it failed)`, or `None` when the run stopped before its
    /// members finished.
    pub verdict: Option<Result<String, String>>,
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
    /// Tasks added while the run ran (nodes after the workflow's own).
    pub(crate) added: Vec<Task>,
    pub(crate) groups: Vec<GroupRecord>,
    pub(crate) failed: bool,
    /// The task that ended the run early as a success, and its message.
    pub(crate) terminated: Option<(String, String)>,
    pub(crate) checkpoint_error: Option<String>,
    pub(crate) resumed: bool,
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

    /// Whether the run succeeded: no task failed (except where its group's policy tolerated
    /// it), no group's policy failed, no task cancelled the run. A run ended early by
    /// [`TaskContext::terminate`](crate::TaskContext::terminate) succeeded; its remaining tasks
    /// are skipped.
    pub fn succeeded(&self) -> bool {
        !self.failed
    }

    /// The task that ended the run early as a success, and its message.
    pub fn terminated(&self) -> Option<(&str, &str)> {
        self.terminated
            .as_ref()
            .map(|(task, message)| (task.as_str(), message.as_str()))
    }

    /// Every parallel group: its members, which failed, and whether its policy was met.
    pub fn groups(&self) -> &[GroupRecord] {
        &self.groups
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupRecord> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Why the run's last checkpoint could not be written, if it could not (the run itself
    /// went on).
    pub fn checkpoint_error(&self) -> Option<&str> {
        self.checkpoint_error.as_deref()
    }

    /// Whether this run was resumed from a checkpoint.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The node of id `id`, the workflow's or one added while running.
    fn index_of(&self, id: &str) -> Option<usize> {
        self.graph.index_of(id).map(|n| n as usize).or_else(|| {
            self.added
                .iter()
                .position(|t| t.id() == id)
                .map(|i| self.workflow.len() + i)
        })
    }

    /// How many tasks ended with each status.
    pub fn counts(&self) -> TaskCounts {
        let mut counts = TaskCounts::default();
        for r in &self.records {
            match r.status {
                TaskStatus::Succeeded => counts.succeeded += 1,
                TaskStatus::Failed => counts.failed += 1,
                TaskStatus::Cancelled => counts.cancelled += 1,
                TaskStatus::Skipped => counts.skipped += 1,
                TaskStatus::Waiting => counts.waiting += 1,
            }
        }
        counts
    }

    /// A copy of the result of task `id`.
    pub fn result<T: Data>(&self, id: &str) -> Result<T, ValueError> {
        let value = self.result_value(id).ok_or_else(|| self.no_result(id))?;
        value.copy_as(|| format!("the result of task '{id}'"))
    }

    /// The result of task `id`, moved out of the report (no copy of a result held only here);
    /// the report no longer holds it afterwards.
    pub fn take_result<T: Data>(&mut self, id: &str) -> Result<T, ValueError> {
        let taken = self
            .index_of(id)
            .and_then(|n| Some((n, self.results.get_mut(n)?.take()?)));
        let Some((n, value)) = taken else {
            return Err(self.no_result(id));
        };
        match value.take_as(|| format!("the result of task '{id}'")) {
            Ok(result) => Ok(result),
            // Not a `T` (or not decodable as one): the report keeps it.
            Err((error, value)) => {
                self.results[n] = Some(value);
                Err(error)
            }
        }
    }

    /// Why task `id` has no result to read.
    fn no_result(&self, id: &str) -> ValueError {
        ValueError::NoSuchResult {
            task: id.to_owned(),
            reason: match self.index_of(id) {
                None => format!("workflow '{}' has no task with that id", self.workflow()),
                Some(n) => format!(
                    "the task {} in this run",
                    match self.records[n].status {
                        TaskStatus::Succeeded =>
                            "stored no result, or it was taken from this report",
                        TaskStatus::Failed => "failed",
                        TaskStatus::Cancelled => "was cancelled",
                        TaskStatus::Skipped => "never started",
                        TaskStatus::Waiting => "waits for an answer",
                    }
                ),
            },
        }
    }

    /// The type-erased result of task `id`.
    pub fn result_value(&self, id: &str) -> Option<Value> {
        let node = self.index_of(id)?;
        self.results.get(node)?.clone()
    }

    /// The line of task `id`.
    pub fn task(&self, id: &str) -> Option<TaskRecord<'_>> {
        self.index_of(id).map(|n| self.record(n))
    }

    /// Every task's line, in the order the tasks were added to the workflow (then those added
    /// while it ran, in the order they were added).
    pub fn tasks(&self) -> impl ExactSizeIterator<Item = TaskRecord<'_>> {
        (0..self.records.len()).map(|n| self.record(n))
    }

    /// The channel as the run left it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Node `n`'s task: the workflow's, or one added while running.
    fn node_task(&self, n: usize) -> &Task {
        match self.workflow.tasks().get(n) {
            Some(task) => task,
            None => &self.added[n - self.workflow.len()],
        }
    }

    fn record(&self, n: usize) -> TaskRecord<'_> {
        let added = n >= self.workflow.len();
        let task = self.node_task(n);
        let r = &self.records[n];
        TaskRecord {
            id: task.id(),
            handler: task.handler(),
            status: r.status,
            attempts: r.attempts,
            start: r.start,
            duration: r.duration,
            error: r.error.as_deref(),
            error_chain: match (&r.error_chain, &r.error) {
                (Some(chain), _) => chain,
                (None, Some(error)) => std::slice::from_ref(error),
                (None, None) => &[],
            },
            runner: r.runner.as_deref(),
            runs: r.runs,
            tolerated: r.tolerated,
            added,
        }
    }
}

impl fmt::Debug for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunReport")
            .field("workflow", &self.workflow())
            .field("run_id", &self.run_id)
            .field("elapsed", &self.elapsed)
            .field("counts", &self.counts())
            .finish()
    }
}

/// A text table: each column as wide as its widest cell, the first `left` columns aligned left
/// and the others right, two spaces between columns, no trailing spaces.
pub(crate) fn table<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    left: usize,
) -> String {
    // A cell is one line whatever its text: an id with a newline must not start a row.
    let rows: Vec<[Cow<'_, str>; N]> = rows
        .iter()
        .map(|r| r.each_ref().map(|c| one_line(c)))
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for cells in std::iter::once(header).chain(rows.iter().map(|r| r.each_ref().map(|c| &**c))) {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            if i < left {
                line += &format!("{sep}{cell:<w$}");
            } else {
                line += &format!("{sep}{cell:>w$}");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `text` on one line of a terminal: line breaks (U+2028 and U+2029 included) and other control
/// characters written as escapes (`\n`, `\u{2028}`), everything else as it is.
pub(crate) fn one_line(text: &str) -> Cow<'_, str> {
    let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.contains(breaks) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if breaks(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn millis(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.3} ms", d.as_secs_f64() * 1e3),
        None => "-".to_owned(),
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TaskCounts {
            succeeded: ok,
            failed,
            cancelled,
            skipped,
            waiting,
        } = self.counts();
        let waits = if waiting > 0 {
            format!(", {waiting} waiting")
        } else {
            String::new()
        };
        writeln!(
            f,
            "workflow '{}' (run {}{}): {} in {:.3} ms; {ok} succeeded, {failed} failed, {cancelled} cancelled, {skipped} skipped{waits}",
            self.workflow(),
            self.run_id,
            if self.resumed { ", resumed" } else { "" },
            if self.failed {
                "failed"
            } else if waiting > 0 {
                "waiting"
            } else {
                "succeeded"
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
                    match (t.tolerated, t.added, t.runs > 1) {
                        (true, _, _) => format!("{} (tolerated)", t.status),
                        (_, true, _) => format!("{} (added)", t.status),
                        (_, _, true) => format!("{} ({} runs)", t.status, t.runs),
                        _ => t.status.to_string(),
                    },
                    t.attempts.to_string(),
                    millis(t.start),
                    millis(t.duration),
                ]
            })
            .collect();
        let header = ["TASK", "HANDLER", "STATUS", "ATTEMPTS", "START", "DURATION"];
        f.write_str(&table(header, &rows, 3))?;
        for t in self.tasks() {
            if let Some(error) = t.error {
                writeln!(f, "{}: {error}", t.id)?;
            }
        }
        for g in &self.groups {
            if g.failed.is_empty() && g.policy == "strict" {
                continue;
            }
            let verdict = match &g.verdict {
                Some(Ok(why)) => format!("passed: {why}"),
                Some(Err(why)) => format!("failed: {why}"),
                None => "undecided: the run stopped first".to_owned(),
            };
            writeln!(f, "group '{}' ({}): {verdict}", g.name, g.policy)?;
            for (task, error) in &g.failed {
                writeln!(f, "  failed member '{task}': {error}")?;
            }
        }
        if let Some((task, message)) = &self.terminated {
            writeln!(f, "ended early by task '{task}': {message}")?;
        }
        if let Some(error) = &self.checkpoint_error {
            writeln!(f, "checkpoint not written: {error}")?;
        }
        Ok(())
    }
}
