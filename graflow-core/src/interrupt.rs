//! Interruption: SIGINT and SIGTERM during a run, and the clean-up work that must finish before
//! the program may exit.
//!
//! While a run is in progress, the engine catches each of SIGINT and SIGTERM that the program
//! left at its default action (no handler of its own, not ignored). Each signal is judged on its
//! own: a program started in the background by a shell (`program &`) inherits SIGINT ignored,
//! and still gets the clean-up when SIGTERM ends it. A caught signal cancels
//! every run in progress (their futures are dropped, so child process groups are killed and
//! containers removed), waits up to [`CLEANUP_DEADLINE`] for that clean-up to finish, restores
//! the default action and raises the signal again: the program ends as the signal would have
//! ended it, only after cleaning up. A second signal ends the program at once, and so does the
//! first one if the clean-up has not ended it within [`CLEANUP_DEADLINE`] and 5 s more (an
//! async body that blocks its executor can keep a run from noticing the cancellation). When the
//! last run ends the default action is restored.
//!
//! A signal the program handles itself (including through `tokio::signal`) or ignores is left
//! alone: the program decides what it means, and cancels a run by dropping its future.
//! [`WorkflowEngine::with_signal_handling(false)`](crate::WorkflowEngine::with_signal_handling)
//! turns the engine's handling off.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What a caught signal stops before the program ends, besides the run: registered by layers
/// above this one (the warm-runner pools), each once.
static AT_INTERRUPT: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Registers `stop` to run when a caught SIGINT or SIGTERM ends the program (once per function).
pub(crate) fn at_interrupt(stop: fn()) {
    let mut stops = AT_INTERRUPT.lock().unwrap_or_else(PoisonError::into_inner);
    if !stops.contains(&stop) {
        stops.push(stop);
    }
}

/// How long a caught signal waits for clean-up before the program ends.
pub(crate) const CLEANUP_DEADLINE: Duration = Duration::from_secs(20);

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

// ----- clean-up work that must finish before exit -----

static PENDING: Mutex<usize> = Mutex::new(0);
static SETTLED: Condvar = Condvar::new();

/// Held while clean-up work (removing a container, say) runs outside any future; the program
/// waits for every such guard before a caught signal ends it. Handlers that clean up on a
/// thread of their own take one with [`cleanup_started`].
#[must_use = "the clean-up counts as finished when the guard is dropped"]
#[derive(Debug)]
pub struct CleanupGuard(());

/// Counts a clean-up as running until the returned guard is dropped.
pub fn cleanup_started() -> CleanupGuard {
    *PENDING.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    CleanupGuard(())
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
        *pending = pending.saturating_sub(1);
        SETTLED.notify_all();
    }
}

/// Waits until no clean-up is running, or `timeout` passed; whether all finished.
pub fn wait_for_cleanups(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    while *pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        pending = SETTLED
            .wait_timeout(pending, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

// ----- catching SIGINT and SIGTERM during runs -----

/// Runs in progress that installed the handlers.
static ACTIVE: Mutex<usize> = Mutex::new(0);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

fn caught() -> &'static watch::Sender<libc::c_int> {
    static CAUGHT: OnceLock<watch::Sender<libc::c_int>> = OnceLock::new();
    CAUGHT.get_or_init(|| {
        let (tx, _) = watch::channel(0);
        let mut fds = [-1; 2];
        // SAFETY: creates a pipe; both ends are owned here for the life of the process. The
        // write end is non-blocking: the handler must never block.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0
            && unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) } == 0
        {
            PIPE_WRITE.store(fds[1], Ordering::SeqCst);
            let read_end = fds[0];
            let sender = tx.clone();
            let spawned = std::thread::Builder::new()
                .name("graflow-signals".to_owned())
                .spawn(move || {
                    let mut byte = 0u8;
                    loop {
                        // SAFETY: reads one byte into a local from a descriptor this thread owns.
                        let n = unsafe { libc::read(read_end, (&raw mut byte).cast(), 1) };
                        if n == 1 {
                            let signal = libc::c_int::from(byte);
                            // A signal that reached us only through a handler the program
                            // installed later is the program's.
                            if current_action(signal) != Some(ours()) {
                                continue;
                            }
                            if CAUGHT_ONE.swap(true, Ordering::SeqCst) {
                                // A second signal: end now, clean-up or not.
                                end_by(signal);
                            }
                            // Should the run not get to its clean-up (an async body blocking
                            // its executor), the program still ends.
                            let _ = std::thread::Builder::new()
                                .name("graflow-signal-deadline".to_owned())
                                .spawn(move || {
                                    std::thread::sleep(CLEANUP_DEADLINE + Duration::from_secs(5));
                                    end_by(signal);
                                });
                            sender.send_replace(signal);
                        } else if n < 0
                            && std::io::Error::last_os_error().kind()
                                == std::io::ErrorKind::Interrupted
                        {
                            continue;
                        } else {
                            break;
                        }
                    }
                });
            if spawned.is_err() {
                PIPE_WRITE.store(-1, Ordering::SeqCst);
            }
        }
        tx
    })
}

/// Whether a signal was caught (the first cancels the runs; a second ends the program).
static CAUGHT_ONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ends the program as `signal` would have: default action, raised again.
fn end_by(signal: libc::c_int) -> ! {
    set_handler(signal, libc::SIG_DFL);
    // SAFETY: re-raises the signal with its default action, which ends the process.
    unsafe {
        libc::raise(signal);
    }
    std::process::exit(128 + signal);
}

extern "C" fn on_signal(signal: libc::c_int) {
    // SAFETY: only async-signal-safe calls (write to a non-blocking pipe); errno is restored.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = PIPE_WRITE.load(Ordering::SeqCst);
        if fd >= 0 {
            let byte = signal as u8;
            libc::write(fd, (&raw const byte).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

fn current_action(signal: libc::c_int) -> Option<libc::sighandler_t> {
    // SAFETY: queries the current action into a zeroed local.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(signal, std::ptr::null(), &mut old) == 0).then_some(old.sa_sigaction)
    }
}

fn ours() -> libc::sighandler_t {
    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
}

fn disposition_is_default(signal: libc::c_int) -> bool {
    current_action(signal) == Some(libc::SIG_DFL)
}

/// Puts back the default action where the engine's handler is still installed (a handler the
/// program installed meanwhile, e.g. through `tokio::signal`, is its own and stays).
fn restore_defaults() {
    for signal in SIGNALS {
        if current_action(signal) == Some(ours()) {
            set_handler(signal, libc::SIG_DFL);
        }
    }
}

fn set_handler(signal: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: installs a plain handler (or SIG_DFL) with an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Catching SIGINT/SIGTERM for one run; `None` when the program handles signals itself.
pub(crate) struct RunSignals {
    receiver: watch::Receiver<libc::c_int>,
}

impl RunSignals {
    /// Starts catching, for a run, the signals the program left at their defaults (or that
    /// another run already catches); `None` if there is none.
    pub(crate) fn install() -> Option<RunSignals> {
        let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        if *active == 0 {
            let defaults: Vec<libc::c_int> = SIGNALS
                .into_iter()
                .filter(|&s| disposition_is_default(s))
                .collect();
            if defaults.is_empty() {
                return None;
            }
            let sender = caught();
            if PIPE_WRITE.load(Ordering::SeqCst) < 0 {
                return None;
            }
            sender.send_replace(0);
            for signal in defaults {
                set_handler(signal, ours());
            }
        }
        *active += 1;
        Some(RunSignals {
            receiver: caught().subscribe(),
        })
    }

    /// Resolves with the signal when one is caught. A signal that reached the engine's handler
    /// only through a handler the program installed later (which chains to the one it
    /// replaced, as `tokio::signal` does) is the program's to handle, and ignored here.
    pub(crate) async fn caught(&mut self) -> libc::c_int {
        loop {
            let signal = *self.receiver.borrow_and_update();
            if signal != 0 && current_action(signal) == Some(ours()) {
                return signal;
            }
            if self.receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// After the run was cancelled by `signal`: waits for the other runs and every clean-up,
    /// then ends the program with the signal's default action. The handlers are back at their
    /// defaults once no run catches them, so a second signal during the clean-up ends the
    /// program at once.
    pub(crate) async fn finish_interrupted(self, signal: libc::c_int) -> ! {
        drop(self);
        let deadline = Instant::now() + CLEANUP_DEADLINE;
        while *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) > 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What outlives runs (warm runners) is stopped too; removals join the clean-ups below.
        let stops: Vec<fn()> = AT_INTERRUPT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for stop in stops {
            stop();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let done = tokio::task::spawn_blocking(move || wait_for_cleanups(left))
            .await
            .unwrap_or(false);
        tracing::warn!(target: "graflow::engine", signal, cleaned_up = done, "run interrupted by a signal; exiting as the signal asks");
        restore_defaults();
        end_by(signal)
    }
}

impl Drop for RunSignals {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
        *active = active.saturating_sub(1);
        if *active == 0 {
            restore_defaults();
        }
    }
}
