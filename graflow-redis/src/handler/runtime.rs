//! The handler's own I/O runtime: every Redis call of the handler runs on it, so a handler
//! works from any runtime; dropped, it gives pending cancellations up to 2 s to be sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The handler's own runtime, and how many cancellations of dropped attempts it still has to
/// send.
pub(super) struct IoRuntime(
    pub(super) Option<tokio::runtime::Runtime>,
    pub(super) Arc<AtomicUsize>,
);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        let Some(runtime) = self.0.take() else {
            return;
        };
        let cancels = self.1.clone();
        if cancels.load(Ordering::SeqCst) == 0 {
            runtime.shutdown_background();
            return;
        }
        // Attempts dropped just before the handler (a run cancelled, then its engine dropped)
        // still have their cancellation to send: give it up to 2 s on a thread of its own, so
        // that dropping the handler never blocks, not even inside async code.
        let spawned = std::thread::Builder::new()
            .name("graflow-redis-close".to_owned())
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(2);
                while cancels.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                runtime.shutdown_background();
            });
        if let Err(e) = spawned {
            tracing::warn!(target: "graflow::handlers", error = %e, "cannot wait for pending cancellations; they are dropped");
        }
    }
}

impl IoRuntime {
    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken when the handler is dropped"),
        }
    }
}
