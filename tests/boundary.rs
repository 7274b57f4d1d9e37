//! Regression tests for the out-of-process boundary, from the side of an attacker and of a
//! demanding user: what is left running when the program that started a task dies, what a task
//! inherits (stdin, environment, descriptors), what its subprocesses can do to the protocol, and
//! whether the engine survives hostile bytes. Every absence is polled for with a deadline, never
//! assumed after a sleep. The tests of a docker task are skipped without a Docker daemon, unless
//! `GRAFLOW_REQUIRE_DOCKER=1` (see `common`).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graflow::prelude::*;

use common::{
    PROMPTLY, alive, containers_with, default_signals, running_with, skip_without_docker, within,
};

graflow::enable_test_runner!();

/// Turns this test binary into one of the child programs below (see [`child_program`]).
const CHILD: &str = "GRAFLOW_TEST_BOUNDARY_CHILD";
/// The child program's argument (a pid file, a task id).
const CHILD_ARG: &str = "GRAFLOW_TEST_BOUNDARY_ARG";
/// What the "main-ran" child program prints.
const MARKER: &str = "MAIN-RAN";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A file name of this test process's own, removed first.
fn scratch_file(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("graflow-boundary-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.display().to_string()
}

/// Writes `pid` to `path` atomically (a reader never sees half of it).
fn write_pid(path: &str, pid: u32) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, pid.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits (bounded) for the pid a task wrote to `path`.
fn read_pid(path: &str, limit: Duration) -> u32 {
    let mut pid = None;
    within(limit, || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    })
    .unwrap_or_else(|| panic!("no pid in {path} within {limit:?}"));
    pid.unwrap()
}

/// Removes whatever a failed test left (so that one failure does not leak containers).
fn remove_containers(label: &str, value: &str) {
    let left = containers_with(label, value);
    if !left.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(left)
            .output();
    }
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Runs `f` while sampling this process's resident set; its result and the peak growth in KiB.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let base = rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let result = f();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    peak.fetch_max(rss_kib(), Ordering::SeqCst);
    (result, peak.load(Ordering::SeqCst).saturating_sub(base))
}

/// Starts this test binary as the child program `mode` (see [`child_program`]).
fn start_child(mode: &str, arg: &str) -> std::process::Child {
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
        .spawn()
        .unwrap()
}

fn sigkill(child: &mut std::process::Child) {
    // SAFETY: a signal to our own, not yet reaped, child.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(sent, 0);
    child.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The child programs

#[task(handler = "process")]
fn process_sleeps(pid_file: String) -> u8 {
    write_pid(&pid_file, std::process::id());
    // Far longer than `PROMPTLY`: a runner gone within that bound did not end on its own.
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn docker_sleeps() -> u8 {
    // Far longer than `PROMPTLY`: a container gone within that bound did not end on its own.
    std::thread::sleep(Duration::from_secs(600));
    0
}

/// The child programs of the tests below; returns at once in a normal test run. Each is what a
/// user's `main` would be.
#[test]
fn child_program() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let arg = std::env::var(CHILD_ARG).unwrap_or_default();
    match mode.as_str() {
        // A program that runs a process task of 600 s.
        "process-sleeps" => {
            let result = WorkflowEngine::new().run(
                &workflow! { process_sleeps; },
                RunOptions::new().param("pid_file", arg),
            );
            panic!("the task ended on its own: {result:?}");
        }
        // A program that runs a docker task of 600 s with the id `arg`, and has no signal
        // handling of its own (`run`, not `execute` in a select with ctrl_c).
        "docker-sleeps" => {
            let mut wf = Workflow::builder("docker-sleeps");
            wf.add(docker_sleeps::task().with_id(arg));
            let result = WorkflowEngine::new().run(&wf.build(), RunOptions::new());
            panic!("the task ended on its own: {result:?}");
        }
        // A graflow program started by a task: its main begins with init(), then does its job.
        "main-ran" => {
            graflow::init();
            println!("{MARKER} main ran, runner={}", graflow::is_runner());
        }
        other => panic!("unknown child program {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1, 2: the program that started a task is SIGKILLed

#[test]
fn a_process_runner_dies_promptly_when_its_program_is_sigkilled() {
    let pid_file = scratch_file("sigkilled-runner");
    let mut program = start_child("process-sleeps", &pid_file);
    let runner = read_pid(&pid_file, Duration::from_secs(60));
    assert!(alive(runner), "the runner {runner} runs its task");
    sigkill(&mut program);
    let took = within(PROMPTLY, || !alive(runner));
    let _ = std::fs::remove_file(&pid_file);
    if took.is_none() {
        // SAFETY: best-effort cleanup of the leaked runner.
        unsafe { libc::kill(runner as libc::pid_t, libc::SIGKILL) };
    }
    let took = took.unwrap_or_else(|| {
        panic!("runner {runner} still runs {PROMPTLY:?} after its program was SIGKILLed")
    });
    eprintln!("process runner gone {took:?} after SIGKILL of its program");
}

#[test]
fn a_container_is_gone_promptly_when_its_program_is_sigkilled() {
    if skip_without_docker() {
        return;
    }
    let id = format!("sigkilled_{}", std::process::id());
    let mut program = start_child("docker-sleeps", &id);
    let running = within(Duration::from_secs(60), || {
        !running_with("graflow.task", &id).is_empty()
    });
    if running.is_none() {
        sigkill(&mut program);
        remove_containers("graflow.task", &id);
        panic!("the container never ran");
    }
    sigkill(&mut program);
    let took = within(PROMPTLY, || containers_with("graflow.task", &id).is_empty());
    remove_containers("graflow.task", &id);
    let took = took.unwrap_or_else(|| {
        panic!("the container is still listed {PROMPTLY:?} after its program was SIGKILLed")
    });
    eprintln!("container gone {took:?} after SIGKILL of its program");
}

// ---------------------------------------------------------------------------------------------
// 3: stdin

#[task(handler = "process", timeout = "120s")]
fn reads_stdin() -> usize {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).unwrap();
    buf.len()
}

#[test]
fn a_task_that_reads_stdin_gets_end_of_file_at_once() {
    let started = Instant::now();
    let report = WorkflowEngine::new()
        .run(&workflow! { reads_stdin; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<usize>("reads_stdin").unwrap(), 0);
    // Not its timeout (120 s): end of file at once.
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 4: grandchildren

#[task(handler = "process", timeout = "2s")]
fn starts_a_grandchild_and_hangs(pid_file: String) -> u8 {
    #[expect(
        clippy::zombie_processes,
        reason = "the grandchild is left running on purpose"
    )]
    let grandchild = Command::new("sleep").arg("300").spawn().unwrap();
    write_pid(&pid_file, grandchild.id());
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn a_grandchild_is_gone_promptly_after_its_tasks_timeout() {
    assert_grandchild_gone_after(
        &workflow! { starts_a_grandchild_and_hangs; },
        &scratch_file("grandchild-timeout"),
        |err| {
            assert!(
                matches!(err.cause(), Some(AttemptError::TimedOut { .. })),
                "{err}"
            );
        },
        "still runs long after its task timed out",
    );
}

#[task(handler = "process")]
fn leaves_a_grandchild_behind(pid_file: String) -> u8 {
    #[expect(
        clippy::zombie_processes,
        reason = "the grandchild is left running on purpose"
    )]
    let grandchild = Command::new("sleep").arg("300").spawn().unwrap();
    write_pid(&pid_file, grandchild.id());
    7
}

#[test]
fn a_background_grandchild_neither_holds_the_run_open_nor_outlives_it() {
    let pid_file = scratch_file("grandchild-background");
    let started = Instant::now();
    let report = WorkflowEngine::new()
        .run(
            &workflow! { leaves_a_grandchild_behind; },
            RunOptions::new().param("pid_file", pid_file.clone()),
        )
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        report.result::<u8>("leaves_a_grandchild_behind").unwrap(),
        7
    );
    // Not the grandchild's 300 s.
    assert!(took < PROMPTLY, "the run took {took:?}");
    let grandchild = read_pid(&pid_file, Duration::from_secs(1));
    let _ = std::fs::remove_file(&pid_file);
    let gone = within(PROMPTLY, || !alive(grandchild));
    if gone.is_none() {
        // SAFETY: best-effort cleanup of the leaked grandchild.
        unsafe { libc::kill(grandchild as libc::pid_t, libc::SIGKILL) };
    }
    assert!(
        gone.is_some(),
        "grandchild {grandchild} still runs {PROMPTLY:?} after its run finished"
    );
}

// ---------------------------------------------------------------------------------------------
// 5: a graflow program started by a task

#[task(handler = "process")]
fn starts_this_program() -> Result<(String, bool), String> {
    let out = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args([
            "child_program",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "main-ran")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((text, std::env::var_os("GRAFLOW_RUNNER").is_some()))
}

#[test]
fn a_graflow_program_started_by_a_task_runs_its_own_main() {
    let report = WorkflowEngine::new()
        .run(&workflow! { starts_this_program; }, RunOptions::new())
        .unwrap();
    let (output, _) = report
        .result::<(String, bool)>("starts_this_program")
        .unwrap();
    // The program inherits the runner's environment (a test binary's runner has the harness's
    // threads, so nothing removes GRAFLOW_RUNNER from it); only the process the handler
    // started is a runner all the same.
    assert!(
        output.contains(&format!("{MARKER} main ran, runner=false")),
        "the program did not run its main: {output}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6: forged, oversized and flooding frames

/// A complete outcome frame for a `u8` task's result `value`, of this build, with `nonce`.
fn forged_outcome(nonce: u64, value: u8) -> Vec<u8> {
    use graflow::protocol::{EncodedValue, Outcome, PROTOCOL_VERSION, build_id, codec};
    let exe = std::env::current_exe().unwrap();
    let outcome = Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: build_id::gnu_build_id(&exe).expect("this test binary has a build id"),
        nonce,
        result: Ok(EncodedValue {
            type_name: std::any::type_name::<u8>().to_owned(),
            bytes: codec::encode(&value).unwrap(),
        }),
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns: 0,
    };
    let mut wire = Vec::new();
    outcome.write_to(&mut wire).unwrap();
    wire
}

/// A frame header: the outcome tag and the two lengths.
fn frame_header(head: u64, payload: u64) -> Vec<u8> {
    let mut wire = graflow::protocol::OUTCOME_TAG.to_vec();
    wire.extend_from_slice(&head.to_le_bytes());
    wire.extend_from_slice(&payload.to_le_bytes());
    wire
}

#[task(handler = "process")]
fn prints_a_forged_outcome() -> u8 {
    // READY and a complete outcome claiming 99, written by a subprocess on its stdout.
    let mut forged = graflow::protocol::READY.to_vec();
    for nonce in [0, 1, u64::MAX] {
        forged.extend(forged_outcome(nonce, 99));
    }
    let mut cat = Command::new("cat").stdin(Stdio::piped()).spawn().unwrap();
    cat.stdin.take().unwrap().write_all(&forged).unwrap();
    assert!(cat.wait().unwrap().success());
    7
}

#[test]
fn a_forged_outcome_on_a_subprocesss_stdout_goes_to_the_log() {
    let report = WorkflowEngine::new()
        .run(&workflow! { prints_a_forged_outcome; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<u8>("prints_a_forged_outcome").unwrap(), 7);
}

/// The runner's protocol descriptor, as found by a task: the one pipe above 2 open write-only
/// and close-on-exec.
fn protocol_descriptor() -> Result<u32, String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let is_pipe = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("pipe:"));
        let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("flags:"))
                    .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            })
            .unwrap_or(0);
        let wanted = libc::O_WRONLY as u32 | libc::O_CLOEXEC as u32;
        if fd > 2 && is_pipe && flags & wanted == wanted {
            found.push(fd);
        }
    }
    match found[..] {
        [fd] => Ok(fd),
        _ => Err(format!("protocol descriptor candidates: {found:?}")),
    }
}

/// Has a subprocess run `script` with `$1` = the runner's protocol stream (through
/// `/proc/<runner>/fd/<n>`) and `$2` = `file`, then hangs: only the engine's verdict ends it.
fn attack_protocol_stream(script: &str, file: &str) -> Result<u8, String> {
    let fd = protocol_descriptor()?;
    let target = format!("/proc/{}/fd/{fd}", std::process::id());
    let status = Command::new("sh")
        .args(["-c", script, "sh", &target, file])
        .status()
        .map_err(|e| e.to_string())?;
    // Killed by the engine's refusal (with this process) before this returns, when all is well.
    std::thread::sleep(Duration::from_secs(60));
    Err(format!(
        "not stopped; the attack's shell ended with {status}"
    ))
}

#[task(handler = "process", timeout = "60s")]
fn attacks_the_protocol_stream(script: String, file: String) -> Result<u8, String> {
    attack_protocol_stream(&script, &file)
}

/// Runs one attack on the protocol stream and checks the engine's verdict: the attempt fails
/// with a message containing `expected`, within 60 s, with the engine's resident set growing by
/// less than 256 MiB. Then the engine still runs tasks.
fn refuses(name: &str, script: &str, bytes: &[u8], expected: &[&str]) {
    let file = scratch_file(name);
    std::fs::write(&file, bytes).unwrap();
    let node = attacks_the_protocol_stream::task()
        .with_id(name)
        .with_input("script", script.to_owned())
        .with_input("file", file.clone());
    let msg = refused(name, node, expected);
    let _ = std::fs::remove_file(&file);
    assert!(msg.contains("process stopped"), "{name}: {msg}");
}

/// Runs the attack `node` and checks the verdict (see [`refuses`]); the error message.
fn refused(name: &str, node: Task, expected: &[&str]) -> String {
    let engine = WorkflowEngine::new();
    let mut wf = Workflow::builder(name);
    wf.add(node);
    let wf = wf.build();
    let started = Instant::now();
    let (result, growth) = peak_growth(|| engine.run(&wf, RunOptions::new()));
    let took = started.elapsed();
    let msg = result
        .expect_err("the attack failed the attempt")
        .to_string();
    eprintln!("{name}: refused in {took:?}, resident set +{growth} KiB: {msg}");
    assert!(msg.contains("refused"), "{name}: {msg}");
    for e in expected {
        assert!(msg.contains(e), "{name}: expected {e:?} in: {msg}");
    }
    assert!(
        growth < 256 * 1024,
        "{name}: the engine's resident set grew by {growth} KiB"
    );
    // The engine is unharmed.
    let report = engine
        .run(&workflow! { seven; }, RunOptions::new())
        .unwrap_or_else(|e| panic!("after {name}: {e}"));
    assert_eq!(report.result::<u8>("seven").unwrap(), 7);
    msg
}

#[task(handler = "process")]
fn seven() -> u8 {
    7
}

/// Serialises the memory-measuring tests (they sample the whole process's resident set).
static MEASURED: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_forged_outcome_written_into_the_protocol_stream_is_refused_for_its_nonce() {
    let _one = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    refuses(
        "forged_nonce",
        r#"cat "$2" > "$1""#,
        &forged_outcome(0x0bad, 99),
        &["another invocation", "nonce"],
    );
}

#[test]
fn oversized_lengths_written_into_the_protocol_stream_are_refused_before_reading() {
    let _one = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    refuses(
        "huge_lengths",
        r#"cat "$2" > "$1""#,
        &frame_header(16, 1 << 60),
        &["exceeds the limit"],
    );
    refuses(
        "huge_head",
        r#"cat "$2" > "$1""#,
        &frame_header(1 << 60, 0),
        &["exceeds the limit"],
    );
}

#[test]
fn a_gigabyte_flood_into_the_protocol_stream_is_refused_in_bounded_memory() {
    let _one = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    // Raw zeros: no frame at all.
    refuses(
        "zero_flood",
        r#"head -c 1073741824 /dev/zero > "$1""#,
        &[],
        &["expected a GFOUTCM3 frame"],
    );
    // A header announcing the largest head allowed, then a gigabyte.
    refuses(
        "head_flood",
        r#"{ cat "$2"; head -c 1073741824 /dev/zero; } > "$1""#,
        &frame_header(1 << 20, 0),
        &["the outcome head is corrupt"],
    );
}

#[task(handler = "process")]
fn floods_the_log() -> u8 {
    let status = Command::new("head")
        .args(["-c", "1073741824", "/dev/zero"])
        .status()
        .unwrap();
    assert!(status.success());
    7
}

#[test]
fn a_gigabyte_on_the_log_stream_costs_bounded_memory_and_changes_nothing() {
    let _one = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (report, growth) = peak_growth(|| {
        WorkflowEngine::new().run(&workflow! { floods_the_log; }, RunOptions::new())
    });
    eprintln!(
        "log flood: {:?}, resident set +{growth} KiB",
        started.elapsed()
    );
    assert_eq!(report.unwrap().result::<u8>("floods_the_log").unwrap(), 7);
    assert!(
        growth < 256 * 1024,
        "the engine's resident set grew by {growth} KiB"
    );
}

/// The attacks above, from a sandboxed container: the bytes are made inside (the host's files
/// are not visible there).
#[task(
    handler = "docker",
    image = "python:3.11-slim",
    sandbox = true,
    timeout = "60s"
)]
fn attacks_from_a_sandbox(kind: String) -> Result<u8, String> {
    let (script, bytes) = match kind.as_str() {
        "nonce" => (r#"cat "$2" > "$1""#, forged_outcome(0x0bad, 99)),
        "lengths" => (r#"cat "$2" > "$1""#, frame_header(16, 1 << 60)),
        "flood" => (r#"head -c 1073741824 /dev/zero > "$1""#, Vec::new()),
        other => return Err(format!("no attack {other}")),
    };
    let file = "/tmp/attack";
    std::fs::write(file, bytes).map_err(|e| e.to_string())?;
    attack_protocol_stream(script, file)
}

#[test]
fn attacks_on_the_protocol_stream_from_a_sandboxed_container_are_refused() {
    if skip_without_docker() {
        return;
    }
    let _one = MEASURED.lock().unwrap_or_else(|e| e.into_inner());
    for (kind, expected) in [
        ("nonce", "another invocation"),
        ("lengths", "exceeds the limit"),
        ("flood", "expected a GFOUTCM3 frame"),
    ] {
        let id = format!("sandboxed_{kind}_{}", std::process::id());
        let node = attacks_from_a_sandbox::task()
            .with_id(id.clone())
            .with_input("kind", kind.to_owned());
        let msg = refused(&id, node, &[expected, "stopped"]);
        let gone = within(Duration::from_secs(30), || {
            containers_with("graflow.task", &id).is_empty()
        });
        remove_containers("graflow.task", &id);
        assert!(gone.is_some(), "{id}: the container was left: {msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// 7: SIGINT and SIGTERM to a plain program

/// Sends `signal` to a plain program (`engine.run`, no signal handling of its own) whose docker
/// task runs; the program must exit promptly, its container already removed when it has.
fn a_signal_leaves_no_container(signal: libc::c_int, name: &str) {
    let id = format!("{name}_{}", std::process::id());
    let program = start_child("docker-sleeps", &id);
    a_signal_to_the_program_leaves_no_container(program, id, signal, name);
}

/// `a_signal_leaves_no_container` for a program already started, running the docker task `id`.
fn a_signal_to_the_program_leaves_no_container(
    mut program: std::process::Child,
    id: String,
    signal: libc::c_int,
    name: &str,
) {
    let running = within(Duration::from_secs(60), || {
        !running_with("graflow.task", &id).is_empty()
    });
    if running.is_none() {
        sigkill(&mut program);
        remove_containers("graflow.task", &id);
        panic!("the container never ran");
    }
    let sent = Instant::now();
    // SAFETY: a signal to our own, not yet reaped, child.
    let signalled = unsafe { libc::kill(program.id() as libc::pid_t, signal) };
    assert_eq!(signalled, 0);
    let mut status = None;
    let exited = within(PROMPTLY, || {
        status = program.try_wait().unwrap();
        status.is_some()
    });
    let left = containers_with("graflow.task", &id);
    if exited.is_none() {
        sigkill(&mut program);
    }
    let gone_after = within(Duration::from_secs(30), || {
        containers_with("graflow.task", &id).is_empty()
    });
    remove_containers("graflow.task", &id);
    let exited =
        exited.unwrap_or_else(|| panic!("the program still runs {PROMPTLY:?} after {name}"));
    eprintln!(
        "{name}: the program exited ({:?}) {exited:?} after the signal; container gone {:?} after the signal",
        status,
        gone_after.map(|_| sent.elapsed())
    );
    assert!(
        left.is_empty(),
        "{name}: the program exited ({status:?}) leaving its container {left:?} (gone {gone_after:?} later)"
    );
}

#[test]
fn sigint_to_a_plain_program_during_a_docker_task_leaves_no_container() {
    if skip_without_docker() {
        return;
    }
    a_signal_leaves_no_container(libc::SIGINT, "sigint");
}

#[test]
fn sigterm_to_a_plain_program_during_a_docker_task_leaves_no_container() {
    if skip_without_docker() {
        return;
    }
    a_signal_leaves_no_container(libc::SIGTERM, "sigterm");
}

/// A program started in the background by a shell (`program &`, as CI scripts do) inherits
/// SIGINT ignored; SIGTERM is still at its default, and still gets the clean-up.
#[test]
fn sigterm_to_a_plain_program_that_ignores_sigint_leaves_no_container() {
    use std::os::unix::process::CommandExt;
    if skip_without_docker() {
        return;
    }
    let name = "sigterm_sigint_ignored";
    let id = format!("{name}_{}", std::process::id());
    let mut command = Command::new(std::env::current_exe().unwrap());
    // SAFETY: signal() is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    let program = command
        .args([
            "child_program",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "docker-sleeps")
        .env(CHILD_ARG, &id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    a_signal_to_the_program_leaves_no_container(program, id, libc::SIGTERM, name);
}

#[task(handler = "process", timeout = "2s")]
fn starts_a_setsid_grandchild_and_hangs(pid_file: String) -> u8 {
    #[expect(
        clippy::zombie_processes,
        reason = "the grandchild is left running on purpose"
    )]
    let grandchild = spawn_setsid_sleep();
    write_pid(&pid_file, grandchild.id());
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// A grandchild that calls setsid has left the runner's process group, but the runner is its
/// subreaper: the handler kills the runner's whole tree on timeout.
#[test]
fn a_grandchild_that_leaves_the_process_group_is_gone_promptly_after_its_tasks_timeout() {
    assert_grandchild_gone_after(
        &workflow! { starts_a_setsid_grandchild_and_hangs; },
        &scratch_file("grandchild-setsid"),
        |err| {
            assert!(
                matches!(err.cause(), Some(AttemptError::TimedOut { .. })),
                "{err}"
            );
        },
        "(in a session of its own) still runs long after its task timed out",
    );
}

#[task(handler = "process")]
fn starts_a_setsid_grandchild_and_crashes(pid_file: String) -> u8 {
    let grandchild = spawn_setsid_sleep();
    write_pid(&pid_file, grandchild.id());
    // The runner dies at once: its subreaper role dies with it.
    std::process::abort();
}

/// A runner that crashes cannot kill its tree, and its orphans leave that tree; the handler
/// finds them by the marker they inherited.
#[test]
fn a_setsid_grandchild_of_a_crashed_runner_is_gone_promptly() {
    assert_grandchild_gone_after(
        &workflow! { starts_a_setsid_grandchild_and_crashes; },
        &scratch_file("grandchild-crash"),
        |err| assert!(err.to_string().contains("SIGABRT"), "{err}"),
        "of a crashed runner still runs long after the task failed",
    );
}

/// Runs `wf`, which must fail (`check` looks at the error), then waits up to `PROMPTLY` for the
/// grandchild whose pid the task wrote to `pid_file` to be gone (killing it if not, so a failed
/// test leaks nothing).
fn assert_grandchild_gone_after(
    wf: &Workflow,
    pid_file: &str,
    check: impl FnOnce(&RunError),
    what: &str,
) {
    let err = WorkflowEngine::new()
        .run(wf, RunOptions::new().param("pid_file", pid_file.to_owned()))
        .unwrap_err();
    check(&err);
    let grandchild = read_pid(pid_file, Duration::from_secs(1));
    let _ = std::fs::remove_file(pid_file);
    let took = within(PROMPTLY, || !alive(grandchild));
    if took.is_none() {
        // SAFETY: best-effort cleanup of the leaked grandchild.
        unsafe { libc::kill(grandchild as libc::pid_t, libc::SIGKILL) };
    }
    assert!(took.is_some(), "grandchild {grandchild} {what}");
}

/// `sleep 300` in a session of its own (it leaves the runner's process group).
fn spawn_setsid_sleep() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sleep");
    cmd.arg("300");
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    cmd.spawn().unwrap()
}
