//! Reading a task's handler configuration (`#[task(handler = "docker", memory = "512m", ...)]`)
//! over the handler's defaults: which keys there are, what each takes, and the merge that
//! reports every problem at once.

use graflow_core::{ConfigValue, HandlerConfig};

use super::limits::{SANDBOX_CPUS, SANDBOX_MEMORY, parse_memory};
use super::{DockerOptions, EnvVar, Gpus, Pull, Volume};

/// Every option key a docker task may set.
pub(crate) const KEYS: &[&str] = &[
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
    /// * `memory` at least 6 MiB (Docker's minimum) and at most 8 EiB; `cpus` within 0.01 to
    ///   1024; `gpus` "all" or a positive count;
    /// * volumes: both paths absolute, no `..` in the container path, no container path twice,
    ///   none on `/` or on or under `/graflow` (reserved for the handler: the runner is mounted there);
    /// * `workdir` absolute, without `..` or NUL, not the runner or under it;
    /// * `network` is `none`, `host`, `bridge`, `container:<name>` or a network name
    ///   (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`); `user` is `name`, `uid`, `name:group` or `uid:gid`.
    ///
    /// The handler's `validate_task` also checks that volume host paths exist when the daemon
    /// is local.
    pub(crate) fn merged(&self, config: &HandlerConfig) -> Result<DockerOptions, Vec<String>> {
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
            "pull" => self.pull = Pull::from_option(&string(key, value)?)?,
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
    use crate::options::limits::MIN_MEMORY;

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
