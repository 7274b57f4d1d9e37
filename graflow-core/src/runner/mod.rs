//! The runner: what a process of this binary does when a handler started it to run one task
//! (the "process" handler's child, the program inside a "docker" container).
//!
//! [`init`] (the first line of `main`, or `#[graflow::main]`) checks for [`RUNNER_ENV`]; when it
//! is set, the process answers one [`Invocation`] on its protocol stream and exits, without
//! ever running the rest of `main`. Test binaries, whose `main` is the test harness's, opt in
//! with [`enable_test_runner!`](crate::enable_test_runner): the handler then starts the binary
//! with the harness arguments that select that one entry point.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

mod ask;

use crate::run::Asker;
use ask::{PipeAsker, Refuse, Streams};
use std::sync::{Arc, Mutex, PoisonError};

use crate::channel::Channel;
use crate::definition::{AttemptError, TaskDef, definitions, panic_message};
use crate::graph::Task;
use crate::program::ProgramMode;
use crate::remote::{build_id, outcome_of, runner_failure};
use crate::run::ExecutionContext;
use crate::run::{RunError, TaskHandler};
use crate::value::Value;
use graflow_protocol::frame::rejection;
use graflow_protocol::{
    Invocation, Limits, Outcome, PROTOCOL_VERSION, READY, RUNNER_ENV, RUNNER_PARENT_ENV,
    SERVE_MODE, TASK_END_MARKER,
};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Call first in `main` (or use `#[graflow::main]`). In a process started by the "process" or
/// "docker" handler it runs the one task it was sent and exits the process, so the rest of
/// `main` never runs there. Otherwise it reads the program's `--graflow-*` flags (and only
/// those: see the README's *Program flags*): `--graflow-help` prints them and exits, a
/// mistake in one is a usage error (exit 64), and a mode a backend registers (a Redis worker,
/// `--graflow-worker URL`) runs to its end and exits.
pub fn init() {
    INITIALISED.store(true, Ordering::SeqCst);
    if is_runner() {
        let warm = std::env::var_os(RUNNER_ENV).is_some_and(|mode| mode == SERVE_MODE);
        SERVING.store(true, Ordering::SeqCst);
        std::process::exit(if warm { serve_many() } else { serve() });
    }
    crate::program::read_flags();
    for mode in inventory::iter::<ProgramMode> {
        if let Some(code) = (mode.enter)() {
            std::process::exit(code);
        }
    }
}

/// Whether this process was started as a task runner: [`RUNNER_ENV`] is set and, when the
/// starter named itself ([`RUNNER_PARENT_ENV`]), this process is the one it started (not a
/// program the task started, which inherits the environment).
pub fn is_runner() -> bool {
    SERVING.load(Ordering::SeqCst)
        || (std::env::var_os(RUNNER_ENV).is_some()
            && std::env::var(RUNNER_PARENT_ENV)
                .ok()
                .is_none_or(|parent| started_by(&parent)))
}

/// Whether `parent` ([`RUNNER_PARENT_ENV`]) names the process that started this one.
fn started_by(parent: &str) -> bool {
    let ppid = std::os::unix::process::parent_id();
    if parent == "container" {
        // The container's first process, or the first under its init (docker-init, tini).
        let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        let init = init.trim();
        return std::process::id() == 1
            || (ppid == 1
                && (init == "docker-init"
                    || init.starts_with("tini")
                    || init == "dumb-init"
                    || init == "catatonit"));
    }
    parent.parse::<u32>().is_ok_and(|pid| pid == ppid)
}

/// Whether this process has exactly one thread now (Linux: `/proc/self/status`): then no
/// other thread can read the environment while it is changed, and changing it is sound.
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

/// Set once this process serves an invocation (its environment no longer says so).
static SERVING: AtomicBool = AtomicBool::new(false);

/// Refuses to run workflows in a runner process whose program did not call [`init`]: its
/// `main` would otherwise start the whole workflow again in every child.
pub(crate) fn uninitialised_runner() -> bool {
    is_runner() && !INITIALISED.load(Ordering::SeqCst)
}

/// Marks a test binary's runner entry point (registered by `enable_test_runner!`).
#[doc(hidden)]
#[derive(Debug)]
pub struct TestRunnerEntry {
    pub module: &'static str,
}

inventory::collect!(TestRunnerEntry);

/// Lets the "process" and "docker" handlers run tasks from an integration test binary, whose
/// `main` is the test harness's: put `graflow::enable_test_runner!();` at the root of the test
/// file. It adds a test named `__graflow_test_runner` that calls [`init`]; a runner child is
/// this binary started with harness arguments that select only that test.
#[macro_export]
macro_rules! enable_test_runner {
    () => {
        #[test]
        fn __graflow_test_runner() {
            $crate::init();
        }

        $crate::__private::inventory::submit! {
            $crate::__private::TestRunnerEntry { module: ::core::module_path!() }
        }
    };
}

#[doc(hidden)]
/// The program and arguments that start this binary as a runner: the executable itself, plus
/// the harness arguments in a test binary that called `enable_test_runner!`.
pub fn runner_command() -> std::io::Result<(PathBuf, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let args = match inventory::iter::<TestRunnerEntry>.into_iter().next() {
        Some(entry) => {
            let name = match entry.module.split_once("::") {
                Some((_, rest)) => format!("{rest}::__graflow_test_runner"),
                None => "__graflow_test_runner".to_owned(),
            };
            [
                name.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "--quiet",
            ]
            .map(str::to_owned)
            .to_vec()
        }
        None => Vec::new(),
    };
    Ok((exe, args))
}

/// Sets the runner up (protocol streams, subreaper, environment) and announces it with READY;
/// the protocol output and input, or the exit code when that fails.
fn start_serving() -> Result<(std::fs::File, std::fs::File), i32> {
    let _ = std::io::stdout().flush();
    let (mut out, input) = match protocol_streams() {
        Ok(streams) => streams,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "graflow runner: cannot set up the protocol streams: {e}"
            );
            return Err(70);
        }
    };
    // Whatever the task starts stays in this process's tree, to be stopped with the task.
    crate::descendants::become_subreaper();
    // Programs the task starts are not runners: they fail the parent check (a starter that
    // names itself), and, in a process with one thread, the variable is also removed.
    if single_threaded() {
        // SAFETY: this process has one thread (checked just now), so no other thread can
        // read the environment while it changes, nor start meanwhile.
        unsafe { std::env::remove_var(RUNNER_ENV) };
    }
    if out.write_all(READY).and_then(|()| out.flush()).is_err() {
        return Err(71);
    }
    Ok((out, input))
}

/// How large an invocation a runner reads: the engine is trusted here (its channel snapshot
/// may have many keys).
fn invocation_limits() -> Limits {
    Limits::default()
        .with_max_frame(1 << 40)
        .with_max_head(1 << 30)
}

/// Answers one invocation; returns the process's exit code.
fn serve() -> i32 {
    let (out, input) = match start_serving() {
        Ok(streams) => streams,
        Err(code) => return code,
    };
    let fd = input.as_raw_fd();
    let mut input = std::io::BufReader::new(input);
    let outcome = match Invocation::read_from(&mut input, &invocation_limits()) {
        Ok(invocation) => {
            let nonce = invocation.nonce;
            if let Err(code) = exit_when_orphaned(fd) {
                return code;
            }
            let streams = Arc::new(Streams {
                out: Mutex::new(Box::new(out)),
                input: Mutex::new(input),
            });
            let asker = PipeAsker {
                streams: streams.clone(),
            };
            let outcome = match check(&invocation) {
                Ok(def) => match task_runtime() {
                    Ok(runtime) => {
                        let outcome = run(&runtime, def, invocation, Arc::new(asker));
                        runtime.shutdown_background();
                        outcome
                    }
                    Err(error) => runner_failure(nonce, &error, 0),
                },
                Err(reason) => rejection(nonce, build_id(), reason),
            };
            (outcome, streams)
        }
        Err(reason) => {
            let outcome = rejection(0, build_id(), format!("unreadable invocation: {reason}"));
            let streams = Arc::new(Streams {
                out: Mutex::new(Box::new(out)),
                input: Mutex::new(input),
            });
            (outcome, streams)
        }
    };
    let (outcome, streams) = outcome;
    // The task is over: nothing it started outlives it.
    crate::descendants::kill_descendants(std::process::id() as libc::pid_t);
    let mut out = streams.out.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut *out);
    match outcome.write_to(&mut out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "graflow runner: {e}");
            71
        }
    }
}

/// Moves the protocol off the standard streams: the original stdout and stdin get
/// close-on-exec descriptors of their own (so no program the task starts inherits them), file
/// descriptor 1 becomes stderr (whatever the task prints cannot corrupt the protocol) and 0
/// becomes `/dev/null` (a task that reads stdin gets end of file).
fn protocol_streams() -> std::io::Result<(std::fs::File, std::fs::File)> {
    fn check(result: libc::c_int) -> std::io::Result<libc::c_int> {
        if result < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(result)
        }
    }
    // SAFETY: plain descriptor operations on this process's own standard streams; every new
    // descriptor is owned by exactly one File below.
    unsafe {
        let out = check(libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3))?;
        let input = check(libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3))?;
        let out = std::fs::File::from_raw_fd(out);
        let input = std::fs::File::from_raw_fd(input);
        check(libc::dup2(2, 1))?;
        let null = std::fs::File::open("/dev/null")?;
        check(libc::dup2(null.as_raw_fd(), 0))?;
        Ok((out, input))
    }
}

/// The handler that started this runner keeps its input open until it has the outcome; when
/// the input closes first, that handler is gone (its process died, its future was dropped), and
/// nobody will read the outcome: stop the task, and every process it started, at once. The
/// input is watched for its end without being read: the task's questions read their replies
/// from it.
fn exit_when_orphaned(fd: std::os::fd::RawFd) -> Result<(), i32> {
    static BUSY: AtomicBool = AtomicBool::new(true);
    let watcher = std::thread::Builder::new()
        .name("graflow-runner-input".to_owned())
        .spawn(move || watch_input(fd, &BUSY));
    match watcher {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "graflow runner: cannot watch the handler: {e}"
            );
            Err(70)
        }
    }
}

/// The handler went away while a task ran: stop the task, every process it started, and this
/// runner.
fn orphaned() -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "graflow runner: the handler closed its side before the task finished; stopping the task"
    );
    crate::descendants::kill_descendants(std::process::id() as libc::pid_t);
    // SAFETY: signals and exit; nothing of this process is used afterwards.
    unsafe {
        // As a process-group leader (the "process" handler starts each runner in a group of its
        // own; a container's first process is one), take the task's children too.
        if libc::getpgrp() == libc::getpid() {
            libc::kill(0, libc::SIGKILL);
        }
        libc::_exit(ORPHANED_EXIT_CODE)
    }
}

/// A warm runner (`GRAFLOW_RUNNER=serve`): answers invocations one after another on the same
/// streams, each outcome right after its invocation, until its input ends (then it exits with
/// 0); returns the exit code. While a task runs, a watcher thread polls the input for its end
/// (without reading it): the handler is gone, and the task and the runner are stopped as a
/// one-shot runner's are ([`orphaned`]).
fn serve_many() -> i32 {
    use std::io::BufRead;
    let (out, input) = match start_serving() {
        Ok(streams) => streams,
        Err(code) => return code,
    };
    let busy = std::sync::Arc::new(AtomicBool::new(false));
    let fd = input.as_raw_fd();
    let watched = busy.clone();
    let watcher = match std::thread::Builder::new()
        .name("graflow-runner-input".to_owned())
        .spawn(move || watch_input(fd, &watched))
    {
        Ok(watcher) => watcher,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "graflow runner: cannot watch the input: {e}"
            );
            return 70;
        }
    };
    let streams = Arc::new(Streams {
        out: Mutex::new(Box::new(std::io::BufWriter::with_capacity(1 << 16, out))),
        input: Mutex::new(std::io::BufReader::with_capacity(1 << 16, input)),
    });
    let asker: Arc<dyn Asker> = Arc::new(Refuse(
        "a task on a warm runner (reuse = true) cannot ask a person yet: drop reuse for this task",
    ));
    let limits = invocation_limits();
    let mut runtime: Option<tokio::runtime::Runtime> = None;
    loop {
        let next = {
            let mut input = streams.input.lock().unwrap_or_else(PoisonError::into_inner);
            match input.fill_buf() {
                Ok([]) => return 0,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return 0,
            }
            Invocation::read_from(&mut *input, &limits)
        };
        busy.store(true, Ordering::SeqCst);
        watcher.thread().unpark();
        let (outcome, last) = match next {
            Ok(invocation) => {
                let nonce = invocation.nonce;
                let outcome = match check(&invocation) {
                    Ok(def) => match runtime.take().map_or_else(task_runtime, Ok) {
                        Ok(ready) => {
                            let outcome = run(&ready, def, invocation, asker.clone());
                            // What a task spawned ends with it: a runtime left with live tasks
                            // is shut down (the next task gets a new one).
                            if ready.metrics().num_alive_tasks() == 0 {
                                runtime = Some(ready);
                            } else {
                                ready.shutdown_background();
                            }
                            outcome
                        }
                        Err(error) => runner_failure(nonce, &error, 0),
                    },
                    Err(reason) => rejection(nonce, build_id(), reason),
                };
                (outcome, false)
            }
            // The stream is out of step: answer, then stop.
            Err(reason) => (
                rejection(0, build_id(), format!("unreadable invocation: {reason}")),
                true,
            ),
        };
        // The task is over: nothing it started outlives it, nor waits for the next one (and
        // what it left, killed or exited, is reaped: zombies would fill a pids limit).
        crate::descendants::kill_own_descendants();
        crate::descendants::reap_children();
        // Its last output lines, then the end of its lines on the log stream (§9), then the
        // outcome.
        let _ = std::io::stdout().flush();
        let _ = writeln!(std::io::stderr(), "{TASK_END_MARKER}{:016x}", outcome.nonce);
        let written = {
            let mut out = streams.out.lock().unwrap_or_else(PoisonError::into_inner);
            outcome.write_to(&mut *out)
        };
        if let Err(e) = written {
            let _ = writeln!(std::io::stderr(), "graflow runner: {e}");
            return 71;
        }
        busy.store(false, Ordering::SeqCst);
        if last {
            return 0;
        }
    }
}

/// Watches a warm runner's input while a task runs: its end (a hang-up, polled for without
/// reading, so the serving loop keeps every byte) means the handler is gone.
fn watch_input(fd: std::os::fd::RawFd, busy: &AtomicBool) {
    loop {
        if !busy.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_secs(1));
            continue;
        }
        // Not POLLIN: poll reports the hang-up and errors, not pending bytes.
        let mut poll = libc::pollfd {
            fd,
            // A socket's half-close; a pipe reports its hang-up unasked.
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the descriptor stays open for the process's life.
        let ready = unsafe { libc::poll(&mut poll, 1, 200) };
        if ready > 0
            && poll.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL)
                != 0
        {
            if busy.load(Ordering::SeqCst) {
                orphaned();
            }
            // Between tasks the serving loop reads the end itself.
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }
}

/// Exit code of a runner whose handler went away.
pub(crate) const ORPHANED_EXIT_CODE: i32 = 75;

/// The task an invocation names, if this runner may run it.
fn check(invocation: &Invocation) -> std::result::Result<&'static TaskDef, String> {
    if invocation.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} received, this runner speaks {PROTOCOL_VERSION}",
            invocation.protocol
        ));
    }
    if invocation.build_id != build_id() {
        return Err(format!(
            "this runner is another build of the program (build id {}, the sender's {}); rebuild and run the same binary on both sides",
            build_id(),
            invocation.build_id
        ));
    }
    definitions()
        .find(|d| d.name == invocation.task)
        .ok_or_else(|| format!("this binary has no task `{}`", invocation.task))
}

/// An invoked task, ready to run in this process as a one-node workflow whose inputs are bound.
struct Prepared {
    nonce: u64,
    ctx: ExecutionContext,
    before: HashMap<String, Value>,
}

fn prepare(
    def: &'static TaskDef,
    invocation: Invocation,
    backend_options: &[&str],
) -> Result<Prepared, Box<Outcome>> {
    let nonce = invocation.nonce;
    let mut task = Task::from_def(def)
        .with_id(invocation.task_id)
        .without_config(backend_options);
    // The sender enforces the timeout (and stops this attempt); here the body just runs.
    task = task.with_timeout(None);
    task.set_inputs(
        invocation
            .inputs
            .into_iter()
            .map(|(name, encoded)| (name, Value::from_encoded(encoded)))
            .collect(),
    );
    let channel = Channel::new();
    for (key, encoded) in invocation.channel {
        channel.set_value(key, Value::from_encoded(encoded));
    }
    let before: HashMap<String, Value> = channel.entries().into_iter().collect();
    let upstream = invocation
        .upstream
        .into_iter()
        .map(|(id, encoded)| (id, Value::from_encoded(encoded)))
        .collect();
    match ExecutionContext::standalone(
        invocation.workflow,
        invocation.run_id,
        task,
        channel,
        Some(upstream),
        invocation.attempt,
        invocation.cycle.max(1),
    ) {
        Ok(ctx) => Ok(Prepared { nonce, ctx, before }),
        Err(error) => Err(Box::new(runner_failure(nonce, &error, 0))),
    }
}

/// The outcome of a prepared attempt that ended with `result`: the result and the channel keys
/// the task set or deleted.
fn finish(prepared: &Prepared, result: Result<Value, AttemptError>, elapsed: Duration) -> Outcome {
    let Prepared { nonce, ctx, before } = prepared;
    let nonce = *nonce;
    let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    // What the task wrote (through its TaskChannel), and, from a handler that wrote the
    // channel itself, what changed in it.
    let mut writes = Vec::new();
    for (key, write) in ctx.take_channel_writes() {
        match write.map(|value| value.encode()).transpose() {
            Ok(encoded) => writes.push((key, encoded)),
            Err(error) => return runner_failure(nonce, &error, elapsed_ns),
        }
    }
    let after = ctx.channel().entries();
    for (key, value) in &after {
        if before.get(key).is_none_or(|old| !old.same(value))
            && !writes.iter().any(|(k, _)| k == key)
        {
            match value.encode() {
                Ok(encoded) => writes.push((key.clone(), Some(encoded))),
                Err(error) => return runner_failure(nonce, &error, elapsed_ns),
            }
        }
    }
    for key in before.keys() {
        if !after.iter().any(|(k, _)| k == key) && !writes.iter().any(|(k, _)| k == key) {
            writes.push((key.clone(), None));
        }
    }
    let control = match ctx.control_to_wire() {
        Ok(control) => control,
        Err(error) => return runner_failure(nonce, &error, elapsed_ns),
    };
    outcome_of(nonce, result, writes, control, elapsed_ns)
}

/// The runtime a runner's tasks run on (one per runner: a warm runner keeps it).
fn task_runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)
}

/// Runs the invoked task in this process.
fn run(
    runtime: &tokio::runtime::Runtime,
    def: &'static TaskDef,
    invocation: Invocation,
    asker: Arc<dyn Asker>,
) -> Outcome {
    let prepared = match prepare(def, invocation, &[]) {
        Ok(prepared) => prepared,
        Err(outcome) => return *outcome,
    };
    let _ = prepared.ctx.run.asker.set(asker);
    let started = Instant::now();
    let result = runtime.block_on(prepared.ctx.task().run(&prepared.ctx));
    finish(&prepared, result, started.elapsed())
}

/// Answers one invocation in this process, through `handler` (the worker side of a queue
/// backend: a worker that took an invocation off its queue runs it here, in-process with
/// [`DirectHandler`](crate::DirectHandler) or through any other handler registered in it).
///
/// The invocation is checked first (protocol version, build id, a task of this binary): a
/// mismatch is answered with a rejection naming both sides. `backend_options` are the task
/// options meant for the queue backend (e.g. `queue`), removed from the task's configuration
/// before `handler` validates it (`validate_task`; a problem fails the attempt with its
/// message) and runs it. A panic in the task or the handler fails only this attempt. Dropping the future stops the attempt (as the handler stops it: an
/// async body at its next `.await`, a child process or container killed). The outcome is
/// ready to be written back ([`Outcome::write_to`]).
pub async fn answer(
    invocation: Invocation,
    handler: &dyn TaskHandler,
    backend_options: &[&str],
) -> Outcome {
    answer_asking(invocation, handler, backend_options, None).await
}

/// [`answer`], with the way back to the engine for the task's questions for a person
/// (`TaskContext::approval` and the like): `asker` carries them to the engine that owns the
/// run (a queue worker sends them on its queue). Without one, a task that asks fails with
/// [`FeedbackError::Unavailable`](crate::feedback::FeedbackError::Unavailable).
pub async fn answer_asking(
    invocation: Invocation,
    handler: &dyn TaskHandler,
    backend_options: &[&str],
    asker: Option<Arc<dyn Asker>>,
) -> Outcome {
    let nonce = invocation.nonce;
    let def = match check(&invocation) {
        Ok(def) => def,
        Err(reason) => return rejection(nonce, build_id(), reason),
    };
    let prepared = match prepare(def, invocation, backend_options) {
        Ok(prepared) => prepared,
        Err(outcome) => return *outcome,
    };
    if let Some(asker) = asker {
        let _ = prepared.ctx.run.asker.set(asker);
    }
    let started = Instant::now();
    let task = prepared.ctx.task();
    let valid = std::panic::catch_unwind(AssertUnwindSafe(|| handler.validate_task(task)));
    match valid {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => return runner_failure(nonce, &problem, 0),
        Err(payload) => {
            let error = AttemptError::Panicked {
                task: task.id().to_owned(),
                message: format!("validate_task panicked: {}", panic_message(&*payload)),
            };
            return runner_failure(nonce, &error, 0);
        }
    }
    let result = AssertUnwindSafe(handler.execute_task(task, &prepared.ctx))
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| {
            Err(AttemptError::Panicked {
                task: task.id().to_owned(),
                message: panic_message(&*payload),
            })
        });
    finish(&prepared, result, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(protocol: u32, build: &str) -> Invocation {
        Invocation {
            protocol,
            build_id: build.to_owned(),
            nonce: 1,
            task: "nowhere::nothing".to_owned(),
            task_id: "nothing".to_owned(),
            workflow: "w".to_owned(),
            run_id: "r".to_owned(),
            attempt: 1,
            cycle: 1,
            inputs: Vec::new(),
            channel: Vec::new(),
            upstream: Vec::new(),
        }
    }

    #[test]
    fn a_runner_rejects_other_protocols_builds_and_unknown_tasks() {
        let reason = check(&invocation(PROTOCOL_VERSION + 1, build_id())).unwrap_err();
        assert!(
            reason.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1)),
            "{reason}"
        );
        let reason = check(&invocation(PROTOCOL_VERSION, "0123")).unwrap_err();
        assert!(reason.contains("another build of the program"), "{reason}");
        assert!(reason.contains("the sender's 0123"), "{reason}");
        let reason = check(&invocation(PROTOCOL_VERSION, build_id())).unwrap_err();
        assert!(
            reason.contains("this binary has no task `nowhere::nothing`"),
            "{reason}"
        );
    }
}
