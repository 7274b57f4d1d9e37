//! What happens in a run, as events: the [`RunObserver`] trait, the [`RunEvent`]s it sees, a
//! bounded [`EventStream`] for async consumers, and the terminal progress bar built on them.
//!
//! An engine with no observer builds no event: each place that could emit one tests one
//! `Option` and moves on.

mod progress;

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

pub use progress::ProgressBar;

/// One thing that happened in a run.
///
/// `task`, `handler` and `attempt` say where: the task id and its handler name (`None` for the
/// run's own events), and the attempt (1 for the first; `0` for the run's events and for
/// [`EventKind::TaskReady`], which comes before any attempt).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunEvent {
    /// When it happened (wall clock).
    pub at: SystemTime,
    /// The run's id (as in [`RunReport::run_id`](crate::RunReport::run_id)).
    pub run_id: Arc<str>,
    /// The workflow's name.
    pub workflow: Arc<str>,
    /// The task's id, for task events.
    pub task: Option<String>,
    /// The task's handler, for task events.
    pub handler: Option<String>,
    /// Which attempt, for task events (see above).
    pub attempt: u32,
    /// What happened.
    pub kind: EventKind,
}

/// What a [`RunEvent`] says happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The run started, with `tasks` tasks (the workflow's, and in a resumed run those its
    /// checkpoint had added; tasks added while it runs come with [`EventKind::TaskAdded`]).
    /// `resumed`: from a checkpoint, which had `done` of them done already (they send no
    /// events).
    RunStarted {
        /// How many tasks the run has now.
        tasks: usize,
        /// Whether it continues from a checkpoint.
        resumed: bool,
        /// How many the checkpoint had done.
        done: usize,
    },
    /// The run ended: whether it succeeded, how long it took, and how many tasks ended each
    /// way.
    RunFinished {
        /// Whether the run succeeded.
        succeeded: bool,
        /// How long it took.
        elapsed: Duration,
        /// How many tasks ended each way.
        counts: crate::report::TaskCounts,
        /// What ended it, when it failed (the run's error, with its causes).
        error: Option<String>,
        /// How many answers it waits for, when it ended to wait for them
        /// ([`RunError::Waiting`](crate::RunError::Waiting)); 0 otherwise.
        waiting: usize,
    },
    /// The run stopped without a report: its future was dropped (the caller gave up on it, a
    /// timeout around it) or the program was interrupted (`reason` says which). Its running
    /// tasks were cancelled (each has its [`EventKind::TaskCancelled`]).
    RunAbandoned {
        /// How long it ran.
        elapsed: Duration,
        /// Why it stopped.
        reason: String,
    },
    /// The task was added to the run while it ran, by task `by`
    /// ([`TaskContext::next_task`](crate::TaskContext::next_task)): as the asking attempt's
    /// success is applied, so just before `by`'s [`EventKind::TaskSucceeded`].
    TaskAdded {
        /// The task that added it.
        by: String,
        /// The tasks that wait for it (the adder's successors, unless it was added instead of
        /// them): with `by`, its edges.
        successors: Vec<String>,
    },
    /// Every predecessor of the task is done: it waits for a free slot of its handler.
    TaskReady,
    /// An attempt started.
    TaskStarted,
    /// The attempt failed and the task will be tried again after `delay`.
    TaskRetrying {
        /// Why the attempt failed, with its causes.
        error: String,
        /// What kind of failure it was.
        kind: crate::definition::ErrorKind,
        /// How long until the next attempt.
        delay: Duration,
    },
    /// The task's attempt succeeded; `duration` covers every attempt and backoff of this run of
    /// the task.
    TaskSucceeded {
        /// Every attempt and backoff of this run of the task.
        duration: Duration,
    },
    /// The task's last attempt failed (`tolerated`: its group's policy tolerates it, and the
    /// run goes on).
    TaskFailed {
        /// Why the last attempt failed, with its causes.
        error: String,
        /// What kind of failure it was (`None`: the task cancelled the run).
        kind: Option<crate::definition::ErrorKind>,
        /// Whether its group's policy tolerates the failure.
        tolerated: bool,
    },
    /// The task stopped to wait for a person's answer (nobody answered within its request's
    /// timeout): it runs again when the run is resumed ([`TaskStatus::Waiting`](crate::TaskStatus::Waiting)).
    TaskWaiting {
        /// The requests it waits for.
        requests: Vec<String>,
        /// Why it stopped (its error, with its causes).
        error: String,
    },
    /// The attempt's handler said where it runs (`pid 4242`, a container, a worker): see
    /// [`ExecutionContext::set_runner`](crate::ExecutionContext::set_runner).
    TaskRunner {
        /// Where the attempt runs, as its handler describes it.
        runner: String,
    },
    /// The attempt was running when the run stopped (another task failed, the run was dropped
    /// or interrupted), and was cancelled.
    TaskCancelled,
    /// A line the task's runner (child process, container, remote worker) printed.
    Log {
        /// The line, without its end.
        line: String,
    },
}

/// Sees every event of the runs it observes.
///
/// Run and task events are called on the thread that runs the scheduler, in the order things
/// happen; [`EventKind::Log`] lines on the thread that reads the runner's output, as they
/// arrive (between the attempt's start and end). Keep it quick (hand heavy work to a channel,
/// or use [`event_stream`]). A panic in an observer is caught and logged; the run goes on.
///
/// ```
/// # use graflow_core::{EventKind, RunEvent, WorkflowEngine};
/// let mut engine = WorkflowEngine::new();
/// engine.add_observer(|event: &RunEvent| {
///     if let EventKind::TaskFailed { error, .. } = &event.kind {
///         eprintln!("{:?} failed on {:?}: {error}", event.task, event.handler);
///     }
/// });
/// ```
pub trait RunObserver: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &RunEvent);
}

impl<F> RunObserver for F
where
    F: Fn(&RunEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &RunEvent) {
        self(event)
    }
}

/// The observers of one run.
#[derive(Clone, Default)]
pub(crate) struct Observers {
    list: Vec<Arc<dyn RunObserver>>,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} observer(s)", self.list.len())
    }
}

impl Observers {
    pub(crate) fn push(&mut self, observer: Arc<dyn RunObserver>) {
        self.list.push(observer);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// These and `more`.
    pub(crate) fn with(&self, more: &Observers) -> Observers {
        let mut list = self.list.clone();
        list.extend(more.list.iter().cloned());
        Observers { list }
    }

    /// Hands `event` to every observer; one that panics is skipped (and logged).
    #[cold]
    #[inline(never)]
    pub(crate) fn emit(&self, event: &RunEvent) {
        for observer in &self.list {
            if let Err(payload) =
                std::panic::catch_unwind(AssertUnwindSafe(|| observer.on_event(event)))
            {
                tracing::warn!(
                    target: "graflow::engine",
                    message = %crate::definition::panic_message(&*payload),
                    "a run observer panicked; the run goes on"
                );
            }
        }
    }
}

/// A bounded stream of events, and the observer that feeds it: for async consumers (a web
/// socket, a metrics exporter). The run never waits for the reader: when `capacity` events are
/// waiting, newer ones are dropped and counted ([`EventStream::dropped`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # use graflow_core::{WorkflowEngine, event_stream};
/// let (observer, mut events) = event_stream(10_000);
/// let mut engine = WorkflowEngine::new();
/// engine.add_observer(observer);
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         let _ = (event.task, event.kind);
///     }
/// });
/// # drop(engine); }
/// ```
pub fn event_stream(capacity: usize) -> (StreamObserver, EventStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        StreamObserver {
            tx,
            dropped: dropped.clone(),
            warned: AtomicBool::new(false),
        },
        EventStream { rx, dropped },
    )
}

/// The observer half of [`event_stream`].
#[derive(Debug)]
pub struct StreamObserver {
    tx: mpsc::Sender<RunEvent>,
    dropped: Arc<AtomicU64>,
    warned: AtomicBool,
}

impl RunObserver for StreamObserver {
    fn on_event(&self, event: &RunEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event.clone()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "graflow::engine",
                    "an event stream is full: events are dropped until its reader catches up"
                );
            }
        }
    }
}

/// The reading half of [`event_stream`]; also a `futures` `Stream`.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<RunEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventStream {
    /// The next event; `None` once every observer half is dropped (with its engine) and every
    /// event was read.
    pub async fn recv(&mut self) -> Option<RunEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<RunEvent> {
        self.rx.try_recv().ok()
    }

    /// How many events were dropped because the stream was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl futures_util::Stream for EventStream {
    type Item = RunEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RunEvent>> {
        self.rx.poll_recv(cx)
    }
}
