//! What a container is created with: this program as its command, the labels, the mounts, the
//! limits, the sandbox preset, GPUs and the environment, from a task's merged options.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use graflow_core::protocol::{RUNNER_ENV, RUNNER_PARENT_ENV};

use crate::cleanup;
use crate::labels::{KEEP, MANAGED, OWNER, RUN, TASK};
use crate::mounts;
use crate::options::{self, DockerOptions, Gpus};
use crate::paths::RUNNER_PATH;

/// What a container is for: one task of one run, or warm runners.
pub(crate) struct Purpose<'a> {
    /// Its `graflow.run` label: the run id, or `warm`.
    pub(crate) run: &'a str,
    /// Its `graflow.task` label: the task id, or the warm environment's name.
    pub(crate) task: &'a str,
    /// The value of `GRAFLOW_RUNNER`.
    pub(crate) mode: &'a str,
}

/// The body of the request that creates a container for `purpose` from `image`, with `options`
/// and the environment `env` (resolved from the host).
pub(crate) fn body(
    options: &DockerOptions,
    image: &str,
    purpose: Purpose<'_>,
    env: Vec<String>,
) -> Result<ContainerCreateBody, String> {
    let (exe, args) = mounts::runner()?;
    let mut cmd = vec![RUNNER_PATH.to_owned()];
    cmd.extend(args);
    let mut labels = options.label_map();
    labels.insert(MANAGED.to_owned(), "true".to_owned());
    labels.insert(RUN.to_owned(), purpose.run.to_owned());
    labels.insert(TASK.to_owned(), purpose.task.to_owned());
    labels.insert(OWNER.to_owned(), cleanup::owner());
    if !options.auto_remove {
        labels.insert(KEEP.to_owned(), "true".to_owned());
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
