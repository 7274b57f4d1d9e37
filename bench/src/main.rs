//! The Rust side of `bench/compare.sh`: runs one workload and prints one JSON line per
//! measurement (`{"side":"graflow-rs","workload":...,"n":...,"seconds":...,...}`).
//!
//! ```text
//! graflow-bench chain N           t0 >> t1 >> ... >> tN-1 of trivial tasks (build + run)
//! graflow-bench fanout N          src >> (p0 | ... | pN-1) >> sink, the sink summing every member
//! graflow-bench parallel N        N CPU-bound tasks of about 10 ms each side by side: wall time
//!                                 against the same work in a plain loop (parallel efficiency)
//! graflow-bench call N            a plain function call, N times (the floor of "overhead")
//! graflow-bench handler N         the direct handler's execute_task alone, N times
//! graflow-bench docker R IMAGE    a trivial docker task and `docker run --rm IMAGE true`, alternated R times
//! graflow-bench docker8 R IMAGE   8 docker tasks in a group and 8 concurrent `docker run`, alternated R times
//! graflow-bench process R         a trivial task on the "process" handler, R times
//! graflow-bench redis N W URL    src >> (p0 | ... | pN-1) >> sink, the members on W redis workers
//!                                 (this program in worker mode, concurrency 16 each)
//! graflow-bench redis-rtt R URL   one trivial remote task on one idle worker, R runs (median)
//! graflow-bench redis-kill R URL  a worker SIGKILLed while it holds tasks (lease 2 s): how long
//!                                 until its tasks finish on the other worker, R times (median)
//! graflow-bench payload MB process|docker [IMAGE]
//!                                 one task returning MB megabytes through that handler: time,
//!                                 and this process's peak RSS over its baseline
//! ```
//!
//! Every task workload checks its result, so a broken engine cannot produce a fast number.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graflow::handlers::{DockerHandler, PoolOptions, ProcessHandler};
use graflow::prelude::*;

#[task]
fn step() -> u64 {
    1
}

#[task]
fn source() -> u64 {
    0
}

#[task]
fn member(index: u64) -> u64 {
    index
}

#[task]
fn sink(ctx: &TaskContext) -> graflow::Result<u64> {
    Ok(ctx.upstream::<u64>()?.into_iter().sum())
}

/// The CPU work of one `parallel` task: `rounds` steps of a 64-bit linear congruential
/// generator, the same steps as the Python side's `crunch`.
fn crunch_rounds(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for _ in 0..rounds {
        // black_box: the loop must run, not be folded into a closed form.
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

#[task]
fn crunch(seed: u64, rounds: u64) -> u64 {
    crunch_rounds(seed, rounds)
}

#[task]
fn fold_xor(ctx: &TaskContext) -> graflow::Result<u64> {
    Ok(ctx.upstream::<u64>()?.into_iter().fold(0, |a, b| a ^ b))
}

/// Rounds of [`crunch_rounds`] that take about `target` here (a first estimate, then the
/// median of five runs of about the target's length).
fn calibrate(target: Duration) -> u64 {
    let mut rounds = 200_000u64;
    for _ in 0..2 {
        let mut estimates: Vec<f64> = (0..5)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(crunch_rounds(1, rounds));
                rounds as f64 * target.as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9)
            })
            .collect();
        estimates.sort_by(f64::total_cmp);
        rounds = (estimates[2] as u64).max(1);
    }
    rounds
}

/// The `parallel` workload's work done in a plain loop: its time and the sink's expected value.
fn serial_work(n: u64, rounds: u64) -> (f64, u64) {
    let started = Instant::now();
    let expected = (0..n).fold(0, |acc, i| acc ^ crunch_rounds(i + 1, rounds));
    (started.elapsed().as_secs_f64(), expected)
}

fn parallel_cpu(n: u64, rounds: u64) -> Workflow {
    fan_out("parallel", fold_xor::task(), n, |i| {
        crunch::task()
            .with_id(format!("c{i}"))
            .with_input("seed", i + 1)
            .with_input("rounds", rounds)
    })
}

#[task(handler = "redis")]
fn remote_member(index: u64) -> u64 {
    index
}

#[task(handler = "redis")]
fn remote_step() -> u64 {
    1
}

#[task(handler = "redis")]
fn remote_sleep(index: u64, ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    index
}

/// Workers of this program (in worker mode) on `url` under `prefix`; killed with this process.
struct Workers(Vec<std::process::Child>);

impl Workers {
    fn start(url: &str, prefix: &str, count: usize, extra: &[&str]) -> Workers {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().expect("this program");
        let children = (0..count)
            .map(|i| {
                let mut command = Command::new(&exe);
                command
                    .args([
                        "--graflow-worker",
                        url,
                        "--graflow-worker-prefix",
                        prefix,
                        "--graflow-worker-concurrency",
                    ])
                    .arg(
                        std::env::var("BENCH_WORKER_CONCURRENCY")
                            .unwrap_or_else(|_| "16".to_owned()),
                    )
                    .args(["--graflow-worker-name", &format!("bench-w{i}")])
                    .args(extra)
                    .env("RUST_LOG", "error")
                    .stdout(Stdio::null());
                // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
                unsafe {
                    command.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                command.spawn().expect("start a worker")
            })
            .collect();
        Workers(children)
    }

    fn kill(&mut self, i: usize) {
        let _ = self.0[i].kill();
        let _ = self.0[i].wait();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redis_engine(url: &str, prefix: &str) -> WorkflowEngine {
    let mut engine = WorkflowEngine::new();
    let options = graflow::redis::RedisOptions::new().with_prefix(prefix);
    engine.register_handler(
        "redis",
        graflow::redis::RedisHandler::connect_with(url, options).expect("Redis answers"),
    );
    engine
}

fn redis_fanout(n: u64) -> Workflow {
    fan_out("redis_fanout", sink::task(), n, |i| {
        remote_member::task()
            .with_id(format!("p{i}"))
            .with_input("index", i)
    })
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn in_docker() -> u64 {
    1
}

#[task(handler = "process")]
fn in_process() -> u64 {
    1
}

#[task(handler = "process")]
fn payload_in_process(mb: u64) -> Vec<u8> {
    vec![7u8; (mb as usize) << 20]
}

#[task(handler = "docker", image = "python:3.11-slim")]
fn payload_in_docker(mb: u64) -> Vec<u8> {
    vec![7u8; (mb as usize) << 20]
}

fn max_rss_kb() -> i64 {
    // SAFETY: an all-zero rusage is a valid value (integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } == 0 {
        usage.ru_maxrss
    } else {
        -1
    }
}

fn emit(workload: &str, n: u64, seconds: f64, extra: &str) {
    println!(
        "{{\"side\":\"graflow-rs\",\"workload\":\"{workload}\",\"n\":{n},\"seconds\":{seconds:.9},\"per_item_us\":{:.4},\"max_rss_kb\":{}{extra}}}",
        seconds * 1e6 / n.max(1) as f64,
        max_rss_kb()
    );
}

fn chain(n: u64) -> Workflow {
    let mut wf = Workflow::builder("chain");
    let mut previous = None;
    for i in 0..n {
        let node = wf.add(step::task().with_id(format!("t{i}")));
        if let Some(p) = previous {
            wf.edge(p, node);
        }
        previous = Some(node);
    }
    wf.build()
}

fn fanout(n: u64) -> Workflow {
    fan_out("fanout", sink::task(), n, |i| {
        member::task()
            .with_id(format!("p{i}"))
            .with_input("index", i)
    })
}

/// `src >> (member(0) | ... | member(n-1)) >> sink`: the shape of every fan-out workload.
fn fan_out(name: &str, sink: Task, n: u64, member: impl Fn(u64) -> Task) -> Workflow {
    let mut wf = Workflow::builder(name);
    let src = wf.add(source::task().with_id("src"));
    let out = wf.add(sink.with_id("sink"));
    for i in 0..n {
        let m = wf.add(member(i));
        wf.edge(src, m).edge(m, out);
    }
    wf.build()
}

fn docker_cli(image: &str, copies: usize) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = (0..copies)
        .map(|_| {
            Command::new("docker")
                .args(["run", "--rm", image, "true"])
                .stdout(Stdio::null())
                .spawn()
                .expect("the docker CLI starts")
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().expect("docker run ends").success(),
            "docker run failed"
        );
    }
    started.elapsed()
}

/// `docker run --rm IMAGE head -c BYTES /dev/zero`, its stdout read to the end here.
fn docker_cli_stream(image: &str, bytes: u64) -> Duration {
    use std::io::Read;
    let started = Instant::now();
    let mut child = Command::new("docker")
        .args([
            "run",
            "--rm",
            image,
            "head",
            "-c",
            &bytes.to_string(),
            "/dev/zero",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the docker CLI starts");
    let mut total = 0u64;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    assert!(
        child.wait().expect("docker run ends").success(),
        "docker run failed"
    );
    assert_eq!(total, bytes, "the CLI streamed every byte");
    started.elapsed()
}

/// A chain of `n` tasks run on `engine` after a 10-task warm-up (the first run of a function
/// is measured on the blocking pool) and `between` (untimed): the seconds of building and
/// running it, and of running it.
async fn timed_chain<F: std::future::Future<Output = graflow::Result<()>>>(
    engine: &WorkflowEngine,
    n: u64,
    between: impl FnOnce() -> F,
) -> graflow::Result<(f64, f64)> {
    engine.execute(&chain(10), RunOptions::new()).await?;
    between().await?;
    let started = Instant::now();
    let wf = chain(n);
    let run_started = Instant::now();
    let report = engine.execute(&wf, RunOptions::new()).await?;
    let timed = (
        started.elapsed().as_secs_f64(),
        run_started.elapsed().as_secs_f64(),
    );
    assert_eq!(report.result::<u64>(&format!("t{}", n - 1))?, 1);
    Ok(timed)
}

/// The bytes of the files in `dir` (a SQLite database and its WAL).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[graflow::main]
async fn main() -> graflow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: graflow-bench chain|chain-store|chain-nostore|store-read|fanout|parallel|call|process|warm-process|checkpoint-every|checkpoint-end N | docker|docker8|warm-docker R IMAGE | docker-group N POOL IMAGE";
    let (Some(what), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let image = args.get(3).map_or("python:3.11-slim", String::as_str);
    let engine = WorkflowEngine::new();
    match what.as_str() {
        "chain" => {
            let (seconds, run) = timed_chain(&engine, n, || async { Ok(()) }).await?;
            emit("chain", n, seconds, &format!(",\"run_seconds\":{run:.9}"));
        }
        "chain-store" | "chain-nostore" => {
            // The chain with a SQLite store of its own, against the same with none.
            let dir =
                std::env::temp_dir().join(format!("graflow-bench-store-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let db = dir.join("runs.db");
            let store = graflow::store::Store::new(graflow::store::Location::Sqlite(db.clone()));
            let mut engine = engine.clone();
            engine.set_recorder((what == "chain-store").then(|| store.recorder()));
            let stored = what == "chain-store";
            let before = std::cell::Cell::new(0);
            let (seconds, run) = timed_chain(&engine, n, || async {
                // After the warm-up, before the timed run: what is on disk already.
                if stored {
                    store.flush().await.expect("the store writes");
                }
                before.set(dir_bytes(&dir));
                Ok(())
            })
            .await?;
            let before = before.get();
            // Not timed: until every record of the run is written, and what it took on disk.
            let flushed = Instant::now();
            if what == "chain-store" {
                store.flush().await.expect("the store writes");
            }
            let flush = flushed.elapsed().as_secs_f64();
            let bytes = dir_bytes(&dir).saturating_sub(before);
            let _ = std::fs::remove_dir_all(&dir);
            emit(
                what,
                n,
                seconds,
                &format!(
                    ",\"run_seconds\":{run:.9},\"flush_seconds\":{flush:.6},\"db_bytes_per_attempt\":{:.1}",
                    bytes as f64 / n as f64
                ),
            );
        }
        "store-read" => {
            // N runs stored, then the 50 latest read back (median of 21 reads).
            let dir =
                std::env::temp_dir().join(format!("graflow-bench-read-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let store =
                graflow::store::Store::new(graflow::store::Location::Sqlite(dir.join("runs.db")));
            let mut engine = engine.clone();
            engine.set_recorder(Some(store.recorder()));
            let wf = chain(1);
            for _ in 0..n {
                engine.execute(&wf, RunOptions::new()).await?;
            }
            store.flush().await.expect("the store writes");
            let mut samples = Vec::new();
            for _ in 0..21 {
                let started = Instant::now();
                let runs = store.runs(50).await.expect("the store reads");
                samples.push(started.elapsed().as_secs_f64());
                assert_eq!(runs.len() as u64, n.min(50));
            }
            let _ = std::fs::remove_dir_all(&dir);
            emit("store-read", n, median(samples), "");
        }
        "checkpoint-every" | "checkpoint-every-fast" | "checkpoint-end" => {
            // A chain with a checkpoint after every task, against one when the run ends.
            let dir = std::env::temp_dir().join(format!("graflow-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let path = dir.join("chain.ckpt");
            let mut options = graflow::RunOptions::new().checkpoint(&path);
            if what != "checkpoint-end" {
                options = options.checkpoint_every(1);
            }
            if what == "checkpoint-every-fast" {
                options = options.checkpoint_durable(false);
            }
            engine.execute(&chain(10), RunOptions::new()).await?;
            let wf = chain(n);
            let started = Instant::now();
            let report = engine.execute(&wf, options.clone()).await?;
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(report.result::<u64>(&format!("t{}", n - 1))?, 1);
            let checkpoint = graflow::Checkpoint::load(&path)?;
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            emit(
                &what.replace('-', "_"),
                n,
                seconds,
                &format!(
                    ",\"checkpoints\":{},\"file_bytes\":{bytes}",
                    checkpoint.sequence()
                ),
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        "fanout" => {
            engine.execute(&fanout(10), RunOptions::new()).await?;
            let started = Instant::now();
            let wf = fanout(n);
            let run_started = Instant::now();
            let report = engine.execute(&wf, RunOptions::new()).await?;
            let (seconds, run) = (
                started.elapsed().as_secs_f64(),
                run_started.elapsed().as_secs_f64(),
            );
            assert_eq!(report.result::<u64>("sink")?, n * (n - 1) / 2);
            emit("fanout", n, seconds, &format!(",\"run_seconds\":{run:.9}"));
        }
        "parallel" => {
            // N tasks of about 10 ms of computation each side by side (a fan-out), on the direct handler
            // (a body that long runs on Tokio's blocking pool, see the README's *Scheduling*).
            // The same work in a plain loop, timed before and after the run (averaged), is the
            // total work; efficiency = work / (cores × wall time of the run).
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            let rounds = calibrate(Duration::from_millis(10));
            let (before, expected) = serial_work(n, rounds);
            let wf = parallel_cpu(n, rounds);
            let started = Instant::now();
            let report = engine.execute(&wf, RunOptions::new()).await?;
            let wall = started.elapsed().as_secs_f64();
            assert_eq!(
                report.result::<u64>("sink")?,
                expected,
                "the group's results differ from the loop's"
            );
            let (after, _) = serial_work(n, rounds);
            let work = f64::midpoint(before, after);
            emit(
                "parallel",
                n,
                wall,
                &format!(
                    ",\"run_seconds\":{wall:.9},\"cores\":{cores},\"work_seconds\":{work:.9},\"unit_seconds\":{:.9},\"efficiency\":{:.4}",
                    work / n as f64,
                    work / (cores as f64 * wall)
                ),
            );
        }
        "handler" => {
            // The direct handler alone, on a context of its own (Graflow 0.2's
            // DirectTaskHandler.execute_task measured the same way).
            // (The engine's scheduler skips the future for short synchronous bodies; this is
            // the public contract a custom handler wrapping "direct" pays.)
            let ctx = ExecutionContext::for_task(step::task())?;
            let direct = graflow::DirectHandler;
            direct.execute_task(ctx.task(), &ctx).await?;
            let started = Instant::now();
            let mut last = None;
            for _ in 0..n {
                last = Some(direct.execute_task(ctx.task(), &ctx).await?);
            }
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(last.map(|v| v.get::<u64>()).transpose()?, Some(1));
            emit("handler", n, seconds, "");
        }
        "call" => {
            let started = Instant::now();
            let mut total = 0u64;
            for _ in 0..n {
                total += std::hint::black_box(step)();
            }
            assert_eq!(total, n);
            emit("call", n, started.elapsed().as_secs_f64(), "");
        }
        "process" => {
            let wf = workflow! { in_process; };
            engine.execute(&wf, RunOptions::new()).await?;
            let mut samples = Vec::new();
            for _ in 0..n {
                let started = Instant::now();
                let report = engine.execute(&wf, RunOptions::new()).await?;
                samples.push(started.elapsed().as_secs_f64());
                assert_eq!(report.result::<u64>("in_process")?, 1);
            }
            emit("process", 1, median(samples), &format!(",\"runs\":{n}"));
        }
        "payload" => {
            let handler = args.get(3).map_or("process", String::as_str);
            let task = match handler {
                "process" => payload_in_process::task(),
                "docker" => payload_in_docker::task().with_config(
                    "image",
                    args.get(4).map_or("python:3.11-slim", String::as_str),
                ),
                other => {
                    eprintln!("payload: no handler {other:?}; use process or docker");
                    std::process::exit(2);
                }
            };
            // Room for the largest payloads measured (the default frame limit is 256 MiB).
            let limits = graflow::protocol::Limits::default().with_max_frame((n + 64) << 20);
            let mut engine = WorkflowEngine::new();
            engine.register_handler(
                "process",
                graflow::ProcessHandler::new().with_limits(limits),
            );
            engine.register_handler(
                "docker",
                graflow::handlers::DockerHandler::new().with_limits(limits),
            );
            let id = task.id().to_owned();
            // Warm-up with 1 MB: the baseline includes the runtime, the daemon connection, and
            // one small payload.
            let mut warm = Workflow::builder("payload-warm-up");
            warm.add(task.clone().with_input("mb", 1u64));
            engine.execute(&warm.build(), RunOptions::new()).await?;
            let baseline = max_rss_kb();
            let mut wf = Workflow::builder("payload");
            wf.add(task.with_input("mb", n));
            let wf = wf.build();
            let started = Instant::now();
            let report = engine.execute(&wf, RunOptions::new()).await?;
            let seconds = started.elapsed().as_secs_f64();
            let peak = max_rss_kb();
            // Checked after the peak was read (reading the result copies it).
            let bytes = report.result::<Vec<u8>>(&id)?;
            assert!(bytes.len() == (n as usize) << 20 && bytes.iter().all(|&b| b == 7));
            let extra_mb = (peak - baseline) as f64 / 1024.0;
            // The daemon's own streaming speed, for reference: the docker CLI attached to a
            // container that writes the same number of bytes to its stdout.
            let cli = if handler == "docker" {
                let image = args
                    .get(4)
                    .map_or("python:3.11-slim", String::as_str)
                    .to_owned();
                let cli = tokio::task::spawn_blocking(move || docker_cli_stream(&image, n << 20))
                    .await
                    .expect("the CLI run finishes");
                format!(",\"cli_seconds\":{:.9}", cli.as_secs_f64())
            } else {
                String::new()
            };
            emit(
                &format!("payload-{handler}"),
                n,
                seconds,
                &format!(
                    ",\"baseline_rss_kb\":{baseline},\"extra_rss_ratio\":{:.4}{cli}",
                    extra_mb / n as f64
                ),
            );
        }
        "docker" | "docker8" => {
            let copies = if what == "docker" { 1 } else { 8 };
            let mut wf = Workflow::builder(what.as_str());
            for i in 0..copies {
                wf.add(
                    in_docker::task()
                        .with_id(format!("d{i}"))
                        .with_config("image", image),
                );
            }
            let wf = wf.build();
            let engine = engine.with_max_concurrency(copies.max(2));
            // Warm-up of both sides (image cache, daemon connection).
            engine.execute(&wf, RunOptions::new()).await?;
            docker_cli(image, copies);
            let (mut ours, mut cli) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let started = Instant::now();
                let report = engine.execute(&wf, RunOptions::new()).await?;
                ours.push(started.elapsed().as_secs_f64());
                assert!(report.succeeded());
                let cli_time = tokio::task::spawn_blocking({
                    let image = image.to_owned();
                    move || docker_cli(&image, copies)
                })
                .await
                .expect("the CLI run finishes");
                cli.push(cli_time.as_secs_f64());
            }
            let (ours, cli) = (median(ours), median(cli));
            emit(
                what,
                1,
                ours,
                &format!(
                    ",\"runs\":{n},\"cli_seconds\":{cli:.9},\"ratio\":{:.4}",
                    ours / cli
                ),
            );
        }
        "warm-process" => {
            // One task per run: N runs back to back on a warm child (reused), then N / 10 on a
            // fresh child each, in this one process; medians. (Alternating single runs would
            // measure a warm runner woken after every cold start instead.)
            let warm = WorkflowEngine::new().with_handler(
                "process",
                ProcessHandler::new()
                    .with_pool(PoolOptions::new().with_size(1).reuse_by_default(true)),
            );
            let wf = workflow! { in_process; };
            warm.warm_up(&wf).await?;
            warm.execute(&wf, RunOptions::new()).await?;
            engine.execute(&wf, RunOptions::new()).await?;
            let mut hot = Vec::new();
            for _ in 0..n {
                let started = Instant::now();
                let report = warm.execute(&wf, RunOptions::new()).await?;
                hot.push(started.elapsed().as_secs_f64());
                assert_eq!(report.result::<u64>("in_process")?, 1);
            }
            let mut cold = Vec::new();
            for _ in 0..(n / 10).max(3) {
                let started = Instant::now();
                engine.execute(&wf, RunOptions::new()).await?;
                cold.push(started.elapsed().as_secs_f64());
            }
            // And a chain of 1,000 warm tasks: the per-task cost without the run's own.
            let mut chain = Workflow::builder("warm-chain");
            let nodes: Vec<_> = (0..1000)
                .map(|i| chain.add(in_process::task().with_id(format!("w{i}"))))
                .collect();
            chain.chain(&nodes);
            let chain = chain.build();
            let started = Instant::now();
            warm.execute(&chain, RunOptions::new()).await?;
            let per_task = started.elapsed().as_secs_f64() / 1000.0;
            let (hot, cold) = (median(hot), median(cold));
            emit(
                "warm-process",
                1,
                hot,
                &format!(
                    ",\"runs\":{n},\"cold_seconds\":{cold:.9},\"ratio\":{:.4},\"chain_per_task_seconds\":{per_task:.9}",
                    hot / cold
                ),
            );
        }
        "warm-docker" => {
            // One task per run, alternated: a warm container, a fresh container, `docker run`.
            let warm = WorkflowEngine::new().with_handler(
                "docker",
                DockerHandler::new()
                    .with_pool(PoolOptions::new().with_size(1).reuse_by_default(true)),
            );
            let wf = workflow! { in_docker; };
            warm.warm_up(&wf).await?;
            warm.execute(&wf, RunOptions::new()).await?;
            engine.execute(&wf, RunOptions::new()).await?;
            docker_cli(image, 1);
            let (mut hot, mut cold, mut cli) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..n {
                let started = Instant::now();
                let report = warm.execute(&wf, RunOptions::new()).await?;
                hot.push(started.elapsed().as_secs_f64());
                assert_eq!(report.result::<u64>("in_docker")?, 1);
                let started = Instant::now();
                engine.execute(&wf, RunOptions::new()).await?;
                cold.push(started.elapsed().as_secs_f64());
                let image = image.to_owned();
                let took = tokio::task::spawn_blocking(move || docker_cli(&image, 1))
                    .await
                    .expect("the CLI run finishes");
                cli.push(took.as_secs_f64());
            }
            let (hot, cold, cli) = (median(hot), median(cold), median(cli));
            emit(
                "warm-docker",
                1,
                hot,
                &format!(
                    ",\"runs\":{n},\"cold_seconds\":{cold:.9},\"cli_seconds\":{cli:.9},\"ratio\":{:.4},\"cold_ratio\":{:.4}",
                    hot / cli,
                    hot / cold
                ),
            );
        }
        "docker-group" => {
            // N docker tasks in one parallel group: fresh containers (16 at once, the handler's
            // default) against a pool of POOL warm containers started by the run itself, then
            // the same group again on the pool, now warm.
            let pool: usize = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(4);
            let image = args.get(4).map_or("python:3.11-slim", String::as_str);
            let mut group = Workflow::builder("docker-group");
            for i in 0..n {
                group.add(
                    in_docker::task()
                        .with_id(format!("d{i}"))
                        .with_config("image", image),
                );
            }
            let wf = group.build();
            engine
                .execute(&workflow! { in_docker; }, RunOptions::new())
                .await?;
            let started = Instant::now();
            let report = engine.execute(&wf, RunOptions::new()).await?;
            let cold = started.elapsed().as_secs_f64();
            assert!(report.succeeded());
            let warm = WorkflowEngine::new().with_handler(
                "docker",
                DockerHandler::new()
                    .with_pool(PoolOptions::new().with_size(pool).reuse_by_default(true)),
            );
            let started = Instant::now();
            let report = warm.execute(&wf, RunOptions::new()).await?;
            let first = started.elapsed().as_secs_f64();
            assert!(report.succeeded());
            let started = Instant::now();
            warm.execute(&wf, RunOptions::new()).await?;
            let again = started.elapsed().as_secs_f64();
            emit(
                "docker-group",
                n,
                first,
                &format!(
                    ",\"pool\":{pool},\"cold_seconds\":{cold:.9},\"warm_again_seconds\":{again:.9},\"ratio\":{:.4},\"again_ratio\":{:.4}",
                    first / cold,
                    again / cold
                ),
            );
        }
        "redis" => {
            let (Some(workers), Some(url)) = (
                args.get(3).and_then(|w| w.parse::<usize>().ok()),
                args.get(4),
            ) else {
                eprintln!("usage: graflow-bench redis N WORKERS URL");
                std::process::exit(2);
            };
            let prefix = format!("bench{}", std::process::id());
            let _workers = Workers::start(url, &prefix, workers, &[]);
            let engine = redis_engine(url, &prefix);
            // Warm-up, until every worker has taken tasks.
            for _ in 0..3 {
                engine
                    .execute(&redis_fanout(200), RunOptions::new())
                    .await?;
            }
            let started = Instant::now();
            let wf = redis_fanout(n);
            let run_started = Instant::now();
            let report = engine.execute(&wf, RunOptions::new()).await?;
            let (seconds, run) = (
                started.elapsed().as_secs_f64(),
                run_started.elapsed().as_secs_f64(),
            );
            assert_eq!(report.result::<u64>("sink")?, n * (n - 1) / 2);
            emit(
                "redis",
                n,
                seconds,
                &format!(",\"run_seconds\":{run:.9},\"workers\":{workers}"),
            );
        }
        "redis-rtt" => {
            let Some(url) = args.get(3) else {
                eprintln!("usage: graflow-bench redis-rtt R URL");
                std::process::exit(2);
            };
            let prefix = format!("bench{}", std::process::id());
            let _workers = Workers::start(url, &prefix, 1, &[]);
            let engine = redis_engine(url, &prefix);
            let wf = workflow! { name: "rtt"; remote_step; };
            for _ in 0..20 {
                engine.execute(&wf, RunOptions::new()).await?;
            }
            let mut samples = Vec::new();
            for _ in 0..n {
                let started = Instant::now();
                let report = engine.execute(&wf, RunOptions::new()).await?;
                samples.push(started.elapsed().as_secs_f64());
                assert_eq!(report.result::<u64>("remote_step")?, 1);
            }
            emit("redis-rtt", 1, median(samples), &format!(",\"runs\":{n}"));
        }
        "redis-kill" => {
            let Some(url) = args.get(3) else {
                eprintln!("usage: graflow-bench redis-kill R URL");
                std::process::exit(2);
            };
            let lease = 2.0;
            let mut samples = Vec::new();
            for rep in 0..n {
                let prefix = format!("bench{}k{rep}", std::process::id());
                let mut workers =
                    Workers::start(url, &prefix, 2, &["--graflow-worker-lease", "2s"]);
                let engine = redis_engine(url, &prefix);
                engine.execute(&redis_fanout(50), RunOptions::new()).await?;
                // 16 tasks of 300 ms on 2 workers of 4 slots: both hold tasks when one dies.
                let mut wf = Workflow::builder("kill");
                for i in 0..16u64 {
                    wf.add(
                        remote_sleep::task()
                            .with_id(format!("s{i}"))
                            .with_input("index", i)
                            .with_input("ms", 300u64),
                    );
                }
                let wf = wf.build();
                let run = engine.execute(&wf, RunOptions::new());
                tokio::pin!(run);
                let killed_at = tokio::select! {
                    _ = &mut run => panic!("the run ended before the kill"),
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        workers.kill(0);
                        Instant::now()
                    }
                };
                let report = run.await?;
                let recovered = killed_at.elapsed().as_secs_f64();
                for i in 0..16u64 {
                    assert_eq!(report.result::<u64>(&format!("s{i}"))?, i);
                }
                let taken_over = report
                    .tasks()
                    .filter(|t| t.runner.is_some_and(|r| r.ends_with("delivery 2")))
                    .count();
                assert!(taken_over > 0, "the killed worker held no task");
                samples.push(recovered);
            }
            let recovered = median(samples);
            emit(
                "redis-kill",
                1,
                recovered,
                &format!(
                    ",\"runs\":{n},\"lease_seconds\":{lease},\"over_lease_seconds\":{:.4}",
                    recovered - lease
                ),
            );
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    Ok(())
}
