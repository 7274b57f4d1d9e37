//! Warm runners of the "process" handler: children that serve many tasks one after another.
//! Reuse is counted (the same pid serves several tasks), poisoned runners (panic, timeout, a
//! crash, hostile bytes) are replaced and the next task succeeds, the pool's limits hold (size,
//! maximum uses, idle timeout), and nothing is left running: after the engine is dropped, nor
//! after the program is SIGKILLed. Every absence is polled for with a deadline. The "docker"
//! half runs against a real daemon (skipped without one unless `GRAFLOW_REQUIRE_DOCKER=1`).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{PROMPTLY, alive, default_signals};
#[cfg(feature = "docker")]
use common::{docker_ps, skip_without_docker};
#[cfg(feature = "docker")]
use graflow::handlers::DockerHandler;
use graflow::handlers::{PoolOptions, ProcessHandler};
use graflow::prelude::*;

graflow::enable_test_runner!();

/// Turns this test binary into the child program of [`child_program`].
const CHILD: &str = "GRAFLOW_TEST_WARM_CHILD";
const CHILD_ARG: &str = "GRAFLOW_TEST_WARM_ARG";

/// Polls `done` until it holds or `limit` passes; whether it held.
fn within(limit: Duration, done: impl FnMut() -> bool) -> bool {
    common::within(limit, done).is_some()
}

/// Starts this test binary as the child program `mode` (see [`child_program`]).
fn start_child(mode: &str, arg: &std::path::Path) -> std::process::Child {
    default_signals(&mut Command::new(std::env::current_exe().unwrap()))
        .args([
            "child_program",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .env(CHILD_ARG, arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILLs our own child program and reaps it.
fn sigkill(program: &mut std::process::Child) {
    // SAFETY: a signal to our own, not yet reaped, child.
    assert_eq!(
        unsafe { libc::kill(program.id() as libc::pid_t, libc::SIGKILL) },
        0
    );
    program.wait().unwrap();
}

fn engine(pool: PoolOptions) -> WorkflowEngine {
    WorkflowEngine::new().with_handler("process", ProcessHandler::new().with_pool(pool))
}

/// The pid that ran the task, and how many tasks that process had run before.
#[task(handler = "process", reuse = true)]
fn pid_and_count(n: u32) -> (u32, u32, u32) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RAN: AtomicU32 = AtomicU32::new(0);
    (std::process::id(), RAN.fetch_add(1, Ordering::SeqCst), n)
}

#[task(handler = "process")]
fn fresh_pid() -> u32 {
    std::process::id()
}

fn chain_of(n: u32, name: &str) -> Workflow {
    let mut wf = Workflow::builder(name);
    let nodes: Vec<_> = (0..n)
        .map(|i| {
            wf.add(
                pid_and_count::task()
                    .with_id(format!("t{i}"))
                    .with_input("n", i),
            )
        })
        .collect();
    wf.chain(&nodes);
    wf.build()
}

fn results(report: &RunReport, n: u32) -> Vec<(u32, u32, u32)> {
    (0..n)
        .map(|i| report.result::<(u32, u32, u32)>(&format!("t{i}")).unwrap())
        .collect()
}

#[tokio::test]
async fn one_warm_process_serves_a_chain_and_the_report_says_so() {
    let engine = engine(PoolOptions::new().with_size(1));
    let report = engine
        .execute(&chain_of(10, "warm-chain"), RunOptions::new())
        .await
        .unwrap();
    let results = results(&report, 10);
    let pid = results[0].0;
    assert_ne!(pid, std::process::id());
    for (i, &(p, before, n)) in results.iter().enumerate() {
        assert_eq!(p, pid, "task {i} ran in another process: {results:?}");
        assert_eq!(
            before, i as u32,
            "the runner's own count of tasks: {results:?}"
        );
        assert_eq!(n, i as u32);
        let runner = report.task(&format!("t{i}")).unwrap().runner.unwrap();
        assert_eq!(runner, format!("pid {pid} (warm, task {} of it)", i + 1));
    }
    // A second run of the same engine reuses it too.
    let again = engine
        .execute(&chain_of(3, "warm-again"), RunOptions::new())
        .await
        .unwrap();
    assert!(results_of(&again, 3).iter().all(|&(p, _, _)| p == pid));
    drop(engine);
    assert!(
        within(PROMPTLY, || !alive(pid)),
        "warm runner {pid} still runs after its engine was dropped"
    );
}

fn results_of(report: &RunReport, n: u32) -> Vec<(u32, u32, u32)> {
    results(report, n)
}

#[tokio::test]
async fn without_reuse_every_task_gets_a_fresh_process() {
    let mut wf = Workflow::builder("fresh");
    let a = wf.add(fresh_pid::task().with_id("a"));
    let b = wf.add(fresh_pid::task().with_id("b"));
    wf.edge(a, b);
    let report = engine(PoolOptions::new())
        .execute(&wf.build(), RunOptions::new())
        .await
        .unwrap();
    assert_ne!(
        report.result::<u32>("a").unwrap(),
        report.result::<u32>("b").unwrap()
    );
}

#[tokio::test]
async fn a_parallel_group_uses_at_most_the_pool_size_and_reuses_them() {
    let mut wf = Workflow::builder("warm-group");
    for i in 0..24u32 {
        wf.add(
            pid_and_count::task()
                .with_id(format!("t{i}"))
                .with_input("n", i),
        );
    }
    let report = engine(PoolOptions::new().with_size(2))
        .execute(&wf.build(), RunOptions::new())
        .await
        .unwrap();
    let results = results(&report, 24);
    let pids: HashSet<u32> = results.iter().map(|r| r.0).collect();
    assert!(
        pids.len() <= 2,
        "more runners than the pool's size: {pids:?}"
    );
    // Each runner counted its own tasks 0, 1, 2, ...: together exactly the 24 tasks.
    for pid in &pids {
        let counts: BTreeSet<u32> = results
            .iter()
            .filter(|r| r.0 == *pid)
            .map(|r| r.1)
            .collect();
        let n = results.iter().filter(|r| r.0 == *pid).count() as u32;
        assert_eq!(counts, (0..n).collect(), "runner {pid}: {results:?}");
    }
}

#[task(handler = "process", reuse = true, retries = 1)]
fn panics_first(ctx: &TaskContext) -> u32 {
    assert!(ctx.attempt() > 1, "first attempt panics");
    std::process::id()
}

#[tokio::test]
async fn a_runner_whose_task_panicked_is_replaced_and_the_retry_succeeds() {
    let engine = engine(PoolOptions::new().with_size(1));
    let first = engine
        .execute(&chain_of(1, "before"), RunOptions::new())
        .await
        .unwrap();
    let old = results(&first, 1)[0].0;
    let report = engine
        .execute(&workflow! { panics_first; }, RunOptions::new())
        .await
        .unwrap();
    let record = report.task("panics_first").unwrap();
    assert_eq!(record.attempts, 2);
    let new = report.result::<u32>("panics_first").unwrap();
    assert_ne!(new, old, "the retry ran in the runner whose task panicked");
    assert!(
        within(PROMPTLY, || !alive(old)),
        "the poisoned runner {old} still runs"
    );
    // The replacement stays warm for the next task.
    let after = engine
        .execute(&chain_of(1, "after"), RunOptions::new())
        .await
        .unwrap();
    assert_eq!(results(&after, 1)[0].0, new);
}

#[task(handler = "process", reuse = true, timeout = "300ms")]
fn sleeps_too_long(pid_file: String) -> u32 {
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    // Far longer than `PROMPTLY`: a runner gone within that bound was stopped.
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[tokio::test]
async fn a_runner_whose_task_timed_out_is_stopped_and_replaced() {
    let engine = engine(PoolOptions::new().with_size(1));
    let pid_file =
        std::env::temp_dir().join(format!("graflow-warm-timeout-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let error = engine
        .execute(
            &workflow! { sleeps_too_long; },
            RunOptions::new().param("pid_file", pid_file.display().to_string()),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
    let old: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let _ = std::fs::remove_file(&pid_file);
    assert!(
        within(PROMPTLY, || !alive(old)),
        "the runner {old} of the timed-out task still runs"
    );
    let next = engine
        .execute(&chain_of(2, "next"), RunOptions::new())
        .await
        .unwrap();
    let results = results(&next, 2);
    assert_ne!(results[0].0, old);
    assert_eq!(results[0].1, 0, "a new runner serves the next task");
}

#[task(handler = "process", reuse = true)]
fn exits(code: i32) -> u32 {
    std::process::exit(code)
}

#[tokio::test]
async fn a_runner_that_dies_fails_only_its_task_naming_runner_and_exit() {
    let engine = engine(PoolOptions::new().with_size(1));
    let before = results(
        &engine
            .execute(&chain_of(1, "x"), RunOptions::new())
            .await
            .unwrap(),
        1,
    )[0]
    .0;
    let error = engine
        .execute(&workflow! { exits; }, RunOptions::new().param("code", 3i32))
        .await
        .unwrap_err();
    let message = graflow::Chain(&error).to_string();
    assert!(
        message.contains(&format!(
            "warm runner pid {before} died before reporting a result"
        )) && message.contains("exit code 3"),
        "{message}"
    );
    let after = results(
        &engine
            .execute(&chain_of(1, "y"), RunOptions::new())
            .await
            .unwrap(),
        1,
    )[0];
    assert_ne!(after.0, before);
    assert_eq!(after.1, 0);
}

#[tokio::test]
async fn runners_are_replaced_after_max_uses() {
    let engine = engine(PoolOptions::new().with_size(1).with_max_uses(3));
    let report = engine
        .execute(&chain_of(7, "uses"), RunOptions::new())
        .await
        .unwrap();
    let results = results(&report, 7);
    let pids: Vec<u32> = results.iter().map(|r| r.0).collect();
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[1], pids[2]);
    assert_ne!(pids[2], pids[3]);
    assert_eq!(pids[3], pids[5]);
    assert_ne!(pids[5], pids[6]);
    assert!(within(PROMPTLY, || !alive(pids[0])));
}

#[tokio::test]
async fn an_idle_runner_is_stopped_after_the_idle_timeout() {
    let engine = engine(
        PoolOptions::new()
            .with_size(1)
            .with_idle_timeout(Duration::from_millis(300)),
    );
    let pid = results(
        &engine
            .execute(&chain_of(1, "idle"), RunOptions::new())
            .await
            .unwrap(),
        1,
    )[0]
    .0;
    assert!(
        within(PROMPTLY, || !alive(pid)),
        "runner {pid} still runs long after its idle timeout"
    );
    let next = results(
        &engine
            .execute(&chain_of(1, "later"), RunOptions::new())
            .await
            .unwrap(),
        1,
    )[0];
    assert_ne!(next.0, pid);
}

#[tokio::test]
async fn warm_up_starts_the_runners_before_the_run() {
    let engine = engine(PoolOptions::new().with_size(2));
    let mut wf = Workflow::builder("warm-up");
    for i in 0..5u32 {
        wf.add(
            pid_and_count::task()
                .with_id(format!("t{i}"))
                .with_input("n", i),
        );
    }
    wf.add(fresh_pid::task().with_id("fresh"));
    let wf = wf.build();
    assert_eq!(engine.warm_up(&wf).await.unwrap(), 2);
    // Already warm: nothing more to start.
    assert_eq!(engine.warm_up(&wf).await.unwrap(), 0);
    let children = children_of_this_process();
    let report = engine.execute(&wf, RunOptions::new()).await.unwrap();
    let pids: HashSet<u32> = results(&report, 5).iter().map(|r| r.0).collect();
    assert!(pids.len() <= 2, "{pids:?}");
    for pid in &pids {
        assert!(
            children.contains(pid),
            "runner {pid} was started during the run, not by warm_up ({children:?})"
        );
    }
}

/// This process's children now.
fn children_of_this_process() -> HashSet<u32> {
    let mut children = HashSet::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                children.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    children
}

#[tokio::test]
async fn a_bad_reuse_option_is_a_validation_problem() {
    let wf = {
        let mut wf = Workflow::builder("bad-reuse");
        wf.add(fresh_pid::task().with_config("reuse", "yes"));
        wf.build()
    };
    let error = WorkflowEngine::new()
        .execute(&wf, RunOptions::new())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`reuse` must be true or false") && message.contains("fresh_pid"),
        "{message}"
    );
}

/// Writes `bytes` on every pipe descriptor this process may write to except stderr: in a runner
/// that includes its protocol output (a descriptor ≥ 3 it keeps from its handler).
fn write_on_pipes(bytes: &[u8]) -> usize {
    let mut written = 0;
    for fd in 3..256 {
        // SAFETY: probing and writing raw descriptors of this process; nothing owns them here.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
                continue;
            }
            if libc::write(fd, bytes.as_ptr().cast(), bytes.len()) > 0 {
                written += 1;
            }
        }
    }
    written
}

#[task(handler = "process", reuse = true)]
fn forges_an_answer() -> u32 {
    write_on_pipes(b"GFOUTCM3\xff\xff\xff\xff\xff\xff\xff\xffgarbage");
    std::process::id()
}

#[task(handler = "process", reuse = true)]
fn writes_after_answering() -> u32 {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(100));
        write_on_pipes(b"unsolicited bytes between tasks");
    });
    std::process::id()
}

#[tokio::test]
async fn hostile_bytes_from_a_warm_runner_fail_only_its_task_and_replace_it() {
    let engine = engine(PoolOptions::new().with_size(1));
    let error = engine
        .execute(&workflow! { forges_an_answer; }, RunOptions::new())
        .await
        .unwrap_err();
    let message = graflow::Chain(&error).to_string();
    assert!(message.contains("was refused"), "{message}");
    let next = results(
        &engine
            .execute(&chain_of(1, "a"), RunOptions::new())
            .await
            .unwrap(),
        1,
    )[0];
    assert_eq!(next.1, 0, "the forging runner was reused");

    // Bytes after the answer, between tasks: the runner is dropped, the next task is not hurt.
    let report = engine
        .execute(&workflow! { writes_after_answering; }, RunOptions::new())
        .await
        .unwrap();
    let writer = report.result::<u32>("writes_after_answering").unwrap();
    assert!(
        within(PROMPTLY, || !alive(writer)),
        "runner {writer} wrote between tasks and still runs"
    );
    let next = results(
        &engine
            .execute(&chain_of(1, "b"), RunOptions::new())
            .await
            .unwrap(),
        1,
    )[0];
    assert_ne!(next.0, writer);
}

#[task(handler = "process", reuse = true)]
fn leaves_state() -> Vec<String> {
    let path = std::env::temp_dir().join(format!("graflow-warm-state-{}", std::process::id()));
    let seen = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, format!("{seen}x")).unwrap();
    vec![seen]
}

#[tokio::test]
async fn state_persists_between_tasks_of_one_warm_runner_as_documented() {
    let engine = engine(PoolOptions::new().with_size(1));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let report = engine
            .execute(&workflow! { leaves_state; }, RunOptions::new())
            .await
            .unwrap();
        seen.extend(report.result::<Vec<String>>("leaves_state").unwrap());
    }
    assert_eq!(seen, ["", "x", "xx"]);
}

/// The child program of the SIGKILL test: starts two warm runners, writes their pids, waits.
#[test]
fn child_program() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let pid_file = std::env::var(CHILD_ARG).unwrap();
    #[cfg(feature = "docker")]
    if mode == "warm-docker-busy" {
        // A warm container busy with a long task when the test SIGKILLs this program.
        let engine = docker_engine(PoolOptions::new().with_size(1));
        let report = engine
            .run(&workflow! { where_am_i; }, RunOptions::new())
            .unwrap();
        std::fs::write(&pid_file, container_of(&report, "where_am_i")).unwrap();
        let result = engine.run(&workflow! { docker_sleeps_long; }, RunOptions::new());
        panic!("the task ended on its own: {result:?}");
    }
    #[cfg(feature = "docker")]
    if mode == "warm-docker-then-wait" {
        let engine = docker_engine(PoolOptions::new().with_size(1));
        let report = engine
            .run(&workflow! { where_am_i; }, RunOptions::new())
            .unwrap();
        let name = container_of(&report, "where_am_i");
        std::fs::write(&pid_file, name).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    if mode == "warm-then-sigint" {
        // Two warm runners; then a long task on one of them, interrupted by the test.
        let engine = engine(PoolOptions::new().with_size(2));
        let mut wf = Workflow::builder("two");
        for i in 0..2u32 {
            wf.add(
                pid_and_count::task()
                    .with_id(format!("t{i}"))
                    .with_input("n", i),
            );
        }
        let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
        let pids: BTreeSet<u32> = results(&report, 2).iter().map(|r| r.0).collect();
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        std::fs::write(format!("{pid_file}.idle"), list.join(" ")).unwrap();
        let result = engine.run(
            &workflow! { sleeps_too_long_untimed; },
            RunOptions::new().param("pid_file", pid_file),
        );
        panic!("the task ended on its own: {result:?}");
    }
    assert_eq!(mode, "warm-then-wait");
    let engine = engine(PoolOptions::new().with_size(2));
    let mut wf = Workflow::builder("child");
    for i in 0..6u32 {
        wf.add(
            pid_and_count::task()
                .with_id(format!("t{i}"))
                .with_input("n", i),
        );
    }
    let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
    let pids: BTreeSet<u32> = results(&report, 6).iter().map(|r| r.0).collect();
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    std::fs::write(&pid_file, list.join(" ")).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[task(handler = "process", reuse = true)]
fn sleeps_too_long_untimed(pid_file: String) -> u32 {
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    0
}

fn read_pids(path: &str) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect()
}

#[test]
fn ctrl_c_stops_busy_and_idle_warm_runners() {
    let pid_file = std::env::temp_dir()
        .join(format!("graflow-warm-int-{}", std::process::id()))
        .display()
        .to_string();
    let idle_file = format!("{pid_file}.idle");
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&idle_file);
    let mut program = start_child("warm-then-sigint", std::path::Path::new(&pid_file));
    let started = within(Duration::from_secs(60), || !read_pids(&pid_file).is_empty());
    let mut pids = read_pids(&idle_file);
    pids.extend(read_pids(&pid_file));
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&idle_file);
    if !started {
        let _ = program.kill();
        panic!("the long task never started");
    }
    assert!(pids.len() >= 2, "{pids:?}");
    // SAFETY: a signal to our own, not yet reaped, child.
    assert_eq!(
        unsafe { libc::kill(program.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let mut status = None;
    let ended = within(PROMPTLY, || {
        status = program.try_wait().unwrap();
        status.is_some()
    });
    if !ended {
        // Nothing of a failed test is left running.
        sigkill(&mut program);
        for &pid in &pids {
            // SAFETY: best-effort cleanup of this test's child's runners.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        panic!("the program still runs {PROMPTLY:?} after SIGINT");
    }
    let status = status.unwrap();
    assert!(
        !status.success(),
        "the interrupted program ended as the signal asks: {status}"
    );
    let gone = within(PROMPTLY, || pids.iter().all(|&p| !alive(p)));
    for &pid in &pids {
        if alive(pid) {
            // SAFETY: best-effort cleanup of a leaked runner.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    assert!(
        gone,
        "warm runners {pids:?} outlived the interrupted program by {PROMPTLY:?}"
    );
}

#[test]
fn warm_runners_exit_when_their_program_is_sigkilled() {
    let pid_file = std::env::temp_dir().join(format!("graflow-warm-kill-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let mut program = start_child("warm-then-wait", std::path::Path::new(&pid_file));
    let mut pids = Vec::new();
    assert!(
        within(Duration::from_secs(60), || {
            pids = std::fs::read_to_string(&pid_file)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect();
            !pids.is_empty()
        }),
        "the child program never reported its runners"
    );
    let _ = std::fs::remove_file(&pid_file);
    assert!(
        pids.iter().all(|&p| alive(p)),
        "warm runners idle and alive: {pids:?}"
    );
    sigkill(&mut program);
    let gone = within(PROMPTLY, || pids.iter().all(|&p| !alive(p)));
    for &pid in &pids {
        if alive(pid) {
            // SAFETY: best-effort cleanup of a leaked runner.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    assert!(
        gone,
        "warm runners {pids:?} outlived their SIGKILLed program by {PROMPTLY:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Warm containers

#[cfg(feature = "docker")]
fn docker_engine(pool: PoolOptions) -> WorkflowEngine {
    WorkflowEngine::new().with_handler("docker", DockerHandler::new().with_pool(pool))
}

/// The container (its hostname) and how many tasks its runner had run before.
#[task(handler = "docker", image = "python:3.11-slim", reuse = true)]
fn where_am_i() -> (String, u32) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RAN: AtomicU32 = AtomicU32::new(0);
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    (host.trim().to_owned(), RAN.fetch_add(1, Ordering::SeqCst))
}

/// The name of the container that served `task`, from the run report.
#[cfg(feature = "docker")]
fn container_of(report: &RunReport, task: &str) -> String {
    let runner = report.task(task).unwrap().runner.unwrap();
    let name = runner
        .strip_prefix("container ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a container: {runner}"));
    name.to_owned()
}

#[cfg(feature = "docker")]
fn container_exists(name: &str) -> bool {
    !docker_ps(&[&format!("name=^{name}$")]).is_empty()
}

#[cfg(feature = "docker")]
#[test]
fn one_warm_container_serves_many_tasks_and_is_removed_with_its_engine() {
    if skip_without_docker() {
        return;
    }
    let engine = docker_engine(PoolOptions::new().with_size(1));
    let mut wf = Workflow::builder("warm-docker");
    let nodes: Vec<_> = (0..5)
        .map(|i| wf.add(where_am_i::task().with_id(format!("w{i}"))))
        .collect();
    wf.chain(&nodes);
    let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
    let served: Vec<(String, u32)> = (0..5)
        .map(|i| report.result(&format!("w{i}")).unwrap())
        .collect();
    let name = container_of(&report, "w0");
    for (i, (host, before)) in served.iter().enumerate() {
        assert_eq!(
            host, &served[0].0,
            "task {i} ran in another container: {served:?}"
        );
        assert_eq!(*before, i as u32, "{served:?}");
        assert_eq!(container_of(&report, &format!("w{i}")), name);
    }
    assert!(
        container_exists(&name),
        "the warm container {name} is kept between runs"
    );
    // A second run (engine.run builds a new runtime) still reuses it.
    let again = engine
        .run(&workflow! { where_am_i; }, RunOptions::new())
        .unwrap();
    assert_eq!(again.result::<(String, u32)>("where_am_i").unwrap().1, 5);
    drop(engine);
    assert!(
        within(PROMPTLY, || !container_exists(&name)),
        "warm container {name} outlived its engine"
    );
}

#[task(handler = "docker", image = "python:3.11-slim", reuse = true, env = ["FLAVOUR=a"])]
fn flavour_a() -> (String, String) {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    (
        host.trim().to_owned(),
        std::env::var("FLAVOUR").unwrap_or_default(),
    )
}

#[task(handler = "docker", image = "python:3.11-slim", reuse = true, env = ["FLAVOUR=b"])]
fn flavour_b() -> (String, String) {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    (
        host.trim().to_owned(),
        std::env::var("FLAVOUR").unwrap_or_default(),
    )
}

#[cfg(feature = "docker")]
#[test]
fn tasks_whose_containers_differ_never_share_one() {
    if skip_without_docker() {
        return;
    }
    let engine = docker_engine(PoolOptions::new().with_size(1));
    let mut wf = Workflow::builder("two-keys");
    let mut chain = Vec::new();
    for i in 0..3 {
        chain.push(wf.add(flavour_a::task().with_id(format!("a{i}"))));
        chain.push(wf.add(flavour_b::task().with_id(format!("b{i}"))));
        chain.push(wf.add(where_am_i::task().with_id(format!("w{i}"))));
    }
    wf.chain(&chain);
    let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
    let host = |id: &str| -> String {
        match report.result::<(String, String)>(id) {
            Ok((host, flavour)) => {
                assert_eq!(flavour, &id[..1], "task {id} saw another environment");
                host
            }
            Err(_) => report.result::<(String, u32)>(id).unwrap().0,
        }
    };
    let (a, b, w) = (host("a0"), host("b0"), host("w0"));
    assert!(a != b && b != w && a != w, "{a} {b} {w}");
    for i in 1..3 {
        assert_eq!(host(&format!("a{i}")), a);
        assert_eq!(host(&format!("b{i}")), b);
        assert_eq!(host(&format!("w{i}")), w);
    }
}

#[task(
    handler = "docker",
    image = "python:3.11-slim",
    reuse = true,
    memory = "64m"
)]
fn hungry_then_fine(hungry: bool) -> String {
    if hungry {
        let mut blocks = Vec::new();
        for _ in 0..64 {
            blocks.push(std::hint::black_box(vec![1u8; 16 * 1024 * 1024]));
        }
    }
    std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(feature = "docker")]
#[test]
fn a_warm_container_killed_for_memory_is_replaced_and_the_next_task_succeeds() {
    if skip_without_docker() {
        return;
    }
    let engine = docker_engine(PoolOptions::new().with_size(1));
    let run = |hungry: bool| {
        engine.run(
            &workflow! { hungry_then_fine; },
            RunOptions::new().param("hungry", hungry),
        )
    };
    let first = run(false).unwrap();
    let before = container_of(&first, "hungry_then_fine");
    let error = run(true).unwrap_err();
    let message = graflow::Chain(&error).to_string();
    assert!(
        message.contains("ran out of memory (OOM-killed at its limit of 64 MiB)")
            && message.contains(&before),
        "{message}"
    );
    let after = run(false).unwrap();
    assert_ne!(container_of(&after, "hungry_then_fine"), before);
    assert!(
        within(PROMPTLY, || !container_exists(&before)),
        "the OOM-killed container {before} is left"
    );
}

#[task(
    handler = "docker",
    image = "python:3.11-slim",
    reuse = true,
    timeout = "2s"
)]
fn docker_sleeps_too_long() -> u8 {
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[cfg(feature = "docker")]
#[test]
fn a_warm_container_whose_task_timed_out_is_removed() {
    if skip_without_docker() {
        return;
    }
    let engine = docker_engine(PoolOptions::new().with_size(1));
    let warm = engine
        .run(&workflow! { where_am_i; }, RunOptions::new())
        .unwrap();
    let name = container_of(&warm, "where_am_i");
    let error = engine
        .run(&workflow! { docker_sleeps_too_long; }, RunOptions::new())
        .unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
    let next = engine
        .run(&workflow! { where_am_i; }, RunOptions::new())
        .unwrap();
    // The timed-out task took the warm container; the next one gets a new one.
    assert_ne!(container_of(&next, "where_am_i"), name);
    assert_eq!(next.result::<(String, u32)>("where_am_i").unwrap().1, 0);
    assert!(
        within(PROMPTLY, || !container_exists(&name)),
        "the container {name} of the timed-out task is left"
    );
}

/// Starts the child program `mode`, which reports its warm container's name, SIGKILLs it, and
/// checks that the container is gone promptly (`busy`: after giving it its long task).
#[cfg(feature = "docker")]
fn assert_warm_container_gone_after_sigkill(mode: &str, busy: bool) {
    if skip_without_docker() {
        return;
    }
    let name_file =
        std::env::temp_dir().join(format!("graflow-warm-{mode}-{}", std::process::id()));
    let _ = std::fs::remove_file(&name_file);
    let mut program = start_child(mode, &name_file);
    let mut name = String::new();
    let reported = within(Duration::from_secs(120), || {
        name = std::fs::read_to_string(&name_file).unwrap_or_default();
        !name.is_empty()
    });
    let _ = std::fs::remove_file(&name_file);
    if !reported {
        let _ = program.kill();
        panic!("the child program never reported its warm container");
    }
    if busy {
        // The program sends the long task right after reporting: give it a moment.
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(container_exists(&name), "warm container {name} runs");
    sigkill(&mut program);
    let gone = within(PROMPTLY, || !container_exists(&name));
    if !gone {
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    }
    assert!(
        gone,
        "warm container {name} (busy: {busy}) outlived its SIGKILLed program by {PROMPTLY:?}"
    );
}

#[cfg(feature = "docker")]
#[test]
fn warm_containers_are_removed_when_their_program_is_sigkilled() {
    assert_warm_container_gone_after_sigkill("warm-docker-then-wait", false);
}

#[task(handler = "docker", image = "python:3.11-slim", reuse = true)]
fn docker_sleeps_long() -> u8 {
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[cfg(feature = "docker")]
#[test]
fn a_busy_warm_container_is_removed_when_its_program_is_sigkilled() {
    assert_warm_container_gone_after_sigkill("warm-docker-busy", true);
}

#[cfg(feature = "docker")]
#[test]
fn reuse_needs_auto_remove() {
    let mut wf = Workflow::builder("kept");
    wf.add(where_am_i::task().with_config("auto_remove", false));
    let error = WorkflowEngine::new().validate(&wf.build()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`reuse = true` needs `auto_remove = true`"),
        "{error}"
    );
}

#[cfg(feature = "docker")]
#[tokio::test]
async fn docker_warm_up_starts_one_pool_per_environment_before_the_run() {
    if skip_without_docker() {
        return;
    }
    let engine = docker_engine(PoolOptions::new().with_size(2));
    let mut wf = Workflow::builder("warm-up-docker");
    for i in 0..3 {
        wf.add(flavour_a::task().with_id(format!("a{i}")));
    }
    wf.add(flavour_b::task().with_id("b0"));
    let wf = wf.build();
    // Flavour a: 3 tasks, a pool of 2; flavour b: 1 task.
    assert_eq!(engine.warm_up(&wf).await.unwrap(), 3);
    // This program's warm containers (`graflow-warm-env-<k>-<pid>-<n>`): other programs on the
    // daemon have theirs.
    let ours = format!("name=^/?graflow-warm-env-[0-9]+-{}-", std::process::id());
    let before: HashSet<String> = docker_ps(&["label=graflow.run=warm", "status=running", &ours])
        .into_iter()
        .collect();
    let report = engine.execute(&wf, RunOptions::new()).await.unwrap();
    for id in ["a0", "a1", "a2", "b0"] {
        let name = container_of(&report, id);
        let ids = docker_ps(&[&format!("name=^{name}$")]);
        assert!(
            ids.iter().any(|id| before
                .iter()
                .any(|b| b.starts_with(id.as_str()) || id.starts_with(b.as_str()))),
            "task {id} ran in {name}, which warm_up did not start"
        );
    }
}

#[task(handler = "process", reuse = true)]
fn starts_a_sleeper() -> (u32, u32) {
    // Not waited for: the runner kills it when the task ends (setsid forks only when it leads
    // its group, which it does not: the pid is the sleeper's).
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new("setsid")
        .args(["sleep", "300"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    (std::process::id(), child.id())
}

#[tokio::test]
async fn processes_a_warm_task_started_are_killed_when_it_ends_and_the_runner_stays() {
    let engine = engine(PoolOptions::new().with_size(1));
    let report = engine
        .execute(&workflow! { starts_a_sleeper; }, RunOptions::new())
        .await
        .unwrap();
    let (runner, sleeper) = report.result::<(u32, u32)>("starts_a_sleeper").unwrap();
    let sleepers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\u{0}300"))
                && std::fs::read_to_string(format!("/proc/{pid}/environ")).is_ok_and(|e| {
                    e.split('\0').any(|v| {
                        v.starts_with("GRAFLOW_TASK_TREE=") && v.ends_with(&format!(":{runner}"))
                    })
                })
        })
        .collect();
    assert!(
        !alive(sleeper) && sleepers.iter().all(|&p| !alive(p)),
        "the task's sleeper outlived it: {sleeper} {sleepers:?}"
    );
    assert!(
        alive(runner),
        "the warm runner {runner} stays for the next task"
    );
    let next = engine
        .execute(&chain_of(1, "next"), RunOptions::new())
        .await
        .unwrap();
    assert_eq!(results(&next, 1)[0].0, runner);
}

#[tokio::test]
async fn reuse_by_default_and_a_task_that_opts_out() {
    let engine = engine(PoolOptions::new().with_size(1).reuse_by_default(true));
    let mut wf = Workflow::builder("default-reuse");
    let a = wf.add(fresh_pid::task().with_id("a"));
    let b = wf.add(fresh_pid::task().with_id("b"));
    let c = wf.add(fresh_pid::task().with_id("c").with_config("reuse", false));
    wf.chain(&[a, b, c]);
    let report = engine
        .execute(&wf.build(), RunOptions::new())
        .await
        .unwrap();
    let pid = |id: &str| report.result::<u32>(id).unwrap();
    assert_eq!(
        pid("a"),
        pid("b"),
        "tasks without `reuse` use the pool by default"
    );
    assert_ne!(pid("c"), pid("a"), "`reuse = false` runs on a fresh child");
    assert!(
        report
            .task("c")
            .unwrap()
            .runner
            .is_none_or(|r| !r.contains("warm"))
    );
}

#[tokio::test]
async fn a_runner_killed_while_idle_is_replaced_without_failing_the_next_task() {
    let engine = engine(PoolOptions::new().with_size(1));
    for round in 0..5 {
        let pid = results(
            &engine
                .execute(&chain_of(1, "idle"), RunOptions::new())
                .await
                .unwrap(),
            1,
        )[0]
        .0;
        // SAFETY: a signal to a warm runner of this test's own engine.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
        // Dead with every thread gone (a killed process's leader is a zombie while its other
        // threads still exit and hold its descriptors).
        assert!(within(PROMPTLY, || !alive(pid)
            && std::fs::read_dir(format!("/proc/{pid}/task"))
                .map_or(true, |t| t.count() <= 1)));
        let next = engine
            .execute(&chain_of(1, "after-kill"), RunOptions::new())
            .await;
        let next = next.unwrap_or_else(|e| panic!("round {round}: {}", graflow::Chain(&e)));
        assert_ne!(results(&next, 1)[0].0, pid);
    }
}

#[task(handler = "process", reuse = true)]
fn chatty(n: u32) -> u32 {
    use std::io::Write;
    println!("chatty says {n} on stdout");
    eprintln!("chatty says {n} on stderr");
    print!("chatty leaves {n} unterminated");
    let _ = std::io::stdout().flush();
    n
}

#[tokio::test]
async fn a_warm_runners_output_lines_go_to_the_task_that_printed_them() {
    let logs = common::captured_logs();
    let engine = engine(PoolOptions::new().with_size(1));
    let mut wf = Workflow::builder("chatty");
    let nodes: Vec<_> = (0..5u32)
        .map(|i| {
            wf.add(
                chatty::task()
                    .with_id(format!("chatty{i}"))
                    .with_input("n", i),
            )
        })
        .collect();
    wf.chain(&nodes);
    engine
        .execute(&wf.build(), RunOptions::new())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    for i in 0..5 {
        for line in [
            format!("[chatty{i}] chatty says {i} on stdout"),
            format!("[chatty{i}] chatty says {i} on stderr"),
            format!("[chatty{i}] chatty leaves {i} unterminated"),
        ] {
            assert!(text.contains(&line), "missing `{line}` in:\n{text}");
        }
    }
    assert!(
        !text.contains("GFEND3"),
        "the end marker leaked into the logs:\n{text}"
    );
}

#[task(handler = "process", reuse = true)]
fn naps(n: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(300));
    let _ = n;
    std::process::id()
}

#[tokio::test]
async fn the_pool_keeps_at_most_max_idle_runners() {
    let engine = WorkflowEngine::new().with_handler(
        "process",
        ProcessHandler::new()
            .with_max_concurrency(3)
            .with_pool(PoolOptions::new().with_size(3).with_max_idle(1)),
    );
    let mut wf = Workflow::builder("naps");
    for i in 0..3u32 {
        wf.add(naps::task().with_id(format!("n{i}")).with_input("n", i));
    }
    let report = engine
        .execute(&wf.build(), RunOptions::new())
        .await
        .unwrap();
    let pids: HashSet<u32> = (0..3)
        .map(|i| report.result::<u32>(&format!("n{i}")).unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        3,
        "three tasks at once, three runners: {pids:?}"
    );
    assert!(
        within(PROMPTLY, || pids.iter().filter(|&&p| alive(p)).count() == 1),
        "more than one idle runner kept: {:?}",
        pids.iter().map(|&p| (p, alive(p))).collect::<Vec<_>>()
    );
}

#[task(handler = "process", reuse = true)]
async fn spawns_a_ticker(path: String) -> u32 {
    graflow::tokio::spawn(async move {
        loop {
            let seen = std::fs::read_to_string(&path).unwrap_or_default();
            let _ = std::fs::write(&path, format!("{seen}t"));
            graflow::tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    std::process::id()
}

#[task(handler = "process", reuse = true)]
async fn waits_a_while() -> u32 {
    graflow::tokio::time::sleep(Duration::from_millis(400)).await;
    std::process::id()
}

#[tokio::test]
async fn what_a_warm_task_spawned_does_not_run_into_the_next_task() {
    let engine = engine(PoolOptions::new().with_size(1));
    let path = std::env::temp_dir().join(format!("graflow-warm-ticker-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let first = engine
        .execute(
            &workflow! { spawns_a_ticker; },
            RunOptions::new().param("path", path.display().to_string()),
        )
        .await
        .unwrap();
    let second = engine
        .execute(&workflow! { waits_a_while; }, RunOptions::new())
        .await
        .unwrap();
    let ticks = std::fs::read_to_string(&path).unwrap_or_default().len();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        first.result::<u32>("spawns_a_ticker").unwrap(),
        second.result::<u32>("waits_a_while").unwrap(),
        "the same warm runner served both"
    );
    assert!(
        ticks <= 1,
        "the first task's spawned ticker ran {ticks} times during the second"
    );
}

#[task(handler = "process", reuse = true)]
fn holds_the_runner() -> u32 {
    std::thread::sleep(std::time::Duration::from_secs(3));
    1
}

#[task(handler = "process", reuse = true, timeout = "1s")]
fn quick_with_a_timeout() -> u32 {
    2
}

/// A timeout limits the task's own execution: waiting for the pool's one warm runner, held
/// 3 s by another task, does not count against a 1 s timeout (it timed out before).
#[tokio::test]
async fn waiting_for_a_warm_runner_does_not_count_against_the_timeout() {
    let engine = engine(PoolOptions::new().with_size(1));
    let wf = workflow! { name: "pool-wait"; (holds_the_runner | quick_with_a_timeout); };
    let report = engine.execute(&wf, RunOptions::new()).await.unwrap();
    assert_eq!(report.result::<u32>("quick_with_a_timeout").unwrap(), 2);
}
