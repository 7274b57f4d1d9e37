//! Checkpoints and resume: what a checkpoint keeps (completed tasks, results, channel, tasks
//! added while running, iteration inputs), resuming after a failure, after SIGKILL of the
//! program, and refusing checkpoints of other workflows or builds, and corrupt files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use graflow::prelude::*;
use graflow::{Checkpoint, CheckpointError, TaskStatus};

mod common;

graflow::enable_test_runner!();

const CHILD: &str = "GRAFLOW_TEST_CHECKPOINT_CHILD";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graflow-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Appends `id` to the log file named in the channel (one line per run of a task).
fn log_run(log: &str, id: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    file.write_all(format!("{id}\n").as_bytes()).unwrap();
}

fn logged(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[task]
fn step(n: u64, log: String, ctx: &TaskContext) -> u64 {
    log_run(&log, ctx.task_id());
    std::thread::sleep(Duration::from_millis(
        ctx.channel()
            .try_get::<u64>("pause_ms")
            .ok()
            .flatten()
            .unwrap_or(0),
    ));
    n
}

/// Adds three tasks at run time; the chain after it waits for them.
#[task]
fn fan(log: String, ctx: &TaskContext) -> graflow::Result<u64> {
    log_run(&log, ctx.task_id());
    for i in 0..3u64 {
        ctx.next_task(
            step::task()
                .with_id(format!("added_{i}"))
                .with_input("n", 100 + i),
        )?;
    }
    Ok(0)
}

#[task]
fn sum_all(log: String, ctx: &TaskContext) -> graflow::Result<u64> {
    log_run(&log, ctx.task_id());
    Ok(ctx.upstream::<u64>()?.into_iter().sum())
}

/// step_0 >> ... >> step_9 >> fan >> [added_0..2] >> step_10 >> ... >> step_19 >> sum_all
fn long_chain() -> Workflow {
    let mut wf = Workflow::builder("long-chain");
    let mut previous = None;
    for i in 0..20u64 {
        let node = wf.add(step::task().with_id(format!("step_{i}")).with_input("n", i));
        if let Some(p) = previous {
            wf.edge(p, node);
        }
        previous = Some(node);
        if i == 9 {
            let f = wf.add(fan::task());
            wf.edge(node, f);
            previous = Some(f);
        }
    }
    let sink = wf.add(sum_all::task());
    wf.edge(previous.unwrap(), sink);
    wf.build()
}

fn all_ids(wf: &Workflow) -> Vec<String> {
    let mut ids: Vec<String> = wf.tasks().iter().map(|t| t.id().to_owned()).collect();
    ids.extend((0..3).map(|i| format!("added_{i}")));
    ids.sort();
    ids
}

/// The child program: runs the long chain with a checkpoint after every task, slowly.
#[test]
fn child_program() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let channel = Channel::new()
        .with("log", dir.join("runs.log").display().to_string())
        .with("pause_ms", 40u64);
    let options = RunOptions::new()
        .checkpoint(dir.join("run.ckpt"))
        .checkpoint_every(1);
    let result = WorkflowEngine::new().run(&long_chain(), options.clone().channel(channel));
    panic!("the run ended before the test killed it: {result:?}");
}

#[test]
fn after_sigkill_mid_run_a_resume_runs_exactly_the_tasks_the_checkpoint_does_not_have() {
    let dir = temp("sigkill");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("runs.log");
    let checkpoint = dir.join("run.ckpt");
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_program",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Past the tasks added at run time, before the end.
    assert!(
        common::within(Duration::from_secs(60), || logged(&log).len() >= 17).is_some(),
        "the child program did not get far: {:?}",
        logged(&log)
    );
    // SAFETY: a signal to our own, not yet reaped, child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
        0
    );
    child.wait().unwrap();
    let before = logged(&log);

    let wf = long_chain();
    let saved = Checkpoint::load(&checkpoint).expect("a whole checkpoint survives SIGKILL");
    assert!(!saved.is_final());
    let mut done = saved.completed(&wf).unwrap();
    done.sort();
    assert!(done.len() >= 15, "{done:?}");
    assert!(
        done.contains(&"added_1".to_owned()),
        "the tasks added at run time are kept: {done:?}"
    );
    let mut expected: Vec<String> = all_ids(&wf)
        .into_iter()
        .filter(|id| !done.contains(id))
        .collect();
    expected.sort();

    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new().resume_from(&checkpoint))
        .unwrap();
    assert!(report.resumed());
    let mut resumed: Vec<String> = logged(&log)[before.len()..].to_vec();
    resumed.sort();
    assert_eq!(resumed, expected, "exactly the remaining tasks ran again");
    // Every task ran; none that the checkpoint had ran twice.
    let mut all: Vec<String> = before.iter().chain(&resumed).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all, all_ids(&wf));
    // The chain's result: the sink sums step_19 only (its one predecessor).
    assert_eq!(report.result::<u64>("sum_all").unwrap(), 19);
    assert_eq!(report.result::<u64>("added_2").unwrap(), 102);
    assert!(report.tasks().all(|t| t.status == TaskStatus::Succeeded));
    let last = Checkpoint::load(&checkpoint).unwrap();
    assert!(last.is_final());
    assert_eq!(last.completed(&wf).unwrap().len(), all_ids(&wf).len());
    // A finished run resumes to its report at once: nothing runs again.
    let again = WorkflowEngine::new()
        .run(&wf, RunOptions::new().resume_from(&checkpoint))
        .unwrap();
    assert_eq!(logged(&log).len(), before.len() + resumed.len());
    assert_eq!(again.result::<u64>("sum_all").unwrap(), 19);
}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);
static BEFORE_FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(writes = ["seen"])]
fn before_flaky(ctx: &TaskContext) -> u32 {
    BEFORE_FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
    ctx.channel().set("seen", "before".to_owned());
    5
}

#[task]
fn flaky(before_flaky: u32) -> Result<u32, String> {
    if FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("the database is down".to_owned());
    }
    Ok(before_flaky * 2)
}

#[task]
fn after_flaky(flaky: u32, seen: String) -> String {
    format!("{seen}:{flaky}")
}

#[test]
fn a_failed_run_resumes_from_the_checkpoint_written_when_it_failed() {
    let path = temp("failed.ckpt");
    let wf = workflow! { name: "flaky"; before_flaky >> flaky >> after_flaky; };
    let options = RunOptions::new().checkpoint(&path);
    let engine = WorkflowEngine::new();
    let error = engine.run(&wf, options.clone()).unwrap_err();
    assert_eq!(error.failure().unwrap().task, "flaky");
    let saved = Checkpoint::load(&path).unwrap();
    assert!(saved.is_final());
    assert_eq!(saved.completed(&wf).unwrap(), ["before_flaky"]);

    let report = engine
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    assert_eq!(report.result::<String>("after_flaky").unwrap(), "before:10");
    assert_eq!(
        BEFORE_FLAKY_RUNS.load(Ordering::SeqCst),
        1,
        "done tasks do not run again"
    );
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(
        report.task("before_flaky").unwrap().status,
        TaskStatus::Succeeded
    );
}

static ITERATIONS: AtomicU32 = AtomicU32::new(0);

#[task(max_cycles = 20)]
fn iterate_then_fail_once(value: u64, ctx: &TaskContext) -> graflow::Result<u64> {
    let run = ITERATIONS.fetch_add(1, Ordering::SeqCst);
    if run == 3 {
        return Err(graflow::Error::from(graflow::ControlError::Unreadable {
            task: "x".into(),
            message: "a crash in the fourth run".into(),
        }));
    }
    if value < 40 {
        ctx.next_iteration().with("value", value + 10).request()?;
    }
    Ok(value)
}

#[test]
fn a_resume_continues_an_iteration_with_its_inputs_and_run_count() {
    let path = temp("iterate.ckpt");
    let wf = workflow! { name: "iterate"; iterate_then_fail_once; };
    let engine = WorkflowEngine::new();
    let error = engine
        .run(
            &wf,
            RunOptions::new().checkpoint(&path).param("value", 0u64),
        )
        .unwrap_err();
    assert_eq!(
        error
            .report()
            .unwrap()
            .task("iterate_then_fail_once")
            .unwrap()
            .runs,
        4
    );
    let report = engine
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    // Runs 1-3 took 0, 10, 20; run 4 (input 30) failed; resumed it runs with 30, then 40.
    assert_eq!(report.result::<u64>("iterate_then_fail_once").unwrap(), 40);
    // Every start counts, the failed one included.
    assert_eq!(report.task("iterate_then_fail_once").unwrap().runs, 6);
    assert_eq!(ITERATIONS.load(Ordering::SeqCst), 6);
}

#[task]
fn asks_for_checkpoint(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.checkpoint()?;
    Ok(1)
}

#[task]
fn reads_checkpoint(asks_for_checkpoint: u32, path: String) -> graflow::Result<Vec<String>> {
    let wf = workflow! { name: "asks"; asks_for_checkpoint >> reads_checkpoint; };
    let _ = asks_for_checkpoint;
    Ok(Checkpoint::load(&path)?.completed(&wf)?)
}

#[test]
fn a_task_asks_for_a_checkpoint_once_it_completes() {
    let path = temp("asked.ckpt");
    let wf = workflow! { name: "asks"; asks_for_checkpoint >> reads_checkpoint; };
    let report = WorkflowEngine::new()
        .run(
            &wf,
            RunOptions::new()
                .checkpoint(&path)
                .param("path", path.display().to_string()),
        )
        .unwrap();
    assert_eq!(
        report.result::<Vec<String>>("reads_checkpoint").unwrap(),
        ["asks_for_checkpoint"]
    );
    // Without a checkpoint path the request is refused, with the way to fix it.
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new().param("path", String::new()))
        .unwrap_err();
    assert!(
        error.to_string().contains("asked for a checkpoint, but this run writes none; run it with RunOptions::new().checkpoint(path)"),
        "{error}"
    );
}

#[test]
fn checkpoints_of_other_workflows_builds_and_corrupt_files_are_refused_clearly() {
    let path = temp("refuse.ckpt");
    let wf = workflow! { name: "flaky-other"; before_flaky >> after_flaky; };
    let channel = Channel::new().with("flaky", 1u32);
    let engine = WorkflowEngine::new();
    engine
        .run(&wf, RunOptions::new().checkpoint(&path).channel(channel))
        .unwrap();

    // Another workflow, and the same name with another shape.
    let other = workflow! { name: "other"; before_flaky; };
    let error = engine
        .run(&other, RunOptions::new().resume_from(&path))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RunError::Checkpoint(CheckpointError::OtherWorkflow { .. })
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("belongs to workflow 'flaky-other'"),
        "{error}"
    );
    let changed = workflow! { name: "flaky-other"; before_flaky; after_flaky; };
    let error = engine
        .run(&changed, RunOptions::new().resume_from(&path))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RunError::Checkpoint(CheckpointError::OtherWorkflow { .. })
        ),
        "{error}"
    );

    let bytes = std::fs::read(&path).unwrap();
    // Another build: its build id (the first field of the head) changed, checksum recomputed.
    let mut other_build = bytes.clone();
    let at = 19 + 4 + 4 + 8 + 1;
    other_build[at] = if other_build[at] == b'a' { b'b' } else { b'a' };
    let end = other_build.len() - 4;
    let sum = common::crc32(&other_build[35..end]);
    other_build[end..].copy_from_slice(&sum.to_le_bytes());
    let forged = temp("other-build.ckpt");
    std::fs::write(&forged, &other_build).unwrap();
    let error = engine
        .run(&wf, RunOptions::new().resume_from(&forged))
        .unwrap_err();
    assert!(
        matches!(
            &error,
            RunError::Checkpoint(CheckpointError::OtherBuild { .. })
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("another build of the program"),
        "{error}"
    );

    // Corrupt files: cut, flipped, empty, garbage, appended to. Never a panic.
    let corrupt = temp("corrupt.ckpt");
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not a checkpoint at all".to_vec(),
        bytes[..bytes.len() / 2].to_vec(),
        [bytes.clone(), b"x".to_vec()].concat(),
    ];
    for i in (0..bytes.len()).step_by(7) {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x5a;
        cases.push(flipped);
    }
    for case in cases {
        std::fs::write(&corrupt, &case).unwrap();
        let error = engine
            .run(&wf, RunOptions::new().resume_from(&corrupt))
            .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(
                &error,
                RunError::Checkpoint(
                    CheckpointError::Corrupt { .. }
                        | CheckpointError::Format { .. }
                        | CheckpointError::OtherBuild { .. }
                        | CheckpointError::OtherWorkflow { .. }
                )
            ),
            "{text}"
        );
        assert!(text.contains(&corrupt.display().to_string()), "{text}");
    }
    std::fs::write(&corrupt, &bytes[..10]).unwrap();
    let text = engine
        .run(&wf, RunOptions::new().resume_from(&corrupt))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("is corrupt: it does not start like a graflow checkpoint"),
        "{text}"
    );
    let missing = engine
        .run(&wf, RunOptions::new().resume_from(temp("missing.ckpt")))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("could not read checkpoint"), "{missing}");
}

#[task]
fn numbered(n: u64) -> u64 {
    n
}

#[test]
fn checkpoint_every_writes_after_every_n_finished_tasks() {
    let path = temp("every.ckpt");
    let mut wf = Workflow::builder("every");
    let nodes: Vec<_> = (0..10u64)
        .map(|n| wf.add(numbered::task().with_id(format!("n{n}")).with_input("n", n)))
        .collect();
    wf.chain(&nodes);
    let wf = wf.build();
    WorkflowEngine::new()
        .run(&wf, RunOptions::new().checkpoint(&path).checkpoint_every(3))
        .unwrap();
    // After tasks 3, 6, 9, and the last one when the run ended.
    assert_eq!(Checkpoint::load(&path).unwrap().sequence(), 4);
}

#[task]
fn cancels(ctx: &TaskContext) -> u32 {
    ctx.cancel("stop here");
    1
}

#[test]
fn a_cancelled_run_writes_its_checkpoint_and_interval_zero_writes_after_every_task() {
    let path = temp("cancelled.ckpt");
    let wf = workflow! { name: "cancels"; numbered >> cancels; };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new().checkpoint(&path).param("n", 1u64))
        .unwrap_err();
    assert!(matches!(error, RunError::Cancelled(_)), "{error}");
    let saved = Checkpoint::load(&path).unwrap();
    assert!(saved.is_final());
    assert_eq!(saved.completed(&wf).unwrap(), ["numbered"]);

    let path = temp("interval.ckpt");
    let mut wf = Workflow::builder("interval");
    let nodes: Vec<_> = (0..5u64)
        .map(|n| wf.add(numbered::task().with_id(format!("n{n}")).with_input("n", n)))
        .collect();
    wf.chain(&nodes);
    WorkflowEngine::new()
        .run(
            &wf.build(),
            RunOptions::new()
                .checkpoint(&path)
                .checkpoint_interval(Duration::ZERO)
                .checkpoint_durable(false),
        )
        .unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().sequence(), 6);
}

static AFTER_STOP: AtomicU32 = AtomicU32::new(0);

#[task]
fn stopper(ctx: &TaskContext) -> u32 {
    ctx.terminate("enough");
    1
}

#[task]
fn after_stop(stopper: u32) -> u32 {
    AFTER_STOP.fetch_add(1, Ordering::SeqCst);
    stopper + 1
}

#[test]
fn a_run_ended_early_resumes_to_its_report_without_running_what_it_skipped() {
    let wf = workflow! { name: "stops"; stopper >> after_stop; };
    let path = temp("terminated.ckpt");
    let engine = WorkflowEngine::new();
    engine
        .run(&wf, RunOptions::new().checkpoint(&path))
        .unwrap();
    let report = engine
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    assert_eq!(AFTER_STOP.load(Ordering::SeqCst), 0);
    assert_eq!(report.terminated(), Some(("stopper", "enough")));
    assert_eq!(
        report.task("after_stop").unwrap().status,
        TaskStatus::Skipped
    );
}

static B_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
static X_RUNS: AtomicU32 = AtomicU32::new(0);

#[task]
fn b_member() -> Result<u32, String> {
    if B_FAILS.load(Ordering::SeqCst) {
        Err("b fails".to_owned())
    } else {
        Ok(1)
    }
}

#[task]
fn x_after_b(ctx: &TaskContext) -> graflow::Result<u32> {
    X_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(ctx.upstream::<u32>()?.len() as u32)
}

#[task]
async fn c_member() -> Result<u32, String> {
    graflow::tokio::time::sleep(Duration::from_millis(200)).await;
    if B_FAILS.load(Ordering::SeqCst) {
        Err("c fails".to_owned())
    } else {
        Ok(3)
    }
}

#[test]
fn resuming_a_failed_group_runs_its_failed_members_and_what_follows_them_once() {
    let mut wf = Workflow::builder("group-resume");
    let b = wf.add(b_member::task());
    let x = wf.add(x_after_b::task());
    let c = wf.add(c_member::task());
    wf.edge(b, x);
    wf.group(
        "g",
        &[b, x, c],
        graflow::GroupPolicy::critical(["c_member"]),
    );
    let wf = wf.build();
    let engine = WorkflowEngine::new();
    let path = temp("group-resume.ckpt");
    let error = engine
        .run(&wf, RunOptions::new().checkpoint(&path))
        .unwrap_err();
    assert!(matches!(error, RunError::GroupFailed(_)), "{error}");
    // x ran after b's tolerated failure, seeing no result of it.
    assert_eq!(X_RUNS.load(Ordering::SeqCst), 1);
    B_FAILS.store(false, Ordering::SeqCst);
    let report = engine
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    // b runs again, so x (after it) runs again, with b's result this time; c runs again.
    assert_eq!(X_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(report.result::<u32>("x_after_b").unwrap(), 1);
    assert_eq!(report.result::<u32>("c_member").unwrap(), 3);
    assert!(
        matches!(&report.groups()[0].verdict, Some(Ok(_))),
        "{report}"
    );
}

/// Copies the run's checkpoint in its third run (one written between two iterations).
#[task(max_cycles = 20)]
fn iterates_and_copies(value: u64, ckpt: String, ctx: &TaskContext) -> graflow::Result<u64> {
    if ctx.cycle() == 3 {
        std::fs::copy(&ckpt, format!("{ckpt}.copy")).unwrap();
    }
    if value < 40 {
        ctx.next_iteration().with("value", value + 10).request()?;
    }
    Ok(value)
}

#[test]
fn a_checkpoint_written_between_two_iterations_resumes_the_iteration() {
    let path = temp("between.ckpt");
    let wf = workflow! { name: "between"; iterates_and_copies; };
    let engine = WorkflowEngine::new();
    let report = engine
        .run(
            &wf,
            RunOptions::new()
                .checkpoint(&path)
                .checkpoint_every(1)
                .param("value", 0u64)
                .param("ckpt", path.display().to_string()),
        )
        .unwrap();
    assert_eq!(report.result::<u64>("iterates_and_copies").unwrap(), 40);
    // The copy was written after run 2 asked for run 3 (value 20): resumed, the task runs
    // again from there, with that input.
    let copy = PathBuf::from(format!("{}.copy", path.display()));
    let saved = Checkpoint::load(&copy).unwrap();
    assert!(saved.completed(&wf).unwrap().is_empty());
    let resumed = engine
        .run(&wf, RunOptions::new().resume_from(&copy))
        .unwrap();
    assert_eq!(resumed.result::<u64>("iterates_and_copies").unwrap(), 40);
    // Runs 1-2 before the copy, then 3, 4, 5 (inputs 20, 30, 40).
    assert_eq!(resumed.task("iterates_and_copies").unwrap().runs, 5);
}

static RETRIED_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// The body of `iterating_flaky`: its first call returns 1, its second fails after 300 ms,
/// its third returns 2.
async fn iterates_then_retries() -> Result<u64, String> {
    match RETRIED_ATTEMPTS.fetch_add(1, Ordering::SeqCst) {
        0 => Ok(1),
        1 => {
            graflow::tokio::time::sleep(Duration::from_millis(300)).await;
            Err("flaky".into())
        }
        _ => Ok(2),
    }
}

#[task]
async fn finishes_at_100ms() -> u64 {
    graflow::tokio::time::sleep(Duration::from_millis(100)).await;
    1
}

#[task]
async fn finishes_at_500ms() -> u64 {
    graflow::tokio::time::sleep(Duration::from_millis(500)).await;
    2
}

/// Run 1 asks for an iteration; run 2 fails once and is retried 800 ms later, while the other
/// tasks finish and write checkpoints.
#[task(max_cycles = 5, retries = 2, retry_delay = "800ms")]
async fn iterating_flaky(ctx: &TaskContext) -> Result<u64, String> {
    let value = iterates_then_retries().await?;
    if value == 1 {
        ctx.next_iteration().request().map_err(|e| e.to_string())?;
    }
    Ok(value)
}

#[test]
fn checkpoints_written_while_a_task_waits_to_retry_match_the_run() {
    // Debug builds check every checkpoint's bytes against a full encoding of the run.
    let path = temp("retry-wait.ckpt");
    let wf =
        workflow! { name: "retry-wait"; iterating_flaky; finishes_at_100ms; finishes_at_500ms; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new().checkpoint(&path).checkpoint_every(1))
        .unwrap();
    assert_eq!(report.result::<u64>("iterating_flaky").unwrap(), 2);
    assert_eq!(RETRIED_ATTEMPTS.load(Ordering::SeqCst), 3);
}

#[test]
fn temporary_files_a_killed_program_left_are_removed_by_the_next_run() {
    let path = temp("leftover.ckpt");
    let dir = path.parent().unwrap();
    // A write interrupted by SIGKILL: pid 4194303 is above any pid this machine hands out.
    let dead = dir.join(".leftover.ckpt.4194303.0.tmp");
    let ours = dir.join(format!(".leftover.ckpt.{}.999.tmp", std::process::id()));
    let other = dir.join(".other.ckpt.4194303.0.tmp");
    for file in [&dead, &ours, &other] {
        std::fs::write(file, b"half a checkpoint").unwrap();
    }
    WorkflowEngine::new()
        .run(
            &workflow! { name: "leftover"; numbered; },
            RunOptions::new().checkpoint(&path).param("n", 1u64),
        )
        .unwrap();
    assert!(!dead.exists(), "a dead program's temporary file is removed");
    assert!(ours.exists(), "a living program's is left alone");
    assert!(other.exists(), "another checkpoint's is left alone");
    let _ = std::fs::remove_file(ours);
    let _ = std::fs::remove_file(other);
}

static GATE_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static GATE_WAITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits until the test opens the gate.
#[task]
fn gate() -> u32 {
    GATE_WAITING.store(true, Ordering::SeqCst);
    while !GATE_OPEN.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    1
}

#[task]
fn after_gate(gate: u32) -> u32 {
    gate + 1
}

/// Two programs running one run would run its tasks twice: while a run holds its checkpoint,
/// a resume of it, and a fresh run writing to it, are refused and name the holder; once it
/// ends, the checkpoint resumes.
#[test]
fn a_checkpoint_in_use_by_a_run_cannot_be_resumed_or_written_by_another() {
    let path = temp("locked.ckpt");
    let wf = workflow! { name: "locked"; gate >> after_gate; };
    let running = {
        let (wf, path) = (wf.clone(), path.clone());
        std::thread::spawn(move || {
            WorkflowEngine::new().run(&wf, RunOptions::new().checkpoint(&path))
        })
    };
    while !GATE_WAITING.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let me = format!("pid {}", std::process::id());
    match WorkflowEngine::new().run(&wf, RunOptions::new().resume_from(&path)) {
        Err(RunError::Checkpoint(error @ CheckpointError::Locked { .. })) => {
            let text = error.to_string();
            assert!(
                text.contains("is in use by another run") && text.contains(&me),
                "{text}"
            );
        }
        other => panic!("expected a locked checkpoint, got {other:?}"),
    }
    let fresh = WorkflowEngine::new().run(&wf, RunOptions::new().checkpoint(&path));
    assert!(
        matches!(
            fresh,
            Err(RunError::Checkpoint(CheckpointError::Locked { .. }))
        ),
        "{fresh:?}"
    );
    GATE_OPEN.store(true, Ordering::SeqCst);
    let report = running.join().unwrap().unwrap();
    assert_eq!(report.result::<u32>("after_gate").unwrap(), 2);
    // Released at the end of the run: the finished run's checkpoint resumes (to its report).
    let again = WorkflowEngine::new()
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    assert_eq!(again.result::<u32>("after_gate").unwrap(), 2);
}

/// The lock of a program killed with SIGKILL is released by the system: the next resume takes
/// it over, with no stale lock to clean by hand.
#[test]
fn the_lock_of_a_killed_program_is_taken_over() {
    let (wf, path) = (
        workflow! { name: "taken-over"; step; },
        temp("taken-over.ckpt"),
    );
    let log = temp("taken-over.log");
    WorkflowEngine::new()
        .run(
            &wf,
            RunOptions::new()
                .checkpoint(&path)
                .param("n", 1u64)
                .param("log", log.display().to_string()),
        )
        .unwrap();
    // Another program takes the lock the way graflow does (flock on `.NAME.lock`) and says
    // who it is.
    let lock = path.with_file_name(".taken-over.ckpt.lock");
    let mut holder = Command::new("bash")
        .arg("-c")
        .arg(r#"exec 9<>"$0"; flock -x 9; : > "$0"; printf 'pid %s on elsewhere' $$ >&9; echo locked; exec sleep 600"#)
        .arg(&lock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    match WorkflowEngine::new().run(&wf, RunOptions::new().resume_from(&path)) {
        Err(RunError::Checkpoint(CheckpointError::Locked { holder: who, .. })) => {
            assert_eq!(who, format!("pid {} on elsewhere", holder.id()));
        }
        other => panic!("expected a locked checkpoint, got {other:?}"),
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    assert_eq!(report.result::<u64>("step").unwrap(), 1);
}
