//! Whether the kernel's out-of-memory killer ended a container, from the daemon's events (and
//! its state, when the container can still be inspected), and what to say when it did.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{EventsOptions, InspectContainerOptions};
use futures_util::StreamExt;

use super::AbortOnDrop;
use crate::daemon::Daemon;

/// What to say of a container killed at its memory limit.
pub(crate) fn oom_message(memory: Option<i64>) -> String {
    format!(
        "the container ran out of memory (OOM-killed at its limit of {}); raise `memory` or make the task use less",
        memory.map_or("the daemon's default".to_owned(), |m| format!(
            "{} MiB",
            m / (1024 * 1024)
        ))
    )
}

/// The message for a container SIGKILLed under its memory limit whose OOM kill the daemon did
/// not report (see `likely_oom` in `run`).
pub(super) fn likely_oom_message(memory: Option<i64>) -> String {
    format!(
        "the container was SIGKILLed (exit code 137) under its memory limit of {} before answering: it most likely ran out of memory (the daemon reported no OOM kill before the container was removed); raise `memory` or make the task use less",
        memory.map_or("the daemon's default".to_owned(), |m| format!(
            "{} MiB",
            m / (1024 * 1024)
        ))
    )
}

/// How long, after a container's runner has ended, the daemon may take to report the
/// container's end (its `die` event) to an [`OomWatch`].
const DIE_GRACE: Duration = Duration::from_secs(30);

/// Watches one container's `oom` and `die` events, from its creation on, to tell whether the
/// kernel's out-of-memory killer ended it.
///
/// The daemon logs `oom` when containerd reports it, which is usually before `die`; a container
/// that is auto-removed as it dies cannot be inspected afterwards, so its events are the only
/// record. They are streamed live from before the container starts (with the history since its
/// creation replayed first), not looked up once afterwards within a time window: an `oom` the
/// daemon logs a moment after such a lookup is missed, and the daemon keeps only its last 256
/// events, which a busy daemon (other programs' containers) overwrites within seconds.
pub(super) struct OomWatch {
    name: String,
    watch: AbortOnDrop<Option<bool>>,
}

impl OomWatch {
    /// Starts watching container `name`, created at `created_at` (on the current runtime: for a
    /// container that ends within the caller's run).
    pub(super) fn start(docker: &Daemon, name: &str, created_at: std::time::SystemTime) -> Self {
        let watch = tokio::spawn(oom_then_die(docker.clone(), name.to_owned(), created_at));
        OomWatch {
            name: name.to_owned(),
            watch: AbortOnDrop(watch),
        }
    }

    /// Whether the container was OOM-killed, once the daemon has reported its end (waited for up
    /// to [`DIE_GRACE`]). A container that is not auto-removed can be inspected too: its state
    /// says so even if the `oom` event came after `die` (asked again for a moment, while the
    /// daemon has not recorded it yet).
    pub(super) async fn oom_killed(mut self, docker: &Daemon, inspectable: bool) -> bool {
        let seen = tokio::time::timeout(DIE_GRACE, &mut self.watch.0).await;
        let seen = match seen {
            Ok(Ok(seen)) => seen,
            _ => None,
        };
        decide(docker, &self.name, seen, inspectable).await
    }
}

/// Whether container `name`, created at `created_at`, was OOM-killed: its events since its
/// creation up to its `die` (waited for up to [`DIE_GRACE`]). For a container whose end is
/// diagnosed after it ended, by a caller that could not watch it live.
pub(crate) async fn oom_killed_after(
    docker: &Daemon,
    name: &str,
    created_at: std::time::SystemTime,
    inspectable: bool,
) -> bool {
    let watch = oom_then_die(docker.clone(), name.to_owned(), created_at);
    let seen = tokio::time::timeout(DIE_GRACE, watch).await.ok().flatten();
    decide(docker, name, seen, inspectable).await
}

/// What the events said (`Some(oom)` once `die` came; `None`: no end reported), completed by the
/// container's state when it can be inspected.
async fn decide(docker: &Daemon, name: &str, seen: Option<bool>, inspectable: bool) -> bool {
    match seen {
        Some(true) => return true,
        Some(false) => {}
        None => {
            tracing::debug!(target: "graflow::docker", container = %name, "the daemon reported no end of the container within {DIE_GRACE:?}; it is not known to be OOM-killed");
        }
    }
    if !inspectable {
        return false;
    }
    for _ in 0..10 {
        let inspect = docker.inspect_container(name, None::<InspectContainerOptions>);
        let state = docker
            .call(|| format!("inspecting container {name}"), inspect)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|c| c.state);
        match state.and_then(|s| s.oom_killed) {
            Some(true) => return true,
            Some(false) => tokio::time::sleep(Duration::from_millis(100)).await,
            None => return false,
        }
    }
    false
}

/// Reads container `name`'s events from its creation on until its `die`: whether an `oom` came
/// first. `None` if the stream ends or fails before.
async fn oom_then_die(
    docker: Daemon,
    name: String,
    created_at: std::time::SystemTime,
) -> Option<bool> {
    let since = created_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let options = EventsOptions {
        since: Some(since.saturating_sub(1).to_string()),
        until: None,
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("container".to_owned(), vec![name.clone()]),
            ("event".to_owned(), vec!["oom".to_owned(), "die".to_owned()]),
        ])),
    };
    let mut events = docker.events(Some(options));
    let mut oom = false;
    while let Some(event) = events.next().await {
        let event = event.ok()?;
        // The daemon's `container` filter also takes a name that merely starts with the one
        // given ("…-1" matches "…-12").
        let named = event
            .actor
            .as_ref()
            .and_then(|actor| actor.attributes.as_ref())
            .and_then(|attributes| attributes.get("name"))
            .is_some_and(|n| *n == name);
        if !named {
            continue;
        }
        match event.action.as_deref() {
            Some("oom") => oom = true,
            Some("die") => return Some(oom),
            _ => {}
        }
    }
    None
}
