//! The CPU limit: synchronous bodies too long to run inline run on Tokio's blocking pool, at
//! most `limit` at once, in the order they asked.
//!
//! The queue is work-conserving: a blocking thread that finishes a body takes the next queued
//! one at once, on the same thread, with no wake-up in between. (A semaphore handing its
//! permit to a waiting task, which then asked the blocking pool for a thread, cost two
//! wake-ups per body: on a loaded 2-core machine each could wait out another thread's time
//! slice; see the README's *Performance*.)
//!
//! A body runs on the blocking pool of the runtime that queued it: an engine's clones share
//! one queue across runtimes, and a runner meeting a body of another runtime hands its slot
//! to a runner there. So `Handle::current()` in a body is its own run's runtime, and dropping
//! a runtime never waits for another runtime's bodies.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::{Handle, Id};
use tokio::sync::oneshot;

/// A queued body, and the runtime whose blocking pool it runs on (`None`: queued outside any
/// runtime; it runs on a thread of its own).
struct Job {
    work: Box<dyn FnOnce() + Send>,
    runtime: Option<Handle>,
}

/// Runs closures on blocking threads, at most `limit` at once.
pub(crate) struct CpuPool {
    limit: usize,
    state: Mutex<State<Job>>,
}

/// The pool's accounting, without threads or runtimes (what its lock guards): the queue, and
/// how many runners take from it. Every decision of the pool is one call here under the lock;
/// `loom_tests` model-checks them with threads of loom's.
struct State<J> {
    queue: VecDeque<J>,
    /// Runners: threads taking jobs from the queue, or about to (at most `limit`).
    runners: usize,
}

/// What a runner does next.
enum Next<J> {
    /// Runs this job, then asks again.
    Run(J),
    /// Leaves: the queue is empty (its slot is given back).
    Leave,
    /// Hands its slot to a runner for the job at the front, which is not its runtime's.
    HandOff,
}

impl<J> State<J> {
    const fn new() -> Self {
        State {
            queue: VecDeque::new(),
            runners: 0,
        }
    }

    /// Queues `job`: whether the caller must start a runner (fewer than `limit` run).
    fn push(&mut self, job: J, limit: usize) -> bool {
        self.queue.push_back(job);
        let start = self.runners < limit;
        if start {
            self.runners += 1;
        }
        start
    }

    /// The next step of a runner that takes the jobs `mine` accepts.
    fn next(&mut self, mine: impl Fn(&J) -> bool) -> Next<J> {
        match self.queue.front() {
            Some(front) if !mine(front) => Next::HandOff,
            Some(_) => match self.queue.pop_front() {
                Some(job) => Next::Run(job),
                None => Next::Leave,
            },
            None => {
                self.runners -= 1;
                Next::Leave
            }
        }
    }

    /// A counted runner could not start: its slot is given back, and with no runner left the
    /// queued jobs are taken out (to be dropped: nothing would run them).
    fn give_up(&mut self) -> VecDeque<J> {
        self.runners -= 1;
        if self.runners == 0 {
            std::mem::take(&mut self.queue)
        } else {
            VecDeque::new()
        }
    }
}

impl CpuPool {
    /// A pool of at most `limit` (at least 1) busy threads; it starts none until asked.
    pub(crate) fn new(limit: usize) -> Arc<CpuPool> {
        Arc::new(CpuPool {
            limit: limit.max(1),
            state: Mutex::new(State::new()),
        })
    }

    /// Queues `work`; its result arrives through the receiver. Work whose receiver was dropped
    /// before a thread took it (a cancelled or timed-out attempt) never runs. A panic in
    /// `work`, or no thread to run it on, drops the sender: the receiver reports an error.
    pub(crate) fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (sender, receiver) = oneshot::channel();
        let runtime = Handle::try_current().ok();
        let job = Job {
            work: Box::new(move || {
                if !sender.is_closed() {
                    let _ = sender.send(work());
                }
            }),
            runtime: runtime.clone(),
        };
        let start_runner = self.lock().push(job, self.limit);
        if start_runner {
            Runner::new(Arc::clone(self)).start(runtime);
        }
        receiver
    }

    /// Takes the jobs of runtime `mine` until the queue is empty (the runner then leaves) or
    /// its front belongs to another runtime (the runner's slot goes to a runner there).
    fn drain(self: Arc<Self>, mine: Option<Id>) {
        loop {
            let work = {
                let mut state = self.lock();
                match state.next(|job| job.runtime.as_ref().map(Handle::id) == mine) {
                    Next::Run(job) => job.work,
                    Next::Leave => return,
                    Next::HandOff => {
                        let theirs = state.queue.front().and_then(|job| job.runtime.clone());
                        drop(state);
                        Runner::new(self).start(theirs);
                        return;
                    }
                }
            };
            // The body's own panics are caught where it is called; this keeps the runner
            // count right whatever a job does.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(work));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<Job>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One counted runner, not yet running. Started on a runtime's blocking pool; if that runtime
/// refuses it (it is shutting down) the runner is dropped unrun, and its drop drains that
/// runtime's jobs on a thread of its own instead (their attempts have mostly been dropped with
/// the runtime, so they are skipped): a counted runner that never ran would leave the queued
/// bodies waiting forever.
struct Runner {
    pool: Option<Arc<CpuPool>>,
    /// The runtime whose jobs it takes.
    mine: Option<Id>,
}

impl Runner {
    fn new(pool: Arc<CpuPool>) -> Runner {
        Runner {
            pool: Some(pool),
            mine: None,
        }
    }

    fn start(mut self, runtime: Option<Handle>) {
        self.mine = runtime.as_ref().map(Handle::id);
        match runtime {
            Some(runtime) => drop(runtime.spawn_blocking(move || self.run())),
            None => {
                if let Some(pool) = self.pool.take() {
                    drain_on_a_thread(pool, None);
                }
            }
        }
    }

    fn run(mut self) {
        if let Some(pool) = self.pool.take() {
            pool.drain(self.mine);
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            drain_on_a_thread(pool, self.mine);
        }
    }
}

fn drain_on_a_thread(pool: Arc<CpuPool>, mine: Option<Id>) {
    let runner = Arc::clone(&pool);
    let spawned = std::thread::Builder::new()
        .name("graflow-cpu".to_owned())
        .spawn(move || runner.drain(mine));
    if let Err(error) = spawned {
        tracing::error!(target: "graflow::engine", %error, "no thread to run synchronous task bodies on; their attempts fail");
        // With no runner left, nothing would take the queued bodies: their attempts fail now
        // (dropped senders) rather than wait forever.
        let orphans = pool.lock().give_up();
        drop(orphans);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_run_in_the_order_they_were_queued() {
        let pool = CpuPool::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = pool.run(move || hold.recv().is_ok());
        let receivers: Vec<_> = (0..20)
            .map(|i| {
                let order = order.clone();
                pool.run(move || order.lock().expect("the order").push(i))
            })
            .collect();
        release.send(()).expect("the first job waits");
        assert!(first.await.expect("the first job ran"));
        for receiver in receivers {
            receiver.await.expect("every job ran");
        }
        assert_eq!(
            *order.lock().expect("the order"),
            (0..20).collect::<Vec<_>>()
        );
    }
}

/// The pool's accounting under loom (`scripts/loom.sh`, `--cfg graflow_loom`): runners are loom threads that take
/// jobs as `CpuPool::drain` does, every decision made by `State` under a loom mutex, in every
/// interleaving loom finds.
#[cfg(all(test, graflow_loom))]
mod loom_tests {
    use super::{Next, State};
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::{Arc, Mutex};
    use loom::thread::JoinHandle;

    /// A job: the runtime it belongs to, and its number.
    type Job = (u8, usize);

    struct Model {
        limit: usize,
        state: Mutex<State<Job>>,
        /// Bodies running now, and the most seen at once.
        running: AtomicUsize,
        most: AtomicUsize,
        /// Per job, how many times it ran.
        ran: Vec<AtomicUsize>,
        /// Every runner thread, for the model's end to wait for.
        threads: Mutex<Vec<JoinHandle<()>>>,
    }

    impl Model {
        fn new(limit: usize, jobs: usize) -> Arc<Model> {
            Arc::new(Model {
                limit,
                state: Mutex::new(State::new()),
                running: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
                ran: (0..jobs).map(|_| AtomicUsize::new(0)).collect(),
                threads: Mutex::new(Vec::new()),
            })
        }

        /// `CpuPool::run`: queue, and start a runner if the pool has room for one.
        fn submit(this: &Arc<Self>, job: Job) {
            let start = this.state.lock().unwrap().push(job, this.limit);
            if start {
                Model::start_runner(this, job.0);
            }
        }

        fn start_runner(this: &Arc<Self>, mine: u8) {
            let model = Arc::clone(this);
            let handle = loom::thread::spawn(move || Model::drain(&model, mine));
            this.threads.lock().unwrap().push(handle);
        }

        /// `CpuPool::drain`.
        fn drain(this: &Arc<Self>, mine: u8) {
            loop {
                let job = {
                    let mut state = this.state.lock().unwrap();
                    match state.next(|job| job.0 == mine) {
                        Next::Run(job) => job,
                        Next::Leave => return,
                        Next::HandOff => {
                            let theirs = state.queue.front().map(|job| job.0);
                            drop(state);
                            Model::start_runner(this, theirs.expect("a front to hand off to"));
                            return;
                        }
                    }
                };
                this.body(job.1);
            }
        }

        fn body(&self, job: usize) {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            assert!(
                now <= self.limit,
                "{now} bodies at once, limit {}",
                self.limit
            );
            loom::thread::yield_now();
            self.ran[job].fetch_add(1, Ordering::SeqCst);
            self.running.fetch_sub(1, Ordering::SeqCst);
        }

        /// Waits for every runner (each records the runner it starts before it ends), then
        /// checks that every job ran once and the pool is back to nothing.
        fn finish(&self) {
            loop {
                let next = self.threads.lock().unwrap().pop();
                match next {
                    Some(handle) => handle.join().expect("a runner panicked"),
                    None => break,
                }
            }
            for (job, ran) in self.ran.iter().enumerate() {
                assert_eq!(ran.load(Ordering::SeqCst), 1, "job {job} ran once");
            }
            let state = self.state.lock().unwrap();
            assert!(state.queue.is_empty(), "nothing left queued");
            assert_eq!(state.runners, 0, "every runner left");
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(f);
    }

    /// Two threads queue three bodies onto a pool of two: never more than two run at once,
    /// each runs once, and the runners all leave.
    #[test]
    fn at_most_limit_at_once_and_every_queued_body_runs() {
        model(|| {
            let pool = Model::new(2, 3);
            let other = {
                let pool = Arc::clone(&pool);
                loom::thread::spawn(move || {
                    Model::submit(&pool, (0, 1));
                    Model::submit(&pool, (0, 2));
                })
            };
            Model::submit(&pool, (0, 0));
            other.join().expect("the submitter");
            pool.finish();
        });
    }

    /// A pool of one over two runtimes: a runner meeting another runtime's body hands its slot
    /// to a runner there; every body still runs once, one at a time.
    #[test]
    fn a_handed_off_slot_runs_the_other_runtimes_bodies() {
        model(|| {
            let pool = Model::new(1, 3);
            Model::submit(&pool, (0, 0));
            Model::submit(&pool, (1, 1));
            Model::submit(&pool, (0, 2));
            pool.finish();
            assert_eq!(pool.most.load(Ordering::SeqCst), 1);
        });
    }
}
