//! Human feedback from the outside: tasks ask a person on every handler (in process, a child
//! process, a container, a Redis worker) and get typed answers given through the store while
//! they wait; a run nobody answers waits (exit 75), checkpointed, and is resumed in a new
//! process with the answer; a program killed while it waits is resumed too; answers race,
//! are refused when invalid, requests are cancelled; the webhook's notifications are signed,
//! and a receiver that is down never affects a run.
//!
//! This test is a graflow program (`harness = false`, `#[graflow::main]`) that also runs itself
//! as a child (a program that waits, killed, answered) in the modes of `GRAFLOW_FEEDBACK_CHILD`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graflow::feedback::{FeedbackError, FeedbackStatus};
use graflow::prelude::*;
use graflow::store::{AnswerError, FeedbackInfo, Location, Store};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod common;
mod redis_common;

/// Set in a child: what it does (`deploy`).
const CHILD: &str = "GRAFLOW_FEEDBACK_CHILD";
/// Set in a child: how long `approve` waits, in seconds.
const WAIT: &str = "GRAFLOW_FEEDBACK_WAIT";
/// Set in a child: a file each run of `build` appends a line to.
const BUILDS: &str = "GRAFLOW_FEEDBACK_BUILDS";
/// How long a test waits for something that happens at once on an idle machine.
const PROMPTLY: Duration = Duration::from_secs(60);

/// A custom answer: checked against its schema when it is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Rollout {
    replicas: u32,
    region: String,
}

#[task]
fn ask_approval(ctx: &TaskContext) -> Result<bool, FeedbackError> {
    ctx.approval("Ship it?")
        .timeout(PROMPTLY * 2)
        .metadata("ticket", "OPS-1")
        .wait()
}

#[task]
fn ask_text(ctx: &TaskContext) -> Result<String, FeedbackError> {
    ctx.text("Release notes?").timeout(PROMPTLY * 2).wait()
}

#[task]
async fn ask_choice(ctx: &TaskContext) -> Result<String, FeedbackError> {
    ctx.selection("Colour?", ["red", "green", "blue"])
        .timeout(PROMPTLY * 2)
        .await
}

#[task]
fn ask_many(ctx: &TaskContext) -> Result<Vec<String>, FeedbackError> {
    ctx.multi_selection("Regions?", ["eu", "us", "ap"])
        .timeout(PROMPTLY * 2)
        .wait()
}

#[task]
fn ask_custom(ctx: &TaskContext) -> Result<String, FeedbackError> {
    let answer = ctx
        .ask::<Rollout>("Rollout?")
        .timeout(PROMPTLY * 2)
        .wait_response()?;
    Ok(format!(
        "{}x{} by {}",
        answer.value.replicas, answer.value.region, answer.by
    ))
}

#[task(retries = 2, retry_delay = "10ms")]
fn ask_then_cancelled(ctx: &TaskContext) -> Result<bool, FeedbackError> {
    ctx.approval("Will be cancelled")
        .timeout(PROMPTLY * 2)
        .wait()
}

/// A task whose own timeout is shorter than the wait for its answer.
#[task(timeout = "1s")]
fn ask_slowly(ctx: &TaskContext) -> Result<bool, FeedbackError> {
    ctx.approval("Slow answer?").timeout(PROMPTLY * 2).wait()
}

#[task]
fn ask_left(ctx: &TaskContext) -> Result<bool, FeedbackError> {
    ctx.approval("Left?").timeout(Duration::from_secs(1)).wait()
}

#[task]
fn ask_right(ctx: &TaskContext) -> Result<bool, FeedbackError> {
    ctx.approval("Right?")
        .timeout(Duration::from_secs(1))
        .wait()
}

#[task]
fn after_both(ask_left: bool, ask_right: bool) -> bool {
    ask_left && ask_right
}

/// Asks only when told to: fast (inline) until it asks.
#[task]
fn maybe_ask(ctx: &TaskContext, ask: bool) -> Result<bool, FeedbackError> {
    if !ask {
        return Ok(false);
    }
    ctx.approval(format!("Asked by {}?", ctx.task_id()))
        .timeout(Duration::from_secs(1))
        .wait()
}

#[task(handler = "process", reuse = true)]
fn ask_warm(ctx: &TaskContext) -> Result<bool, FeedbackError> {
    ctx.approval("From a warm runner?").wait()
}

#[task]
fn build() -> String {
    if let Ok(path) = std::env::var(BUILDS)
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(file, "built");
    }
    "shop-2.0".to_owned()
}

#[task]
fn approve(ctx: &TaskContext, build: String) -> Result<bool, FeedbackError> {
    let seconds: u64 = std::env::var(WAIT)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    ctx.approval(format!("Deploy {build}?"))
        .timeout(Duration::from_secs(seconds))
        .wait()
}

#[task]
fn deploy(approve: bool) -> String {
    if approve { "deployed" } else { "refused" }.to_owned()
}

fn store_at(path: &Path) -> Store {
    Store::new(Location::Sqlite(path.to_owned()))
}

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// The open requests of `task` in `store`.
fn open_of(store: &Store, task: &str) -> Vec<FeedbackInfo> {
    block(store.feedback_requests(true, 100))
        .expect("the store answers")
        .into_iter()
        .filter(|r| r.task == task)
        .collect()
}

/// Waits for the open request of `task` (a store that is busy for a moment, as a new SQLite
/// file opened by two programs at once can be, is asked again).
fn wait_for_request(store: &Store, task: &str) -> FeedbackInfo {
    let started = Instant::now();
    loop {
        match block(store.feedback_requests(true, 100)) {
            Ok(open) => {
                if let Some(request) = open.into_iter().find(|r| r.task == task) {
                    return request;
                }
            }
            Err(error) if error.is_retryable() => {
                eprintln!("the store is busy for now: {error}");
            }
            Err(error) => panic!("the store answers: {error}"),
        }
        assert!(
            started.elapsed() < PROMPTLY * 2,
            "no request of task '{task}' appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The answer each kind of the five asking tasks gets.
fn answer_of(request: &FeedbackInfo) -> serde_json::Value {
    match request.prompt.as_str() {
        "Ship it?" => serde_json::json!(true),
        "Release notes?" => serde_json::json!("all \"good\"\nreally"),
        "Colour?" => serde_json::json!("green"),
        "Regions?" => serde_json::json!(["eu", "ap"]),
        "Rollout?" => serde_json::json!({"replicas": 3, "region": "eu-west"}),
        other => panic!("unexpected request {other:?}"),
    }
}

/// The five asking tasks on `handler`, each answered while it waits.
fn five_kinds_on(handler: &str, engine: &WorkflowEngine, store: &Store) {
    let mut builder = Workflow::builder(format!("kinds-{handler}"));
    for task in [
        ask_approval::task(),
        ask_text::task(),
        ask_choice::task(),
        ask_many::task(),
        ask_custom::task(),
    ] {
        let mut task = task.with_handler(handler);
        if handler == "docker" {
            task = task.with_config("image", "python:3.11-slim");
        }
        builder.add(task);
    }
    let wf = builder.build();
    let done = Arc::new(AtomicBool::new(false));
    let answerer = {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut answered = 0;
            let started = Instant::now();
            while answered < 5 && !done.load(Ordering::SeqCst) {
                let open = block(store.feedback_requests(true, 100)).expect("the store answers");
                for request in open {
                    let by = format!("tester-{}", request.kind);
                    block(store.answer(&request.id, answer_of(&request), &by))
                        .unwrap_or_else(|e| panic!("answering {:?}: {e}", request.prompt));
                    answered += 1;
                }
                assert!(started.elapsed() < PROMPTLY * 2, "only {answered} answered");
                std::thread::sleep(Duration::from_millis(50));
            }
            answered
        })
    };
    let report = engine.run(&wf, RunOptions::new());
    done.store(true, Ordering::SeqCst);
    let answered = answerer.join().expect("the answering thread");
    let report = report.unwrap_or_else(|e| panic!("{handler}: {e:?}"));
    assert_eq!(answered, 5, "{handler}");
    assert!(report.result::<bool>("ask_approval").unwrap(), "{handler}");
    assert_eq!(
        report.result::<String>("ask_text").unwrap(),
        "all \"good\"\nreally"
    );
    assert_eq!(report.result::<String>("ask_choice").unwrap(), "green");
    assert_eq!(
        report.result::<Vec<String>>("ask_many").unwrap(),
        vec!["eu".to_owned(), "ap".to_owned()]
    );
    assert_eq!(
        report.result::<String>("ask_custom").unwrap(),
        "3xeu-west by tester-custom"
    );
    // Each request was kept with who answered.
    let all = block(store.feedback_requests(false, 100)).unwrap();
    let ours: Vec<_> = all.iter().filter(|r| r.run_id == report.run_id()).collect();
    assert_eq!(ours.len(), 5, "{handler}: {ours:?}");
    for request in ours {
        match &request.status {
            FeedbackStatus::Answered(answer) => {
                assert_eq!(answer.by, format!("tester-{}", request.kind));
            }
            other => panic!("{handler}: {other:?}"),
        }
    }
}

struct Ctx {
    dir: PathBuf,
}

impl Ctx {
    fn store(&self, name: &str) -> (Store, PathBuf) {
        let path = self.dir.join(format!("{name}.db"));
        (store_at(&path), path)
    }
}

fn engine_with(store: &Store) -> WorkflowEngine {
    let mut engine = WorkflowEngine::new();
    engine.set_recorder(Some(store.recorder()));
    engine
}

fn every_kind_is_asked_and_answered_in_process_and_in_a_child_process(ctx: &Ctx) {
    for handler in ["direct", "process"] {
        let (store, _) = ctx.store(&format!("kinds-{handler}"));
        five_kinds_on(handler, &engine_with(&store), &store);
    }
}

fn every_kind_is_asked_and_answered_in_a_container(ctx: &Ctx) {
    if common::skip_without_docker() {
        return;
    }
    let (store, _) = ctx.store("kinds-docker");
    five_kinds_on("docker", &engine_with(&store), &store);
}

fn every_kind_is_asked_and_answered_on_a_redis_worker(ctx: &Ctx) {
    if !redis_common::available(
        "redis-server",
        "apt-get install redis-server (or graflow-redis/scripts/setup.sh)",
    ) {
        return;
    }
    let Some(server) = redis_common::RedisServer::start() else {
        return;
    };
    let (store, _) = ctx.store("kinds-redis");
    let mut engine = redis_common::engine(&server, graflow::redis::RedisOptions::default());
    engine.set_recorder(Some(store.recorder()));
    // The worker records nowhere: its questions go to the engine, which owns them.
    let mut worker = redis_common::spawn_worker(
        &server.url(),
        "feedback-worker",
        &[("GRAFLOW_STORE", "off")],
    );
    five_kinds_on("redis", &engine, &store);
    worker.kill();
}

fn invalid_answers_are_refused_and_the_request_stays_open(ctx: &Ctx) {
    let (store, _) = ctx.store("invalid");
    let engine = engine_with(&store);
    let mut builder = Workflow::builder("invalid");
    builder.add(ask_choice::task());
    builder.add(ask_custom::task());
    builder.add(ask_text::task());
    let wf = builder.build();
    let checker = {
        let store = store.clone();
        std::thread::spawn(move || {
            let choice = wait_for_request(&store, "ask_choice");
            let custom = wait_for_request(&store, "ask_custom");
            let text = wait_for_request(&store, "ask_text");
            let refused = |result: Result<_, AnswerError>| match result {
                Err(AnswerError::Invalid { message, .. }) => message,
                other => panic!("not refused: {other:?}"),
            };
            let wrong = refused(block(store.answer(
                &choice.id,
                serde_json::json!("purple"),
                "x",
            )));
            assert!(wrong.contains("\"purple\" is not an option"), "{wrong}");
            assert!(wrong.contains("red, green, blue"), "{wrong}");
            let typed = refused(block(store.answer(&choice.id, serde_json::json!(42), "x")));
            assert!(typed.contains("got a number"), "{typed}");
            let typed = refused(block(store.answer_text(&choice.id, "purple", "x")));
            assert!(typed.contains("not an option"), "{typed}");
            let shape = refused(block(store.answer(
                &custom.id,
                serde_json::json!({"replicas": "three", "region": "eu"}),
                "x",
            )));
            assert!(shape.contains("/replicas"), "{shape}");
            let missing = refused(block(store.answer_text(
                &custom.id,
                "{\"replicas\": 1}",
                "x",
            )));
            assert!(missing.contains("region"), "{missing}");
            let huge = "y".repeat(10 << 20);
            let big = refused(block(store.answer(&text.id, serde_json::json!(huge), "x")));
            assert!(big.contains("more than"), "{big}");
            // Still open, and a valid answer is taken.
            for request in [&choice, &custom, &text] {
                let now = block(store.feedback_request(&request.id)).unwrap().unwrap();
                assert_eq!(now.status, FeedbackStatus::Open, "{}", request.prompt);
                block(store.answer(&request.id, answer_of(request), "tester")).unwrap();
            }
        })
    };
    let report = engine
        .run(&wf, RunOptions::new())
        .expect("the run succeeds");
    checker.join().expect("the checks pass");
    assert_eq!(report.result::<String>("ask_choice").unwrap(), "green");
    // Unknown, malformed, answered: refused, saying why.
    let id = "0123456789abcdef0123456789abcdef";
    assert!(matches!(
        block(store.answer(id, serde_json::json!(true), "x")),
        Err(AnswerError::UnknownRequest { .. })
    ));
    assert!(matches!(
        block(store.answer("../../etc/passwd", serde_json::json!(true), "x")),
        Err(AnswerError::UnknownRequest { .. })
    ));
}

fn two_answers_race_and_exactly_one_wins(ctx: &Ctx) {
    let (store, path) = ctx.store("race");
    let engine = engine_with(&store);
    let mut builder = Workflow::builder("race");
    builder.add(ask_approval::task());
    let wf = builder.build();
    let racers = std::thread::spawn(move || {
        let request = wait_for_request(&store_at(&path), "ask_approval");
        // Eight answerers, each with a store of its own (as eight programs would be).
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store_at(&path);
                let barrier = barrier.clone();
                let id = request.id.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    block(store.answer(&id, serde_json::json!(i % 2 == 0), &format!("racer-{i}")))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for result in &results {
            if let Err(error) = result {
                assert!(
                    matches!(error, AnswerError::AlreadyAnswered { .. }),
                    "{error:?}"
                );
            }
        }
        winners[0].clone()
    });
    let report = engine
        .run(&wf, RunOptions::new())
        .expect("the run succeeds");
    let winner = racers.join().expect("the race is checked");
    assert_eq!(
        report.result::<bool>("ask_approval").unwrap(),
        winner.value == serde_json::json!(true)
    );
}

fn a_cancelled_request_fails_its_task_at_once_without_retries(ctx: &Ctx) {
    let (store, _) = ctx.store("cancel");
    let engine = engine_with(&store);
    let mut builder = Workflow::builder("cancel");
    builder.add(ask_then_cancelled::task());
    let wf = builder.build();
    let canceller = {
        let store = store.clone();
        std::thread::spawn(move || {
            let request = wait_for_request(&store, "ask_then_cancelled");
            block(store.cancel_feedback(&request.id, "not this week", "lead")).unwrap();
            assert!(matches!(
                block(store.answer(&request.id, serde_json::json!(true), "late")),
                Err(AnswerError::Cancelled { .. })
            ));
            Instant::now()
        })
    };
    let error = engine
        .run(&wf, RunOptions::new())
        .expect_err("the run fails");
    let cancelled_at = canceller.join().unwrap();
    assert!(
        cancelled_at.elapsed() < PROMPTLY,
        "the task did not wake when its request was cancelled"
    );
    let text = format!("{error:?}");
    assert!(text.contains("cancelled by lead: not this week"), "{text}");
    let failure = error.failure().expect("a task failed");
    assert_eq!(failure.attempts, 1, "a cancelled request is not retried");
}

fn the_wait_for_an_answer_does_not_count_against_the_task_s_timeout(ctx: &Ctx) {
    for handler in ["direct", "process"] {
        let (store, _) = ctx.store(&format!("slow-{handler}"));
        let engine = engine_with(&store);
        let mut builder = Workflow::builder("slow");
        builder.add(ask_slowly::task().with_handler(handler));
        let answerer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let request = wait_for_request(&store, "ask_slowly");
                // Twice the task's own timeout.
                std::thread::sleep(Duration::from_secs(2));
                block(store.answer(&request.id, serde_json::json!(true), "slow")).unwrap();
            })
        };
        let report = engine
            .run(&builder.build(), RunOptions::new())
            .unwrap_or_else(|e| panic!("{handler}: {e:?}"));
        answerer.join().unwrap();
        assert!(report.result::<bool>("ask_slowly").unwrap());
    }
}

fn tasks_asking_at_once_all_wait_and_the_run_waits_for_all(ctx: &Ctx) {
    let (store, _) = ctx.store("both");
    let engine = engine_with(&store);
    let wf = workflow! { name: "both"; (ask_left | ask_right) >> after_both; };
    let error = engine
        .run(&wf, RunOptions::new())
        .expect_err("nobody answers");
    let waiting = error.waiting().expect("the run waits");
    let mut tasks: Vec<&str> = waiting.requests.iter().map(|r| r.task.as_str()).collect();
    tasks.sort_unstable();
    assert_eq!(tasks, ["ask_left", "ask_right"]);
    let checkpoint = waiting.checkpoint.clone().expect("a checkpoint");
    assert!(checkpoint.exists());
    let counts = waiting.report.counts();
    assert_eq!((counts.waiting, counts.skipped), (2, 1), "{counts:?}");
    let text = format!("{error}");
    assert!(text.contains("waits for 2 answer(s)"), "{text}");
    // Both answered: resumed, the run finishes.
    for request in &waiting.requests {
        block(store.answer(&request.request_id, serde_json::json!(true), "both")).unwrap();
    }
    let report = engine
        .run(&wf, RunOptions::new().resume_run(&waiting.run_id))
        .expect("the resumed run finishes");
    assert!(report.result::<bool>("after_both").unwrap());
}

fn a_task_that_ran_inline_asks_from_a_thread_of_its_own(ctx: &Ctx) {
    let (store, _) = ctx.store("inline");
    let engine = engine_with(&store);
    // Fast runs that do not ask: the body is then run inline on the scheduler's thread.
    for _ in 0..3 {
        let mut builder = Workflow::builder("inline-warmup");
        builder.add(maybe_ask::task().with_input("ask", false));
        engine.run(&builder.build(), RunOptions::new()).unwrap();
    }
    // Two asking at once, from inline bodies: both wait (the scheduler's thread never does),
    // each once, in its first attempt.
    let mut builder = Workflow::builder("inline");
    builder.add(maybe_ask::task().with_id("left").with_input("ask", true));
    builder.add(maybe_ask::task().with_id("right").with_input("ask", true));
    let error = engine
        .run(&builder.build(), RunOptions::new())
        .expect_err("nobody answers");
    let waiting = error.waiting().expect("the run waits");
    assert_eq!(waiting.requests.len(), 2, "{:?}", waiting.requests);
    for task in waiting.report.tasks() {
        assert_eq!(task.attempts, 1, "{}", task.id);
    }
    let asked: Vec<FeedbackInfo> = block(store.feedback_requests(false, 100))
        .unwrap()
        .into_iter()
        .filter(|r| r.run_id == waiting.run_id)
        .collect();
    assert_eq!(asked.len(), 2, "each asked once: {asked:?}");
}

fn a_task_on_a_warm_runner_is_told_it_cannot_ask(ctx: &Ctx) {
    let (store, _) = ctx.store("warm");
    let engine = engine_with(&store);
    let mut builder = Workflow::builder("warm");
    builder.add(ask_warm::task());
    let error = engine
        .run(&builder.build(), RunOptions::new())
        .expect_err("a warm runner cannot ask");
    let text = format!("{error:?}");
    assert!(
        text.contains("warm runner (reuse = true) cannot ask"),
        "{text}"
    );
    assert!(open_of(&store, "ask_warm").is_empty());
}

fn asking_outside_a_run_or_without_a_store_is_a_clear_error(ctx: &Ctx) {
    let _ = ctx;
    // No store: the task fails at once, saying what to do.
    let mut engine = WorkflowEngine::new();
    engine.set_recorder(None);
    let mut builder = Workflow::builder("nostore");
    builder.add(ask_approval::task());
    let error = engine
        .run(&builder.build(), RunOptions::new())
        .expect_err("no store, no request");
    let text = format!("{error:?}");
    assert!(text.contains("cannot ask for feedback"), "{text}");
    assert!(text.contains("GRAFLOW_STORE"), "{text}");
    // No run at all.
    let standalone = ExecutionContext::for_task(ask_approval::task()).unwrap();
    let outcome = block(standalone.task().run(&standalone));
    let text = format!("{:?}", outcome.expect_err("no engine"));
    assert!(text.contains("cannot ask for feedback"), "{text}");
}

fn child(mode: &str, store: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(args)
        .env(CHILD, mode)
        .env("GRAFLOW_STORE", format!("sqlite:{}", store.display()))
        .env_remove("GRAFLOW_FEEDBACK_WEBHOOK")
        .env_remove("GRAFLOW_FEEDBACK_WEBHOOK_SECRET")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// The deploy program run with `args` (its flags), nothing else set.
fn flags(store: &Path, args: &[&str]) -> Output {
    output(child("deploy", store, args, &[]))
}

fn output(mut command: Command) -> Output {
    command.output().expect("the child starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn a_run_nobody_answers_waits_then_resumes_with_the_answer_in_a_new_process(ctx: &Ctx) {
    let (store, path) = ctx.store("suspend");
    let builds = ctx.dir.join("suspend-builds.txt");
    let builds_env = builds.display().to_string();
    let env = [(WAIT, "1"), (BUILDS, builds_env.as_str())];
    let first = output(child("deploy", &path, &[], &env));
    let stderr = text(&first.stderr);
    assert_eq!(first.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("waits for 1 answer(s)"), "{stderr}");
    assert!(stderr.contains("--graflow-answer"), "{stderr}");
    assert!(stderr.contains("--graflow-resume"), "{stderr}");
    let request = wait_for_request(&store, "approve");
    let runs = block(store.runs(10)).unwrap();
    let run = runs
        .iter()
        .find(|r| r.id == request.run_id)
        .expect("the run");
    assert_eq!(run.status.to_string(), "waiting");
    // The program's flags list it, as JSON too.
    let listed = flags(&path, &["--graflow-feedback"]);
    assert!(
        text(&listed.stdout).contains(&request.id),
        "{}",
        text(&listed.stdout)
    );
    let json = flags(&path, &["--graflow-feedback", "--graflow-json"]);
    let listed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(listed[0]["id"], request.id.as_str());
    assert_eq!(listed[0]["kind"], "approval");
    assert_eq!(listed[0]["prompt"], "Deploy shop-2.0?");
    // Resumed without an answer: it waits again, for the same request.
    let again = output(child(
        "deploy",
        &path,
        &["--graflow-resume", &request.run_id],
        &env,
    ));
    assert_eq!(again.status.code(), Some(75), "{}", text(&again.stderr));
    let open = open_of(&store, "approve");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].id, request.id);
    // A run that waits is kept by a prune of everything that ended.
    block(store.prune(Duration::ZERO)).unwrap();
    assert_eq!(open_of(&store, "approve").len(), 1, "pruned");
    // Not a request id, or an unknown one: refused with the reason, exit 1.
    let unknown = flags(&path, &["--graflow-answer", "not-an-id", "yes"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown.stderr));
    assert!(
        text(&unknown.stderr).contains("no request"),
        "{}",
        text(&unknown.stderr)
    );
    // Answered from the command line; a second answer is refused.
    let bad = flags(&path, &["--graflow-answer", &request.id, "perhaps"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("expected yes or no"),
        "{}",
        text(&bad.stderr)
    );
    let yes = flags(
        &path,
        &[
            "--graflow-answer",
            &request.id,
            "yes",
            "--graflow-by",
            "alice",
        ],
    );
    assert_eq!(yes.status.code(), Some(0), "{}", text(&yes.stderr));
    let no = flags(&path, &["--graflow-answer", &request.id, "no"]);
    assert_eq!(no.status.code(), Some(1));
    assert!(
        text(&no.stderr).contains("already answered by alice"),
        "{}",
        text(&no.stderr)
    );
    // Resumed: `build` does not run again, `approve` gets the answer without asking.
    resumed_deploys(&path, &request.run_id, &env, &builds);
    assert_eq!(
        block(store.feedback_requests(false, 100))
            .unwrap()
            .iter()
            .filter(|r| r.run_id == request.run_id)
            .count(),
        1,
        "the resumed task asked again"
    );
    let runs = block(store.runs(10)).unwrap();
    let run = runs.iter().find(|r| r.id == request.run_id).unwrap();
    assert_eq!(run.status.to_string(), "succeeded");
}

/// Resumes run `run_id` of the deploy program: it deploys, and `build` ran once in all.
fn resumed_deploys(path: &Path, run_id: &str, env: &[(&str, &str)], builds: &Path) {
    let done = output(child("deploy", path, &["--graflow-resume", run_id], env));
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert!(
        text(&done.stdout).contains("deployed"),
        "{}",
        text(&done.stdout)
    );
    let built = std::fs::read_to_string(builds).unwrap();
    assert_eq!(built.lines().count(), 1, "build ran again: {built}");
}

fn a_program_killed_while_it_waits_is_resumed_with_the_answer(ctx: &Ctx) {
    let (store, path) = ctx.store("killed");
    let builds = ctx.dir.join("killed-builds.txt");
    let builds_env = builds.display().to_string();
    let env = [(WAIT, "600"), (BUILDS, builds_env.as_str())];
    let mut waiting = child("deploy", &path, &[], &env);
    waiting.stdout(Stdio::null()).stderr(Stdio::null());
    let mut waiting = waiting.spawn().expect("the child starts");
    let request = wait_for_request(&store, "approve");
    // The run is checkpointed once its task waits: wait for the file, then kill.
    let checkpoint = store
        .suspend_path(&request.run_id)
        .expect("a checkpoint path");
    assert!(
        common::within(PROMPTLY, || checkpoint.exists()).is_some(),
        "no checkpoint at {}",
        checkpoint.display()
    );
    waiting.kill().expect("SIGKILL");
    let _ = waiting.wait();
    block(store.answer_text(&request.id, "yes", "bob")).unwrap();
    resumed_deploys(&path, &request.run_id, &env, &builds);
}

/// What a test webhook receiver got: each request's headers and body.
type Received = Arc<Mutex<Vec<(BTreeMap<String, String>, String)>>>;

/// A webhook receiver on a loopback port: answers 200 to every POST and keeps what it got.
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let kept = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len.min(1 << 20)];
            let _ = reader.read_exact(&mut body);
            kept.lock()
                .unwrap()
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let mut stream = reader.into_inner();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, received)
}

fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn the_webhook_is_told_signed_and_a_receiver_down_never_affects_a_run(ctx: &Ctx) {
    let (url, received) = receiver();
    let (store, path) = ctx.store("webhook");
    let secret = "s3cr3t-for-the-test";
    let env = [
        (WAIT, "1"),
        ("GRAFLOW_FEEDBACK_WEBHOOK", url.as_str()),
        ("GRAFLOW_FEEDBACK_WEBHOOK_SECRET", secret),
    ];
    let waited = output(child("deploy", &path, &[], &env));
    assert_eq!(waited.status.code(), Some(75), "{}", text(&waited.stderr));
    let request = wait_for_request(&store, "approve");
    let answered = output(child(
        "deploy",
        &path,
        &["--graflow-answer", &request.id, "no"],
        &env,
    ));
    assert_eq!(
        answered.status.code(),
        Some(0),
        "{}",
        text(&answered.stderr)
    );
    let events = |received: &Received| -> Vec<String> {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.get("x-graflow-event").cloned().unwrap_or_default())
            .collect()
    };
    assert!(
        common::within(PROMPTLY, || events(&received).len() >= 3).is_some(),
        "{:?}",
        events(&received)
    );
    let mut seen = events(&received);
    seen.sort();
    assert_eq!(
        seen,
        [
            "feedback.answered",
            "feedback.created",
            "feedback.timed_out"
        ]
    );
    for (headers, body) in received.lock().unwrap().iter() {
        let timestamp = headers.get("x-graflow-timestamp").expect("a timestamp");
        let signature = headers.get("x-graflow-signature").expect("a signature");
        let expected = hmac_hex(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes());
        assert_eq!(signature, &format!("sha256={expected}"), "{body}");
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["id"], request.id.as_str());
        assert_eq!(doc["task"], "approve");
        if doc["event"] == "feedback.answered" {
            assert_eq!(doc["answer"], false);
        }
    }
    // A receiver that is down: the run waits all the same, and the program ends.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let (store, path) = ctx.store("webhook-down");
    let env = [(WAIT, "1"), ("GRAFLOW_FEEDBACK_WEBHOOK", down.as_str())];
    let started = Instant::now();
    let waited = output(child("deploy", &path, &[], &env));
    assert_eq!(waited.status.code(), Some(75), "{}", text(&waited.stderr));
    assert!(
        started.elapsed() < PROMPTLY,
        "the program hung on its webhook"
    );
    // Cancelled from the command line (its webhook down too); a second cancel is refused, and
    // the cancelled request is listed with --graflow-all only.
    let request = wait_for_request(&store, "approve");
    let args = [
        "--graflow-cancel-feedback",
        request.id.as_str(),
        "--graflow-by",
        "ops",
    ];
    let cancelled = output(child("deploy", &path, &args, &env));
    assert_eq!(
        cancelled.status.code(),
        Some(0),
        "{}",
        text(&cancelled.stderr)
    );
    let again = output(child("deploy", &path, &args, &env));
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("was cancelled by ops"),
        "{}",
        text(&again.stderr)
    );
    assert!(open_of(&store, "approve").is_empty());
    let all = flags(
        &path,
        &["--graflow-feedback", "--graflow-all", "--graflow-json"],
    );
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all[0]["status"], "cancelled", "{all}");
    assert_eq!(all[0]["cancelled_by"], "ops", "{all}");
}

/// A child: the deploy workflow, its run waiting as the environment says.
fn child_main(mode: &str) -> graflow::Result<()> {
    assert_eq!(mode, "deploy", "unknown child mode");
    let wf = workflow! { name: "deploy"; build >> approve >> deploy; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
    println!("{}", report.result::<String>("deploy")?);
    Ok(())
}

type Test = (&'static str, fn(&Ctx));

#[graflow::main]
fn main() -> graflow::Result<()> {
    if let Ok(mode) = std::env::var(CHILD) {
        return child_main(&mode);
    }
    let dir = std::env::temp_dir().join(format!("graflow-feedback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ctx = Ctx { dir: dir.clone() };
    let tests: [Test; 14] = [
        (
            "a_task_that_ran_inline_asks_from_a_thread_of_its_own",
            a_task_that_ran_inline_asks_from_a_thread_of_its_own,
        ),
        (
            "the_wait_for_an_answer_does_not_count_against_the_task_s_timeout",
            the_wait_for_an_answer_does_not_count_against_the_task_s_timeout,
        ),
        (
            "tasks_asking_at_once_all_wait_and_the_run_waits_for_all",
            tasks_asking_at_once_all_wait_and_the_run_waits_for_all,
        ),
        (
            "a_task_on_a_warm_runner_is_told_it_cannot_ask",
            a_task_on_a_warm_runner_is_told_it_cannot_ask,
        ),
        (
            "every_kind_is_asked_and_answered_in_process_and_in_a_child_process",
            every_kind_is_asked_and_answered_in_process_and_in_a_child_process,
        ),
        (
            "every_kind_is_asked_and_answered_in_a_container",
            every_kind_is_asked_and_answered_in_a_container,
        ),
        (
            "every_kind_is_asked_and_answered_on_a_redis_worker",
            every_kind_is_asked_and_answered_on_a_redis_worker,
        ),
        (
            "invalid_answers_are_refused_and_the_request_stays_open",
            invalid_answers_are_refused_and_the_request_stays_open,
        ),
        (
            "two_answers_race_and_exactly_one_wins",
            two_answers_race_and_exactly_one_wins,
        ),
        (
            "a_cancelled_request_fails_its_task_at_once_without_retries",
            a_cancelled_request_fails_its_task_at_once_without_retries,
        ),
        (
            "asking_outside_a_run_or_without_a_store_is_a_clear_error",
            asking_outside_a_run_or_without_a_store_is_a_clear_error,
        ),
        (
            "a_run_nobody_answers_waits_then_resumes_with_the_answer_in_a_new_process",
            a_run_nobody_answers_waits_then_resumes_with_the_answer_in_a_new_process,
        ),
        (
            "a_program_killed_while_it_waits_is_resumed_with_the_answer",
            a_program_killed_while_it_waits_is_resumed_with_the_answer,
        ),
        (
            "the_webhook_is_told_signed_and_a_receiver_down_never_affects_a_run",
            the_webhook_is_told_signed_and_a_receiver_down_never_affects_a_run,
        ),
    ];
    // `cargo test --test feedback -- NAME` runs the tests whose name contains NAME.
    let failed = common::run_tests(&tests, &ctx);
    let _ = std::fs::remove_dir_all(&dir);
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(101);
    }
    Ok(())
}
