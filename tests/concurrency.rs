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
    engine
        .run(&eight(waits::task, "async"), RunOptions::new())
        .unwrap();
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
    let report = engine
        .run(&eight(crunches::task, "blocking"), RunOptions::new())
        .unwrap();
    assert_eq!(report.counts().succeeded, 8);
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
    let report = engine.run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.counts().succeeded, 6);
    assert_eq!(LIMITED.most(), 3, "the handler's own limit");
    assert_eq!(LIMITED_RUNS.lock().unwrap().len(), 6);

    LIMITED.most.store(0, Ordering::SeqCst);
    let engine = engine.with_handler_concurrency("narrow", 1);
    assert_eq!(engine.handler_concurrency("narrow"), Some(1));
    engine.run(&wf, RunOptions::new()).unwrap();
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
    engine
        .run(&eight(capped::task, "capped"), RunOptions::new())
        .unwrap();
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

#[task]
fn late() -> u8 {
    LATE_RAN.store(true, Ordering::SeqCst);
    1
}

/// Fails the run while `late` waits in the CPU queue (`late` is started, and queued, first:
/// both become ready when `gate` ends, in edge order).
#[task]
async fn fails_while_late_is_queued() -> Result<u8, String> {
    Err("the run fails while a body is queued".to_owned())
}

#[test]
fn a_body_whose_attempt_ended_while_queued_never_runs() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    let mut wf = Workflow::builder("queued");
    wf.add(hog::task());
    let g = wf.add(gate::task());
    let l = wf.add(late::task());
    let f = wf.add(fails_while_late_is_queued::task());
    wf.edge(g, l);
    wf.edge(g, f);
    let error = engine
        .run(&wf.build(), RunOptions::new())
        .expect_err("the run failed while late waited for the CPU slot");
    assert!(
        error.to_string().contains("fails_while_late_is_queued"),
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

// ----- one engine, several runtimes: a body runs on its own run's runtime -----

static A_INSIDE: AtomicBool = AtomicBool::new(false);

#[task(blocking = true)]
fn a_hog() -> u8 {
    A_INSIDE.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    1
}

static B_RUNTIME: Mutex<Option<graflow::tokio::runtime::Id>> = Mutex::new(None);
static B_BODY_RUNTIME: Mutex<Option<graflow::tokio::runtime::Id>> = Mutex::new(None);

#[task]
async fn b_first() -> u8 {
    *B_RUNTIME.lock().unwrap() = Some(graflow::tokio::runtime::Handle::current().id());
    1
}

/// A synchronous body that uses its runtime (calls async code).
#[task(blocking = true)]
fn b_sync(b_first: u8) -> u8 {
    let handle = graflow::tokio::runtime::Handle::current();
    *B_BODY_RUNTIME.lock().unwrap() = Some(handle.id());
    handle.block_on(graflow::tokio::time::sleep(Duration::from_millis(50)));
    b_first
}

/// Run A (on its own runtime) holds the one CPU slot while run B queues a body: B's body must
/// run on B's runtime, not on A's (which `engine.run` shuts down when A ends).
#[test]
fn a_body_runs_on_its_own_runs_runtime_when_runs_share_an_engine() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    let other = engine.clone();
    let a = std::thread::spawn(move || {
        let mut wf = Workflow::builder("a");
        wf.add(a_hog::task());
        other.run(&wf.build(), RunOptions::new()).map(|_| ())
    });
    while !A_INSIDE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut wf = Workflow::builder("b");
    let first = wf.add(b_first::task());
    let body = wf.add(b_sync::task());
    wf.edge(first, body);
    let result = engine.run(&wf.build(), RunOptions::new());
    a.join().expect("run a's thread").expect("run a");
    result.expect("run b");
    assert_eq!(
        *B_RUNTIME.lock().unwrap(),
        *B_BODY_RUNTIME.lock().unwrap(),
        "run b's body ran on another runtime"
    );
}

static C_INSIDE: AtomicBool = AtomicBool::new(false);
static D_RUNTIMES: Mutex<Vec<graflow::tokio::runtime::Id>> = Mutex::new(Vec::new());

#[task(blocking = true)]
fn c_short() -> u8 {
    C_INSIDE.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    1
}

#[task(blocking = true)]
fn d_body(i: u64) -> u64 {
    D_RUNTIMES
        .lock()
        .unwrap()
        .push(graflow::tokio::runtime::Handle::current().id());
    std::thread::sleep(Duration::from_millis(20));
    i
}

/// Runtime C's run ends while runtime D's bodies wait behind it in the shared queue: C's
/// blocking thread must hand them to D (had it run them, dropping runtime C would have waited
/// for all of them).
#[test]
fn another_runtimes_bodies_run_on_that_runtime() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    let other = engine.clone();
    let c = graflow::tokio::runtime::Runtime::new().unwrap();
    let d = graflow::tokio::runtime::Runtime::new().unwrap();
    let d_id = d.handle().id();
    let queued = std::thread::spawn(move || {
        while !C_INSIDE.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut wf = Workflow::builder("d");
        for i in 0..10u64 {
            wf.add(d_body::task().with_id(format!("d{i}")).with_input("i", i));
        }
        d.block_on(other.execute(&wf.build(), RunOptions::new()))
            .map(|_| ())
    });
    let mut wf = Workflow::builder("c");
    wf.add(c_short::task());
    c.block_on(engine.execute(&wf.build(), RunOptions::new()))
        .expect("run c");
    drop(c);
    queued.join().expect("run d's thread").expect("run d");
    let seen = D_RUNTIMES.lock().unwrap();
    assert_eq!(seen.len(), 10);
    assert!(
        seen.iter().all(|id| *id == d_id),
        "run d's bodies ran on another runtime: {seen:?}, d is {d_id:?}"
    );
}

static E_RAN: AtomicUsize = AtomicUsize::new(0);

#[task(blocking = true)]
fn e_tiny(i: u64) -> u64 {
    E_RAN.fetch_add(1, Ordering::SeqCst);
    i
}

/// Many runs at once on one engine from six threads, each with a runtime of its own: every
/// run finishes (no body waits forever for a runner) and every body ran once.
#[test]
fn runs_on_many_runtimes_share_the_queue() {
    let engine = WorkflowEngine::new().with_cpu_limit(2);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for r in 0..20 {
                    let mut wf = Workflow::builder(format!("s{t}-{r}"));
                    for i in 0..8u64 {
                        wf.add(e_tiny::task().with_id(format!("e{i}")).with_input("i", i));
                    }
                    engine.run(&wf.build(), RunOptions::new()).expect("run");
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for t in threads {
        while !t.is_finished() {
            assert!(std::time::Instant::now() < deadline, "a run never finished");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.join().expect("a run's thread");
    }
    assert_eq!(E_RAN.load(Ordering::SeqCst), 6 * 20 * 8);
}

static F_STARTED: AtomicUsize = AtomicUsize::new(0);
static F_RELEASE: AtomicBool = AtomicBool::new(false);
static F_DONE: AtomicUsize = AtomicUsize::new(0);

#[task(blocking = true)]
fn f_body(i: u64) -> u64 {
    F_STARTED.fetch_add(1, Ordering::SeqCst);
    while !F_RELEASE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(2));
    }
    F_DONE.fetch_add(1, Ordering::SeqCst);
    i
}

/// A run dropped while one body holds the only CPU slot and nine wait in the queue: the
/// waiting bodies never start.
#[test]
fn a_dropped_run_s_queued_bodies_never_start() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    let runtime = graflow::tokio::runtime::Runtime::new().unwrap();
    let mut wf = Workflow::builder("dropped");
    for i in 0..10u64 {
        wf.add(f_body::task().with_id(format!("f{i}")).with_input("i", i));
    }
    let wf = wf.build();
    runtime.block_on(async {
        let run = engine.execute(&wf, RunOptions::new());
        graflow::tokio::select! {
            _ = run => panic!("the run ended while its first body was held"),
            () = async {
                while F_STARTED.load(Ordering::SeqCst) == 0 {
                    graflow::tokio::time::sleep(Duration::from_millis(1)).await;
                }
            } => {}
        }
    });
    // The run's future is gone; let the held body finish, then give the queue time to move.
    F_RELEASE.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while F_DONE.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        F_STARTED.load(Ordering::SeqCst),
        1,
        "bodies of a dropped run started"
    );
}

static BACKOFF_ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// Fails its first attempt, then waits a long backoff before its second.
#[task(retries = 1, retry_delay = "1s")]
fn fails_then_backs_off(ctx: &TaskContext) -> Result<u32, String> {
    BACKOFF_ORDER.lock().unwrap().push(if ctx.attempt() == 1 {
        "flaky attempt 1"
    } else {
        "flaky attempt 2"
    });
    if ctx.attempt() == 1 {
        Err("first attempt fails".to_owned())
    } else {
        Ok(1)
    }
}

#[task]
async fn runs_during_the_backoff() -> u32 {
    BACKOFF_ORDER.lock().unwrap().push("other task");
    2
}

/// A retry's backoff holds no slot of its handler: with "direct" limited to one task at a
/// time, another task runs while the failed one waits to retry (it used to wait for the whole
/// backoff and the retry). Checked by order, not by time.
#[test]
fn a_task_waiting_to_retry_holds_no_handler_slot() {
    let mut engine = WorkflowEngine::new();
    engine.set_handler_concurrency("direct", 1);
    let wf = workflow! { name: "backoff-slot"; (fails_then_backs_off | runs_during_the_backoff); };
    let report = engine.run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.task("fails_then_backs_off").unwrap().attempts, 2);
    assert_eq!(
        *BACKOFF_ORDER.lock().unwrap(),
        ["flaky attempt 1", "other task", "flaky attempt 2"]
    );
}

#[task]
fn hogs_the_cpu_queue() -> u32 {
    std::thread::sleep(Duration::from_secs(3));
    1
}

#[task(timeout = "1s")]
fn short_with_a_timeout() -> u32 {
    2
}

/// A timeout limits the task's own execution: with a CPU limit of 1, a short body queued 3 s
/// behind a long one does not time out after 1 s (it did: the queue's wait counted).
#[test]
fn waiting_in_the_cpu_queue_does_not_count_against_the_timeout() {
    let engine = WorkflowEngine::new().with_cpu_limit(1);
    let wf = workflow! { name: "queue-wait"; (hogs_the_cpu_queue | short_with_a_timeout); };
    let report = engine.run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.result::<u32>("short_with_a_timeout").unwrap(), 2);
}

static ENGINE_WIDE: Gauge = Gauge::new();
static PER_RUN: Gauge = Gauge::new();

/// Inside `ENGINE_WIDE` until three are inside at once or 1.5 s pass.
#[task]
async fn counted_engine_wide(i: u32) -> u32 {
    ENGINE_WIDE.enter();
    meet(&ENGINE_WIDE, 3, Duration::from_millis(1500)).await;
    ENGINE_WIDE.leave();
    i
}

#[task]
async fn counted_per_run(i: u32) -> u32 {
    PER_RUN.enter();
    meet(&PER_RUN, 3, Duration::from_millis(1500)).await;
    PER_RUN.leave();
    i
}

fn three_of(task: fn() -> graflow::Task, name: &str) -> Workflow {
    let mut wf = Workflow::builder(name);
    for i in 0..3u32 {
        wf.add(task().with_id(format!("t{i}")).with_input("i", i));
    }
    wf.build()
}

/// A handler's limit holds for the engine, over all its runs at once (a service running many
/// workflows, the console resuming runs): two runs of three tasks each, "direct" limited to 2,
/// never have more than 2 inside together.
#[test]
fn a_handlers_limit_holds_across_the_engines_runs() {
    let engine = WorkflowEngine::new().with_handler_concurrency("direct", 2);
    let runs: Vec<_> = (0..2)
        .map(|r| {
            let (engine, wf) = (
                engine.clone(),
                three_of(counted_engine_wide::task, &format!("wide-{r}")),
            );
            std::thread::spawn(move || {
                engine
                    .run(&wf, RunOptions::new())
                    .map(|report| report.tasks().count())
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap().unwrap(), 3);
    }
    assert_eq!(
        ENGINE_WIDE.most(),
        2,
        "the engine's limit held over both runs"
    );
}

/// The per-run limit is an option on top: each run at most 1, two runs at once, 2 together.
#[test]
fn a_per_run_limit_caps_each_run() {
    let mut engine = WorkflowEngine::new();
    engine.set_handler_concurrency_per_run("direct", 1);
    let runs: Vec<_> = (0..2)
        .map(|r| {
            let (engine, wf) = (
                engine.clone(),
                three_of(counted_per_run::task, &format!("per-run-{r}")),
            );
            std::thread::spawn(move || {
                engine
                    .run(&wf, RunOptions::new())
                    .map(|report| report.tasks().count())
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap().unwrap(), 3);
    }
    assert!(PER_RUN.most() <= 2, "{}", PER_RUN.most());
}

#[task]
async fn tiny(i: u32) -> u32 {
    graflow::tokio::task::yield_now().await;
    i
}

/// Runs `runs` workflows of `tasks` tiny tasks at once on `engine`, each on a thread of its own,
/// and checks that every one finishes with all its tasks (`stuck` says what a hang would mean).
fn concurrent_runs_all_finish(
    engine: &WorkflowEngine,
    name: &str,
    runs: u32,
    tasks: u32,
    stuck: &str,
) {
    let (done, finished) = std::sync::mpsc::channel();
    for r in 0..runs {
        let (engine, done) = (engine.clone(), done.clone());
        let mut wf = Workflow::builder(format!("{name}-{r}"));
        for i in 0..tasks {
            wf.add(tiny::task().with_id(format!("t{i}")).with_input("i", i));
        }
        let wf = wf.build();
        std::thread::spawn(move || {
            let _ = done.send(
                engine
                    .run(&wf, RunOptions::new())
                    .map(|report| report.tasks().count()),
            );
        });
    }
    drop(done);
    for _ in 0..runs {
        let ran = finished
            .recv_timeout(Duration::from_secs(300))
            .expect(stuck);
        assert_eq!(ran.unwrap(), tasks as usize);
    }
}

/// Many runs contend for an engine-wide limit of 2, each finishing tasks all the time: none is
/// left waiting for a wake-up that never comes (a lost wake-up would hang a run).
#[test]
fn runs_contending_for_an_engine_wide_limit_all_finish() {
    let engine = WorkflowEngine::new().with_handler_concurrency("direct", 2);
    concurrent_runs_all_finish(
        &engine,
        "contend",
        6,
        200,
        "a run waited forever for room under the engine's limit",
    );
}

/// An engine-wide limit above a per-run one: runs woken by another run's task must not spin
/// when their own limit, not the engine's, holds them back (they used to loop forever).
#[test]
fn an_engine_limit_above_a_per_run_limit_lets_every_run_finish() {
    let mut engine = WorkflowEngine::new().with_handler_concurrency("direct", 3);
    engine.set_handler_concurrency_per_run("direct", 2);
    concurrent_runs_all_finish(
        &engine,
        "nested-limits",
        3,
        50,
        "a run never finished under nested limits",
    );
}
