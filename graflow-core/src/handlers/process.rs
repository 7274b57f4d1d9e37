//! The "process" handler: runs the task in a child process of this same binary.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::ExecutionContext;
use crate::error::{Error, Result};
use crate::handler::TaskHandler;
use crate::protocol::{Invocation, LogLines, LogTarget, OutputDecoder, RUNNER_ENV};
use crate::runner::runner_command;
use crate::task::Task;

/// Runs each task in a child process of this binary: a segfault, an abort or an `exit` in the
/// task fails only that task (with the signal or exit code), a timeout kills the child, and the
/// child's output reaches this process's log line by line, prefixed with the task id.
///
/// The child is this program started with `GRAFLOW_RUNNER=1`; its `main` must begin with
/// `graflow::init()` (or use `#[graflow::main]`). Registered as "process" in every engine.
#[derive(Debug, Clone)]
pub struct ProcessHandler {
    startup_timeout: Duration,
}

impl Default for ProcessHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessHandler {
    /// A handler that gives a child 30 s to start answering as a runner.
    pub fn new() -> Self {
        ProcessHandler {
            startup_timeout: Duration::from_secs(30),
        }
    }

    /// Sets how long a child may take to start answering as a runner.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
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

#[async_trait::async_trait]
impl TaskHandler for ProcessHandler {
    async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> Result<()> {
        let handler = task.handler();
        let frame = Invocation::for_task(task, ctx)?.to_frame()?;
        let (program, args) = runner_command().map_err(|e| {
            Error::handler_source(
                task.id(),
                handler,
                "cannot find this program's executable",
                e,
            )
        })?;
        let mut child = tokio::process::Command::new(&program)
            .args(&args)
            .env(RUNNER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::handler_source(
                    task.id(),
                    handler,
                    format!("cannot start `{}` as a task runner", program.display()),
                    e,
                )
            })?;
        tracing::debug!(target: "graflow::handlers", task = %task.id(), pid = child.id(), "runner process started");
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::handler(
                task.id(),
                handler,
                "the child's standard streams were not captured",
            ));
        };

        let mut logs = LogLines::new(task.id(), LogTarget::Handlers);
        let mut banner = LogLines::new(task.id(), LogTarget::Handlers);
        let mut decoder = OutputDecoder::new();
        let deadline = tokio::time::Instant::now() + self.startup_timeout;
        let write = async {
            // A child that exits early closes the pipe: its exit status tells why, below.
            // Stdin stays open until the child is done: the child stops if it closes early.
            let _ = stdin.write_all(&frame).await;
            let _ = stdin.flush().await;
        };
        let read_stdout = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let read = if decoder.is_ready() {
                    stdout.read(&mut buf).await
                } else {
                    match tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await {
                        Ok(read) => read,
                        Err(_) => return Err(()),
                    }
                };
                match read {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(n) => banner.push(&decoder.push(&buf[..n])),
                }
            }
        };
        let read_stderr = async {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                logs.push(&buf[..n]);
            }
            logs.finish();
        };
        let ((), started, ()) = tokio::join!(write, read_stdout, read_stderr);
        drop(stdin);
        if started.is_err() {
            let _ = child.kill().await;
            return Err(Error::handler(
                task.id(),
                handler,
                format!(
                    "`{}` did not answer as a task runner within {:?}: call graflow::init() at the start of main or use #[graflow::main]{}",
                    program.display(),
                    self.startup_timeout,
                    logs.tail_text()
                ),
            ));
        }
        let status = child.wait().await.map_err(|e| {
            Error::handler_source(task.id(), handler, "lost track of the runner process", e)
        })?;
        let was_ready = decoder.is_ready();
        match decoder.finish() {
            Some(Ok(outcome)) => outcome.apply(task, ctx, handler),
            Some(Err(reason)) => Err(Error::handler(
                task.id(),
                handler,
                format!(
                    "the runner's answer is corrupt: {reason}{}",
                    logs.tail_text()
                ),
            )),
            None if !was_ready => Err(Error::handler(
                task.id(),
                handler,
                format!(
                    "`{}` ended ({}) without answering as a task runner: call graflow::init() at the start of main or use #[graflow::main]{}",
                    program.display(),
                    describe_exit(status),
                    logs.tail_text()
                ),
            )),
            None => Err(Error::handler(
                task.id(),
                handler,
                format!(
                    "the task's process died ({}) before reporting a result{}",
                    describe_exit(status),
                    logs.tail_text()
                ),
            )),
        }
    }
}
