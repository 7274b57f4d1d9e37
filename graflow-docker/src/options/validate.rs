//! The checks of merged options, made before any task runs: limits within what Docker takes,
//! volumes and the working directory clear of the handler's `/graflow`, network and user names
//! well formed. Every problem is reported, each once.

use super::limits::{MIN_MEMORY, nano_cpus};
use super::{DockerOptions, Gpus, Volume};
use crate::paths::{self, RESERVED_DIR, RUNNER_PATH};

/// Whether `name` is a Docker object name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn docker_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl DockerOptions {
    /// What is wrong with these (merged) options, each problem once.
    pub(super) fn problems(&self) -> Vec<String> {
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
}

#[cfg(test)]
mod tests {
    use graflow_core::{ConfigValue, HandlerConfig};

    use super::*;

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
    fn cpus_are_within_a_hundredth_and_1024() {
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
}
