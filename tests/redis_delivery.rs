//! The "redis" handler delivering tasks to real worker processes (this test binary in worker
//! mode) against a real `redis-server`, and their results back: typed round trips with channel
//! writes and logs, the worker's concurrency limit, timeouts and cancellation reaching the worker,
//! oversized outcomes, inner handlers on the worker (process, docker), dynamic requests, and task
//! options validated before anything runs. Needs the `redis` feature (on by default).
#![cfg(feature = "redis")]

#[cfg(feature = "docker")]
mod common;
mod redis_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use graflow::redis::{RedisHandler, RedisOptions};
use graflow::{RunOptions, TaskContext, WorkflowEngine, task};
use redis::Commands;
use redis_common::{
    PROMPTLY, RedisServer, Sample, engine, sample, spawn_worker, task_conn, total,
    wait_until_nothing_pending,
};

graflow::enable_test_runner!();

fn logs() -> &'static std::sync::Mutex<Vec<u8>> {
    common::captured_logs()
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

/// Sums its upstream `summarise`'s values.
#[task(handler = "redis")]
fn measured(summarise: Sample) -> f64 {
    summarise.values.iter().sum()
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

/// Marks that it started, sleeps asynchronously (a cancelled attempt stops at once), then marks
/// that it finished.
#[task(handler = "redis")]
async fn sleepy(key: String) -> u64 {
    let _: () = task_conn().set(format!("started:{key}"), 1).unwrap();
    graflow::tokio::time::sleep(Duration::from_secs(5)).await;
    let _: () = task_conn().set(format!("finished:{key}"), 1).unwrap();
    1
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
