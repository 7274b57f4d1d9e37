//! Warm runners: a runner started once and sent one invocation after another (the runner's
//! serve loop, `GRAFLOW_RUNNER=serve`, `PROTOCOL.md` §9), kept in a pool per environment.
//!
//! A handler that offers reuse owns a [`RunnerPool`]. For a task that asks for a warm runner
//! (`reuse = true`, or the pool's default) it computes the task's *environment key*
//! (everything that makes two tasks' environments identical: for a container the image,
//! volumes, environment, limits, user, network, sandbox, ...) and [`checks out`]
//! (RunnerPool::checkout) a runner of that key: an idle one, else a new one (started with
//! the handler's [`Starter`]), else it waits until one of the key's [`PoolOptions::size`]
//! runners is free. [`Lease::serve`] sends the invocation and reads the outcome.
//!
//! A runner goes back to the pool only after an answer that leaves it sound: a result, or the
//! task's own error. A panic, a refused answer, a runner that died (its process or container
//! ended: a crash, an OOM kill), a timeout or a cancellation discard it, and its process or
//! container is stopped. So are runners idle longer than [`PoolOptions::idle_timeout`] or past
//! [`PoolOptions::max_uses`] tasks, and every runner of the pool when the pool is dropped (the
//! engine is dropped), when the program is interrupted (SIGINT, SIGTERM during a run), or when
//! it dies (a runner's input ends; it exits by itself).
//!
//! All I/O with the runners runs on graflow's background runtime (`crate::runtime`, started
//! with the first warm runner), so that runners outlive the runtime of any one run
//! (`engine.run()` builds one per run); the pool's tasks there end when the pool is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use graflow_protocol::Limits;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::Instrument;

use crate::definition::{AttemptError, HandlerFailure};
use crate::graph::Task;
use crate::run::ExecutionContext;
use crate::value::Value;

use super::driver::apply_outcome_bytes;
use super::invocation;
use super::logs::LogTarget;
use super::warm::{Guards, Job, Served, Started, Starter, launch, lock};

mod options;

pub use options::{PoolOptions, REUSE_OPTION};

/// An event of the pool, on the target of its handler (`graflow::handlers`, `graflow::docker`).
macro_rules! note {
    ($target:expr, $level:ident, $($arg:tt)*) => {
        $target.log(tracing::Level::$level, format_args!($($arg)*))
    };
}

/// A handler's pool of warm runners. Cloning shares the pool.
#[derive(Clone)]
pub struct RunnerPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RunnerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerPool")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

struct Inner {
    options: PoolOptions,
    target: LogTarget,
    startup_timeout: Duration,
    state: Mutex<State>,
    /// What stops each started runner.
    guards: Arc<Guards>,
    /// The task that stops idle runners past their timeout, once the first runner starts.
    reaper: OnceLock<tokio::task::AbortHandle>,
}

/// Every pool of the program, for [`stop_all`] at an interrupt.
fn pools() -> &'static Mutex<Vec<Weak<Guards>>> {
    static POOLS: OnceLock<Mutex<Vec<Weak<Guards>>>> = OnceLock::new();
    POOLS.get_or_init(Default::default)
}

/// Stops every warm runner of every pool of this program (a caught SIGINT or SIGTERM, before
/// the program ends); returns how many were stopped.
fn stop_all() -> usize {
    let pools: Vec<_> = lock(pools()).iter().filter_map(Weak::upgrade).collect();
    pools.iter().map(|guards| guards.stop_all()).sum()
}

fn stop_all_at_interrupt() {
    let stopped = stop_all();
    if stopped > 0 {
        tracing::info!(target: "graflow::engine", stopped, "warm runners stopped");
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Slot>,
    next_id: u64,
}

#[derive(Default)]
struct Slot {
    /// Idle runners, the most recently used last.
    idle: Vec<(Runner, Instant)>,
    /// Runners of this key: idle, serving, or starting.
    live: usize,
    freed: Arc<Notify>,
}

impl State {
    /// Removes `key`'s slot when it has no runner left (nobody can wait on it then: waiting
    /// needs `live` at the pool's size).
    fn prune(&mut self, key: &str) {
        if self
            .keys
            .get(key)
            .is_some_and(|slot| slot.live == 0 && slot.idle.is_empty())
        {
            self.keys.remove(key);
        }
    }

    fn idle_count(&self) -> usize {
        self.keys.values().map(|slot| slot.idle.len()).sum()
    }
}

/// The pool's handle on one runner (its I/O runs in a task on the background runtime; dropping the
/// handle ends that task, which stops the runner).
struct Runner {
    id: u64,
    name: String,
    uses: u32,
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
}

impl Runner {
    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.jobs.is_closed()
    }
}

/// What became of an invocation sent to a runner.
enum Delivered {
    Answer(Result<Value, AttemptError>),
    NotTaken,
}

/// What a checkout found.
enum Found {
    Idle(Runner),
    Room(Reservation),
    Wait,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let stopped = self.guards.stop_all();
        if stopped > 0 {
            note!(
                self.target,
                INFO,
                "{stopped} warm runner(s) stopped with their pool"
            );
        }
        // The runners' I/O tasks (all idle: a lease or a start holds the pool) and the reaper
        // end with the pool; the background runtime goes on.
        self.guards.abort_tasks();
        if let Some(reaper) = self.reaper.get() {
            reaper.abort();
        }
    }
}

impl RunnerPool {
    /// A pool with these settings; runners have `startup_timeout` to announce themselves, and
    /// their output lines are logged to `target`. No thread or runner is started until the
    /// first task asks for one.
    pub fn new(options: PoolOptions, startup_timeout: Duration, target: LogTarget) -> Self {
        let guards = Arc::new(Guards::default());
        crate::interrupt::at_interrupt(stop_all_at_interrupt);
        let mut all = lock(pools());
        all.retain(|pool| pool.strong_count() > 0);
        all.push(Arc::downgrade(&guards));
        drop(all);
        RunnerPool {
            inner: Arc::new(Inner {
                options,
                target,
                startup_timeout,
                state: Mutex::new(State::default()),
                guards,
                reaper: OnceLock::new(),
            }),
        }
    }

    /// The pool's settings.
    pub fn options(&self) -> &PoolOptions {
        &self.inner.options
    }

    /// How many runners of `key` are alive now (idle, serving or starting).
    pub fn live(&self, key: &str) -> usize {
        lock(&self.inner.state)
            .keys
            .get(key)
            .map_or(0, |slot| slot.live)
    }

    /// The background runtime, with this pool's reaper started on it.
    fn runtime(&self) -> Result<tokio::runtime::Handle, String> {
        let handle = crate::runtime::handle()
            .map_err(|e| format!("cannot start the warm runners' I/O: {e}"))?;
        self.inner.reaper.get_or_init(|| {
            handle
                .spawn(reap(Arc::downgrade(&self.inner)))
                .abort_handle()
        });
        Ok(handle)
    }

    /// A runner of `key` for one attempt of `task`: an idle one (the most recently used), else
    /// one started with `starter` (when the key has fewer than [`PoolOptions::size`] runners),
    /// else the next one freed.
    pub async fn checkout(
        &self,
        key: &str,
        task: &Task,
        starter: impl Fn() -> Starter,
    ) -> Result<Lease, AttemptError> {
        self.checkout_for(key, task, starter, None).await
    }

    /// [`Self::checkout`]; waiting for a runner to be freed pauses the timeout of `ctx`'s
    /// task (starting a runner does not).
    async fn checkout_for(
        &self,
        key: &str,
        task: &Task,
        starter: impl Fn() -> Starter,
        ctx: Option<&ExecutionContext>,
    ) -> Result<Lease, AttemptError> {
        loop {
            let freed = lock(&self.inner.state)
                .keys
                .entry(key.to_owned())
                .or_default()
                .freed
                .clone();
            // Registered before the state is looked at: a runner freed from now on wakes it.
            let notified = freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = {
                let mut state = lock(&self.inner.state);
                let slot = state.keys.entry(key.to_owned()).or_default();
                if !Arc::ptr_eq(&slot.freed, &freed) {
                    // The key's slot was emptied and made anew meanwhile: wait on the new one.
                    continue;
                }
                self.find(&mut state, key)
            };
            match found {
                Found::Idle(runner) => return Ok(self.lease(key, runner)),
                Found::Room(reservation) => {
                    return self.start(reservation, task, starter()).await;
                }
                Found::Wait => {
                    let _waiting = ctx.map(ExecutionContext::pause_timeout);
                    notified.await;
                }
            }
        }
    }

    /// An idle runner of `key` (the most recently used, alive and not expired; the others met
    /// are stopped), else room for a new one, else nothing yet.
    fn find(&self, state: &mut State, key: &str) -> Found {
        state.next_id += 1;
        let id = state.next_id;
        let slot = state.keys.entry(key.to_owned()).or_default();
        while let Some((runner, since)) = slot.idle.pop() {
            if runner.alive() && since.elapsed() < self.inner.options.idle_timeout {
                return Found::Idle(runner);
            }
            slot.live -= 1;
            note!(
                self.inner.target,
                INFO,
                "warm runner {} gone or expired; not reused",
                runner.name
            );
            self.inner.guards.stop(runner.id);
        }
        if slot.live < self.inner.options.size {
            slot.live += 1;
            return Found::Room(Reservation {
                inner: self.inner.clone(),
                key: key.to_owned(),
                id,
                kept: false,
            });
        }
        Found::Wait
    }

    /// Runs one attempt of `task` on a warm runner of `key` ([`Self::checkout`], then
    /// [`Lease::serve`]). A runner that could not take the invocation (it died while idle, or
    /// wrote between tasks) is replaced and the invocation goes to another, up to 3 times: no
    /// task saw it.
    pub async fn run(
        &self,
        key: &str,
        task: &Task,
        ctx: &ExecutionContext,
        limits: Limits,
        starter: impl Fn() -> Starter,
    ) -> Result<Value, AttemptError> {
        for _ in 0..3 {
            let mut lease = self.checkout_for(key, task, &starter, Some(ctx)).await?;
            match lease.deliver(task, ctx, limits).await {
                Delivered::Answer(result) => return result,
                Delivered::NotTaken => {
                    note!(
                        self.inner.target,
                        INFO,
                        "warm runner {} could not take task {}; trying another",
                        lease.name(),
                        task.id()
                    );
                }
            }
        }
        Err(AttemptError::handler(
            task.id(),
            task.handler(),
            "three warm runners in a row could not take the task (they ended or wrote out of turn); their output lines are logged",
        )
        .with_kind(HandlerFailure::RunnerLost))
    }

    fn lease(&self, key: &str, runner: Runner) -> Lease {
        Lease {
            inner: self.inner.clone(),
            key: key.to_owned(),
            runner: Some(runner),
            keep: false,
        }
    }

    /// Starts a runner on the background runtime and waits until it announced itself; it comes
    /// lent (dropped unused, it is stopped and its place given back).
    async fn start(
        &self,
        reservation: Reservation,
        task: &Task,
        starter: Starter,
    ) -> Result<Lease, AttemptError> {
        let fail = |message: String| AttemptError::handler(task.id(), task.handler(), message);
        let runtime = self.runtime().map_err(fail)?;
        let started = runtime.spawn(
            launch(
                reservation.id,
                starter,
                self.inner.guards.clone(),
                self.inner.startup_timeout,
                self.inner.target,
            )
            .instrument(tracing::Span::current()),
        );
        let mut started = AbortOnDrop(started);
        let Started { name, jobs, alive } = match (&mut started.0).await {
            Ok(Ok(started)) => started,
            Ok(Err(message)) => return Err(fail(message)),
            Err(e) => return Err(fail(format!("starting a warm runner failed: {e}"))),
        };
        let runner = Runner {
            id: reservation.id,
            name,
            uses: 0,
            jobs,
            alive,
        };
        let key = reservation.key.clone();
        reservation.keep();
        Ok(self.lease(&key, runner))
    }

    /// Starts, for `count` tasks of `key`, the runners they need up to the pool's size (each
    /// with a starter from `starter`), and keeps them idle. Returns how many were started.
    pub async fn warm_up(
        &self,
        key: &str,
        count: usize,
        task: &Task,
        starter: impl Fn() -> Starter,
    ) -> Result<usize, AttemptError> {
        let mut starts = Vec::new();
        {
            let mut state = lock(&self.inner.state);
            let have = state.keys.get(key).map_or(0, |slot| slot.live);
            let want = count.min(self.inner.options.size).saturating_sub(have);
            for _ in 0..want {
                if let Found::Room(reservation) = self.find(&mut state, key) {
                    starts.push(reservation);
                } else {
                    break;
                }
            }
        }
        let starts = starts
            .into_iter()
            .map(|reservation| self.start(reservation, task, starter()));
        let mut started = 0;
        let mut first_error = None;
        for result in futures_util::future::join_all(starts).await {
            match result {
                Ok(mut lease) => {
                    started += 1;
                    lease.keep = true;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(started),
        }
    }
}

/// A started task that is aborted when the waiting side goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A place for one more runner of a key; given back if the runner never comes to be.
struct Reservation {
    inner: Arc<Inner>,
    key: String,
    id: u64,
    kept: bool,
}

impl Reservation {
    /// The runner came to be: its place is taken for good.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            release(&self.inner, &self.key);
        }
    }
}

fn release(inner: &Inner, key: &str) {
    let mut state = lock(&inner.state);
    if let Some(slot) = state.keys.get_mut(key) {
        slot.live = slot.live.saturating_sub(1);
        slot.freed.notify_waiters();
    }
    state.prune(key);
}

/// One runner, lent to one attempt. Dropped without a sound answer (an error, a panic, a
/// timeout, the attempt's future dropped), the runner is stopped.
pub struct Lease {
    inner: Arc<Inner>,
    key: String,
    runner: Option<Runner>,
    keep: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("runner", &self.name())
            .field("uses", &self.uses())
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The runner's name (`pid 4242`, `container graflow-…`).
    pub fn name(&self) -> &str {
        self.runner.as_ref().map_or("", |r| r.name.as_str())
    }

    /// How many tasks the runner served before this one.
    pub fn uses(&self) -> u32 {
        self.runner.as_ref().map_or(0, |r| r.uses)
    }

    /// Sends the invocation of `task` for the attempt `ctx` stands for and returns the result,
    /// checked as every runner's answer is (protocol, build id, nonce, limits, types).
    /// Records which runner served the task in the run report.
    pub async fn serve(
        &mut self,
        task: &Task,
        ctx: &ExecutionContext,
        limits: Limits,
    ) -> Result<Value, AttemptError> {
        match self.deliver(task, ctx, limits).await {
            Delivered::Answer(result) => result,
            Delivered::NotTaken => Err(AttemptError::handler(
                task.id(),
                task.handler(),
                format!(
                    "warm runner {} could not take the task (it ended or wrote out of turn); run it again",
                    self.name()
                ),
            )
            .with_kind(HandlerFailure::RunnerLost)),
        }
    }

    async fn deliver(&mut self, task: &Task, ctx: &ExecutionContext, limits: Limits) -> Delivered {
        self.keep = false;
        match self.try_deliver(task, ctx, limits).await {
            Ok(delivered) => delivered,
            Err(error) => Delivered::Answer(Err(error)),
        }
    }

    async fn try_deliver(
        &mut self,
        task: &Task,
        ctx: &ExecutionContext,
        limits: Limits,
    ) -> Result<Delivered, AttemptError> {
        let handler = task.handler();
        let fail = |message: String| AttemptError::handler(task.id(), handler, message);
        let Some(runner) = self.runner.as_mut() else {
            return Err(fail("the warm runner was already given back".to_owned()));
        };
        let invocation = invocation(task, ctx)?;
        let nonce = invocation.nonce;
        let frame = invocation.into_frame().map_err(|e| {
            fail(format!("could not encode the invocation: {e}"))
                .with_kind(HandlerFailure::InvalidConfig)
        })?;
        runner.uses += 1;
        let name = runner.name.clone();
        ctx.set_runner(format!("{name} (warm, task {} of it)", runner.uses));
        note!(
            self.inner.target,
            DEBUG,
            "task {} sent to warm runner {name} (task {} of it)",
            task.id(),
            runner.uses
        );
        let (reply, answer) = oneshot::channel();
        let job = Job {
            frame,
            nonce,
            limits,
            task: task.id().to_owned(),
            span: tracing::Span::current(),
            observed: ctx.is_observed().then(|| ctx.clone()),
            reply,
        };
        if runner.jobs.send(job).await.is_err() {
            return Ok(Delivered::NotTaken);
        }
        let served = answer.await.map_err(|_| {
            fail(format!(
                "warm runner {name} stopped without answering (its pool was dropped)"
            ))
        })?;
        Ok(Delivered::Answer(match served {
            Served::NotTaken => return Ok(Delivered::NotTaken),
            Served::Answer { frame, logs } => {
                let result = apply_outcome_bytes(
                    task,
                    ctx,
                    nonce,
                    &frame,
                    &limits,
                    &format!("warm runner {name}"),
                );
                // Sound after a result or the task's own error; anything else (a panic, a
                // refused answer, a failure of the runner's) may have left it in a bad state.
                self.keep = matches!(result, Ok(_) | Err(AttemptError::Task { .. }));
                if !self.keep {
                    note!(self.inner.target, INFO, "warm runner {name} replaced after an unsound end of task {}{}", task.id(), logs.tail_text());
                }
                result
            }
            Served::Died { detail, logs } => Err(fail(format!(
                "the task's warm runner {name} died before reporting a result ({detail}); it is replaced{}",
                logs.tail_text()
            ))
            .with_kind(HandlerFailure::RunnerLost)),
            Served::Refused { error, logs } => Err(fail(format!(
                "the answer of warm runner {name} was refused and the runner stopped: {error}{}",
                logs.tail_text()
            ))
            .with_kind(HandlerFailure::RunnerLost)),
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(runner) = self.runner.take() else {
            return;
        };
        let options = &self.inner.options;
        if self.keep && runner.alive() && runner.uses < options.max_uses {
            let mut state = lock(&self.inner.state);
            // Past the pool's idle cap, the runner idle longest (of any environment) goes.
            let evicted = (options.max_idle > 0 && state.idle_count() >= options.max_idle)
                .then(|| oldest_idle(&mut state))
                .flatten();
            let kept = match state.keys.get_mut(&self.key) {
                Some(slot) if options.max_idle > 0 => {
                    slot.idle.push((runner, Instant::now()));
                    slot.freed.notify_waiters();
                    None
                }
                _ => Some(runner),
            };
            drop(state);
            if let Some((key, old)) = evicted {
                note!(
                    self.inner.target,
                    INFO,
                    "idle warm runner {} stopped: the pool is at its idle cap",
                    old.name
                );
                self.inner.guards.stop(old.id);
                drop(old);
                release(&self.inner, &key);
            }
            let Some(runner) = kept else {
                return;
            };
            self.inner.guards.stop(runner.id);
            drop(runner);
            release(&self.inner, &self.key);
            return;
        }
        let reason = if !self.keep {
            "its task did not end soundly"
        } else if runner.uses >= options.max_uses {
            "it served its maximum number of tasks"
        } else {
            "it is gone"
        };
        note!(
            self.inner.target,
            INFO,
            "warm runner {} discarded after {} task(s): {reason}",
            runner.name,
            runner.uses
        );
        // Stop it now, not when its I/O task notices.
        self.inner.guards.stop(runner.id);
        drop(runner);
        release(&self.inner, &self.key);
    }
}

/// Takes the runner idle longest out of the pool (its key, to release its place).
fn oldest_idle(state: &mut State) -> Option<(String, Runner)> {
    let (key, at) = state
        .keys
        .iter()
        .flat_map(|(key, slot)| {
            slot.idle
                .iter()
                .enumerate()
                .map(move |(at, (_, since))| (key, at, *since))
        })
        .min_by_key(|&(_, _, since)| since)
        .map(|(key, at, _)| (key.clone(), at))?;
    let slot = state.keys.get_mut(&key)?;
    let (runner, _) = slot.idle.remove(at);
    Some((key, runner))
}

/// Stops idle runners past the idle timeout, until the pool is dropped.
async fn reap(pool: Weak<Inner>) {
    loop {
        let tick = match pool.upgrade() {
            Some(inner) => {
                let timeout = inner.options.idle_timeout;
                let mut expired = Vec::new();
                {
                    let mut state = lock(&inner.state);
                    for (key, slot) in &mut state.keys {
                        let before = slot.idle.len();
                        let (keep, gone): (Vec<_>, Vec<_>) =
                            std::mem::take(&mut slot.idle).into_iter().partition(
                                |(runner, since)| runner.alive() && since.elapsed() < timeout,
                            );
                        slot.idle = keep;
                        slot.live -= before - slot.idle.len();
                        if !gone.is_empty() {
                            slot.freed.notify_waiters();
                        }
                        expired.extend(gone.into_iter().map(|(runner, _)| (key.clone(), runner)));
                    }
                    for (key, _) in &expired {
                        state.prune(key);
                    }
                }
                for (_, runner) in expired {
                    note!(
                        inner.target,
                        INFO,
                        "idle warm runner {} stopped",
                        runner.name
                    );
                    inner.guards.stop(runner.id);
                }
                (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
            }
            None => return,
        };
        tokio::time::sleep(tick).await;
    }
}
