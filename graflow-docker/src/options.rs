//! The options of a docker task: read from its handler configuration (`#[task(image = ...)]`)
//! over the defaults set on a [`DockerHandler`](crate::DockerHandler) in code, and validated
//! before the run starts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use graflow_core::{ConfigValue, HandlerConfig};

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
    "timeout",
    "sandbox",
];

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Pull only when the image is not present (the default).
    Missing,
    /// Pull before every task.
    Always,
    /// Never pull; a missing image is an error.
    Never,
}

/// GPUs to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpus {
    /// All GPUs.
    All,
    /// This many.
    Count(u32),
}

/// A bind mount `/host:/container[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// The Docker `binds` form.
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

/// The options of one docker task.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerOptions {
    /// The image (required).
    pub image: Option<String>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// Environment variables.
    pub env: Vec<EnvVar>,
    /// Network mode (`bridge`, `host`, `none`, a network name).
    pub network: Option<String>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit (fractions allowed).
    pub cpus: Option<f64>,
    /// GPUs to request (device requests).
    pub gpus: Option<Gpus>,
    /// `user[:group]` to run as.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Pull policy.
    pub pull: Pull,
    /// Remove the container when the task ends (default). `false` keeps it for inspection.
    pub auto_remove: bool,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Limit of one container run.
    pub timeout: Option<Duration>,
    /// The preset for untrusted code.
    pub sandbox: bool,
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
            timeout: None,
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
    if !(bytes >= 6.0 * 1024.0 * 1024.0 && bytes < i64::MAX as f64) {
        return Err(format!("memory {text:?}: Docker needs at least 6m"));
    }
    Ok(bytes as i64)
}

/// Parses `"30s"`, `"1m30s"`, `"500ms"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("duration {text:?}: expected a number, e.g. \"30s\""))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("duration {text:?}: units are ms, s, m, h")),
        };
        total += number * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("duration {text:?}: {e}"))
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
    /// These options with the task's configuration applied over them; every problem is listed.
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
                    other => parse_memory(&string(key, other)?)?,
                })
            }
            "cpus" => {
                let cpus = match value {
                    ConfigValue::Str(s) => s.parse::<f64>().ok(),
                    other => other.as_f64(),
                };
                match cpus {
                    Some(c) if c > 0.0 && c.is_finite() => self.cpus = Some(c),
                    _ => {
                        return Err(format!(
                            "`cpus` takes a positive number, e.g. 1.5, not {value}"
                        ));
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
            "timeout" => self.timeout = Some(parse_duration(&string(key, value)?)?),
            "sandbox" => self.sandbox = boolean(key, value)?,
            // Unknown keys are reported once, with the list of valid ones.
            _ => {}
        }
        Ok(())
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
            ("timeout", ConfigValue::from("1m30s")),
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
        assert_eq!(o.timeout, Some(Duration::from_secs(90)));
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
