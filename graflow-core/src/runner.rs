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
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::channel::Channel;
use crate::context::ExecutionContext;
use crate::error::{Error, Result};
use crate::protocol::{
    Invocation, Outcome, PROTOCOL_VERSION, READY, RUNNER_ENV, build_id, read_frame,
};
use crate::task::{Task, task_named};
use crate::value::Value;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Call first in `main` (or use `#[graflow::main]`). In a normal run it only records that it
/// was called. In a process started by the "process" or "docker" handler it runs the one task
/// it was sent and exits the process, so the rest of `main` never runs there.
pub fn init() {
    INITIALISED.store(true, Ordering::SeqCst);
    if is_runner() {
        std::process::exit(serve());
    }
}

/// Whether this process was started as a task runner.
pub fn is_runner() -> bool {
    std::env::var_os(RUNNER_ENV).is_some()
}

/// Refuses to run workflows in a runner process whose program did not call [`init`]: its
/// `main` would otherwise start the whole workflow again in every child.
pub(crate) fn check_initialised() -> Result<()> {
    if is_runner() && !INITIALISED.load(Ordering::SeqCst) {
        return Err(Error::RunnerNotInitialised);
    }
    Ok(())
}

/// Marks a test binary's runner entry point (registered by `enable_test_runner!`).
#[doc(hidden)]
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

/// Answers one invocation; returns the process's exit code.
fn serve() -> i32 {
    let _ = std::io::stdout().flush();
    // The protocol keeps the original stdout; whatever the task prints goes to stderr.
    // SAFETY: plain descriptor duplication on this process's own standard streams.
    let protocol_fd = unsafe { libc::dup(1) };
    if protocol_fd < 0 || unsafe { libc::dup2(2, 1) } < 0 {
        let _ = writeln!(
            std::io::stderr(),
            "graflow runner: cannot set up the protocol stream: {}",
            std::io::Error::last_os_error()
        );
        return 70;
    }
    // SAFETY: `protocol_fd` is a fresh descriptor that nothing else owns.
    let mut out = unsafe { std::fs::File::from_raw_fd(protocol_fd) };
    if out.write_all(READY).and_then(|()| out.flush()).is_err() {
        return 71;
    }
    let outcome = match read_frame::<Invocation>(&mut std::io::stdin().lock(), b"GFINVOK1") {
        Ok(invocation) => {
            exit_when_orphaned();
            run(invocation)
        }
        Err(reason) => Outcome::rejected(format!("unreadable invocation: {reason}")),
    };
    let frame = outcome
        .to_frame()
        .or_else(|e| Outcome::rejected(format!("could not encode the outcome: {e}")).to_frame());
    match frame {
        Ok(frame) if out.write_all(&frame).and_then(|()| out.flush()).is_ok() => 0,
        _ => 71,
    }
}

/// The handler that started this runner keeps its stdin open until it has the outcome; when
/// stdin closes first, that handler is gone (its process died, its future was dropped), and
/// nobody will read the outcome: stop the task instead of running on as an orphan.
fn exit_when_orphaned() {
    let watcher = std::thread::Builder::new()
        .name("graflow-runner-stdin".to_owned())
        .spawn(|| {
            use std::io::Read;
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = writeln!(
                std::io::stderr(),
                "graflow runner: the handler closed stdin before the task finished; stopping"
            );
            std::process::exit(ORPHANED_EXIT_CODE);
        });
    if let Err(e) = watcher {
        let _ = writeln!(std::io::stderr(), "graflow runner: cannot watch stdin: {e}");
    }
}

/// Exit code of a runner whose handler went away.
pub const ORPHANED_EXIT_CODE: i32 = 75;

/// Runs the invoked task in this process, as a one-node workflow whose inputs are bound.
fn run(invocation: Invocation) -> Outcome {
    if invocation.protocol != PROTOCOL_VERSION {
        return Outcome::rejected(format!(
            "protocol version {} received, this runner speaks {PROTOCOL_VERSION}",
            invocation.protocol
        ));
    }
    if invocation.build_id != build_id() {
        return Outcome::rejected(format!(
            "this runner is another build of the program (build id {}, the sender's {}); rebuild and run the same binary on both sides",
            build_id(),
            invocation.build_id
        ));
    }
    let Some(def) = task_named(&invocation.task) else {
        return Outcome::rejected(format!("this binary has no task `{}`", invocation.task));
    };
    let mut task = Task::from_def(def).with_id(invocation.task_id);
    // The sender enforces the timeout (and kills this process); here the body just runs.
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
    let ctx = match ExecutionContext::standalone(
        invocation.workflow,
        invocation.run_id,
        task,
        channel,
        Some(upstream),
        invocation.attempt,
    ) {
        Ok(ctx) => ctx,
        Err(error) => return Outcome::from_result(Err(error), Vec::new(), 0),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Outcome::from_result(Err(Error::Runtime(e)), Vec::new(), 0),
    };
    let started = Instant::now();
    let result = runtime.block_on(ctx.task().run(&ctx));
    let elapsed_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    runtime.shutdown_background();

    let after = ctx.channel().entries();
    let mut writes = Vec::new();
    for (key, value) in &after {
        if before.get(key).is_none_or(|old| !old.same(value)) {
            match value.encode() {
                Ok(encoded) => writes.push((key.clone(), Some(encoded))),
                Err(error) => return Outcome::from_result(Err(error), Vec::new(), elapsed_ns),
            }
        }
    }
    for key in before.keys() {
        if !after.iter().any(|(k, _)| k == key) {
            writes.push((key.clone(), None));
        }
    }
    Outcome::from_result(result, writes, elapsed_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(protocol: u32, build: &str) -> Invocation {
        Invocation {
            protocol,
            build_id: build.to_owned(),
            task: "nowhere::nothing".to_owned(),
            task_id: "nothing".to_owned(),
            workflow: "w".to_owned(),
            run_id: "r".to_owned(),
            attempt: 1,
            inputs: Vec::new(),
            channel: Vec::new(),
            upstream: Vec::new(),
        }
    }

    fn rejection(outcome: Outcome) -> String {
        match outcome.result {
            Err(crate::protocol::Failure::Rejected { reason }) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_runner_rejects_other_protocols_builds_and_unknown_tasks() {
        let reason = rejection(run(invocation(PROTOCOL_VERSION + 1, build_id())));
        assert!(
            reason.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1)),
            "{reason}"
        );
        let reason = rejection(run(invocation(PROTOCOL_VERSION, "0123")));
        assert!(reason.contains("another build of the program"), "{reason}");
        assert!(reason.contains("the sender's 0123"), "{reason}");
        let reason = rejection(run(invocation(PROTOCOL_VERSION, build_id())));
        assert!(
            reason.contains("this binary has no task `nowhere::nothing`"),
            "{reason}"
        );
    }
}
