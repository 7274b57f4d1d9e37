//! Graflow's three handler patterns: direct >> docker in one workflow; a handler chosen from an
//! environment variable; a docker task configured with volumes and environment.
//!
//! `bash graflow-docker/scripts/setup.sh`, then `cargo run --example mixed_handlers`
//! (`PRODUCTION=1 cargo run --example mixed_handlers` sends `adaptive` to Docker too).

use graflow::prelude::*;

const SHARED: &str = "/tmp/graflow-mixed-example";

/// Pattern 1: a direct task feeding a docker task.
#[task]
fn fast_local() -> Vec<u32> {
    (1..=100).collect()
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn isolated(fast_local: Vec<u32>) -> String {
    format!(
        "sum {} computed in container {} (a runner process: {})",
        fast_local.iter().sum::<u32>(),
        std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim(),
        graflow::is_runner()
    )
}

/// Pattern 2: conditional handler selection, evaluated when the workflow is built.
#[task(
    handler = if std::env::var("PRODUCTION").is_ok() { "docker" } else { "direct" },
    image = "python:3.11-slim"
)]
fn adaptive() -> String {
    if graflow::is_runner() {
        "adaptive ran in a container".to_owned()
    } else {
        "adaptive ran in-process".to_owned()
    }
}

/// Pattern 3: a handler with configuration: a volume and environment.
#[task(
    handler = "docker",
    image = "python:3.11-slim",
    volumes = ["/tmp/graflow-mixed-example:/shared"],
    env = ["API_KEY=not-a-real-secret", "MODE=batch"]
)]
fn configured(isolated: String) -> std::io::Result<String> {
    let key_present = std::env::var("API_KEY").is_ok();
    let mode = std::env::var("MODE").unwrap_or_default();
    std::fs::write("/shared/result.txt", format!("{isolated}\n"))?;
    Ok(format!(
        "wrote /shared/result.txt (mode {mode}, API key present: {key_present})"
    ))
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    if let Err(e) = std::fs::create_dir_all(SHARED) {
        eprintln!("cannot create {SHARED}: {e}");
        std::process::exit(1);
    }

    let wf = workflow! {
        name: "mixed_handlers";
        fast_local >> isolated >> configured;
        adaptive;
    };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
    print!("{report}");
    println!("{}", report.result::<String>("isolated")?);
    println!("{}", report.result::<String>("adaptive")?);
    println!("{}", report.result::<String>("configured")?);
    let written = std::fs::read_to_string(format!("{SHARED}/result.txt")).unwrap_or_default();
    println!("on the host: {}", written.trim());
    Ok(())
}
