//! The one background runtime: a process-wide, multi-thread Tokio runtime started on first
//! use, on which the blocking API runs (`engine.run()` drives its run on it, without building a
//! runtime per run) and work runs that must outlive any one run: the warm runners' I/O and
//! their idle reaper, a backend's detached clean-up (a container removed after its task's
//! future was dropped).
//!
//! It is never dropped (a runtime must not be dropped inside another runtime's context, and
//! one in a static never is), so nothing spawned on it is cut short by a run ending. Its
//! threads (one per core) are named `graflow-bg`; nothing may block on them: blocking work goes to
//! its blocking pool (`tokio::task::spawn_blocking`) or a thread of its own.

use std::sync::OnceLock;

/// How many worker threads the background runtime has: one per core (as Tokio's default), at
/// least 2, for the async tasks of blocking runs besides I/O and timers.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The background runtime, or why it could not start (kept: it is not retried).
fn runtime() -> &'static Result<tokio::runtime::Runtime, (std::io::ErrorKind, String)> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, (std::io::ErrorKind, String)>> =
        OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers())
            .thread_name("graflow-bg")
            .enable_all()
            .build()
            .map_err(|e| (e.kind(), e.to_string()))
    })
}

/// A handle on the background runtime, started on the first call; an error when it could not
/// start (the same error at every call). Never panics, from any thread, inside a runtime or not.
pub(crate) fn handle() -> Result<tokio::runtime::Handle, std::io::Error> {
    match runtime() {
        Ok(runtime) => Ok(runtime.handle().clone()),
        Err((kind, message)) => Err(std::io::Error::new(
            *kind,
            format!("cannot start graflow's background runtime: {message}"),
        )),
    }
}

/// The process-wide background runtime of the out-of-process machinery, for a backend's work
/// that must outlive the run that started it (a detached clean-up, a connection's reader): a
/// multi-thread Tokio runtime of one `graflow-bg` thread per core with I/O and timers, started on the
/// first call and never shut down. Spawn onto it with [`Handle::spawn`](tokio::runtime::Handle::spawn)
/// (from sync code too, a `Drop` for one); do not block its threads, and do not
/// [`block_on`](tokio::runtime::Handle::block_on) it from inside a runtime. Fails, with the
/// same error at every call, only when the runtime could not start.
///
/// ```
/// let handle = graflow_core::backend::background().expect("the background runtime");
/// let done = handle.spawn(async { 1 + 1 });
/// assert_eq!(handle.block_on(done).unwrap(), 2);
/// ```
pub fn background() -> Result<tokio::runtime::Handle, std::io::Error> {
    handle()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_runtime_serves_every_caller() {
        for handle in [super::handle().unwrap(), super::background().unwrap()] {
            let name = handle
                .block_on(handle.spawn(async { std::thread::current().name().map(str::to_owned) }))
                .unwrap();
            assert_eq!(name.as_deref(), Some("graflow-bg"));
        }
    }

    #[tokio::test]
    async fn it_is_reached_from_inside_another_runtime() {
        let handle = super::handle().unwrap();
        assert_eq!(handle.spawn(async { 7 }).await.unwrap(), 7);
    }
}
