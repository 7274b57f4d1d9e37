//! [`RunOptions`]: how one run is executed, beyond its workflow and initial channel.

use std::path::PathBuf;
use std::time::Duration;

use super::checkpoint::Cadence;
use crate::observe::{Observers, RunObserver};

/// Options of one run: its checkpoints, and observers of this run only.
///
/// ```no_run
/// # use graflow_core::{Channel, RunOptions, Workflow, WorkflowEngine};
/// # fn f(engine: &WorkflowEngine, wf: &Workflow) -> Result<(), graflow_core::RunError> {
/// // A checkpoint after every 100 finished tasks, every 30 s, when a task asks
/// // (ctx.checkpoint()), and when the run ends, fails or is cancelled.
/// let options = RunOptions::new()
///     .checkpoint("etl.ckpt")
///     .checkpoint_every(100)
///     .checkpoint_interval(std::time::Duration::from_secs(30));
/// match engine.run_with_options(wf, Channel::new(), &options) {
///     Ok(report) => println!("{report}"),
///     // Fix what failed, then continue where it stopped:
///     Err(_) => println!("{}", engine.resume_blocking(wf, "etl.ckpt")?),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    checkpoint: Option<PathBuf>,
    every: Option<u32>,
    interval: Option<Duration>,
    fast: bool,
    observers: Observers,
}

impl RunOptions {
    /// No checkpoints.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes checkpoints to `path` (replaced atomically each time): when a task asks
    /// ([`TaskContext::checkpoint`](crate::TaskContext::checkpoint)), as often as
    /// [`RunOptions::checkpoint_every`] and [`RunOptions::checkpoint_interval`] say, and when
    /// the run ends (succeeded, failed or cancelled). Resume with
    /// [`WorkflowEngine::resume`](crate::WorkflowEngine::resume).
    pub fn checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Also writes a checkpoint after every `tasks` finished tasks (at least 1).
    pub fn checkpoint_every(mut self, tasks: u32) -> Self {
        self.every = Some(tasks.max(1));
        self
    }

    /// Also writes a checkpoint when `interval` has passed since the last one (checked as
    /// tasks finish).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Whether each checkpoint is synced to disk before the run goes on (default `true`): it
    /// then survives a power cut or an OS crash, not only the program's death. `false` skips
    /// the two `fsync`s per checkpoint (the file's and its directory's), which dominate the cost
    /// of frequent checkpoints (see BENCHMARKS.md); the file is still replaced atomically, so a
    /// program killed at any point leaves a whole checkpoint.
    pub fn checkpoint_durable(mut self, durable: bool) -> Self {
        self.fast = !durable;
        self
    }

    /// Adds an observer of this run's events, besides the engine's
    /// ([`WorkflowEngine::add_observer`](crate::WorkflowEngine::add_observer)).
    pub fn observer(mut self, observer: impl RunObserver) -> Self {
        self.observers.push(std::sync::Arc::new(observer));
        self
    }

    pub(crate) fn observers(&self) -> &Observers {
        &self.observers
    }

    /// Where checkpoints go, if anywhere.
    pub fn checkpoint_path(&self) -> Option<&std::path::Path> {
        self.checkpoint.as_deref()
    }

    pub(crate) fn cadence(&self) -> Option<Cadence> {
        self.checkpoint.as_ref().map(|path| Cadence {
            path: path.clone(),
            every: self.every,
            interval: self.interval,
            durable: !self.fast,
        })
    }
}
