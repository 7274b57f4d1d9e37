//! The flush at exit: a program that returns from `main` right after its run has its records
//! written first (up to [`EXIT_WAIT`]), so that nothing it was told is lost with the process.
//! A killed program's run stays `running` in the store until readers see it is `lost`.

use std::sync::Once;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::rec::Rec;
use super::writer::{live, warn};

/// How long the program's exit waits for its records to be written.
pub const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Registers the flush at exit, once per process.
pub(crate) fn arm() {
    static ARMED: Once = Once::new();
    ARMED.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds (it catches panics).
        let _ = unsafe { libc::atexit(at_exit) };
    });
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(flush_all);
}

/// Flushes every store of the process, each within what is left of [`EXIT_WAIT`].
pub(crate) fn flush_all() {
    let deadline = Instant::now() + EXIT_WAIT;
    let stores: Vec<_> = live()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    // A store that recorded nothing has nothing to write (and starting its writer now, with
    // the process's thread-locals going, would fail).
    for shared in stores.into_iter().filter(|s| s.started()) {
        // A store in trouble is tried once more (a busy file, a server back by now); the
        // attempt's own timeouts and this deadline bound the wait.
        let (tx, rx) = mpsc::channel();
        shared.push(
            Rec::Flush(Box::new(move |result| {
                let _ = tx.send(result);
            })),
            true,
        );
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(())) => {}
            Ok(Err(cause)) => warn(&format!(
                "run store {}: the last records of this program were not written: {cause}",
                shared.name
            )),
            Err(_) => warn(&format!(
                "run store {}: the last records of this program were not written within {} s",
                shared.name,
                EXIT_WAIT.as_secs()
            )),
        }
    }
    // Feedback notifications under way are sent too, in what is left of the wait.
    crate::notify::wait_idle(deadline);
}
