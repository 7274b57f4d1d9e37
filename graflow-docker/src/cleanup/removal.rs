//! Removing a task's container however the task ends: at once when it ends normally, on
//! graflow's background runtime when its future was dropped (timeout, cancellation, Ctrl-C),
//! which the process waits for at exit.

use std::sync::Once;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptions};

use crate::daemon::Daemon;

/// How long a detached removal may take.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(20);

/// Waits at process exit for detached removals (graflow's clean-up registry counts them).
extern "C" fn wait_for_removals() {
    graflow_core::backend::wait_for_cleanups(REMOVAL_DEADLINE);
}

/// Force-removes `container` on graflow's background runtime, outside any (possibly cancelled)
/// future and any run's runtime (which may be shut down right after).
fn remove_detached(docker: Daemon, container: String) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(wait_for_removals) };
    });
    let runtime = match graflow_core::backend::background() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(target: "graflow::docker", %container, "no runtime to remove the container: {e}; the next engine start sweeps it");
            return;
        }
    };
    let pending = graflow_core::backend::cleanup_started();
    runtime.spawn(async move {
        match tokio::time::timeout(REMOVAL_DEADLINE, remove(&docker, &container)).await {
            Ok(Ok(())) => tracing::debug!(target: "graflow::docker", %container, "container removed"),
            Ok(Err(e)) => tracing::warn!(target: "graflow::docker", %container, "could not remove the container: {e}; `docker rm -f {container}` removes it"),
            Err(_) => tracing::warn!(target: "graflow::docker", %container, "removing the container took over {REMOVAL_DEADLINE:?}; `docker rm -f {container}` removes it"),
        }
        drop(pending);
    });
}

/// Force-removes a container (killing it if it runs); a container already gone is fine.
pub(super) async fn remove(docker: &Daemon, container: &str) -> Result<(), String> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    let removal = docker.remove_container(container, Some(options));
    match docker
        .call(|| format!("removing container {container}"), removal)
        .await?
    {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        // "removal already in progress": the daemon's own (an auto-removed container killed by
        // this request) or another caller's. Done only once it is gone: a program that exits
        // right after must not leave it listed.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => {
            docker
                .call(
                    || format!("waiting for the removal of container {container}"),
                    gone(docker, container),
                )
                .await
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Returns once inspecting `container` says it does not exist (any other answer: asks again).
async fn gone(docker: &Daemon, container: &str) {
    loop {
        let inspect = docker.inspect_container(container, None::<InspectContainerOptions>);
        if let Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) = inspect.await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes the container when dropped, unless disarmed (the task removed it itself).
pub(crate) struct Guard {
    docker: Daemon,
    container: Option<String>,
}

impl Guard {
    /// Guards `container`.
    pub(crate) fn new(docker: Daemon, container: String) -> Self {
        Guard {
            docker,
            container: Some(container),
        }
    }

    /// The container was removed (or is to be kept): nothing left to do.
    pub(crate) fn disarm(&mut self) {
        self.container = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            tracing::debug!(target: "graflow::docker", %container, "task ended early; removing its container");
            remove_detached(self.docker.clone(), container);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent force-removals of one auto-removed, running container: some get 409
    /// ("removal already in progress"); every one returns only once the container is gone.
    /// Needs a daemon with python:3.11-slim (`graflow-docker/scripts/setup.sh`); skipped
    /// without one unless `GRAFLOW_REQUIRE_DOCKER=1`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_removal_in_progress_is_waited_for() {
        let address = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let docker = match Daemon::connect(&address, Duration::from_secs(10), "test").await {
            Ok(docker) => docker,
            Err(e) => {
                assert!(
                    std::env::var_os("GRAFLOW_REQUIRE_DOCKER").is_none_or(|v| v != "1"),
                    "GRAFLOW_REQUIRE_DOCKER=1 but {e}"
                );
                eprintln!("skipped: {e}");
                return;
            }
        };
        for round in 0..3 {
            let name = format!("graflow-removal-race-{}-{round}", std::process::id());
            let body = bollard::models::ContainerCreateBody {
                image: Some("python:3.11-slim".to_owned()),
                cmd: Some(vec!["sleep".to_owned(), "60".to_owned()]),
                host_config: Some(bollard::models::HostConfig {
                    auto_remove: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
                .name(&name)
                .build();
            docker
                .create_container(Some(options), body)
                .await
                .expect("create the container");
            docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .expect("start the container");
            let removals: Vec<_> = (0..4)
                .map(|_| {
                    let (docker, name) = (docker.clone(), name.clone());
                    tokio::spawn(async move {
                        remove(&docker, &name).await.expect("removed");
                        docker
                            .inspect_container(&name, None::<InspectContainerOptions>)
                            .await
                    })
                })
                .collect();
            for removal in removals {
                let after = removal.await.expect("the removal task ran");
                assert!(
                    matches!(
                        after,
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 404,
                            ..
                        })
                    ),
                    "remove() returned while the container still existed: {after:?}"
                );
            }
        }
    }
}
