//! [`RedisHandler`]: the engine side. Each attempt is a job on a queue's stream; the first
//! reply for it on this handler's reply stream is its outcome.
//!
//! All Redis I/O runs on a small runtime of the handler's own, so a handler works from any
//! runtime (`engine.execute(..).await` in `#[tokio::main]`, or `engine.run(..)`, which starts a
//! runtime per run).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use graflow_core::remote;
use graflow_core::{AttemptError, ExecutionContext, Problem, Task, TaskHandler, Value};
use graflow_protocol::Limits;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use crate::RedisError;
use crate::connect::{Backoff, TlsOptions, connect, ensure_group, retryable};
use crate::entry::{Job, RawEntry, Reply, ReplyKind, read_reply};
use crate::keys::{
    DEFAULT_QUEUE, ENGINE_REFRESH, ENGINE_TTL_SECS, Keys, MARK_TTL_SECS, check_name, process_name,
    redact,
};
use crate::scripts::{ENQUEUE, LIVE_WORKERS, LOST};

/// A worker counts as live when it renewed its presence within this time.
pub(crate) const WORKER_TTL: Duration = Duration::from_secs(5);

/// How the "redis" handler is set up. Every field has a default; change them with the
/// `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The prefix of every key (default `graflow`); workers must use the same.
    pub prefix: String,
    /// The queue of tasks that name none (default [`DEFAULT_QUEUE`]).
    pub queue: String,
    /// How long a task may wait while no live worker serves its queue, or while Redis does not
    /// answer, before it fails (default 30 s).
    pub no_worker_timeout: Duration,
    /// The largest outcome accepted from a worker, in bytes (default 16 MiB); a larger one
    /// fails its task. Workers check it too, and send a clear failure instead.
    pub max_outcome: u64,
    /// How long queueing a job may retry while Redis does not answer (default 30 s, as
    /// long as a waiting attempt waits for Redis: a server frozen past the response timeout
    /// of 10 s must not fail a task that is queued meanwhile).
    pub reconnect_window: Duration,
    /// How many attempts may be in flight at once in one run (default: the engine's limit).
    pub max_concurrency: Option<usize>,
    /// TLS settings for a `rediss://` URL (default: the environment's, else the system's
    /// roots and no client certificate).
    pub tls: TlsOptions,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "graflow".to_owned(),
            queue: DEFAULT_QUEUE.to_owned(),
            no_worker_timeout: Duration::from_secs(30),
            max_outcome: 16 << 20,
            reconnect_window: Duration::from_secs(30),
            max_concurrency: None,
            tls: TlsOptions::default(),
        }
    }
}

impl RedisOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the default queue.
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets how long a task waits for a live worker on its queue.
    pub fn with_no_worker_timeout(mut self, timeout: Duration) -> Self {
        self.no_worker_timeout = timeout;
        self
    }

    /// Sets the largest outcome accepted, in bytes.
    pub fn with_max_outcome(mut self, bytes: u64) -> Self {
        self.max_outcome = bytes;
        self
    }

    /// Sets how long queueing a job retries while Redis does not answer.
    pub fn with_reconnect_window(mut self, window: Duration) -> Self {
        self.reconnect_window = window;
        self
    }

    /// Sets the TLS settings (for a `rediss://` URL).
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Sets how many attempts may be in flight at once in one run.
    pub fn with_max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = Some(limit.max(1));
        self
    }
}

/// Runs each task on a remote worker: the same program, started in worker mode
/// (`<program> --graflow-worker redis://host:port/db`), reading the task's queue (a Redis
/// Stream) in a consumer group. At-least-once with leases: see the crate documentation.
///
/// Task options: `queue = "gpu"` (default: [`RedisOptions::queue`]), `worker_handler =
/// "docker"` (the handler the worker runs the task through, registered in the worker; default
/// "direct", in the worker's process). The engine's `timeout` of the task reaches the worker,
/// which stops the attempt; so does a cancelled run.
#[derive(Clone)]
pub struct RedisHandler {
    shared: Arc<Shared>,
    io: Arc<IoRuntime>,
}

/// The handler's own runtime, and how many cancellations of dropped attempts it still has to
/// send.
struct IoRuntime(Option<tokio::runtime::Runtime>, Arc<AtomicUsize>);

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
    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle(),
            None => unreachable!("the runtime is only taken when the handler is dropped"),
        }
    }
}

struct Shared {
    url: String,
    keys: Keys,
    client: String,
    replies: String,
    /// This engine's liveness key (see [`keep_alive`]).
    alive: String,
    conn: ConnectionManager,
    options: RedisOptions,
    waiting: Mutex<HashMap<String, Waiter>>,
    malformed: std::sync::atomic::AtomicU64,
    /// Cancellations spawned and not yet sent (the runtime waits for them when dropped).
    cancels: Arc<AtomicUsize>,
}

struct Waiter {
    queue: String,
    entry: Option<String>,
    since: Instant,
    checked: Instant,
    tx: oneshot::Sender<Result<Reply, String>>,
}

impl std::fmt::Debug for RedisHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandler")
            .field("url", &self.shared.url)
            .field("client", &self.shared.client)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl RedisHandler {
    /// Connects to Redis at `url` (`redis://host:port/db`, `redis://:password@host:port/db`,
    /// `rediss://host:port/db` for TLS: see [`TlsOptions`]) with the default [`RedisOptions`]. Fails at once, naming the URL, when nothing answers
    /// there within 2 s. Blocks the calling thread while it connects.
    pub fn connect(url: &str) -> Result<RedisHandler, RedisError> {
        Self::connect_with(url, RedisOptions::default())
    }

    /// [`RedisHandler::connect`] with options.
    pub fn connect_with(url: &str, options: RedisOptions) -> Result<RedisHandler, RedisError> {
        let keys = Keys::new(&options.prefix)?;
        check_name("queue", &options.queue)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("graflow-redis-io")
            .enable_all()
            .build()
            .map_err(RedisError::Runtime)?;
        let cancels = Arc::new(AtomicUsize::new(0));
        let io = Arc::new(IoRuntime(Some(runtime), cancels.clone()));
        let client = process_name();
        let replies = keys.replies(&client);
        let owned_url = url.to_owned();
        let tls = options.tls.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        io.handle().spawn(async move {
            let result = async {
                let conn = connect(&owned_url, Duration::from_secs(10), &tls).await?;
                // Blocking reads get a connection of their own: on a shared one they would hold
                // up every other command.
                let blocking = connect(&owned_url, Duration::from_secs(10), &tls).await?;
                Ok::<_, RedisError>((conn, blocking))
            }
            .await;
            let _ = tx.send(result);
        });
        let (conn, blocking) = rx.recv().map_err(|_| RedisError::Unreachable {
            url: redact(url),
            source: redis::RedisError::from((redis::ErrorKind::Io, "the connecting task ended")),
        })??;
        let alive = keys.engine(&client);
        let shared = Arc::new(Shared {
            url: redact(url),
            keys,
            client,
            replies,
            alive,
            conn,
            options,
            waiting: Mutex::new(HashMap::new()),
            malformed: std::sync::atomic::AtomicU64::new(0),
            cancels,
        });
        io.handle().spawn(dispatch(shared.clone(), blocking));
        io.handle().spawn(monitor(shared.clone()));
        io.handle().spawn(keep_alive(shared.clone()));
        tracing::debug!(target: "graflow::handlers", url = %shared.url, client = %shared.client, "redis handler connected");
        Ok(RedisHandler { shared, io })
    }

    /// The Redis URL (its password hidden).
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// This handler's name in Redis (its reply stream is `<prefix>:replies:<name>`).
    pub fn client_name(&self) -> &str {
        &self.shared.client
    }

    /// How many malformed replies were skipped so far.
    pub fn malformed_replies(&self) -> u64 {
        self.shared
            .malformed
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The queue and inner handler a task names.
fn task_options<'a>(task: &'a Task, default_queue: &'a str) -> Result<(&'a str, &'a str), String> {
    let config = task.handler_config();
    let text = |key: &str| match config.get(key) {
        None => Ok(None),
        Some(value) => value.as_str().map(Some).ok_or_else(|| {
            format!(
                "option `{key}` must be a string, not {} ({key} = \"...\")",
                value.kind()
            )
        }),
    };
    let queue = text("queue")?.unwrap_or(default_queue);
    check_name("queue", queue).map_err(|e| e.to_string())?;
    let inner = text("worker_handler")?.unwrap_or("direct");
    if inner == "redis" {
        return Err(
            "option `worker_handler` cannot be \"redis\": a worker runs the task itself or through a handler of its own machine".to_owned(),
        );
    }
    Ok((queue, inner))
}

/// Fails the attempt and takes its job back when the engine drops it (timeout, cancelled run):
/// marks it cancelled (a worker that holds it stops it; one that gets it later skips it) and
/// deletes its entry if no worker took it yet.
struct Pending {
    shared: Arc<Shared>,
    io: tokio::runtime::Handle,
    att: String,
    queue: String,
    entry: Option<String>,
    armed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let entry = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.att)
            .and_then(|w| w.entry)
            .or_else(|| self.entry.take());
        let shared = self.shared.clone();
        let att = std::mem::take(&mut self.att);
        let stream = shared.keys.queue(&self.queue);
        shared.cancels.fetch_add(1, Ordering::SeqCst);
        self.io.spawn(async move {
            let mut conn = shared.conn.clone();
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(shared.keys.cancel(&att))
                .arg(1)
                .arg("EX")
                .arg(MARK_TTL_SECS)
                .ignore();
            if let Some(entry) = &entry {
                pipe.cmd("XDEL").arg(&stream).arg(entry).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(target: "graflow::handlers", attempt = %att, error = %e, "could not mark a dropped attempt cancelled in Redis; a worker may still run it (its outcome will be ignored)");
            } else {
                tracing::debug!(target: "graflow::handlers", attempt = %att, "attempt cancelled");
            }
            shared.cancels.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

#[async_trait::async_trait]
impl TaskHandler for RedisHandler {
    fn validate_task(&self, task: &Task) -> Result<(), Problem> {
        task_options(task, &self.shared.options.queue)
            .map(|_| ())
            .map_err(|message| Problem::invalid_config(task.id(), task.handler(), message))
    }

    fn concurrency_limit(&self) -> Option<usize> {
        self.shared.options.max_concurrency
    }

    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let shared = &self.shared;
        let handler = task.handler();
        let fail = |message: String| AttemptError::handler(task.id(), handler, message);
        let (queue, inner) = task_options(task, &shared.options.queue).map_err(fail)?;
        let nonce = remote::attempt_nonce();
        let invocation = remote::invocation(task, ctx, nonce)?;
        let mut inv = invocation.frame_start().map_err(|e| {
            AttemptError::handler_source(task.id(), handler, "could not encode the invocation", e)
        })?;
        for bytes in invocation.payload() {
            inv.extend_from_slice(bytes);
        }
        drop(invocation);
        let att = format!("{}-{nonce:016x}", shared.client);
        let job = Job {
            att: att.clone(),
            reply: shared.replies.clone(),
            task: task.id().to_owned(),
            inv,
            timeout_ms: task.timeout().map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
            inner: inner.to_owned(),
            max_out: shared.options.max_outcome,
            engine: Some(shared.alive.clone()),
            build: Some(remote::build_id().to_owned()),
        };
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                att.clone(),
                Waiter {
                    queue: queue.to_owned(),
                    entry: None,
                    since: now,
                    checked: now,
                    tx,
                },
            );
        let mut pending = Pending {
            shared: shared.clone(),
            io: self.io.handle().clone(),
            att: att.clone(),
            queue: queue.to_owned(),
            entry: None,
            armed: true,
        };
        let queued = self
            .io
            .handle()
            .spawn(enqueue(shared.clone(), queue.to_owned(), job))
            .await
            .map_err(|e| fail(format!("the task queueing the job ended: {e}")))?;
        let entry = queued.map_err(|e| {
            fail(format!(
                "could not queue the task on `{}` at {}: {e}; is Redis running there?",
                shared.keys.queue(queue),
                shared.url
            ))
        })?;
        if let Some(waiter) = shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&att)
        {
            waiter.entry = Some(entry.clone());
        }
        pending.entry = Some(entry);
        tracing::debug!(target: "graflow::handlers", task = %task.id(), queue, attempt = %att, "queued on redis");
        // A failure found here (no worker, a lost job, a malformed reply) leaves `pending` armed:
        // the job is taken back when it drops.
        let reply = rx
            .await
            .map_err(|_| fail("the redis handler stopped while the task was waiting".to_owned()))?
            .map_err(fail)?;
        pending.armed = false;
        ctx.set_runner(format!(
            "worker {}, delivery {}",
            reply.worker, reply.delivery
        ));
        crate::logs::replay(&reply.logs, ctx, &reply.worker);
        match reply.kind {
            ReplyKind::Dead { reason } => Err(fail(reason)),
            ReplyKind::Outcome(bytes) => {
                let limits = Limits::default().with_max_frame(bytes.len() as u64 + 64);
                let from = format!("worker {}", reply.worker);
                remote::apply_outcome_bytes(task, ctx, nonce, &bytes, &limits, &from)
            }
        }
    }
}

/// Queues a job (once: see [`ENQUEUE`]), retrying while Redis does not answer (within the
/// reconnect window).
async fn enqueue(shared: Arc<Shared>, queue: String, job: Job) -> Result<String, String> {
    let stream = shared.keys.queue(&queue);
    let queued = shared.keys.queued(&job.att);
    let fields = job.fields();
    let deadline = Instant::now() + shared.options.reconnect_window;
    let mut conn = shared.conn.clone();
    let mut backoff = Backoff::new();
    loop {
        let mut call = ENQUEUE.key(&stream);
        call.key(&queued)
            .key(&shared.alive)
            .arg(MARK_TTL_SECS)
            .arg(ENGINE_TTL_SECS);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_slice());
        }
        let added: redis::RedisResult<String> = call.invoke_async(&mut conn).await;
        match added {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() < deadline && retryable(&e) => {
                tracing::debug!(target: "graflow::handlers", error = %e, "queueing a job failed; retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Renews this engine's liveness key while the handler lives: workers skip (dead-letter) the
/// jobs of an engine whose key is gone, a killed engine's included. Sooner after a failure, so
/// that a key Redis lost (a restart without persistence) is back within a refresh period.
async fn keep_alive(shared: Arc<Shared>) {
    let mut conn = shared.conn.clone();
    loop {
        let renewed: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&shared.alive)
            .arg(1)
            .arg("EX")
            .arg(ENGINE_TTL_SECS)
            .query_async(&mut conn)
            .await;
        let next = match renewed {
            Ok(()) => ENGINE_REFRESH,
            Err(e) => {
                tracing::debug!(target: "graflow::handlers", error = %e, "cannot renew the engine's liveness key; retrying");
                Duration::from_millis(250)
            }
        };
        tokio::time::sleep(next).await;
    }
}

/// Reads this handler's reply stream and hands each reply to the attempt waiting for it.
async fn dispatch(shared: Arc<Shared>, mut blocking: ConnectionManager) {
    let mut last = "0-0".to_owned();
    let mut backoff = Backoff::new();
    let mut conn = shared.conn.clone();
    loop {
        // Small batches: each reply may be up to `max_outcome` bytes.
        let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(32)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&shared.replies)
            .arg(&last)
            .query_async(&mut blocking)
            .await;
        let read = match read {
            Ok(read) => {
                backoff.reset();
                read
            }
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", url = %shared.url, error = %e, "cannot read the reply stream; retrying");
                backoff.wait().await;
                continue;
            }
        };
        let streams = match read_reply(read) {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", url = %shared.url, "unreadable reply to XREAD: {e}");
                backoff.wait().await;
                continue;
            }
        };
        let mut ids = Vec::new();
        for (_, entries) in streams {
            for entry in entries {
                last.clone_from(&entry.id);
                ids.push(entry.id.clone());
                deliver(&shared, entry);
            }
        }
        if !ids.is_empty() {
            let deleted: redis::RedisResult<()> = redis::cmd("XDEL")
                .arg(&shared.replies)
                .arg(&ids)
                .query_async(&mut conn)
                .await;
            if let Err(e) = deleted {
                tracing::debug!(target: "graflow::handlers", error = %e, "could not delete read replies (they expire with the stream)");
            }
        }
    }
}

fn deliver(shared: &Shared, entry: RawEntry) {
    let parsed = match &entry.fields {
        Ok(map) => Reply::parse(map, shared.options.max_outcome),
        Err(why) => Err((None, why.to_string())),
    };
    let (att, result) = match parsed {
        Ok(reply) => (reply.att.clone(), Ok(reply)),
        Err((Some(att), why)) => (att, Err(format!("the worker's reply is malformed: {why}"))),
        Err((None, why)) => {
            shared
                .malformed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(target: "graflow::handlers", stream = %shared.replies, "skipped a malformed reply: {why}");
            return;
        }
    };
    let waiter = shared
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&att);
    match waiter {
        Some(waiter) => {
            let _ = waiter.tx.send(result);
        }
        None => {
            tracing::debug!(target: "graflow::handlers", attempt = %att, "ignored a reply for an attempt no longer waiting (a late or duplicate outcome)");
        }
    }
}

/// Once a second: fails the attempts of a queue no live worker served for the no-worker
/// timeout, and those whose job vanished from Redis without an outcome.
async fn monitor(shared: Arc<Shared>) {
    let tick = (shared.options.no_worker_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut unserved_since: HashMap<String, Instant> = HashMap::new();
    let mut conn = shared.conn.clone();
    let mut known_groups: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        // Redis gone for good must not leave attempts waiting forever: after the same wait as
        // for a missing worker, every waiting attempt fails, naming the URL. (A restart within
        // it delivers the outcomes: with AOF nothing is lost.)
        let any_waiting = !shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if any_waiting {
            let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            match ping {
                Ok(_) => unreachable_since = None,
                Err(e) => {
                    let since = *unreachable_since.get_or_insert(now);
                    if now.duration_since(since) >= shared.options.no_worker_timeout {
                        fail_waiters(
                            &shared,
                            |_| true,
                            &format!(
                                "lost contact with Redis at {} for {:?} ({e}); check that it runs, then run the workflow again",
                                shared.url, shared.options.no_worker_timeout
                            ),
                        );
                        unreachable_since = None;
                    }
                    continue;
                }
            }
        }
        let (queues, suspects) = {
            let mut waiting = shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut queues: Vec<String> = waiting.values().map(|w| w.queue.clone()).collect();
            queues.sort_unstable();
            queues.dedup();
            let mut suspects = Vec::new();
            for (att, waiter) in waiting.iter_mut() {
                if suspects.len() == 256 {
                    break;
                }
                if let Some(entry) = &waiter.entry
                    && now.duration_since(waiter.since) > Duration::from_secs(3)
                    && now.duration_since(waiter.checked) > Duration::from_secs(5)
                {
                    waiter.checked = now;
                    suspects.push((att.clone(), waiter.queue.clone(), entry.clone()));
                }
            }
            (queues, suspects)
        };
        unserved_since.retain(|q, _| queues.contains(q));
        for queue in queues {
            // A queue's group exists before any job waits on it long: XPENDING-based leases
            // need it, and a worker that starts later reads from the stream's beginning.
            if !known_groups.contains(&queue)
                && ensure_group(&mut conn, &shared.url, &shared.keys.queue(&queue))
                    .await
                    .is_ok()
            {
                known_groups.insert(queue.clone());
            }
            let live: redis::RedisResult<Vec<String>> = LIVE_WORKERS
                .key(shared.keys.workers(&queue))
                .key(shared.keys.builds(&queue))
                .arg(WORKER_TTL.as_millis() as u64)
                .arg(remote::build_id())
                .invoke_async(&mut conn)
                .await;
            match live {
                Ok(live) => {
                    let count = |i: usize| live.get(i).and_then(|n| n.parse::<u64>().ok());
                    if count(1).unwrap_or(0) > 0 {
                        unserved_since.remove(&queue);
                        continue;
                    }
                    let since = *unserved_since.entry(queue.clone()).or_insert(now);
                    if now.duration_since(since) >= shared.options.no_worker_timeout {
                        fail_queue(&shared, &queue, live.get(2..).unwrap_or_default());
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "graflow::handlers", error = %e, "cannot count live workers");
                }
            }
        }
        for (att, queue, entry) in suspects {
            let lost: redis::RedisResult<u64> = LOST
                .key(shared.keys.queue(&queue))
                .key(shared.keys.done(&att))
                .arg(&entry)
                .invoke_async(&mut conn)
                .await;
            if let Ok(1) = lost {
                let waiter = shared
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&att);
                if let Some(waiter) = waiter {
                    let _ = waiter.tx.send(Err(format!(
                        "its job {entry} vanished from `{}` at {} without an outcome (was Redis restarted without persistence, or the stream deleted?); the attempt may be retried",
                        shared.keys.queue(&queue),
                        shared.url
                    )));
                }
            }
        }
    }
}

/// Fails the attempts waiting on `queue`, which no live worker of this build served for the
/// no-worker timeout; `others`: the builds of the live workers there.
fn fail_queue(shared: &Shared, queue: &str, others: &[String]) {
    let start = format!(
        "`<your program> --graflow-worker {} --graflow-worker-queue {queue}`",
        shared.url
    );
    let message = if others.is_empty() {
        format!(
            "no live worker has served queue `{queue}` at {} for {:?}; start one: {start}",
            shared.url, shared.options.no_worker_timeout
        )
    } else {
        format!(
            "no live worker of this build has served queue `{queue}` at {} for {:?}: the job needs build {}, and the live workers there are of build {} (another build of this program cannot run this build's tasks); start a worker of this build, this same binary: {start}",
            shared.url,
            shared.options.no_worker_timeout,
            remote::build_id(),
            others.join(", ")
        )
    };
    fail_waiters(shared, |w| w.queue == queue, &message);
}

/// Fails the waiting attempts `which` selects with `message`.
fn fail_waiters(shared: &Shared, which: impl Fn(&Waiter) -> bool, message: &str) {
    let failed: Vec<Waiter> = {
        let mut waiting = shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let atts: Vec<String> = waiting
            .iter()
            .filter(|(_, w)| which(w))
            .map(|(att, _)| att.clone())
            .collect();
        atts.iter().filter_map(|att| waiting.remove(att)).collect()
    };
    for waiter in failed {
        let _ = waiter.tx.send(Err(message.to_owned()));
    }
}
