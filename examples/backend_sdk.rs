//! A handler of your own that runs tasks out of process, built on the backend SDK
//! (`graflow::backend`): the "niced" handler runs each task in a child process of this program
//! at a lower CPU priority (`nice`), with everything else (the invocation, READY, log lines, the
//! outcome, the diagnosis of a runner that dies) done by the same driver as the built-in
//! "process", "docker" and "redis" handlers.
//!
//! `cargo run --example backend_sdk`

use std::process::Stdio;

use graflow::backend::{Chunk, RemoteAttempt, runner_command};
use graflow::prelude::*;
use graflow::tokio::io::{AsyncRead, AsyncReadExt};
use graflow::{ErrorKind, HandlerFailure, protocol};

/// Runs each task in `nice -n 10 <this program>` as a runner.
#[derive(Debug)]
struct Niced;

#[async_trait]
impl TaskHandler for Niced {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        // Failures of the handler's own carry a kind: the engine retries only what can pass.
        let unavailable = |what: &str, e: std::io::Error| {
            AttemptError::handler_kind(
                task.id(),
                task.handler(),
                HandlerFailure::Unavailable,
                format!("{what}: {e}"),
            )
        };
        let (program, args) =
            runner_command().map_err(|e| unavailable("cannot find this program", e))?;
        let mut child = graflow::tokio::process::Command::new("nice")
            .args(["-n", "10"])
            .arg(program)
            .args(args)
            .env(protocol::RUNNER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unavailable("cannot start `nice`", e))?;
        if let Some(pid) = child.id() {
            ctx.set_runner(format!("niced pid {pid}"));
        }
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(AttemptError::handler(
                task.id(),
                task.handler(),
                "the child's pipes were not set up",
            ));
        };
        // The runner's two streams as one stream of chunks: the protocol on stdout, the task's
        // output lines on stderr.
        let output = futures_util::stream::select(
            chunks(stdout, Chunk::Stdout, Some(Chunk::StdoutClosed)),
            chunks(stderr, Chunk::Stderr, None),
        );
        let driven = RemoteAttempt::new(task, ctx)
            .drive(stdin, Box::pin(output))
            .await?;
        let exit = child.wait().await.ok().map(|status| status.to_string());
        // The result, or one diagnosis of a runner that did not answer (died, never started,
        // sent something that is not an outcome), with its last output lines.
        driven.verdict(task, "the niced process", exit.as_deref())
    }
}

/// The bytes of `reader` as chunks made by `wrap`, then `last` at its end.
fn chunks(
    reader: impl AsyncRead + Unpin + Send + 'static,
    wrap: fn(Vec<u8>) -> Chunk,
    last: Option<Chunk>,
) -> impl futures_util::Stream<Item = Chunk> + Send {
    futures_util::stream::unfold((Some(reader), last), move |(reader, last)| async move {
        let Some(mut reader) = reader else {
            return last.map(|chunk| (chunk, (None, None)));
        };
        let mut buf = vec![0; 64 * 1024];
        match reader.read(&mut buf).await {
            Ok(n) if n > 0 => {
                buf.truncate(n);
                Some((wrap(buf), (Some(reader), last)))
            }
            _ => last.map(|chunk| (chunk, (None, None))),
        }
    })
}

graflow::register_handler!("niced", || Niced);

#[task(handler = "niced")]
fn squares(n: u64) -> Vec<u64> {
    eprintln!("squaring in process {}", std::process::id());
    (1..=n).map(|i| i * i).collect()
}

#[task(handler = "niced")]
fn crashes() -> u64 {
    std::process::abort()
}

#[task]
fn total(squares: Vec<u64>) -> u64 {
    squares.iter().sum()
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "graflow::handlers=info".into()),
        )
        .init();

    let engine = WorkflowEngine::new();
    let report = engine.run(
        &workflow! { name: "niced"; squares >> total; },
        RunOptions::new().param("n", 10u64),
    )?;
    println!(
        "sum of the first 10 squares: {} (this process is {})",
        report.result::<u64>("total")?,
        std::process::id()
    );

    // A runner that dies is diagnosed as every built-in handler diagnoses it, with a kind.
    let error = engine
        .run(&workflow! { name: "crash"; crashes; }, RunOptions::new())
        .expect_err("the niced task aborts");
    let failure = error.failure().expect("a task failed");
    println!("{error}");
    println!("kind: {:?}", failure.cause.kind());
    assert_eq!(
        failure.cause.kind(),
        ErrorKind::Handler(HandlerFailure::RunnerLost)
    );
    Ok(())
}
