//! The scheduler on its own: in-degree bookkeeping, the nodes that asked for a task instead of
//! their successors, and small workflows run through `scheduler::run` directly (no engine).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;

use super::{Ended, Failure, Slot, Start, free, instead_askers, run};
use crate::channel::Channel;
use crate::definition::AttemptError;
use crate::graph::Task;
use crate::graph::{GroupPolicy, Workflow};
use crate::report::TaskStatus;
use crate::retry::RetryPolicy;
use crate::run::control::DynNode;
use crate::run::{CpuPool, ExecutionContext, RunShared, TaskHandler};
use crate::value::Value;

/// The order in which the diamond's bodies ran.
static DIAMOND: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

#[graflow_macros::task(crate = "crate")]
fn top() -> u32 {
    DIAMOND.lock().unwrap().push("top");
    1
}

#[graflow_macros::task(crate = "crate")]
fn left(top: u32) -> u32 {
    DIAMOND.lock().unwrap().push("left");
    top + 1
}

#[graflow_macros::task(crate = "crate")]
fn right(top: u32) -> u32 {
    DIAMOND.lock().unwrap().push("right");
    top + 2
}

#[graflow_macros::task(crate = "crate")]
fn bottom(left: u32, right: u32) -> u32 {
    DIAMOND.lock().unwrap().push("bottom");
    left + right
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails its first two attempts.
#[graflow_macros::task(crate = "crate")]
fn flaky() -> Result<u32, String> {
    if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
        Err("not yet".to_owned())
    } else {
        Ok(3)
    }
}

#[graflow_macros::task(crate = "crate")]
fn fine() -> u32 {
    1
}

#[graflow_macros::task(crate = "crate")]
fn broken() -> Result<u32, String> {
    Err("broken on purpose".to_owned())
}

#[graflow_macros::task(crate = "crate")]
fn after() -> u32 {
    2
}

/// Runs the body in this process (what the "direct" handler does; `handlers` is a layer above
/// `run`, so it is not named here).
struct InProcess;

#[async_trait::async_trait]
impl TaskHandler for InProcess {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        task.run(ctx).await
    }
}

/// The run state of `workflow` on the direct handler alone, as the engine would make it.
fn shared_of(workflow: &Workflow) -> Arc<RunShared> {
    let graph = workflow.graph().expect("a valid workflow");
    Arc::new(RunShared::new(
        Arc::from("test-run"),
        workflow.clone(),
        graph,
        Channel::new(),
        CpuPool::new(2),
        None,
        None,
        false,
        None,
    ))
}

/// Runs `workflow` from scratch through the scheduler, every task on "direct".
fn run_direct(workflow: &Workflow) -> (Arc<RunShared>, Ended) {
    let shared = shared_of(workflow);
    assert!(
        shared.graph.handler_names.iter().all(|h| h == "direct"),
        "the tests run on the direct handler only"
    );
    let slots = vec![Slot {
        name: "direct".into(),
        handler: Arc::new(InProcess),
        direct: true,
        limit: usize::MAX,
        gate: None,
    }];
    let start = Start::fresh(&shared);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let ended = runtime.block_on(run(shared.clone(), slots, start, 4, Instant::now(), None));
    (shared, ended)
}

#[test]
fn free_queues_a_node_once_when_its_last_predecessor_is_done() {
    let mut indegree = vec![2, 1, 0];
    let mut ready = VecDeque::new();
    free(&mut indegree, &mut ready, 0);
    assert_eq!(indegree[0], 1);
    assert!(ready.is_empty(), "one predecessor is still pending");
    free(&mut indegree, &mut ready, 0);
    assert_eq!(indegree[0], 0);
    assert_eq!(ready, [0]);
    free(&mut indegree, &mut ready, 1);
    assert_eq!(ready, [0, 1]);
    // A node at 0 already (started by a goto, or queued) is not queued a second time.
    free(&mut indegree, &mut ready, 0);
    free(&mut indegree, &mut ready, 2);
    assert_eq!(ready, [0, 1]);
    assert_eq!(indegree, [0, 0, 0], "no in-degree goes below zero");
}

#[test]
fn instead_askers_are_the_parents_of_added_nodes_without_successors() {
    let mut wf = Workflow::builder("askers");
    let a = wf.add(fine::task().with_id("a"));
    let b = wf.add(fine::task().with_id("b"));
    let c = wf.add(after::task().with_id("c"));
    wf.edge(a, c).edge(b, c);
    let shared = shared_of(&wf.build());
    let first = shared.static_len() as u32;
    assert_eq!(first, 3);
    assert!(instead_askers(&shared, &HashMap::default()).is_empty());
    // Node 3, added by `a` with next_task (it precedes `a`'s successors: an entry in
    // extra_succs), and node 4, added by `b` with next_task_instead (no successors of its own).
    for id in ["a_next", "b_instead"] {
        shared.dynamic.nodes.push(DynNode {
            task: fine::task().with_id(id),
            slot: 0,
            sources: Vec::new(),
            result: Mutex::new(None),
        });
    }
    shared.dynamic.add_pred(first, 0);
    shared.dynamic.add_pred(first + 1, 1);
    let mut extra_succs = HashMap::default();
    extra_succs.insert(first, vec![2]);
    let askers = instead_askers(&shared, &extra_succs);
    assert_eq!(askers.into_iter().collect::<Vec<_>>(), vec![1]);
    // Without the successor entry, `a` asked instead too.
    let mut askers: Vec<u32> = instead_askers(&shared, &HashMap::default())
        .into_iter()
        .collect();
    askers.sort_unstable();
    assert_eq!(askers, vec![0, 1]);
}

#[test]
fn a_diamond_runs_each_node_once_after_its_predecessors() {
    let mut wf = Workflow::builder("diamond");
    let t = wf.add(top::task());
    let l = wf.add(left::task());
    let r = wf.add(right::task());
    let b = wf.add(bottom::task());
    wf.edges(&[t], &[l, r]).edges(&[l, r], &[b]);
    let (shared, ended) = run_direct(&wf.build());
    assert!(ended.failure.is_none(), "the diamond succeeds");
    assert!(ended.terminated.is_none());
    for (node, record) in ended.records.iter().enumerate() {
        assert_eq!(record.status, TaskStatus::Succeeded, "node {node}");
        assert_eq!(record.attempts, 1, "node {node}");
        assert_eq!(record.runs, 1, "node {node}");
        assert!(record.start.is_some() && record.duration.is_some());
    }
    let order = DIAMOND.lock().unwrap().clone();
    assert_eq!(order.len(), 4, "each body ran once: {order:?}");
    assert_eq!(order[0], "top");
    assert_eq!(order[3], "bottom");
    let bottom_result = shared
        .result_value(3)
        .expect("bottom's result is kept")
        .get::<u32>()
        .expect("a u32");
    assert_eq!(bottom_result, 5, "bottom saw both sides: (1 + 1) + (1 + 2)");
    // The records' start times follow the edges.
    let start = |n: usize| ended.records[n].start.unwrap();
    assert!(start(0) <= start(1) && start(0) <= start(2));
    assert!(start(1) <= start(3) && start(2) <= start(3));
}

#[test]
fn a_retried_task_that_succeeds_counts_its_attempts() {
    let retry = RetryPolicy::retries(3).with_initial_delay(Duration::from_millis(1));
    let mut wf = Workflow::builder("retry");
    let f = wf.add(flaky::task().with_retry(retry));
    let n = wf.add(after::task());
    wf.edge(f, n);
    let (_, ended) = run_direct(&wf.build());
    assert!(ended.failure.is_none(), "the third attempt succeeds");
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);
    let flaky = &ended.records[0];
    assert_eq!(flaky.status, TaskStatus::Succeeded);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.runs, 1, "retries are attempts of one run");
    assert!(
        flaky.error.is_none(),
        "a success clears the attempts' errors"
    );
    assert_eq!(ended.records[1].status, TaskStatus::Succeeded);
    assert_eq!(ended.records[1].attempts, 1);
}

#[test]
fn a_failure_without_retries_stops_the_run_and_its_successors_never_start() {
    let mut wf = Workflow::builder("fails");
    let b = wf.add(broken::task());
    let n = wf.add(after::task());
    wf.edge(b, n);
    let (_, ended) = run_direct(&wf.build());
    match ended.failure {
        Some(Failure::Task { node, attempts, .. }) => assert_eq!((node, attempts), (0, 1)),
        _ => panic!("the run fails with its task"),
    }
    assert_eq!(ended.records[0].status, TaskStatus::Failed);
    assert!(!ended.records[0].tolerated);
    assert!(
        ended.records[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("broken on purpose"))
    );
    assert_eq!(ended.records[1].status, TaskStatus::Skipped);
    assert_eq!(ended.records[1].runs, 0);
}

/// `(fine_a | broken | fine_b) >> after` under `policy`.
fn group_run(policy: GroupPolicy) -> Ended {
    let mut wf = Workflow::builder("group");
    let members = [
        wf.add(fine::task().with_id("fine_a")),
        wf.add(broken::task()),
        wf.add(fine::task().with_id("fine_b")),
    ];
    let n = wf.add(after::task());
    wf.edges(&members, &[n]);
    wf.group("members", &members, policy);
    run_direct(&wf.build()).1
}

#[test]
fn a_tolerant_group_counts_its_members_and_passes() {
    let ended = group_run(GroupPolicy::at_least(2));
    assert!(ended.failure.is_none(), "two of three succeeded");
    let state = &ended.groups[0];
    assert_eq!((state.succeeded, state.failed), (2, 1));
    assert_eq!(state.done.len(), 3);
    assert!(matches!(state.verdict, Some(Ok(_))), "{:?}", state.verdict);
    assert!(
        ended.records[1].tolerated,
        "the member's failure was tolerated"
    );
    assert_eq!(ended.records[1].status, TaskStatus::Failed);
    assert_eq!(
        ended.records[3].status,
        TaskStatus::Succeeded,
        "the group's successor ran"
    );
}

#[test]
fn a_tolerant_group_out_of_reach_fails_the_run() {
    let ended = group_run(GroupPolicy::at_least(3));
    match &ended.failure {
        Some(Failure::Group { group, reason }) => {
            assert_eq!(*group, 0);
            assert!(!reason.is_empty());
        }
        _ => panic!("three successes are out of reach once one member failed"),
    }
    assert!(matches!(ended.groups[0].verdict, Some(Err(_))));
    assert_ne!(ended.records[3].status, TaskStatus::Succeeded);
}
