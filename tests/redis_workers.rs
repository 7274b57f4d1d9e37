//! The "redis" handler against a real `redis-server` and real worker processes (this test
//! binary in worker mode): typed round trips, a worker killed while it holds tasks, leases
//! kept by long tasks, dead letters, another build refused, Redis restarted mid-run, the
//! worker's concurrency limit, timeouts and cancellation reaching the worker, named queues,
//! inner handlers, and hostile input. Needs the `redis` feature (on by default).
#![cfg(feature = "redis")]

#[cfg(feature = "docker")]
mod common;
mod redis_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use graflow::redis::{RedisError, RedisHandler, RedisOptions, TlsOptions};
use graflow::{RunOptions, TaskContext, WorkflowEngine, task};
use redis::Commands;
use redis_common::{
    CustomServer, PROMPTLY, RedisServer, WorkerProcess, spawn_test_program, spawn_worker,
    spawn_worker_of, task_conn, with_task_conn,
};
use serde::{Deserialize, Serialize};

graflow::enable_test_runner!();

fn logs() -> &'static std::sync::Mutex<Vec<u8>> {
    common::captured_logs()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sample {
    label: String,
    values: Vec<f64>,
    tags: HashMap<String, u32>,
    nested: Option<Box<Sample>>,
}

/// A typed value out and back, plus a channel write.
#[task(handler = "redis")]
fn summarise(sample: Sample, scale: f64, ctx: &TaskContext) -> Sample {
    ctx.channel().set("summarised", sample.label.clone());
    graflow::tracing::info!("summarising {}", sample.label);
    Sample {
        label: format!("{}!", sample.label),
        values: sample.values.iter().map(|v| v * scale).collect(),
        tags: sample.tags,
        nested: Some(Box::new(Sample {
            label: "inner".to_owned(),
            values: vec![],
            tags: HashMap::new(),
            nested: None,
        })),
    }
}

#[task(handler = "redis")]
fn total(sample: Sample) -> f64 {
    sample.values.iter().sum()
}

/// Sums its upstream `summarise`'s values.
#[task(handler = "redis")]
fn measured(summarise: Sample) -> f64 {
    summarise.values.iter().sum()
}

/// Records that it ran (`runs:<key>`, and which worker pid), sleeps, returns `n * n`.
#[task(handler = "redis")]
fn slow_square(key: String, n: u64, sleep_ms: u64) -> u64 {
    // (One test restarts Redis while these run: the bookkeeping waits for it, atomically.)
    with_task_conn(|conn| {
        redis::pipe()
            .atomic()
            .incr(format!("runs:{key}"), 1)
            .ignore()
            .rpush(format!("pids:{key}"), std::process::id())
            .ignore()
            .query::<()>(conn)
    });
    std::thread::sleep(Duration::from_millis(sleep_ms));
    n * n
}

/// Counts the attempts running at once on the workers (the highest count in `max_running`).
#[task(handler = "redis")]
fn counted(n: u64) -> u64 {
    let mut conn = task_conn();
    let script = redis::Script::new(
        "local r = redis.call('INCR', 'running') \
         if r > tonumber(redis.call('GET', 'max_running') or '0') then redis.call('SET', 'max_running', r) end \
         return r",
    );
    let _: u64 = script.invoke(&mut conn).unwrap();
    // Runs until three have run at once (or long enough): however slowly a busy machine starts
    // them, a worker that allows three gets there, and one that allows more shows it.
    let deadline = std::time::Instant::now() + PROMPTLY;
    while conn
        .get::<_, Option<u64>>("max_running")
        .unwrap()
        .unwrap_or(0)
        < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    let _: i64 = conn.decr("running", 1).unwrap();
    n + 1
}

/// Kills its worker, every time.
#[task(handler = "redis")]
fn crash_worker() -> u64 {
    let mut conn = task_conn();
    let _: () = conn.incr("crash_runs", 1).unwrap();
    std::process::abort();
}

/// Marks that it started, sleeps asynchronously (a cancelled attempt stops at once), then marks
/// that it finished.
#[task(handler = "redis")]
async fn sleepy(key: String) -> u64 {
    let _: () = task_conn().set(format!("started:{key}"), 1).unwrap();
    graflow::tokio::time::sleep(Duration::from_secs(5)).await;
    let _: () = task_conn().set(format!("finished:{key}"), 1).unwrap();
    1
}

#[task(handler = "redis", queue = "gpu")]
fn on_gpu(n: u64) -> String {
    format!("gpu {n} on {}", std::process::id())
}

/// Runs in a child process of the worker (`worker_handler = "process"`).
#[task(handler = "redis", worker_handler = "process")]
fn isolated() -> (u32, u32) {
    (std::process::id(), std::os::unix::process::parent_id())
}

/// Runs in a container on the worker's machine (`worker_handler = "docker"`).
#[cfg(feature = "docker")]
#[task(
    handler = "redis",
    worker_handler = "docker",
    image = "python:3.11-slim"
)]
fn in_a_container() -> String {
    std::fs::read_to_string("/etc/os-release").unwrap_or_default()
}

#[task(handler = "redis")]
fn big(bytes: u64) -> String {
    "x".repeat(bytes as usize)
}

fn engine(server: &RedisServer, options: RedisOptions) -> WorkflowEngine {
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "redis",
        RedisHandler::connect_with(&server.url(), options).expect("connect to the test's Redis"),
    );
    engine
}

fn sample(label: &str) -> Sample {
    Sample {
        label: label.to_owned(),
        values: vec![1.5, 2.5, -1.0],
        tags: HashMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]),
        nested: None,
    }
}

/// Polls `run` until `sleepy`'s task `key` has started on a worker (however long a busy machine
/// takes to get there; a fixed delay may end the run before), then leaves it unfinished.
async fn until_sleepy_started<F: std::future::Future + Unpin>(run: &mut F, url: &str, key: &str)
where
    F::Output: std::fmt::Debug,
{
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let deadline = Instant::now() + PROMPTLY;
    while !conn.exists::<_, bool>(format!("started:{key}")).unwrap() {
        assert!(Instant::now() < deadline, "sleepy {key} never started");
        if let Ok(ended) = graflow::tokio::time::timeout(Duration::from_millis(10), &mut *run).await
        {
            panic!("the run ended before sleepy {key} started: {ended:?}");
        }
    }
}

/// The default queue's dead letters, once there are at least `n` (or `PROMPTLY` passed).
fn dead_letters_at_least(conn: &mut redis::Connection, n: u64) -> u64 {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let dead: u64 = conn.xlen("graflow:dead:default").unwrap();
        if dead >= n || Instant::now() >= deadline {
            return dead;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `PROMPTLY`) until no job of the default queue is pending.
fn wait_until_nothing_pending(conn: &mut redis::Connection, what: &str) {
    let deadline = Instant::now() + PROMPTLY;
    while pending_count(conn, "default") > 0 {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pending_count(conn: &mut redis::Connection, queue: &str) -> u64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(format!("graflow:queue:{queue}"))
        .arg("graflow-workers")
        .query(conn)
        .unwrap();
    match summary {
        redis::Value::Array(items) => redis::from_redis_value(items[0].clone()).unwrap(),
        other => panic!("XPENDING said {other:?}"),
    }
}

#[test]
fn typed_values_channel_writes_and_logs_round_trip() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = logs();
    let worker = spawn_worker(&server.url(), "w-round-trip", &[]);
    worker.wait_started();
    let mut engine = engine(&server, RedisOptions::new());
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    engine.add_observer(move |e: &graflow::RunEvent| {
        if let graflow::EventKind::Log { line } = &e.kind {
            seen.lock()
                .unwrap()
                .push((e.task.clone(), e.handler.clone(), e.attempt, line.clone()));
        }
    });
    let mut wf = graflow::Workflow::builder("round-trip");
    let a = wf.add(
        summarise::task()
            .with_input("sample", sample("s1"))
            .with_input("scale", 2.0),
    );
    let b = wf.add(measured::task());
    wf.edge(a, b);
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .expect("the run succeeds");
    let out: Sample = report.result("summarise").unwrap();
    assert_eq!(out.label, "s1!");
    assert_eq!(out.values, vec![3.0, 5.0, -2.0]);
    assert_eq!(out.tags, sample("s1").tags);
    assert_eq!(out.nested.unwrap().label, "inner");
    assert!((report.result::<f64>("measured").unwrap() - 6.0).abs() < 1e-9);
    assert_eq!(report.channel().get::<String>("summarised").unwrap(), "s1");
    let record = report.task("summarise").unwrap();
    assert_eq!(
        record.runner,
        Some("worker w-round-trip, delivery 1"),
        "{report}"
    );
    // The task's log line came back with its outcome and was logged here.
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("summarising s1"))
        .unwrap_or_else(|| {
            panic!(
                "the worker's log line did not travel back:\n{text}\nworker:\n{}",
                worker.log()
            )
        });
    assert!(
        line.contains("task=summarise") && line.contains("worker=w-round-trip"),
        "{line}"
    );
    // ... and reached the run's observers as a Log event of its task, handler and attempt.
    let events = events.lock().unwrap();
    assert!(
        events.iter().any(|(task, handler, attempt, line)| {
            task.as_deref() == Some("summarise")
                && handler.as_deref() == Some("redis")
                && *attempt == 1
                && line.contains("summarising s1")
        }),
        "{events:?}"
    );
}

#[test]
fn a_killed_worker_loses_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let lease = [
        ("GRAFLOW_WORKER_LEASE", "1s"),
        ("GRAFLOW_WORKER_CONCURRENCY", "8"),
    ];
    let mut doomed = spawn_worker(&url, "w-doomed", &lease);
    doomed.wait_started();
    let n = 6u64;
    let mut wf = graflow::Workflow::builder("survive");
    for i in 0..n {
        wf.add(
            slow_square::task()
                .with_id(format!("sq{i}"))
                .with_input("key", format!("sq{i}"))
                .with_input("n", i)
                .with_input("sleep_ms", 1500u64),
        );
    }
    let wf = wf.build();
    let engine = engine(&server, RedisOptions::new());
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));

    // Kill the worker once it holds at least two tasks (they have started).
    let mut conn = server.conn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started: u64 = (0..n)
            .filter(|i| conn.exists::<_, bool>(format!("runs:sq{i}")).unwrap())
            .count() as u64;
        if started >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never started two tasks:\n{}",
            doomed.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed_at = Instant::now();
    let doomed_pid = doomed.pid();
    doomed.kill();
    let survivor = spawn_worker(&url, "w-survivor", &lease);
    let report = run
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the run failed: {e}\nsurvivor:\n{}", survivor.log()));
    let recovered_in = killed_at.elapsed();

    let mut taken_over = 0;
    for i in 0..n {
        let id = format!("sq{i}");
        assert_eq!(report.result::<u64>(&id).unwrap(), i * i);
        let runs: u64 = conn.get(format!("runs:{id}")).unwrap();
        assert!(runs <= 2, "{id} ran {runs} times");
        let pids: Vec<u32> = conn.lrange(format!("pids:{id}"), 0, -1).unwrap();
        let runner = report.task(&id).unwrap().runner.unwrap().to_owned();
        if pids.first() == Some(&doomed_pid) {
            taken_over += 1;
            assert_eq!(runner, "worker w-survivor, delivery 2", "{id}");
            assert_eq!(pids.len(), 2, "{id}");
            assert_ne!(pids[1], doomed_pid);
        }
    }
    assert!(taken_over >= 2, "only {taken_over} task(s) were taken over");
    // (A worker acknowledges a job after sending its reply: the run may end first.)
    wait_until_nothing_pending(&mut conn, "jobs left pending");
    // Lease 1 s, tasks 1.5 s: the taken-over tasks finish well within lease + task + 1 s
    // (a loose bound: this checks recovery happens, the benchmark measures how fast).
    assert!(recovered_in < Duration::from_secs(15), "{recovered_in:?}");
}

#[test]
fn a_long_task_keeps_its_lease_and_runs_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let lease = [("GRAFLOW_WORKER_LEASE", "400ms")];
    let a = spawn_worker(&url, "w-long-a", &lease);
    let b = spawn_worker(&url, "w-long-b", &lease);
    a.wait_started();
    b.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let task = slow_square::task()
        .with_input("key", "long".to_owned())
        .with_input("n", 9u64)
        .with_input("sleep_ms", 1500u64);
    let mut wf = graflow::Workflow::builder("long");
    wf.add(task);
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .expect("the long task succeeds");
    assert_eq!(report.result::<u64>("slow_square").unwrap(), 81);
    let mut conn = server.conn();
    let runs: u64 = conn.get("runs:long").unwrap();
    assert_eq!(
        runs, 1,
        "a heartbeating task longer than 3 leases ran {runs} times"
    );
    let runner = report.task("slow_square").unwrap().runner.unwrap();
    assert!(runner.ends_with("delivery 1"), "{runner}");
}

#[test]
fn a_task_that_kills_its_worker_is_dead_lettered_at_the_cap() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let env = [
        ("GRAFLOW_WORKER_LEASE", "300ms"),
        ("GRAFLOW_WORKER_MAX_DELIVERIES", "2"),
    ];
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("poison");
    wf.add(crash_worker::task());
    let wf = wf.build();
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));
    // Keep a worker up: each one the task kills is replaced.
    let mut workers: Vec<WorkerProcess> = Vec::new();
    let mut started = 0;
    while !run.is_finished() {
        if workers.last_mut().is_none_or(WorkerProcess::exited) {
            assert!(started < 10, "too many workers died");
            workers.push(spawn_worker(&url, &format!("w-poison-{started}"), &env));
            started += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let error = run
        .join()
        .unwrap()
        .expect_err("the task is dead-lettered")
        .to_string();
    let error = format!("{error:#}");
    assert!(error.contains("crash_worker"), "{error}");
    assert!(
        error.contains("delivered 3 times, over the cap of 2"),
        "{error}"
    );
    let mut conn = server.conn();
    let runs: u64 = conn.get("crash_runs").unwrap();
    assert_eq!(runs, 2, "the task ran {runs} times");
    let dead = dead_letters_at_least(&mut conn, 1);
    assert_eq!(dead, 1);
    // (A worker acknowledges a job after sending its reply: the run may end first.)
    wait_until_nothing_pending(&mut conn, "jobs left pending");
}

/// A copy of this test binary whose GNU build id differs (one byte of the note flipped): the
/// same tasks, another build.
fn other_build() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut bytes = std::fs::read(&exe).unwrap();
    let id = graflow::backend::build_id();
    let raw: Vec<u8> = (0..id.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&id[i..i + 2], 16).expect("a GNU build id (hex)"))
        .collect();
    let at = bytes
        .windows(raw.len())
        .position(|w| w == raw)
        .expect("the build id note in the binary");
    bytes[at] ^= 0xff;
    let copy = std::env::temp_dir().join(format!("graflow-other-build-{}", std::process::id()));
    std::fs::write(&copy, bytes).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    copy
}

#[test]
fn a_job_no_worker_of_its_build_serves_fails_naming_the_builds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let copy = other_build();
    let worker = spawn_worker_of(Some(&copy), &server.url(), "w-other-build", &[]);
    worker.wait_started();
    let engine = engine(
        &server,
        RedisOptions::new().with_no_worker_timeout(Duration::from_secs(3)),
    );
    let mut wf = graflow::Workflow::builder("other-build");
    wf.add(total::task().with_input("sample", sample("x")));
    let error = format!(
        "{:#}",
        engine
            .run(&wf.build(), RunOptions::new())
            .expect_err("refused")
    );
    let _ = std::fs::remove_file(&copy);
    let ours = graflow::backend::build_id();
    assert!(error.contains(ours), "{error}");
    assert!(error.contains("another build"), "{error}");
    assert!(error.contains("no live worker of this build"), "{error}");
    assert!(
        error.contains(&format!("--graflow-worker {}", server.url())),
        "says how to start a worker of this build: {error}"
    );
    // The worker handed the job back untouched: it ran nothing, failed nothing.
    assert!(
        worker.log().contains("handed back a job of another build"),
        "{}",
        worker.log()
    );
    let theirs_logged = worker.log();
    let theirs = theirs_logged
        .split("build_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|id| id.trim_matches('"'))
        .expect("the worker logs its build id");
    assert_ne!(theirs, ours);
    assert!(error.contains(theirs), "{error} does not name {theirs}");
}

#[test]
fn redis_restarted_mid_run_loses_nothing() {
    let Some(mut server) = RedisServer::start_with(true) else {
        return;
    };
    let url = server.url();
    let env = [
        ("GRAFLOW_WORKER_LEASE", "2s"),
        ("GRAFLOW_WORKER_CONCURRENCY", "4"),
    ];
    let a = spawn_worker(&url, "w-restart-a", &env);
    let b = spawn_worker(&url, "w-restart-b", &env);
    a.wait_started();
    b.wait_started();
    let n = 40u64;
    let mut wf = graflow::Workflow::builder("restart");
    for i in 0..n {
        wf.add(
            slow_square::task()
                .with_id(format!("r{i}"))
                .with_input("key", format!("r{i}"))
                .with_input("n", i)
                .with_input("sleep_ms", 100u64),
        );
    }
    let wf = wf.build();
    let engine = engine(
        &server,
        RedisOptions::new().with_reconnect_window(Duration::from_secs(20)),
    );
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));
    std::thread::sleep(Duration::from_millis(400));
    server.restart();
    // With AOF (appendfsync always) nothing acknowledged is lost: the run completes, every
    // result right, no task run more than twice.
    let report = run.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "the run failed after a Redis restart: {e:#}\n{}\n{}",
            a.log(),
            b.log()
        )
    });
    let mut conn = server.conn();
    for i in 0..n {
        assert_eq!(report.result::<u64>(&format!("r{i}")).unwrap(), i * i);
        let runs: u64 = conn.get(format!("runs:r{i}")).unwrap();
        assert!(runs <= 2, "r{i} ran {runs} times");
    }
    // (A worker acknowledges a job after sending its reply: the run may end first.)
    wait_until_nothing_pending(&mut conn, "jobs left pending");
}

#[test]
fn the_workers_concurrency_limit_holds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(
        &server.url(),
        "w-limit",
        &[("GRAFLOW_WORKER_CONCURRENCY", "3")],
    );
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("limit");
    for i in 0..12u64 {
        wf.add(counted::task().with_id(format!("c{i}")).with_input("n", i));
    }
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .expect("the run succeeds");
    for i in 0..12u64 {
        assert_eq!(report.result::<u64>(&format!("c{i}")).unwrap(), i + 1);
    }
    let max: u64 = server.conn().get("max_running").unwrap();
    assert_eq!(max, 3, "at most 3 at once, and 12 tasks reach 3");
}

#[test]
fn timeouts_and_cancellation_reach_the_worker() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-timeout", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("timeout");
    wf.add(
        sleepy::task()
            .with_input("key", "t".to_owned())
            .with_timeout(Duration::from_millis(500)),
    );
    let error = format!(
        "{:#}",
        engine
            .run(&wf.build(), RunOptions::new())
            .expect_err("times out")
    );
    assert!(error.contains("timed out"), "{error}");
    // The worker stops the attempt (told by the engine, or at the timeout the job carries,
    // whichever comes first) and acknowledges its job.
    worker.wait_for_log("; stopped", PROMPTLY);
    let mut conn = server.conn();
    wait_until_nothing_pending(&mut conn, "the cancelled job is still pending");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !conn.exists::<_, bool>("finished:t").unwrap(),
        "the attempt ran on"
    );
}

#[test]
fn a_cancelled_run_stops_its_remote_attempts() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-cancel", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("cancel");
    wf.add(sleepy::task().with_input("key", "c".to_owned()));
    let wf = wf.build();
    let runtime = graflow::tokio::runtime::Runtime::new().unwrap();
    // The run's future is dropped once its task runs: the run is cancelled, no timeout involved.
    let url = server.url();
    runtime.block_on(async {
        let mut run = Box::pin(engine.execute(&wf, RunOptions::new()));
        until_sleepy_started(&mut run, &url, "c").await;
    });
    worker.wait_for_log("attempt cancelled by the engine; stopped", PROMPTLY);
    let mut conn = server.conn();
    wait_until_nothing_pending(&mut conn, "the cancelled job is still pending");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !conn.exists::<_, bool>("finished:c").unwrap(),
        "the attempt ran on"
    );
}

#[test]
fn named_queues_and_a_queue_without_workers() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-gpu", &[("GRAFLOW_WORKER_QUEUES", "gpu")]);
    worker.wait_started();
    let engine = engine(
        &server,
        RedisOptions::new().with_no_worker_timeout(Duration::from_millis(800)),
    );
    let mut wf = graflow::Workflow::builder("gpu");
    wf.add(on_gpu::task().with_input("n", 3u64));
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .expect("the gpu worker serves it");
    let text: String = report.result("on_gpu").unwrap();
    assert_eq!(text, format!("gpu 3 on {}", worker.pid()));

    // Nobody serves the default queue.
    let mut wf = graflow::Workflow::builder("nobody");
    wf.add(total::task().with_input("sample", sample("x")));
    let started = Instant::now();
    let failed = engine
        .run(&wf.build(), RunOptions::new())
        .expect_err("no worker");
    let error = format!("{failed:#}");
    assert!(
        error.contains("no live worker has served queue `default`"),
        "{error}"
    );
    // Infrastructure that is not there now: a kind code can match, retried by a policy.
    assert_eq!(
        failed.failure().map(|f| f.cause.kind()),
        Some(graflow::ErrorKind::Handler(
            graflow::HandlerFailure::Unavailable
        )),
        "{error}"
    );
    // Its no-worker wait (800 ms), not forever.
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
}

#[test]
fn a_worker_runs_a_task_through_its_own_process_handler() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-inner", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("inner");
    wf.add(isolated::task());
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .expect("the run succeeds");
    let (pid, parent): (u32, u32) = report.result("isolated").unwrap();
    assert_eq!(
        parent,
        worker.pid(),
        "the task's process is the worker's child"
    );
    assert_ne!(pid, worker.pid());
}

#[test]
fn an_oversized_outcome_fails_its_task_clearly() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-big", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new().with_max_outcome(4096));
    let mut wf = graflow::Workflow::builder("big");
    wf.add(big::task().with_input("bytes", 100_000u64));
    let error = format!(
        "{:#}",
        engine
            .run(&wf.build(), RunOptions::new())
            .expect_err("too big")
    );
    assert!(error.contains("over the engine's limit of 4096"), "{error}");
    assert!(error.contains("'big'"), "{error}");
    // A small one still passes.
    let mut wf = graflow::Workflow::builder("small");
    wf.add(big::task().with_input("bytes", 100u64));
    assert_eq!(
        engine
            .run(&wf.build(), RunOptions::new())
            .unwrap()
            .result::<String>("big")
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn malformed_entries_are_skipped_and_counted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = server.conn();
    // Garbage before any worker starts: no fields a worker reads, a bad version, a huge number.
    let _: String = conn
        .xadd("graflow:queue:default", "*", &[("junk", "1")])
        .unwrap();
    let _: String = conn
        .xadd(
            "graflow:queue:default",
            "*",
            &[
                ("v", "9"),
                ("att", "a"),
                ("reply", "graflow:replies:nobody"),
            ],
        )
        .unwrap();
    let _: String = conn
        .xadd(
            "graflow:queue:default",
            "*",
            &[
                ("v", "1"),
                ("att", "nobody-0000000000000002"),
                ("reply", "graflow:replies:nobody"),
                ("task", "t"),
                ("timeout_ms", "0"),
                ("inner", "direct"),
                ("max_out", "10"),
                ("inv", "not a frame"),
            ],
        )
        .unwrap();
    // A field name that is not UTF-8 (one such entry once made a whole read unreadable).
    let _: String = redis::cmd("XADD")
        .arg("graflow:queue:default")
        .arg("*")
        .arg(&b"\xff\xfe"[..])
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let worker = spawn_worker(&server.url(), "w-junk", &[]);
    worker.wait_started();
    let handler = RedisHandler::connect(&server.url()).unwrap();
    // The same garbage on this engine's own reply stream: skipped and counted, not fatal.
    let _: String = redis::cmd("XADD")
        .arg(format!("graflow:replies:{}", handler.client_name()))
        .arg("*")
        .arg(&b"\xff"[..])
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let mut engine = WorkflowEngine::new();
    engine.register_handler("redis", handler.clone());
    let mut wf = graflow::Workflow::builder("after-junk");
    wf.add(total::task().with_input("sample", sample("ok")));
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .expect("the worker survived the junk");
    assert!((report.result::<f64>("total").unwrap() - 3.0).abs() < 1e-9);
    worker.wait_for_log("skipped a malformed job", PROMPTLY);
    let dead = dead_letters_at_least(&mut conn, 3);
    assert_eq!(dead, 3, "the three unreadable entries are dead-lettered");
    assert_eq!(handler.malformed_replies(), 1);
    // (A worker acknowledges a job after sending its reply: the run may end first.)
    wait_until_nothing_pending(&mut conn, "jobs left pending");
}

#[test]
fn unreachable_redis_fails_fast_naming_the_url() {
    let started = Instant::now();
    let error =
        RedisHandler::connect("redis://127.0.0.1:1/0").expect_err("nothing listens on port 1");
    assert!(matches!(error, RedisError::Unreachable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("redis://127.0.0.1:1/0"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let error = RedisHandler::connect("http://nope").expect_err("not a redis URL");
    assert!(error.to_string().contains("http://nope"), "{error}");

    let runtime = graflow::tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(
            graflow::worker::Worker::new("redis://127.0.0.1:1/0").run_until(std::future::pending()),
        )
        .expect_err("a worker fails fast too");
    assert!(
        error.to_string().contains("redis://127.0.0.1:1/0"),
        "{error}"
    );
}

#[test]
fn task_options_are_validated_before_anything_runs() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("bad-queue");
    wf.add(
        total::task()
            .with_config("queue", "no spaces allowed")
            .with_input("sample", sample("x")),
    );
    let error = format!(
        "{:#}",
        engine
            .run(&wf.build(), RunOptions::new())
            .expect_err("invalid")
    );
    assert!(error.contains("no spaces allowed"), "{error}");
}

#[test]
fn a_frozen_worker_loses_its_lease_and_the_first_outcome_wins() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let lease = [("GRAFLOW_WORKER_LEASE", "500ms")];
    let frozen = spawn_worker(&url, "w-frozen", &lease);
    frozen.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("frozen");
    wf.add(
        slow_square::task()
            .with_input("key", "f".to_owned())
            .with_input("n", 5u64)
            .with_input("sleep_ms", 1500u64),
    );
    let wf = wf.build();
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));
    let mut conn = server.conn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !conn.exists::<_, bool>("runs:f").unwrap() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Freeze the worker (as a long GC pause or a stalled VM would) past its lease.
    // SAFETY: signals to our own child.
    unsafe { libc::kill(frozen.pid() as libc::pid_t, libc::SIGSTOP) };
    let other = spawn_worker(&url, "w-thawed-other", &lease);
    while conn.get::<_, u64>("runs:f").unwrap() < 2 {
        assert!(
            Instant::now() < deadline,
            "nobody took the job over:\n{}",
            other.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: as above.
    unsafe { libc::kill(frozen.pid() as libc::pid_t, libc::SIGCONT) };
    let report = run.join().unwrap().expect("the run succeeds");
    assert_eq!(report.result::<u64>("slow_square").unwrap(), 25);
    assert_eq!(
        report.task("slow_square").unwrap().runner,
        Some("worker w-thawed-other, delivery 2")
    );
    frozen.wait_for_log("lost the lease of a job", PROMPTLY);
    std::thread::sleep(Duration::from_secs(2));
    let runs: u64 = conn.get("runs:f").unwrap();
    assert_eq!(runs, 2);
    // (A worker acknowledges a job after sending its reply: the run may end first.)
    wait_until_nothing_pending(&mut conn, "jobs left pending");
}

#[test]
fn a_job_lost_by_redis_fails_its_attempt_instead_of_waiting_forever() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    // No worker, and a long no-worker wait: only the lost-job check can end this attempt.
    let engine = engine(
        &server,
        RedisOptions::new().with_no_worker_timeout(Duration::from_secs(120)),
    );
    let mut wf = graflow::Workflow::builder("lost");
    wf.add(total::task().with_input("sample", sample("x")));
    let wf = wf.build();
    let started = Instant::now();
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));
    let mut conn = server.conn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while conn.xlen::<_, u64>("graflow:queue:default").unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the job was never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Restarted without persistence: the job is gone.
    server.restart();
    let error = format!("{:#}", run.join().unwrap().expect_err("the job is lost"));
    assert!(error.contains("vanished"), "{error}");
    assert!(error.contains("without an outcome"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn sigterm_lets_a_worker_finish_what_it_runs() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut worker = spawn_worker(&server.url(), "w-sigterm", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("sigterm");
    wf.add(
        slow_square::task()
            .with_input("key", "term".to_owned())
            .with_input("n", 4u64)
            .with_input("sleep_ms", 1000u64),
    );
    let wf = wf.build();
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));
    let mut conn = server.conn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !conn.exists::<_, bool>("runs:term").unwrap() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = worker.terminate();
    assert!(status.success(), "{status:?}\n{}", worker.log());
    let report = run
        .join()
        .unwrap()
        .expect("the worker finished the task before leaving");
    assert_eq!(report.result::<u64>("slow_square").unwrap(), 16);
    let live: u64 = conn.zcard("graflow:workers:default").unwrap();
    assert_eq!(live, 0, "the worker left the live set");
}

#[cfg(feature = "docker")]
#[test]
fn a_worker_runs_a_task_in_a_container_on_its_machine() {
    if common::skip_without_docker() {
        return;
    }
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-docker", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("inner-docker");
    wf.add(in_a_container::task());
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", worker.log()));
    let os: String = report.result("in_a_container").unwrap();
    assert!(os.contains("bookworm") || os.contains("Debian"), "{os}");
    assert_eq!(
        report.task("in_a_container").unwrap().runner,
        Some("worker w-docker, delivery 1")
    );
    // The container's lifecycle is logged on the worker, inside the attempt.
    assert!(worker.log().contains("graflow::docker"), "{}", worker.log());
}

#[test]
fn hostile_entries_and_forged_replies_fail_only_what_they_touch() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = server.conn();
    // 5,000 fields; a job naming a key of another type as its reply stream.
    let mut many = redis::cmd("XADD");
    many.arg("graflow:queue:default").arg("*");
    for i in 0..5000 {
        many.arg(format!("f{i}")).arg("x");
    }
    let _: String = many.query(&mut conn).unwrap();
    let _: () = conn.set("graflow:replies:x", "not a stream").unwrap();
    let _: String = conn
        .xadd(
            "graflow:queue:default",
            "*",
            &[
                ("v", "1"),
                ("att", "x-1"),
                ("reply", "graflow:replies:x"),
                ("task", "t"),
                ("timeout_ms", "0"),
                ("inner", "direct"),
                ("max_out", "10"),
                ("inv", "garbage"),
            ],
        )
        .unwrap();

    // A forged reply for an attempt in flight (no worker yet): it must fail that attempt,
    // never pass as its result.
    let handler = RedisHandler::connect_with(
        &server.url(),
        RedisOptions::new().with_no_worker_timeout(Duration::from_secs(60)),
    )
    .unwrap();
    let mut forged = WorkflowEngine::new();
    forged.register_handler("redis", handler.clone());
    let mut wf = graflow::Workflow::builder("forged");
    wf.add(total::task().with_input("sample", sample("forged")));
    let wf = wf.build();
    let run = std::thread::spawn(move || forged.run(&wf, RunOptions::new()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let att = loop {
        let entries: redis::streams::StreamRangeReply =
            conn.xrange_all("graflow:queue:default").unwrap();
        if let Some(att) = entries.ids.iter().find_map(|e| {
            e.get::<String>("att")
                .filter(|a| a.starts_with(handler.client_name()))
        }) {
            break att;
        }
        assert!(Instant::now() < deadline, "the job was never queued");
        std::thread::sleep(Duration::from_millis(10));
    };
    let _: String = conn
        .xadd(
            format!("graflow:replies:{}", handler.client_name()),
            "*",
            &[
                ("v", "1"),
                ("att", att.as_str()),
                ("worker", "forger"),
                ("delivery", "1"),
                ("logs", ""),
                ("kind", "outcome"),
                ("out", "GRAFLOW garbage that is no frame"),
            ],
        )
        .unwrap();
    let error = format!(
        "{:#}",
        run.join().unwrap().expect_err("a forged reply is refused")
    );
    assert!(error.contains("refused"), "{error}");

    // The worker survives all of it and serves the next run.
    let worker = spawn_worker(&server.url(), "w-hostile", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("after");
    wf.add(total::task().with_input("sample", sample("ok")));
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", worker.log()));
    assert!((report.result::<f64>("total").unwrap() - 3.0).abs() < 1e-9);
    let kind: String = redis::cmd("TYPE")
        .arg("graflow:replies:x")
        .query(&mut conn)
        .unwrap();
    assert_eq!(kind, "string", "nothing was written into the other key");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending_count(&mut conn, "default") > 0 {
        assert!(
            Instant::now() < deadline,
            "hostile entries left pending:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dropping_the_engine_mid_run_inside_async_code_is_clean() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-drop", &[]);
    worker.wait_started();
    let url = server.url();
    let runtime = graflow::tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut engine = WorkflowEngine::new();
        engine.register_handler("redis", RedisHandler::connect(&url).unwrap());
        let mut wf = graflow::Workflow::builder("drop");
        wf.add(sleepy::task().with_input("key", "d".to_owned()));
        let wf = wf.build();
        let mut run = Box::pin(engine.execute(&wf, RunOptions::new()));
        until_sleepy_started(&mut run, &url, "d").await;
        drop(run);
        // The handler, its I/O runtime and its background tasks go here, inside async code.
        drop(engine);
    });
    drop(runtime);
    worker.wait_for_log("attempt cancelled by the engine; stopped", PROMPTLY);
}

#[test]
fn redis_gone_for_good_fails_the_run_naming_the_url() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-gone", &[]);
    worker.wait_started();
    let engine = engine(
        &server,
        RedisOptions::new().with_no_worker_timeout(Duration::from_secs(2)),
    );
    let mut wf = graflow::Workflow::builder("gone");
    wf.add(
        slow_square::task()
            .with_input("key", "g".to_owned())
            .with_input("n", 2u64)
            .with_input("sleep_ms", 3000u64),
    );
    let wf = wf.build();
    let run = std::thread::spawn(move || engine.run(&wf, RunOptions::new()));
    let mut conn = server.conn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !conn.exists::<_, bool>("runs:g").unwrap() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = server.url();
    server.kill();
    let killed = Instant::now();
    let error = format!("{:#}", run.join().unwrap().expect_err("Redis is gone"));
    assert!(
        error.contains("lost contact with Redis") && error.contains(&url),
        "{error}"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
}

/// Adds two tasks (run wherever their handler says: here, "direct") and iterates once.
#[task(handler = "redis", max_cycles = 2)]
fn plans_on_a_worker(rounds: u32, ctx: &TaskContext) -> graflow::Result<u32> {
    if ctx.cycle() == 1 {
        for i in 0..2u32 {
            ctx.next_task(
                planned::task()
                    .with_id(format!("planned_{i}"))
                    .with_input("i", i),
            )?;
        }
        ctx.next_iteration().with("rounds", rounds + 1).request()?;
    }
    Ok(rounds)
}

#[task]
fn planned(i: u32) -> u32 {
    i + 100
}

#[test]
fn dynamic_requests_come_back_from_a_redis_worker() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let worker = spawn_worker(&server.url(), "w-dynamic", &[]);
    worker.wait_started();
    let engine = engine(&server, RedisOptions::new());
    let mut wf = graflow::Workflow::builder("dynamic-on-redis");
    wf.add(plans_on_a_worker::task().with_input("rounds", 1u32));
    let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
    assert_eq!(report.result::<u32>("plans_on_a_worker").unwrap(), 2);
    assert_eq!(report.task("plans_on_a_worker").unwrap().runs, 2);
    assert_eq!(report.result::<u32>("planned_1").unwrap(), 101);
    assert!(report.task("planned_0").unwrap().added);
}

/// Writes a marker file: proof that it ran.
#[task(handler = "redis")]
fn marker(path: String) -> u64 {
    std::fs::write(&path, b"ran").expect("write the marker file");
    1
}

/// Waits here, in the engine's process.
#[task]
fn local_wait(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Queued only once `local_wait` ends (in the tests, while Redis is frozen).
#[task(handler = "redis")]
fn after_wait(local_wait: u64, key: String) -> u64 {
    with_task_conn(|conn| conn.incr::<_, _, ()>(format!("runs:{key}"), 1));
    local_wait + 1
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stream_len(conn: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query(conn).unwrap()
}

/// Not a test: the engine program that `an_engine_killed_with_sigkill_leaves_no_job_to_run`
/// starts and kills (three marker tasks, queued with no worker).
#[test]
#[ignore = "a helper program that another test starts"]
fn orphan_engine_program() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("GRAFLOW_TEST_ENGINE_URL"),
        std::env::var("GRAFLOW_TEST_MARKERS"),
    ) else {
        return;
    };
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "redis",
        RedisHandler::connect_with(
            &url,
            RedisOptions::new().with_no_worker_timeout(Duration::from_secs(3600)),
        )
        .expect("connect to the test's Redis"),
    );
    let mut wf = graflow::Workflow::builder("orphans");
    for i in 0..3 {
        wf.add(
            marker::task()
                .with_id(format!("orphan{i}"))
                .with_input("path", format!("{dir}/orphan{i}")),
        );
    }
    let _ = engine.run(&wf.build(), RunOptions::new());
}

#[test]
fn an_engine_killed_with_sigkill_leaves_no_job_to_run() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let markers = std::env::temp_dir().join(format!(
        "graflow-markers-{}-{}",
        std::process::id(),
        server.port
    ));
    std::fs::create_dir_all(&markers).unwrap();
    let mut conn = server.conn();
    let mut program = spawn_test_program(
        "orphan_engine_program",
        &[
            ("GRAFLOW_TEST_ENGINE_URL", url.as_str()),
            ("GRAFLOW_TEST_MARKERS", markers.to_str().unwrap()),
        ],
    );
    wait_for(
        "the engine program queued its 3 jobs",
        Duration::from_secs(60),
        || stream_len(&mut conn, "graflow:queue:default") >= 3,
    );
    let dead_engine: Vec<String> = conn.keys("graflow:engine:*").unwrap();
    assert_eq!(dead_engine.len(), 1, "{dead_engine:?}\n{}", program.log());
    program.kill();

    // A live engine queues jobs too, while no worker runs.
    let live = engine(
        &server,
        RedisOptions::new().with_no_worker_timeout(Duration::from_secs(120)),
    );
    let mut wf = graflow::Workflow::builder("alive");
    for i in 0..3 {
        wf.add(
            marker::task().with_id(format!("live{i}")).with_input(
                "path",
                markers
                    .join(format!("live{i}"))
                    .to_str()
                    .unwrap()
                    .to_owned(),
            ),
        );
    }
    let wf = wf.build();
    let run = std::thread::spawn(move || live.run(&wf, RunOptions::new()));
    wait_for(
        "the live engine queued its jobs",
        Duration::from_secs(30),
        || stream_len(&mut conn, "graflow:queue:default") >= 6,
    );
    wait_for(
        "the killed engine's liveness key expired",
        Duration::from_secs(60),
        || !conn.exists::<_, bool>(&dead_engine[0]).unwrap(),
    );
    // The live engine's key lost, as when Redis restarts without persistence: its jobs must
    // still run (the worker waits for the engine to write it again).
    let live_keys: Vec<String> = conn.keys("graflow:engine:*").unwrap();
    assert_eq!(live_keys.len(), 1, "{live_keys:?}");
    let _: () = conn.del(&live_keys[0]).unwrap();
    let worker = spawn_worker(&url, "w-orphans", &[]);
    let report = run
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the live engine's run failed: {e:#}\n{}", worker.log()));
    for i in 0..3 {
        assert_eq!(report.result::<u64>(&format!("live{i}")).unwrap(), 1);
        assert!(markers.join(format!("live{i}")).exists());
    }
    wait_for(
        "the killed engine's jobs went to the dead letters",
        Duration::from_secs(60),
        || stream_len(&mut conn, "graflow:dead:default") >= 3,
    );
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("graflow:dead:default")
        .arg("-")
        .arg("+")
        .query::<redis::streams::StreamRangeReply>(&mut conn)
        .unwrap()
        .ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .iter()
                .filter_map(|(k, v)| {
                    redis::from_redis_value::<String>(v.clone())
                        .ok()
                        .map(|v| (k.clone(), v))
                })
                .collect();
            (e.id, fields)
        })
        .collect();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (_, fields) in &dead {
        assert!(
            fields["reason"].contains("its engine is gone"),
            "{fields:?}"
        );
        assert!(fields["task"].starts_with("orphan"), "{fields:?}");
    }
    for i in 0..3 {
        assert!(
            !markers.join(format!("orphan{i}")).exists(),
            "orphan{i} ran for a dead engine"
        );
    }
    assert_eq!(pending_count(&mut conn, "default"), 0);
    assert_eq!(stream_len(&mut conn, "graflow:queue:default"), 0);
    let _ = std::fs::remove_dir_all(&markers);
}

#[test]
fn a_frozen_redis_server_is_survived() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let env = [("GRAFLOW_WORKER_CONCURRENCY", "2")];
    let a = spawn_worker(&url, "w-frozen-a", &env);
    let b = spawn_worker(&url, "w-frozen-b", &env);
    a.wait_started();
    b.wait_started();
    let engine = std::sync::Arc::new(engine(&server, RedisOptions::new()));
    let mut wf = graflow::Workflow::builder("frozen");
    for i in 0..4u64 {
        wf.add(
            slow_square::task()
                .with_id(format!("f{i}"))
                .with_input("key", format!("f{i}"))
                .with_input("n", i)
                .with_input("sleep_ms", 500u64),
        );
    }
    let wait = wf.add(local_wait::task().with_input("ms", 2000u64));
    let late = wf.add(after_wait::task().with_input("key", "late".to_owned()));
    wf.edge(wait, late);
    let wf = wf.build();
    let running = engine.clone();
    let run = std::thread::spawn(move || running.run(&wf, RunOptions::new()));
    let mut conn = server.conn();
    wait_for("a task started", Duration::from_secs(30), || {
        conn.exists::<_, bool>("runs:f0").unwrap()
    });
    // Frozen past every response timeout (10 s); `after_wait` is queued meanwhile.
    server.freeze();
    std::thread::sleep(Duration::from_secs(14));
    server.thaw();
    let report = run.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "the run failed after Redis froze: {e:#}\n{}\n{}",
            a.log(),
            b.log()
        )
    });
    for i in 0..4u64 {
        assert_eq!(report.result::<u64>(&format!("f{i}")).unwrap(), i * i);
    }
    assert_eq!(report.result::<u64>("after_wait").unwrap(), 2001);
    let runs: u64 = conn.get("runs:late").unwrap();
    assert_eq!(runs, 1, "queued once, run once");
    // The workers carry on serving.
    let mut wf = graflow::Workflow::builder("after-the-freeze");
    for i in 0..4u64 {
        wf.add(
            slow_square::task()
                .with_id(format!("g{i}"))
                .with_input("key", format!("g{i}"))
                .with_input("n", i)
                .with_input("sleep_ms", 10u64),
        );
    }
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .unwrap_or_else(|e| {
            panic!(
                "a run after the freeze failed: {e:#}\n{}\n{}",
                a.log(),
                b.log()
            )
        });
    for i in 0..4u64 {
        assert_eq!(report.result::<u64>(&format!("g{i}")).unwrap(), i * i);
    }
}

#[test]
fn jobs_go_only_to_workers_of_their_build() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let copy = other_build();
    let stale = spawn_worker_of(Some(&copy), &url, "w-stale", &[]);
    stale.wait_started();
    let engine = std::sync::Arc::new(engine(&server, RedisOptions::new()));
    let n = 30u64;
    let mut wf = graflow::Workflow::builder("routed");
    for i in 0..n {
        wf.add(
            slow_square::task()
                .with_id(format!("b{i}"))
                .with_input("key", format!("b{i}"))
                .with_input("n", i)
                .with_input("sleep_ms", 20u64),
        );
    }
    let wf = wf.build();
    let running = engine.clone();
    let run = std::thread::spawn(move || running.run(&wf, RunOptions::new()));
    // Only the stale worker runs yet: it takes jobs it cannot run, and must hand them back.
    stale.wait_for_log("of another build", Duration::from_secs(30));
    let current = [
        spawn_worker(&url, "w-current-1", &[]),
        spawn_worker(&url, "w-current-2", &[]),
    ];
    let report = run.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "a run failed beside a worker of another build: {e:#}\n{}",
            stale.log()
        )
    });
    let _ = std::fs::remove_file(&copy);
    for i in 0..n {
        let id = format!("b{i}");
        assert_eq!(report.result::<u64>(&id).unwrap(), i * i);
        let runner = report.task(&id).unwrap().runner.unwrap().to_owned();
        assert!(
            runner.starts_with("worker w-current-") && runner.ends_with("delivery 1"),
            "{id}: {runner}"
        );
    }
    drop(current);
}

#[test]
fn dead_workers_leave_the_consumer_group() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = server.url();
    let env = [
        ("GRAFLOW_WORKER_LEASE", "1s"),
        ("GRAFLOW_WORKER_CONCURRENCY", "1"),
    ];
    let mut killed = [
        spawn_worker(&url, "w-gone-1", &env),
        spawn_worker(&url, "w-gone-2", &env),
    ];
    let mut left = spawn_worker(&url, "w-left", &env);
    for worker in killed.iter().chain([&left]) {
        worker.wait_started();
    }
    let mut conn = server.conn();
    let consumers = |conn: &mut redis::Connection| -> Vec<String> {
        let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("graflow:queue:default")
            .arg("graflow-workers")
            .query(conn)
            .unwrap();
        let mut names: Vec<String> = reply.consumers.into_iter().map(|c| c.name).collect();
        names.sort();
        names
    };
    // A worker is a consumer of the group once it was given a job: run tasks until each was.
    let engine = engine(&server, RedisOptions::new());
    for round in 0..10 {
        if consumers(&mut conn).len() == 3 {
            break;
        }
        assert!(
            round < 9,
            "some worker never got a job: {:?}",
            consumers(&mut conn)
        );
        let mut wf = graflow::Workflow::builder("consumers");
        for i in 0..12u64 {
            wf.add(
                slow_square::task()
                    .with_id(format!("c{i}"))
                    .with_input("key", format!("c{round}-{i}"))
                    .with_input("n", i)
                    .with_input("sleep_ms", 200u64),
            );
        }
        engine
            .run(&wf.build(), RunOptions::new())
            .expect("the run succeeds");
    }
    for worker in &mut killed {
        worker.kill();
    }
    assert!(left.terminate().success());
    assert!(
        !consumers(&mut conn).contains(&"w-left".to_owned()),
        "a worker that exits cleanly leaves the group"
    );
    let live = spawn_worker(&url, "w-live", &env);
    live.wait_started();
    // (A worker is a consumer only once it got a job: w-live may not be one.)
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = consumers(&mut conn);
        if !left.iter().any(|name| name.starts_with("w-gone-")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed workers' consumers were not removed: {left:?}\n{}",
            live.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        live.log().contains("removed the consumer of a worker gone"),
        "{}",
        live.log()
    );
}

#[test]
fn each_connection_failure_gets_its_own_advice() {
    let Some(server) = CustomServer::start("--port", &["--requirepass", "s3cret-pass"]) else {
        return;
    };
    let port = server.port;
    let error = RedisHandler::connect(&format!("redis://:wrong-pass@127.0.0.1:{port}/0"))
        .expect_err("a wrong password");
    let text = error.to_string();
    assert!(matches!(error, RedisError::Credentials { .. }), "{error:?}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains(&format!("redis://:***@127.0.0.1:{port}/0")),
        "{text}"
    );
    assert!(
        !text.contains("wrong-pass"),
        "the password is never shown: {text}"
    );
    assert!(!text.contains("start redis-server"), "{text}");
    RedisHandler::connect(&format!("redis://:s3cret-pass@127.0.0.1:{port}/0"))
        .expect("the right password");
    let error = RedisHandler::connect(&format!("rediss://:s3cret-pass@127.0.0.1:{port}/0"))
        .expect_err("TLS to a server that does not speak it");
    let text = error.to_string();
    assert!(matches!(error, RedisError::Tls { .. }), "{error:?}");
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(!text.contains("s3cret-pass"), "{text}");
    drop(server);
    let error = RedisHandler::connect(&format!("redis://127.0.0.1:{port}/0"))
        .expect_err("nothing listens there now");
    assert!(matches!(error, RedisError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("start redis-server"), "{error}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signs, and another CA,
/// made with `openssl`; `None` (the test skipped) without it.
struct Certs {
    dir: std::path::PathBuf,
}

impl Certs {
    fn make() -> Option<Certs> {
        if !redis_common::available("openssl", "apt-get install openssl") {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "graflow-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=graflow test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!(
                    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
                ),
            )
            .unwrap();
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN=graflow test {name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Some(Certs { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    fn server(&self, auth_clients: &str) -> Option<CustomServer> {
        CustomServer::start(
            "--tls-port",
            &[
                "--port",
                "0",
                "--tls-cert-file",
                &self.path("server.crt"),
                "--tls-key-file",
                &self.path("server.key"),
                "--tls-ca-cert-file",
                &self.path("ca.crt"),
                "--tls-auth-clients",
                auth_clients,
            ],
        )
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `total` task through a TLS connection, on a worker configured by the environment.
fn total_over_tls(url: &str, tls: TlsOptions, worker_env: &[(&str, &str)], name: &str) {
    let worker = spawn_worker(url, name, worker_env);
    worker.wait_started();
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "redis",
        RedisHandler::connect_with(url, RedisOptions::new().with_tls(tls))
            .expect("connect over TLS"),
    );
    let mut wf = graflow::Workflow::builder("tls");
    wf.add(total::task().with_input("sample", sample("tls")));
    let report = engine
        .run(&wf.build(), RunOptions::new())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", worker.log()));
    assert!((report.result::<f64>("total").unwrap() - 3.0).abs() < 1e-9);
}

#[test]
fn tls_and_mutual_tls_to_redis() {
    let Some(certs) = Certs::make() else {
        return;
    };
    let Some(server) = certs.server("no") else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let ca = certs.path("ca.crt");
    total_over_tls(
        &url,
        TlsOptions::new().with_ca_cert(&ca),
        &[("GRAFLOW_REDIS_CA_CERT", ca.as_str())],
        "w-tls",
    );
    // A server whose certificate the CA given does not sign is refused, saying so.
    let error = RedisHandler::connect_with(
        &url,
        RedisOptions::new().with_tls(TlsOptions::new().with_ca_cert(certs.path("other-ca.crt"))),
    )
    .expect_err("a certificate of another CA");
    let text = error.to_string();
    assert!(matches!(error, RedisError::Tls { .. }), "{error:?}");
    assert!(
        text.contains("TLS handshake") && text.contains("GRAFLOW_REDIS_CA_CERT"),
        "{text}"
    );

    // Mutual TLS: without a client certificate the server refuses; with one, tasks run.
    let Some(server) = certs.server("yes") else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let error = RedisHandler::connect_with(
        &url,
        RedisOptions::new().with_tls(TlsOptions::new().with_ca_cert(&ca)),
    )
    .expect_err("no client certificate");
    assert!(
        matches!(error, RedisError::Tls { .. }),
        "{error:?}: {error}"
    );
    let (cert, key) = (certs.path("client.crt"), certs.path("client.key"));
    total_over_tls(
        &url,
        TlsOptions::new()
            .with_ca_cert(&ca)
            .with_client_cert(&cert, &key),
        &[
            ("GRAFLOW_REDIS_CA_CERT", ca.as_str()),
            ("GRAFLOW_REDIS_CLIENT_CERT", cert.as_str()),
            ("GRAFLOW_REDIS_CLIENT_KEY", key.as_str()),
        ],
        "w-mtls",
    );
}
