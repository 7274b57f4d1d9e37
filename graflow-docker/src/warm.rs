//! Warm containers: a container whose runner serves task after task (`GRAFLOW_RUNNER=serve`),
//! pooled by `graflow_core::remote::RunnerPool` per environment key.
//!
//! Two tasks share a container only when everything that shapes the container is equal: the
//! image reference, volumes, the environment as resolved from the host, network, memory and
//! CPU limits, GPUs, user, working directory, labels, sandbox, removal and pull settings.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use graflow_core::protocol::SERVE_MODE;
use graflow_core::remote::{Starter, Transport};

use crate::cleanup::Guard;
use crate::container::{self, Purpose};
use crate::daemon::Daemon;
use crate::options::DockerOptions;

/// The `graflow.run` label of warm containers (they serve many runs).
pub const WARM_RUN: &str = "warm";

/// What a warm container of one environment is made of, and its key: the merged options, the
/// image and the environment as resolved from this process. Tasks share warm containers only
/// when their keys are equal.
pub struct Spec {
    pub key: String,
    pub options: DockerOptions,
    pub image: String,
    pub env: Vec<String>,
}

impl Spec {
    /// The spec of a task's container (`options` merged, `image` taken from them).
    pub fn new(options: DockerOptions, image: String) -> Result<Spec, String> {
        let env = options.resolved_env()?;
        let key = format!("{image}\n{options:?}\n{env:?}");
        Ok(Spec {
            key,
            options,
            image,
            env,
        })
    }

    /// Starts one warm container of this environment.
    pub fn starter(&self, docker: &Daemon) -> Starter {
        starter(
            docker.clone(),
            self.options.clone(),
            self.image.clone(),
            self.env.clone(),
            &self.key,
        )
    }
}

/// A short name of a key for logs and container names. Keys hold environment values, so the
/// hash is keyed with this process's random keys: it says nothing of them.
fn key_hash(key: &str) -> String {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let hash = KEYS.get_or_init(RandomState::new).hash_one(key);
    format!("{:08x}", hash as u32)
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
    let tag = key_hash(key);
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
            container::create(&docker, &name, body, &image, what).await?;
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
