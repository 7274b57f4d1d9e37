//! Cleanup by the "docker" handler against the real daemon (`graflow-docker/scripts/setup.sh`
//! makes one answer and builds the images): no container left after a dropped run or Ctrl-C, and
//! the sweep of containers a killed program left, which spares those of live programs, of other
//! PID namespaces and of other users. Needs the `docker` feature (on by default). Without a daemon, the tests that need one say so and
//! are skipped, unless `GRAFLOW_REQUIRE_DOCKER=1` makes that a failure (see `common`).
#![cfg(feature = "docker")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use graflow::TaskStatus;
use graflow::prelude::*;

use common::{
    ask_python, assert_gone, containers_with, default_signals, running_with, skip_without_docker,
};

graflow::enable_test_runner!();

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
    sweeping_docker_run(2);
    assert!(containers_with("graflow.task", &id).is_empty(), "not swept");
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
    sweeping_docker_run(1);
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
    sweeping_docker_run(1);
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

/// Runs one docker task to success on a new engine: its handler's first connection sweeps the
/// leftovers of dead runs.
fn sweeping_docker_run(limit: u64) {
    let report = WorkflowEngine::new()
        .run(
            &workflow! { ask_python; },
            RunOptions::new().param("limit", limit),
        )
        .unwrap();
    assert_eq!(
        report.task("ask_python").unwrap().status,
        TaskStatus::Succeeded
    );
}
