//! The "docker" handler: a Rust task runs inside `python:3.11-slim`, calls `python3` there, and
//! returns a typed struct; it sees the environment and the volume its options give it.
//!
//! Needs a Docker daemon and the image: `bash graflow-docker/scripts/setup.sh` (no registry
//! needed), then `cargo run --example docker_handler`.

use graflow::prelude::*;
use serde::{Deserialize, Serialize};

const DATA_DIR: &str = "/tmp/graflow-docker-example";

#[derive(Debug, Serialize, Deserialize)]
struct Analysis {
    python: String,
    words: usize,
    longest: String,
    greeting: String,
    path_entries_from_host: usize,
    hostname: String,
}

#[task]
fn prepare() -> std::io::Result<String> {
    std::fs::create_dir_all(DATA_DIR)?;
    let text = "graflow runs plain rust functions inside containers without pickling anything";
    std::fs::write(format!("{DATA_DIR}/input.txt"), text)?;
    Ok(format!("{DATA_DIR}/input.txt"))
}

#[task(
    handler = "docker",
    image = "python:3.11-slim",
    volumes = ["/tmp/graflow-docker-example:/data:ro"],
    env = ["GREETING=hello from the host", "PATH"],
    memory = "256m"
)]
fn analyse(prepare: String) -> Result<Analysis, String> {
    let _ = prepare; // the host path; inside, the same file is at /data/input.txt
    let script = "import sys, json\n\
                  words = open('/data/input.txt').read().split()\n\
                  print(json.dumps([sys.version.split()[0], len(words), max(words, key=len)]))";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| format!("python3 did not start: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout);
    // ["3.11.2", 11, "containers"]
    let fields: Vec<&str> = line.trim().trim_matches(['[', ']']).split(", ").collect();
    let [python, words, longest] = fields.as_slice() else {
        return Err(format!("unexpected python output: {line}"));
    };
    eprintln!("python {python} counted {words} words");
    Ok(Analysis {
        python: python.trim_matches('"').to_owned(),
        words: words.parse().map_err(|e| format!("{e}"))?,
        longest: longest.trim_matches('"').to_owned(),
        greeting: std::env::var("GREETING").unwrap_or_default(),
        path_entries_from_host: std::env::var("PATH").map_or(0, |p| p.split(':').count()),
        hostname: std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    })
}

#[graflow::main]
fn main() -> graflow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "graflow=info".into()),
        )
        .init();

    // A volume's host path must exist before the run: it is checked when the workflow is
    // validated, before `prepare` runs, and never created by the handler.
    if let Err(e) = std::fs::create_dir_all(DATA_DIR) {
        eprintln!("cannot create {DATA_DIR}: {e}");
        std::process::exit(1);
    }
    let wf = workflow! { name: "docker_handler"; prepare >> analyse; };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
    print!("{report}");
    let analysis: Analysis = report.result("analyse")?;
    println!("{analysis:#?}");
    Ok(())
}
