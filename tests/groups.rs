//! Parallel-group policies: strict, best_effort, at_least(n), critical(...), custom; in
//! `workflow!` and the builder; what the report says of each group.

use graflow::prelude::*;
use graflow::{CustomGroupPolicy, GroupOutcome, TaskStatus};

graflow::enable_test_runner!();

#[task]
fn start() -> u32 {
    1
}

#[task]
fn good_a(start: u32) -> u32 {
    start + 10
}

#[task]
fn good_b(start: u32) -> u32 {
    start + 20
}

#[task]
fn broken(start: u32) -> Result<u32, String> {
    Err(format!("broken after {start}"))
}

#[task]
fn also_broken() -> Result<u32, String> {
    Err("also broken".to_owned())
}

#[task]
fn gather(ctx: &TaskContext) -> graflow::Result<(Vec<String>, u32)> {
    let ids = ctx.upstream_ids().into_iter().map(str::to_owned).collect();
    Ok((ids, ctx.upstream::<u32>()?.into_iter().sum()))
}

#[test]
fn strict_is_the_default_and_fails_the_run_at_the_first_failure() {
    let wf = workflow! { start >> (good_a | broken) >> gather; };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let failure = error.failure().expect("a task failure");
    assert_eq!(failure.task, "broken");
    let report = error.report().unwrap();
    assert_eq!(report.task("gather").unwrap().status, TaskStatus::Skipped);
    let group = report
        .group("(good_a | broken)")
        .expect("the group is reported");
    assert_eq!(group.policy, "strict");
    assert_eq!(group.failed[0].0, "broken");
    assert!(matches!(&group.verdict, Some(Err(why)) if why.contains("member 'broken' failed")));
}

#[test]
fn best_effort_tolerates_failures_and_the_successor_sees_the_results_that_exist() {
    let wf = workflow! { start >> (good_a | broken | good_b).policy(best_effort) >> gather; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .expect("best_effort passes");
    assert!(report.succeeded());
    let (ids, sum) = report.result::<(Vec<String>, u32)>("gather").unwrap();
    assert_eq!(ids, ["good_a", "good_b"]);
    assert_eq!(sum, 11 + 21);
    let broken = report.task("broken").unwrap();
    assert_eq!(broken.status, TaskStatus::Failed);
    assert!(broken.tolerated);
    let group = &report.groups()[0];
    assert_eq!(group.policy, "best_effort");
    assert_eq!(group.failed.len(), 1);
    assert!(
        group.failed[0].1.contains("broken after 1"),
        "{:?}",
        group.failed
    );
    assert!(matches!(&group.verdict, Some(Ok(why)) if why.contains("1 of 3 members failed")));
    let text = report.to_string();
    assert!(text.contains("failed (tolerated)"), "{text}");
    assert!(
        text.contains("group '(good_a | broken | good_b)' (best_effort): passed"),
        "{text}"
    );
}

#[test]
fn at_least_passes_with_enough_successes_and_fails_as_soon_as_they_are_out_of_reach() {
    let wf = workflow! { start >> (good_a | broken | good_b).policy(at_least(2)) >> gather; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .expect("2 of 3 succeed");
    assert!(
        matches!(&report.groups()[0].verdict, Some(Ok(why)) if why.contains("2 of 3 members succeeded"))
    );

    let wf = workflow! {
        name: "too-few";
        start >> (good_a | broken | also_broken).name("mirrors").policy(at_least(2)) >> gather;
    };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let RunError::GroupFailed(failure) = &error else {
        panic!("expected a group failure, got {error:?}");
    };
    assert_eq!(failure.group, "mirrors");
    assert_eq!(failure.policy, "at_least(2)");
    assert!(
        failure.reason.contains("fewer than the 2 required"),
        "{}",
        failure.reason
    );
    assert_eq!(failure.failed.len(), 2);
    let message = error.to_string();
    assert!(
        message.contains("group 'mirrors' failed its policy at_least(2)"),
        "{message}"
    );
    assert!(message.contains("task 'also_broken': "), "{message}");
    assert_eq!(
        failure.report.task("gather").unwrap().status,
        TaskStatus::Skipped
    );
}

#[test]
fn critical_members_must_succeed_the_others_may_fail() {
    let wf = workflow! { start >> (good_a | broken).policy(critical(good_a)) >> gather; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .expect("the critical member succeeded");
    assert_eq!(report.result::<(Vec<String>, u32)>("gather").unwrap().1, 11);

    let wf = workflow! { start >> (good_a | broken).policy(critical(broken)) >> gather; };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let RunError::GroupFailed(failure) = &error else {
        panic!("expected a group failure, got {error:?}");
    };
    assert_eq!(failure.reason, "critical member 'broken' failed");
}

/// Passes when at most a quarter of the members failed.
struct QuarterMayFail;

impl CustomGroupPolicy for QuarterMayFail {
    fn evaluate(&self, outcome: &GroupOutcome<'_>) -> Result<String, String> {
        let failed = outcome.failed.len();
        if failed * 4 <= outcome.members {
            Ok(format!("{failed} of {} failed", outcome.members))
        } else {
            Err(format!(
                "{failed} of {} failed, more than a quarter",
                outcome.members
            ))
        }
    }
}

#[task]
fn shard(n: u32) -> Result<u32, String> {
    if n % 4 == 3 {
        Err(format!("shard {n} lost"))
    } else {
        Ok(n)
    }
}

#[test]
fn a_custom_policy_decides_in_the_builder_too() {
    let build = |shards: &[u32]| {
        let mut wf = Workflow::builder("shards");
        let sink = wf.add(gather::task());
        let members: Vec<_> = shards
            .iter()
            .map(|&n| {
                wf.add(
                    shard::task()
                        .with_id(format!("shard_{n}"))
                        .with_input("n", n),
                )
            })
            .collect();
        wf.edges(&members, &[sink]);
        wf.group("shards", &members, GroupPolicy::custom(QuarterMayFail));
        wf.build()
    };
    let report = WorkflowEngine::new()
        .run(&build(&[0, 1, 2, 3, 4, 5, 6, 7]), RunOptions::new())
        .expect("2 of 8 failed");
    let group = report.group("shards").unwrap();
    assert_eq!(group.policy, "QuarterMayFail");
    assert_eq!(group.verdict, Some(Ok("2 of 8 failed".to_owned())));
    assert_eq!(
        report.result::<(Vec<String>, u32)>("gather").unwrap().1,
        1 + 2 + 4 + 5 + 6
    );

    // 2 of 4 failed: more than a quarter.
    let error = WorkflowEngine::new()
        .run(&build(&[3, 7, 0, 1]), RunOptions::new())
        .unwrap_err();
    assert!(
        matches!(&error, RunError::GroupFailed(f) if f.reason == "2 of 4 failed, more than a quarter"),
        "{error}"
    );
}

#[test]
fn a_policy_that_cannot_be_met_is_a_validation_problem() {
    let mut wf = Workflow::builder("bad");
    let a = wf.add(good_a::task());
    let s = wf.add(start::task());
    wf.edge(s, a);
    wf.group("g", &[a], GroupPolicy::at_least(2));
    wf.group("h", &[a], GroupPolicy::critical(["start"]));
    let error = WorkflowEngine::new().validate(&wf.build()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "group 'g' is invalid: at_least(2) can never pass: the group has only 1 member(s)"
        ),
        "{text}"
    );
    assert!(
        text.contains("critical member 'start' is not a member of the group"),
        "{text}"
    );
    assert!(
        text.contains("task 'good_a' is also in group 'g'"),
        "{text}"
    );
}

#[task(handler = "process")]
fn crash_out_of_process(start: u32) -> u32 {
    if start == 1 {
        std::process::exit(3);
    }
    start
}

#[test]
fn a_member_that_crashes_its_runner_is_tolerated_like_any_failure() {
    let wf = workflow! { start >> (good_a | crash_out_of_process).policy(best_effort) >> gather; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .expect("best_effort passes");
    let crashed = report.task("crash_out_of_process").unwrap();
    assert!(crashed.tolerated);
    assert!(
        crashed.error.unwrap().contains("exit"),
        "{:?}",
        crashed.error
    );
    assert_eq!(report.result::<(Vec<String>, u32)>("gather").unwrap().1, 11);
}

static MIRROR_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static GATHERED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[task]
fn mirror_down_once() -> Result<u32, String> {
    match MIRROR_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        0 => Err("mirror down".to_owned()),
        _ => Ok(7),
    }
}

#[task]
fn gather_once(ctx: &TaskContext) -> graflow::Result<u32> {
    GATHERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(ctx.upstream::<u32>()?.into_iter().sum())
}

#[test]
fn a_run_stopped_by_its_group_policy_resumes_with_the_failed_members() {
    let path = std::env::temp_dir().join(format!("graflow-group-{}.ckpt", std::process::id()));
    let wf = workflow! {
        name: "mirrors";
        start >> (good_a | mirror_down_once).policy(critical(mirror_down_once)) >> gather_once;
    };
    let engine = WorkflowEngine::new();
    let error = engine
        .run(&wf, RunOptions::new().checkpoint(&path))
        .unwrap_err();
    assert!(matches!(error, RunError::GroupFailed(_)), "{error}");
    let report = engine
        .run(&wf, RunOptions::new().resume_from(&path))
        .unwrap();
    assert_eq!(report.result::<u32>("gather_once").unwrap(), 11 + 7);
    assert_eq!(
        GATHERED.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the sink ran once"
    );
    assert!(
        matches!(&report.groups()[0].verdict, Some(Ok(_))),
        "{:?}",
        report.groups()
    );
    let _ = std::fs::remove_file(&path);
}

#[task(max_cycles = 3)]
async fn iterating_member(ctx: &TaskContext) -> Result<u32, String> {
    graflow::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    if ctx.cycle() == 1 {
        ctx.next_iteration().request().map_err(|e| e.to_string())?;
        return Ok(1);
    }
    Err("the last iteration failed".to_owned())
}

#[test]
fn a_group_judges_an_iterating_member_by_its_last_run() {
    let wf = workflow! {
        (iterating_member | good_b).policy(critical(iterating_member)) >> gather;
        start >> good_b;
    };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let RunError::GroupFailed(failure) = &error else {
        panic!("the critical member's last run failed: {error:?}");
    };
    assert_eq!(failure.reason, "critical member 'iterating_member' failed");
}

#[task]
fn quick_member() -> u32 {
    1
}

#[test]
fn a_group_of_4000_tolerant_members_is_decided() {
    // Decided in counters, not by rebuilding the outcome for each member (once cubic).
    let build = |policy: GroupPolicy| {
        let mut wf = Workflow::builder("wide");
        let members: Vec<_> = (0..4000)
            .map(|i| wf.add(quick_member::task().with_id(format!("m{i}"))))
            .collect();
        wf.group("wide", &members, policy);
        wf.build()
    };
    let engine = WorkflowEngine::new();
    let report = engine
        .run(&build(GroupPolicy::best_effort()), RunOptions::new())
        .unwrap();
    assert_eq!(
        report.groups()[0].verdict,
        Some(Ok("all 4000 members succeeded".to_owned()))
    );
    let report = engine
        .run(&build(GroupPolicy::at_least(4000)), RunOptions::new())
        .unwrap();
    assert!(matches!(&report.groups()[0].verdict, Some(Ok(_))));
}

#[task]
fn needs_broken(broken: u32) -> u32 {
    broken
}

#[test]
fn a_parameter_named_after_a_tolerated_failure_says_why_it_has_no_value() {
    let wf = workflow! { start >> (good_a | broken).policy(best_effort) >> needs_broken; };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let text = error.to_string();
    assert_eq!(error.failure().unwrap().task, "needs_broken");
    assert!(
        text.contains("upstream task 'broken' stored no result (a failure its group's policy tolerated?); read the results that exist with ctx.upstream()"),
        "{text}"
    );
}

#[task(max_cycles = 5)]
fn succeeds_then_fails(ctx: &TaskContext) -> graflow::Result<u64> {
    if ctx.cycle() == 1 {
        ctx.next_iteration().request()?;
        return Ok(111);
    }
    Err(graflow::ControlError::Conflict {
        task: ctx.task_id().to_owned(),
        message: "the second run fails".into(),
    }
    .into())
}

#[task]
fn after_member(ctx: &TaskContext) -> graflow::Result<Vec<u64>> {
    Ok(ctx.upstream::<u64>()?)
}

#[task]
fn steady() -> u64 {
    2
}

#[test]
fn a_tolerated_failure_has_no_result_even_after_an_earlier_successful_run() {
    let wf = workflow! { (succeeds_then_fails | steady).policy(best_effort) >> after_member; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert!(report.task("succeeds_then_fails").unwrap().tolerated);
    assert!(report.result::<u64>("succeeds_then_fails").is_err());
    assert_eq!(report.result::<Vec<u64>>("after_member").unwrap(), [2]);
}
