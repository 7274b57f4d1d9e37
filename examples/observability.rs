//! Seeing a run: an observer of its events, the workflow's graph, the run's timeline, the JSON
//! report, and the program's own flags.
//!
//! ```text
//! cargo run --example observability                          # run it, print events and pictures
//! cargo run --example observability -- --graflow-progress    # with a progress bar (on a terminal)
//! cargo run --example observability -- --graflow-graph dot | dot -Tsvg > flow.svg
//! cargo run --example observability -- --graflow-list        # its tasks, handlers and options
//! cargo run --example observability -- --graflow-validate
//! ```

use std::time::Duration;

use graflow::prelude::*;
use graflow::{EventKind, RunEvent};

#[task(handler = "process")]
fn download() -> Vec<u32> {
    // Lines a runner prints reach observers as `EventKind::Log`, attributed to their task.
    println!("downloading 5 records");
    vec![3, 1, 4, 1, 5]
}

#[task(retries = 2)]
fn clean(ctx: &TaskContext, download: Vec<u32>) -> Result<Vec<u32>, String> {
    if ctx.attempt() == 1 {
        return Err("a flaky source (the first attempt fails)".to_owned());
    }
    Ok(download.into_iter().filter(|&x| x > 1).collect())
}

#[task]
async fn stats(clean: Vec<u32>) -> u32 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    clean.iter().sum()
}

#[task]
fn mirror(clean: Vec<u32>) -> Result<usize, String> {
    Err(format!(
        "the mirror is down ({} records not copied)",
        clean.len()
    ))
}

#[task]
fn publish(stats: u32) -> String {
    format!("total = {stats}")
}

fn describe(event: &RunEvent) -> String {
    let task = event.task.as_deref().unwrap_or("-");
    let what = match &event.kind {
        EventKind::RunStarted { tasks, .. } => format!("run started ({tasks} tasks)"),
        EventKind::RunFinished {
            succeeded, elapsed, ..
        } => {
            format!("run finished (succeeded: {succeeded}, {elapsed:?})")
        }
        EventKind::TaskReady => "ready".to_owned(),
        EventKind::TaskStarted => "started".to_owned(),
        EventKind::TaskRetrying { error, delay, .. } => format!("retrying in {delay:?}: {error}"),
        EventKind::TaskSucceeded { duration } => format!("succeeded in {duration:?}"),
        EventKind::TaskFailed {
            error, tolerated, ..
        } => {
            format!("failed (tolerated: {tolerated}): {error}")
        }
        EventKind::TaskCancelled => "cancelled".to_owned(),
        EventKind::Log { line } => format!("output: {line}"),
        other => format!("{other:?}"),
    };
    format!(
        "{:<9} {:<8} attempt {}  {what}",
        task,
        event.handler.as_deref().unwrap_or(""),
        event.attempt
    )
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    let wf = workflow! {
        name: "observability";
        download >> clean >> (stats | mirror).name("outputs").policy(best_effort) >> publish;
    };
    let mut engine = WorkflowEngine::new();
    engine.add_observer(|event: &RunEvent| println!("event: {}", describe(event)));
    let report = engine.run(&wf, RunOptions::new())?;

    println!("{report}");
    // (After the run: with --graflow-graph or --graflow-list, the run prints only that.)
    println!("{}", wf.to_mermaid());
    println!("{}", report.to_gantt());
    let path = std::env::temp_dir().join("graflow-observability-report.json");
    report.save_json(&path)?;
    println!("JSON report written to {}", path.display());
    println!("{}", report.result::<String>("publish")?);
    Ok(())
}
