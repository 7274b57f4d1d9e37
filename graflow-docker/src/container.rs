//! One task in one container: create (labelled, this binary bind-mounted as the runner), attach
//! before start, send the invocation on stdin, stream stdout/stderr, read the outcome, remove.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::pin::Pin;

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, EventsOptions, InspectContainerOptions,
    WaitContainerOptions,
};
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use graflow_core::protocol::{Limits, RUNNER_ENV, RUNNER_PARENT_ENV};
use graflow_core::remote::{Chunk, Ended, LogTarget, RemoteAttempt};
use graflow_core::{AttemptError, ExecutionContext, Task, Value};

use crate::cleanup::{self, Guard};
use crate::daemon::Daemon;
use crate::mounts;
use crate::options::{self, DockerOptions, Gpus};
use crate::paths::RUNNER_PATH;

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
pub struct Launch<'a> {
    pub docker: &'a Daemon,
    pub options: &'a DockerOptions,
    pub image: &'a str,
    pub task: &'a Task,
    pub ctx: &'a ExecutionContext,
    pub startup_timeout: Duration,
    pub limits: Limits,
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

/// What a container is for: one task of one run, or warm runners.
pub struct Purpose<'a> {
    /// `graflow.run`, `graflow.task`.
    pub run: &'a str,
    pub task: &'a str,
    /// The value of `GRAFLOW_RUNNER`.
    pub mode: &'a str,
}

pub fn body(
    options: &DockerOptions,
    image: &str,
    purpose: Purpose<'_>,
    env: Vec<String>,
) -> Result<ContainerCreateBody, String> {
    let (exe, args) = mounts::runner()?;
    let mut cmd = vec![RUNNER_PATH.to_owned()];
    cmd.extend(args);
    let mut labels = options.label_map();
    labels.insert(cleanup::MANAGED.to_owned(), "true".to_owned());
    labels.insert(cleanup::RUN.to_owned(), purpose.run.to_owned());
    labels.insert(cleanup::TASK.to_owned(), purpose.task.to_owned());
    labels.insert(cleanup::OWNER.to_owned(), cleanup::owner());
    if !options.auto_remove {
        labels.insert(cleanup::KEEP.to_owned(), "true".to_owned());
    }
    let mut host = HostConfig {
        auto_remove: Some(options.auto_remove),
        mounts: Some(mounts::all(&exe, &options.volumes)),
        // `sandbox` limits are already in `memory` and `cpus` (see `DockerOptions::merged`).
        memory: options.memory,
        nano_cpus: options.cpus.map(options::nano_cpus).transpose()?,
        ..Default::default()
    };
    let mut user = options.user.clone();
    let mut network = options.network.clone();
    if options.sandbox {
        network.get_or_insert_with(|| "none".to_owned());
        user.get_or_insert_with(|| "65534:65534".to_owned());
        host.readonly_rootfs = Some(true);
        host.tmpfs = Some(HashMap::from([(
            "/tmp".to_owned(),
            "rw,noexec,nosuid,size=64m".to_owned(),
        )]));
        host.cap_drop = Some(vec!["ALL".to_owned()]);
        host.security_opt = Some(vec!["no-new-privileges".to_owned()]);
        host.pids_limit = Some(256);
    }
    host.network_mode = network;
    if let Some(gpus) = options.gpus {
        host.device_requests = Some(vec![DeviceRequest {
            driver: Some(String::new()),
            count: Some(match gpus {
                Gpus::All => -1,
                Gpus::Count(n) => i64::from(n),
            }),
            capabilities: Some(vec![vec!["gpu".to_owned()]]),
            ..Default::default()
        }]);
    }
    // Only the container's first process is the runner, not the programs its task starts.
    let mut full_env = vec![
        format!("{RUNNER_ENV}={}", purpose.mode),
        format!("{RUNNER_PARENT_ENV}=container"),
    ];
    full_env.extend(env);
    Ok(ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd),
        entrypoint: Some(Vec::new()),
        env: Some(full_env),
        labels: Some(labels),
        user,
        working_dir: options.workdir.clone(),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        host_config: Some(host),
        ..Default::default()
    })
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

/// Creates container `name`.
pub async fn create(
    docker: &Daemon,
    name: &str,
    body: ContainerCreateBody,
    image: &str,
    what: &str,
) -> Result<(), String> {
    let create = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    docker
        .call(
            || format!("creating the container for {what}"),
            docker.create_container(Some(create), body),
        )
        .await?
        .map_err(|e| format!("could not create a container from image {image}: {e}"))?;
    tracing::debug!(target: "graflow::docker", container = %name, %image, "container created for {what}");
    Ok(())
}

/// Attaches to container `name` (before it starts: no byte is missed) and starts it.
pub async fn attach_and_start(
    docker: &Daemon,
    name: &str,
    image: &str,
    what: &str,
) -> Result<AttachContainerResults, String> {
    let attach = AttachContainerOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        stream: true,
        logs: false,
        ..Default::default()
    };
    let attached = docker
        .call(
            || format!("attaching to container {name} of {what}"),
            docker.attach_container(name, Some(attach)),
        )
        .await?
        .map_err(|e| format!("could not attach to container {name}: {e}"))?;
    let start = docker
        .call(
            || format!("starting container {name} of {what}"),
            docker.start_container(name, None),
        )
        .await?;
    if let Err(e) = start {
        let message = e.to_string();
        let lower = message.to_ascii_lowercase();
        if lower.contains("exec")
            && (lower.contains("no such file")
                || lower.contains("exec format")
                || lower.contains("not found"))
        {
            return Err(incompatible_message(image, &message));
        }
        return Err(format!("could not start container {name}: {message}"));
    }
    Ok(attached)
}

/// A container's attached output as the driver's chunks (Docker demultiplexes stdout and
/// stderr, in the order the container wrote them).
pub fn chunks(
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
) -> BoxStream<'static, Chunk> {
    stream::unfold(output, |mut output| async move {
        loop {
            let chunk = match output.next().await? {
                Ok(LogOutput::StdOut { message }) => Chunk::Stdout(message.to_vec()),
                Ok(LogOutput::StdErr { message } | LogOutput::Console { message }) => {
                    Chunk::Stderr(message.to_vec())
                }
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(_) => return None,
            };
            return Some((chunk, output));
        }
    })
    .boxed()
}

/// Runs the task in a new container and applies its outcome. `guard` removes the container if
/// this future is dropped.
pub async fn run(launch: Launch<'_>) -> Result<Value, AttemptError> {
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
    let env = options.resolved_env().map_err(fail)?;
    let name = container_name(ctx, task);
    let purpose = Purpose {
        run: ctx.run_id(),
        task: task.id(),
        mode: "1",
    };
    let body = body(options, image, purpose, env).map_err(fail)?;
    let created_at = std::time::SystemTime::now();

    // Guard by name before the request: a future dropped mid-request leaves nothing behind.
    let mut guard = Guard::new(docker.clone(), name.clone());
    let what = format!("task '{}'", task.id());
    create(docker, &name, body, image, &what)
        .await
        .map_err(fail)?;

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
        .map_err(fail)?;
    let output = chunks(attached.output);
    let mut driven = RemoteAttempt::new(task, ctx)
        .limits(launch.limits)
        .startup_timeout(launch.startup_timeout)
        .log_target(LogTarget::Docker)
        .drive(attached.input, output)
        .await?;
    match &driven.ended {
        Ended::StartupTimeout(limit) => {
            return Err(fail(format!(
                "the program in container {name} did not answer as a task runner within {limit:?}: call graflow::init() at the start of main or use #[graflow::main]{}",
                driven.logs.tail_text()
            )));
        }
        Ended::Refused(error) => {
            return Err(fail(format!(
                "the runner's answer was refused and container {name} stopped: {error}{}",
                driven.logs.tail_text()
            )));
        }
        Ended::AttemptTimeout(limit) => {
            return Err(fail(format!(
                "container {name} ran longer than {limit:?} and was stopped{}",
                driven.logs.tail_text()
            )));
        }
        _ => {}
    }

    // With auto_remove the daemon removes the container as it exits (so nothing is left even
    // if this program dies now); wait until it is gone. Its runner has finished by now, so the
    // container ends at once; one that does not is removed by the guard.
    let code = match tokio::time::timeout(EXIT_GRACE, &mut waiter.0).await {
        Ok(Ok(Some(Ok(response)))) => Ok(response.status_code),
        Ok(Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })))) => {
            Ok(code)
        }
        Ok(Ok(Some(Err(e)))) => Err(fail(format!(
            "lost track of container {name} (the daemon's answer to waiting for its end: {e}); check that dockerd is healthy (`docker info`), and run the task again"
        ))),
        Ok(_) => Err(fail(format!(
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
    let died = match &driven.ended {
        Ended::Died {
            detail: Some(detail),
        } => format!(" ({detail})"),
        _ => String::new(),
    };
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
        () if !was_ready => Err(fail(format!(
            "the program in container {name} exited with code {code} without answering as a task runner: call graflow::init() at the start of main or use #[graflow::main]{}",
            logs.tail_text()
        ))),
        () => Err(fail(format!(
            "container {name} exited with code {code} before reporting a result{died}{}{}",
            if driven.input_error.is_some() {
                " (its stdin closed early)"
            } else {
                ""
            },
            logs.tail_text()
        ))),
    }
}

/// What to say of a container killed at its memory limit.
pub fn oom_message(memory: Option<i64>) -> String {
    format!(
        "the container ran out of memory (OOM-killed at its limit of {}); raise `memory` or make the task use less",
        memory.map_or("the daemon's default".to_owned(), |m| format!(
            "{} MiB",
            m / (1024 * 1024)
        ))
    )
}

/// The message for a container SIGKILLed under its memory limit whose OOM kill the daemon did
/// not report (see `likely_oom` in `run`).
fn likely_oom_message(memory: Option<i64>) -> String {
    format!(
        "the container was SIGKILLed (exit code 137) under its memory limit of {} before answering: it most likely ran out of memory (the daemon reported no OOM kill before the container was removed); raise `memory` or make the task use less",
        memory.map_or("the daemon's default".to_owned(), |m| format!(
            "{} MiB",
            m / (1024 * 1024)
        ))
    )
}

/// How long, after a container's runner has ended, the daemon may take to report the
/// container's end (its `die` event) to an [`OomWatch`].
pub const DIE_GRACE: Duration = Duration::from_secs(30);

/// Watches one container's `oom` and `die` events, from its creation on, to tell whether the
/// kernel's out-of-memory killer ended it.
///
/// The daemon logs `oom` when containerd reports it, which is usually before `die`; a container
/// that is auto-removed as it dies cannot be inspected afterwards, so its events are the only
/// record. They are streamed live from before the container starts (with the history since its
/// creation replayed first), not looked up once afterwards within a time window: an `oom` the
/// daemon logs a moment after such a lookup is missed, and the daemon keeps only its last 256
/// events, which a busy daemon (other programs' containers) overwrites within seconds.
pub struct OomWatch {
    name: String,
    watch: AbortOnDrop<Option<bool>>,
}

impl OomWatch {
    /// Starts watching container `name`, created at `created_at` (on the current runtime: for a
    /// container that ends within the caller's run).
    pub fn start(docker: &Daemon, name: &str, created_at: std::time::SystemTime) -> Self {
        let watch = tokio::spawn(oom_then_die(docker.clone(), name.to_owned(), created_at));
        OomWatch {
            name: name.to_owned(),
            watch: AbortOnDrop(watch),
        }
    }

    /// Whether the container was OOM-killed, once the daemon has reported its end (waited for up
    /// to [`DIE_GRACE`]). A container that is not auto-removed can be inspected too: its state
    /// says so even if the `oom` event came after `die` (asked again for a moment, while the
    /// daemon has not recorded it yet).
    pub async fn oom_killed(mut self, docker: &Daemon, inspectable: bool) -> bool {
        let seen = tokio::time::timeout(DIE_GRACE, &mut self.watch.0).await;
        let seen = match seen {
            Ok(Ok(seen)) => seen,
            _ => None,
        };
        decide(docker, &self.name, seen, inspectable).await
    }
}

/// Whether container `name`, created at `created_at`, was OOM-killed: its events since its
/// creation up to its `die` (waited for up to [`DIE_GRACE`]). For a container whose end is
/// diagnosed after it ended, by a caller that could not watch it live.
pub async fn oom_killed_after(
    docker: &Daemon,
    name: &str,
    created_at: std::time::SystemTime,
    inspectable: bool,
) -> bool {
    let watch = oom_then_die(docker.clone(), name.to_owned(), created_at);
    let seen = tokio::time::timeout(DIE_GRACE, watch).await.ok().flatten();
    decide(docker, name, seen, inspectable).await
}

/// What the events said (`Some(oom)` once `die` came; `None`: no end reported), completed by the
/// container's state when it can be inspected.
async fn decide(docker: &Daemon, name: &str, seen: Option<bool>, inspectable: bool) -> bool {
    match seen {
        Some(true) => return true,
        Some(false) => {}
        None => {
            tracing::debug!(target: "graflow::docker", container = %name, "the daemon reported no end of the container within {DIE_GRACE:?}; it is not known to be OOM-killed");
        }
    }
    if !inspectable {
        return false;
    }
    for _ in 0..10 {
        let inspect = docker.inspect_container(name, None::<InspectContainerOptions>);
        let state = docker
            .call(|| format!("inspecting container {name}"), inspect)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|c| c.state);
        match state.and_then(|s| s.oom_killed) {
            Some(true) => return true,
            Some(false) => tokio::time::sleep(Duration::from_millis(100)).await,
            None => return false,
        }
    }
    false
}

/// Reads container `name`'s events from its creation on until its `die`: whether an `oom` came
/// first. `None` if the stream ends or fails before.
async fn oom_then_die(
    docker: Daemon,
    name: String,
    created_at: std::time::SystemTime,
) -> Option<bool> {
    let since = created_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let options = EventsOptions {
        since: Some(since.saturating_sub(1).to_string()),
        until: None,
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("container".to_owned(), vec![name.clone()]),
            ("event".to_owned(), vec!["oom".to_owned(), "die".to_owned()]),
        ])),
    };
    let mut events = docker.events(Some(options));
    let mut oom = false;
    while let Some(event) = events.next().await {
        let event = event.ok()?;
        // The daemon's `container` filter also takes a name that merely starts with the one
        // given ("…-1" matches "…-12").
        let named = event
            .actor
            .as_ref()
            .and_then(|actor| actor.attributes.as_ref())
            .and_then(|attributes| attributes.get("name"))
            .is_some_and(|n| *n == name);
        if !named {
            continue;
        }
        match event.action.as_deref() {
            Some("oom") => oom = true,
            Some("die") => return Some(oom),
            _ => {}
        }
    }
    None
}
