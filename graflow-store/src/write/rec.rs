//! What the event path hands the writer: [`Rec`], made from a [`RecordedEvent`] with as little
//! work as possible (no allocation for the events every task has: ready, started, succeeded).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use graflow_core::record::{RecordedEvent, RemoteAttempt, RunInfo};
use graflow_core::{ErrorKind, EventKind, TaskCounts, Value};

/// A flush request: called once everything handed over before it is written (or known lost).
pub(crate) type Flushed = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Which run a record is of: a number the recorder gave it at its start, so that the event
/// path copies a number, not a shared pointer whose count two cores would fight over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RunKey(pub u64);

impl RunKey {
    pub(crate) fn next() -> RunKey {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        RunKey(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// One thing to write.
pub(crate) enum Rec {
    /// A run starts.
    Begin(RunKey, Box<RunInfo>),
    /// Something happened to task `node` of run `run`.
    Task {
        run: RunKey,
        node: u32,
        attempt: u32,
        at: i64,
        what: TaskWhat,
    },
    /// Something happened to run `run` itself.
    Run { run: RunKey, at: i64, what: RunWhat },
    /// An attempt a queue worker ran.
    Remote(Box<RemoteAttempt>),
    /// Records of run `run` dropped because the buffer was full.
    Dropped { run: Arc<str>, count: u64 },
    /// Call back once everything before this is written.
    Flush(Flushed),
}

/// A task added at run time: its id, handler, the task that added it, and the tasks that
/// wait for it.
pub(crate) type Added = (Box<str>, Box<str>, Box<str>, Vec<String>);

/// What happened to a task. Kept small (the events every task has carry nothing): what is
/// rare and large is boxed.
pub(crate) enum TaskWhat {
    /// Boxed: `(id, handler, by, successors)`.
    Added(Box<Added>),
    Ready,
    Started,
    Retrying {
        error: Box<str>,
        kind: ErrorKind,
    },
    Succeeded {
        output: Option<Value>,
    },
    Failed {
        error: Box<str>,
        kind: Option<ErrorKind>,
        tolerated: bool,
    },
    Cancelled,
    /// Stopped to wait for a person's answer.
    Waiting {
        error: Box<str>,
    },
    Runner(Box<str>),
    Log(Box<str>),
}

pub(crate) enum RunWhat {
    Started,
    Finished {
        succeeded: bool,
        /// It ended to wait for answers.
        waiting: bool,
        counts: TaskCounts,
        error: Option<Box<str>>,
    },
    Abandoned {
        reason: Box<str>,
    },
}

/// Microseconds since the Unix epoch.
pub(crate) fn micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The record of `event` of run `run`; `None` for events not recorded.
pub(crate) fn of_event(run: RunKey, event: &RecordedEvent<'_>) -> Option<Rec> {
    let at = micros(event.at);
    let Some(node) = event.node else {
        let what = match event.kind {
            EventKind::RunStarted { .. } => RunWhat::Started,
            EventKind::RunFinished {
                succeeded,
                counts,
                error,
                waiting,
                ..
            } => RunWhat::Finished {
                succeeded: *succeeded,
                waiting: *waiting > 0,
                counts: *counts,
                error: error.as_deref().map(Box::from),
            },
            EventKind::RunAbandoned { reason, .. } => RunWhat::Abandoned {
                reason: Box::from(reason.as_str()),
            },
            _ => return None,
        };
        return Some(Rec::Run { run, at, what });
    };
    let what = match event.kind {
        EventKind::TaskReady => TaskWhat::Ready,
        EventKind::TaskStarted => TaskWhat::Started,
        EventKind::TaskSucceeded { .. } => TaskWhat::Succeeded {
            output: event.output.cloned(),
        },
        EventKind::TaskRetrying { error, kind, .. } => TaskWhat::Retrying {
            error: Box::from(error.as_str()),
            kind: *kind,
        },
        EventKind::TaskFailed {
            error,
            kind,
            tolerated,
        } => TaskWhat::Failed {
            error: Box::from(error.as_str()),
            kind: *kind,
            tolerated: *tolerated,
        },
        EventKind::TaskCancelled => TaskWhat::Cancelled,
        EventKind::TaskWaiting { error, .. } => TaskWhat::Waiting {
            error: Box::from(error.as_str()),
        },
        EventKind::TaskRunner { runner } => TaskWhat::Runner(Box::from(runner.as_str())),
        EventKind::Log { line } => TaskWhat::Log(Box::from(line.as_str())),
        EventKind::TaskAdded { by, successors } => TaskWhat::Added(Box::new((
            Box::from(event.task.unwrap_or_default()),
            Box::from(event.handler.unwrap_or_default()),
            Box::from(by.as_str()),
            successors.clone(),
        ))),
        _ => return None,
    };
    Some(Rec::Task {
        run,
        node,
        attempt: event.attempt,
        at,
        what,
    })
}

/// How an error kind is stored.
pub(crate) fn kind_name(kind: ErrorKind) -> &'static str {
    use graflow_core::HandlerFailure as H;
    match kind {
        ErrorKind::TaskFailed => "task_failed",
        ErrorKind::Panicked => "panicked",
        ErrorKind::TimedOut => "timed_out",
        ErrorKind::Handler(H::Transient) => "handler_transient",
        ErrorKind::Handler(H::Unavailable) => "handler_unavailable",
        ErrorKind::Handler(H::RunnerLost) => "runner_lost",
        ErrorKind::Handler(H::InvalidConfig) => "invalid_config",
        ErrorKind::Handler(H::Incompatible) => "incompatible",
        ErrorKind::Handler(_) => "handler",
        ErrorKind::MissingInput => "missing_input",
        ErrorKind::BadInput => "bad_input",
        ErrorKind::WrongOutput => "wrong_output",
        ErrorKind::ControlRefused => "control_refused",
        _ => "other",
    }
}
