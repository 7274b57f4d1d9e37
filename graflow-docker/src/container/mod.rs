//! One task in one container: create (labelled, this binary bind-mounted as the runner), attach
//! before start, send the invocation on stdin, stream stdout/stderr, read the outcome, remove.
//!
//! This file runs the attempt and says why a container failed; `spec` is what a container is
//! created with, `start` brings one up and reads its output, `oom` tells an out-of-memory kill.
//! Warm containers (`crate::warm`) use the same three.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::query_parameters::WaitContainerOptions;
use futures_util::StreamExt;
use graflow_core::backend::{Ended, RemoteAttempt};
use graflow_core::protocol::Limits;

use crate::DOCKER_LOGS;
use graflow_core::{AttemptError, ExecutionContext, HandlerFailure, Task, Value};

use crate::cleanup::Guard;
use crate::daemon::Daemon;
use crate::options::DockerOptions;
use crate::paths::RUNNER_PATH;

mod oom;
mod spec;
mod start;

use oom::{OomWatch, likely_oom_message};
pub(crate) use oom::{oom_killed_after, oom_message};
pub(crate) use spec::{Purpose, body};
pub(crate) use start::{attach_and_start, chunks, create};

/// A spawned task that ends with the attempt, however the attempt ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a container may take to end once its runner has finished.
const EXIT_GRACE: Duration = Duration::from_secs(30);

const STATIC_BUILD: &str =
    "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --target x86_64-unknown-linux-gnu";

/// What the handler needs to run one task.
pub(crate) struct Launch<'a> {
    pub(crate) docker: &'a Daemon,
    pub(crate) options: &'a DockerOptions,
    pub(crate) image: &'a str,
    pub(crate) task: &'a Task,
    pub(crate) ctx: &'a ExecutionContext,
    pub(crate) startup_timeout: Duration,
    pub(crate) limits: Limits,
}

fn container_name(ctx: &ExecutionContext, task: &Task) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect()
    };
    format!(
        "graflow-{}-{}-{}-{}-{}",
        clean(ctx.run_id()),
        clean(task.id()),
        ctx.attempt(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// The image cannot run this program: another attempt would fail the same way.
fn incompatible(task: &Task, image: &str, detail: &str) -> AttemptError {
    AttemptError::handler_kind(
        task.id(),
        task.handler(),
        graflow_core::HandlerFailure::Incompatible,
        incompatible_message(image, detail),
    )
}

fn incompatible_message(image: &str, detail: &str) -> String {
    format!(
        "this program cannot start inside image {image} ({detail}); build it statically with `{STATIC_BUILD}` and run that binary, or use an image whose C library is at least as new as the build machine's"
    )
}

/// Runs the task in a new container and applies its outcome. `guard` removes the container if
/// this future is dropped.
pub(crate) async fn run(launch: Launch<'_>) -> Result<Value, AttemptError> {
    let Launch {
        docker,
        options,
        image,
        task,
        ctx,
        ..
    } = launch;
    let handler = task.handler();
    let fail = |message: String| AttemptError::handler(task.id(), handler, message);
    let invalid = |message: String| fail(message).with_kind(HandlerFailure::InvalidConfig);
    let env = options.resolved_env().map_err(invalid)?;
    let name = container_name(ctx, task);
    let purpose = Purpose {
        run: ctx.run_id(),
        task: task.id(),
        mode: "1",
    };
    let body = body(options, image, purpose, env).map_err(invalid)?;
    let created_at = std::time::SystemTime::now();

    // Guard by name before the request: a future dropped mid-request leaves nothing behind.
    let mut guard = Guard::new(docker.clone(), name.clone());
    let what = format!("task '{}'", task.id());
    let unavailable = |message: String| fail(message).with_kind(HandlerFailure::Unavailable);
    create(docker, &name, body, image, &what)
        .await
        .map_err(|(kind, message)| fail(message).with_kind(kind))?;

    // Wait for the container's end from before it starts, as `docker run --rm` does: a
    // container that exits (and, with auto_remove, is removed by the daemon) before a later
    // wait request arrives would leave that request with nothing to report.
    let mut waiter = {
        let docker = docker.clone();
        let name = name.clone();
        let condition = if options.auto_remove {
            "removed"
        } else {
            "next-exit"
        };
        AbortOnDrop(tokio::spawn(async move {
            let wait = WaitContainerOptions {
                condition: condition.to_owned(),
            };
            docker.wait_container(&name, Some(wait)).next().await
        }))
    };

    // Its `oom` event, if the kernel kills it at its memory limit (see `OomWatch`).
    let oom_watch = OomWatch::start(docker, &name, created_at);

    let attached = attach_and_start(docker, &name, image, &what)
        .await
        .map_err(unavailable)?;
    let output = chunks(attached.output);
    let mut driven = RemoteAttempt::new(task, ctx)
        .limits(launch.limits)
        .startup_timeout(launch.startup_timeout)
        .log_target(DOCKER_LOGS)
        .drive(attached.input, output)
        .await?;
    // Ends that need nothing of the container's exit: the one diagnosis every out-of-process
    // handler gives (the guard removes the container).
    if matches!(
        driven.ended,
        Ended::StartupTimeout(_) | Ended::Refused(_) | Ended::AttemptTimeout(_)
    ) {
        return driven.verdict(task, &format!("container {name}"), None);
    }

    // With auto_remove the daemon removes the container as it exits (so nothing is left even
    // if this program dies now); wait until it is gone. Its runner has finished by now, so the
    // container ends at once; one that does not is removed by the guard.
    let code = match tokio::time::timeout(EXIT_GRACE, &mut waiter.0).await {
        Ok(Ok(Some(Ok(response)))) => Ok(response.status_code),
        Ok(Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })))) => {
            Ok(code)
        }
        Ok(Ok(Some(Err(e)))) => Err(unavailable(format!(
            "lost track of container {name} (the daemon's answer to waiting for its end: {e}); check that dockerd is healthy (`docker info`), and run the task again"
        ))),
        Ok(_) => Err(unavailable(format!(
            "lost track of container {name} (the daemon closed the wait without an answer); check that dockerd is healthy (`docker info`), and run the task again"
        ))),
        Err(_) => Err(fail(format!(
            "container {name} did not end within {EXIT_GRACE:?} of its runner finishing; it is removed"
        ))),
    };
    if code.is_err() {
        // Not known to be gone: the guard removes it.
        return match driven.ended {
            Ended::Answered(result) => result,
            _ => Err(code
                .err()
                .unwrap_or_else(|| fail(format!("lost track of container {name}")))),
        };
    }
    guard.disarm();
    if !options.auto_remove {
        tracing::info!(target: "graflow::docker", task = %task.id(), container = %name, "container kept (auto_remove = false)");
    }
    let code = match (driven.ended, code) {
        (Ended::Answered(result), _) => return result,
        (ended, Ok(code)) => {
            driven.ended = ended;
            code
        }
        (_, Err(error)) => return Err(error),
    };
    let oom = code == 137 && oom_watch.oom_killed(docker, !options.auto_remove).await;
    // SIGKILLed under a memory limit, by nobody of ours (a timeout or a cancel ends elsewhere):
    // the daemon drops the OOM event of a container it has already removed (AutoRemove) when
    // the kernel's report comes after the exit, so say what is most likely.
    let likely_oom = code == 137 && !oom && options.memory.is_some();

    let was_ready = driven.started();
    let logs = &driven.logs;
    let tail = logs.tail();
    // The dynamic loader's complaints, and the runtime's when the kernel cannot exec the binary
    // at all (no loader in the image: "exec /graflow/runner: no such file or directory").
    let loader_failure = tail.iter().find(|l| {
        l.contains("GLIBC_")
            || l.contains("error while loading shared libraries")
            || (!was_ready && l.starts_with(&format!("exec {RUNNER_PATH}")))
    });
    match () {
        () if oom => Err(fail(oom_message(options.memory))),
        () if likely_oom => Err(fail(likely_oom_message(options.memory))),
        () if code == 126 || code == 127 || loader_failure.is_some() => Err(incompatible(
            task,
            image,
            &loader_failure
                .cloned()
                .unwrap_or_else(|| format!("exit code {code}")),
        )),
        // Did not answer: the same diagnosis as every out-of-process handler's.
        () => driven.verdict(
            task,
            &format!("the program in container {name}"),
            Some(&format!("exit code {code}")),
        ),
    }
}
