//! The options of a docker task: read from its handler configuration (`#[task(image = ...)]`)
//! over the defaults set on a [`DockerHandler`](crate::DockerHandler) in code, and validated
//! before the run starts.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use graflow_core::{ConfigValue, HandlerConfig};

use crate::paths::{self, RESERVED_DIR, RUNNER_PATH};

/// Docker's smallest memory limit: 6 MiB.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The `cpus` a task may ask for: from Docker's smallest share to a bound far above any host
/// (the daemon also refuses more CPUs than its host has).
pub const CPUS: RangeInclusive<f64> = 0.01..=1024.0;

/// The memory limit of `sandbox = true` when neither the task nor the handler sets `memory`.
pub const SANDBOX_MEMORY: i64 = 512 * 1024 * 1024;

/// The CPU limit of `sandbox = true` when neither the task nor the handler sets `cpus`.
pub const SANDBOX_CPUS: f64 = 1.0;

/// Every option key a docker task may set.
pub const KEYS: &[&str] = &[
    "image",
    "volumes",
    "env",
    "network",
    "memory",
    "cpus",
    "gpus",
    "user",
    "workdir",
    "pull",
    "auto_remove",
    "labels",
    "sandbox",
    "reuse",
];

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pull {
    /// Pull only when the image is not present (the default).
    Missing,
    /// Pull before every task.
    Always,
    /// Never pull; a missing image is an error.
    Never,
}

/// GPUs to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Gpus {
    /// All GPUs.
    All,
    /// This many.
    Count(u32),
}

/// A bind mount `/host:/container[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Volume {
    /// Absolute path on the daemon's host.
    pub host: String,
    /// Absolute path in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parses `/host:/container[:ro|rw]`.
    pub fn parse(spec: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [host, container] => (*host, *container, false),
            [host, container, "ro"] => (*host, *container, true),
            [host, container, "rw"] => (*host, *container, false),
            _ => {
                return Err(format!(
                    "volume {spec:?} is not \"/host/path:/container/path\" optionally followed by \":ro\" or \":rw\""
                ));
            }
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(format!("volume {spec:?}: both paths must be absolute"));
        }
        Ok(Volume {
            host: host.to_owned(),
            container: container.to_owned(),
            read_only,
        })
    }

    /// The `/host:/container:ro|rw` form, as `volumes` takes it (for messages; the container
    /// gets a bind mount of the Mounts API).
    pub fn bind(&self) -> String {
        format!(
            "{}:{}:{}",
            self.host,
            self.container,
            if self.read_only { "ro" } else { "rw" }
        )
    }
}

/// An environment variable for the container. Values are never logged or shown in errors.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvVar {
    /// `K=V`.
    Value(String, String),
    /// `K`: the value this process has when the task starts.
    FromHost(String),
}

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvVar::Value(k, _) => write!(f, "{k}=<redacted>"),
            EnvVar::FromHost(k) => write!(f, "{k} (from the host)"),
        }
    }
}

impl EnvVar {
    /// Parses `K=V` or `K`.
    pub fn parse(spec: &str) -> Result<EnvVar, String> {
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (spec, None),
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Show the key only: the value may be a secret.
            return Err(format!(
                "environment entry with key {key:?} is not \"KEY=value\" or \"KEY\" (keys are letters, digits and _)"
            ));
        }
        Ok(match value {
            Some(v) => EnvVar::Value(key.to_owned(), v.to_owned()),
            None => EnvVar::FromHost(key.to_owned()),
        })
    }

    /// The variable's name.
    pub fn key(&self) -> &str {
        match self {
            EnvVar::Value(k, _) | EnvVar::FromHost(k) => k,
        }
    }
}

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
    /// Memory limit in bytes, at least [`MIN_MEMORY`].
    pub memory: Option<i64>,
    /// CPU limit, fractions allowed, within [`CPUS`].
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
    /// [`SANDBOX_MEMORY`] (512 MiB) and a CPU limit of [`SANDBOX_CPUS`] (1 CPU). An explicit
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

/// Parses `"512m"`, `"2g"`, `"1024k"`, `"1000000"` (bytes).
pub fn parse_memory(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => t.split_at(at),
        None => (t.as_str(), ""),
    };
    let scale: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "memory {text:?}: use a number with b, k, m or g, e.g. \"512m\""
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("memory {text:?}: use a number with b, k, m or g, e.g. \"512m\""))?;
    let bytes = value * scale;
    if bytes >= i64::MAX as f64 {
        return Err(format!(
            "memory {text:?} is too large: a limit is at most 8 EiB (8589934591g)"
        ));
    }
    if bytes < MIN_MEMORY as f64 {
        return Err(format!(
            "memory {text:?}: Docker needs at least 6 MiB (\"6m\")"
        ));
    }
    Ok(bytes as i64)
}

/// `cpus` in the nanocpus Docker takes, computed without saturating.
pub fn nano_cpus(cpus: f64) -> Result<i64, String> {
    if !CPUS.contains(&cpus) {
        return Err(format!(
            "`cpus` is {cpus}, outside {} to {} (fractions allowed, e.g. 1.5)",
            CPUS.start(),
            CPUS.end()
        ));
    }
    let nanos = (cpus * 1e9).round();
    if nanos >= 1.0 && nanos < i64::MAX as f64 {
        Ok(nanos as i64)
    } else {
        Err(format!("`cpus` {cpus} has no nanocpu equivalent"))
    }
}

/// Whether `name` is a Docker object name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn docker_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn strings(key: &str, value: &ConfigValue) -> Result<Vec<String>, String> {
    value
        .as_str_list()
        .map(|items| items.into_iter().map(str::to_owned).collect())
        .ok_or_else(|| {
            format!(
                "`{key}` takes a string or a list of strings, not {}",
                value.kind()
            )
        })
}

fn string(key: &str, value: &ConfigValue) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` takes a string, not {}", value.kind()))
}

fn boolean(key: &str, value: &ConfigValue) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("`{key}` takes true or false, not {}", value.kind()))
}

impl DockerOptions {
    /// These options with the task's configuration applied over them, then the `sandbox`
    /// defaults for limits neither sets; every problem is listed, whether it comes from the task
    /// or from these defaults. Checked here, before any task runs:
    ///
    /// * `memory` at least 6 MiB ([`MIN_MEMORY`]) and at most 8 EiB; `cpus` within 0.01 to
    ///   1024 ([`CPUS`]); `gpus` "all" or a positive count;
    /// * volumes: both paths absolute, no `..` in the container path, no container path twice,
    ///   none on `/` or on or under `/graflow` (reserved for the handler: the runner is mounted there);
    /// * `workdir` absolute, without `..` or NUL, not the runner or under it;
    /// * `network` is `none`, `host`, `bridge`, `container:<name>` or a network name
    ///   (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`); `user` is `name`, `uid`, `name:group` or `uid:gid`.
    ///
    /// The handler's `validate_task` also checks that volume host paths exist when the daemon
    /// is local.
    pub fn merged(&self, config: &HandlerConfig) -> Result<DockerOptions, Vec<String>> {
        let mut options = self.clone();
        let mut problems = Vec::new();
        let unknown = config.unknown_keys(KEYS);
        if !unknown.is_empty() {
            problems.push(format!(
                "unknown option(s) {}; the docker handler knows: {}",
                unknown
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                KEYS.join(", ")
            ));
        }
        for (key, value) in config.iter() {
            if let Err(problem) = options.set(key, value) {
                problems.push(problem);
            }
        }
        if options.sandbox {
            options.memory.get_or_insert(SANDBOX_MEMORY);
            options.cpus.get_or_insert(SANDBOX_CPUS);
        }
        problems.extend(options.problems());
        if options.image.as_deref().is_none_or(str::is_empty) {
            problems.push(
                "`image` is required, e.g. #[task(handler = \"docker\", image = \"python:3.11-slim\")] or DockerHandler::new().with_image(...)"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(options)
        } else {
            Err(problems)
        }
    }

    fn set(&mut self, key: &str, value: &ConfigValue) -> Result<(), String> {
        match key {
            "image" => self.image = Some(string(key, value)?),
            "volumes" => {
                self.volumes = strings(key, value)?
                    .iter()
                    .map(|s| Volume::parse(s))
                    .collect::<Result<_, _>>()?
            }
            "env" => {
                self.env = strings(key, value)?
                    .iter()
                    .map(|s| EnvVar::parse(s))
                    .collect::<Result<_, _>>()?
            }
            "network" => self.network = Some(string(key, value)?),
            "memory" => {
                self.memory = Some(match value {
                    ConfigValue::Int(bytes) => *bytes,
                    ConfigValue::Str(text) => parse_memory(text)?,
                    other => {
                        return Err(format!(
                            "`memory` takes a byte count or a string like \"512m\", not {}",
                            other.kind()
                        ));
                    }
                })
            }
            "cpus" => {
                let cpus = match value {
                    ConfigValue::Str(s) => s.trim().parse::<f64>().ok(),
                    other => other.as_f64(),
                };
                match cpus {
                    Some(c) => self.cpus = Some(c),
                    None => {
                        return Err(format!("`cpus` takes a number, e.g. 1.5, not {value}"));
                    }
                }
            }
            "gpus" => {
                self.gpus = Some(match value {
                    ConfigValue::Str(s) if s == "all" => Gpus::All,
                    ConfigValue::Int(n) if *n > 0 => Gpus::Count(
                        u32::try_from(*n).map_err(|_| "`gpus` is too large".to_owned())?,
                    ),
                    other => {
                        return Err(format!(
                            "`gpus` takes \"all\" or a positive count, not {other}"
                        ));
                    }
                })
            }
            "user" => self.user = Some(string(key, value)?),
            "workdir" => self.workdir = Some(string(key, value)?),
            "pull" => {
                self.pull = match string(key, value)?.as_str() {
                    "missing" => Pull::Missing,
                    "always" => Pull::Always,
                    "never" => Pull::Never,
                    other => {
                        return Err(format!(
                            "`pull` is \"missing\", \"always\" or \"never\", not {other:?}"
                        ));
                    }
                }
            }
            "auto_remove" => self.auto_remove = boolean(key, value)?,
            "labels" => {
                for label in strings(key, value)? {
                    let (k, v) = label
                        .split_once('=')
                        .ok_or_else(|| format!("label {label:?} is not \"key=value\""))?;
                    if k.starts_with("graflow.") {
                        return Err(format!(
                            "label {k:?}: the graflow.* labels are the handler's own"
                        ));
                    }
                    self.labels.insert(k.to_owned(), v.to_owned());
                }
            }
            "sandbox" => self.sandbox = boolean(key, value)?,
            // Unknown keys are reported once, with the list of valid ones.
            _ => {}
        }
        Ok(())
    }

    /// What is wrong with these (merged) options, each problem once.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(memory) = self.memory
            && memory < MIN_MEMORY
        {
            problems.push(format!(
                "`memory` of {memory} bytes is below Docker's minimum of 6 MiB ({MIN_MEMORY} bytes); give a byte count or a string like \"512m\""
            ));
        }
        if let Some(cpus) = self.cpus
            && let Err(problem) = nano_cpus(cpus)
        {
            problems.push(problem);
        }
        if self.gpus == Some(Gpus::Count(0)) {
            problems.push("`gpus` takes \"all\" or a positive count, not 0".to_owned());
        }
        let mut mounted: Vec<(Vec<&str>, &Volume)> = Vec::new();
        for volume in &self.volumes {
            let what = format!("volume {:?}", volume.bind());
            if !volume.host.starts_with('/') || volume.host.contains('\0') {
                problems.push(format!(
                    "{what}: the host path must be absolute, without NUL bytes"
                ));
            }
            let parts = match paths::components(&what, &volume.container) {
                Ok(parts) => parts,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            let reserved = RESERVED_DIR.trim_start_matches('/');
            if parts.is_empty() {
                problems.push(format!(
                    "{what} would cover the container's root `/`; mount it on a directory"
                ));
            } else if parts[0] == reserved {
                problems.push(format!(
                    "{what}: {RESERVED_DIR} is reserved for the handler (this program is mounted at {RUNNER_PATH}); mount it elsewhere"
                ));
            } else if let Some((_, first)) = mounted.iter().find(|(p, _)| *p == parts) {
                problems.push(format!(
                    "volumes {:?} and {:?} are both mounted at {}; give each its own container path",
                    first.bind(),
                    volume.bind(),
                    volume.container
                ));
            } else {
                mounted.push((parts, volume));
            }
        }
        if let Some(workdir) = &self.workdir {
            let what = format!("`workdir` {workdir:?}");
            match paths::components(&what, workdir) {
                Err(problem) => problems.push(problem),
                Ok(parts) if paths::is_runner(&parts) => problems.push(format!(
                    "{what}: {RUNNER_PATH} is this program's binary, not a directory; pick another working directory"
                )),
                Ok(_) => {}
            }
        }
        if let Some(network) = &self.network {
            let name = network.strip_prefix("container:").unwrap_or(network);
            if !docker_name(name) {
                problems.push(format!(
                    "`network` {network:?} is not `none`, `host`, `bridge`, `container:<name>` or a network name (letters, digits, `_`, `.`, `-`, starting with a letter or digit)"
                ));
            }
        }
        if let Some(user) = &self.user {
            let parts: Vec<&str> = user.split(':').collect();
            let well_formed = parts.len() <= 2
                && parts.iter().all(|part| {
                    !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control())
                });
            if !well_formed {
                problems.push(format!(
                    "`user` {user:?} is not `name`, `uid`, `name:group` or `uid:gid` (no spaces, no empty parts)"
                ));
            }
        }
        problems
    }

    /// The environment for the container (`K=V`), host values resolved now.
    pub fn resolved_env(&self) -> Result<Vec<String>, String> {
        self.env
            .iter()
            .map(|var| match var {
                EnvVar::Value(k, v) => Ok(format!("{k}={v}")),
                EnvVar::FromHost(k) => std::env::var(k).map(|v| format!("{k}={v}")).map_err(|_| {
                    format!("`env` passes {k} from the host, but this process has no {k} set")
                }),
            })
            .collect()
    }

    /// Labels as Docker wants them.
    pub fn label_map(&self) -> HashMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates_every_option() {
        let config: HandlerConfig = [
            ("image", ConfigValue::from("python:3.11-slim")),
            (
                "volumes",
                ConfigValue::from(vec!["/data:/data:ro", "/tmp/x:/x"]),
            ),
            ("env", ConfigValue::from(vec!["A=1", "HOME"])),
            ("memory", ConfigValue::from("512m")),
            ("cpus", ConfigValue::Float(1.5)),
            ("gpus", ConfigValue::from("all")),
            ("pull", ConfigValue::from("never")),
            ("labels", ConfigValue::from(vec!["team=ml"])),
            ("sandbox", ConfigValue::Bool(true)),
        ]
        .into_iter()
        .collect();
        let o = DockerOptions::default().merged(&config).unwrap();
        assert_eq!(o.volumes[0].bind(), "/data:/data:ro");
        assert_eq!(o.volumes[1].bind(), "/tmp/x:/x:rw");
        assert_eq!(o.memory, Some(512 * 1024 * 1024));
        assert_eq!(o.gpus, Some(Gpus::All));
        assert_eq!(o.pull, Pull::Never);
        assert!(o.sandbox);
        assert_eq!(o.labels["team"], "ml");
        assert_eq!(format!("{:?}", o.env[0]), "A=<redacted>");
    }

    #[test]
    fn reports_every_problem_and_never_a_secret() {
        let config: HandlerConfig = [
            ("imgae", ConfigValue::from("x")),
            ("volumes", ConfigValue::from("relative:/x")),
            ("env", ConfigValue::from("BAD KEY=hunter2")),
            ("memory", ConfigValue::from("lots")),
        ]
        .into_iter()
        .collect();
        let problems = DockerOptions::default().merged(&config).unwrap_err();
        let text = problems.join("\n");
        assert!(
            text.contains("unknown option(s) `imgae`; the docker handler knows: image,"),
            "{text}"
        );
        assert!(text.contains("both paths must be absolute"), "{text}");
        assert!(text.contains("memory \"lots\""), "{text}");
        assert!(text.contains("`image` is required"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(problems.len(), 5, "{text}");
    }

    /// The problems of `config` merged over `defaults`, joined.
    fn problems_with(defaults: &DockerOptions, config: &[(&str, ConfigValue)]) -> String {
        let config: HandlerConfig = config.iter().cloned().collect();
        match defaults.merged(&config) {
            Ok(_) => String::new(),
            Err(problems) => problems.join("\n"),
        }
    }

    fn problems(config: &[(&str, ConfigValue)]) -> String {
        let mut config = config.to_vec();
        config.push(("image", ConfigValue::from("python:3.11-slim")));
        problems_with(&DockerOptions::default(), &config)
    }

    #[test]
    fn memory_below_six_mebibytes_or_overflowing_is_refused() {
        for bytes in [0, 1, -5, MIN_MEMORY - 1] {
            let text = problems(&[("memory", ConfigValue::Int(bytes))]);
            assert!(
                text.contains(&format!(
                    "`memory` of {bytes} bytes is below Docker's minimum of 6 MiB (6291456 bytes)"
                )),
                "{bytes}: {text}"
            );
        }
        assert_eq!(problems(&[("memory", ConfigValue::Int(MIN_MEMORY))]), "");
        let text = problems(&[("memory", ConfigValue::from("5m"))]);
        assert!(text.contains("Docker needs at least 6 MiB"), "{text}");
        for absurd in ["9999999999g", "8589934592g", "99999999999999999999"] {
            let text = problems(&[("memory", ConfigValue::from(absurd))]);
            assert!(
                text.contains("is too large: a limit is at most 8 EiB"),
                "{absurd}: {text}"
            );
        }
        let text = problems(&[("memory", ConfigValue::Float(1e9))]);
        assert!(
            text.contains("`memory` takes a byte count or a string like \"512m\", not a float"),
            "{text}"
        );
        let defaults = DockerOptions {
            image: Some("base".into()),
            memory: Some(1),
            ..DockerOptions::default()
        };
        let text = problems_with(&defaults, &[]);
        assert!(
            text.contains("`memory` of 1 bytes"),
            "a handler default is checked too: {text}"
        );
    }

    #[test]
    fn cpus_are_within_a_hundredth_and_1024_and_converted_exactly() {
        for cpus in [0.0, 0.001, -1.0, 1024.5, 1e300] {
            let text = problems(&[("cpus", ConfigValue::Float(cpus))]);
            assert!(text.contains("outside 0.01 to 1024"), "{cpus}: {text}");
        }
        let text = problems(&[("cpus", ConfigValue::from("NaN"))]);
        assert!(text.contains("outside 0.01 to 1024"), "{text}");
        let text = problems(&[("cpus", ConfigValue::from("many"))]);
        assert!(
            text.contains("`cpus` takes a number, e.g. 1.5, not \"many\""),
            "{text}"
        );
        for ok in [0.01, 1024.0] {
            assert_eq!(problems(&[("cpus", ConfigValue::Float(ok))]), "");
        }
        assert_eq!(problems(&[("cpus", ConfigValue::Int(2))]), "");
        assert_eq!(nano_cpus(1.5), Ok(1_500_000_000));
        assert_eq!(nano_cpus(0.01), Ok(10_000_000));
        assert_eq!(nano_cpus(1024.0), Ok(1_024_000_000_000));
        assert!(nano_cpus(f64::INFINITY).is_err());
    }

    #[test]
    fn volumes_may_not_cover_the_root_or_the_runner_or_repeat_a_path() {
        for target in [
            "/",
            "/graflow",
            "/graflow/runner",
            "/graflow/x",
            "//graflow/",
            "/./graflow",
        ] {
            let text = problems(&[("volumes", ConfigValue::from(format!("/tmp:{target}")))]);
            assert!(
                text.contains("would cover the container's root")
                    || text.contains("/graflow is reserved for the handler"),
                "{target}: {text}"
            );
        }
        assert_eq!(
            problems(&[("volumes", ConfigValue::from("/tmp:/graflowish"))]),
            ""
        );
        let text = problems(&[("volumes", ConfigValue::from("/tmp:/a/../graflow"))]);
        assert!(text.contains("must not contain `..`"), "{text}");
        let text = problems(&[(
            "volumes",
            ConfigValue::from(vec!["/tmp:/data", "/var:/data/:ro"]),
        )]);
        assert!(
            text.contains(
                "volumes \"/tmp:/data:rw\" and \"/var:/data/:ro\" are both mounted at /data/"
            ),
            "{text}"
        );
        let text = problems(&[("volumes", ConfigValue::from("/tmp:data"))]);
        assert!(text.contains("both paths must be absolute"), "{text}");
        let defaults = DockerOptions {
            image: Some("base".into()),
            volumes: vec![Volume {
                host: "relative".into(),
                container: "data".into(),
                read_only: false,
            }],
            ..DockerOptions::default()
        };
        let text = problems_with(&defaults, &[]);
        assert!(text.contains("the host path must be absolute"), "{text}");
        assert!(
            text.contains("must be an absolute path in the container"),
            "{text}"
        );
    }

    #[test]
    fn workdir_is_absolute_and_not_the_runner() {
        for bad in [
            "relative",
            "/graflow/runner",
            "/graflow/runner/x",
            "/tmp/\0x",
            "/a/../b",
        ] {
            let text = problems(&[("workdir", ConfigValue::from(bad))]);
            assert!(text.contains("`workdir`"), "{bad:?}: {text}");
        }
        for ok in ["/", "/work", "/graflow", "/tmp/./x/"] {
            assert_eq!(problems(&[("workdir", ConfigValue::from(ok))]), "", "{ok}");
        }
    }

    #[test]
    fn network_is_a_mode_a_container_or_a_docker_name() {
        for ok in [
            "none",
            "host",
            "bridge",
            "container:db-1",
            "my_net.v2",
            "0net",
        ] {
            assert_eq!(problems(&[("network", ConfigValue::from(ok))]), "", "{ok}");
        }
        for bad in [
            "",
            "my net",
            "-net",
            "container:",
            "container: db",
            "net/1",
            "ünï",
        ] {
            let text = problems(&[("network", ConfigValue::from(bad))]);
            assert!(
                text.contains("is not `none`, `host`, `bridge`, `container:<name>`"),
                "{bad:?}: {text}"
            );
        }
    }

    #[test]
    fn user_is_a_name_or_id_with_an_optional_group() {
        for ok in ["1000", "1000:1000", "app", "app:staff", "65534:65534"] {
            assert_eq!(problems(&[("user", ConfigValue::from(ok))]), "", "{ok}");
        }
        for bad in ["", ":", "1000:", ":1000", "a:b:c", "my user", "app:\tstaff"] {
            let text = problems(&[("user", ConfigValue::from(bad))]);
            assert!(
                text.contains("is not `name`, `uid`, `name:group` or `uid:gid`"),
                "{bad:?}: {text}"
            );
        }
    }

    #[test]
    fn gpus_are_all_or_a_positive_count() {
        assert_eq!(problems(&[("gpus", ConfigValue::Int(2))]), "");
        for bad in [
            ConfigValue::Int(0),
            ConfigValue::Int(-1),
            ConfigValue::from("some"),
        ] {
            let text = problems(&[("gpus", bad.clone())]);
            assert!(
                text.contains("`gpus` takes \"all\" or a positive count"),
                "{bad}: {text}"
            );
        }
        let defaults = DockerOptions {
            image: Some("base".into()),
            gpus: Some(Gpus::Count(0)),
            ..DockerOptions::default()
        };
        assert!(problems_with(&defaults, &[]).contains("not 0"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = problems(&[
            ("memory", ConfigValue::Int(1)),
            ("cpus", ConfigValue::Float(0.0)),
            ("volumes", ConfigValue::from("/tmp:/graflow/runner")),
            ("workdir", ConfigValue::from("rel")),
            ("network", ConfigValue::from("my net")),
            ("user", ConfigValue::from("a b")),
        ]);
        assert_eq!(text.lines().count(), 6, "{text}");
    }

    #[test]
    fn the_sandbox_limits_memory_and_cpus_unless_told_otherwise() {
        let sandboxed = |extra: &[(&str, ConfigValue)]| {
            let mut config = vec![
                ("image", ConfigValue::from("python:3.11-slim")),
                ("sandbox", ConfigValue::Bool(true)),
            ];
            config.extend_from_slice(extra);
            let config: HandlerConfig = config.into_iter().collect();
            DockerOptions::default().merged(&config).unwrap()
        };
        let o = sandboxed(&[]);
        assert_eq!((o.memory, o.cpus), (Some(512 * 1024 * 1024), Some(1.0)));
        let o = sandboxed(&[
            ("memory", ConfigValue::from("2g")),
            ("cpus", ConfigValue::Float(0.5)),
        ]);
        assert_eq!(
            (o.memory, o.cpus),
            (Some(2 * 1024 * 1024 * 1024), Some(0.5))
        );
        let defaults = DockerOptions {
            memory: Some(64 * 1024 * 1024),
            ..DockerOptions::default()
        };
        let config: HandlerConfig = [
            ("image", ConfigValue::from("x")),
            ("sandbox", ConfigValue::Bool(true)),
        ]
        .into_iter()
        .collect();
        let o = defaults.merged(&config).unwrap();
        assert_eq!(
            (o.memory, o.cpus),
            (Some(64 * 1024 * 1024), Some(1.0)),
            "the handler's memory wins"
        );
        let plain: HandlerConfig = [("image", "x")].into_iter().collect();
        let o = DockerOptions::default().merged(&plain).unwrap();
        assert_eq!(
            (o.memory, o.cpus),
            (None, None),
            "no limits without the sandbox"
        );
    }

    #[test]
    fn task_options_win_over_handler_defaults() {
        let defaults = DockerOptions {
            image: Some("base".into()),
            network: Some("none".into()),
            ..DockerOptions::default()
        };
        let config: HandlerConfig = [("image", "python:3.11-slim")].into_iter().collect();
        let o = defaults.merged(&config).unwrap();
        assert_eq!(o.image.as_deref(), Some("python:3.11-slim"));
        assert_eq!(o.network.as_deref(), Some("none"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn config_value() -> impl Strategy<Value = ConfigValue> {
        let leaf = prop_oneof![
            "\\PC{0,16}".prop_map(ConfigValue::Str),
            prop::sample::select(vec![
                "/data:/data:ro",
                "/:/",
                "/a:/graflow/x",
                "512m",
                "1k",
                "8589934592g",
                "all",
                "container:",
                "none",
                "1000:1000",
                "KEY=v",
                "K",
                "/w",
                "always",
                "never",
            ])
            .prop_map(|s| ConfigValue::Str(s.to_owned())),
            any::<i64>().prop_map(ConfigValue::Int),
            any::<f64>().prop_map(ConfigValue::Float),
            any::<bool>().prop_map(ConfigValue::Bool),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(ConfigValue::List)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn volumes_read_back(host in "(/[a-z0-9._-]{0,8}){1,3}", container in "(/[a-z0-9._-]{0,8}){1,3}", read_only in any::<bool>()) {
            let volume = Volume::parse(&format!("{host}:{container}:{}", if read_only { "ro" } else { "rw" })).unwrap();
            prop_assert_eq!(&volume.host, &host);
            prop_assert_eq!(volume.read_only, read_only);
            prop_assert_eq!(Volume::parse(&volume.bind()), Ok(volume));
        }

        #[test]
        fn memory_reads_back(mebibytes in 6i64..1 << 20) {
            prop_assert_eq!(parse_memory(&format!("{mebibytes}m")), Ok(mebibytes << 20));
            prop_assert_eq!(parse_memory(&format!("{}", mebibytes << 20)), Ok(mebibytes << 20));
        }

        /// Any text is a volume, an environment entry and a memory size, or says why not.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = Volume::parse(&text);
            let _ = EnvVar::parse(&text);
            if let Ok(bytes) = parse_memory(&text) {
                prop_assert!(bytes >= MIN_MEMORY);
            }
        }

        /// Any task configuration is merged and validated, or its problems are listed.
        #[test]
        fn arbitrary_configurations_never_panic(
            entries in prop::collection::vec(
                (prop_oneof![prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned), "[a-z_]{0,8}"], config_value()),
                0..8,
            ),
            sandbox in any::<bool>(),
        ) {
            let mut config = HandlerConfig::new();
            for (key, value) in entries {
                config.set(key, value);
            }
            let defaults = DockerOptions::image("python:3.11-slim").with_sandbox(sandbox);
            match defaults.merged(&config) {
                Ok(options) => {
                    if let Some(memory) = options.memory {
                        prop_assert!(memory >= MIN_MEMORY);
                    }
                }
                Err(problems) => prop_assert!(!problems.is_empty()),
            }
        }
    }
}
