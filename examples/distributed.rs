//! Remote workers on Redis Streams: this program starts two workers (itself, in worker mode)
//! and runs a fan-out of 100 tasks on them, then a direct task that combines their results.
//!
//! `cargo run --example distributed` starts a private `redis-server` on a free loopback port
//! (install it with `graflow-redis/scripts/setup.sh`); with `GRAFLOW_REDIS_URL=redis://host:port/db`
//! it uses that server instead. On two machines, the same binary runs as a worker with
//! `distributed --graflow-worker redis://host:port/0`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use graflow::prelude::*;
use graflow::redis::RedisHandler;

/// Some work per item, on whichever worker takes it.
#[task(handler = "redis")]
fn score(item: u64) -> u64 {
    graflow::tracing::debug!("scoring item {item}");
    (1..=item % 1000).map(|k| k * k % 7).sum::<u64>() + item
}

/// Runs in this process: combines the 100 scores.
#[task]
fn combine(ctx: &TaskContext) -> u64 {
    ctx.upstream::<u64>()
        .map(|scores| scores.iter().sum())
        .unwrap_or(0)
}

/// The child gets SIGKILL when this program dies, however it dies.
fn die_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A private redis-server on a free loopback port, without persistence.
fn start_redis() -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("graflow-distributed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = die_with_parent(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null()),
    )
    .spawn()
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot start redis-server ({e}): install it with graflow-redis/scripts/setup.sh, or set GRAFLOW_REDIS_URL"
        )
    })?;
    let url = format!("redis://127.0.0.1:{port}/0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "redis-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, url))
}

#[graflow::main]
fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "graflow=warn".into()),
        )
        .init();
    let (mut server, url) = match std::env::var("GRAFLOW_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let (child, url) = start_redis()?;
            (Some(child), url)
        }
    };

    // Two workers: this very program, in worker mode.
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for name in ["worker-1", "worker-2"] {
        workers.push(
            die_with_parent(
                Command::new(&exe)
                    .args([
                        "--graflow-worker",
                        &url,
                        "--graflow-worker-name",
                        name,
                        "--graflow-worker-concurrency",
                        "4",
                    ])
                    .env("RUST_LOG", "graflow=warn"),
            )
            .spawn()?,
        );
    }

    let mut engine = WorkflowEngine::new();
    engine.register_handler("redis", RedisHandler::connect(&url)?);
    let mut wf = Workflow::builder("distributed");
    let join = wf.add(combine::task());
    for item in 0..100u64 {
        let node = wf.add(
            score::task()
                .with_id(format!("score-{item}"))
                .with_input("item", item),
        );
        wf.edge(node, join);
    }
    let started = Instant::now();
    let report = engine.run(&wf.build(), RunOptions::new())?;
    let elapsed = started.elapsed();

    let expected: u64 = (0..100u64)
        .map(|item| (1..=item % 1000).map(|k| k * k % 7).sum::<u64>() + item)
        .sum();
    let total: u64 = report.result("combine")?;
    anyhow::ensure!(total == expected, "combined {total}, expected {expected}");
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for record in report.tasks() {
        if let Some(runner) = record.runner {
            let worker = runner.split(',').next().unwrap_or(runner);
            let worker = worker.trim_start_matches("worker ").to_owned();
            *per_worker.entry(worker).or_default() += 1;
        }
    }
    println!(
        "100 tasks on Redis at {url} in {:.1} ms; combined score {total}",
        elapsed.as_secs_f64() * 1e3
    );
    for (worker, count) in &per_worker {
        println!("  {worker}: {count} task(s)");
    }

    drop(engine);
    // Stop the workers as an operator would (SIGTERM: they finish what they hold and leave).
    for worker in &mut workers {
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(worker.id() as libc::pid_t, libc::SIGTERM) };
    }
    for worker in &mut workers {
        worker.wait()?;
    }
    if let Some(server) = &mut server {
        server.kill()?;
        server.wait()?;
    }
    Ok(())
}
