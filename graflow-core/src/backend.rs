//! The backend SDK: what a handler needs to run tasks somewhere else than in the engine's
//! process, as the "process", "docker" and "redis" handlers do. Nothing here is needed to write
//! workflows; `#[task]`, `workflow!` and [`WorkflowEngine`](crate::WorkflowEngine) are.
//!
//! A task that runs out of process runs in a **runner**: a copy of the same program, started
//! with `GRAFLOW_RUNNER` set, whose `init()` reads one **invocation** (the task's name, its
//! encoded inputs, the channel it reads), runs the task and writes back an **outcome** (the
//! encoded result or error, the channel writes and control requests of the attempt). The wire
//! format is [`protocol`](crate::protocol) (`PROTOCOL.md`). A backend picks where the runner
//! runs and how the bytes travel; this module does the rest, the same way for every backend:
//!
//! | to... | use |
//! |---|---|
//! | drive a runner whose stdin/stdout you hold (a child process, an attached container) | [`RemoteAttempt`]: writes the invocation, reads READY, log lines and the outcome, applies it; [`Driven::verdict`] turns how it ended into the attempt's result or one diagnosis |
//! | keep runners warm and serve task after task (`reuse = true`) | [`RunnerPool`] with a [`Starter`] that gives a [`Transport`] |
//! | send invocations through a queue and take outcomes that arrive whole | [`invocation`] (its `nonce` identifies the attempt), [`apply_outcome_bytes`] |
//! | run invocations taken off a queue (a worker) | [`answer`], through any [`TaskHandler`](crate::TaskHandler) |
//! | start this program as a runner | [`runner_command`] (the binary, plus the harness arguments in a test binary) |
//! | give the program a mode of your own (`--graflow-worker URL`) | [`ProgramMode`] and [`Flag`], registered with [`register_program_mode!`](crate::register_program_mode), read with [`graflow_args`] |
//! | log runner output under your own `tracing` target | [`LogTarget`], made with [`log_target!`](crate::log_target) |
//! | finish clean-up before a caught SIGINT/SIGTERM ends the program | [`cleanup_started`] and [`wait_for_cleanups`] |
//! | name the build a runner must be (image tags, worker routing) | [`build_id`] |
//!
//! A handler reports its failures with a [`HandlerFailure`](crate::HandlerFailure) kind
//! (`AttemptError::handler_kind`), which decides whether the engine retries.
//!
//! # Example: a handler that runs each task in a child process of its own
//!
//! ```no_run
//! use graflow_core::backend::{RemoteAttempt, Chunk, runner_command};
//! use graflow_core::{AttemptError, ExecutionContext, HandlerFailure, Task, TaskHandler, Value};
//! use tokio::io::AsyncReadExt;
//!
//! #[derive(Debug)]
//! struct Subprocess;
//!
//! #[async_trait::async_trait]
//! impl TaskHandler for Subprocess {
//!     async fn execute_task(&self, task: &Task, ctx: &ExecutionContext) -> Result<Value, AttemptError> {
//!         let unavailable = |e: std::io::Error| {
//!             AttemptError::handler_kind(task.id(), task.handler(), HandlerFailure::Unavailable, e.to_string())
//!         };
//!         let (program, args) = runner_command().map_err(unavailable)?;
//!         let mut child = tokio::process::Command::new(program)
//!             .args(args)
//!             .env(graflow_core::protocol::RUNNER_ENV, "1")
//!             .stdin(std::process::Stdio::piped())
//!             .stdout(std::process::Stdio::piped())
//!             .kill_on_drop(true)
//!             .spawn()
//!             .map_err(unavailable)?;
//!         let stdin = child.stdin.take().expect("piped");
//!         let mut stdout = child.stdout.take().expect("piped");
//!         // The runner's stdout as chunks (a real handler also forwards stderr as Chunk::Stderr).
//!         let output = futures_util::stream::unfold(Some(stdout), |out| async move {
//!             let mut out = out?;
//!             let mut buf = vec![0; 64 * 1024];
//!             match out.read(&mut buf).await {
//!                 Ok(n) if n > 0 => { buf.truncate(n); Some((Chunk::Stdout(buf), Some(out))) }
//!                 _ => Some((Chunk::StdoutClosed, None)),
//!             }
//!         });
//!         let driven = RemoteAttempt::new(task, ctx).drive(stdin, Box::pin(output)).await?;
//!         let exit = child.wait().await.ok().map(|status| status.to_string());
//!         driven.verdict(task, "the task's process", exit.as_deref())
//!     }
//! }
//! ```

pub use crate::definition::build_id;
pub use crate::interrupt::{CleanupGuard, cleanup_started, wait_for_cleanups};
pub use crate::program::{Flag, ProgramMode, graflow_args};
pub use crate::remote::{
    Chunk, Driven, Ended, Lease, LogLines, LogTarget, PoolOptions, REUSE_OPTION, RemoteAttempt,
    RemoteError, RunnerPool, Starter, Transport, apply_outcome_bytes, invocation,
};
pub use crate::run::Asker;
pub use crate::runner::{answer, answer_asking, runner_command, single_threaded};
pub use crate::runtime::background;

/// Registers a [`ProgramMode`] at link time: `init()` enters it when the program was started in
/// it (the "redis" backend's `--graflow-worker URL`), and `--graflow-help` lists its flags.
///
/// ```
/// use graflow_core::backend::{Flag, ProgramMode};
///
/// fn enter() -> Option<i32> {
///     // `None`: not started in this mode; else run it to its end and give the exit code.
///     None
/// }
///
/// graflow_core::register_program_mode!(ProgramMode {
///     name: "my-mode",
///     enter,
///     flags: &[],
/// });
/// ```
#[macro_export]
macro_rules! register_program_mode {
    ($mode:expr $(,)?) => {
        $crate::__private::inventory::submit! { $mode }
    };
}
