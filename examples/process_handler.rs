//! The "process" handler: each task runs in a child process of this program, so a task that
//! crashes the process (abort, segfault, exit) fails only itself, with the signal or exit code.
//!
//! `cargo run --example process_handler`

use graflow::prelude::*;

#[task]
fn records() -> Vec<i64> {
    vec![3, 1, 4, 1, 5, 9, 2, 6]
}

/// Calls into "native code" that aborts on a negative value, taking its process down.
#[task(handler = "process")]
fn fragile(records: Vec<i64>) -> i64 {
    if records.iter().any(|&r| r < 0) {
        eprintln!("native library: negative input, aborting");
        std::process::abort();
    }
    println!(
        "summing {} records in process {}",
        records.len(),
        std::process::id()
    );
    records.iter().sum()
}

#[task]
fn report_sum(fragile: i64) -> String {
    format!("sum = {fragile}")
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "graflow::handlers=info".into()),
        )
        .init();
    let engine = WorkflowEngine::new();
    let wf = workflow! { name: "process_handler"; records >> fragile >> report_sum; };

    let report = engine.run(&wf, RunOptions::new())?;
    println!("{}", report.result::<String>("report_sum")?);

    // The same task on bad input aborts its child process; this process carries on.
    let mut bad = Workflow::builder("process_handler_bad_input");
    bad.add(fragile::task().with_input("records", vec![1i64, -1]));
    match engine.run(&bad.build(), RunOptions::new()) {
        Ok(_) => println!("unexpected: the bad input went through"),
        Err(error) => println!("contained: {error}"),
    }
    println!("main process {} is still running", std::process::id());
    Ok(())
}
