//! Failures of the "docker" handler against the real daemon (`graflow-docker/scripts/setup.sh`
//! makes one answer and builds the images): errors and panics across the boundary, timeouts, OOM,
//! missing and incompatible images, and a daemon that never answers or cannot be reached.
//! Needs the `docker` feature (on by default). Without a daemon, the tests that need one say so and
//! are skipped, unless `GRAFLOW_REQUIRE_DOCKER=1` makes that a failure (see `common`).
#![cfg(feature = "docker")]

mod common;

use std::time::{Duration, Instant};

use graflow::TaskStatus;
use graflow::docker::DockerHandler;
use graflow::prelude::*;

use common::{PROMPTLY, assert_gone, refuses, skip_without_docker};

graflow::enable_test_runner!();

fn run_id_of(err: &RunError) -> String {
    err.report()
        .expect("a failed run has a report")
        .run_id()
        .to_owned()
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn panics_inside() -> u8 {
    panic!("container-side bug")
}

#[test]
fn errors_and_panics_cross_the_container_boundary_and_leave_nothing() {
    if skip_without_docker() {
        return;
    }
    let engine = WorkflowEngine::new();
    let err = engine
        .run(&workflow! { refuses; }, RunOptions::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task 'refuses' failed on handler 'docker' after 1 attempt(s): task 'refuses' returned an error: quota exceeded"
    );
    assert_gone("graflow.run", &run_id_of(&err));
    let err = engine
        .run(&workflow! { panics_inside; }, RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("task 'panics_inside' panicked: container-side bug"),
        "{err}"
    );
    assert_gone("graflow.run", &run_id_of(&err));
}

#[task(handler = "docker", image = "python:3.11-slim", timeout = "2s")]
fn sleeps_forever() -> u8 {
    std::thread::sleep(Duration::from_secs(120));
    0
}

#[test]
fn a_timeout_kills_and_removes_the_container() {
    if skip_without_docker() {
        return;
    }
    let started = Instant::now();
    let err = WorkflowEngine::new()
        .run(&workflow! { sleeps_forever; }, RunOptions::new())
        .unwrap_err();
    assert!(
        matches!(err.cause(), Some(AttemptError::TimedOut { .. })),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_gone("graflow.run", &run_id_of(&err));
}

#[task(handler = "docker", image = "python:3.11-slim", memory = "64m")]
fn hungry() -> usize {
    let mut blocks = Vec::new();
    for _ in 0..64 {
        let block = vec![1u8; 16 * 1024 * 1024];
        blocks.push(std::hint::black_box(block));
    }
    blocks.len()
}

#[test]
fn out_of_memory_says_so_with_the_limit() {
    if skip_without_docker() {
        return;
    }
    let err = WorkflowEngine::new()
        .run(&workflow! { hungry; }, RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    // The daemon's OOM report, or, when it dropped it (the kernel's report came after the exit
    // of an auto-removed container, seen on a busy machine), the SIGKILL under the limit.
    assert!(
        msg.contains("ran out of memory (OOM-killed at its limit of 64 MiB)")
            || msg.contains(
                "SIGKILLed (exit code 137) under its memory limit of 64 MiB before answering: it most likely ran out of memory"
            ),
        "{msg}"
    );
    assert_gone("graflow.run", &run_id_of(&err));
}

#[task(handler = "docker", image = "graflow/does-not-exist:1")]
fn nowhere() -> u8 {
    0
}

#[task(handler = "docker", image = "graflow/scratch")]
fn in_scratch() -> u8 {
    0
}

#[task(
    handler = "docker",
    image = "graflow/scratch",
    retries = 3,
    retry_delay = "10ms"
)]
fn in_scratch_with_retries() -> u8 {
    0
}

/// An image that cannot run the program fails the same way every time: it is not retried, and
/// code can tell that kind of failure from a transient one.
#[test]
fn an_incompatible_image_is_not_retried() {
    if skip_without_docker() {
        return;
    }
    let err = WorkflowEngine::new()
        .run(&workflow! { in_scratch_with_retries; }, RunOptions::new())
        .unwrap_err();
    let failure = err.failure().expect("the task failed");
    assert_eq!(failure.attempts, 1, "{err}");
    let cause = &failure.cause;
    assert_eq!(
        cause.kind(),
        graflow::ErrorKind::Handler(graflow::HandlerFailure::Incompatible),
        "{err}"
    );
    assert!(!cause.is_retryable());
    assert_gone("graflow.run", &run_id_of(&err));
}

#[test]
fn a_missing_image_and_an_incompatible_binary_are_explained() {
    if skip_without_docker() {
        return;
    }
    let engine = WorkflowEngine::new();
    let err = engine
        .run(&workflow! { nowhere; }, RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "image graflow/does-not-exist:1 is not on the Docker daemon and could not be pulled"
        ),
        "{msg}"
    );
    let err = engine
        .run(&workflow! { in_scratch; }, RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("this program cannot start inside image graflow/scratch"),
        "{msg}"
    );
    assert!(
        msg.contains("RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --target x86_64-unknown-linux-gnu"),
        "{msg}"
    );
    assert_gone("graflow.run", &run_id_of(&err));
}

#[test]
fn a_daemon_that_never_answers_fails_the_task_within_its_timeout() {
    // A socket that accepts connections and holds them without ever answering: the failure mode
    // of a hung daemon or a stale forwarder.
    let dir = std::env::temp_dir().join(format!("graflow-silent-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("docker.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming() {
            match connection {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
    });
    let host = format!("unix://{}", socket.display());
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "docker",
        DockerHandler::new()
            .with_host(host.clone())
            .with_daemon_timeout(Duration::from_secs(1)),
    );
    let started = Instant::now();
    let err = engine
        .run(&workflow! { in_scratch; }, RunOptions::new())
        .unwrap_err();
    let elapsed = started.elapsed();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "the Docker daemon at {host} did not answer within 1s while connecting (negotiating the API version) for task 'in_scratch'; check that dockerd is healthy (`docker info`) or raise DockerHandler::with_daemon_timeout"
        )),
        "{msg}"
    );
    // The message says which limit fired (1 s); the run only must not hang on.
    assert!(elapsed < PROMPTLY, "took {elapsed:?}");
    assert_eq!(
        err.report().unwrap().task("in_scratch").unwrap().status,
        TaskStatus::Failed
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_daemon_is_named() {
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "docker",
        DockerHandler::new().with_host("unix:///nonexistent/docker.sock"),
    );
    let err = engine
        .run(&workflow! { in_scratch; }, RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("the Docker daemon at unix:///nonexistent/docker.sock is unreachable"),
        "{msg}"
    );
    assert!(msg.contains("set DOCKER_HOST"), "{msg}");
    assert_eq!(
        err.report().unwrap().task("in_scratch").unwrap().status,
        TaskStatus::Failed
    );
}
