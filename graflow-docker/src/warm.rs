//! Warm containers: a container whose runner serves task after task (`GRAFLOW_RUNNER=serve`),
//! pooled by `graflow_core::backend::RunnerPool` per environment key.
//!
//! Two tasks share a container only when everything that shapes the container is equal: the
//! image reference, volumes, the environment as resolved from the host, network, memory and
//! CPU limits, GPUs, user, working directory, labels, sandbox, removal and pull settings.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use graflow_core::backend::{Starter, Transport};
use graflow_core::protocol::SERVE_MODE;

use crate::cleanup::Guard;
use crate::container::{self, Purpose};
use crate::daemon::Daemon;
use crate::options::DockerOptions;

/// The `graflow.run` label of warm containers (they serve many runs).
const WARM_RUN: &str = "warm";

/// What a warm container of one environment is made of, and its key: the merged options, the
/// image and the environment as resolved from this process. Tasks share warm containers only
/// when their keys are equal.
pub(crate) struct Spec {
    /// The pool's name of the environment ([`Environment`] interned).
    pub(crate) key: String,
    /// The task's merged options.
    pub(crate) options: DockerOptions,
    image: String,
    env: Vec<String>,
}

/// Everything that shapes a warm container, compared field by field. Built by destructuring
/// [`DockerOptions`] without `..`, so a field added to the options must be placed here (or
/// said not to matter) for the code to compile.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Environment {
    image: String,
    volumes: Vec<crate::options::Volume>,
    /// As resolved from this process (values included; never printed).
    env: Vec<String>,
    network: Option<String>,
    memory: Option<i64>,
    /// The CPU limit's bits (equal limits, equal bits: the options are validated finite).
    cpus: Option<u64>,
    gpus: Option<crate::options::Gpus>,
    user: Option<String>,
    workdir: Option<String>,
    pull: crate::options::Pull,
    auto_remove: bool,
    labels: std::collections::BTreeMap<String, String>,
    sandbox: bool,
}

impl Environment {
    fn of(options: &DockerOptions, image: &str, env: &[String]) -> Environment {
        let DockerOptions {
            // The image reference, as the task names it, is `image`.
            image: _,
            volumes,
            // Resolved from the host: `env`.
            env: _,
            network,
            memory,
            cpus,
            gpus,
            user,
            workdir,
            pull,
            auto_remove,
            labels,
            sandbox,
        } = options;
        Environment {
            image: image.to_owned(),
            volumes: volumes.clone(),
            env: env.to_vec(),
            network: network.clone(),
            memory: *memory,
            cpus: cpus.map(f64::to_bits),
            gpus: *gpus,
            user: user.clone(),
            workdir: workdir.clone(),
            pull: *pull,
            auto_remove: *auto_remove,
            labels: labels.clone(),
            sandbox: *sandbox,
        }
    }

    /// The pool's key of this environment: equal environments, one key; each new one a new
    /// key (`env-N`), in this process.
    fn pool_key(self) -> String {
        static KNOWN: OnceLock<std::sync::Mutex<std::collections::HashMap<Environment, String>>> =
            OnceLock::new();
        let mut known = KNOWN
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = known.len();
        known
            .entry(self)
            .or_insert_with(|| format!("env-{next}"))
            .clone()
    }
}

impl Spec {
    /// The spec of a task's container (`options` merged, `image` taken from them).
    pub(crate) fn new(options: DockerOptions, image: String) -> Result<Spec, String> {
        let env = options.resolved_env()?;
        let key = Environment::of(&options, &image, &env).pool_key();
        Ok(Spec {
            key,
            options,
            image,
            env,
        })
    }

    /// Starts one warm container of this environment.
    pub(crate) fn starter(&self, docker: &Daemon) -> Starter {
        starter(
            docker.clone(),
            self.options.clone(),
            self.image.clone(),
            self.env.clone(),
            &self.key,
        )
    }
}

/// Starts one warm container of `key`.
fn starter(
    docker: Daemon,
    options: DockerOptions,
    image: String,
    env: Vec<String>,
    key: &str,
) -> Starter {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // The key says nothing of the environment's values: `env-N`.
    let tag = key.to_owned();
    Box::new(move || {
        async move {
            let name = format!(
                "graflow-warm-{tag}-{}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            );
            let purpose = Purpose {
                run: WARM_RUN,
                task: &format!("warm-{tag}"),
                mode: SERVE_MODE,
            };
            let body = container::body(&options, &image, purpose, env)?;
            let created_at = std::time::SystemTime::now();
            // Guard by name before the request: a start dropped mid-request leaves nothing.
            let guard = Guard::new(docker.clone(), name.clone());
            let what = "warm runners";
            container::create(&docker, &name, body, &image, what)
                .await
                .map_err(|(_, message)| message)?;
            let attached = container::attach_and_start(&docker, &name, &image, what).await?;
            tracing::debug!(target: "graflow::docker", container = %name, %image, key = %tag, "warm container started");
            let memory = options.memory;
            let autopsy = {
                let name = name.clone();
                async move {
                    // A warm container outlives the run (and runtime) that started it: its
                    // events are read when it has ended. It is auto-removed: they are the only
                    // record.
                    container::oom_killed_after(&docker, &name, created_at, false)
                        .await
                        .then(|| container::oom_message(memory))
                }
            };
            Ok(Transport {
                input: attached.input,
                output: container::chunks(attached.output),
                guard: Box::new(guard),
                name: format!("container {name}"),
                autopsy: Some(autopsy.boxed()),
            })
        }
        .boxed()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_environments_share_a_key_and_any_difference_makes_another() {
        let base = DockerOptions::image("python:3.11-slim").with_memory(256 << 20);
        let key = |options: &DockerOptions| {
            Spec::new(options.clone(), "python:3.11-slim".to_owned())
                .unwrap()
                .key
        };
        assert_eq!(key(&base), key(&base.clone()));
        // Two values of one variable: the Debug form redacts values, the key does not.
        let a = base.clone().with_env("TOKEN=a").unwrap();
        let b = base.clone().with_env("TOKEN=b").unwrap();
        assert_ne!(key(&a), key(&b));
        assert_ne!(key(&base), key(&base.clone().with_cpus(0.5)));
        assert_ne!(key(&base), key(&base.clone().with_sandbox(true)));
        assert_ne!(
            key(&base),
            Spec::new(base.clone(), "python:3.12-slim".to_owned())
                .unwrap()
                .key
        );
    }
}
