//! The "process" handler: a task runs in a child process of this test binary; crashes, exits
//! and timeouts fail only that task; results, errors, panics and channel writes cross back.

use std::time::{Duration, Instant};

use graflow::TaskStatus;
use graflow::prelude::*;
use serde::{Deserialize, Serialize};

mod common;

use common::{PROMPTLY, alive, default_signals};

graflow::enable_test_runner!();

fn logs() -> &'static std::sync::Mutex<Vec<u8>> {
    common::captured_logs()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Measurement {
    sensor: String,
    values: Vec<f64>,
    pid: u32,
}

#[task]
fn measure(sensor: String) -> Measurement {
    Measurement {
        sensor,
        values: vec![1.5, 2.5],
        pid: std::process::id(),
    }
}

#[task(handler = "process", writes = ["calibrated"])]
fn calibrate(measure: Measurement, ctx: &TaskContext) -> Result<Measurement, String> {
    println!("calibrating {} on stdout", measure.sensor);
    eprintln!("calibration warning on stderr");
    ctx.channel().set("calibrated", true);
    ctx.channel().delete("scratch");
    Ok(Measurement {
        values: measure.values.iter().map(|v| v * 2.0).collect(),
        pid: std::process::id(),
        ..measure
    })
}

#[task]
fn check(calibrate: Measurement, calibrated: bool) -> f64 {
    assert!(calibrated);
    calibrate.values.iter().sum()
}

#[tokio::test]
async fn a_typed_struct_and_channel_writes_cross_the_process_boundary() {
    let logs = logs();
    let wf = workflow! { measure >> calibrate >> check; };
    let channel = Channel::new()
        .with("sensor", "t-1".to_owned())
        .with("scratch", 1u8);
    let report = WorkflowEngine::new()
        .execute(&wf, RunOptions::new().channel(channel))
        .await
        .unwrap();
    let calibrated: Measurement = report.result("calibrate").unwrap();
    assert_eq!(calibrated.values, vec![3.0, 5.0]);
    assert_eq!(calibrated.sensor, "t-1");
    // It really ran elsewhere.
    assert_ne!(calibrated.pid, std::process::id());
    assert_eq!(
        report.result::<Measurement>("measure").unwrap().pid,
        std::process::id()
    );
    // 3.0 + 5.0 is exact, and a result crosses the boundary bit for bit.
    let sum = report.result::<f64>("check").unwrap();
    assert_eq!(sum.to_bits(), 8.0f64.to_bits(), "{sum}");
    assert!(report.channel().get::<bool>("calibrated").unwrap());
    assert!(
        !report.channel().contains("scratch"),
        "the child's delete is merged back"
    );
    assert_eq!(report.task("calibrate").unwrap().handler, "process");
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(
        text.contains("[calibrate] calibrating t-1 on stdout"),
        "{text}"
    );
    assert!(
        text.contains("[calibrate] calibration warning on stderr"),
        "{text}"
    );
}

#[task(handler = "process")]
fn segfault() -> u8 {
    // SAFETY: none; the point is to crash this (child) process.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    0
}

#[task(handler = "process")]
fn abort() -> u8 {
    std::process::abort()
}

#[task(handler = "process")]
fn exit_three() -> u8 {
    eprintln!("giving up");
    std::process::exit(3)
}

#[task(handler = "process")]
fn fails() -> Result<u8, std::io::Error> {
    Err(std::io::Error::other("sensor offline"))
}

#[task(handler = "process")]
fn panics() -> u8 {
    panic!("bad calibration table")
}

#[test]
fn a_crash_fails_only_that_task_and_names_the_signal_or_exit_code() {
    let engine = WorkflowEngine::new();
    let cases = [
        (workflow! { segfault; }, "signal 11 (SIGSEGV)"),
        (workflow! { abort; }, "signal 6 (SIGABRT)"),
        (workflow! { exit_three; }, "exit code 3"),
    ];
    for (wf, expected) in cases {
        let err = engine.run(&wf, RunOptions::new()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("failed on handler 'process'"), "{msg}");
        let cause = &err.failure().expect("the task failed").cause;
        assert_eq!(
            cause.kind(),
            graflow::ErrorKind::Handler(graflow::HandlerFailure::RunnerLost),
            "{msg}"
        );
        assert!(cause.is_retryable());
        assert!(
            msg.contains(&format!(
                "the task's process died ({expected}) before reporting a result"
            )),
            "{msg}"
        );
    }
    let err = engine
        .run(&workflow! { exit_three; }, RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("giving up"),
        "the last output lines are in the error: {err}"
    );
    // This process is fine and keeps running tasks.
    let report = engine
        .run(
            &workflow! { measure; },
            RunOptions::new().param("sensor", "s".to_owned()),
        )
        .unwrap();
    assert_eq!(
        report.result::<Measurement>("measure").unwrap().pid,
        std::process::id()
    );
}

#[test]
fn errors_and_panics_cross_the_boundary() {
    let engine = WorkflowEngine::new();
    let err = engine
        .run(&workflow! { fails; }, RunOptions::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task 'fails' failed on handler 'process' after 1 attempt(s): task 'fails' returned an error: sensor offline"
    );
    let err = engine
        .run(&workflow! { panics; }, RunOptions::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "task 'panics' failed on handler 'process' after 1 attempt(s): task 'panics' panicked: bad calibration table"
    );
}

#[task(handler = "process", timeout = "500ms")]
fn hangs(pid_file: String) -> u8 {
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    // Far longer than `PROMPTLY`: a child gone within that bound was killed.
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[test]
fn a_timeout_kills_the_child() {
    let pid_file = std::env::temp_dir().join(format!("graflow-hangs-{}", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let started = Instant::now();
    let err = WorkflowEngine::new()
        .run(
            &workflow! { hangs; },
            RunOptions::new().param("pid_file", pid_file.display().to_string()),
        )
        .unwrap_err();
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert!(
        matches!(err.cause(), Some(AttemptError::TimedOut { .. })),
        "{err}"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let deadline = Instant::now() + PROMPTLY;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "child {pid} still runs after the timeout");
    let _ = std::fs::remove_file(&pid_file);
}

#[task(handler = "process")]
fn big() -> Vec<u8> {
    (0..50 * 1024 * 1024).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_fifty_megabyte_result_arrives_intact() {
    let report = WorkflowEngine::new()
        .run(&workflow! { big; }, RunOptions::new())
        .unwrap();
    let bytes: Vec<u8> = report.result("big").unwrap();
    assert_eq!(bytes.len(), 50 * 1024 * 1024);
    assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[task(handler = "process")]
async fn async_in_child(n: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    n * 3
}

#[test]
fn parallel_process_tasks_run_in_separate_children() {
    let mut wf = Workflow::builder("many");
    for i in 0..4u64 {
        wf.add(
            async_in_child::task()
                .with_id(format!("child_{i}"))
                .with_input("n", i),
        );
    }
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    for i in 0..4u64 {
        assert_eq!(report.result::<u64>(&format!("child_{i}")).unwrap(), i * 3);
    }
    assert!(report.tasks().all(|t| t.status == TaskStatus::Succeeded));
}

#[task]
fn part_a() -> u32 {
    20
}

#[task]
fn part_b() -> u32 {
    22
}

#[task(handler = "process")]
fn combine(ctx: &TaskContext) -> graflow::Result<(u32, Vec<String>, u32)> {
    let ids = ctx.upstream_ids().into_iter().map(str::to_owned).collect();
    let sum = ctx.upstream::<u32>()?.into_iter().sum();
    Ok((sum, ids, ctx.result::<u32>("part_a")?))
}

#[test]
fn an_out_of_process_sink_sees_its_upstream_results() {
    let report = WorkflowEngine::new()
        .run(
            &workflow! { (part_a | part_b) >> combine; },
            RunOptions::new(),
        )
        .unwrap();
    let (sum, ids, a) = report.result::<(u32, Vec<String>, u32)>("combine").unwrap();
    assert_eq!(sum, 42);
    assert_eq!(ids, vec!["part_a".to_owned(), "part_b".to_owned()]);
    assert_eq!(a, 20);
}

const PLAIN_CHILD: &str = "GRAFLOW_TEST_PLAIN_PROGRAM";

#[task(handler = "process")]
fn sleeps_with_pid_file(path: String) -> u8 {
    std::fs::write(&path, std::process::id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    0
}

/// Not a test on its own: the "program" the signal tests start (this binary, in child mode). It
/// calls only `engine.run`, with no signal handling of its own, as a plain `main` would.
#[test]
fn plain_program_runs_a_long_process_task() {
    let Ok(path) = std::env::var(PLAIN_CHILD) else {
        return;
    };
    let mut wf = Workflow::builder("plain");
    wf.add(sleeps_with_pid_file::task().with_input("path", path.clone()));
    let result = WorkflowEngine::new().run(&wf.build(), RunOptions::new());
    panic!("the run ended on its own: {result:?}");
}

fn pid_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie has ended; only its parent's wait is missing.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn signal_a_plain_program(signal: i32) {
    let dir = std::env::temp_dir().join(format!("graflow-signal-{}-{signal}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("runner.pid");
    let _ = std::fs::remove_file(&pid_file);
    let mut program = default_signals(&mut std::process::Command::new(
        std::env::current_exe().unwrap(),
    ))
    .args([
        "plain_program_runs_a_long_process_task",
        "--exact",
        "--nocapture",
    ])
    .env(PLAIN_CHILD, &pid_file)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let runner: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse()
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let sent = Instant::now();
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(program.id() as i32, signal) };
    let status = loop {
        if let Some(status) = program.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > PROMPTLY {
            // Nothing of a failed test is left running.
            let _ = program.kill();
            let _ = program.wait();
            // SAFETY: best-effort cleanup of the runner this test's child started.
            unsafe { libc::kill(runner, libc::SIGKILL) };
            panic!("the program did not end within {PROMPTLY:?} of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(signal),
        "the program ends as the signal asks, after cleaning up: {status:?}"
    );
    let deadline = Instant::now() + PROMPTLY;
    while !pid_is_gone(runner) {
        assert!(
            Instant::now() < deadline,
            "the runner process {runner} outlived its program"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_to_a_plain_program_stops_its_process_task() {
    signal_a_plain_program(libc::SIGINT);
}

#[test]
fn sigterm_to_a_plain_program_stops_its_process_task() {
    signal_a_plain_program(libc::SIGTERM);
}
