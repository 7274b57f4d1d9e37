//! Run history from the outside: every run recorded in SQLite and in PostgreSQL (a private
//! server, as the Redis tests do), read back as a library and with the program's flags; a store
//! that breaks never breaks a run. This test is a graflow program (`harness = false`,
//! `#[graflow::main]`) that also runs itself as a child (several at once, killed, as another
//! user) in the modes of `GRAFLOW_HISTORY_CHILD`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use graflow::prelude::*;
use graflow::store::{Location, RunDetail, RunStatus, Store, StoreErrorKind};

mod common;
mod pg;

use common::within;

/// Set in a child: what it does (`quick`, `many`, `sleep`, `resume`).
const CHILD: &str = "GRAFLOW_HISTORY_CHILD";
/// Set in a `resume` child: the broken task works.
const FIXED: &str = "GRAFLOW_HISTORY_FIXED";
/// Set in a `resume` child: its checkpoint file.
const CHECKPOINT: &str = "GRAFLOW_HISTORY_CHECKPOINT";

#[task]
fn numbers() -> Vec<u64> {
    vec![1, 2, 3]
}

#[task(retries = 1, retry_delay = "10ms")]
fn flaky(ctx: &TaskContext, numbers: Vec<u64>) -> Result<u64, String> {
    if ctx.attempt() == 1 {
        return Err("flaky on purpose".to_owned());
    }
    Ok(numbers.iter().sum())
}

#[task(handler = "process")]
fn printer(numbers: Vec<u64>) -> u64 {
    println!("line one");
    println!("line \"two\" with a \0 NUL");
    eprintln!("to stderr");
    numbers.len() as u64
}

#[task]
fn finish(flaky: u64, printer: u64) -> String {
    format!("{flaky}/{printer}")
}

#[task]
fn broken() -> Result<u64, String> {
    Err("broken on purpose".to_owned())
}

#[task]
fn huge() -> String {
    "x".repeat(10 << 20)
}

#[task]
fn hostile_error() -> Result<u64, String> {
    Err(format!(
        "a \"quoted\" error with a \0 NUL and {}",
        "y".repeat(10 << 20)
    ))
}

#[task]
fn step(i: u64) -> u64 {
    i
}

#[task]
async fn sleepy() -> u64 {
    graflow::tokio::time::sleep(Duration::from_millis(300)).await;
    1
}

#[task]
async fn forever() -> u64 {
    graflow::tokio::time::sleep(Duration::from_secs(600)).await;
    0
}

#[task]
fn adder(ctx: &TaskContext) -> graflow::Result<u64> {
    ctx.next_task(step::task().with_id("added").with_input("i", 7u64))?;
    Ok(1)
}

#[task]
fn after_adder(adder: u64) -> u64 {
    adder
}

static FIRST_RUNS: AtomicU32 = AtomicU32::new(0);
static REPAIRED: AtomicBool = AtomicBool::new(false);

#[task]
fn first() -> u64 {
    FIRST_RUNS.fetch_add(1, Ordering::SeqCst);
    1
}

#[task]
fn fragile(first: u64) -> Result<u64, String> {
    if REPAIRED.load(Ordering::SeqCst) || std::env::var_os(FIXED).is_some() {
        Ok(first + 1)
    } else {
        Err("not repaired yet".to_owned())
    }
}

/// Where the tests' stores go, and the PostgreSQL server when there is one.
struct Ctx {
    dir: PathBuf,
    pg: Option<pg::PgServer>,
    databases: AtomicU32,
}

impl Ctx {
    /// A fresh store of each backend there is.
    fn stores(&self, name: &str) -> Vec<Store> {
        let mut stores = vec![Store::new(Location::Sqlite(
            self.dir.join(format!("{name}.db")),
        ))];
        if let Some(pg) = &self.pg {
            let db = format!("{name}_{}", self.databases.fetch_add(1, Ordering::Relaxed));
            pg.create_database(&db);
            stores.push(Store::new(Location::Postgres(pg.url(&db))));
        }
        stores
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    graflow::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn engine_for(store: &Store) -> WorkflowEngine {
    let mut engine = WorkflowEngine::new();
    engine.set_recorder(Some(store.recorder()));
    engine
}

fn detail(store: &Store, id: &str) -> RunDetail {
    block_on(store.flush()).expect("the store writes");
    block_on(store.run(id))
        .expect("the store reads")
        .unwrap_or_else(|| panic!("run {id} is in {}", store.location()))
}

fn a_run_is_recorded_with_its_tasks_attempts_results_and_logs(ctx: &Ctx) {
    for store in ctx.stores("whole") {
        let wf = workflow! { name: "whole"; numbers >> (flaky | printer) >> finish; };
        let report = engine_for(&store).run(&wf, RunOptions::new()).unwrap();
        let run = detail(&store, report.run_id());
        let s = &run.summary;
        assert_eq!(
            (s.workflow.as_str(), s.status),
            ("whole", RunStatus::Succeeded)
        );
        assert_eq!(
            (s.tasks_total, s.tasks_succeeded, s.tasks_failed),
            (4, 4, 0)
        );
        assert!(s.started_at.is_some() && s.ended_at >= s.started_at);
        assert_eq!(s.pid, i64::from(std::process::id()));
        let ids: Vec<&str> = run.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["numbers", "flaky", "printer", "finish"]);
        let flaky = &run.tasks[1];
        assert_eq!(
            (flaky.status.as_str(), flaky.attempts, flaky.tries.len()),
            ("succeeded", 2, 2)
        );
        assert_eq!(flaky.tries[0].status, "failed");
        assert_eq!(flaky.tries[0].error_kind.as_deref(), Some("task_failed"));
        assert!(
            flaky.tries[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("flaky on purpose")
        );
        assert_eq!(
            (flaky.tries[1].attempt, flaky.tries[1].status.as_str()),
            (2, "succeeded")
        );
        let printer = &run.tasks[2];
        assert_eq!(printer.handler, "process");
        assert!(
            printer.tries[0]
                .runner
                .as_deref()
                .unwrap_or("")
                .starts_with("pid "),
            "{printer:?}"
        );
        let lines: Vec<&str> = printer.logs.iter().map(|l| l.line.as_str()).collect();
        assert!(lines.contains(&"line one"), "{lines:?}");
        assert!(
            lines.contains(&"line \"two\" with a \u{FFFD} NUL"),
            "{lines:?}"
        );
        let numbers = &run.tasks[0];
        assert_eq!(numbers.tries[0].result_preview.as_deref(), Some("[1,2,3]"));
        assert!(numbers.tries[0].result_size.is_some_and(|n| n > 0));
        assert!(numbers.tries[0].queued_at.is_some());
        assert!(
            run.edges
                .contains(&("numbers".to_owned(), "flaky".to_owned()))
        );
        let kinds: Vec<&str> = run.events.iter().map(|e| e.kind.as_str()).collect();
        for kind in [
            "run_started",
            "task_retrying",
            "task_runner",
            "run_finished",
        ] {
            assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
        }
        // The JSON `--graflow-run ID --graflow-json` prints.
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["status"], "succeeded");
        assert!(
            json["started_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.contains('T'))
        );
        assert_eq!(json["tasks"][1]["attempts"], 2);
        assert_eq!(json["tasks"][1]["handler"], "direct");
        let latest = block_on(store.runs(10)).unwrap();
        assert_eq!(latest[0].id, report.run_id());
    }
}

fn tasks_added_at_run_time_are_recorded_with_their_edges(ctx: &Ctx) {
    for store in ctx.stores("added") {
        let wf = workflow! { name: "adding"; adder >> after_adder; };
        let report = engine_for(&store).run(&wf, RunOptions::new()).unwrap();
        let run = detail(&store, report.run_id());
        let ids: Vec<&str> = run.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["adder", "after_adder", "added"]);
        let added = &run.tasks[2];
        assert_eq!(
            (added.added_by.as_deref(), added.status.as_str()),
            (Some("adder"), "succeeded")
        );
        assert_eq!(added.tries[0].result_preview.as_deref(), Some("7"));
        for edge in [
            ("adder", "added"),
            ("added", "after_adder"),
            ("adder", "after_adder"),
        ] {
            assert!(
                run.edges.contains(&(edge.0.to_owned(), edge.1.to_owned())),
                "{edge:?} in {:?}",
                run.edges
            );
        }
    }
}

fn a_failed_run_is_recorded_with_the_error_that_ended_it(ctx: &Ctx) {
    for store in ctx.stores("failed") {
        let wf = workflow! { name: "failing"; numbers >> broken; };
        let error = engine_for(&store).run(&wf, RunOptions::new()).unwrap_err();
        let id = error.report().unwrap().run_id().to_owned();
        let run = detail(&store, &id);
        assert_eq!(run.summary.status, RunStatus::Failed);
        assert!(
            run.summary
                .error
                .as_deref()
                .unwrap_or("")
                .contains("broken on purpose")
        );
        assert_eq!(
            (run.summary.tasks_succeeded, run.summary.tasks_failed),
            (1, 1)
        );
        assert_eq!(run.tasks[1].status, "failed");
        assert_eq!(
            run.tasks[1].tries[0].error_kind.as_deref(),
            Some("task_failed")
        );
    }
}

fn hostile_content_is_stored_bounded_and_read_back(ctx: &Ctx) {
    for store in ctx.stores("hostile") {
        let mut wf = Workflow::builder("hostile \"name\"\n'; DROP TABLE runs; --");
        let big = wf.add(huge::task().with_id("it's a \"quoted\" id\té\u{1}"));
        let bad = wf.add(hostile_error::task());
        wf.edge(big, bad);
        let error = engine_for(&store)
            .run(&wf.build(), RunOptions::new())
            .unwrap_err();
        let run = detail(&store, error.report().unwrap().run_id());
        assert_eq!(
            run.summary.workflow,
            "hostile \"name\"\n'; DROP TABLE runs; --"
        );
        assert_eq!(run.tasks[0].id, "it's a \"quoted\" id\té\u{1}");
        let big = &run.tasks[0].tries[0];
        assert!(
            big.result_size.is_some_and(|n| n >= 10 << 20),
            "{:?}",
            big.result_size
        );
        let preview = big.result_preview.as_deref().unwrap();
        assert!(
            preview.starts_with("\"xxx") && preview.len() < 2048,
            "{}",
            preview.len()
        );
        let error = run.tasks[1].tries[0].error.as_deref().unwrap();
        assert!(
            error.len() <= graflow::store::limits::MAX_ERROR + 64,
            "{}",
            error.len()
        );
        assert!(error.contains("\"quoted\"") && !error.contains('\0'));
        assert!(run.summary.error.as_deref().is_some_and(|e| e.len() < 9000));
    }
}

fn ten_thousand_tasks_are_stored_and_read_back(ctx: &Ctx) {
    for store in ctx.stores("large") {
        let mut wf = Workflow::builder("large");
        let mut previous = None;
        for i in 0..10_000u64 {
            let node = wf.add(step::task().with_id(format!("t{i}")).with_input("i", i));
            if let Some(p) = previous {
                wf.edge(p, node);
            }
            previous = Some(node);
        }
        let report = engine_for(&store)
            .run(&wf.build(), RunOptions::new())
            .unwrap();
        let run = detail(&store, report.run_id());
        assert_eq!(run.summary.tasks_succeeded, 10_000);
        assert_eq!(run.tasks.len(), 10_000);
        assert!(
            run.tasks
                .iter()
                .all(|t| t.status == "succeeded" && t.tries.len() == 1)
        );
        assert_eq!(
            run.tasks[9_999].tries[0].result_preview.as_deref(),
            Some("9999")
        );
        assert_eq!(run.edges.len(), 9_999);
    }
}

/// Runs `sql` (with `bytes` as `$1`, if any) on the store at `location`, past the store: what a
/// newer graflow would leave in it.
async fn raw_sql(location: &Location, sql: &'static str, bytes: Option<Vec<u8>>) {
    use sqlx::Connection as _;
    match location {
        Location::Sqlite(path) => {
            let url = format!("sqlite:{}", path.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let query = sqlx::query(sql);
            let query = match bytes {
                Some(b) => query.bind(b),
                None => query,
            };
            query.execute(&mut c).await.unwrap();
        }
        Location::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let query = sqlx::query(sql);
            let query = match bytes {
                Some(b) => query.bind(b),
                None => query,
            };
            query.execute(&mut c).await.unwrap();
        }
    }
}

/// Adds a migration this program does not know, as a newer graflow would have.
async fn forge_newer_schema(location: &Location) {
    let insert = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', TRUE, $1, 0)";
    raw_sql(location, insert, Some(vec![0u8; 48])).await;
}

async fn forget_newer_schema(location: &Location) {
    raw_sql(
        location,
        "DELETE FROM _sqlx_migrations WHERE version = 9999",
        None,
    )
    .await;
}

fn a_store_of_a_newer_schema_is_refused_and_never_written(ctx: &Ctx) {
    for store in ctx.stores("newer") {
        let wf = workflow! { name: "before"; numbers; };
        let before = engine_for(&store).run(&wf, RunOptions::new()).unwrap();
        block_on(store.flush()).unwrap();
        block_on(forge_newer_schema(store.location()));
        let newer = Store::new(store.location().clone());
        let refused = block_on(newer.runs(10)).unwrap_err();
        assert_eq!(refused.kind, StoreErrorKind::NewerSchema, "{refused}");
        assert!(refused.to_string().contains("newer"), "{refused}");
        // A run recorded there still runs; nothing of it is written.
        let wf = workflow! { name: "after"; numbers; };
        engine_for(&newer).run(&wf, RunOptions::new()).unwrap();
        assert!(block_on(newer.flush()).is_err());
        block_on(forget_newer_schema(store.location()));
        let runs = block_on(Store::new(store.location().clone()).runs(10)).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.workflow.as_str()).collect();
        assert_eq!(names, ["before"]);
        assert_eq!(runs[0].id, before.run_id());
    }
}

fn a_file_that_is_not_a_database_is_left_alone_and_never_fails_a_run(ctx: &Ctx) {
    let path = ctx.dir.join("garbage.db");
    let garbage: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let store = Store::new(Location::Sqlite(path.clone()));
    let wf = workflow! { name: "on-garbage"; numbers >> flaky; };
    let report = engine_for(&store).run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.counts().succeeded, 2);
    let error = block_on(store.runs(10)).unwrap_err();
    assert_eq!(error.kind, StoreErrorKind::Corrupt, "{error}");
    assert!(block_on(store.flush()).is_err());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file was written"
    );
}

/// Runs this program as a child in `mode`, recording to `store`.
fn child(mode: &str, store: &str, args: &[&str]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(args)
        .env(CHILD, mode)
        .env("GRAFLOW_STORE", store)
        .env_remove("GRAFLOW_STORE_REQUIRED")
        .stdin(Stdio::null());
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("the child starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn a_read_only_store_directory_never_fails_a_run(ctx: &Ctx) {
    let dir = ctx.dir.join("read-only");
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("runs.db").display());
    let mut command = child("quick", &store, &[]);
    // SAFETY-free: as root, the child runs as nobody from a copy of this program it can read;
    // root would write into a read-only directory anyway.
    let root = unsafe { libc::geteuid() } == 0;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if root {
        let copy_dir = ctx.dir.join("bin");
        std::fs::create_dir_all(&copy_dir).unwrap();
        std::fs::set_permissions(&ctx.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&copy_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = copy_dir.join("run_history");
        std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut as_nobody = Command::new(&copy);
        as_nobody
            .env(CHILD, "quick")
            .env("GRAFLOW_STORE", &store)
            .env("HOME", "/nonexistent")
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::uid(&mut as_nobody, 65_534);
        std::os::unix::process::CommandExt::gid(&mut as_nobody, 65_534);
        command = as_nobody;
    }
    let out = output(command);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        text(&out.stdout).contains("quick: 3 succeeded"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("run store {}", &store)),
        "{stderr}"
    );
    assert!(
        stderr.matches("warning").count() <= 3,
        "one warning, not one per record: {stderr}"
    );
    assert!(!dir.join("runs.db").exists());
}

fn four_programs_write_one_sqlite_file_at_once(ctx: &Ctx) {
    let path = ctx.dir.join("shared.db");
    let store = format!("sqlite:{}", path.display());
    let children: Vec<_> = (0..4)
        .map(|_| {
            child("many", &store, &[])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("warning"),
            "{}",
            text(&out.stderr)
        );
    }
    let runs = block_on(Store::new(Location::Sqlite(path)).runs(1000)).unwrap();
    assert_eq!(runs.len(), 4 * 40);
    assert!(
        runs.iter()
            .all(|r| r.status == RunStatus::Succeeded && r.tasks_succeeded == 3)
    );
    let pids: std::collections::BTreeSet<i64> = runs.iter().map(|r| r.pid).collect();
    assert_eq!(pids.len(), 4);
}

fn a_killed_program_s_run_is_shown_lost(ctx: &Ctx) {
    let path = ctx.dir.join("killed.db");
    let store_text = format!("sqlite:{}", path.display());
    let mut program = child("sleep", &store_text, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = Store::new(Location::Sqlite(path));
    let running = within(Duration::from_secs(60), || {
        block_on(store.runs(5))
            .is_ok_and(|runs| runs.iter().any(|r| r.status == RunStatus::Running))
    });
    assert!(running.is_some(), "the child's run shows as running");
    program.kill().unwrap();
    program.wait().unwrap();
    let lost = within(Duration::from_secs(30), || {
        block_on(store.runs(5))
            .is_ok_and(|runs| runs.first().is_some_and(|r| r.status == RunStatus::Lost))
    });
    assert!(lost.is_some(), "{:?}", block_on(store.runs(5)));
    let run = block_on(store.runs(5)).unwrap().remove(0);
    assert_eq!((run.workflow.as_str(), run.ended_at), ("sleeper", None));
    // From another host, only the heartbeat tells: silent for longer than LOST_AFTER is lost.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    for (id, beat) in [("silent", now - 120_000_000), ("beating", now - 5_000_000)] {
        let sql = format!(
            "INSERT INTO runs (id, workflow, fingerprint, program, build_id, host, pid, user_name, started_at, heartbeat_at, status) \
             VALUES ('{id}', 'elsewhere', '0', 'p', 'b', 'another-host', 1, 'u', {beat}, {beat}, 'running')"
        );
        block_on(raw_sql(
            store.location(),
            Box::leak(sql.into_boxed_str()),
            None,
        ));
    }
    let runs = block_on(store.runs(10)).unwrap();
    let status = |id: &str| runs.iter().find(|r| r.id == id).map(|r| r.status);
    assert_eq!(status("silent"), Some(RunStatus::Lost));
    assert_eq!(status("beating"), Some(RunStatus::Running));
    // Interrupted (Ctrl-C), the program ends with the signal, its run recorded as cancelled
    // first.
    let mut program = child("sleep", &store_text, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = within(Duration::from_secs(60), || {
        block_on(store.runs(5))
            .is_ok_and(|runs| runs.first().is_some_and(|r| r.status == RunStatus::Running))
    });
    assert!(running.is_some(), "the second child's run shows as running");
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(program.id() as i32, libc::SIGINT) };
    program.wait().unwrap();
    let runs = block_on(store.runs(5)).unwrap();
    assert_eq!(runs[0].status, RunStatus::Cancelled, "{runs:?}");
    assert!(runs[0].ended_at.is_some());
}

fn a_postgres_server_stopped_mid_run_never_fails_it(ctx: &Ctx) {
    let Some(pg) = &ctx.pg else {
        return;
    };
    pg.create_database("stopped");
    let store = Store::new(Location::Postgres(pg.url("stopped")));
    block_on(store.runs(1)).unwrap();
    let mut wf = Workflow::builder("through-an-outage");
    let mut previous = None;
    for i in 0..8 {
        let node = wf.add(sleepy::task().with_id(format!("nap{i}")));
        if let Some(p) = previous {
            wf.edge(p, node);
        }
        previous = Some(node);
    }
    let engine = engine_for(&store);
    let wf = wf.build();
    let report = std::thread::scope(|scope| {
        let run = scope.spawn(|| engine.run(&wf, RunOptions::new()));
        std::thread::sleep(Duration::from_millis(700));
        pg.stop();
        run.join().unwrap()
    })
    .expect("the run succeeds with its store down");
    assert_eq!(report.counts().succeeded, 8);
    pg.restart();
    let written = within(Duration::from_secs(120), || block_on(store.flush()).is_ok());
    assert!(
        written.is_some(),
        "the buffered records are written once the server is back"
    );
    let run = detail(&store, report.run_id());
    assert_eq!(run.summary.status, RunStatus::Succeeded);
    assert_eq!(
        run.summary.tasks_succeeded + run.summary.records_lost.min(8),
        8
    );
}

fn a_run_is_resumed_by_its_id(ctx: &Ctx) {
    let store = Store::new(Location::Sqlite(ctx.dir.join("resume.db")));
    let engine = engine_for(&store);
    let wf = workflow! { name: "resumable"; first >> fragile; };
    let checkpoint = ctx.dir.join("resumable.ckpt");
    let error = engine
        .run(&wf, RunOptions::new().checkpoint(&checkpoint))
        .unwrap_err();
    let id = error.report().unwrap().run_id().to_owned();
    REPAIRED.store(true, Ordering::SeqCst);
    let before = FIRST_RUNS.load(Ordering::SeqCst);
    let report = engine.run(&wf, RunOptions::new().resume_run(&id)).unwrap();
    assert_eq!(report.run_id(), id);
    assert_eq!(
        FIRST_RUNS.load(Ordering::SeqCst),
        before,
        "done tasks do not run again"
    );
    let run = detail(&store, &id);
    assert_eq!((run.summary.status, run.resumed), (RunStatus::Succeeded, 1));
    assert_eq!(
        run.summary.checkpoint.as_deref().map(Path::new),
        Some(std::path::absolute(&checkpoint).unwrap().as_path())
    );
    // Unknown ids, runs without a checkpoint, and engines without a store are refused.
    let unknown = engine
        .run(&wf, RunOptions::new().resume_run("nope"))
        .unwrap_err();
    assert!(
        matches!(unknown, RunError::Record { .. }) && unknown.to_string().contains("no run nope"),
        "{unknown}"
    );
    let plain = engine.run(&wf, RunOptions::new()).unwrap();
    let without = engine
        .run(&wf, RunOptions::new().resume_run(plain.run_id()))
        .unwrap_err();
    assert!(
        without.to_string().contains("wrote no checkpoint"),
        "{without}"
    );
    let mut nowhere = WorkflowEngine::new();
    nowhere.set_recorder(None);
    let refused = nowhere
        .run(&wf, RunOptions::new().resume_run(&id))
        .unwrap_err();
    assert!(
        refused.to_string().contains("records its runs nowhere"),
        "{refused}"
    );
}

fn the_program_flags_list_show_prune_and_resume_runs(ctx: &Ctx) {
    let path = ctx.dir.join("flags.db");
    let store = format!("sqlite:{}", path.display());
    for _ in 0..2 {
        assert!(output(child("quick", &store, &[])).status.success());
    }
    let listed = output(child(
        "quick",
        &store,
        &["--graflow-runs", "--graflow-json"],
    ));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        for field in [
            "id",
            "workflow",
            "status",
            "started_at",
            "ended_at",
            "tasks_succeeded",
            "tasks_failed",
        ] {
            assert!(run.get(field).is_some(), "{field} in {run}");
        }
        assert_eq!(
            (run["workflow"].as_str(), run["status"].as_str()),
            (Some("quick"), Some("succeeded"))
        );
    }
    let id = runs[0]["id"].as_str().unwrap();
    let one = output(child(
        "quick",
        &store,
        &["--graflow-run", id, "--graflow-json"],
    ));
    let one: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(one["id"], id);
    let task = &one["tasks"][0];
    assert_eq!(
        (
            task["id"].as_str(),
            task["handler"].as_str(),
            task["status"].as_str(),
            task["attempts"].as_u64()
        ),
        (Some("numbers"), Some("direct"), Some("succeeded"), Some(1))
    );
    let limited = output(child(
        "quick",
        &store,
        &["--graflow-runs", "--graflow-limit", "1", "--graflow-json"],
    ));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&limited.stdout)
            .unwrap()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let table = text(&output(child("quick", &store, &["--graflow-runs"])).stdout);
    assert!(
        table.starts_with("ID") && table.contains(id) && table.contains("succeeded"),
        "{table}"
    );
    let shown = text(&output(child("quick", &store, &["--graflow-run", id])).stdout);
    assert!(
        shown.contains("numbers") && shown.contains("TASK"),
        "{shown}"
    );
    let missing = output(child("quick", &store, &["--graflow-run", "no-such-run"]));
    assert_eq!(missing.status.code(), Some(1));
    for bad in [
        &["--graflow-limit", "5"][..],
        &["--graflow-runs", "--graflow-limit", "0"],
        &["--graflow-prune", "soon"],
        &["--graflow-runs", "--graflow-run", id],
    ] {
        assert_eq!(
            output(child("quick", &store, bad)).status.code(),
            Some(64),
            "{bad:?}"
        );
    }
    // A failed run with a checkpoint, resumed by its id.
    let checkpoint = ctx.dir.join("flags.ckpt");
    let mut first = child("resume", &store, &[]);
    first.env(CHECKPOINT, &checkpoint);
    let failed = output(first);
    assert!(!failed.status.success());
    let runs: serde_json::Value = serde_json::from_slice(
        &output(child(
            "quick",
            &store,
            &["--graflow-runs", "--graflow-json"],
        ))
        .stdout,
    )
    .unwrap();
    let failed_id = runs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["status"], "failed");
    let mut again = child("resume", &store, &["--graflow-resume", &failed_id]);
    again.env(FIXED, "1").env(CHECKPOINT, &checkpoint);
    let resumed = output(again);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert!(
        text(&resumed.stdout).contains(&format!("resumed {failed_id}")),
        "{}",
        text(&resumed.stdout)
    );
    let pruned = output(child("quick", &store, &["--graflow-prune", "0s"]));
    assert!(
        text(&pruned.stdout).contains("deleted 3 run(s)"),
        "{}",
        text(&pruned.stdout)
    );
    let none = output(child(
        "quick",
        &store,
        &["--graflow-runs", "--graflow-json"],
    ));
    assert_eq!(text(&none.stdout).trim(), "[]");
    // Off: nothing recorded, nothing to list.
    assert_eq!(
        output(child("quick", "off", &["--graflow-runs"]))
            .status
            .code(),
        Some(69)
    );
    let quiet = output(child("quick", "off", &[]));
    assert!(
        quiet.status.success() && text(&quiet.stderr).is_empty(),
        "{}",
        text(&quiet.stderr)
    );
}

fn a_required_store_fails_the_run_it_cannot_record(ctx: &Ctx) {
    let path = ctx.dir.join("required-garbage.db");
    std::fs::write(&path, vec![7u8; 4096]).unwrap();
    let store = Store::new(Location::Sqlite(path)).required(true);
    let wf = workflow! { name: "required"; numbers; };
    let error = engine_for(&store).run(&wf, RunOptions::new()).unwrap_err();
    assert!(
        matches!(error, RunError::Record { report: None, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("required-garbage.db"), "{error}");
}

/// A test: its name, and itself.
type Test = (&'static str, fn(&Ctx));

/// What a child does.
fn child_main(mode: &str) {
    let engine = WorkflowEngine::new();
    match mode {
        "quick" => {
            let wf = workflow! { name: "quick"; numbers >> (flaky | finish_quick); };
            let report = engine.run(&wf, RunOptions::new()).unwrap();
            println!("quick: {} succeeded", report.counts().succeeded);
        }
        "many" => {
            let wf = workflow! { name: "many"; numbers >> (flaky | finish_quick); };
            for _ in 0..40 {
                engine.run(&wf, RunOptions::new()).unwrap();
            }
        }
        "sleep" => {
            let wf = workflow! { name: "sleeper"; numbers >> forever; };
            let _ = engine.run(&wf, RunOptions::new());
        }
        "resume" => {
            let wf = workflow! { name: "resume"; first >> fragile; };
            let checkpoint = std::env::var_os(CHECKPOINT).expect("the test names the checkpoint");
            // The program's own options, as a program that checkpoints has them: resuming by id
            // continues with the same file.
            match engine.run(&wf, RunOptions::new().checkpoint(checkpoint)) {
                Ok(report) => println!("resumed {} ({})", report.run_id(), report.resumed()),
                Err(error) => {
                    eprintln!("{error}");
                    std::process::exit(1);
                }
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[task]
fn finish_quick(numbers: Vec<u64>) -> u64 {
    numbers.len() as u64
}

#[graflow::main]
fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        child_main(&mode);
        return;
    }
    let dir = std::env::temp_dir().join(format!("graflow-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ctx = Ctx {
        dir: dir.clone(),
        pg: pg::start(),
        databases: AtomicU32::new(0),
    };
    let tests: [Test; 14] = [
        (
            "tasks_added_at_run_time_are_recorded_with_their_edges",
            tasks_added_at_run_time_are_recorded_with_their_edges,
        ),
        (
            "a_run_is_recorded_with_its_tasks_attempts_results_and_logs",
            a_run_is_recorded_with_its_tasks_attempts_results_and_logs,
        ),
        (
            "a_failed_run_is_recorded_with_the_error_that_ended_it",
            a_failed_run_is_recorded_with_the_error_that_ended_it,
        ),
        (
            "hostile_content_is_stored_bounded_and_read_back",
            hostile_content_is_stored_bounded_and_read_back,
        ),
        (
            "ten_thousand_tasks_are_stored_and_read_back",
            ten_thousand_tasks_are_stored_and_read_back,
        ),
        (
            "a_store_of_a_newer_schema_is_refused_and_never_written",
            a_store_of_a_newer_schema_is_refused_and_never_written,
        ),
        (
            "a_file_that_is_not_a_database_is_left_alone_and_never_fails_a_run",
            a_file_that_is_not_a_database_is_left_alone_and_never_fails_a_run,
        ),
        (
            "a_read_only_store_directory_never_fails_a_run",
            a_read_only_store_directory_never_fails_a_run,
        ),
        (
            "four_programs_write_one_sqlite_file_at_once",
            four_programs_write_one_sqlite_file_at_once,
        ),
        (
            "a_killed_program_s_run_is_shown_lost",
            a_killed_program_s_run_is_shown_lost,
        ),
        (
            "a_postgres_server_stopped_mid_run_never_fails_it",
            a_postgres_server_stopped_mid_run_never_fails_it,
        ),
        ("a_run_is_resumed_by_its_id", a_run_is_resumed_by_its_id),
        (
            "the_program_flags_list_show_prune_and_resume_runs",
            the_program_flags_list_show_prune_and_resume_runs,
        ),
        (
            "a_required_store_fails_the_run_it_cannot_record",
            a_required_store_fails_the_run_it_cannot_record,
        ),
    ];
    // `cargo test --test run_history -- NAME` runs the tests whose name contains NAME.
    let failed = common::run_tests(&tests, &ctx);
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(101);
    }
}
