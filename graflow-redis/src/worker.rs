//! [`Worker`]: the worker side. Reads jobs from its queues in the consumer group, runs each
//! through a handler registered in it (by default "direct", in this process), renews the lease
//! of every job it holds, takes over the jobs of dead workers, and records each outcome once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use graflow_core::backend::build_id;
use graflow_core::{TaskHandler, WorkflowEngine};
use graflow_protocol::frame::rejection;
use graflow_protocol::{Failure, Invocation, Limits, Outcome, PROTOCOL_VERSION};
use redis::aio::ConnectionManager;
use redis::streams::StreamPendingCountReply;
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument;

use crate::RedisError;
use crate::connect::{Backoff, TlsOptions, connect, ensure_group};
use crate::entry::{Job, RawEntry, Reply, ReplyKind, claim_reply, range_reply, read_reply};
use crate::handler::{DEFAULT_QUEUE, retryable};
use crate::keys::{ENGINE_GRACE, GROUP, Keys, MARK_TTL_SECS, check_name, process_name, redact};
use crate::logs::{ATTEMPT_SPAN, Capture};
use crate::scripts::{CLAIM, DEAD_LETTER, FINISH, HEARTBEAT, REMOVE_CONSUMER};

/// How a worker is set up. Every field has a default; change them with the `with_*` methods.
/// The lease and the delivery cap are decisions of the whole fleet: give every worker of a
/// queue the same.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// The key prefix (default `graflow`); the engines' must be the same.
    pub prefix: String,
    /// The queues this worker serves (default: [`DEFAULT_QUEUE`]).
    pub queues: Vec<String>,
    /// How many attempts it runs at once (default: the number of CPUs).
    pub concurrency: usize,
    /// A job whose worker renewed its lease less recently than this is taken over by another
    /// worker (default 30 s). The lease is renewed every third of it, at least once a second.
    pub lease: Duration,
    /// A job delivered more times than this goes to the dead-letter stream and its task fails
    /// (default 3).
    pub max_deliveries: u64,
    /// This worker's name in the consumer group (default: host, pid and a random part).
    pub name: Option<String>,
    /// The largest invocation accepted, in bytes (default 256 MiB).
    pub max_invocation: u64,
    /// On shutdown, how long running attempts may take to finish (default 30 s); the rest
    /// are left to other workers (after the lease).
    pub shutdown_grace: Duration,
    /// The dead-letter stream keeps about this many entries (default 10,000).
    pub dead_letter_cap: u64,
    /// TLS settings for a `rediss://` URL (default: the environment's, else the system's
    /// roots and no client certificate).
    pub tls: TlsOptions,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            prefix: "graflow".to_owned(),
            queues: vec![DEFAULT_QUEUE.to_owned()],
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            lease: Duration::from_secs(30),
            max_deliveries: 3,
            name: None,
            max_invocation: 256 << 20,
            shutdown_grace: Duration::from_secs(30),
            dead_letter_cap: 10_000,
            tls: TlsOptions::default(),
        }
    }
}

impl WorkerOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the queues served.
    pub fn with_queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Sets how many attempts run at once.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the delivery cap.
    pub fn with_max_deliveries(mut self, max: u64) -> Self {
        self.max_deliveries = max;
        self
    }

    /// Sets the worker's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the largest invocation accepted.
    pub fn with_max_invocation(mut self, bytes: u64) -> Self {
        self.max_invocation = bytes;
        self
    }

    /// Sets the TLS settings (for a `rediss://` URL).
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the shutdown grace period.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    fn check(&self) -> Result<(), RedisError> {
        let bad = |setting: &str, message: &str| {
            Err(RedisError::Setting {
                setting: setting.to_owned(),
                message: message.to_owned(),
            })
        };
        if self.queues.is_empty() {
            return bad("queues", "a worker serves at least one queue");
        }
        for queue in &self.queues {
            check_name("queue", queue)?;
        }
        if let Some(name) = &self.name {
            check_name("worker name", name)?;
        }
        if self.concurrency == 0 || self.concurrency > 65_536 {
            return bad("concurrency", "from 1 to 65536");
        }
        if self.lease < Duration::from_millis(100) {
            return bad("lease", "at least 100ms");
        }
        if self.max_deliveries == 0 {
            return bad("max_deliveries", "at least 1");
        }
        Ok(())
    }
}

/// The task options that are the "redis" handler's own: the inner handler does not see them.
const BACKEND_OPTIONS: &[&str] = &["queue", "worker_handler"];

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Attempts it answered (an outcome recorded, first or not).
    pub answered: u64,
    /// Jobs it took over from other workers.
    pub reclaimed: u64,
    /// Jobs it moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Malformed entries it skipped.
    pub malformed: u64,
    /// Attempts stopped because the engine cancelled them.
    pub cancelled: u64,
    /// Jobs of another build it handed back, untouched, to workers of that build.
    pub handed_back: u64,
}

/// A worker: serves the tasks of this program from Redis queues. Most programs get one from
/// worker mode (`<program> --graflow-worker redis://host:port/db`, through `graflow::init()`);
/// a program with its own `main` builds one here and runs it.
pub struct Worker {
    url: String,
    options: WorkerOptions,
    handlers: WorkflowEngine,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("url", &redact(&self.url))
            .field("options", &self.options)
            .field("handlers", &self.handlers.handler_names())
            .finish()
    }
}

/// Why an attempt must stop before it ends.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The engine cancelled it (timeout, cancelled run).
    Cancelled,
    /// Another worker took the job over: this one's lease ran out.
    LeaseLost,
}

struct Held {
    /// Which attempt holds the job (a job is held once: see `attempt`).
    generation: u64,
    att: Option<String>,
    stop: Option<oneshot::Sender<Stop>>,
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

struct State {
    url: String,
    name: String,
    keys: Keys,
    options: WorkerOptions,
    conn: ConnectionManager,
    handlers: WorkflowEngine,
    permits: Arc<Semaphore>,
    /// Jobs held (running or waiting for a slot): at most twice the concurrency, so that the
    /// next jobs are already here when a slot frees, and no worker hoards a queue.
    held_slots: Arc<Semaphore>,
    /// Jobs this worker holds, by entry id (ids are unique per stream; the key adds the queue).
    held: Mutex<HashMap<(String, String), Held>>,
    /// Engines whose liveness key this worker found absent, and since when (see
    /// [`engine_gone`]).
    absent: Mutex<HashMap<String, Instant>>,
    stopping: AtomicBool,
    answered: AtomicU64,
    reclaimed: AtomicU64,
    dead_lettered: AtomicU64,
    malformed: AtomicU64,
    cancelled: AtomicU64,
    handed_back: AtomicU64,
}

impl Worker {
    /// A worker of Redis at `url` with the default [`WorkerOptions`] and every handler a
    /// [`WorkflowEngine::new`] has ("direct", "process", and those linked in, e.g. "docker").
    pub fn new(url: impl Into<String>) -> Self {
        Worker {
            url: url.into(),
            options: WorkerOptions::default(),
            handlers: WorkflowEngine::new(),
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: WorkerOptions) -> Self {
        self.options = options;
        self
    }

    /// Registers a handler tasks may name with `worker_handler = "<name>"`.
    pub fn with_handler(mut self, name: impl Into<String>, handler: impl TaskHandler) -> Self {
        self.handlers.register_handler(name, handler);
        self
    }

    /// Runs until Ctrl-C or SIGTERM, then stops as [`Worker::run_until`] does.
    pub async fn run(self) -> Result<WorkerStats, RedisError> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `shutdown` completes: then takes no new job, gives running attempts the
    /// shutdown grace to finish, and leaves (the jobs it still holds go to other workers once
    /// their lease runs out). Fails at once, naming the URL, when Redis does not answer.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerStats, RedisError> {
        self.options.check()?;
        let keys = Keys::new(&self.options.prefix)?;
        let name = self.options.name.clone().unwrap_or_else(process_name);
        let tls = &self.options.tls;
        let mut conn = connect(&self.url, Duration::from_secs(10), tls).await?;
        let blocking = connect(&self.url, Duration::from_secs(10), tls).await?;
        for queue in &self.options.queues {
            ensure_group(&mut conn, &self.url, &keys.queue(queue)).await?;
        }
        let state = Arc::new(State {
            url: redact(&self.url),
            name,
            keys,
            permits: Arc::new(Semaphore::new(self.options.concurrency)),
            held_slots: Arc::new(Semaphore::new(self.options.concurrency.saturating_mul(2))),
            options: self.options,
            conn,
            handlers: self.handlers,
            held: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
        });
        tracing::info!(
            target: "graflow::handlers",
            worker = %state.name,
            url = %state.url,
            queues = ?state.options.queues,
            concurrency = state.options.concurrency,
            lease = ?state.options.lease,
            build_id = build_id(),
            "redis worker started"
        );
        // Leases are renewed on a thread of their own: a worker whose runtime threads are all
        // busy with task bodies must still hold on to its jobs.
        let lease_keeper = start_lease_keeper(state.clone(), &self.url)?;
        let reader = tokio::spawn(read_loop(state.clone(), blocking));
        let reclaimer = tokio::spawn(reclaim_loop(state.clone()));
        shutdown.await;
        state.stopping.store(true, Ordering::SeqCst);
        tracing::info!(target: "graflow::handlers", worker = %state.name, "redis worker stopping: no new jobs; waiting for running attempts");
        reader.abort();
        reclaimer.abort();
        let all = u32::try_from(state.options.concurrency).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(
            state.options.shutdown_grace,
            state.permits.clone().acquire_many_owned(all),
        )
        .await
        .is_ok();
        if !drained {
            tracing::warn!(target: "graflow::handlers", worker = %state.name, "attempts still running after the shutdown grace; other workers take them over once their lease runs out");
        }
        lease_keeper.stop();
        let mut conn = state.conn.clone();
        for queue in &state.options.queues {
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("ZREM")
                .arg(state.keys.workers(queue))
                .arg(&state.name)
                .ignore()
                .cmd("HDEL")
                .arg(state.keys.builds(queue))
                .arg(&state.name)
                .ignore()
                .query_async(&mut conn)
                .await;
            // It leaves the consumer group too, unless it still holds jobs (a grace that ran
            // out): those stay pending under its name for other workers to take over.
            let _: redis::RedisResult<u64> = REMOVE_CONSUMER
                .key(state.keys.queue(queue))
                .arg(GROUP)
                .arg(&state.name)
                .invoke_async(&mut conn)
                .await;
        }
        let stats = WorkerStats {
            answered: state.answered.load(Ordering::Relaxed),
            reclaimed: state.reclaimed.load(Ordering::Relaxed),
            dead_lettered: state.dead_lettered.load(Ordering::Relaxed),
            malformed: state.malformed.load(Ordering::Relaxed),
            cancelled: state.cancelled.load(Ordering::Relaxed),
            handed_back: state.handed_back.load(Ordering::Relaxed),
        };
        tracing::info!(target: "graflow::handlers", worker = %state.name, ?stats, "redis worker stopped");
        Ok(stats)
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Reads new jobs, as many at a time as there are free slots.
async fn read_loop(state: Arc<State>, mut blocking: ConnectionManager) {
    let streams: Vec<String> = state
        .options
        .queues
        .iter()
        .map(|q| state.keys.queue(q))
        .collect();
    let queue_of: HashMap<String, String> = streams
        .iter()
        .cloned()
        .zip(state.options.queues.iter().cloned())
        .collect();
    let mut backoff = Backoff::new();
    // A read failed (a response timeout, a dropped connection): Redis may have carried it out
    // all the same, giving this worker jobs whose answer never came.
    let mut unsure = false;
    loop {
        // Wait until fewer than twice the concurrency jobs are held, then ask for as many as
        // that leaves room for. Each job takes its held slot and then a run slot; one read
        // beyond the run slots waits, its lease renewed.
        let Ok(first) = state.held_slots.clone().acquire_owned().await else {
            return;
        };
        let mut held = vec![first];
        while held.len() < 256 {
            match state.held_slots.clone().try_acquire_owned() {
                Ok(slot) => held.push(slot),
                Err(_) => break,
            }
        }
        // COUNT applies to each stream: split it, so that the reply fits the slots.
        let count = (held.len() / streams.len()).max(1);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(&state.name)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&streams);
        for _ in &streams {
            read.arg(">");
        }
        let reply: redis::RedisResult<redis::Value> = read.query_async(&mut blocking).await;
        let reply = match reply {
            Ok(reply) => {
                backoff.reset();
                if std::mem::take(&mut unsure) {
                    // This answer on the same connection comes after every earlier read's:
                    // whatever those gave this worker is pending under its name now.
                    adopt_unseen(&state).await;
                }
                reply
            }
            Err(e) => {
                unsure = true;
                if e.code() == Some("NOGROUP") {
                    // Redis lost the group (restarted without persistence): make it again.
                    let mut conn = state.conn.clone();
                    for stream in &streams {
                        let _ = ensure_group(&mut conn, &state.url, stream).await;
                    }
                } else {
                    tracing::warn!(target: "graflow::handlers", worker = %state.name, url = %state.url, error = %e, "cannot read jobs; retrying");
                }
                backoff.wait().await;
                continue;
            }
        };
        let streams_read = match read_reply(reply) {
            Ok(streams_read) => streams_read,
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", worker = %state.name, "unreadable reply to XREADGROUP: {e}");
                continue;
            }
        };
        for (key, entries) in streams_read {
            let Some(queue) = queue_of.get(&key) else {
                continue;
            };
            for entry in entries {
                let slot = held.pop();
                tokio::spawn(attempt(state.clone(), queue.clone(), entry, 1, slot));
            }
        }
    }
}

/// Runs the jobs pending under this worker's name that no attempt of it holds: a read (or a
/// claim) whose answer was lost to a response timeout, while Redis was frozen or slow, gave
/// them to this worker, which never saw them. Without this they would wait for the lease to
/// run out.
async fn adopt_unseen(state: &Arc<State>) {
    let mut conn = state.conn.clone();
    for queue in &state.options.queues {
        let stream = state.keys.queue(queue);
        let pending: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1024)
            .arg(&state.name)
            .query_async(&mut conn)
            .await;
        let pending = match pending {
            Ok(pending) => pending,
            Err(e) => {
                tracing::debug!(target: "graflow::handlers", worker = %state.name, error = %e, "cannot list this worker's pending jobs");
                continue;
            }
        };
        for p in pending.ids {
            let held = state
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(&(queue.clone(), p.id.clone()));
            if held {
                continue;
            }
            let range: redis::RedisResult<redis::Value> = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&p.id)
                .arg(&p.id)
                .query_async(&mut conn)
                .await;
            let Ok(range) = range else { continue };
            let delivery = p.times_delivered as u64;
            let entries = range_reply(range);
            if entries.is_empty() {
                // Deleted meanwhile (its attempt was cancelled): nothing to run.
                let _: redis::RedisResult<()> = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&p.id)
                    .query_async(&mut conn)
                    .await;
            }
            for entry in entries {
                tracing::info!(target: "graflow::handlers", worker = %state.name, queue, entry = %entry.id, delivery, "took up a job given to this worker by a read whose answer was lost");
                tokio::spawn(attempt(state.clone(), queue.clone(), entry, delivery, None));
            }
        }
    }
}

/// Takes over the jobs of workers whose lease ran out, and those handed back by workers of
/// another build, while this one has free slots: only jobs of its own build ([`CLAIM`]).
/// Scans each queue's pending list with a cursor, from the start again once it reaches the end.
/// Now and then, also removes from the group the consumers of workers long gone.
async fn reclaim_loop(state: Arc<State>) {
    let tick = (state.options.lease / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
    let gone_after =
        (state.options.lease * 4).clamp(Duration::from_secs(10), Duration::from_secs(600));
    let mut conn = state.conn.clone();
    let mut cursors: HashMap<String, String> = HashMap::new();
    let mut swept = Instant::now();
    let mut unsure = false;
    loop {
        tokio::time::sleep(tick).await;
        if state.stopping.load(Ordering::SeqCst) {
            return;
        }
        if swept.elapsed() >= gone_after / 2 {
            swept = Instant::now();
            for queue in &state.options.queues {
                remove_gone_consumers(&state, &mut conn, queue, gone_after).await;
            }
        }
        for queue in &state.options.queues {
            let free = state.permits.available_permits();
            if free == 0 {
                break;
            }
            let stream = state.keys.queue(queue);
            let cursor = cursors
                .get(queue)
                .cloned()
                .unwrap_or_else(|| "-".to_owned());
            let count = free.min(64);
            let claimed: redis::RedisResult<redis::Value> = CLAIM
                .key(&stream)
                .arg(GROUP)
                .arg(&state.name)
                .arg(state.options.lease.as_millis() as u64)
                .arg(count)
                .arg(build_id())
                .arg(&cursor)
                .arg(count * 10)
                .invoke_async(&mut conn)
                .await;
            let (next, entries) = match claimed.map_err(|e| e.to_string()).and_then(claim_reply) {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::debug!(target: "graflow::handlers", worker = %state.name, error = %e, "cannot reclaim jobs");
                    cursors.remove(queue);
                    unsure = true;
                    continue;
                }
            };
            if std::mem::take(&mut unsure) {
                adopt_unseen(&state).await;
            }
            cursors.insert(queue.clone(), next);
            for (entry, delivery) in entries {
                // A job this worker still runs (its own lease lapsed while Redis was away):
                // the attempt that holds it goes on; the claim only renewed the lease.
                let mine = state
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains_key(&(queue.clone(), entry.id.clone()));
                if mine {
                    continue;
                }
                if delivery <= 1 {
                    tracing::debug!(target: "graflow::handlers", worker = %state.name, queue, entry = %entry.id, "took a job a worker of another build handed back");
                } else {
                    state.reclaimed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "graflow::handlers", worker = %state.name, queue, entry = %entry.id, delivery, "took over a job whose worker's lease ran out");
                }
                tokio::spawn(attempt(state.clone(), queue.clone(), entry, delivery, None));
            }
        }
    }
}

/// Removes from a queue's group the consumers idle for `gone_after` that hold no job: workers
/// killed long ago (one that exits cleanly removes its own). A live worker removed this way
/// loses nothing: Redis makes its consumer again when it next gets a job.
async fn remove_gone_consumers(
    state: &State,
    conn: &mut ConnectionManager,
    queue: &str,
    gone_after: Duration,
) {
    let stream = state.keys.queue(queue);
    let info: redis::RedisResult<redis::streams::StreamInfoConsumersReply> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(GROUP)
        .query_async(conn)
        .await;
    let Ok(info) = info else { return };
    for consumer in info.consumers {
        if consumer.name == state.name
            || consumer.pending > 0
            || (consumer.idle as u128) < gone_after.as_millis()
        {
            continue;
        }
        let removed: redis::RedisResult<u64> = REMOVE_CONSUMER
            .key(&stream)
            .arg(GROUP)
            .arg(&consumer.name)
            .invoke_async(conn)
            .await;
        if let Ok(1) = removed {
            tracing::info!(target: "graflow::handlers", worker = %state.name, queue, consumer = %consumer.name, idle_ms = consumer.idle, "removed the consumer of a worker gone from the group (idle, no job held)");
        }
    }
}

/// Renews leases and presence, and stops cancelled attempts, from a thread of its own.
struct LeaseKeeper {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start_lease_keeper(state: Arc<State>, url: &str) -> Result<LeaseKeeper, RedisError> {
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let url = url.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RedisError::Runtime)?;
    let thread = std::thread::Builder::new()
        .name("graflow-lease".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let mut conn = loop {
                    match connect(&url, Duration::from_secs(5), &state.options.tls).await {
                        Ok(conn) => break conn,
                        Err(e) => {
                            tracing::warn!(target: "graflow::handlers", error = %e, "lease keeper cannot connect; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                                _ = &mut stop_rx => return,
                            }
                        }
                    }
                };
                let renew_every = (state.options.lease / 3)
                    .clamp(Duration::from_millis(30), Duration::from_secs(1));
                let tick = renew_every.min(Duration::from_millis(100));
                let mut last_renewal: Option<Instant> = None;
                loop {
                    if last_renewal.is_none_or(|t| t.elapsed() >= renew_every) {
                        renew(&state, &mut conn).await;
                        last_renewal = Some(Instant::now());
                    }
                    stop_cancelled(&state, &mut conn).await;
                    tokio::select! {
                        () = tokio::time::sleep(tick) => {}
                        _ = &mut stop_rx => return,
                    }
                }
            });
        })
        .map_err(RedisError::Runtime)?;
    Ok(LeaseKeeper {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// One lease renewal per queue (also this worker's presence); stops attempts whose jobs
/// another worker took over.
async fn renew(state: &State, conn: &mut ConnectionManager) {
    for queue in &state.options.queues {
        let ids: Vec<String> = state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|(q, _)| q == queue)
            .map(|(_, id)| id.clone())
            .collect();
        let mut call = HEARTBEAT.key(state.keys.queue(queue));
        call.key(state.keys.workers(queue))
            .key(state.keys.builds(queue))
            .arg(GROUP)
            .arg(&state.name)
            .arg(build_id());
        for id in &ids {
            call.arg(id);
        }
        let lost: redis::RedisResult<Vec<String>> = call.invoke_async(conn).await;
        match lost {
            Ok(lost) => {
                for id in lost {
                    tracing::warn!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, "lost the lease of a job (another worker took it over); stopping its attempt");
                    stop(state, queue, &id, Stop::LeaseLost);
                }
            }
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", worker = %state.name, url = %state.url, error = %e, "cannot renew leases");
            }
        }
    }
}

/// Stops the attempts the engine cancelled.
async fn stop_cancelled(state: &State, conn: &mut ConnectionManager) {
    let running: Vec<((String, String), String)> = state
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|(key, held)| held.att.clone().map(|att| (key.clone(), att)))
        .collect();
    if running.is_empty() {
        return;
    }
    let keys: Vec<String> = running
        .iter()
        .map(|(_, att)| state.keys.cancel(att))
        .collect();
    let marks: redis::RedisResult<Vec<Option<String>>> =
        redis::cmd("MGET").arg(&keys).query_async(conn).await;
    if let Ok(marks) = marks {
        for (((queue, id), _), mark) in running.iter().zip(marks) {
            if mark.is_some() {
                stop(state, queue, id, Stop::Cancelled);
            }
        }
    }
}

fn stop(state: &State, queue: &str, id: &str, why: Stop) {
    let sender = state
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&(queue.to_owned(), id.to_owned()))
        .and_then(|held| held.stop.take());
    if let Some(sender) = sender {
        let _ = sender.send(why);
    }
}

/// Forgets a held job when the attempt ends, however it ends.
struct Release<'a> {
    state: &'a State,
    key: (String, String),
    generation: u64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut held = self
            .state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held
            .get(&self.key)
            .is_some_and(|h| h.generation == self.generation)
        {
            held.remove(&self.key);
        }
    }
}

/// One job: checked, run (or refused, or dead-lettered), its outcome recorded.
async fn attempt(
    state: Arc<State>,
    queue: String,
    entry: RawEntry,
    delivery: u64,
    held_slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let RawEntry { id, fields } = entry;
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let key = (queue.clone(), id.clone());
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    {
        let mut held = state.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.contains_key(&key) {
            // Already held by a running attempt of this worker: that one goes on.
            return;
        }
        held.insert(
            key.clone(),
            Held {
                generation,
                att: None,
                stop: Some(stop_tx),
            },
        );
    }
    let _release = Release {
        state: &state,
        key: key.clone(),
        generation,
    };
    // A job waits here for a run slot, its lease renewed meanwhile (a reclaimed job, read
    // with a free run slot, holds no held slot: it needs none to wait).
    let _held_slot = held_slot;
    let Ok(_permit) = state.permits.clone().acquire_owned().await else {
        return;
    };
    // Stopping: start nothing new; the job goes to another worker once its lease runs out.
    if state.stopping.load(Ordering::SeqCst) {
        return;
    }
    let parsed = match &fields {
        Ok(fields) => Job::parse(
            fields,
            state.options.max_invocation,
            &state.keys.replies(""),
        ),
        Err(why) => Err((None, why.to_string())),
    };
    let job = match parsed {
        Ok(job) => job,
        Err((named, why)) => {
            state.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, "skipped a malformed job (moved to the dead-letter stream): {why}");
            let reply = named.as_ref().map(|(att, _)| Reply {
                att: att.clone(),
                worker: state.name.clone(),
                delivery,
                kind: ReplyKind::Dead {
                    reason: format!("worker {} could not read the job: {why}", state.name),
                },
                logs: String::new(),
            });
            let (done, reply_key) = match &named {
                Some((att, reply)) => (state.keys.done(att), reply.clone()),
                None => (
                    state.keys.done(&format!("malformed-{id}")),
                    state.keys.dead(&queue),
                ),
            };
            dead_letter(
                &state,
                &queue,
                &id,
                delivery,
                &format!("malformed: {why}"),
                &done,
                &reply_key,
                reply.as_ref(),
            )
            .await;
            return;
        }
    };
    if let Some(build) = &job.build
        && build != build_id()
    {
        hand_back(&state, &queue, &id, delivery, build).await;
        return;
    }
    let done = state.keys.done(&job.att);
    if let Some(held) = state
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&key)
    {
        held.att = Some(job.att.clone());
    }
    // A redelivered job may have been answered already, or cancelled: acknowledge only. (A
    // first delivery cancelled meanwhile is stopped by the cancel check within 100 ms.)
    let marks: redis::RedisResult<u64> = if delivery > 1 {
        let mut conn = state.conn.clone();
        redis::cmd("EXISTS")
            .arg(&done)
            .arg(state.keys.cancel(&job.att))
            .query_async(&mut conn)
            .await
    } else {
        Ok(0)
    };
    if let Ok(n) = marks
        && n > 0
    {
        tracing::debug!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, "job already answered or cancelled; acknowledged without running");
        finish(&state, &queue, &id, &done, &job.reply, None).await;
        return;
    }

    if delivery > state.options.max_deliveries {
        let reason = format!(
            "its job was delivered {delivery} times, over the cap of {} (max_deliveries): each worker that took it died or lost its lease before answering (does the task crash its process, or run out of memory?); the job is in the dead-letter stream `{}` (source id {id})",
            state.options.max_deliveries,
            state.keys.dead(&queue)
        );
        tracing::error!(target: "graflow::handlers", worker = %state.name, task = %job.task, queue, entry = %id, delivery, "job dead-lettered");
        bury(&state, &queue, &id, delivery, reason, &done, &job).await;
        return;
    }

    if let Some(engine) = &job.engine
        && engine_gone(&state, engine).await
    {
        let reason = format!(
            "its engine is gone: its liveness key `{engine}` was absent for {ENGINE_GRACE:?} (the engine ended or was killed with its job queued, or lost Redis for that long); nobody waits for the outcome, so worker {} did not run it; the job is in the dead-letter stream `{}` (source id {id})",
            state.name,
            state.keys.dead(&queue)
        );
        tracing::warn!(target: "graflow::handlers", worker = %state.name, task = %job.task, queue, entry = %id, engine, "the job's engine is gone; dead-lettered without running");
        bury(&state, &queue, &id, delivery, reason, &done, &job).await;
        return;
    }

    let started = Instant::now();
    let limits = Limits::default()
        .with_max_frame(state.options.max_invocation)
        .with_max_head(state.options.max_invocation);
    let outcome = match Invocation::read_from(&mut job.inv.as_slice(), &limits) {
        Err(e) => rejection(0, build_id(), format!("unreadable invocation: {e}")),
        Ok(invocation) => {
            let nonce = invocation.nonce;
            match state.handlers.handler(&job.inner) {
                None => rejection(
                    nonce,
                    build_id(),
                    format!(
                        "worker {} has no handler \"{}\" (it has: {}); register it on the worker (Worker::with_handler) or link its crate",
                        state.name,
                        job.inner,
                        state.handlers.handler_names().join(", ")
                    ),
                ),
                Some(handler) => {
                    let capture = Capture::new(&job.att);
                    let span = tracing::info_span!(
                        target: "graflow::handlers",
                        ATTEMPT_SPAN,
                        att = %job.att,
                        task = %job.task,
                        delivery
                    );
                    tracing::debug!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, delivery, "running");
                    let run = graflow_core::backend::answer(invocation, &*handler, BACKEND_OPTIONS)
                        .instrument(span);
                    let deadline = async {
                        if job.timeout_ms == 0 {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_millis(job.timeout_ms)).await;
                    };
                    tokio::pin!(run);
                    tokio::pin!(deadline);
                    let mut stop_open = true;
                    let outcome = loop {
                        tokio::select! {
                            outcome = &mut run => break outcome,
                            () = &mut deadline => {
                                tracing::info!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, "attempt reached the task's timeout; stopped");
                                break failure(nonce, format!(
                                    "worker {} stopped the attempt after {:?}, the task's timeout",
                                    state.name,
                                    Duration::from_millis(job.timeout_ms)
                                ), started);
                            }
                            why = &mut stop_rx, if stop_open => match why {
                                Ok(Stop::Cancelled) => {
                                    state.cancelled.fetch_add(1, Ordering::Relaxed);
                                    tracing::info!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, "attempt cancelled by the engine; stopped");
                                    finish(&state, &queue, &id, &done, &job.reply, None).await;
                                    return;
                                }
                                // Another worker runs it now: leave the job to it.
                                Ok(Stop::LeaseLost) => return,
                                // Nobody can stop it any more: it runs to its end.
                                Err(_) => stop_open = false,
                            },
                        }
                    };
                    let logs = capture.sink.text();
                    drop(capture);
                    let bytes = encode(outcome, job.max_out, &state.name, started);
                    let reply = Reply {
                        att: job.att.clone(),
                        worker: state.name.clone(),
                        delivery,
                        kind: ReplyKind::Outcome(bytes),
                        logs,
                    };
                    finish(&state, &queue, &id, &done, &job.reply, Some(&reply)).await;
                    state.answered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    let bytes = encode(outcome, job.max_out, &state.name, started);
    let reply = Reply {
        att: job.att.clone(),
        worker: state.name.clone(),
        delivery,
        kind: ReplyKind::Outcome(bytes),
        logs: String::new(),
    };
    finish(&state, &queue, &id, &done, &job.reply, Some(&reply)).await;
    state.answered.fetch_add(1, Ordering::Relaxed);
}

/// How idle a handed-back job is made: any worker's lease is shorter, so a worker of its build
/// takes it at its next claim.
const HANDED_BACK_IDLE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Gives a job of another build back, untouched: it stays pending (under this worker's name,
/// unrenewed) with its delivery count as it was before this worker read it and an idle time
/// past any lease, so that a worker of its build takes it (see [`CLAIM`], which never takes a
/// job of another build).
async fn hand_back(state: &State, queue: &str, id: &str, delivery: u64, build: &str) {
    let mut conn = state.conn.clone();
    let handed: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
        .arg(state.keys.queue(queue))
        .arg(GROUP)
        .arg(&state.name)
        .arg(0)
        .arg(id)
        .arg("IDLE")
        .arg(HANDED_BACK_IDLE_MS)
        .arg("RETRYCOUNT")
        .arg(delivery.saturating_sub(1))
        .arg("JUSTID")
        .query_async(&mut conn)
        .await;
    match handed {
        Ok(_) => {
            state.handed_back.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, job_build = build, build_id = build_id(), "handed back a job of another build, for a worker of its build");
        }
        Err(e) => {
            tracing::warn!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, error = %e, "cannot hand back a job of another build; a worker of its build takes it after the lease");
        }
    }
}

/// Whether the engine whose liveness key is `key` is gone: the key absent now and still absent
/// [`ENGINE_GRACE`] after this worker first found it so (more than two of the engine's refresh
/// periods: an engine whose key Redis lost writes it again meanwhile). In doubt (Redis does not
/// answer), the engine lives.
async fn engine_gone(state: &State, key: &str) -> bool {
    let mut conn = state.conn.clone();
    loop {
        let exists: redis::RedisResult<bool> =
            redis::cmd("EXISTS").arg(key).query_async(&mut conn).await;
        let waited = {
            let mut absent = state.absent.lock().unwrap_or_else(PoisonError::into_inner);
            match exists {
                Ok(true) => {
                    absent.remove(key);
                    return false;
                }
                Ok(false) => {}
                Err(_) => return false,
            }
            // An absence seen long ago, with nothing seen since, proves nothing now.
            absent.retain(|_, since| since.elapsed() < ENGINE_GRACE * 4);
            absent
                .entry(key.to_owned())
                .or_insert_with(Instant::now)
                .elapsed()
        };
        if waited >= ENGINE_GRACE {
            return true;
        }
        tokio::time::sleep(ENGINE_GRACE.saturating_sub(waited)).await;
    }
}

fn failure(nonce: u64, message: String, started: Instant) -> Outcome {
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: build_id().to_owned(),
        nonce,
        result: Err(Failure::Other { message }),
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
    }
}

/// The outcome's frame; a failure saying so instead when it is over the engine's limit.
fn encode(outcome: Outcome, max_out: u64, worker: &str, started: Instant) -> Vec<u8> {
    let nonce = outcome.nonce;
    let mut bytes = Vec::new();
    let written = outcome.write_to(&mut bytes);
    let replacement = match written {
        Err(e) => Some(format!("worker {worker} could not encode the outcome: {e}")),
        Ok(()) if bytes.len() as u64 > max_out => Some(format!(
            "the outcome is {} bytes, over the engine's limit of {max_out}: return less (write large data to shared storage and return its address), or raise RedisOptions::max_outcome",
            bytes.len()
        )),
        Ok(()) => None,
    };
    if let Some(message) = replacement {
        bytes.clear();
        // A failure with a bounded message always encodes, and is far below any limit.
        let _ = failure(nonce, message, started).write_to(&mut bytes);
    }
    bytes
}

/// Records the outcome (the first only) and acknowledges the job, retrying while Redis does
/// not answer: an outcome is never dropped on a connection error.
async fn finish(
    state: &State,
    queue: &str,
    id: &str,
    done: &str,
    reply_key: &str,
    reply: Option<&Reply>,
) {
    let mut conn = state.conn.clone();
    let mut backoff = Backoff::new();
    let give_up = Instant::now() + Duration::from_secs(600);
    let fields = reply.map(Reply::fields).unwrap_or_default();
    loop {
        let mut call = FINISH.key(state.keys.queue(queue));
        call.key(done)
            .key(reply_key)
            .arg(GROUP)
            .arg(id)
            .arg(&state.name)
            .arg(MARK_TTL_SECS)
            .arg(MARK_TTL_SECS);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_slice());
        }
        let result: redis::RedisResult<u64> = call.invoke_async(&mut conn).await;
        match result {
            Ok(code) => {
                if code & 1 == 0 && reply.is_some() {
                    tracing::info!(target: "graflow::handlers", worker = %state.name, entry = %id, "another delivery of this job answered first; this outcome is ignored");
                }
                return;
            }
            Err(e) if retryable(&e) && Instant::now() < give_up => {
                tracing::warn!(target: "graflow::handlers", worker = %state.name, entry = %id, error = %e, "cannot record an outcome yet; retrying");
                backoff.wait().await;
            }
            Err(e) => {
                tracing::error!(target: "graflow::handlers", worker = %state.name, entry = %id, error = %e, "could not record an outcome; the job will be delivered again after its lease");
                return;
            }
        }
    }
}

/// Moves `job` to the dead letters for `reason`, and tells its engine why (a dead reply).
async fn bury(
    state: &State,
    queue: &str,
    id: &str,
    delivery: u64,
    reason: String,
    done: &str,
    job: &Job,
) {
    let reply = Reply {
        att: job.att.clone(),
        worker: state.name.clone(),
        delivery,
        kind: ReplyKind::Dead {
            reason: reason.clone(),
        },
        logs: String::new(),
    };
    dead_letter(
        state,
        queue,
        id,
        delivery,
        &reason,
        done,
        &job.reply,
        Some(&reply),
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    state: &State,
    queue: &str,
    id: &str,
    delivery: u64,
    reason: &str,
    done: &str,
    reply_key: &str,
    reply: Option<&Reply>,
) {
    let mut conn = state.conn.clone();
    let mut backoff = Backoff::new();
    let fields = reply.map(Reply::fields).unwrap_or_default();
    for _ in 0..20 {
        let mut call = DEAD_LETTER.key(state.keys.queue(queue));
        call.key(state.keys.dead(queue))
            .key(done)
            .key(reply_key)
            .arg(GROUP)
            .arg(id)
            .arg(&state.name)
            .arg(MARK_TTL_SECS)
            .arg(MARK_TTL_SECS)
            .arg(delivery)
            .arg(reason)
            .arg(state.options.dead_letter_cap);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_slice());
        }
        let result: redis::RedisResult<u64> = call.invoke_async(&mut conn).await;
        match result {
            Ok(_) => {
                state.dead_lettered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if retryable(&e) => backoff.wait().await,
            Err(e) => {
                tracing::error!(target: "graflow::handlers", worker = %state.name, entry = %id, error = %e, "could not dead-letter a job");
                return;
            }
        }
    }
    tracing::error!(target: "graflow::handlers", worker = %state.name, entry = %id, "could not dead-letter a job: Redis did not answer; it stays pending and is taken over again after the lease");
}
