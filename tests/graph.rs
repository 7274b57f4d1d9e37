//! Graph shapes and scheduling: every task runs once, after all its predecessors; every root
//! runs; independent tasks overlap.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use graflow::TaskStatus;
use graflow::prelude::*;

// ---------- diamond: a >> b, a >> c, b >> d, c >> d ----------

static DIAMOND_LOG: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn log(name: &'static str) {
    DIAMOND_LOG.lock().unwrap().push(name);
}

#[task]
fn a() -> u32 {
    log("a");
    1
}

#[task]
async fn b(a: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(30)).await;
    log("b");
    a + 10
}

#[task]
fn c(a: u32) -> u32 {
    log("c");
    a + 100
}

#[task]
fn d(b: u32, c: u32) -> u32 {
    log("d");
    b + c
}

#[tokio::test]
async fn diamond_runs_the_join_once_after_both_branches() {
    let wf = workflow! { name: "diamond"; a >> b; a >> c; b >> d; c >> d; };
    let report = WorkflowEngine::new()
        .execute(&wf, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(report.result::<u32>("d").unwrap(), 112);
    let log = DIAMOND_LOG.lock().unwrap().clone();
    assert_eq!(log.iter().filter(|n| **n == "d").count(), 1, "{log:?}");
    assert_eq!(log.first(), Some(&"a"));
    assert_eq!(log.last(), Some(&"d"));
    assert!(
        report
            .tasks()
            .all(|t| t.status == TaskStatus::Succeeded && t.attempts == 1)
    );
}

// ---------- fan-out / fan-in of 1,000 tasks ----------

#[task]
fn source() -> u64 {
    1_000
}

#[task]
fn member(source: u64, i: u64) -> u64 {
    source + i
}

#[task]
fn sink(ctx: &TaskContext) -> graflow::Result<u64> {
    let values = ctx.upstream::<u64>()?;
    assert_eq!(values.len(), ctx.upstream_ids().len());
    Ok(values.into_iter().sum())
}

#[tokio::test]
async fn fan_out_fan_in_of_a_thousand_members() {
    let mut wf = Workflow::builder("fan");
    let src = wf.add(source::task());
    let out = wf.add(sink::task());
    for i in 0..1_000u64 {
        let m = wf.add(
            member::task()
                .with_id(format!("member_{i}"))
                .with_input("i", i),
        );
        wf.edge(src, m).edge(m, out);
    }
    let wf = wf.build();
    let report = WorkflowEngine::new()
        .execute(&wf, RunOptions::new())
        .await
        .unwrap();
    let expected: u64 = (0..1_000u64).map(|i| 1_000 + i).sum();
    assert_eq!(report.result::<u64>("sink").unwrap(), expected);
    assert_eq!(report.tasks().len(), 1_002);
    let counts = report.counts();
    assert_eq!(counts.succeeded, 1_002);
    assert_eq!(counts.failed, 0);
    assert_eq!(counts.cancelled, 0);
    assert_eq!(counts.skipped, 0);
    // The sink started after every member ended.
    let sink_start = report.task("sink").unwrap().start.unwrap();
    for t in report.tasks().filter(|t| t.id.starts_with("member_")) {
        assert!(
            t.start.unwrap() + t.duration.unwrap() <= sink_start,
            "{}",
            t.id
        );
    }
}

// ---------- groups in workflow! ----------

static GROUP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[task]
fn g_start() -> u8 {
    GROUP_RUNS.fetch_add(1, Ordering::SeqCst);
    0
}
#[task]
fn g_x(ctx: &TaskContext) -> String {
    GROUP_RUNS.fetch_add(1, Ordering::SeqCst);
    ctx.task_id().to_owned()
}
#[task]
fn g_y() -> u8 {
    GROUP_RUNS.fetch_add(1, Ordering::SeqCst);
    2
}
#[task]
fn g_z() -> u8 {
    GROUP_RUNS.fetch_add(1, Ordering::SeqCst);
    3
}
#[task]
fn g_end(ctx: &TaskContext) -> Vec<String> {
    GROUP_RUNS.fetch_add(1, Ordering::SeqCst);
    ctx.upstream_ids().into_iter().map(str::to_owned).collect()
}
#[task]
fn g_side(g_start: u8) -> u8 {
    GROUP_RUNS.fetch_add(1, Ordering::SeqCst);
    g_start + 1
}

#[tokio::test]
async fn nested_groups_sequences_and_several_statements() {
    let wf = workflow! {
        name: "groups";
        g_start >> (g_x >> g_y | g_z) >> g_end;
        g_start >> g_side;
    };
    let edges: Vec<(String, String)> = wf
        .edges()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    for expected in [
        ("g_start", "g_x"),
        ("g_x", "g_y"),
        ("g_start", "g_z"),
        ("g_y", "g_end"),
        ("g_z", "g_end"),
        ("g_start", "g_side"),
    ] {
        assert!(
            edges.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {edges:?}"
        );
    }
    assert_eq!(edges.len(), 6, "{edges:?}");
    let report = WorkflowEngine::new()
        .execute(&wf, RunOptions::new())
        .await
        .unwrap();
    assert_eq!(GROUP_RUNS.load(Ordering::SeqCst), 6);
    let mut joined = report.result::<Vec<String>>("g_end").unwrap();
    joined.sort();
    assert_eq!(joined, vec!["g_y".to_owned(), "g_z".to_owned()]);
    assert_eq!(report.result::<String>("g_x").unwrap(), "g_x");
}

// ---------- every root runs ----------

#[task]
fn root_one() -> u8 {
    1
}
#[task]
fn root_two() -> u8 {
    2
}
#[task]
fn lonely() -> u8 {
    3
}

#[test]
fn every_root_runs_from_a_plain_main() {
    let wf = workflow! { root_one >> g_side_free; root_two >> g_side_free; lonely; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.workflow(), "workflow");
    assert_eq!(report.result::<u8>("root_one").unwrap(), 1);
    assert_eq!(report.result::<u8>("root_two").unwrap(), 2);
    assert_eq!(report.result::<u8>("lonely").unwrap(), 3);
    assert_eq!(report.result::<u8>("g_side_free").unwrap(), 3);
}

#[task]
fn g_side_free(root_one: u8, root_two: u8) -> u8 {
    root_one + root_two
}

// ---------- concurrency ----------

#[task]
async fn nap_a() -> u8 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    1
}
#[task]
async fn nap_b() -> u8 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    2
}
#[task]
fn block_a() -> u8 {
    std::thread::sleep(Duration::from_millis(300));
    1
}
#[task]
fn block_b() -> u8 {
    std::thread::sleep(Duration::from_millis(300));
    2
}

fn overlap(report: &RunReport, x: &str, y: &str) -> bool {
    let (x, y) = (report.task(x).unwrap(), report.task(y).unwrap());
    let (xs, ys) = (x.start.unwrap(), y.start.unwrap());
    xs < ys + y.duration.unwrap() && ys < xs + x.duration.unwrap()
}

#[tokio::test]
async fn two_sleeping_tasks_overlap() {
    let engine = WorkflowEngine::new().with_max_concurrency(2);
    let report = engine
        .execute(&workflow! { (nap_a | nap_b); }, RunOptions::new())
        .await
        .unwrap();
    assert!(overlap(&report, "nap_a", "nap_b"), "{report}");
    // Synchronous bodies too: they go to the blocking pool, not the scheduler's thread.
    let report = engine
        .execute(&workflow! { (block_a | block_b); }, RunOptions::new())
        .await
        .unwrap();
    assert!(overlap(&report, "block_a", "block_b"), "{report}");
}

#[task]
fn long_sync() -> u8 {
    std::thread::sleep(Duration::from_millis(600));
    0
}
#[task]
async fn quick_1() -> u8 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    1
}
#[task]
async fn quick_2(quick_1: u8) -> u8 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    quick_1 + 1
}
#[task]
async fn quick_3(quick_2: u8) -> u8 {
    quick_2 + 1
}

#[tokio::test(flavor = "current_thread")]
async fn a_long_synchronous_body_does_not_stall_ready_tasks() {
    let wf = workflow! { long_sync; quick_1 >> quick_2 >> quick_3; };
    let report = WorkflowEngine::new()
        .execute(&wf, RunOptions::new())
        .await
        .unwrap();
    let long = report.task("long_sync").unwrap();
    let last = report.task("quick_3").unwrap();
    // Even on a single-threaded runtime, the chain ends while the long body still runs.
    assert!(
        last.start.unwrap() + last.duration.unwrap() < long.start.unwrap() + long.duration.unwrap(),
        "{report}"
    );
    assert_eq!(report.result::<u8>("quick_3").unwrap(), 3);
}

// ---------- structure errors ----------

#[task]
fn cyc_a() -> u8 {
    0
}
#[task]
fn cyc_b() -> u8 {
    0
}
#[task]
fn cyc_c() -> u8 {
    0
}

#[test]
fn a_cycle_built_at_run_time_is_an_error_naming_its_path() {
    let mut wf = Workflow::builder("loop");
    let a = wf.add(cyc_a::task());
    let b = wf.add(cyc_b::task());
    let c = wf.add(cyc_c::task());
    wf.chain(&[a, b, c]).edge(c, a);
    let err = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, RunError::Invalid { problems, .. } if matches!(problems[0], graflow::Problem::Cycle { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("cyc_a >> cyc_b >> cyc_c >> cyc_a")
            || msg.contains("cyc_b >> cyc_c >> cyc_a >> cyc_b")
            || msg.contains("cyc_c >> cyc_a >> cyc_b >> cyc_c"),
        "{msg}"
    );
}

#[test]
fn duplicate_ids_and_empty_workflows_fail_validation() {
    let mut wf = Workflow::builder("dups");
    wf.add(cyc_a::task());
    wf.add(cyc_b::task().with_id("cyc_a"));
    let err = WorkflowEngine::new().validate(&wf.build()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("task id 'cyc_a' is used twice"), "{msg}");
    assert!(
        msg.contains("graph::cyc_a") && msg.contains("graph::cyc_b"),
        "{msg}"
    );

    let err = WorkflowEngine::new()
        .run(&Workflow::builder("nothing").build(), RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("workflow 'nothing' has no task"),
        "{err}"
    );
}

#[tokio::test]
async fn run_inside_a_runtime_is_a_clear_error() {
    let err = WorkflowEngine::new()
        .run(&workflow! { cyc_a; }, RunOptions::new())
        .unwrap_err();
    assert!(matches!(err, RunError::NestedRuntime), "{err}");
    assert!(
        err.to_string()
            .contains("engine.execute(&workflow, RunOptions::new()).await")
    );
}

#[test]
fn the_binary_lists_its_tasks() {
    let names: Vec<&str> = graflow::tasks().iter().map(|d| d.name()).collect();
    assert!(names.contains(&"graph::member"), "{names:?}");
    let def = graflow::task_named("graph::member").unwrap();
    let params: Vec<(&str, &str)> = def.params().collect();
    assert_eq!(params, [("source", "u64"), ("i", "u64")]);
    assert_eq!(def.output_type(), "u64");
    assert_eq!(def.default_id(), "member");
    assert_eq!(member::info().name(), "graph::member");
    assert_eq!(member::task().info().name(), "graph::member");
    assert!(graflow::task_named("graph::b").unwrap().is_async());
    // The task stays a plain function.
    assert_eq!(member(1, 2), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_can_be_spawned_and_its_error_converts_to_anyhow() -> anyhow::Result<()> {
    let engine = WorkflowEngine::new();
    let wf = workflow! { (root_one | root_two) >> g_side_free; };
    // The run's future is Send: it can move to any worker.
    let report =
        tokio::spawn(async move { engine.execute(&wf, RunOptions::new()).await }).await??;
    assert_eq!(report.result::<u8>("g_side_free")?, 3);
    Ok(())
}
