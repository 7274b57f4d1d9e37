//! The "direct" handler: tasks run in this process, with no serialization and no overhead
//! beyond the scheduler's. A chain of three tasks computes Fibonacci(30) and prints it, with the
//! handler and timing of each step.
//!
//! `cargo run --example direct_handler` (set `RUST_LOG=graflow=debug` to see every handler call).

use graflow::prelude::*;

#[task]
fn input() -> u32 {
    30
}

/// Handler "direct" is the default; naming it is allowed and changes nothing.
#[task(handler = "direct")]
fn fibonacci(input: u32) -> u64 {
    fn fib(n: u32) -> u64 {
        if n < 2 {
            u64::from(n)
        } else {
            fib(n - 1) + fib(n - 2)
        }
    }
    fib(input)
}

#[task]
fn describe(input: u32, fibonacci: u64) -> String {
    format!("Fibonacci({input}) = {fibonacci}")
}

fn main() -> graflow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "graflow=info".into()),
        )
        .init();

    let wf = workflow! { name: "direct_handler"; input >> fibonacci >> describe; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;

    for step in report.tasks() {
        println!(
            "{:<10} handler={:<7} {:>10.3} ms",
            step.id,
            step.handler,
            step.duration.unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    let answer: u64 = report.result("fibonacci")?;
    assert_eq!(answer, 832_040);
    println!("{}", report.result::<String>("describe")?);
    Ok(())
}
