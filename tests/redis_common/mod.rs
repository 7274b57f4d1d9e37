//! What the redis tests share: a private `redis-server` on a free loopback port, and worker
//! processes (this test binary in worker mode).

#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use graflow::redis::{RedisHandler, RedisOptions};
use graflow::{WorkflowEngine, task};
use redis::Commands;
use serde::{Deserialize, Serialize};

/// Set to 1 to make a missing `redis-server` fail the tests instead of skipping them (where
/// `graflow-redis/scripts/setup.sh` has run, a missing server is a failure).
const REQUIRE_REDIS: &str = "GRAFLOW_REQUIRE_REDIS";

/// How long "at once" may take in these tests (a worker noticing a cancellation, a job being
/// acknowledged): milliseconds on an idle machine, but CI and users run the tests on busy,
/// shared machines. (As `common::PROMPTLY`, for the tests built without Docker.)
pub const PROMPTLY: Duration = Duration::from_secs(30);

/// A `redis-server` of the test's own, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
    /// Whether it ever answered (a restart keeps its port).
    launched: bool,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Whether `command` runs; when it does not, the test is skipped, saying so (a failure with
/// `GRAFLOW_REQUIRE_REDIS=1`).
pub fn available(command: &str, install: &str) -> bool {
    let probe = if command == "redis-server" {
        "--version"
    } else {
        "version"
    };
    if Command::new(command)
        .arg(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    let required = std::env::var(REQUIRE_REDIS).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{REQUIRE_REDIS} is set, but there is no {command}: run {install}"
    );
    eprintln!(
        "skipped {}: no {command} (run {install}; set {REQUIRE_REDIS}=1 to make this a failure)",
        std::thread::current().name().unwrap_or("a redis test")
    );
    false
}

/// A `redis-server` with settings of the test's own (a password, TLS), killed when dropped;
/// ready once its port accepts connections.
pub struct CustomServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl CustomServer {
    /// `port_flag` (`--port` or `--tls-port`) on a free port, plus `args`.
    pub fn start(port_flag: &str, args: &[&str]) -> Option<CustomServer> {
        if !available("redis-server", "graflow-redis/scripts/setup.sh") {
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "graflow-redis-custom-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg(port_flag)
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command.spawn().expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(CustomServer { child, port, dir })
    }
}

impl Drop for CustomServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// A server without persistence; `None` (the test is skipped, saying so) when there is no
    /// `redis-server` and `GRAFLOW_REQUIRE_REDIS` is not set.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(false)
    }

    /// A server; with `aof`, every write is in its append-only file before it is answered
    /// (`appendfsync always`), so a restart loses nothing acknowledged.
    pub fn start_with(aof: bool) -> Option<RedisServer> {
        if !available("redis-server", "graflow-redis/scripts/setup.sh") {
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "graflow-redis-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir,
            aof,
            launched: false,
        };
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        // The port was free when `free_port` looked; another program (a second copy of this
        // suite, another test) may take it before redis-server binds it. Then that server
        // exits, or, worse, the one answering on the port is someone else's: a server is ours
        // only if it says it has our child's pid. A first launch moves to another port; a
        // restart must keep its port, and tries it again.
        let first = !self.launched;
        for _ in 0..20 {
            match self.try_launch() {
                Ok(()) => {
                    self.launched = true;
                    return;
                }
                Err(why) => {
                    self.kill();
                    if first {
                        self.port = free_port();
                    } else {
                        eprintln!("redis-server on port {}: {why}; trying again", self.port);
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }
        }
        panic!(
            "no redis-server of this test answered on port {}",
            self.port
        );
    }

    /// Starts redis-server on `self.port` and waits until it answers as itself.
    fn try_launch(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        die_with_parent(&mut command);
        let child = command.spawn().expect("start redis-server");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("it exited ({status}): the port is taken"));
            }
            if let Ok(mut conn) = self.try_conn()
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut conn)
            {
                let theirs = info
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .map(str::trim);
                if theirs == Some(pid.to_string().as_str()) {
                    return Ok(());
                }
                return Err(format!(
                    "another program's redis-server (pid {theirs:?}) answers there"
                ));
            }
            if Instant::now() >= deadline {
                return Err("it did not answer within 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain connection, to look at what the engine and workers left in Redis.
    pub fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect to the test's redis-server")
    }

    /// Kills the server (SIGKILL: no goodbye, no final save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its sockets stay open and accept, nothing answers.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: a signal to our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Kills the server and starts it again on the same port, from the same directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The child gets SIGKILL when the thread that started it ends: nothing outlives the test,
/// even a test killed by its harness.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A worker: this test binary started in worker mode.
pub struct WorkerProcess {
    child: Child,
    pub name: String,
    log: PathBuf,
}

/// Starts `program` (default: this test binary) as a worker of `url` named `name`, with the
/// worker settings in `env` (`GRAFLOW_WORKER_LEASE`, ...). Its stderr goes to a file, shown
/// by [`WorkerProcess::log`].
pub fn spawn_worker_of(
    program: Option<&Path>,
    url: &str,
    name: &str,
    env: &[(&str, &str)],
) -> WorkerProcess {
    let (exe, args) = graflow::backend::runner_command().expect("this test binary");
    let log = std::env::temp_dir().join(format!(
        "graflow-worker-{}-{name}-{}.log",
        std::process::id(),
        free_port()
    ));
    let file = std::fs::File::create(&log).expect("a log file");
    let mut command = Command::new(program.unwrap_or(&exe));
    command
        .args(&args)
        .env("GRAFLOW_WORKER", url)
        .env("GRAFLOW_WORKER_NAME", name)
        .env("GRAFLOW_TEST_REDIS", url)
        .env("RUST_LOG", "graflow=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    for (key, value) in env {
        command.env(key, value);
    }
    die_with_parent(&mut command);
    // A freshly written binary (another build's copy) can be briefly "busy" while a fork of
    // another test thread still holds its write descriptor: retry that case only.
    let mut tries = 0;
    let child = loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.expect("start a worker"),
        }
    };
    WorkerProcess {
        child,
        name: name.to_owned(),
        log,
    }
}

/// Starts this test binary running only the (ignored) test `test`, a helper program (e.g. an
/// engine the test kills), with `env`; its output goes to a file, as a worker's does.
pub fn spawn_test_program(test: &str, env: &[(&str, &str)]) -> WorkerProcess {
    let exe = std::env::current_exe().expect("this test binary");
    let log = std::env::temp_dir().join(format!(
        "graflow-program-{}-{test}-{}.log",
        std::process::id(),
        free_port()
    ));
    let file = std::fs::File::create(&log).expect("a log file");
    let mut command = Command::new(exe);
    command
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RUST_LOG", "graflow=debug")
        .env_remove("GRAFLOW_WORKER")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("a log file"))
        .stderr(file);
    for (key, value) in env {
        command.env(key, value);
    }
    die_with_parent(&mut command);
    WorkerProcess {
        child: command.spawn().expect("start the helper program"),
        name: test.to_owned(),
        log,
    }
}

pub fn spawn_worker(url: &str, name: &str, env: &[(&str, &str)]) -> WorkerProcess {
    spawn_worker_of(None, url, name, env)
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a machine dying would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM, then its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().expect("wait for the worker")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it logged `needle` (e.g. that it started), at most `limit`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "worker {} did not log `{needle}` within {limit:?}; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_started(&self) {
        self.wait_for_log("redis worker started", Duration::from_secs(30));
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// In a task body running on a worker: a connection to the test's server.
/// Runs `f` on a fresh connection of a task to the test's redis-server until it succeeds
/// (for up to 20 s): tasks that run while the test restarts Redis keep their bookkeeping.
pub fn with_task_conn<T>(mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> T {
    let url = std::env::var("GRAFLOW_TEST_REDIS").expect("GRAFLOW_TEST_REDIS in the worker");
    let mut last = None;
    for _ in 0..400 {
        match redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut conn| f(&mut conn))
        {
            Ok(value) => return value,
            Err(error) => last = Some(error),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the task could not reach the test's redis-server for 20 s: {last:?}")
}

pub fn task_conn() -> redis::Connection {
    let url = std::env::var("GRAFLOW_TEST_REDIS").expect("GRAFLOW_TEST_REDIS in the worker");
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("the task connects to the test's redis-server")
}

// The tasks and helpers that several redis test files use. A task defined here is registered in
// every test binary that includes this module, so the workers each of them starts can run it.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub label: String,
    pub values: Vec<f64>,
    pub tags: HashMap<String, u32>,
    pub nested: Option<Box<Sample>>,
}

#[task(handler = "redis")]
pub fn total(sample: Sample) -> f64 {
    sample.values.iter().sum()
}

/// Records that it ran (`runs:<key>`, and which worker pid), sleeps, returns `n * n`.
#[task(handler = "redis")]
pub fn slow_square(key: String, n: u64, sleep_ms: u64) -> u64 {
    // (One test restarts Redis while these run: the bookkeeping waits for it, atomically.)
    with_task_conn(|conn| {
        redis::pipe()
            .atomic()
            .incr(format!("runs:{key}"), 1)
            .ignore()
            .rpush(format!("pids:{key}"), std::process::id())
            .ignore()
            .query::<()>(conn)
    });
    std::thread::sleep(Duration::from_millis(sleep_ms));
    n * n
}

pub fn engine(server: &RedisServer, options: RedisOptions) -> WorkflowEngine {
    let mut engine = WorkflowEngine::new();
    engine.register_handler(
        "redis",
        RedisHandler::connect_with(&server.url(), options).expect("connect to the test's Redis"),
    );
    engine
}

pub fn sample(label: &str) -> Sample {
    Sample {
        label: label.to_owned(),
        values: vec![1.5, 2.5, -1.0],
        tags: HashMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]),
        nested: None,
    }
}

/// The default queue's dead letters, once there are at least `n` (or `PROMPTLY` passed).
pub fn dead_letters_at_least(conn: &mut redis::Connection, n: u64) -> u64 {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let dead: u64 = conn.xlen("graflow:dead:default").unwrap();
        if dead >= n || Instant::now() >= deadline {
            return dead;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `PROMPTLY`) until no job of the default queue is pending.
pub fn wait_until_nothing_pending(conn: &mut redis::Connection, what: &str) {
    let deadline = Instant::now() + PROMPTLY;
    while pending_count(conn, "default") > 0 {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn pending_count(conn: &mut redis::Connection, queue: &str) -> u64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(format!("graflow:queue:{queue}"))
        .arg("graflow-workers")
        .query(conn)
        .unwrap();
    match summary {
        redis::Value::Array(items) => redis::from_redis_value(items[0].clone()).unwrap(),
        other => panic!("XPENDING said {other:?}"),
    }
}
