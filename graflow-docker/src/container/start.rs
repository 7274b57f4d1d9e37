//! Bringing a container up and listening to it: create it, attach to it before it starts (no
//! byte is missed), start it, and read its attached output as the driver's chunks.

use std::pin::Pin;

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{AttachContainerOptions, CreateContainerOptions};
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt};
use graflow_core::backend::Chunk;

use super::incompatible_message;
use crate::daemon::Daemon;
use graflow_core::HandlerFailure;

/// Creates container `name`.
pub(crate) async fn create(
    docker: &Daemon,
    name: &str,
    body: ContainerCreateBody,
    image: &str,
    what: &str,
) -> Result<(), (HandlerFailure, String)> {
    let create = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    docker
        .call(
            || format!("creating the container for {what}"),
            docker.create_container(Some(create), body),
        )
        .await
        .map_err(|e| (HandlerFailure::Unavailable, e))?
        .map_err(|e| {
            // The daemon refusing what it was asked (4xx: a mount, a limit, an image it does
            // not have) would refuse it again; anything else may pass.
            let kind = match &e {
                bollard::errors::Error::DockerResponseServerError { status_code, .. }
                    if (400..500).contains(status_code) =>
                {
                    HandlerFailure::InvalidConfig
                }
                _ => HandlerFailure::Unavailable,
            };
            (
                kind,
                format!("could not create a container from image {image}: {e}"),
            )
        })?;
    tracing::debug!(target: "graflow::docker", container = %name, %image, "container created for {what}");
    Ok(())
}

/// Attaches to container `name` (before it starts: no byte is missed) and starts it.
pub(crate) async fn attach_and_start(
    docker: &Daemon,
    name: &str,
    image: &str,
    what: &str,
) -> Result<AttachContainerResults, String> {
    let attach = AttachContainerOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        stream: true,
        logs: false,
        ..Default::default()
    };
    let attached = docker
        .call(
            || format!("attaching to container {name} of {what}"),
            docker.attach_container(name, Some(attach)),
        )
        .await?
        .map_err(|e| format!("could not attach to container {name}: {e}"))?;
    let start = docker
        .call(
            || format!("starting container {name} of {what}"),
            docker.start_container(name, None),
        )
        .await?;
    if let Err(e) = start {
        let message = e.to_string();
        let lower = message.to_ascii_lowercase();
        if lower.contains("exec")
            && (lower.contains("no such file")
                || lower.contains("exec format")
                || lower.contains("not found"))
        {
            return Err(incompatible_message(image, &message));
        }
        return Err(format!("could not start container {name}: {message}"));
    }
    Ok(attached)
}

/// A container's attached output as the driver's chunks (Docker demultiplexes stdout and
/// stderr, in the order the container wrote them).
pub(crate) fn chunks(
    output: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
) -> BoxStream<'static, Chunk> {
    stream::unfold(output, |mut output| async move {
        loop {
            let chunk = match output.next().await? {
                Ok(LogOutput::StdOut { message }) => Chunk::Stdout(message.to_vec()),
                Ok(LogOutput::StdErr { message } | LogOutput::Console { message }) => {
                    Chunk::Stderr(message.to_vec())
                }
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(_) => return None,
            };
            return Some((chunk, output));
        }
    })
    .boxed()
}
