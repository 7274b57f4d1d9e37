//! [`RunOptions`]: everything about one run besides its workflow.

use std::path::PathBuf;
use std::time::Duration;

use super::checkpoint::Cadence;
use crate::channel::Channel;
use crate::observe::{Observers, RunObserver};
use crate::value::Data;

/// Everything about one run besides its workflow: its initial channel and parameters, its
/// checkpoints, observers of this run only, or the checkpoint of an earlier run to continue.
/// Given to [`WorkflowEngine::run`](crate::WorkflowEngine::run) (blocking) or
/// [`WorkflowEngine::execute`](crate::WorkflowEngine::execute) (async);
/// `RunOptions::new()` is a plain run.
///
/// ```no_run
/// # use graflow_core::{RunOptions, Workflow, WorkflowEngine};
/// # fn f(engine: &WorkflowEngine, wf: &Workflow) -> Result<(), graflow_core::RunError> {
/// // A parameter in the channel; a checkpoint after every 100 finished tasks, every 30 s,
/// // when a task asks (ctx.checkpoint()), and when the run ends, fails or is cancelled.
/// let options = RunOptions::new()
///     .param("date", "2026-12-07".to_owned())
///     .checkpoint("etl.ckpt")
///     .checkpoint_every(100)
///     .checkpoint_interval(std::time::Duration::from_secs(30));
/// match engine.run(wf, options) {
///     Ok(report) => println!("{report}"),
///     // Fix what failed, then continue where it stopped:
///     Err(_) => println!("{}", engine.run(wf, RunOptions::new().resume_from("etl.ckpt"))?),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct RunOptions {
    channel: Channel,
    resume: Option<Resume>,
    checkpoint: Option<PathBuf>,
    every: Option<u32>,
    interval: Option<Duration>,
    fast: bool,
    observers: Observers,
}

/// Which earlier run a run continues.
#[derive(Debug, Clone)]
pub(crate) enum Resume {
    /// The run whose checkpoint is at this path.
    Path(PathBuf),
    /// The run of this id, whose checkpoint the engine's recorder knows.
    Run(String),
}

impl Clone for RunOptions {
    /// A copy whose initial channel is independent of this one's (values are shared).
    fn clone(&self) -> Self {
        RunOptions {
            channel: self.channel.snapshot(),
            resume: self.resume.clone(),
            checkpoint: self.checkpoint.clone(),
            every: self.every,
            interval: self.interval,
            fast: self.fast,
            observers: self.observers.clone(),
        }
    }
}

impl RunOptions {
    /// A plain run: an empty initial channel, no checkpoints.
    pub fn new() -> Self {
        Self::default()
    }

    /// The run's initial channel (replacing values given before with
    /// [`RunOptions::param`]). Tasks read its values as parameters named after their keys.
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }

    /// Sets one value of the initial channel: a parameter of every task with a parameter
    /// named `key` that no upstream task or bound input feeds.
    pub fn param<T: Data + Clone>(self, key: impl Into<String>, value: T) -> Self {
        self.channel.set(key, value);
        self
    }

    /// Continues the run whose checkpoint is at `path` instead of starting a new one: tasks it
    /// recorded as done do not run again; the others run as they would have (tasks that were
    /// running when it was written run again). The run keeps its id, its channel and its
    /// checkpoint settings, and writes its checkpoints to the same file. A checkpoint of a
    /// finished run gives its report at once.
    ///
    /// Refused, with nothing run, when the file is not a whole checkpoint, belongs to another
    /// workflow (name, tasks, handlers, edges or groups differ) or to another build of the
    /// program ([`RunError::Checkpoint`](crate::RunError::Checkpoint)), or when an initial
    /// channel or a checkpoint path other than its own was given too
    /// ([`RunError::InvalidOptions`](crate::RunError::InvalidOptions)).
    pub fn resume_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.resume = Some(Resume::Path(path.into()));
        self
    }

    /// [`RunOptions::resume_from`] the checkpoint of run `run_id`, as the engine's run store
    /// recorded it ([`WorkflowEngine::set_recorder`](crate::WorkflowEngine::set_recorder)):
    /// what `--graflow-resume ID` does for a program's first run. Refused, with nothing run,
    /// when the engine records nowhere, or its store knows no such run or no checkpoint of it
    /// ([`RunError::Record`](crate::RunError::Record)).
    pub fn resume_run(mut self, run_id: impl Into<String>) -> Self {
        self.resume = Some(Resume::Run(run_id.into()));
        self
    }

    /// The initial channel, the run to resume, and the rest.
    pub(crate) fn into_parts(mut self) -> (Channel, Option<Resume>, RunOptions) {
        let channel = std::mem::take(&mut self.channel);
        let resume = self.resume.take();
        (channel, resume, self)
    }

    /// Writes checkpoints to `path` (replaced atomically each time): when a task asks
    /// ([`TaskContext::checkpoint`](crate::TaskContext::checkpoint)), as often as
    /// [`RunOptions::checkpoint_every`] and [`RunOptions::checkpoint_interval`] say, and when
    /// the run ends (succeeded, failed or cancelled). Resume with
    /// [`RunOptions::resume_from`].
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
