//! Run events: what an observer sees (run and task events, in order, with task, handler and
//! attempt), retries, tolerated and fatal failures, cancellations, runners' output lines,
//! observers that panic, per-run observers, and the bounded event stream.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use graflow::prelude::*;
use graflow::{EventKind, RunEvent, RunOptions, event_stream};

graflow::enable_test_runner!();

/// Keeps every event it sees.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<RunEvent>>>);

impl Recorder {
    fn engine(&self) -> WorkflowEngine {
        let mut engine = WorkflowEngine::new();
        let events = self.0.clone();
        engine.add_observer(move |e: &RunEvent| events.lock().unwrap().push(e.clone()));
        engine
    }

    fn events(&self) -> Vec<RunEvent> {
        self.0.lock().unwrap().clone()
    }

    /// The events of task `id`, as `kind:attempt`.
    fn of(&self, id: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e.task.as_deref() == Some(id))
            .filter(|e| !matches!(e.kind, EventKind::Log { .. }))
            .map(|e| format!("{}:{}", short(&e.kind), e.attempt))
            .collect()
    }

    fn lines(&self, id: &str) -> Vec<RunEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.task.as_deref() == Some(id) && matches!(e.kind, EventKind::Log { .. }))
            .collect()
    }

    fn position(&self, id: &str, kind: &str) -> usize {
        self.events()
            .iter()
            .position(|e| e.task.as_deref() == Some(id) && short(&e.kind) == kind)
            .unwrap_or_else(|| panic!("no {kind} event for {id}: {:?}", self.of(id)))
    }
}

fn short(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::RunStarted { .. } => "run-started",
        EventKind::RunFinished { .. } => "run-finished",
        EventKind::RunAbandoned { .. } => "run-abandoned",
        EventKind::TaskReady => "ready",
        EventKind::TaskStarted => "started",
        EventKind::TaskRetrying { .. } => "retrying",
        EventKind::TaskSucceeded { .. } => "succeeded",
        EventKind::TaskFailed { .. } => "failed",
        EventKind::TaskCancelled => "cancelled",
        EventKind::Log { .. } => "log",
        _ => "other",
    }
}

#[task]
fn first() -> u32 {
    1
}

#[task]
fn second(first: u32) -> u32 {
    first + 1
}

#[task]
async fn third(first: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    first + 2
}

#[task]
fn last(second: u32, third: u32) -> u32 {
    second + third
}

#[test]
fn every_task_is_ready_then_started_then_succeeded_between_the_run_events() {
    let recorder = Recorder::default();
    let wf = workflow! { name: "observed"; first >> (second | third) >> last; };
    let report = recorder.engine().run(&wf, RunOptions::new()).unwrap();
    let events = recorder.events();
    assert!(matches!(
        events.first().map(|e| &e.kind),
        Some(EventKind::RunStarted {
            tasks: 4,
            resumed: false,
            done: 0
        })
    ));
    match &events.last().unwrap().kind {
        EventKind::RunFinished {
            succeeded, counts, ..
        } => {
            assert!(succeeded);
            assert_eq!(counts.succeeded, 4);
            assert_eq!(counts.failed, 0);
            assert_eq!(counts.cancelled, 0);
            assert_eq!(counts.skipped, 0);
        }
        other => panic!("the last event is {other:?}"),
    }
    for id in ["first", "second", "third", "last"] {
        assert_eq!(
            recorder.of(id),
            ["ready:0", "started:1", "succeeded:1"],
            "{id}"
        );
    }
    for e in &events {
        assert_eq!(&*e.run_id, report.run_id());
        assert_eq!(&*e.workflow, "observed");
        if e.task.is_some() {
            assert_eq!(e.handler.as_deref(), Some("direct"));
        } else {
            assert!(e.handler.is_none() && e.attempt == 0);
        }
    }
    // `last` is ready only once both of its predecessors succeeded.
    let ready = recorder.position("last", "ready");
    assert!(ready > recorder.position("second", "succeeded"));
    assert!(ready > recorder.position("third", "succeeded"));
    // Timestamps follow the order of events.
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    let took = events
        .last()
        .unwrap()
        .at
        .duration_since(events[0].at)
        .unwrap();
    assert!(took >= Duration::from_millis(20), "{took:?}");
}

static FLAKY: AtomicU32 = AtomicU32::new(0);

#[task(retries = 2)]
fn flaky(ctx: &TaskContext) -> Result<u32, String> {
    FLAKY.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        Err("the first attempt fails".to_owned())
    } else {
        Ok(ctx.attempt())
    }
}

#[test]
fn a_retry_is_an_event_with_the_failed_attempt_its_error_and_the_delay() {
    let recorder = Recorder::default();
    let wf = workflow! { flaky };
    recorder.engine().run(&wf, RunOptions::new()).unwrap();
    assert_eq!(
        recorder.of("flaky"),
        [
            "ready:0",
            "started:1",
            "retrying:1",
            "started:2",
            "succeeded:2"
        ]
    );
    let retry = recorder
        .events()
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::TaskRetrying { error, delay, .. } => Some((error, delay)),
            _ => None,
        })
        .unwrap();
    assert!(retry.0.contains("the first attempt fails"), "{}", retry.0);
    assert!(retry.1 > Duration::ZERO);
}

#[task]
fn broken() -> Result<u32, String> {
    Err("broken on purpose".to_owned())
}

#[task]
fn fine() -> u32 {
    5
}

#[test]
fn a_tolerated_failure_says_so_and_the_run_succeeds() {
    let recorder = Recorder::default();
    let wf = workflow! { (fine | broken).policy(best_effort) };
    recorder.engine().run(&wf, RunOptions::new()).unwrap();
    let failed = recorder
        .events()
        .into_iter()
        .find(|e| e.task.as_deref() == Some("broken") && short(&e.kind) == "failed")
        .unwrap();
    assert_eq!(
        failed.kind,
        EventKind::TaskFailed {
            error: failed_error(&failed),
            kind: Some(graflow::ErrorKind::TaskFailed),
            tolerated: true
        }
    );
    assert!(failed_error(&failed).contains("broken on purpose"));
    assert!(matches!(
        recorder.events().last().unwrap().kind,
        EventKind::RunFinished {
            succeeded: true,
            ..
        }
    ));
}

fn failed_error(e: &RunEvent) -> String {
    match &e.kind {
        EventKind::TaskFailed { error, .. } => error.clone(),
        other => panic!("{other:?}"),
    }
}

#[task]
async fn slow() -> u32 {
    tokio::time::sleep(Duration::from_secs(30)).await;
    1
}

#[task]
async fn fails_soon() -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    Err("fails soon".to_owned())
}

#[test]
fn a_failure_cancels_what_runs_and_observers_see_it() {
    let recorder = Recorder::default();
    let wf = workflow! { (slow | fails_soon) };
    let error = recorder.engine().run(&wf, RunOptions::new()).unwrap_err();
    assert_eq!(error.failure().unwrap().task, "fails_soon");
    assert_eq!(recorder.of("slow"), ["ready:0", "started:1", "cancelled:1"]);
    assert_eq!(
        recorder.of("fails_soon"),
        ["ready:0", "started:1", "failed:1"]
    );
    match &recorder.events().last().unwrap().kind {
        EventKind::RunFinished {
            succeeded, counts, ..
        } => {
            assert!(!succeeded);
            assert_eq!(counts.succeeded, 0);
            assert_eq!(counts.failed, 1);
            assert_eq!(counts.cancelled, 1);
            assert_eq!(counts.skipped, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[task(handler = "process")]
fn chatty() -> u32 {
    println!("line one");
    eprintln!("line two");
    eprint!("no newline at the end");
    7
}

#[task(handler = "process", reuse = true)]
fn warm_chatty() -> u32 {
    println!("warm line");
    eprint!("warm, unterminated");
    8
}

#[test]
fn a_runners_output_lines_are_events_of_its_task_handler_and_attempt() {
    let recorder = Recorder::default();
    let wf = workflow! { chatty >> warm_chatty };
    recorder.engine().run(&wf, RunOptions::new()).unwrap();
    for (id, expected) in [
        (
            "chatty",
            &["line one", "line two", "no newline at the end"][..],
        ),
        ("warm_chatty", &["warm line", "warm, unterminated"][..]),
    ] {
        let lines = recorder.lines(id);
        let texts: Vec<String> = lines
            .iter()
            .map(|e| match &e.kind {
                EventKind::Log { line } => line.clone(),
                _ => unreachable!(),
            })
            .collect();
        for want in expected {
            assert!(texts.iter().any(|t| t == want), "{id}: {texts:?}");
        }
        for e in &lines {
            assert_eq!(e.handler.as_deref(), Some("process"));
            assert_eq!(e.attempt, 1);
        }
        // Lines come between the attempt's start and its end.
        let started = recorder.position(id, "started");
        let ended = recorder.position(id, "succeeded");
        let at = recorder.position(id, "log");
        assert!(started < at && at < ended, "{id}: {started} {at} {ended}");
    }
}

#[test]
fn an_observer_that_panics_does_not_stop_the_run_or_the_others() {
    let recorder = Recorder::default();
    let mut engine = WorkflowEngine::new();
    engine.add_observer(|_: &RunEvent| panic!("observer bug"));
    let events = recorder.0.clone();
    engine.add_observer(move |e: &RunEvent| events.lock().unwrap().push(e.clone()));
    let wf = workflow! { first >> second };
    let report = engine.run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.result::<u32>("second").unwrap(), 2);
    assert_eq!(
        recorder.of("second"),
        ["ready:0", "started:1", "succeeded:1"]
    );
}

#[test]
fn a_run_options_observer_sees_that_run_only() {
    let engine_wide = Recorder::default();
    let engine = engine_wide.engine();
    let one_run = Recorder::default();
    let events = one_run.0.clone();
    let options =
        RunOptions::new().observer(move |e: &RunEvent| events.lock().unwrap().push(e.clone()));
    let wf = workflow! { first };
    let observed = engine.run(&wf, options.clone()).unwrap();
    let other = engine.run(&wf, RunOptions::new()).unwrap();
    let runs = |r: &Recorder| -> Vec<String> {
        let mut ids: Vec<String> = r.events().iter().map(|e| e.run_id.to_string()).collect();
        ids.dedup();
        ids
    };
    assert_eq!(runs(&one_run), [observed.run_id()]);
    assert_eq!(runs(&engine_wide), [observed.run_id(), other.run_id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_is_bounded_and_counts_what_it_dropped() {
    use futures_util::StreamExt;
    let (observer, mut events) = event_stream(4);
    let mut engine = WorkflowEngine::new();
    engine.add_observer(observer);
    let wf = workflow! { first >> second };
    engine.execute(&wf, RunOptions::new()).await.unwrap();
    // 2 run events + 3 per task = 8, into room for 4: the run did not wait for a reader.
    let mut got = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {
        got.push(e);
    }
    assert_eq!(got.len(), 4);
    assert_eq!(events.dropped(), 4);
    assert!(matches!(got[0].kind, EventKind::RunStarted { .. }));

    let (observer, mut events) = event_stream(1000);
    let mut engine = WorkflowEngine::new();
    engine.add_observer(observer);
    engine.execute(&wf, RunOptions::new()).await.unwrap();
    drop(engine);
    let mut all = Vec::new();
    while let Some(e) = events.recv().await {
        all.push(short(&e.kind));
    }
    assert_eq!(all.len(), 8, "{all:?}");
    assert_eq!(all.last(), Some(&"run-finished"));
    assert_eq!(events.dropped(), 0);
}

#[task(retries = 3, retry_delay = "10s")]
fn patient() -> Result<u32, String> {
    Err("not yet".to_owned())
}

#[test]
fn a_task_waiting_to_retry_when_the_run_fails_is_cancelled_with_its_attempt() {
    let recorder = Recorder::default();
    let wf = workflow! { (patient | fails_soon) };
    recorder.engine().run(&wf, RunOptions::new()).unwrap_err();
    assert_eq!(
        recorder.of("patient"),
        ["ready:0", "started:1", "retrying:1", "cancelled:1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_run_is_abandoned_and_its_running_tasks_cancelled() {
    let recorder = Recorder::default();
    let engine = recorder.engine();
    let wf = workflow! { name: "dropped"; first >> slow; };
    let mut run = Box::pin(engine.execute(&wf, RunOptions::new()));
    // Dropped once `slow` runs (however long a busy machine takes to get there), and at least
    // 300 ms into the run.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !recorder.of("slow").contains(&"started:1".to_owned()) {
        assert!(
            std::time::Instant::now() < deadline,
            "slow never started: {:?}",
            recorder.of("slow")
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(10), &mut run)
                .await
                .is_err(),
            "the run ended"
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut run)
            .await
            .is_err()
    );
    drop(run);
    assert_eq!(recorder.of("slow"), ["ready:0", "started:1", "cancelled:1"]);
    let last = recorder.events().pop().unwrap();
    match last.kind {
        EventKind::RunAbandoned { elapsed, reason } => {
            assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
            assert!(reason.contains("dropped"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !recorder
            .events()
            .iter()
            .any(|e| matches!(e.kind, EventKind::RunFinished { .. }))
    );
}

#[task]
fn resumable_step(first: u32, ctx: &TaskContext) -> Result<u32, String> {
    if ctx.channel().get::<bool>("fail").unwrap_or(false) {
        Err("asked to fail".to_owned())
    } else {
        Ok(first + 10)
    }
}

#[test]
fn a_resumed_run_says_how_many_tasks_were_done_and_only_the_rest_send_events() {
    let dir = std::env::temp_dir().join(format!("graflow-observe-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");
    let wf = workflow! { name: "resumed"; first >> resumable_step >> last_one; };
    let options = RunOptions::new().checkpoint(&path);
    let engine = WorkflowEngine::new();
    engine
        .run(&wf, options.clone().param("fail", true))
        .unwrap_err();
    let recorder = Recorder::default();
    // (The checkpoint's channel still says fail: the resumed run fails again, after `first`.)
    let report = recorder
        .engine()
        .run(&wf, RunOptions::new().resume_from(&path));
    let events = recorder.events();
    assert!(matches!(
        events[0].kind,
        EventKind::RunStarted {
            tasks: 3,
            resumed: true,
            done: 1
        }
    ));
    assert!(
        recorder.of("first").is_empty(),
        "{:?}",
        recorder.of("first")
    );
    assert_eq!(
        recorder.of("resumable_step")[..2],
        ["ready:0".to_owned(), "started:1".to_owned()]
    );
    drop(report);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[task]
fn last_one(resumable_step: u32) -> u32 {
    resumable_step
}

#[task]
fn count_words(text: String) -> usize {
    text.split_whitespace().count()
}

#[task]
fn fan_out(ctx: &TaskContext) -> graflow::Result<usize> {
    for (i, text) in ["a b", "c d e"].iter().enumerate() {
        ctx.next_task(
            count_words::task()
                .with_id(format!("count_{i}"))
                .with_input("text", (*text).to_owned()),
        )?;
    }
    Ok(2)
}

#[test]
fn tasks_added_while_running_are_announced_with_who_added_them() {
    let recorder = Recorder::default();
    let wf = workflow! { name: "added"; fan_out >> last_one_of_fan; };
    recorder.engine().run(&wf, RunOptions::new()).unwrap();
    for id in ["count_0", "count_1"] {
        assert_eq!(
            recorder.of(id),
            ["other:0", "ready:0", "started:1", "succeeded:1"],
            "{id}"
        );
        let added = recorder
            .events()
            .into_iter()
            .find(|e| e.task.as_deref() == Some(id))
            .unwrap();
        assert_eq!(
            added.kind,
            EventKind::TaskAdded {
                by: "fan_out".to_owned(),
                successors: vec!["last_one_of_fan".to_owned()],
            }
        );
        assert_eq!(added.handler.as_deref(), Some("direct"));
        // Added as the attempt that asked ends well (just before its success), and before
        // the adder's successor is ready.
        assert!(recorder.position(id, "other") > recorder.position("fan_out", "started"));
        assert!(recorder.position(id, "other") < recorder.position("fan_out", "succeeded"));
        assert!(recorder.position(id, "other") < recorder.position("last_one_of_fan", "ready"));
    }
}

#[task]
fn last_one_of_fan(fan_out: usize) -> usize {
    fan_out
}
