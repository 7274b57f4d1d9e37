//! The CPU limit: synchronous bodies too long to run inline run on Tokio's blocking pool, at
//! most `limit` at once, in the order they asked.
//!
//! The queue is work-conserving: a blocking thread that finishes a body takes the next queued
//! one at once, on the same thread, with no wake-up in between. (A semaphore handing its
//! permit to a waiting task, which then asked the blocking pool for a thread, cost two
//! wake-ups per body: on a loaded 2-core machine each could wait out another thread's time
//! slice, and 64 tasks of 10 ms ran at 77–93% of the cores instead of 92–96%.)

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures on blocking threads, at most `limit` at once.
pub(crate) struct CpuPool {
    limit: usize,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Job>,
    /// Blocking threads currently taking jobs from the queue (at most `limit`).
    runners: usize,
}

impl CpuPool {
    /// A pool of at most `limit` (at least 1) busy threads; it starts none until asked.
    pub(crate) fn new(limit: usize) -> Arc<CpuPool> {
        Arc::new(CpuPool {
            limit: limit.max(1),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                runners: 0,
            }),
        })
    }

    /// Queues `work`; its result arrives through the receiver. Work whose receiver was dropped
    /// before a thread took it (a cancelled or timed-out attempt) never runs. A panic in
    /// `work` drops the sender: the receiver reports an error and the pool goes on.
    pub(crate) fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !sender.is_closed() {
                let _ = sender.send(work());
            }
        });
        let start_runner = {
            let mut state = self.lock();
            state.queue.push_back(job);
            let start = state.runners < self.limit;
            if start {
                state.runners += 1;
            }
            start
        };
        if start_runner {
            Runner(Some(Arc::clone(self))).start();
        }
        receiver
    }

    /// Takes jobs until the queue is empty.
    fn drain(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                match state.queue.pop_front() {
                    Some(job) => job,
                    None => {
                        state.runners -= 1;
                        return;
                    }
                }
            };
            // The body's own panics are caught where it is called; this keeps the runner
            // count right whatever a job does.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One counted runner, not yet running: it drains the queue on a blocking thread. If Tokio
/// drops it unrun (its runtime is shutting down), it drains on a thread of its own instead: a
/// counted runner that never ran would leave the queued bodies waiting forever.
struct Runner(Option<Arc<CpuPool>>);

impl Runner {
    fn start(mut self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || self.run())),
            // Polled outside a Tokio runtime (a custom executor).
            Err(_) => {
                if let Some(pool) = self.0.take() {
                    drain_on_a_thread(pool);
                }
            }
        }
    }

    fn run(mut self) {
        if let Some(pool) = self.0.take() {
            pool.drain();
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            drain_on_a_thread(pool);
        }
    }
}

fn drain_on_a_thread(pool: Arc<CpuPool>) {
    let runner = Arc::clone(&pool);
    let spawned = std::thread::Builder::new()
        .name("graflow-cpu".to_owned())
        .spawn(move || runner.drain());
    if let Err(error) = spawned {
        // Not counted any more: the next body queued starts a runner again.
        pool.lock().runners -= 1;
        tracing::error!(target: "graflow::engine", %error, "no thread to run synchronous task bodies on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_limit_at_once_and_everything_queued() {
        let pool = CpuPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let receivers: Vec<_> = (0..16)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();
        let mut results = Vec::new();
        for receiver in receivers {
            results.push(receiver.await.expect("every job ran"));
        }
        assert_eq!(results, (0..16).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // A runner leaves once it finds the queue empty, just after sending its last result.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.lock().runners > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(
            pool.lock().runners,
            0,
            "the runners left when the queue was empty"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_receivers_skip_their_work_and_panics_fail_one_job() {
        let pool = CpuPool::new(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = pool.run(move || hold.recv().is_ok());
        let skipped = {
            let ran = ran.clone();
            pool.run(move || ran.fetch_add(1, Ordering::SeqCst))
        };
        drop(skipped);
        let panicked = pool.run(|| -> u8 { panic!("a job's panic") });
        let last = pool.run(|| 7u8);
        release.send(()).expect("the first job waits");
        assert!(first.await.expect("the first job ran"));
        assert!(panicked.await.is_err(), "a panicking job drops its sender");
        assert_eq!(last.await.expect("the pool went on after a panic"), 7);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "a job nobody waits for never ran"
        );
    }

    #[test]
    fn runs_outside_a_runtime_and_after_its_runtime_shut_down() {
        let pool = CpuPool::new(1);
        // No runtime at all: a thread of its own.
        assert_eq!(
            pool.run(|| 1u8).blocking_recv().expect("ran on a thread"),
            1
        );
        // A runtime that has shut down refuses blocking tasks: the runner drains elsewhere,
        // and the pool still runs what is queued afterwards.
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let handle = runtime.handle().clone();
        drop(runtime);
        let _entered = handle.enter();
        assert_eq!(
            pool.run(|| 2u8)
                .blocking_recv()
                .expect("ran although Tokio refused it"),
            2
        );
        assert_eq!(
            pool.run(|| 3u8).blocking_recv().expect("the pool goes on"),
            3
        );
    }
}
