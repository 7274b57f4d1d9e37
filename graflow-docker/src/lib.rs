//! The "docker" execution handler of graflow: runs a task inside a container of the image it
//! names, as Graflow's DockerTaskHandler does for Python functions, but without pickling: the
//! container runs this same program (bind-mounted read-only at `/graflow/runner`), which
//! finds the task in its link-time registry by name and speaks the runner protocol
//! (`graflow::protocol`) over the container's stdin and stdout.
//!
//! Linking this crate registers the handler as "docker" (the `graflow` facade does so with its
//! default `docker` feature). Layout, one module per area, in layers: a module uses only
//! modules of earlier layers (`tests/module_graph.rs` fails on a cycle between modules):
//!
//! | layer | module | what |
//! |---|---|---|
//! | 0 | `paths` | the container's paths: `/graflow` is the handler's, the runner is `/graflow/runner` |
//! | 0 | `labels` | the label keys every container carries (public) |
//! | 0 | `daemon` | the daemon a handler talks to, and the bound on its control calls |
//! | 1 | `options` | the task options (`image`, `volumes`, `env`, `sandbox`, ...): a file per kind of value, the reading of a task's configuration, the checks |
//! | 1 | `cleanup` | the owner of a container, removal however a task ends, the sweep of dead runs' leftovers |
//! | 2 | `image` | the pull policy |
//! | 2 | `mounts` | the runner binary and the volumes as bind mounts, checked on a local daemon |
//! | 3 | `container` | one task in one container: what it is created with, create, attach, start, then graflow's shared driver (`graflow_core::backend`) runs the attempt; exit code and OOM diagnosis |
//! | 4 | `warm` | warm containers: the environment key, starting one that serves task after task |
//!
//! The crate root holds the handler, [`DockerHandler`], above them all.
//!
//! The daemon is the one `DOCKER_HOST` names, else `unix:///var/run/docker.sock`. The binary is
//! bind-mounted, so a remote daemon needs this executable at the same path on its host (a
//! shared filesystem) and the image must be able to run it: same architecture, and a C library
//! at least as new as the build machine's, or a static build
//! (`RUSTFLAGS="-C target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu`).

#![warn(unreachable_pub, missing_docs)]

mod cleanup;
mod container;
mod daemon;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod image;
pub mod labels;
mod mounts;
mod options;
mod paths;
mod warm;

use std::time::Duration;

use graflow_core::backend::{LogTarget, PoolOptions, RunnerPool};

/// Where the docker handler logs: `graflow::docker`.
pub(crate) const DOCKER_LOGS: LogTarget = graflow_core::log_target!("graflow::docker");
use graflow_core::{AttemptError, ExecutionContext, Problem, Task, TaskHandler, Value};
use tokio::sync::OnceCell;

use crate::daemon::Daemon;

pub use options::{DockerOptions, EnvVar, Gpus, Pull, Volume};

/// Runs tasks in Docker containers. See the crate documentation.
///
/// Options come from the task's handler configuration (`#[task(handler = "docker", image =
/// "python:3.11-slim", memory = "512m")]`) over the defaults given here; a task's option wins.
///
/// A task with `reuse = true` (or every task, with [`PoolOptions::reuse_by_default`]) runs in a
/// *warm* container: one started before, whose runner serves tasks one after another, shared
/// only by tasks whose containers would be identical ([`DockerHandler::with_pool`]).
pub struct DockerHandler {
    defaults: DockerOptions,
    host: Option<String>,
    startup_timeout: Duration,
    limits: graflow_core::protocol::Limits,
    daemon_timeout: Duration,
    max_concurrency: usize,
    client: OnceCell<Daemon>,
    images: image::KnownImages,
    pool: RunnerPool,
}

impl std::fmt::Debug for DockerHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerHandler")
            .field("defaults", &self.defaults)
            .field("daemon", &self.daemon())
            .field("startup_timeout", &self.startup_timeout)
            .field("limits", &self.limits)
            .field("daemon_timeout", &self.daemon_timeout)
            .field("max_concurrency", &self.max_concurrency)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Default for DockerHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerHandler {
    /// A handler for the daemon of `DOCKER_HOST` (or the local socket), with no defaults.
    pub fn new() -> Self {
        let startup_timeout = Duration::from_secs(60);
        DockerHandler {
            defaults: DockerOptions::default(),
            host: None,
            startup_timeout,
            pool: RunnerPool::new(PoolOptions::default(), startup_timeout, DOCKER_LOGS),
            limits: graflow_core::protocol::Limits::default(),
            daemon_timeout: daemon::DEFAULT_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            client: OnceCell::new(),
            images: image::KnownImages::default(),
        }
    }

    /// Talks to the daemon at `host` (`unix:///path`, `tcp://host:port`) instead.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Defaults for every task this handler runs.
    pub fn with_defaults(mut self, defaults: DockerOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// The default image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.defaults.image = Some(image.into());
        self
    }

    /// How long a container may take to start answering as a runner (default 60 s).
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self.pool = RunnerPool::new(self.pool.options().clone(), timeout, DOCKER_LOGS);
        self
    }

    /// How warm containers are pooled: how many per environment, how long one may idle, how
    /// many tasks one serves, and whether tasks without a `reuse` option use them (see
    /// [`PoolOptions`]). A warm container keeps what a task leaves in its memory, `/tmp` or
    /// filesystem for the next task of the same environment; a fresh container per task (the
    /// default) shares nothing. Incompatible with `auto_remove = false`.
    pub fn with_pool(mut self, options: PoolOptions) -> Self {
        self.pool = RunnerPool::new(options, self.startup_timeout, DOCKER_LOGS);
        self
    }

    /// Bounds on what a container may send back (e.g. a larger frame for large results).
    pub fn with_limits(mut self, limits: graflow_core::protocol::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long the daemon may take to answer a control call (default 10 s): connecting,
    /// inspecting an image, creating, attaching to, starting, inspecting and removing a
    /// container, listing containers. A daemon that does not answer in time fails the task with
    /// a message naming its address and the operation. Waiting for the container and reading its
    /// output are not bounded by this (the task's `timeout` bounds them), nor are image pulls.
    pub fn with_daemon_timeout(mut self, timeout: Duration) -> Self {
        self.daemon_timeout = timeout;
        self
    }

    /// How many of its tasks may run at once in one run (default
    /// [`DEFAULT_MAX_CONCURRENCY`], 16; at least 1): each is a container, and a daemon slows
    /// down for all when too many start at once. `engine.set_handler_concurrency("docker", n)`
    /// overrides it too.
    pub fn with_max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit.max(1);
        self
    }

    fn daemon(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
    }

    /// The connected client; the first connection negotiates the API version and sweeps the
    /// leftovers of dead runs.
    async fn client(&self, task: &Task) -> Result<&Daemon, AttemptError> {
        self.client
            .get_or_try_init(|| async {
                let docker = Daemon::connect(&self.daemon(), self.daemon_timeout, task.id())
                    .await
                    .map_err(|message| AttemptError::handler(task.id(), task.handler(), message))?;
                match cleanup::sweep(&docker).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(target: "graflow::docker", removed = n, "swept leftover containers of dead runs"),
                    Err(e) => tracing::warn!(target: "graflow::docker", "could not sweep leftover containers: {e}"),
                }
                Ok(docker)
            })
            .await
    }
}

impl DockerHandler {
    /// Makes sure the daemon has the task's image, as its `pull` option says.
    async fn ensure_image(
        &self,
        docker: &Daemon,
        task: &Task,
        options: &DockerOptions,
    ) -> Result<(), AttemptError> {
        let image = options.image.as_deref().unwrap_or_default();
        image::ensure(docker, image, options.pull, &self.images)
            .await
            .map_err(|message| AttemptError::handler(task.id(), task.handler(), message))
    }

    /// Whether `task` runs in a warm container.
    fn reuses(&self, task: &Task) -> Result<bool, AttemptError> {
        self.pool
            .options()
            .reuses(task)
            .map_err(|problem| invalid(task, problem.to_string()))
    }

    /// The task's options over this handler's defaults; every problem, in one error.
    fn options(&self, task: &Task) -> Result<DockerOptions, Problem> {
        self.defaults
            .merged(task.handler_config())
            .map_err(|problems| {
                Problem::invalid_config(task.id(), task.handler(), problems.join("; "))
            })
    }
}

#[async_trait::async_trait]
impl TaskHandler for DockerHandler {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let options = self
            .options(task)
            .map_err(|problem| invalid(task, problem.to_string()))?;
        let image = options.image.clone().unwrap_or_default();
        let docker = self.client(task).await?;
        if self.reuses(task)? {
            let spec = warm::Spec::new(options, image).map_err(|message| invalid(task, message))?;
            // The image matters when containers start: checked (and, with `pull = "always"`,
            // pulled) when the environment has no runner yet, not for every task.
            if self.pool.live(&spec.key) == 0 {
                self.ensure_image(docker, task, &spec.options).await?;
            }
            return self
                .pool
                .run(&spec.key, task, ctx, self.limits, || spec.starter(docker))
                .await;
        }
        self.ensure_image(docker, task, &options).await?;
        let launch = container::Launch {
            docker,
            options: &options,
            image: &image,
            task,
            ctx,
            startup_timeout: self.startup_timeout,
            limits: self.limits,
        };
        container::run(launch).await
    }

    fn concurrency_limit(&self) -> Option<usize> {
        Some(self.max_concurrency)
    }

    /// Starts the warm containers of the tasks that reuse them: per environment, as many as
    /// there are such tasks, up to the pool's size.
    async fn warm_up(&self, tasks: &[&Task]) -> Result<usize, AttemptError> {
        let mut specs: Vec<(warm::Spec, &Task, usize)> = Vec::new();
        for &task in tasks {
            if !self.reuses(task)? {
                continue;
            }
            let fail = |message: String| invalid(task, message);
            let options = self.options(task).map_err(|p| fail(p.to_string()))?;
            let image = options.image.clone().unwrap_or_default();
            let spec = warm::Spec::new(options, image).map_err(fail)?;
            match specs.iter_mut().find(|(known, ..)| known.key == spec.key) {
                Some((_, _, count)) => *count += 1,
                None => specs.push((spec, task, 1)),
            }
        }
        let mut started = 0;
        for (spec, task, count) in &specs {
            let docker = self.client(task).await?;
            self.ensure_image(docker, task, &spec.options).await?;
            started += self
                .pool
                .warm_up(&spec.key, *count, task, || spec.starter(docker))
                .await?;
        }
        Ok(started)
    }

    /// Everything that can be known before a container exists: the options (the task's over
    /// the handler's defaults, each checked), the environment passed from the host, this program's
    /// executable (it is mounted as the runner) and, when the daemon is local (a unix socket),
    /// that every volume's host path exists. Nothing is created on the host.
    fn validate_task(&self, task: &Task) -> Result<(), Problem> {
        let options = self.options(task)?;
        let mut problems = Vec::new();
        match self.pool.options().reuses(task) {
            Ok(true) if !options.auto_remove => problems.push(
                "`reuse = true` needs `auto_remove = true`: a warm container serves many tasks and is removed when its pool stops it".to_owned(),
            ),
            Ok(_) => {}
            Err(problem) => return Err(problem),
        }
        if let Err(problem) = options.resolved_env() {
            problems.push(problem);
        }
        if let Err(problem) = mounts::runner() {
            problems.push(problem);
        }
        if self.daemon().starts_with("unix://") {
            problems.extend(mounts::missing_host_paths(&options.volumes));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problem::invalid_config(
                task.id(),
                task.handler(),
                problems.join("; "),
            ))
        }
    }
}

/// The default of [`DockerHandler::with_max_concurrency`]: containers of one run at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

graflow_core::register_handler!("docker", DockerHandler::new);

/// A failure of the task's configuration: the same attempt would fail again, so it is not
/// retried.
fn invalid(task: &Task, message: String) -> AttemptError {
    AttemptError::handler_kind(
        task.id(),
        task.handler(),
        graflow_core::HandlerFailure::InvalidConfig,
        message,
    )
}
