//! The report as JSON: [`RunReport::to_json`], [`RunReport::save_json`], and `Serialize` for
//! embedding it in a document of one's own.
//!
//! Times are given twice: RFC 3339 (UTC, milliseconds) for people, and milliseconds (since the
//! Unix epoch, or since the run's start) for programs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::{RunReport, TaskRecord};

/// Version of the JSON layout (the `format` field); bumped when a field changes meaning or
/// goes away (new fields do not bump it).
const REPORT_FORMAT: u32 = 1;

#[derive(Serialize)]
struct Json<'a> {
    format: u32,
    workflow: &'a str,
    run_id: &'a str,
    status: &'static str,
    started_at: String,
    started_at_unix_ms: u64,
    elapsed_ms: f64,
    resumed: bool,
    counts: Counts,
    terminated: Option<Terminated<'a>>,
    checkpoint_error: Option<&'a str>,
    tasks: Vec<JsonTask<'a>>,
    groups: Vec<JsonGroup<'a>>,
    channel_keys: Vec<String>,
}

#[derive(Serialize)]
struct Counts {
    succeeded: usize,
    failed: usize,
    cancelled: usize,
    skipped: usize,
    /// Only in the report of a run that waits for answers.
    #[serde(skip_serializing_if = "is_zero")]
    waiting: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Terminated<'a> {
    task: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonTask<'a> {
    id: &'a str,
    function: &'a str,
    handler: &'a str,
    runner: Option<&'a str>,
    status: &'static str,
    attempts: u32,
    runs: u32,
    tolerated: bool,
    added: bool,
    started_at: Option<String>,
    start_ms: Option<f64>,
    duration_ms: Option<f64>,
    error: Option<&'a str>,
    error_chain: Vec<&'a str>,
    result_type: Option<String>,
}

#[derive(Serialize)]
struct JsonGroup<'a> {
    name: &'a str,
    policy: &'a str,
    members: &'a [String],
    failed: Vec<Failed<'a>>,
    /// `"passed"`, `"failed"`, or `"undecided"` (the run stopped first).
    verdict: &'static str,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Failed<'a> {
    task: &'a str,
    error: &'a str,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

impl RunReport {
    fn json(&self) -> Json<'_> {
        let crate::report::TaskCounts {
            succeeded,
            failed,
            cancelled,
            skipped,
            waiting,
        } = self.counts();
        let started = self.started_at;
        Json {
            format: REPORT_FORMAT,
            workflow: self.workflow(),
            run_id: self.run_id(),
            status: if self.failed {
                "failed"
            } else if waiting > 0 {
                "waiting"
            } else {
                "succeeded"
            },
            started_at: rfc3339(started),
            started_at_unix_ms: started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            elapsed_ms: ms(self.elapsed),
            resumed: self.resumed,
            counts: Counts {
                succeeded,
                failed,
                cancelled,
                skipped,
                waiting,
            },
            terminated: self
                .terminated()
                .map(|(task, message)| Terminated { task, message }),
            checkpoint_error: self.checkpoint_error(),
            tasks: (0..self.records.len()).map(|n| self.json_task(n)).collect(),
            groups: self
                .groups
                .iter()
                .map(|g| JsonGroup {
                    name: &g.name,
                    policy: &g.policy,
                    members: &g.members,
                    failed: g
                        .failed
                        .iter()
                        .map(|(task, error)| Failed { task, error })
                        .collect(),
                    verdict: match &g.verdict {
                        Some(Ok(_)) => "passed",
                        Some(Err(_)) => "failed",
                        None => "undecided",
                    },
                    reason: g.verdict.as_ref().map(|v| match v {
                        Ok(why) | Err(why) => why.as_str(),
                    }),
                })
                .collect(),
            channel_keys: self.channel.keys(),
        }
    }

    fn json_task(&self, n: usize) -> JsonTask<'_> {
        let t: TaskRecord<'_> = self.record(n);
        JsonTask {
            id: t.id,
            function: self.node_task(n).name(),
            handler: t.handler,
            runner: t.runner,
            status: t.status.as_str(),
            attempts: t.attempts,
            runs: t.runs,
            tolerated: t.tolerated,
            added: t.added,
            started_at: t.start.map(|s| rfc3339(self.started_at + s)),
            start_ms: t.start.map(ms),
            duration_ms: t.duration.map(ms),
            error: t.error,
            error_chain: t.error_chain.iter().map(|e| &**e).collect(),
            result_type: self
                .results
                .get(n)
                .and_then(Option::as_ref)
                .map(|value| value.type_name().to_owned()),
        }
    }

    /// The report as pretty-printed JSON: the run (workflow, run id, status, start as RFC 3339
    /// and Unix milliseconds, elapsed milliseconds, counts, an early end, a checkpoint error),
    /// every task (id, function, handler, where it ran, status, attempts, runs, start and
    /// duration, the error with its cause chain as a list, the type of its result), every
    /// group (members, failed members, verdict and reason) and the channel's keys. The layout
    /// is versioned by its `format` field.
    ///
    /// ```
    /// # use graflow_core::{RunOptions, Workflow, WorkflowEngine};
    /// # #[graflow_macros::task(crate = "graflow_core")] fn hello() -> u32 { 1 }
    /// let mut wf = Workflow::builder("json");
    /// wf.add(hello::task());
    /// let report = WorkflowEngine::new().run(&wf.build(), RunOptions::new())?;
    /// let json = report.to_json();
    /// assert!(json.contains(r#""status": "succeeded""#));
    /// # Ok::<(), graflow_core::RunError>(())
    /// ```
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail (no map with non-string keys).
        serde_json::to_string_pretty(&self.json()).unwrap_or_default()
    }

    /// Writes [`RunReport::to_json`] to `path`, atomically (a temporary file beside it, synced,
    /// renamed over `path`: a reader never sees half a report, and a program killed while
    /// writing leaves the previous one; its temporary file is removed by the next save).
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<(), ReportError> {
        let path = path.as_ref();
        crate::files::sweep_temporaries(path);
        let json = self.to_json();
        crate::files::replace(path, true, |out| out.write_all(json.as_bytes())).map_err(|source| {
            ReportError::Write {
                run_id: self.run_id.to_string(),
                path: path.to_owned(),
                source,
            }
        })
    }
}

/// A report could not be saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Writing the file failed.
    #[error("could not write the report of run {run_id} to '{}': {source}; check that the directory exists and is writable", path.display())]
    Write {
        /// The run's id.
        run_id: String,
        /// Where it was to go.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Serialize for RunReport {
    /// The layout of [`RunReport::to_json`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json().serialize(serializer)
    }
}
