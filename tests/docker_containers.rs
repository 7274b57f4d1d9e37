//! Tasks in containers of the "docker" handler against the real daemon
//! (`graflow-docker/scripts/setup.sh` makes one answer and builds the images): typed results and
//! channel writes, env and volumes, large results, output lines as log events, concurrency, the
//! sandbox preset and its limits, options and volumes validated before anything runs, and dynamic
//! requests. Needs the `docker` feature (on by default). Without a daemon, the tests that need one say so and
//! are skipped, unless `GRAFLOW_REQUIRE_DOCKER=1` makes that a failure (see `common`).
#![cfg(feature = "docker")]

mod common;

use std::time::Duration;

use graflow::docker::DockerHandler;
use graflow::prelude::*;

use common::{PythonFacts, ask_python, assert_gone, containers_with, skip_without_docker};

graflow::enable_test_runner!();

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
