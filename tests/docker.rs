//! The "docker" handler against the real daemon (`graflow-docker/scripts/setup.sh` makes one
//! answer and builds the images): typed results, channel writes, env and volumes, errors and
//! panics across the boundary, timeouts, OOM, missing and incompatible images, concurrency, and
//! cleanup after every way a task can end. Needs the `docker` feature (on by default). Without a
//! daemon, the tests that need one say so and are skipped, unless `GRAFLOW_REQUIRE_DOCKER=1` makes
//! that a failure (see `common`).
#![cfg(feature = "docker")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use graflow::TaskStatus;
use graflow::docker::DockerHandler;
use graflow::prelude::*;
use serde::{Deserialize, Serialize};

use common::{PROMPTLY, default_signals, skip_without_docker};

graflow::enable_test_runner!();

/// Container ids carrying `label=value`, running or not.
fn containers_with(label: &str, value: &str) -> Vec<String> {
    docker_ps(&["-a"], label, value)
}

/// `docker ps -q ARGS --filter label=LABEL=VALUE`, as a list of ids.
fn docker_ps(args: &[&str], label: &str, value: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-q"])
        .args(args)
        .args(["--filter", &format!("label={label}={value}")])
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Waits (bounded) until no container carries `label=value`.
fn assert_gone(label: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = containers_with(label, value);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers left with {label}={value}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_id_of(err: &RunError) -> String {
    err.report()
        .expect("a failed run has a report")
        .run_id()
        .to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PythonFacts {
    version: String,
    squares: Vec<u64>,
    hostname: String,
    runner: bool,
}

#[task(handler = "docker", image = "python:3.11-slim", writes = ["python_seen"])]
fn ask_python(limit: u64, ctx: &TaskContext) -> Result<PythonFacts, String> {
    let script = format!(
        "import sys; print(sys.version.split()[0]); print(' '.join(str(i*i) for i in range({limit})))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .map_err(|e| format!("python3 did not start: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default().to_owned();
    let squares = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| s.parse::<u64>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.channel().set("python_seen", version.clone());
    Ok(PythonFacts {
        version,
        squares,
        hostname: std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        runner: graflow::is_runner(),
    })
}

#[tokio::test]
async fn a_typed_struct_and_channel_writes_come_back_from_a_container() {
    if skip_without_docker() {
        return;
    }
    let engine = WorkflowEngine::new();
    assert!(
        engine.handler_names().contains(&"docker"),
        "linking graflow registers docker"
    );
    let report = engine
        .execute(
            &workflow! { ask_python; },
            RunOptions::new().param("limit", 5u64),
        )
        .await
        .unwrap();
    let facts: PythonFacts = report.result("ask_python").unwrap();
    assert!(facts.version.starts_with("3.11"), "{facts:?}");
    assert_eq!(facts.squares, vec![0, 1, 4, 9, 16]);
    assert!(facts.runner, "it ran in a runner process");
    let here = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert_ne!(
        facts.hostname,
        here.trim(),
        "... with the container's hostname"
    );
    assert_eq!(
        report.channel().get::<String>("python_seen").unwrap(),
        facts.version
    );
    assert_gone("graflow.run", report.run_id());
}

#[task(handler = "docker", image = "python:3.11-slim", env = ["GREETING=hello", "CARGO_PKG_NAME"])]
fn look_around() -> (String, String, String) {
    (
        std::env::var("GREETING").unwrap_or_default(),
        std::env::var("CARGO_PKG_NAME").unwrap_or_default(),
        std::fs::read_to_string("/data/note.txt").unwrap_or_else(|e| format!("unreadable: {e}")),
    )
}

#[test]
fn env_and_volumes_are_visible_inside() {
    if skip_without_docker() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("graflow-volume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.txt"), "from the host").unwrap();
    let mut wf = Workflow::builder("env");
    wf.add(look_around::task().with_config("volumes", vec![format!("{}:/data:ro", dir.display())]));
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    let (greeting, package, note) = report
        .result::<(String, String, String)>("look_around")
        .unwrap();
    assert_eq!(greeting, "hello");
    assert_eq!(package, "graflow", "a bare key passes the host's value");
    assert_eq!(note, "from the host");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn big_in_container() -> Vec<u8> {
    (0..50 * 1024 * 1024).map(|i| (i % 253) as u8).collect()
}

#[test]
fn a_fifty_megabyte_result_arrives_intact() {
    if skip_without_docker() {
        return;
    }
    let report = WorkflowEngine::new()
        .run(&workflow! { big_in_container; }, RunOptions::new())
        .unwrap();
    let bytes: Vec<u8> = report.result("big_in_container").unwrap();
    assert_eq!(bytes.len(), 50 * 1024 * 1024);
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn prints_in_a_container() -> u8 {
    println!("hello from the container");
    eprint!("and a last line without newline");
    3
}

#[test]
fn a_containers_output_lines_are_log_events_of_its_task() {
    if skip_without_docker() {
        return;
    }
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    let mut engine = WorkflowEngine::new();
    engine.add_observer(move |e: &graflow::RunEvent| {
        if let graflow::EventKind::Log { line } = &e.kind {
            seen.lock()
                .unwrap()
                .push((e.task.clone(), e.handler.clone(), e.attempt, line.clone()));
        }
    });
    engine
        .run(&workflow! { prints_in_a_container }, RunOptions::new())
        .unwrap();
    let lines = lines.lock().unwrap();
    for want in [
        "hello from the container",
        "and a last line without newline",
    ] {
        assert!(
            lines.iter().any(|(task, handler, attempt, line)| {
                task.as_deref() == Some("prints_in_a_container")
                    && handler.as_deref() == Some("docker")
                    && *attempt == 1
                    && line == want
            }),
            "{want}: {lines:?}"
        );
    }
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn refuses() -> Result<u8, std::io::Error> {
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "quota exceeded",
    ))
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

#[task(handler = "docker", image = "python:3.11-slim")]
async fn nap(n: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    n
}

#[test]
fn eight_docker_tasks_in_a_parallel_group_overlap() {
    if skip_without_docker() {
        return;
    }
    let mut wf = Workflow::builder("eight");
    for i in 0..8u64 {
        wf.add(nap::task().with_id(format!("nap_{i}")).with_input("n", i));
    }
    let report = WorkflowEngine::new()
        .with_max_concurrency(8)
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    let spans: Vec<(Duration, Duration)> = report
        .tasks()
        .map(|t| (t.start.unwrap(), t.start.unwrap() + t.duration.unwrap()))
        .collect();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "all eight were running at once: {report}"
    );
    for i in 0..8u64 {
        assert_eq!(report.result::<u64>(&format!("nap_{i}")).unwrap(), i);
    }
    assert_gone("graflow.run", report.run_id());
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn long_job() -> u8 {
    std::thread::sleep(Duration::from_secs(120));
    0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_engine_future_mid_run_leaves_no_container() {
    if skip_without_docker() {
        return;
    }
    let id = format!("long_job_{}", std::process::id());
    let mut wf = Workflow::builder("dropped");
    wf.add(long_job::task().with_id(id.clone()));
    let wf = wf.build();
    let run =
        tokio::spawn(async move { WorkflowEngine::new().execute(&wf, RunOptions::new()).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_with("graflow.task", &id).is_empty() {
        assert!(Instant::now() < deadline, "the container never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    tokio::task::spawn_blocking(move || assert_gone("graflow.task", &id))
        .await
        .unwrap();
}

#[task(handler = "docker", image = "python:3.11-slim", sandbox = true)]
fn probe_sandbox() -> (bool, bool, Vec<String>, String) {
    let root_writable = std::fs::write("/probe", b"x").is_ok();
    let tmp_writable = std::fs::write("/tmp/probe", b"x").is_ok();
    let mut interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    interfaces.sort();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_owned();
    (root_writable, tmp_writable, interfaces, uid)
}

#[test]
fn the_sandbox_preset_locks_the_container_down() {
    if skip_without_docker() {
        return;
    }
    let report = WorkflowEngine::new()
        .run(&workflow! { probe_sandbox; }, RunOptions::new())
        .unwrap();
    let (root_writable, tmp_writable, interfaces, uid) = report
        .result::<(bool, bool, Vec<String>, String)>("probe_sandbox")
        .unwrap();
    assert!(!root_writable, "read-only root filesystem");
    assert!(tmp_writable, "a tmpfs /tmp");
    assert_eq!(interfaces, vec!["lo".to_owned()], "network none");
    assert!(uid.contains("65534"), "a non-root user: {uid}");
}

#[task(
    handler = "docker",
    image = "python:3.11-slim",
    imgae = "typo",
    memory = "lots"
)]
fn misconfigured() -> u8 {
    0
}

#[test]
fn bad_options_fail_validation_before_anything_runs() {
    let err = WorkflowEngine::new()
        .validate(&workflow! { misconfigured; })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("handler 'docker' rejects the configuration of task 'misconfigured'"),
        "{msg}"
    );
    assert!(
        msg.contains("unknown option(s) `imgae`; the docker handler knows: image, volumes, env,"),
        "{msg}"
    );
    assert!(msg.contains("memory \"lots\""), "{msg}");
}

#[test]
fn a_missing_volume_host_path_fails_validation_and_nothing_is_created() {
    if skip_without_docker() {
        return;
    }
    let missing =
        std::env::temp_dir().join(format!("graflow-missing-volume-{}", std::process::id()));
    assert!(!missing.exists());
    let id = format!("missing_volume_{}", std::process::id());
    let mut wf = Workflow::builder("missing-volume");
    wf.add(
        look_around::task()
            .with_id(id.clone())
            .with_config("volumes", vec![format!("{}:/data:ro", missing.display())]),
    );
    let wf = wf.build();
    let engine = WorkflowEngine::new();
    let expected = format!(
        "volume \"{0}:/data:ro\": the host path {0} does not exist",
        missing.display()
    );
    let err = engine.validate(&wf).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "handler 'docker' rejects the configuration of task '{id}'"
        )),
        "{msg}"
    );
    assert!(msg.contains(&expected), "{msg}");
    assert!(msg.contains("create it first"), "{msg}");
    // A run is refused the same way, before any container exists.
    let err = engine.run(&wf, RunOptions::new()).unwrap_err();
    assert!(err.to_string().contains(&expected), "{err}");
    assert!(err.report().is_none(), "nothing ran: {err}");
    assert!(!missing.exists(), "the host path was created");
    assert!(
        containers_with("graflow.task", &id).is_empty(),
        "a container was created"
    );
}

/// The local daemon behind a TCP port of this process, so that the handler sees it as remote.
fn daemon_over_tcp() -> String {
    use std::os::unix::net::UnixStream;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(daemon) = UnixStream::connect("/var/run/docker.sock") else {
                continue;
            };
            let (Ok(mut client_in), Ok(mut daemon_out)) = (client.try_clone(), daemon.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut daemon_out);
                let _ = daemon_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut client, mut daemon) = (client, daemon);
                let _ = std::io::copy(&mut daemon, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    format!("tcp://{address}")
}

#[test]
fn a_remote_daemon_refuses_a_missing_volume_host_path_instead_of_creating_it() {
    if skip_without_docker() {
        return;
    }
    let missing =
        std::env::temp_dir().join(format!("graflow-missing-remote-{}", std::process::id()));
    let id = format!("missing_remote_{}", std::process::id());
    let mut engine = WorkflowEngine::new();
    engine.register_handler("docker", DockerHandler::new().with_host(daemon_over_tcp()));
    let mut wf = Workflow::builder("missing-remote");
    wf.add(
        look_around::task()
            .with_id(id.clone())
            .with_config("volumes", vec![format!("{}:/data:ro", missing.display())]),
    );
    // Not checkable here for a remote daemon; Docker refuses it (the Mounts API).
    let err = engine.run(&wf.build(), RunOptions::new()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("could not create a container"), "{msg}");
    assert!(msg.contains("bind source path does not exist"), "{msg}");
    assert!(!missing.exists(), "the daemon created the host path");
    assert_gone("graflow.task", &id);
}

/// The container's memory limit and CPU quota as its cgroup shows them (v2, else v1).
fn cgroup_limits() -> (String, String) {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let memory = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .unwrap_or_default();
    let cpu = read("/sys/fs/cgroup/cpu.max")
        .or_else(|| {
            let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?;
            let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?;
            Some(format!("{quota} {period}"))
        })
        .unwrap_or_default();
    (memory, cpu)
}

#[task(handler = "docker", image = "python:3.11-slim", sandbox = true)]
fn sandbox_limits() -> (String, String) {
    cgroup_limits()
}

#[test]
fn the_sandbox_limits_memory_and_cpus_unless_the_task_sets_them() {
    if skip_without_docker() {
        return;
    }
    let mut wf = Workflow::builder("sandbox-limits");
    wf.add(sandbox_limits::task().with_id("defaults"));
    wf.add(
        sandbox_limits::task()
            .with_id("overridden")
            .with_config("memory", "256m")
            .with_config("cpus", 0.5),
    );
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    let (memory, cpu) = report.result::<(String, String)>("defaults").unwrap();
    assert_eq!(memory, (512u64 * 1024 * 1024).to_string(), "512 MiB");
    assert_eq!(cpu, "100000 100000", "1 CPU");
    let (memory, cpu) = report.result::<(String, String)>("overridden").unwrap();
    assert_eq!(
        memory,
        (256u64 * 1024 * 1024).to_string(),
        "the task's memory"
    );
    assert_eq!(cpu, "50000 100000", "the task's cpus");
    assert_gone("graflow.run", report.run_id());
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

/// Environment variable that turns this test binary into the child of the Ctrl-C and sweep
/// tests: it then runs `long_job` in a container until interrupted.
const CHILD_TASK: &str = "GRAFLOW_TEST_DOCKER_CHILD_TASK";

/// The child side of the tests below (returns at once in a normal test run).
#[tokio::test]
async fn child_runs_a_long_docker_task_until_ctrl_c() {
    let Ok(id) = std::env::var(CHILD_TASK) else {
        return;
    };
    let mut wf = Workflow::builder("interrupted");
    wf.add(long_job::task().with_id(id));
    let wf = wf.build();
    let engine = WorkflowEngine::new();
    tokio::select! {
        result = engine.execute(&wf, RunOptions::new()) => panic!("the long task ended on its own: {result:?}"),
        // Ctrl-C: drop the run (its containers are removed outside the dropped future) and exit.
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Starts this test binary as the child above, and waits until its container runs.
fn start_child(id: &str) -> std::process::Child {
    let child = default_signals(&mut Command::new(std::env::current_exe().unwrap()))
        .args([
            "child_runs_a_long_docker_task_until_ctrl_c",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_TASK, id)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_with("graflow.task", id).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the child's container never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn ctrl_c_in_a_program_that_drops_its_run_removes_the_container_before_exit() {
    if skip_without_docker() {
        return;
    }
    let id = format!("ctrl_c_{}", std::process::id());
    let mut child = start_child(&id);
    // SAFETY: sends a signal to our own child process.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the child exits normally after Ctrl-C: {status}"
    );
    // Removal finished before the child exited (it waits for pending removals at exit).
    assert!(
        containers_with("graflow.task", &id).is_empty(),
        "left after Ctrl-C"
    );
}

#[test]
fn leftovers_of_a_killed_program_are_swept_when_a_handler_starts() {
    if skip_without_docker() {
        return;
    }
    let id = format!("killed_{}", std::process::id());
    let mut child = start_child(&id);
    child.kill().unwrap();
    child.wait().unwrap();
    // The owner died without cleaning up; a docker handler that starts sweeps the leftovers of
    // dead runs (any engine of this binary may be the one that does).
    let report = WorkflowEngine::new()
        .run(
            &workflow! { ask_python; },
            RunOptions::new().param("limit", 2u64),
        )
        .unwrap();
    assert_eq!(
        report.task("ask_python").unwrap().status,
        TaskStatus::Succeeded
    );
    assert!(containers_with("graflow.task", &id).is_empty(), "not swept");
}

/// Container ids carrying `label=value` that are running.
fn running_with(label: &str, value: &str) -> Vec<String> {
    docker_ps(&["--filter", "status=running"], label, value)
}

/// Set (to the parent's `readlink /proc/self/ns/pid`) when this test binary is the sweeper
/// started in another PID namespace by the test below.
const SWEEPER_OF: &str = "GRAFLOW_TEST_DOCKER_SWEEPER_OF";

/// The sweeper side of the test below (returns at once in a normal test run): a program whose
/// docker handler connects, and so sweeps, from another PID namespace.
#[test]
fn child_sweeps_from_another_pid_namespace() {
    let Ok(parent_namespace) = std::env::var(SWEEPER_OF) else {
        return;
    };
    let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        namespace.to_string_lossy(),
        parent_namespace,
        "started in another PID namespace"
    );
    let report = WorkflowEngine::new()
        .run(
            &workflow! { ask_python; },
            RunOptions::new().param("limit", 1u64),
        )
        .unwrap();
    assert_eq!(
        report.task("ask_python").unwrap().status,
        TaskStatus::Succeeded
    );
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn outlives_a_sweep() -> u8 {
    std::thread::sleep(Duration::from_secs(6));
    7
}

#[test]
fn a_sweep_from_another_pid_namespace_leaves_a_live_programs_running_container_alone() {
    if skip_without_docker() {
        return;
    }
    let id = format!("live_{}", std::process::id());
    let mut wf = Workflow::builder("live");
    wf.add(outlives_a_sweep::task().with_id(id.clone()));
    let wf = wf.build();
    let run = std::thread::spawn(move || WorkflowEngine::new().run(&wf, RunOptions::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_with("graflow.task", &id).is_empty() {
        assert!(
            Instant::now() < deadline && !run.is_finished(),
            "the container never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Our pid is not in the sweeper's /proc (it mounts its namespace's own), and it shares our
    // hostname and boot: the sweep used to take us for dead and remove the container.
    let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let sweeper = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_sweeps_from_another_pid_namespace",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SWEEPER_OF, namespace.as_os_str())
        .output()
        .unwrap();
    assert!(
        sweeper.status.success(),
        "the sweeper failed: {}\n{}",
        String::from_utf8_lossy(&sweeper.stdout),
        String::from_utf8_lossy(&sweeper.stderr)
    );
    assert!(
        String::from_utf8_lossy(&sweeper.stdout).contains("1 passed"),
        "the sweeper ran its test: {}",
        String::from_utf8_lossy(&sweeper.stdout)
    );
    assert!(
        !running_with("graflow.task", &id).is_empty(),
        "the sweep removed a live program's running container"
    );
    let report = run.join().unwrap().unwrap();
    assert_eq!(report.result::<u8>(&id).unwrap(), 7);
    assert_gone("graflow.task", &id);
}

/// The `graflow.owner` label of process `pid` started at `start` in this process's user, boot
/// and namespaces, with `changes` (`key=value`) appended over those fields.
fn forged_owner(pid: u32, start: u64, changes: &str) -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap().trim().to_owned();
    let inode = |kind: &str| {
        let link = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        let link = link.to_string_lossy().into_owned();
        link.trim_start_matches(&format!("{kind}:["))
            .trim_end_matches(']')
            .to_owned()
    };
    let mut fields = [
        // SAFETY: geteuid has no preconditions.
        ("uid", unsafe { libc::geteuid() }.to_string()),
        ("userns", inode("user")),
        ("host", read("/proc/sys/kernel/hostname")),
        ("boot", read("/proc/sys/kernel/random/boot_id")),
        ("pidns", inode("pid")),
        ("timens", inode("time")),
        ("pid", pid.to_string()),
        ("start", start.to_string()),
    ];
    for change in changes.split(';').filter(|c| !c.is_empty()) {
        let (key, value) = change.split_once('=').unwrap();
        value.clone_into(&mut fields.iter_mut().find(|f| f.0 == key).unwrap().1);
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Removes, when dropped, every container labelled `graflow.forged=<tag>`: nothing forged is
/// left behind, whatever the test's outcome.
struct Forged<'a>(&'a str);

impl Drop for Forged<'_> {
    fn drop(&mut self) {
        let left = containers_with("graflow.forged", self.0);
        if !left.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(left)
                .output();
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_sweep_removes_only_its_users_containers_whose_owner_is_proven_dead() {
    if skip_without_docker() {
        return;
    }
    let tag = format!("forged_{}", std::process::id());
    let _forged = Forged(&tag);
    // The owner of the "dead" container is a real process, alive while the containers are
    // created: every graflow program on this daemon sweeps when its handler connects (other
    // tests of this binary, another copy of this suite), and a container whose owner is
    // already dead may be swept by any of them between `docker create` and `docker start`.
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let owner_pid = owner.id();
    let dead_pid = 999_999_999;
    let owners = [
        ("dead", forged_owner(owner_pid, start_time(owner_pid), "")),
        ("garbage", "\u{202e}; pid=0;uid=;=;".to_owned()),
        ("old-format", format!("somehost:{dead_pid}:1")),
        ("other-uid", forged_owner(dead_pid, 1, "uid=4242")),
        ("other-pidns", forged_owner(dead_pid, 1, "pidns=1")),
        (
            "other-machine",
            forged_owner(
                dead_pid,
                1,
                "host=elsewhere;boot=00000000-0000-0000-0000-000000000000",
            ),
        ),
        ("pid-zero", forged_owner(0, 1, "")),
    ];
    for (name, owner) in &owners {
        let out = Command::new("docker")
            .args(["run", "-d", "--rm=false", "--label", "graflow.managed=true"])
            .args(["--label", &format!("graflow.task={tag}_{name}")])
            .args(["--label", &format!("graflow.owner={owner}")])
            .args(["--label", &format!("graflow.forged={tag}")])
            // Outlives the test however slow the machine (the guard above removes it).
            .args(["python:3.11-slim", "sleep", "3600"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Now the owner dies (and is reaped: no zombie left to look alive).
    owner.kill().unwrap();
    owner.wait().unwrap();
    // A docker handler's first connection sweeps. (Another program's sweep may remove the dead
    // owner's container first: the same rules, and the same outcome.)
    let report = WorkflowEngine::new()
        .run(
            &workflow! { ask_python; },
            RunOptions::new().param("limit", 1u64),
        )
        .unwrap();
    assert_eq!(
        report.task("ask_python").unwrap().status,
        TaskStatus::Succeeded
    );
    let survivors: Vec<&str> = owners
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !running_with("graflow.task", &format!("{tag}_{name}")).is_empty())
        .collect();
    assert_eq!(
        survivors,
        [
            "garbage",
            "old-format",
            "other-uid",
            "other-pidns",
            "other-machine",
            "pid-zero"
        ],
        "only the proven-dead owner's container is swept"
    );
}

/// Adds a task and ends the run early, from inside a container.
#[task(handler = "docker", image = "python:3.11-slim")]
fn plans_in_a_container(ctx: &TaskContext) -> graflow::Result<String> {
    ctx.next_task(
        counted_here::task()
            .with_id("from_the_container")
            .with_input("n", 41u32),
    )?;
    ctx.terminate("planned in a container");
    Ok(std::fs::read_to_string("/etc/hostname").unwrap_or_default())
}

#[task]
fn counted_here(n: u32) -> u32 {
    n + 1
}

#[test]
fn dynamic_requests_come_back_from_a_container() {
    if skip_without_docker() {
        return;
    }
    let wf = workflow! { plans_in_a_container; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert_eq!(
        report.terminated(),
        Some(("plans_in_a_container", "planned in a container"))
    );
    // Added, but the run ended before anything new started.
    assert_eq!(
        report.task("from_the_container").unwrap().status,
        graflow::TaskStatus::Skipped
    );
    assert!(report.task("from_the_container").unwrap().added);
}
