//! Dynamic control from inside a task: adding tasks, goto, iterations bounded by max_cycles,
//! terminate and cancel; in this process and from a child process (the requests come back in
//! the outcome).

use graflow::prelude::*;
use graflow::{ControlError, TaskStatus};

graflow::enable_test_runner!();

#[task]
fn count_words(text: String) -> usize {
    text.split_whitespace().count()
}

/// Splits its input into one task per line, decided at run time; `total` waits for them.
#[task]
fn split(lines: Vec<String>, ctx: &TaskContext) -> graflow::Result<usize> {
    for (i, line) in lines.iter().enumerate() {
        ctx.next_task(
            count_words::task()
                .with_id(format!("count_{i}"))
                .with_input("text", line.clone()),
        )?;
    }
    Ok(lines.len())
}

#[task(handler = "process")]
fn split_out_of_process(lines: Vec<String>, ctx: &TaskContext) -> graflow::Result<usize> {
    for (i, line) in lines.iter().enumerate() {
        ctx.next_task(
            count_words::task()
                .with_id(format!("count_{i}"))
                .with_input("text", line.clone())
                .with_max_cycles(3),
        )?;
    }
    Ok(lines.len())
}

#[task]
fn total(ctx: &TaskContext) -> graflow::Result<(Vec<String>, usize)> {
    let ids: Vec<String> = ctx.upstream_ids().iter().map(|s| s.to_string()).collect();
    let counts = ctx.upstream::<usize>()?;
    // The splitter's own result (the number of lines) is among them.
    Ok((ids, counts.into_iter().sum()))
}

fn lines() -> Channel {
    Channel::new().with(
        "lines",
        vec!["a b c".to_owned(), "d e".to_owned(), "f".to_owned()],
    )
}

#[test]
fn a_task_fans_out_into_tasks_decided_at_run_time_and_its_successor_waits_for_them() {
    let wf = workflow! { split >> total; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new().channel(lines()))
        .unwrap();
    let (ids, sum) = report.result::<(Vec<String>, usize)>("total").unwrap();
    assert_eq!(ids, ["split", "count_0", "count_1", "count_2"]);
    assert_eq!(sum, 3 + 3 + 2 + 1);
    let added = report.task("count_1").unwrap();
    assert!(added.added);
    assert_eq!(added.status, TaskStatus::Succeeded);
    assert_eq!(report.result::<usize>("count_0").unwrap(), 3);
    assert_eq!(report.tasks().len(), 5);
}

#[test]
fn requests_made_in_a_child_process_come_back_in_its_outcome() {
    let wf = workflow! { split_out_of_process >> total; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new().channel(lines()))
        .unwrap();
    let (ids, sum) = report.result::<(Vec<String>, usize)>("total").unwrap();
    assert_eq!(
        ids,
        ["split_out_of_process", "count_0", "count_1", "count_2"]
    );
    assert_eq!(sum, 9);
}

#[task]
fn add_bad(ctx: &TaskContext) -> graflow::Result<String> {
    let unknown = ctx
        .next_task(
            count_words::task()
                .with_id("nowhere")
                .with_handler("no-such-handler"),
        )
        .unwrap_err();
    let unbound = ctx
        .next_task(count_words::task().with_id("unbound"))
        .unwrap_err();
    let duplicate = ctx
        .next_task(
            count_words::task()
                .with_id("add_bad")
                .with_input("text", "x".to_owned()),
        )
        .unwrap_err();
    let wrong_type = ctx
        .next_task(
            count_words::task()
                .with_id("typed")
                .with_input("text", 3u32),
        )
        .unwrap_err();
    Ok([unknown, unbound, duplicate, wrong_type]
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n"))
}

#[test]
fn an_added_task_is_validated_when_it_is_added() {
    let wf = workflow! { add_bad; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    let text = report.result::<String>("add_bad").unwrap();
    assert!(
        text.contains("task 'add_bad' cannot add task 'nowhere' to the run"),
        "{text}"
    );
    assert!(
        text.contains("Unknown handler type: no-such-handler"),
        "{text}"
    );
    assert!(
        text.contains("parameter `text: alloc::string::String` has no value"),
        "{text}"
    );
    assert!(text.contains("task id 'add_bad' is used twice"), "{text}");
    assert!(
        text.contains(
            "expects `alloc::string::String` but the input bound with Task::with_input is `u32`"
        ),
        "{text}"
    );
    // Nothing refused was added.
    assert_eq!(report.tasks().len(), 1);
}

#[task(handler = "process")]
fn add_bad_out_of_process(ctx: &TaskContext) -> graflow::Result<u32> {
    // In the runner the run's tasks and channel are unknown: the engine refuses it on arrival.
    ctx.next_task(count_words::task().with_id("nowhere"))?;
    Ok(1)
}

#[test]
fn an_invalid_task_added_out_of_process_fails_the_attempt_that_added_it() {
    let wf = workflow! { add_bad_out_of_process; };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let failure = error.failure().unwrap();
    assert_eq!(failure.task, "add_bad_out_of_process");
    assert_eq!(failure.attempts, 1);
    let text = error.to_string();
    assert!(
        text.contains("asked its run for something it cannot do"),
        "{text}"
    );
    assert!(
        text.contains("task 'add_bad_out_of_process' cannot add task 'nowhere' to the run"),
        "{text}"
    );
    assert!(
        text.contains("parameter `text: alloc::string::String` has no value"),
        "{text}"
    );
}

/// Doubles `value` until it reaches 100, one iteration per run.
#[task(max_cycles = 10)]
fn grow(value: u64, ctx: &TaskContext) -> graflow::Result<u64> {
    let next = value * 2;
    if next < 100 {
        ctx.next_iteration().with("value", next).request()?;
    }
    Ok(next)
}

#[task(handler = "process", max_cycles = 10)]
fn grow_out_of_process(value: u64, ctx: &TaskContext) -> graflow::Result<u64> {
    let next = value * 2;
    if next < 100 {
        ctx.next_iteration().with("value", next).request()?;
    }
    Ok(next)
}

#[task]
fn after_growth(ctx: &TaskContext) -> graflow::Result<u64> {
    Ok(ctx.upstream::<u64>()?.into_iter().sum::<u64>() + 1)
}

#[test]
fn a_task_iterates_with_new_input_before_its_successors_run() {
    let wf = workflow! { grow >> after_growth; };
    let report = WorkflowEngine::new()
        .run(&wf, RunOptions::new().param("value", 3u64))
        .unwrap();
    // 6, 12, 24, 48, 96, 192
    assert_eq!(report.result::<u64>("grow").unwrap(), 192);
    assert_eq!(report.task("grow").unwrap().runs, 6);
    assert_eq!(report.result::<u64>("after_growth").unwrap(), 193);
    assert_eq!(report.task("after_growth").unwrap().runs, 1);

    let mut wf = Workflow::builder("remote-growth");
    let g = wf.add(grow_out_of_process::task().with_id("grow"));
    let a = wf.add(after_growth::task());
    wf.edge(g, a);
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new().param("value", 3u64))
        .unwrap();
    assert_eq!(report.result::<u64>("grow").unwrap(), 192);
    assert_eq!(report.task("grow").unwrap().runs, 6);
}

#[test]
fn past_max_cycles_the_task_fails() {
    let wf = workflow! { grow >> after_growth; };
    // 1 → 2 → ... → 128 would take 7 runs; max_cycles = 3.
    let mut wf2 = Workflow::builder("limited");
    let g = wf2.add(grow::task().with_max_cycles(3));
    let a = wf2.add(after_growth::task());
    wf2.edge(g, a);
    let error = WorkflowEngine::new()
        .run(&wf2.build(), RunOptions::new().param("value", 1u64))
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("task 'grow' has run 3 time(s), its max_cycles"),
        "{text}"
    );
    let report = error.report().unwrap();
    assert_eq!(report.task("grow").unwrap().runs, 3);
    assert_eq!(
        report.task("after_growth").unwrap().status,
        TaskStatus::Skipped
    );
    // The same limit out of process (the engine counts, whatever the runner says).
    let _ = wf;
    let mut wf3 = Workflow::builder("limited-remote");
    wf3.add(grow_out_of_process::task().with_max_cycles(2));
    let error = WorkflowEngine::new()
        .run(&wf3.build(), RunOptions::new().param("value", 1u64))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("has run 2 time(s), its max_cycles"),
        "{error}"
    );
}

#[task]
fn draft(ctx: &TaskContext) -> u32 {
    ctx.cycle()
}

#[task]
fn review(draft: u32, ctx: &TaskContext) -> graflow::Result<String> {
    if draft < 3 {
        // Not good enough: back to drafting (draft and review run again).
        ctx.goto("draft")?;
        return Ok(format!("rejected draft {draft}"));
    }
    Ok(format!("accepted draft {draft}"))
}

#[task]
fn publish(review: String) -> String {
    format!("published: {review}")
}

#[test]
fn goto_runs_an_earlier_task_again_and_the_tasks_after_it() {
    let wf = workflow! { draft >> review >> publish; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert_eq!(
        report.result::<String>("publish").unwrap(),
        "published: accepted draft 3"
    );
    assert_eq!(report.task("draft").unwrap().runs, 3);
    assert_eq!(report.task("review").unwrap().runs, 3);
    assert_eq!(report.task("publish").unwrap().runs, 1);
}

#[task]
fn jump_nowhere(ctx: &TaskContext) -> graflow::Result<u32> {
    match ctx.goto("nope") {
        Err(ControlError::NoSuchTask { target, .. }) => Ok(target.len() as u32),
        other => panic!("expected NoSuchTask, got {other:?}"),
    }
}

#[test]
fn goto_to_a_task_the_run_does_not_have_is_refused() {
    let report = WorkflowEngine::new()
        .run(&workflow! { jump_nowhere; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<u32>("jump_nowhere").unwrap(), 4);
}

#[task]
fn check_cache(ctx: &TaskContext) -> u32 {
    ctx.terminate("the cache has it");
    42
}

#[task]
fn expensive(check_cache: u32) -> u32 {
    check_cache + 1
}

#[task(handler = "process")]
fn check_cache_out_of_process(ctx: &TaskContext) -> u32 {
    ctx.terminate("the cache has it");
    42
}

#[test]
fn terminate_ends_the_run_early_as_a_success() {
    let wf = workflow! { check_cache >> expensive; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert!(report.succeeded());
    assert_eq!(
        report.terminated(),
        Some(("check_cache", "the cache has it"))
    );
    assert_eq!(report.result::<u32>("check_cache").unwrap(), 42);
    assert_eq!(
        report.task("expensive").unwrap().status,
        TaskStatus::Skipped
    );
    assert!(
        report
            .to_string()
            .contains("ended early by task 'check_cache': the cache has it")
    );

    let mut wf = Workflow::builder("remote-terminate");
    let c = wf.add(check_cache_out_of_process::task().with_id("check_cache"));
    let e = wf.add(expensive::task());
    wf.edge(c, e);
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    assert_eq!(
        report.terminated(),
        Some(("check_cache", "the cache has it"))
    );
    assert_eq!(
        report.task("expensive").unwrap().status,
        TaskStatus::Skipped
    );
}

#[task(retries = 3, retry_delay = "1ms")]
fn validate_input(ctx: &TaskContext) -> Result<u32, String> {
    ctx.cancel("the input is not valid");
    Err("invalid".to_owned())
}

#[task(handler = "process")]
fn validate_out_of_process(ctx: &TaskContext) -> u32 {
    ctx.cancel("the input is not valid");
    7
}

#[test]
fn cancel_fails_the_run_whatever_the_attempt_returned_and_is_not_retried() {
    let wf = workflow! { validate_input >> after_growth; };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let RunError::Cancelled(cancelled) = &error else {
        panic!("expected a cancelled run, got {error:?}");
    };
    assert_eq!(cancelled.task, "validate_input");
    assert_eq!(cancelled.message, "the input is not valid");
    let record = cancelled.report.task("validate_input").unwrap();
    assert_eq!(record.attempts, 1);
    assert!(record.error.unwrap().contains("cancelled the run"));
    assert!(
        error
            .to_string()
            .contains("was cancelled by task 'validate_input'"),
        "{error}"
    );

    let error = WorkflowEngine::new()
        .run(&workflow! { validate_out_of_process; }, RunOptions::new())
        .unwrap_err();
    let RunError::Cancelled(cancelled) = &error else {
        panic!("expected a cancelled run, got {error:?}");
    };
    assert_eq!(cancelled.message, "the input is not valid");
    assert!(
        cancelled
            .report
            .result::<u32>("validate_out_of_process")
            .is_err()
    );
}

#[task]
fn replace_successors(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.next_task_instead(
        count_words::task()
            .with_id("instead")
            .with_input("text", "one two".to_owned()),
    )?;
    Ok(1)
}

#[task]
fn normal_successor(replace_successors: u32) -> u32 {
    replace_successors
}

#[test]
fn next_task_instead_replaces_the_successors() {
    let wf = workflow! { replace_successors >> normal_successor; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.result::<usize>("instead").unwrap(), 2);
    assert_eq!(
        report.task("normal_successor").unwrap().status,
        TaskStatus::Skipped
    );
    assert!(report.to_string().contains("succeeded (added)"), "{report}");
}

static FLAKY_ADDER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Adds a task, then fails its first attempt; the retry adds it again.
#[task(retries = 1, retry_delay = "1ms")]
fn adds_then_fails_once(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.next_task(
        count_words::task()
            .with_id("from_flaky")
            .with_input("text", "a".to_owned()),
    )?;
    if FLAKY_ADDER.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        return Err(graflow::ControlError::Conflict {
            task: ctx.task_id().to_owned(),
            message: "first attempt fails".to_owned(),
        }
        .into());
    }
    Ok(1)
}

#[test]
fn only_a_successful_attempt_s_requests_take_effect() {
    let report = WorkflowEngine::new()
        .run(&workflow! { adds_then_fails_once; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.task("adds_then_fails_once").unwrap().attempts, 2);
    // Added once (by the successful attempt), not twice: no duplicate-id refusal either.
    assert_eq!(report.tasks().filter(|t| t.added).count(), 1);
    assert_eq!(report.result::<usize>("from_flaky").unwrap(), 1);
}

/// `jumps_back` has asked for its goto.
static JUMPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[task]
fn slow_sibling() -> u32 {
    // Still running when `jumps_back`'s goto is applied, however late a busy machine runs it.
    wait_for(&JUMPED);
    std::thread::sleep(std::time::Duration::from_secs(1));
    1
}

#[task]
fn root_task() -> u32 {
    0
}

#[task]
fn jumps_back(root_task: u32, ctx: &TaskContext) -> graflow::Result<u32> {
    // `slow_sibling` runs after `root_task` too: a goto to `root_task` would run it again
    // while it is still running.
    let asked = ctx.goto("root_task");
    JUMPED.store(true, std::sync::atomic::Ordering::SeqCst);
    asked?;
    Ok(root_task)
}

#[test]
fn a_goto_that_would_rerun_a_running_task_is_refused_when_applied() {
    let wf = workflow! { root_task >> (jumps_back | slow_sibling); };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "goto 'root_task' would run task 'slow_sibling' again, which is running or about to run"
        ),
        "{text}"
    );
    assert_eq!(error.failure().unwrap().task, "jumps_back");
}

#[test]
fn dynamic_requests_work_on_warm_runners_too() {
    let pool = graflow::handlers::PoolOptions::new()
        .with_size(1)
        .reuse_by_default(true);
    let engine = WorkflowEngine::new()
        .with_handler("process", graflow::ProcessHandler::new().with_pool(pool));
    let wf = workflow! { split_out_of_process >> total; };
    for _ in 0..2 {
        let report = engine.run(&wf, RunOptions::new().channel(lines())).unwrap();
        assert_eq!(report.result::<(Vec<String>, usize)>("total").unwrap().1, 9);
        assert!(
            report
                .task("split_out_of_process")
                .unwrap()
                .runner
                .is_some_and(|r| r.contains("warm")),
            "{report}"
        );
    }
    let mut grow = Workflow::builder("warm-growth");
    grow.add(grow_out_of_process::task().with_id("grow"));
    let report = engine
        .run(&grow.build(), RunOptions::new().param("value", 3u64))
        .unwrap();
    assert_eq!(report.result::<u64>("grow").unwrap(), 192);
}

/// `slow_first_attempt`'s second attempt has started; its first attempt's body has asked.
static SECOND_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STALE_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits (bounded) until `flag` is set.
fn wait_for(flag: &std::sync::atomic::AtomicBool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !flag.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The first attempt times out but its body goes on (a synchronous body cannot be stopped)
/// and adds a task while the second attempt runs. The order is by flags, not by sleeps: on a
/// busy machine a body sleeping 30 ms past its timeout could return before the timeout fired.
#[task(timeout = "100ms", retries = 1, retry_delay = "1ms")]
fn slow_first_attempt(ctx: &TaskContext) -> graflow::Result<u32> {
    use std::sync::atomic::Ordering;
    if ctx.attempt() == 1 {
        // The second attempt starts only once this one has timed out.
        wait_for(&SECOND_STARTED);
        let asked = ctx.next_task(
            count_words::task()
                .with_id("stale")
                .with_input("text", "x".to_owned()),
        );
        STALE_ASKED.store(true, Ordering::SeqCst);
        asked?;
        return Ok(1);
    }
    SECOND_STARTED.store(true, Ordering::SeqCst);
    // The first attempt's body asks while this one runs.
    wait_for(&STALE_ASKED);
    ctx.next_task(
        count_words::task()
            .with_id("fresh")
            .with_input("text", "y".to_owned()),
    )?;
    Ok(2)
}

#[test]
fn a_given_up_attempt_cannot_add_to_a_later_one() {
    let report = WorkflowEngine::new()
        .run(&workflow! { slow_first_attempt; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<u32>("slow_first_attempt").unwrap(), 2);
    assert!(report.task("fresh").is_some());
    assert!(report.task("stale").is_none(), "{report}");
}

#[task(handler = "process")]
fn adds_with_other_config(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.next_task(
        count_words::task()
            .with_id("elsewhere")
            .with_input("text", "a b".to_owned())
            .with_config("sandbox", false),
    )?;
    Ok(1)
}

#[task(handler = "process")]
fn where_added_tasks_run(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.next_task(pid_of_runner::task().with_id("inherits"))?;
    Ok(std::process::id())
}

#[task]
fn pid_of_runner() -> u32 {
    std::process::id()
}

#[test]
fn a_task_added_by_a_runner_runs_where_the_runner_runs_and_cannot_choose_elsewhere() {
    // Its function's default handler is "direct"; added by a "process" task, it runs in a
    // child process too, never in the engine.
    let report = WorkflowEngine::new()
        .run(&workflow! { where_added_tasks_run; }, RunOptions::new())
        .unwrap();
    let record = report.task("inherits").unwrap();
    assert_eq!(record.handler, "process");
    assert_ne!(
        report.result::<u32>("inherits").unwrap(),
        std::process::id()
    );

    let error = WorkflowEngine::new()
        .run(&workflow! { adds_with_other_config; }, RunOptions::new())
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("asked from out of process to add task 'elsewhere' on handler 'direct' with a configuration of its own"),
        "{text}"
    );
    assert!(
        !text.contains("Bool"),
        "the configuration is not printed: {text}"
    );
}

static GOTO_TARGET_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[task]
async fn slow_predecessor() -> u32 {
    graflow::tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    1
}

#[task]
fn goto_target() -> u32 {
    GOTO_TARGET_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    0
}

#[task]
fn jumps_ahead(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.goto("goto_target")?;
    Ok(0)
}

#[test]
fn a_goto_target_runs_once_even_when_its_predecessor_finishes_later() {
    let mut wf = Workflow::builder("ahead");
    let p = wf.add(slow_predecessor::task());
    let t = wf.add(goto_target::task());
    wf.edge(p, t);
    wf.add(jumps_ahead::task());
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    assert_eq!(
        GOTO_TARGET_RUNS.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(report.task("goto_target").unwrap().runs, 1);
}

static SOURCE_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static CONSUMER_SAW: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

#[task]
fn source_value() -> u64 {
    10 * u64::from(SOURCE_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
}

#[task(max_cycles = 5)]
fn consumer(source_value: u64, ctx: &TaskContext) -> graflow::Result<u64> {
    CONSUMER_SAW.lock().unwrap().push(source_value);
    if ctx.cycle() == 1 {
        ctx.next_iteration().with("source_value", 99u64).request()?;
    }
    Ok(source_value)
}

#[task(max_cycles = 5)]
fn loops_once(consumer: u64, ctx: &TaskContext) -> graflow::Result<u64> {
    if ctx.cycle() == 1 {
        ctx.goto("source_value")?;
    }
    Ok(consumer)
}

#[test]
fn iteration_inputs_are_for_the_next_run_only() {
    let wf = workflow! { source_value >> consumer >> loops_once; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    // source_value: 10, then 20 after the goto; consumer: 10, 99 (its iteration), then 20.
    assert_eq!(*CONSUMER_SAW.lock().unwrap(), [10, 99, 20]);
    assert_eq!(report.result::<u64>("loops_once").unwrap(), 20);
}

#[task]
fn always_back(draft: u32, ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.goto("draft")?;
    Ok(draft)
}

#[test]
fn a_goto_past_the_targets_max_cycles_fails_the_asking_task_and_names_the_target() {
    let mut wf = Workflow::builder("goto-limit");
    let d = wf.add(draft::task().with_max_cycles(2));
    let r = wf.add(always_back::task());
    wf.edge(d, r);
    let error = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap_err();
    let failure = error.failure().expect("a task failed");
    assert_eq!(failure.task, "always_back", "{error}");
    let text = graflow::Chain(&error).to_string();
    assert!(
        text.contains(
            "task 'always_back' asked to go to task 'draft', which has run 2 time(s), its max_cycles (2)"
        ),
        "{text}"
    );
    assert_eq!(failure.attempts, 1, "a refused goto is not retried");
}

#[task]
fn other_source() -> u32 {
    7
}

#[task]
fn joined(other_source: u32) -> u32 {
    other_source + 1
}

#[task]
fn only_after_replace(replace_successors: u32) -> u32 {
    replace_successors
}

#[task]
fn after_the_skipped_one(other_source: u32) -> u32 {
    other_source * 2
}

/// The README: with `next_task_instead`, the asking task's successors "are skipped unless
/// something else leads to them". A successor that another predecessor leads to runs; one
/// that only the asking task led to is skipped, and so is what only it led to, while a task
/// after it that another finished task leads to still runs.
#[test]
fn next_task_instead_skips_only_the_successors_nothing_else_leads_to() {
    for handler in ["direct", "process"] {
        let mut wf = Workflow::builder("instead-join");
        let asking = wf.add(replace_successors::task().with_handler(handler));
        let other = wf.add(other_source::task());
        let join = wf.add(joined::task());
        let only = wf.add(only_after_replace::task());
        let after = wf.add(after_the_skipped_one::task());
        wf.edge(asking, join);
        wf.edge(other, join);
        wf.edge(asking, only);
        wf.edge(only, after);
        wf.edge(other, after);
        let report = WorkflowEngine::new()
            .run(&wf.build(), RunOptions::new())
            .unwrap();
        assert_eq!(report.result::<usize>("instead").unwrap(), 2, "{handler}");
        assert_eq!(report.result::<u32>("joined").unwrap(), 8, "{handler}");
        assert_eq!(
            report.task("only_after_replace").unwrap().status,
            TaskStatus::Skipped,
            "{handler}"
        );
        assert_eq!(
            report.result::<u32>("after_the_skipped_one").unwrap(),
            14,
            "{handler}"
        );
    }
}
