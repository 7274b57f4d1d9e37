//! Custom handlers: a timing handler registered at run time, and a logging handler registered
//! at link time with `register_handler!`, mixed with direct tasks in one workflow.
//!
//! `cargo run --example custom_handler`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use graflow::prelude::*;

/// Runs tasks in-process and records how long each took.
#[derive(Default)]
struct TimingHandler {
    timings: Mutex<BTreeMap<String, Duration>>,
}

#[async_trait]
impl TaskHandler for TimingHandler {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let started = Instant::now();
        let output = task.run(ctx).await?;
        let elapsed = started.elapsed();
        self.timings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(task.id().to_owned(), elapsed);
        Ok(output)
    }
}

/// Logs before and after each task, under the `label` its task configures.
#[derive(Default)]
struct LoggingHandler;

#[async_trait]
impl TaskHandler for LoggingHandler {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let label = task.handler_config().get_str("label").unwrap_or("task");
        graflow::tracing::info!(target: "custom_handler", "[{label}] starting {} (attempt {})", task.id(), ctx.attempt());
        let result = task.run(ctx).await;
        match &result {
            Ok(_) => {
                graflow::tracing::info!(target: "custom_handler", "[{label}] {} succeeded", task.id())
            }
            Err(error) => {
                graflow::tracing::warn!(target: "custom_handler", "[{label}] {} failed: {error}", task.id())
            }
        }
        result
    }

    /// Rejects configuration keys it does not know, before the run starts.
    fn validate_task(&self, task: &Task) -> Result<(), graflow::Problem> {
        let unknown = task.handler_config().unknown_keys(&["label"]);
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(graflow::Problem::invalid_config(
                task.id(),
                task.handler(),
                format!("unknown option(s) {unknown:?}; the logging handler knows only `label`"),
            ))
        }
    }
}

// Every WorkflowEngine::new() of this program knows "logging".
graflow::register_handler!("logging", LoggingHandler::default);

#[task]
fn download() -> Vec<u32> {
    (1..=1_000).collect()
}

#[task(handler = "timing")]
fn square(download: Vec<u32>) -> Vec<u64> {
    download
        .iter()
        .map(|&x| u64::from(x) * u64::from(x))
        .collect()
}

#[task(handler = "logging", label = "stats")]
async fn mean(square: Vec<u64>) -> f64 {
    square.iter().sum::<u64>() as f64 / square.len() as f64
}

#[task(handler = "timing")]
fn maximum(square: Vec<u64>) -> u64 {
    square.iter().copied().max().unwrap_or(0)
}

#[task]
fn summary(mean: f64, maximum: u64) -> String {
    format!("mean of squares {mean:.1}, max {maximum}")
}

fn main() -> graflow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let timing = Arc::new(TimingHandler::default());
    let mut engine = WorkflowEngine::new();
    engine.register_handler_arc("timing", timing.clone());
    println!("handlers: {}", engine.handler_names().join(", "));

    let wf =
        workflow! { name: "custom_handler"; download >> square >> (mean | maximum) >> summary; };
    let report = engine.run(&wf, RunOptions::new())?;
    print!("{report}");
    let timings = timing
        .timings
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (task, elapsed) in timings.iter() {
        println!(
            "timing handler: {task} took {:.3} ms",
            elapsed.as_secs_f64() * 1e3
        );
    }
    println!("{}", report.result::<String>("summary")?);
    Ok(())
}
