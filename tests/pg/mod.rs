//! A private PostgreSQL server for the store's tests: a fresh cluster in a temporary directory of
//! its own, on a free loopback port, trusting the user `graflow`; stopped and removed when
//! dropped. As the redis tests do with `redis-server`, a test is skipped (saying so) when the
//! server programs are absent, and fails instead with `GRAFLOW_REQUIRE_POSTGRES=1`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set to 1 to make missing PostgreSQL programs fail the tests instead of skipping them (where
/// `graflow-store/scripts/setup.sh` has run, a missing server is a failure).
const REQUIRE_POSTGRES: &str = "GRAFLOW_REQUIRE_POSTGRES";
/// The system user the servers run as when the tests run as root: PostgreSQL refuses root.
const SERVER_USER: &str = "graflow-pg";
/// How [`SERVER_USER`] is created: a system user with no home and no login.
const USERADD: [&str; 4] = [
    "--system",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
];
/// The servers' directories: `graflow-pg-<pid>-<counter>-<nanos>`.
const PREFIX: &str = "graflow-pg-";
/// How long pg_ctl waits for a start or a stop, in seconds: generous, for busy shared machines.
const WAIT_SECS: &str = "60";

/// A PostgreSQL server of the test's own (user `graflow`, no password), stopped and its
/// directory removed when dropped.
#[derive(Debug)]
pub struct PgServer {
    /// Where initdb, pg_ctl, postgres and the client programs of that version are.
    bin: PathBuf,
    /// The private directory: `data` (the cluster), `log`, and the Unix socket.
    dir: PathBuf,
    port: u16,
    /// Whether the tests run as root, so the server runs as [`SERVER_USER`].
    as_root: bool,
}

/// Starts a server; `None` (the test is skipped, saying so) when there are no PostgreSQL
/// server programs and `GRAFLOW_REQUIRE_POSTGRES` is not set. Panics, leaving nothing running,
/// when the server does not start.
pub fn start() -> Option<PgServer> {
    let Some(bin) = find_bin() else {
        let required = std::env::var(REQUIRE_POSTGRES).is_ok_and(|v| !v.is_empty() && v != "0");
        let missing = "no initdb, pg_ctl and postgres in /usr/lib/postgresql/*/bin";
        let setup = "graflow-store/scripts/setup.sh";
        assert!(
            !required,
            "{REQUIRE_POSTGRES} is set, but there is {missing}: run {setup}"
        );
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a postgres test");
        eprintln!("skipped {test}: {missing} (run {setup}; set {REQUIRE_POSTGRES}=1 to fail)");
        return None;
    };
    // SAFETY: geteuid cannot fail and has no side effects.
    let as_root = unsafe { libc::geteuid() } == 0;
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| sweep(&bin, as_root));
    // From here on a panic drops `server`, which stops whatever started and removes the directory.
    let mut server = PgServer {
        dir: private_dir(as_root),
        bin,
        port: 0,
        as_root,
    };
    let mut initdb = server.tool("initdb");
    initdb.arg("-D").arg(server.dir.join("data"));
    initdb.args(["-U", "graflow", "--auth=trust", "--no-sync"]);
    if let Err(why) = run(initdb.args(["-E", "UTF8", "--locale=C"])) {
        panic!("initdb of a test's PostgreSQL server failed: {why}");
    }
    // The port was free when `free_port` looked; another program may take it before the server
    // binds it: then the server fails, and the next try takes another port.
    for attempt in 1..=5 {
        server.port = free_port();
        match server.launch() {
            Ok(()) => return Some(server),
            Err((true, _)) if attempt < 5 => {
                eprintln!("port {} was taken; trying another", server.port)
            }
            Err((_, why)) => panic!("{why}"),
        }
    }
    unreachable!("the fifth try returns or panics")
}

impl PgServer {
    /// The server's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of `database` on the server, as the user `graflow` (no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://graflow@127.0.0.1:{}/{database}", self.port)
    }

    /// A program of the server's version (`psql`, `pg_dump`, ...), to run with
    /// `-h 127.0.0.1 -p <port> -U graflow` or `-d <url>`.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }

    /// Creates the database `name` (owned by `graflow`), so each test can have its own.
    pub fn create_database(&self, name: &str) {
        let mut createdb = command(&self.bin("createdb"));
        let port = self.port.to_string();
        createdb.args(["-w", "-h", "127.0.0.1", "-U", "graflow", "-p", &port, name]);
        if let Err(why) = run(&mut createdb) {
            panic!("creating database {name} on port {port}: {why}");
        }
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`, as a crash would); [`restart`]
    /// starts it again.
    ///
    /// [`restart`]: PgServer::restart
    pub fn stop(&self) {
        if let Err(why) = self.pg_ctl_stop() {
            panic!(
                "stopping the PostgreSQL server on port {}: {why}",
                self.port
            );
        }
    }

    /// Starts the stopped server again on the same port, from the same data (recovering what
    /// an immediate stop left). Tries 5 times, in case another program took the port meanwhile.
    pub fn restart(&self) {
        for attempt in 1..=5 {
            match self.launch() {
                Ok(()) => return,
                Err((true, _)) if attempt < 5 => {
                    eprintln!("port {} is taken; waiting to try it again", self.port);
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err((_, why)) => panic!("restarting: {why}"),
            }
        }
    }

    /// Starts the server on `self.port` and waits until it accepts connections. An error says
    /// whether the port was taken; no server of ours runs after one.
    fn launch(&self) -> Result<(), (bool, String)> {
        let log = self.dir.join("log");
        let logged_before = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let (port, dir) = (self.port, self.dir.display());
        let options = format!(
            "-p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        );
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(&log);
        let started = run(pg_ctl.args(["-w", "-t", WAIT_SECS, "-o", &options, "start"]));
        let failure = started.err().or_else(|| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() >= deadline {
                    return Some("it did not accept connections within 60 s".to_owned());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        });
        let Some(why) = failure else { return Ok(()) };
        let _ = self.pg_ctl_stop(); // (pg_ctl may have given up on a server still starting)
        let logged = std::fs::read(&log).unwrap_or_default();
        let logged = String::from_utf8_lossy(logged.get(logged_before..).unwrap_or_default());
        let why = format!("PostgreSQL did not start on port {port}: {why}\nits log:\n{logged}");
        Err((logged.contains("Address already in use"), why))
    }

    /// Stops the server at once, waiting until it is gone.
    fn pg_ctl_stop(&self) -> Result<String, String> {
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl.arg("-D").arg(self.dir.join("data"));
        run(pg_ctl.args(["-m", "immediate", "-w", "-t", WAIT_SECS, "stop"]))
    }

    /// `program` of the server, run as [`SERVER_USER`] when root, in the server's directory
    /// (the current one may be closed to that user).
    fn tool(&self, program: &str) -> Command {
        let program = self.bin(program);
        let mut tool = command(if self.as_root {
            Path::new("runuser")
        } else {
            &program
        });
        if self.as_root {
            tool.args(["-u", SERVER_USER, "--"]).arg(&program);
        }
        tool.current_dir(&self.dir);
        tool
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl_stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `program` without the PG* variables of the environment (they would redirect it), in the C
/// locale (its messages are read), with nothing on its stdin.
fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("PG")) {
        command.env_remove(key);
    }
    command.env("LC_ALL", "C").stdin(Stdio::null());
    command
}

/// Runs `command`, giving its output, or why it failed with its output.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("{command:?} did not run: {e}"))?;
    let said = String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned();
    if output.status.success() {
        return Ok(said);
    }
    Err(format!(
        "{command:?} failed ({}): {}",
        output.status,
        said.trim_end()
    ))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("the bound port").port()
}

/// The bin directory of the newest PostgreSQL in /usr/lib/postgresql (Debian's layout).
fn find_bin() -> Option<PathBuf> {
    let version = |bin: &PathBuf| -> Vec<u32> {
        let name = bin.parent().and_then(Path::file_name).unwrap_or_default();
        let name = name.to_string_lossy();
        name.split('.').map(|n| n.parse().unwrap_or(0)).collect()
    };
    let complete = |bin: &PathBuf| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file();
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten();
    versions
        .map(|entry| entry.path().join("bin"))
        .filter(complete)
        .max_by_key(version)
}

/// The uid and gid of [`SERVER_USER`], a system user created if missing (by the first test to
/// need it; another test, in this process or another, may be creating it at the same moment).
fn server_user_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str| {
            let output = Command::new("id").args([flag, SERVER_USER]).output().ok()?;
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        };
        for _ in 0..50 {
            if let (Some(uid), Some(gid)) = (id("-u"), id("-g")) {
                return (uid, gid);
            }
            let _ = Command::new("useradd")
                .args(USERADD)
                .arg(SERVER_USER)
                .output();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL refuses to run as root, and `useradd --system {SERVER_USER}` failed")
    })
}

/// A new, empty directory for a server, that its user owns and can reach: under the temporary
/// directory, or /tmp when that is closed to others (as root) or too long a path for the Unix
/// socket in it (at most 107 bytes).
fn private_dir(as_root: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let open = |dir: &Path| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 1 != 0);
    let fits =
        |base: &PathBuf| base.as_os_str().len() <= 60 && (!as_root || base.ancestors().all(open));
    let base = Some(std::env::temp_dir())
        .filter(fits)
        .unwrap_or_else(|| "/tmp".into());
    assert!(
        fits(&base),
        "{} must be open to others (o+x) for PostgreSQL",
        base.display()
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("{PREFIX}{}-{count}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if as_root {
        let (uid, gid) = server_user_ids();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {SERVER_USER}: {e}", dir.display()));
    }
    dir
}

/// Stops and removes the servers of test processes that died (killed, say) before dropping
/// them: pg_ctl runs a server in the background, where it outlives its test.
fn sweep(bin: &Path, as_root: bool) {
    let mut bases = vec![std::env::temp_dir(), PathBuf::from("/tmp")];
    bases.dedup();
    for entry in bases.iter().flat_map(std::fs::read_dir).flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next());
        let Some(pid) = pid.and_then(|pid| pid.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        // A test process killed may linger unreaped, a zombie (state Z, after its name).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, s)| s.trim_start().starts_with('Z'));
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = zombie
            || (unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH));
        if gone {
            // Dropping it stops its server and removes its directory.
            drop(PgServer {
                bin: bin.to_owned(),
                dir: entry.path(),
                port: 0,
                as_root,
            });
        }
    }
}
