//! What the integration tests that need a Docker daemon share (`mod common;`).

// Each test file uses part of this module (and none of its Docker part without the `docker`
// feature).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set to 1 to make a missing Docker daemon fail the tests that need one instead of skipping
/// them: where `graflow-docker/scripts/setup.sh` has run, a missing daemon is a failure.
const REQUIRE_DOCKER: &str = "GRAFLOW_REQUIRE_DOCKER";

/// How long `docker info` may take to answer.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// Why the tests that need Docker cannot run here: in short, and in full with what to do.
struct NoDocker {
    short: &'static str,
    full: String,
}

/// Called first by every test that needs a Docker daemon: whether it must return at once. A
/// daemon answers: `false`. None does: `true`, after saying so on stderr (why and what to do
/// once, then a line per skipped test); with `GRAFLOW_REQUIRE_DOCKER=1`, the test fails instead.
pub(crate) fn skip_without_docker() -> bool {
    static MISSING: OnceLock<Option<NoDocker>> = OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        let missing = why_no_docker();
        if let Some(missing) = &missing
            && !required()
        {
            say(&format!(
                "NOTE: the tests of this file that need Docker are SKIPPED: {}. Set \
                 {REQUIRE_DOCKER}=1 to make that a failure.",
                missing.full
            ));
        }
        missing
    });
    let Some(missing) = missing else {
        return false;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("a docker test")
        .to_owned();
    assert!(
        !required(),
        "{test}: {REQUIRE_DOCKER} is set, but {}",
        missing.full
    );
    say(&format!("skipped {test}: {}", missing.short));
    true
}

fn required() -> bool {
    std::env::var(REQUIRE_DOCKER).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Straight to stderr: the test harness captures `eprintln!` of passing tests, and a skip must
/// be seen.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn why_no_docker() -> Option<NoDocker> {
    if !cfg!(feature = "docker") {
        return Some(NoDocker {
            short: "built without the docker feature",
            full: "graflow was built without its `docker` feature (on by default)".to_owned(),
        });
    }
    let no_daemon = |why: String| NoDocker {
        short: "no Docker daemon",
        full: format!(
            "no Docker daemon answers `docker info` ({why}); \
             `bash graflow-docker/scripts/setup.sh` makes one answer"
        ),
    };
    let mut probe = match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(probe) => probe,
        Err(e) => return Some(no_daemon(format!("the docker CLI does not start: {e}"))),
    };
    let deadline = Instant::now() + PROBE_LIMIT;
    let status = loop {
        match probe.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = probe.kill();
                let _ = probe.wait();
                return Some(no_daemon(format!("no answer within {PROBE_LIMIT:?}")));
            }
            Err(e) => return Some(no_daemon(format!("cannot wait for it: {e}"))),
        }
    };
    if status.success() {
        return None;
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = probe.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let said = stderr.trim().lines().last().unwrap_or("it said nothing");
    Some(no_daemon(format!("{status}: {said}")))
}

/// Ids of the containers (running or not) that match every `docker ps` filter.
#[allow(dead_code)] // not every test file that shares this module lists containers
pub(crate) fn docker_ps(filters: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["ps", "-a", "-q"]);
    for f in filters {
        cmd.args(["--filter", f]);
    }
    let out = cmd.output().expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// This process's log lines (`graflow=info`), captured from the first call on.
#[allow(dead_code)] // not every test file that shares this module reads logs
pub(crate) fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static std::sync::Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        struct Sink(&'static std::sync::Mutex<Vec<u8>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("graflow=info")
            .with_ansi(false)
            .with_writer(move || Sink(logs))
            .try_init();
        logs
    })
}

/// Gives a child program SIGINT and SIGTERM at their default actions. A test suite started in
/// the background by a script (`cargo test &`) inherits SIGINT ignored, and passes that on; the
/// engine respects an ignored SIGINT (the program's choice), so a test that interrupts its child
/// must not depend on how its own suite was started.
pub(crate) fn default_signals(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal() is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGTERM] {
                if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}

/// Whether process `pid` runs (a zombie, state Z, is dead and only waits to be reaped).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// How long "at once" may take in these tests. What a test waits for (a process to die, a
/// container to be removed, a timeout to fire) takes milliseconds on an idle machine, but CI and
/// users run the tests on busy, shared machines, where a second is no bound at all. What such a
/// wait is told apart from (a task's own sleep, an idle timeout) is made far longer than this,
/// so the bound still separates "at once" from "never" or "when the task ended on its own".
pub(crate) const PROMPTLY: Duration = Duration::from_secs(30);

/// Polls `done` until it holds or `limit` passes; how long it took, or `None` on timeout.
pub(crate) fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320): the checksum of a checkpoint file, as its
/// format documents it (written here from the definition, so that tests can forge files).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An error with a source, for tests of error chains: "could not save the model: disk full".
#[derive(Debug)]
pub(crate) struct DiskFull;

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk full")
    }
}

impl std::error::Error for DiskFull {}

#[derive(Debug)]
pub(crate) struct SaveFailed(pub(crate) DiskFull);

impl std::fmt::Display for SaveFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("could not save the model")
    }
}

impl std::error::Error for SaveFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

// The tasks and helpers that several docker test files use. A task defined here is registered in
// every test binary that includes this module, so the runners each of them starts can run it.

/// Container ids carrying `label=value`, running or not.
pub(crate) fn containers_with(label: &str, value: &str) -> Vec<String> {
    docker_ps(&[&format!("label={label}={value}")])
}

/// Running container ids carrying `label=value`.
pub(crate) fn running_with(label: &str, value: &str) -> Vec<String> {
    docker_ps(&["status=running", &format!("label={label}={value}")])
}

/// Waits (bounded) until no container carries `label=value`.
pub(crate) fn assert_gone(label: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = containers_with(label, value);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "containers left with {label}={value}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PythonFacts {
    pub version: String,
    pub squares: Vec<u64>,
    pub hostname: String,
    pub runner: bool,
}

#[graflow::task(handler = "docker", image = "python:3.11-slim", writes = ["python_seen"])]
pub(crate) fn ask_python(limit: u64, ctx: &graflow::TaskContext) -> Result<PythonFacts, String> {
    let script = format!(
        "import sys; print(sys.version.split()[0]); print(' '.join(str(i*i) for i in range({limit})))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .map_err(|e| format!("python3 did not start: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default().to_owned();
    let squares = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| s.parse::<u64>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.channel().set("python_seen", version.clone());
    Ok(PythonFacts {
        version,
        squares,
        hostname: std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        runner: graflow::is_runner(),
    })
}

#[graflow::task(handler = "docker", image = "python:3.11-slim")]
pub(crate) fn refuses() -> Result<u8, std::io::Error> {
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "quota exceeded",
    ))
}

/// A test of a `harness = false` test program: its name and its body.
pub(crate) type NamedTest<C> = (&'static str, fn(&C));

/// Runs the tests of a `harness = false` test program whose names contain one of the program's
/// non-flag arguments (all without any: `cargo test --test NAME -- FILTER`), each with `ctx`,
/// a panic failing only its test; prints a line per test, and returns the names that failed.
pub(crate) fn run_tests<C>(tests: &[NamedTest<C>], ctx: &C) -> Vec<&'static str> {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for &(name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(ctx))) {
            Ok(()) => println!(
                "test {name} ... ok ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    failed
}
