//! The daemon one handler talks to, and the bound on its control calls: a daemon that accepts
//! connections but never answers (hung, overloaded, a stale socket forwarder) must fail the task
//! with a message naming the daemon and what was being done, not stall the run forever.
//!
//! Only control calls are bounded: connecting (the version negotiation), inspecting an image,
//! creating, attaching to (the request; the stream is the task's output), starting, inspecting
//! and removing a container, listing containers for the sweep. Waiting for a container and
//! reading its output last as long as the task does; they are bounded by the task's `timeout`.

use std::future::IntoFuture;
use std::ops::Deref;
use std::time::Duration;

use bollard::Docker;

/// How long a control call may take unless the handler says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client, the address it was reached at, and the bound on control calls.
///
/// Dereferences to the bollard client; a call made through that is unbounded, so every control
/// call goes through [`Daemon::call`].
#[derive(Clone)]
pub(crate) struct Daemon {
    client: Docker,
    address: String,
    limit: Duration,
}

impl Deref for Daemon {
    type Target = Docker;

    fn deref(&self) -> &Docker {
        &self.client
    }
}

impl Daemon {
    /// Connects to the daemon at `address` and negotiates the API version (the first request),
    /// within `limit`. The error says what is wrong and what to do.
    pub(crate) async fn connect(
        address: &str,
        limit: Duration,
        task: &str,
    ) -> Result<Daemon, String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "the Docker daemon at {address} is unreachable ({e}); start it (`dockerd`, `systemctl start docker`) or set DOCKER_HOST to a running daemon"
            )
        };
        let client = Docker::connect_with_host(address).map_err(|e| unreachable(&e))?;
        let unnegotiated = Daemon {
            client: client.clone(),
            address: address.to_owned(),
            limit,
        };
        let client = unnegotiated
            .call(
                || format!("connecting (negotiating the API version) for task '{task}'"),
                client.negotiate_version(),
            )
            .await?
            .map_err(|e| unreachable(&e))?;
        Ok(Daemon {
            client,
            ..unnegotiated
        })
    }

    /// `request` (one control call), or the message that the daemon did not answer in time.
    /// `doing` ("creating the container for task 'x'") is only built when it did not.
    pub(crate) async fn call<F: IntoFuture>(
        &self,
        doing: impl FnOnce() -> String,
        request: F,
    ) -> Result<F::Output, String> {
        tokio::time::timeout(self.limit, request)
            .await
            .map_err(|_| no_answer(&self.address, self.limit, &doing()))
    }
}

/// The message for a control call that got no answer within `limit`.
fn no_answer(address: &str, limit: Duration, doing: &str) -> String {
    format!(
        "the Docker daemon at {address} did not answer within {limit:?} while {doing}; check that dockerd is healthy (`docker info`) or raise DockerHandler::with_daemon_timeout"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_daemon_the_operation_and_the_remedy() {
        assert_eq!(
            no_answer(
                "unix:///var/run/docker.sock",
                DEFAULT_TIMEOUT,
                "creating the container for task 'x'"
            ),
            "the Docker daemon at unix:///var/run/docker.sock did not answer within 10s while creating the container for task 'x'; check that dockerd is healthy (`docker info`) or raise DockerHandler::with_daemon_timeout"
        );
    }

    #[tokio::test]
    async fn a_call_that_never_completes_ends_at_the_limit() {
        let daemon = Daemon {
            client: match Docker::connect_with_host("tcp://127.0.0.1:9") {
                Ok(client) => client,
                Err(e) => panic!("a tcp client is built without connecting: {e}"),
            },
            address: "tcp://127.0.0.1:9".to_owned(),
            limit: Duration::from_millis(50),
        };
        let started = std::time::Instant::now();
        let result = daemon
            .call(
                || "waiting for nothing".to_owned(),
                std::future::pending::<()>(),
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let message = result.unwrap_err();
        assert!(
            message.contains("did not answer within 50ms while waiting for nothing"),
            "{message}"
        );
        assert_eq!(daemon.call(|| unreachable!(), async { 7 }).await, Ok(7));
    }
}
