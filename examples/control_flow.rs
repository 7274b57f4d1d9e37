//! Control flow: a parallel group that tolerates a failed mirror (`at_least(2)`), a task that
//! fans out into tasks decided at run time, a loop with `next_iteration` bounded by
//! `max_cycles`, a review that sends work back with `goto`, and an early, successful end with
//! `terminate`.
//!
//! `cargo run --example control_flow`

use graflow::prelude::*;

/// Three mirrors serve the same data; one is down. The group needs two.
#[task]
fn mirror_eu() -> Vec<u32> {
    vec![3, 1, 2]
}

#[task]
fn mirror_us() -> Vec<u32> {
    vec![3, 1, 2]
}

#[task]
fn mirror_ap() -> Result<Vec<u32>, String> {
    Err("mirror ap: connection refused".to_owned())
}

/// Takes whichever mirrors answered (a failed member has no result).
#[task]
fn pick(ctx: &TaskContext) -> graflow::Result<Vec<u32>> {
    let answers = ctx.upstream::<Vec<u32>>()?;
    println!("pick: {} of 3 mirrors answered", answers.len());
    Ok(answers.into_iter().next().unwrap_or_default())
}

#[task]
fn square(value: u32) -> u32 {
    value * value
}

/// One task per value, decided at run time; `sum_squares` waits for all of them.
#[task]
fn fan_out(pick: Vec<u32>, ctx: &TaskContext) -> graflow::Result<usize> {
    for (i, value) in pick.iter().enumerate() {
        ctx.next_task(
            square::task()
                .with_id(format!("square_{i}"))
                .with_input("value", *value),
        )?;
    }
    Ok(pick.len())
}

#[task]
fn sum_squares(ctx: &TaskContext) -> graflow::Result<u32> {
    // The upstream results: fan_out's (a count, skipped here) and the squares'.
    let squares: u32 = ctx
        .upstream_ids()
        .into_iter()
        .filter(|id| id.starts_with("square_"))
        .map(|id| ctx.result::<u32>(id))
        .sum::<Result<u32, _>>()?;
    println!("sum_squares: {squares}");
    Ok(squares)
}

/// Newton's method for the square root of `sum_squares`, one step per run, until it is close
/// enough (at most 20 runs).
#[task(max_cycles = 20)]
fn refine(sum_squares: u32, guess: f64, ctx: &TaskContext) -> graflow::Result<f64> {
    let target = f64::from(sum_squares);
    let next = f64::midpoint(guess, target / guess);
    println!(
        "refine (run {} of at most {}): {next:.6}",
        ctx.cycle(),
        ctx.max_cycles()
    );
    if (next * next - target).abs() > 1e-9 {
        ctx.next_iteration().with("guess", next).request()?;
    }
    Ok(next)
}

/// Asks for another draft until the third one.
#[task]
fn draft(ctx: &TaskContext) -> String {
    format!("draft {}", ctx.cycle())
}

#[task]
fn review(draft: String, ctx: &TaskContext) -> graflow::Result<String> {
    if !draft.ends_with('3') {
        println!("review: {draft} sent back");
        ctx.goto("draft")?;
    }
    Ok(draft)
}

/// Nothing to publish on a Sunday: the run ends here, as a success.
#[task]
fn publish_check(review: String, refine: f64, ctx: &TaskContext) -> String {
    ctx.terminate("nothing is published on Sundays");
    format!("{review}, root {refine:.3}")
}

#[task]
fn publish(publish_check: String) -> String {
    format!("published: {publish_check}")
}

fn main() -> graflow::Result<()> {
    let wf = workflow! {
        name: "control-flow";
        (mirror_eu | mirror_us | mirror_ap).name("mirrors").policy(at_least(2)) >> pick >> fan_out >> sum_squares >> refine;
        draft >> review;
        (refine | review) >> publish_check >> publish;
    };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new().param("guess", 1.0f64))?;
    println!("{report}");
    assert!(report.succeeded());
    assert_eq!(report.result::<u32>("sum_squares")?, 14);
    assert!((report.result::<f64>("refine")? - 14f64.sqrt()).abs() < 1e-9);
    assert_eq!(report.result::<String>("review")?, "draft 3");
    assert_eq!(
        report.task("publish").map(|t| t.status),
        Some(graflow::TaskStatus::Skipped)
    );
    Ok(())
}
