//! Container cleanup: every container is labelled with its run, task and owning process, and
//! removed however its task ends. Removal that must happen outside the task's future (the
//! future was dropped: timeout, cancellation, Ctrl-C handled by dropping the run) runs on a
//! thread of its own with its own deadline, and the process waits for it at exit. Containers
//! whose owning process died without cleaning up are swept when a handler is first used.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};

// The client with its address and the bound on control calls, under the name the code below
// has always used for the client.
use crate::daemon::Daemon as Docker;

/// Label keys.
pub const MANAGED: &str = "graflow.managed";
/// The run id.
pub const RUN: &str = "graflow.run";
/// The task id.
pub const TASK: &str = "graflow.task";
/// `host:pid:start-time` of the process that owns the container.
pub const OWNER: &str = "graflow.owner";
/// Set when `auto_remove = false` asked to keep the container.
pub const KEEP: &str = "graflow.keep";

/// How long a detached removal may take.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(20);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

/// Field 22 of `/proc/<pid>/stat`: the process start time, which tells a reused pid apart.
fn start_time(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// This process as an owner label value.
pub fn owner() -> String {
    let pid = std::process::id().to_string();
    let started = start_time(&pid).unwrap_or_default();
    format!("{}:{pid}:{started}", hostname())
}

/// Whether the process an owner label names is gone (only decidable on this host).
fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(started), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    start_time(pid).is_none_or(|now| now != started)
}

/// Detached removals still running, waited for at process exit.
static PENDING: Mutex<usize> = Mutex::new(0);
static SETTLED: Condvar = Condvar::new();

extern "C" fn wait_for_removals() {
    let deadline = Instant::now() + REMOVAL_DEADLINE;
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    while *pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        pending = SETTLED
            .wait_timeout(pending, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Force-removes `container` on a thread of its own, outside any (possibly cancelled) future.
pub fn remove_detached(docker: Docker, container: String) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(wait_for_removals) };
    });
    *PENDING.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    let name = container.clone();
    let spawned = std::thread::Builder::new()
        .name("graflow-docker-cleanup".to_owned())
        .spawn(move || {
            let removal = async {
                tokio::time::timeout(REMOVAL_DEADLINE, remove(&docker, &container)).await
            };
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => match runtime.block_on(removal) {
                    Ok(Ok(())) => tracing::debug!(target: "graflow::docker", %container, "container removed"),
                    Ok(Err(e)) => tracing::warn!(target: "graflow::docker", %container, "could not remove the container: {e}; `docker rm -f {container}` removes it"),
                    Err(_) => tracing::warn!(target: "graflow::docker", %container, "removing the container took over {REMOVAL_DEADLINE:?}; `docker rm -f {container}` removes it"),
                },
                Err(e) => tracing::warn!(target: "graflow::docker", %container, "no runtime to remove the container: {e}"),
            }
            let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
            *pending -= 1;
            SETTLED.notify_all();
        });
    if spawned.is_err() {
        *PENDING.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        tracing::warn!(target: "graflow::docker", container = %name, "could not start a cleanup thread; the next engine start sweeps the container");
    }
}

/// Force-removes a container (killing it if it runs); a container already gone is fine.
pub async fn remove(docker: &Docker, container: &str) -> Result<(), String> {
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
        // "removal already in progress"
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes the container when dropped, unless disarmed (the task removed it itself).
pub struct Guard {
    docker: Docker,
    container: Option<String>,
}

impl Guard {
    /// Guards `container`.
    pub fn new(docker: Docker, container: String) -> Self {
        Guard {
            docker,
            container: Some(container),
        }
    }

    /// The container was removed (or is to be kept): nothing left to do.
    pub fn disarm(&mut self) {
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

/// Removes the containers of processes of this host that died without cleaning up.
pub async fn sweep(docker: &Docker) -> Result<usize, String> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{MANAGED}=true")])]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let mut removed = 0;
    let listing = docker.list_containers(Some(options));
    let listed = docker.call(|| "listing containers for the sweep".to_owned(), listing);
    for container in listed.await?.map_err(|e| e.to_string())? {
        let labels = container.labels.unwrap_or_default();
        if labels.contains_key(KEEP) {
            continue;
        }
        let Some(owner) = labels.get(OWNER) else {
            continue;
        };
        let Some(id) = container.id else { continue };
        if owner_is_dead(owner) {
            remove(docker, &id).await?;
            removed += 1;
            tracing::info!(
                target: "graflow::docker",
                container = %id,
                run = labels.get(RUN).map(String::as_str).unwrap_or(""),
                task = labels.get(TASK).map(String::as_str).unwrap_or(""),
                "removed a leftover container of a dead run"
            );
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_dead() {
        assert!(!owner_is_dead(&owner()));
        let host = hostname();
        assert!(owner_is_dead(&format!("{host}:999999999:1")));
        let me = std::process::id();
        assert!(
            owner_is_dead(&format!("{host}:{me}:0")),
            "another start time is another process"
        );
        assert!(
            !owner_is_dead("some-other-host:1:1"),
            "other hosts are not ours to judge"
        );
    }
}
