//! The "redis" handler when something fails mid-run, against a real `redis-server` and real worker
//! processes (this test binary in worker mode): a worker killed or frozen while it holds tasks,
//! leases kept by long tasks, a task that kills its worker dead-lettered at the cap, SIGTERM letting
//! a worker finish, Redis restarted, frozen, losing a job or gone for good, and the engine
//! SIGKILLed mid-run. Needs the `redis` feature (on by default).
#![cfg(feature = "redis")]

#[cfg(feature = "docker")]
mod common;
mod redis_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use graflow::redis::{RedisHandler, RedisOptions};
use graflow::{RunOptions, WorkflowEngine, task};
use redis::Commands;
use redis_common::{
    PROMPTLY, RedisServer, WorkerProcess, dead_letters_at_least, engine, pending_count, sample,
    slow_square, spawn_test_program, spawn_worker, task_conn, total, wait_until_nothing_pending,
    with_task_conn,
};

graflow::enable_test_runner!();

/// Kills its worker, every time.
#[task(handler = "redis")]
fn crash_worker() -> u64 {
    let mut conn = task_conn();
    let _: () = conn.incr("crash_runs", 1).unwrap();
    std::process::abort();
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
