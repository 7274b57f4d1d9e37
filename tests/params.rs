//! Parameter resolution: bound input, else upstream result, else channel; errors before any
//! task runs.

use graflow::TaskStatus;
use graflow::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Dataset {
    name: String,
    rows: Vec<i64>,
}

/// Not `Clone`: copies go through serde.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Stats {
    count: usize,
    sum: i64,
}

#[task]
fn load(source_name: String) -> Dataset {
    Dataset {
        name: source_name,
        rows: vec![3, 4, 5],
    }
}

#[task]
fn stats(load: Dataset, scale: i64) -> Stats {
    Stats {
        count: load.rows.len(),
        sum: load.rows.iter().sum::<i64>() * scale,
    }
}

#[task]
fn summary(stats: Stats, load: Dataset, ctx: &TaskContext) -> String {
    ctx.channel().set("summarised", true);
    format!("{}: {} rows, sum {}", load.name, stats.count, stats.sum)
}

fn pipeline() -> Workflow {
    workflow! { name: "params"; load >> stats >> summary; }
}

#[tokio::test]
async fn parameters_come_from_results_and_the_channel() {
    let channel = Channel::new()
        .with("source_name", "sales".to_owned())
        .with("scale", 10i64);
    let report = WorkflowEngine::new()
        .execute(&pipeline(), RunOptions::new().channel(channel))
        .await
        .unwrap();
    assert_eq!(
        report.result::<String>("summary").unwrap(),
        "sales: 3 rows, sum 120"
    );
    assert_eq!(
        report.result::<Stats>("stats").unwrap(),
        Stats { count: 3, sum: 120 }
    );
    assert!(report.channel().get::<bool>("summarised").unwrap());
    assert_eq!(report.channel().get::<i64>("scale").unwrap(), 10);
}

#[tokio::test]
async fn a_bound_input_wins_over_the_channel() {
    let mut wf = Workflow::builder("bound");
    let l = wf.add(load::task().with_input("source_name", "bound".to_owned()));
    let s = wf.add(stats::task().with_input("scale", 2i64));
    wf.edge(l, s);
    let channel = Channel::new().with("source_name", "channel".to_owned());
    let report = WorkflowEngine::new()
        .execute(&wf.build(), RunOptions::new().channel(channel))
        .await
        .unwrap();
    assert_eq!(report.result::<Dataset>("load").unwrap().name, "bound");
    assert_eq!(report.result::<Stats>("stats").unwrap().sum, 24);
}

#[test]
fn missing_parameters_are_reported_together_before_anything_runs() {
    let err = WorkflowEngine::new()
        .run(&pipeline(), RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.problems().len(), 2, "{msg}");
    assert!(msg.contains("nothing was run"), "{msg}");
    assert!(
        msg.contains(
            "task 'load' cannot run: parameter `source_name: alloc::string::String` has no value"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("task 'stats' cannot run: parameter `scale: i64` has no value"),
        "{msg}"
    );
    assert!(
        msg.contains("RunOptions::new().param(\"scale\", value)"),
        "{msg}"
    );
    assert!(err.report().is_none());
}

#[test]
fn type_mismatches_are_reported_before_anything_runs() {
    // From the channel.
    let channel = Channel::new()
        .with("source_name", 42u32)
        .with("scale", 1i64);
    let err = WorkflowEngine::new()
        .run(&pipeline(), RunOptions::new().channel(channel))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("parameter `source_name` expects `alloc::string::String` but key 'source_name' of the run's initial channel is `u32`"),
        "{msg}"
    );
    // From an upstream result.
    let wf = workflow! { wrong_load >> stats; };
    let err = WorkflowEngine::new()
        .run(&wf, RunOptions::new().param("scale", 1i64))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("task 'stats' cannot run: parameter `load` expects `params::Dataset` but the result of task 'load' is `alloc::vec::Vec<i64>`"),
        "{msg}"
    );
}

#[task(id = "load")]
fn wrong_load() -> Vec<i64> {
    vec![1]
}

#[test]
fn a_parameter_naming_a_task_that_is_not_upstream_is_an_error() {
    // `load` and `stats` are both in the workflow, but not connected.
    let wf = workflow! { load; stats; };
    let channel = Channel::new()
        .with("source_name", "x".to_owned())
        .with("scale", 1i64);
    let err = WorkflowEngine::new()
        .run(&wf, RunOptions::new().channel(channel))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("task 'load' exists but is not upstream of 'stats'"),
        "{msg}"
    );
    assert!(msg.contains("add `load >> stats`"), "{msg}");
}

#[test]
fn an_input_bound_to_no_parameter_is_an_error() {
    let mut wf = Workflow::builder("typo");
    wf.add(
        load::task()
            .with_input("sourcename", "x".to_owned())
            .with_input("source_name", "y".to_owned()),
    );
    let err = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("task 'load' has an input named 'sourcename'"),
        "{msg}"
    );
    assert!(msg.contains("(parameters: source_name)"), "{msg}");
}

// ---------- channel keys written by upstream tasks ----------

#[task(writes = ["threshold"])]
fn configure(ctx: &TaskContext) {
    ctx.channel().set("threshold", 7u32);
}

#[task]
fn apply(threshold: u32) -> bool {
    threshold > 5
}

#[task]
fn forgetful() {}

#[tokio::test]
async fn a_key_declared_by_an_upstream_writer_needs_no_initial_value() {
    let report = WorkflowEngine::new()
        .execute(&workflow! { configure >> apply; }, RunOptions::new())
        .await
        .unwrap();
    assert!(report.result::<bool>("apply").unwrap());
    assert_eq!(report.result::<()>("configure").unwrap(), ());
}

#[tokio::test]
async fn a_declared_write_that_never_happens_fails_the_reader_before_it_runs() {
    let mut wf = Workflow::builder("forgot");
    let f = wf.add(forgetful::task().with_write("threshold"));
    let a = wf.add(apply::task());
    wf.edge(f, a);
    let err = WorkflowEngine::new()
        .execute(&wf.build(), RunOptions::new())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("task 'apply' failed on handler 'direct' after 1 attempt(s)"),
        "{msg}"
    );
    assert!(msg.contains("channel key 'threshold' is not set"), "{msg}");
    let report = err.report().unwrap();
    assert_eq!(
        report.task("forgetful").unwrap().status,
        TaskStatus::Succeeded
    );
    assert_eq!(report.task("apply").unwrap().status, TaskStatus::Failed);
}

#[test]
fn results_are_typed_when_read() {
    let report = WorkflowEngine::new()
        .run(
            &workflow! { load; },
            RunOptions::new().param("source_name", "n".to_owned()),
        )
        .unwrap();
    let err = report.result::<String>("load").unwrap_err();
    assert!(
        matches!(err, graflow::ValueError::TypeMismatch { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "the result of task 'load' holds a `params::Dataset`, not a `alloc::string::String`"
        ),
        "{err}"
    );
    let err = report.result::<String>("nope").unwrap_err();
    assert!(
        err.to_string()
            .contains("no result for task 'nope': workflow 'workflow' has no task with that id"),
        "{err}"
    );
}
