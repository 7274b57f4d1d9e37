//! The one way to run a workflow: `run`/`execute` with `RunOptions` (initial channel,
//! parameters, resume), and what a report gives back (named counts, results by value).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use graflow::prelude::*;
use graflow::{RunEvent, RunObserver};
use serde::{Deserialize, Serialize};

/// Not `Clone`: a copy would go through serde, a move must not.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Model {
    weights: Vec<u32>,
}

#[task]
fn train(size: u32) -> Model {
    Model {
        weights: (0..size).collect(),
    }
}

#[task]
fn score(train: Model, bias: i64) -> i64 {
    train.weights.iter().map(|w| i64::from(*w)).sum::<i64>() + bias
}

/// A directory of this test's own (pid and name), emptied first.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("graflow-run-options-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pipeline() -> Workflow {
    workflow! { name: "run-options"; train >> score; }
}

#[test]
fn params_fill_the_initial_channel_and_channel_replaces_them() {
    let engine = WorkflowEngine::new();
    let report = engine
        .run(
            &pipeline(),
            RunOptions::new().param("size", 4u32).param("bias", 10i64),
        )
        .unwrap();
    assert_eq!(report.result::<i64>("score").unwrap(), 16);

    // `channel` replaces what `param` set before it; `param` after it adds to it.
    let options = RunOptions::new()
        .param("size", 100u32)
        .channel(Channel::new().with("size", 2u32))
        .param("bias", 0i64);
    let report = engine.run(&pipeline(), options).unwrap();
    assert_eq!(report.result::<i64>("score").unwrap(), 1);
}

#[test]
fn a_missing_param_is_named_before_anything_runs() {
    let error = WorkflowEngine::new()
        .run(&pipeline(), RunOptions::new().param("size", 3u32))
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, RunError::Invalid { .. }), "{text}");
    assert!(text.contains("bias"), "{text}");
    assert!(text.contains("RunOptions::new().param"), "{text}");
}

#[test]
fn cloned_options_do_not_share_their_channel_between_runs() {
    #[task]
    fn bump(ctx: &TaskContext, size: u32) -> u32 {
        ctx.channel().set("size", size + 1);
        size
    }
    let options = RunOptions::new().param("size", 1u32);
    let engine = WorkflowEngine::new();
    let first = engine.run(&workflow! { bump; }, options.clone()).unwrap();
    assert_eq!(first.channel().get::<u32>("size").unwrap(), 2);
    let second = engine.run(&workflow! { bump; }, options).unwrap();
    assert_eq!(second.result::<u32>("bump").unwrap(), 1);
}

#[test]
fn counts_are_named_and_results_can_be_taken_by_value() {
    let mut report = WorkflowEngine::new()
        .run(
            &pipeline(),
            RunOptions::new().param("size", 3u32).param("bias", 1i64),
        )
        .unwrap();
    let counts = report.counts();
    assert_eq!(
        (
            counts.succeeded,
            counts.failed,
            counts.cancelled,
            counts.skipped
        ),
        (2, 0, 0, 0)
    );
    assert_eq!(counts.total(), 2);

    let model: Model = report.take_result("train").unwrap();
    assert_eq!(model.weights, vec![0, 1, 2]);
    // Taken: the report no longer holds it, and says so.
    let again = report
        .take_result::<Model>("train")
        .unwrap_err()
        .to_string();
    assert!(again.contains("taken"), "{again}");
    assert!(report.result::<Model>("train").is_err());
    // A wrong type is refused and the report keeps the result; a task that does not exist is
    // named.
    assert!(report.take_result::<String>("score").is_err());
    assert_eq!(report.take_result::<i64>("score").unwrap(), 4);
    let missing = report.take_result::<i64>("nope").unwrap_err().to_string();
    assert!(missing.contains("no task"), "{missing}");
}

#[test]
fn resuming_with_an_initial_channel_is_refused_and_runs_nothing() {
    let dir = scratch("refused");
    let path = dir.join("run.ckpt");
    let engine = WorkflowEngine::new();
    let options = RunOptions::new()
        .param("size", 2u32)
        .param("bias", 0i64)
        .checkpoint(&path);
    engine.run(&pipeline(), options).unwrap();

    let error = engine
        .run(
            &pipeline(),
            RunOptions::new().resume_from(&path).param("bias", 5i64),
        )
        .unwrap_err();
    assert!(
        matches!(error, RunError::InvalidOptions { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("run.ckpt"), "{error}");
    // So is a checkpoint path of its own: the resumed run keeps writing to its file.
    let error = engine
        .run(
            &pipeline(),
            RunOptions::new()
                .resume_from(&path)
                .checkpoint(dir.join("other.ckpt")),
        )
        .unwrap_err();
    assert!(
        matches!(error, RunError::InvalidOptions { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("other.ckpt"), "{error}");

    // Without the channel, the finished run's report comes back at once.
    let report = engine
        .run(&pipeline(), RunOptions::new().resume_from(&path))
        .unwrap();
    assert!(report.resumed());
    assert_eq!(report.result::<i64>("score").unwrap(), 1);
}

#[test]
fn a_resumed_run_reports_to_the_observers_of_its_options() {
    struct Count(Arc<AtomicUsize>);
    impl RunObserver for Count {
        fn on_event(&self, _event: &RunEvent) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    #[task]
    fn fails_first(marker: String) -> Result<u32, std::io::Error> {
        if std::path::Path::new(&marker).exists() {
            return Ok(7);
        }
        std::fs::write(&marker, b"ran")?;
        Err(std::io::Error::other("the first run fails"))
    }
    let dir = scratch("observed");
    let path = dir.join("observed.ckpt");
    let marker = dir.join("marker").display().to_string();
    let engine = WorkflowEngine::new();
    let wf = workflow! { name: "observed"; fails_first; };
    engine
        .run(
            &wf,
            RunOptions::new().param("marker", marker).checkpoint(&path),
        )
        .unwrap_err();
    let seen = Arc::new(AtomicUsize::new(0));
    let report = engine
        .run(
            &wf,
            RunOptions::new()
                .resume_from(&path)
                .observer(Count(seen.clone())),
        )
        .unwrap();
    assert!(report.resumed());
    assert_eq!(report.result::<u32>("fails_first").unwrap(), 7);
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "no event reached the observer"
    );
}

#[test]
fn run_drives_its_run_on_the_background_runtime_which_outlives_it() {
    static LATE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    #[task]
    async fn spawns_and_returns() -> u8 {
        // Spawned and not awaited: it goes on after the run ends (README, *Runner I/O*).
        graflow::tokio::spawn(async {
            graflow::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            *LATE.lock().unwrap() = Some(thread);
        });
        1
    }
    WorkflowEngine::new()
        .run(&workflow! { spawns_and_returns; }, RunOptions::new())
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let thread = loop {
        if let Some(thread) = LATE.lock().unwrap().clone() {
            break thread;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spawned task never ran after run() returned"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(
        thread, "graflow-bg",
        "it ran on graflow's background runtime"
    );
}
