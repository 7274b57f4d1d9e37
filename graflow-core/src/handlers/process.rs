//! The "process" handler: runs the task in a child process of this same binary.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::stream::{Stream, StreamExt};
use graflow_protocol::{Limits, RUNNER_ENV, RUNNER_PARENT_ENV, SERVE_MODE};
use tokio::io::{AsyncRead, ReadBuf};

use crate::definition::{AttemptError, HandlerFailure};
use crate::graph::{Problem, Task};
use crate::remote::{
    Chunk, Driven, Ended, LogTarget, PoolOptions, RemoteAttempt, RunnerPool, Starter, Transport,
};
use crate::run::ExecutionContext;
use crate::run::TaskHandler;
use crate::runner::runner_command;
use crate::value::Value;

/// Runs each task in a child process of this binary: a segfault, an abort or an `exit` in the
/// task fails only that task (with the signal or exit code), a timeout kills the child, and the
/// child's output reaches this process's log line by line, prefixed with the task id.
///
/// The child is this program started with `GRAFLOW_RUNNER=1`; its `main` must begin with
/// `graflow::init()` (or use `#[graflow::main]`). Each child runs in a process group of its
/// own and is the subreaper of whatever the task starts: when the task ends, times out or is
/// cancelled, every process it started is killed (also one that left the group with `setsid`),
/// so nothing the task started outlives it. Registered as "process" in every engine.
///
/// A task with `reuse = true` (or every task, with [`PoolOptions::reuse_by_default`]) runs
/// on a *warm* child instead: one started before, that serves tasks one after another
/// ([`ProcessHandler::with_pool`]). Cloning the handler shares its pool.
#[derive(Debug, Clone)]
pub struct ProcessHandler {
    startup_timeout: Duration,
    limits: Limits,
    max_concurrency: usize,
    pool: RunnerPool,
}

/// All warm children of a handler share one environment: this program, with this process's
/// environment at the time they start.
const WARM_KEY: &str = "process";

impl Default for ProcessHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessHandler {
    /// A handler that gives a child 30 s to start answering as a runner, with the default
    /// [`Limits`] on what a child may send back.
    pub fn new() -> Self {
        let startup_timeout = Duration::from_secs(30);
        ProcessHandler {
            startup_timeout,
            limits: Limits::default(),
            max_concurrency: crate::run::cpu_count(),
            pool: RunnerPool::new(PoolOptions::default(), startup_timeout, LogTarget::HANDLERS),
        }
    }

    /// How warm children are pooled: how many at once, how long one may idle, how many tasks
    /// one serves, and whether tasks without a `reuse` option use them (see [`PoolOptions`]).
    /// A warm child keeps what a task leaves in its memory, its working directory or `/tmp`
    /// for the next task; a fresh child per task (the default) shares nothing.
    pub fn with_pool(mut self, options: PoolOptions) -> Self {
        self.pool = RunnerPool::new(options, self.startup_timeout, LogTarget::HANDLERS);
        self
    }

    /// How many of its child processes may run at once in one run (default: the number of
    /// CPUs, at least 1): each child is this program, busy on this machine's CPUs, with three
    /// pipes of its own.
    pub fn with_max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }

    /// Sets how long a child may take to start answering as a runner.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self.pool = RunnerPool::new(self.pool.options().clone(), timeout, LogTarget::HANDLERS);
        self
    }

    /// Sets the bounds on what a child may send back (e.g. a larger frame for large results).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// "exit code 3", "signal 11 (SIGSEGV)".
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGILL => " (SIGILL)",
                libc::SIGFPE => " (SIGFPE)",
                libc::SIGTERM => " (SIGTERM)",
                _ => "",
            };
            format!("signal {signal}{name}")
        }
        _ => format!("{status}"),
    }
}

/// Kills a child's process tree and group when dropped (the task ended, timed out, or its future
/// was dropped), unless they are already gone.
struct ProcessGroup {
    pgid: Option<libc::pid_t>,
    /// `GRAFLOW_TASK_TREE=...`, which every process the task starts inherits.
    marker: String,
}

impl ProcessGroup {
    /// Kills the group; and first, with `tree`, the runner's whole tree.
    fn kill(&mut self, tree: bool) {
        if let Some(pgid) = self.pgid.take() {
            // First the runner's tree (descendants that left its group with setsid included:
            // the runner is their subreaper), while the runner still holds it together.
            if tree {
                crate::descendants::kill_descendants(pgid);
                // A runner that crashed took its tree with it: its orphans carry its marker.
                crate::descendants::kill_marked(&self.marker);
            }
            // SAFETY: a plain signal to a process group this handler created. The group leader
            // is not reaped before this runs (the child is only waited for afterwards), so the
            // id cannot have been reused.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill(true);
    }
}

/// A runner child's stdout and stderr as output chunks (stdout's end said once), read into one
/// reusable buffer.
struct PipeOutput {
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    buf: Box<[u8]>,
}

impl Stream for PipeOutput {
    type Item = Chunk;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        let this = self.get_mut();
        if let Some(stdout) = this.stdout.as_mut() {
            let mut buf = ReadBuf::new(&mut this.buf);
            match Pin::new(stdout).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    return Poll::Ready(Some(Chunk::Stdout(buf.filled().to_vec())));
                }
                Poll::Ready(_) => {
                    this.stdout = None;
                    return Poll::Ready(Some(Chunk::StdoutClosed));
                }
                Poll::Pending => {}
            }
        }
        if let Some(stderr) = this.stderr.as_mut() {
            let mut buf = ReadBuf::new(&mut this.buf);
            match Pin::new(stderr).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    return Poll::Ready(Some(Chunk::Stderr(buf.filled().to_vec())));
                }
                Poll::Ready(_) => this.stderr = None,
                Poll::Pending => {}
            }
        }
        if this.stdout.is_none() && this.stderr.is_none() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Starts a warm child: this program with `GRAFLOW_RUNNER=serve`, in a process group of its own.
fn warm_child() -> Starter {
    Box::new(|| {
        async move {
            let Spawned {
                mut child,
                group,
                stdin,
                output,
                ..
            } = spawn_runner(SERVE_MODE)?;
            let pid = child.id().unwrap_or_default();
            let autopsy = async move {
                match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                    Ok(Ok(status)) => Some(describe_exit(status)),
                    _ => None,
                }
            };
            Ok(Transport {
                input: Box::pin(stdin),
                output,
                guard: Box::new(group),
                name: format!("pid {pid}"),
                autopsy: Some(autopsy.boxed()),
            })
        }
        .boxed()
    })
}

/// A runner child just started: the process, its group (killed when dropped), its pipes.
struct Spawned {
    child: tokio::process::Child,
    group: ProcessGroup,
    stdin: tokio::process::ChildStdin,
    output: futures_util::stream::BoxStream<'static, Chunk>,
    program: std::path::PathBuf,
}

/// Starts this program as a runner (`GRAFLOW_RUNNER=mode`) in a process group of its own.
fn spawn_runner(mode: &str) -> Result<Spawned, String> {
    let (program, args) =
        runner_command().map_err(|e| format!("cannot find this program's executable: {e}"))?;
    let (tree, marker) = crate::descendants::new_tree_marker();
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .env(RUNNER_ENV, mode)
        // Only this child is the runner, not the programs its task starts (they inherit the
        // environment): it answers only while its parent is this process.
        .env(RUNNER_PARENT_ENV, std::process::id().to_string())
        .env(crate::descendants::TREE_ENV, tree)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{}` as a task runner: {e}", program.display()))?;
    let group = ProcessGroup {
        pgid: child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()),
        marker,
    };
    tracing::debug!(target: "graflow::handlers", pid = child.id(), mode, "runner process started");
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the child's standard streams were not captured".to_owned());
    };
    let output = PipeOutput {
        stdout: Some(stdout),
        stderr: Some(stderr),
        buf: vec![0u8; 64 * 1024].into_boxed_slice(),
    }
    .boxed();
    Ok(Spawned {
        child,
        group,
        stdin,
        output,
        program,
    })
}

#[async_trait::async_trait]
impl TaskHandler for ProcessHandler {
    fn concurrency_limit(&self) -> Option<usize> {
        Some(self.max_concurrency)
    }

    fn validate_task(&self, task: &Task) -> Result<(), Problem> {
        self.pool.options().reuses(task).map(drop)
    }

    async fn warm_up(&self, tasks: &[&Task]) -> Result<usize, AttemptError> {
        let mut reusing = tasks
            .iter()
            .filter(|task| matches!(self.pool.options().reuses(task), Ok(true)));
        let Some(first) = reusing.next() else {
            return Ok(0);
        };
        let count = 1 + reusing.count();
        self.pool.warm_up(WARM_KEY, count, first, warm_child).await
    }

    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let handler = task.handler();
        let reuse = self.pool.options().reuses(task).map_err(|problem| {
            AttemptError::handler_kind(
                task.id(),
                handler,
                HandlerFailure::InvalidConfig,
                problem.to_string(),
            )
        })?;
        if reuse {
            return self
                .pool
                .run(WARM_KEY, task, ctx, self.limits, warm_child)
                .await;
        }
        let Spawned {
            mut child,
            mut group,
            stdin,
            output,
            program,
        } = spawn_runner("1").map_err(|message| {
            AttemptError::handler_kind(task.id(), handler, HandlerFailure::Unavailable, message)
        })?;
        if let Some(pid) = child.id() {
            ctx.set_runner(format!("pid {pid}"));
        }
        let driven = RemoteAttempt::new(task, ctx)
            .limits(self.limits)
            .startup_timeout(self.startup_timeout)
            .drive(stdin, output)
            .await?;
        // The runner has answered (and killed what the task started) or failed: whatever is
        // left goes with it.
        group.kill(!matches!(driven.ended, Ended::Answered(_)));
        let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        };
        diagnose(task, &program, driven, status)
    }
}

fn diagnose(
    task: &Task,
    program: &std::path::Path,
    driven: Driven,
    status: Option<ExitStatus>,
) -> Result<Value, AttemptError> {
    let exit = status.map(describe_exit);
    let runner = if driven.started() {
        "the task's process".to_owned()
    } else {
        format!("`{}`", program.display())
    };
    driven.verdict(task, &runner, exit.as_deref())
}
