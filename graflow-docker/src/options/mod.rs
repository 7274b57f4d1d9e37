//! The options of a docker task: read from its handler configuration (`#[task(image = ...)]`)
//! over the defaults set on a [`DockerHandler`](crate::DockerHandler) in code, and validated
//! before the run starts.
//!
//! This file holds [`DockerOptions`] itself; each kind of value and each step has its file:
//! `volume` (bind mounts), `env` (environment variables), `limits` (memory, CPUs, GPUs and
//! the sandbox's limits), `pull` (the pull policy), `config` (reading a task's configuration,
//! the merge) and `validate` (the checks of merged options).

use std::collections::{BTreeMap, HashMap};

mod config;
mod env;
mod limits;
mod pull;
mod validate;
mod volume;

pub use env::EnvVar;
pub use limits::Gpus;
pub(crate) use limits::nano_cpus;
#[cfg(fuzzing)]
pub(crate) use limits::parse_memory;
pub use pull::Pull;
pub use volume::Volume;

/// The options of one docker task. Start from [`DockerOptions::default`] (or
/// [`DockerOptions::image`]) and chain the `with_*` builders:
///
/// ```
/// use graflow_docker::{DockerHandler, DockerOptions};
///
/// let defaults = DockerOptions::image("python:3.11-slim")
///     .with_memory(256 * 1024 * 1024)
///     .with_cpus(0.5)
///     .with_sandbox(true);
/// let handler = DockerHandler::new().with_defaults(defaults);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DockerOptions {
    /// The image (required).
    pub image: Option<String>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Environment variables.
    pub env: Vec<EnvVar>,
    /// Network mode: `bridge`, `host`, `none`, `container:<name>` or a network name.
    pub network: Option<String>,
    /// Memory limit in bytes, at least Docker's minimum of 6 MiB.
    pub memory: Option<i64>,
    /// CPU limit, fractions allowed, from 0.01 to 1024.
    pub cpus: Option<f64>,
    /// GPUs to request (device requests).
    pub gpus: Option<Gpus>,
    /// `name`, `uid`, `name:group` or `uid:gid` to run as.
    pub user: Option<String>,
    /// Working directory: an absolute path, not the runner's.
    pub workdir: Option<String>,
    /// Pull policy.
    pub pull: Pull,
    /// Remove the container when the task ends (default). `false` keeps it for inspection.
    pub auto_remove: bool,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// The preset for untrusted code: network `none`, a read-only root filesystem with a
    /// 64 MiB tmpfs `/tmp`, all capabilities dropped, `no-new-privileges`, a pids limit of 256,
    /// user 65534, and, unless the task or the handler sets them, a memory limit of
    /// 512 MiB and a CPU limit of 1 CPU. An explicit
    /// `network`, `user`, `memory` or `cpus` wins.
    pub sandbox: bool,
}

impl DockerOptions {
    /// The defaults with image `image`.
    pub fn image(image: impl Into<String>) -> Self {
        DockerOptions::default().with_image(image)
    }

    /// Sets the image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Adds a bind mount, `host:container[:ro|rw]` (checked by [`Volume::parse`]).
    pub fn with_volume(mut self, spec: &str) -> Result<Self, String> {
        self.volumes.push(Volume::parse(spec)?);
        Ok(self)
    }

    /// Adds an environment variable: `KEY=value`, or `KEY` to pass the host's value.
    pub fn with_env(mut self, spec: &str) -> Result<Self, String> {
        self.env.push(EnvVar::parse(spec)?);
        Ok(self)
    }

    /// Sets the network mode.
    pub fn with_network(mut self, network: impl Into<String>) -> Self {
        self.network = Some(network.into());
        self
    }

    /// Sets the memory limit in bytes.
    pub fn with_memory(mut self, bytes: i64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// Sets the CPU limit (fractions allowed).
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Requests GPUs.
    pub fn with_gpus(mut self, gpus: Gpus) -> Self {
        self.gpus = Some(gpus);
        self
    }

    /// Sets the user to run as.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the working directory.
    pub fn with_workdir(mut self, workdir: impl Into<String>) -> Self {
        self.workdir = Some(workdir.into());
        self
    }

    /// Sets the pull policy.
    pub fn with_pull(mut self, pull: Pull) -> Self {
        self.pull = pull;
        self
    }

    /// Keeps (`false`) or removes (`true`, the default) the container when the task ends.
    pub fn with_auto_remove(mut self, auto_remove: bool) -> Self {
        self.auto_remove = auto_remove;
        self
    }

    /// Adds a label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Turns the sandbox preset on or off.
    pub fn with_sandbox(mut self, sandbox: bool) -> Self {
        self.sandbox = sandbox;
        self
    }
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            image: None,
            volumes: Vec::new(),
            env: Vec::new(),
            network: None,
            memory: None,
            cpus: None,
            gpus: None,
            user: None,
            workdir: None,
            pull: Pull::Missing,
            auto_remove: true,
            labels: BTreeMap::new(),
            sandbox: false,
        }
    }
}

impl DockerOptions {
    /// The environment for the container (`K=V`), host values resolved now.
    pub(crate) fn resolved_env(&self) -> Result<Vec<String>, String> {
        env::resolve(&self.env)
    }

    /// Labels as Docker wants them.
    pub(crate) fn label_map(&self) -> HashMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
