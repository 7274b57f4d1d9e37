//! Concurrency by kind of work: waiting tasks (async bodies, out-of-process handlers) are not
//! limited by the CPU count; synchronous bodies on the blocking pool are; a handler's own limit
//! (docker: 16) and the engine's overall `max_concurrency` cap everything. Checked by counting
//! how many bodies are inside at once, never by timing. (The async bodies use the Tokio graflow
//! re-exports, `graflow::tokio`: a program needs no tokio dependency of its own.)

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use graflow::prelude::*;
use graflow::{AttemptError, DEFAULT_MAX_CONCURRENCY};

/// How many bodies of one test are inside at once, and the most seen.
struct Gauge {
    inside: AtomicUsize,
    most: AtomicUsize,
}

impl Gauge {
    const fn new() -> Self {
        Gauge {
            inside: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }

    fn enter(&self) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

/// Waits until `gauge` has had `n` inside at once (so all of them overlapped) or `limit`
/// passes: a body that is not let in while others wait keeps the count below `n`.
async fn meet(gauge: &Gauge, n: usize, limit: Duration) {
    let deadline = graflow::tokio::time::Instant::now() + limit;
    while gauge.most() < n && graflow::tokio::time::Instant::now() < deadline {
        graflow::tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn meet_blocking(gauge: &Gauge, n: usize, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while gauge.most() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

static ASYNC: Gauge = Gauge::new();

#[task]
async fn waits(ctx: &TaskContext) -> u32 {
    ASYNC.enter();
    meet(&ASYNC, 8, Duration::from_secs(5)).await;
    ASYNC.leave();
    ctx.attempt()
}

fn eight(task: fn() -> Task, name: &str) -> Workflow {
    let mut wf = Workflow::builder(name);
    for i in 0..8 {
        wf.add(task().with_id(format!("t{i}")));
    }
    wf.build()
}

#[test]
fn async_tasks_are_not_limited_by_the_cpu_count() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    assert_eq!(engine.max_concurrency(), DEFAULT_MAX_CONCURRENCY);
    engine.run(&eight(waits::task, "async")).unwrap();
    assert_eq!(
        ASYNC.most(),
        8,
        "all eight waiting tasks were in flight at once"
    );
}

static BLOCKING: Gauge = Gauge::new();

#[task(blocking = true)]
fn crunches() -> u32 {
    BLOCKING.enter();
    // Gives any body that could get in the time to do so.
    meet_blocking(&BLOCKING, 8, Duration::from_millis(300));
    BLOCKING.leave();
    1
}

#[test]
fn synchronous_bodies_are_limited_by_the_cpu_limit() {
    let engine = WorkflowEngine::new().with_cpu_limit(2);
    assert_eq!(engine.cpu_limit(), 2);
    let report = engine.run(&eight(crunches::task, "blocking")).unwrap();
    assert_eq!(report.counts().0, 8);
    assert_eq!(BLOCKING.most(), 2, "two CPU permits, two bodies at once");
}

static LIMITED: Gauge = Gauge::new();
static LIMITED_RUNS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Runs tasks in this process, at most `limit` at once.
struct Narrow {
    limit: usize,
}

#[async_trait]
impl TaskHandler for Narrow {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        LIMITED.enter();
        meet(&LIMITED, 8, Duration::from_millis(300)).await;
        LIMITED.leave();
        LIMITED_RUNS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task.id().to_owned());
        task.run(ctx).await
    }

    fn concurrency_limit(&self) -> Option<usize> {
        Some(self.limit)
    }
}

#[task(handler = "narrow")]
fn narrow_task() -> u8 {
    1
}

#[test]
fn a_handler_limit_holds_back_only_its_own_tasks_and_the_engine_can_override_it() {
    let mut wf = Workflow::builder("narrow");
    for i in 0..6 {
        wf.add(narrow_task::task().with_id(format!("n{i}")));
    }
    let wf = wf.build();
    let engine = WorkflowEngine::new().with_handler("narrow", Narrow { limit: 3 });
    assert_eq!(engine.handler_concurrency("narrow"), Some(3));
    let report = engine.run(&wf).unwrap();
    assert_eq!(report.counts().0, 6);
    assert_eq!(LIMITED.most(), 3, "the handler's own limit");
    assert_eq!(LIMITED_RUNS.lock().unwrap().len(), 6);

    LIMITED.most.store(0, Ordering::SeqCst);
    let engine = engine.with_handler_concurrency("narrow", 1);
    assert_eq!(engine.handler_concurrency("narrow"), Some(1));
    engine.run(&wf).unwrap();
    assert_eq!(LIMITED.most(), 1, "the engine's override wins");
}

static CAPPED: Gauge = Gauge::new();

#[task]
async fn capped() -> u8 {
    CAPPED.enter();
    meet(&CAPPED, 8, Duration::from_millis(300)).await;
    CAPPED.leave();
    1
}

#[test]
fn max_concurrency_caps_everything() {
    let engine = WorkflowEngine::new().with_max_concurrency(3);
    engine.run(&eight(capped::task, "capped")).unwrap();
    assert_eq!(CAPPED.most(), 3);
}

#[cfg(feature = "docker")]
#[test]
fn docker_runs_at_most_sixteen_containers_of_a_run_by_default() {
    let engine = WorkflowEngine::new();
    assert_eq!(
        engine.handler_concurrency("docker"),
        Some(graflow::docker::DEFAULT_MAX_CONCURRENCY)
    );
    assert_eq!(graflow::docker::DEFAULT_MAX_CONCURRENCY, 16);
    let engine = WorkflowEngine::new().with_handler(
        "docker",
        graflow::docker::DockerHandler::new().with_max_concurrency(4),
    );
    assert_eq!(engine.handler_concurrency("docker"), Some(4));
    // Process children are local CPU work: as many at once as CPUs.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        WorkflowEngine::new().handler_concurrency("process"),
        Some(cpus)
    );
}

static HOG_INSIDE: AtomicBool = AtomicBool::new(false);
static HOG_DONE: AtomicBool = AtomicBool::new(false);
static LATE_RAN: AtomicBool = AtomicBool::new(false);

#[task(blocking = true)]
fn hog() -> u8 {
    HOG_INSIDE.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    HOG_DONE.store(true, Ordering::SeqCst);
    1
}

/// Lets `late` become ready only once `hog` holds the one CPU slot.
#[task]
async fn gate() -> u8 {
    while !HOG_INSIDE.load(Ordering::SeqCst) {
        graflow::tokio::time::sleep(Duration::from_millis(2)).await;
    }
    1
}

#[task(timeout = "50ms")]
fn late() -> u8 {
    LATE_RAN.store(true, Ordering::SeqCst);
    1
}

#[test]
fn a_body_whose_attempt_timed_out_while_queued_never_runs() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    let mut wf = Workflow::builder("queued");
    wf.add(hog::task());
    let g = wf.add(gate::task());
    let l = wf.add(late::task());
    wf.edge(g, l);
    let error = engine
        .run(&wf.build())
        .expect_err("late timed out waiting for the CPU slot");
    assert!(
        error.to_string().contains("late"),
        "the failure names the task: {error}"
    );
    // The hog's thread then takes the queue's next body, late's: it must skip it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !HOG_DONE.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(HOG_DONE.load(Ordering::SeqCst), "the hog finished");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !LATE_RAN.load(Ordering::SeqCst),
        "a body whose attempt had ended ran anyway"
    );
}
