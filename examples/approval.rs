//! A deploy pipeline that waits for a person: `build >> approve >> deploy`. The `approve` task
//! asks for an approval and waits `APPROVAL_TIMEOUT` seconds (default 600).
//!
//! ```text
//! cargo run --example approval                          # waits; prints the request's id
//! cargo run --example approval -- --graflow-feedback    # in another shell: what waits
//! cargo run --example approval -- --graflow-answer ID yes
//! ```
//!
//! Nobody answered in time: the run ends as waiting (exit code 75), checkpointed, holding
//! nothing. Answer it, then `cargo run --example approval -- --graflow-resume RUN_ID`: `build`
//! does not run again, and `approve` gets the answer without asking.

use std::time::Duration;

use graflow::feedback::FeedbackError;
use graflow::prelude::*;

#[task]
fn build() -> String {
    "shop-1.4.2".to_owned()
}

#[task]
fn approve(ctx: &TaskContext, build: String) -> Result<bool, FeedbackError> {
    let seconds = std::env::var("APPROVAL_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    ctx.approval(format!("Deploy {build} to production?"))
        .timeout(Duration::from_secs(seconds))
        .metadata("build", build)
        .wait()
}

#[task]
fn deploy(approve: bool, build: String) -> String {
    if approve {
        format!("{build} deployed")
    } else {
        format!("{build} not deployed: the approval was refused")
    }
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    let wf = workflow! { name: "deploy"; build >> approve >> deploy; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
    println!("{report}{}", report.result::<String>("deploy")?);
    Ok(())
}
