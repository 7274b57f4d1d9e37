//! What reading a store gives: [`RunSummary`] (a line of `--graflow-runs`), [`RunDetail`]
//! (`--graflow-run ID`) with its [`TaskDetail`]s, [`AttemptDetail`]s and [`LogLine`]s. Their
//! JSON (serde) is what `--graflow-json` prints: times in RFC 3339 (UTC) or `null`.

use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// Its program is running it.
    Running,
    /// It ended, every task done.
    Succeeded,
    /// A task or group failed, or a task cancelled the run.
    Failed,
    /// Its program dropped its run's future or was interrupted (a signal) while it ran.
    Cancelled,
    /// It waits for something outside (a person's answer).
    Waiting,
    /// Recorded as running, but its program is provably gone (its process is gone from its
    /// host, or it stopped writing for longer than [`LOST_AFTER`](crate::LOST_AFTER)).
    Lost,
}

impl RunStatus {
    /// Its name, as the JSON has it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Waiting => "waiting",
            RunStatus::Lost => "lost",
        }
    }

    pub(crate) fn parse(text: &str) -> RunStatus {
        match text {
            "succeeded" => RunStatus::Succeeded,
            "cancelled" => RunStatus::Cancelled,
            "waiting" => RunStatus::Waiting,
            "running" => RunStatus::Running,
            // Anything else a row says (a damaged or hostile row) reads as a failure.
            _ => RunStatus::Failed,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run, as `--graflow-runs` lists it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// How it stands.
    pub status: RunStatus,
    /// When it started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    /// When it ended (`None` while running, or when lost).
    #[serde(serialize_with = "rfc3339")]
    pub ended_at: Option<SystemTime>,
    /// How long it ran, in milliseconds (until now while running).
    pub duration_ms: Option<u64>,
    /// How many tasks it has.
    pub tasks_total: u64,
    /// How many tasks succeeded.
    pub tasks_succeeded: u64,
    /// How many tasks failed.
    pub tasks_failed: u64,
    /// What ended it, when it failed.
    pub error: Option<String>,
    /// The program that ran it.
    pub program: String,
    /// Its host.
    pub host: String,
    /// Its process id there.
    pub pid: i64,
    /// Where it writes its checkpoints, if it does (what resuming it by id reads).
    pub checkpoint: Option<String>,
    /// How many of its records were lost (the store did not answer, or too many waited).
    pub records_lost: u64,
}

/// One run with everything recorded of it: `--graflow-run ID`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunDetail {
    /// What `--graflow-runs` shows of it.
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The workflow's fingerprint (what a checkpoint must match).
    pub fingerprint: String,
    /// The program's build.
    pub build_id: String,
    /// Who ran it.
    pub user: String,
    /// How many times it was resumed.
    pub resumed: u64,
    /// Its tasks, the workflow's in order, then those added while it ran.
    pub tasks: Vec<TaskDetail>,
    /// Its edges (`[from, to]`), added tasks' included.
    pub edges: Vec<(String, String)>,
    /// Its events, in order (besides its attempts' queued, start and end times).
    pub events: Vec<EventLine>,
}

/// One task of a run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TaskDetail {
    /// The task's id.
    pub id: String,
    /// Its handler.
    pub handler: String,
    /// How it stands: `pending`, `ready`, `running`, `retrying`, `succeeded`, `failed`,
    /// `failed_tolerated`, `cancelled`.
    pub status: String,
    /// How many attempts its last run took.
    pub attempts: u64,
    /// The task that added it while the run ran, if one did.
    pub added_by: Option<String>,
    /// Every attempt, in order (a task that iterates has attempt 1 once per run of it).
    pub tries: Vec<AttemptDetail>,
    /// Attempts queue workers recorded of it.
    pub worker_attempts: Vec<WorkerAttempt>,
    /// Its runners' output lines (at most [`MAX_LOG_LINES`](crate::limits::MAX_LOG_LINES)).
    pub logs: Vec<LogLine>,
    /// How many lines were not stored, and their bytes.
    pub logs_cut: (u64, u64),
}

/// One attempt.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AttemptDetail {
    /// Which attempt of the task's run (1 first).
    pub attempt: u64,
    /// Where it ran, as its handler said (`pid 4242`, a container, a worker).
    pub runner: Option<String>,
    /// When the task became ready (first attempt only).
    #[serde(serialize_with = "rfc3339")]
    pub queued_at: Option<SystemTime>,
    /// When the attempt started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    /// When it ended.
    #[serde(serialize_with = "rfc3339")]
    pub ended_at: Option<SystemTime>,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    /// What kind of failure (`task_failed`, `timed_out`, `runner_lost`, ...).
    pub error_kind: Option<String>,
    /// Its error, with its causes.
    pub error: Option<String>,
    /// Its result's encoded size, in bytes.
    pub result_size: Option<u64>,
    /// The start of its result, as JSON.
    pub result_preview: Option<String>,
}

/// An attempt as a queue worker recorded it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WorkerAttempt {
    /// Which attempt.
    pub attempt: u64,
    /// The worker.
    pub runner: String,
    /// When the worker started it.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    /// When it finished it.
    #[serde(serialize_with = "rfc3339")]
    pub ended_at: Option<SystemTime>,
    /// `succeeded` or `failed`.
    pub status: String,
    /// Its error.
    pub error: Option<String>,
}

/// A line a task's runner printed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LogLine {
    /// Which attempt printed it.
    pub attempt: u64,
    /// When it arrived.
    #[serde(serialize_with = "rfc3339")]
    pub at: Option<SystemTime>,
    /// The line.
    pub line: String,
}

/// One event of a run.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EventLine {
    /// When.
    #[serde(serialize_with = "rfc3339")]
    pub at: Option<SystemTime>,
    /// The task, for task events.
    pub task: Option<String>,
    /// The attempt, for task events.
    pub attempt: u64,
    /// `run_started`, `run_finished`, `run_abandoned`, `task_added`, `task_runner`,
    /// `task_retrying`, `task_failed`, `task_cancelled` (a task becoming ready, starting and
    /// succeeding are its attempts' times).
    pub kind: String,
    /// The error, the runner, the adding task, ...
    pub detail: Option<String>,
}

/// Microseconds since the epoch as a time (`None` when out of range).
pub(crate) fn time_of(micros: Option<i64>) -> Option<SystemTime> {
    let micros = micros?;
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// RFC 3339 in UTC with microseconds, or `null`.
fn rfc3339<S: Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at.and_then(format_time) {
        Some(text) => s.serialize_str(&text),
        None => s.serialize_none(),
    }
}

/// RFC 3339 in UTC with microseconds; `None` before 1970 or after 9999.
pub(crate) fn format_time(at: SystemTime) -> Option<String> {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    if since.as_secs() >= 253_402_300_800 {
        return None;
    }
    Some(humantime::format_rfc3339_micros(at).to_string())
}
