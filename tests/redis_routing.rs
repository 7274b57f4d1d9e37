//! Which worker gets which job on the "redis" handler, against a real `redis-server` and real
//! worker processes (this test binary in worker mode): named queues and a queue without workers,
//! jobs going only to workers of their build, dead workers leaving the consumer group, and
//! malformed or hostile entries skipped, counted and dead-lettered. Needs the `redis` feature (on
//! by default).
#![cfg(feature = "redis")]

#[cfg(feature = "docker")]
mod common;
mod redis_common;

use std::time::{Duration, Instant};

use graflow::redis::{RedisHandler, RedisOptions};
use graflow::{RunOptions, WorkflowEngine, task};
use redis::Commands;
use redis_common::{
    PROMPTLY, RedisServer, dead_letters_at_least, engine, pending_count, sample, slow_square,
    spawn_worker, spawn_worker_of, total, wait_until_nothing_pending,
};

graflow::enable_test_runner!();

#[task(handler = "redis", queue = "gpu")]
fn on_gpu(n: u64) -> String {
    format!("gpu {n} on {}", std::process::id())
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

/// A worker given a store (`GRAFLOW_STORE`) records each attempt it runs there, naming itself:
/// with the engine's store the same database, one run shows the engine's attempt and the
/// worker's part of it.
#[cfg(feature = "store")]
#[test]
fn workers_record_their_attempts_in_their_store() {
    use graflow::store::{Location, Store};
    let Some(server) = RedisServer::start() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("graflow-worker-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("runs.db");
    let store_env = format!("sqlite:{}", db.display());
    let worker = spawn_worker(
        &server.url(),
        "w-recording",
        &[("GRAFLOW_STORE", &store_env)],
    );
    worker.wait_started();
    let store = Store::new(Location::Sqlite(db));
    let mut engine = engine(&server, RedisOptions::new());
    engine.set_recorder(Some(store.recorder()));
    let mut wf = graflow::Workflow::builder("recorded-remotely");
    wf.add(total::task().with_input("sample", sample("r")));
    let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
    let recorded = |store: &Store| {
        graflow::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                store.flush().await.unwrap();
                store.run(report.run_id()).await.unwrap()
            })
    };
    // The worker writes on its own schedule (every 100 ms): wait for its row.
    let deadline = Instant::now() + PROMPTLY;
    let run = loop {
        let run = recorded(&store).expect("the engine recorded its run");
        if !run.tasks[0].worker_attempts.is_empty() || Instant::now() > deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let task = &run.tasks[0];
    let by_worker = &task.worker_attempts;
    assert_eq!(by_worker.len(), 1, "{task:?}");
    assert!(
        by_worker[0].runner.contains("w-recording"),
        "{:?}",
        by_worker[0]
    );
    assert_eq!(
        (by_worker[0].attempt, by_worker[0].status.as_str()),
        (1, "succeeded")
    );
    // The engine's own attempt says where it ran, too.
    assert!(
        task.tries[0]
            .runner
            .as_deref()
            .unwrap_or("")
            .contains("w-recording"),
        "{task:?}"
    );
    drop(worker);
    let _ = std::fs::remove_dir_all(&dir);
}
