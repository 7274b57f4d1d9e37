//! Checkpoint and resume: a three-step pipeline whose `load` step fails on its first run (the
//! database is "down"). The run writes a checkpoint when it fails; `resume` continues from it:
//! `extract` and `transform` do not run again, `load` does.
//!
//! `cargo run --example checkpoint_resume`

use std::sync::atomic::{AtomicBool, Ordering};

use graflow::prelude::*;

static DATABASE_UP: AtomicBool = AtomicBool::new(false);

#[task]
fn extract() -> Vec<u64> {
    println!("extract: runs");
    (1..=5).collect()
}

#[task]
fn transform(extract: Vec<u64>, ctx: &TaskContext) -> graflow::Result<Vec<u64>> {
    println!("transform: runs");
    // Ask for a checkpoint once this (expensive) step completed.
    ctx.checkpoint()?;
    Ok(extract.iter().map(|x| x * 10).collect())
}

#[task]
fn load(transform: Vec<u64>) -> Result<u64, String> {
    println!("load: runs");
    if !DATABASE_UP.load(Ordering::SeqCst) {
        return Err("the database is down".to_owned());
    }
    Ok(transform.iter().sum())
}

fn main() -> graflow::Result<()> {
    let path = std::env::temp_dir().join(format!("graflow-etl-{}.ckpt", std::process::id()));
    let wf = workflow! { name: "etl"; extract >> transform >> load; };
    let engine = WorkflowEngine::new();
    let options = RunOptions::new().checkpoint(&path);

    let error = engine
        .run(&wf, options.clone())
        .expect_err("load fails while the database is down");
    println!("first run: {error}");
    let checkpoint = graflow::Checkpoint::load(&path)?;
    println!(
        "checkpoint {}: done {:?}",
        path.display(),
        checkpoint.completed(&wf)?
    );

    DATABASE_UP.store(true, Ordering::SeqCst);
    let report = engine.run(&wf, RunOptions::new().resume_from(&path))?;
    println!("{report}");
    assert_eq!(report.result::<u64>("load")?, 150);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
