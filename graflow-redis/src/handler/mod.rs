//! [`RedisHandler`]: the engine side. Each attempt is a job on a queue's stream; the first
//! reply for it on this handler's reply stream is its outcome.
//!
//! All Redis I/O runs on a small runtime of the handler's own, so a handler works from any
//! runtime (`engine.execute(..).await` in `#[tokio::main]`, or `engine.run(..)`, which starts a
//! runtime per run).
//!
//! | file | what |
//! |---|---|
//! | `options.rs` | [`RedisOptions`] |
//! | `runtime.rs` | the handler's own I/O runtime |
//! | `shared.rs` | what its tasks share: the connection, the attempts waiting for replies |
//! | `cancel.rs` | an attempt the engine dropped, cancelled in Redis |
//! | `enqueue.rs` | queueing a job once; this engine's liveness key |
//! | `dispatch.rs` | the reply dispatcher |
//! | `monitor.rs` | the no-worker, lost-job and lost-Redis monitor |
//! | `mod.rs` | [`RedisHandler`]: connecting, and each attempt as a job |
//!
//! Each file uses only files listed above it.

mod cancel;
mod dispatch;
mod enqueue;
mod monitor;
mod options;
mod runtime;
mod shared;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use graflow_core::backend as remote;
use graflow_core::{
    AttemptError, ExecutionContext, HandlerFailure, Problem, Task, TaskHandler, Value,
};
use graflow_protocol::Limits;
use tokio::sync::oneshot;

use crate::RedisError;
use crate::connect::connect;
use crate::entry::Reply;
use crate::entry::{Job, ReplyKind};
use crate::keys::{Keys, check_name, process_name, redact};
use cancel::Pending;
use dispatch::dispatch;
use enqueue::{enqueue, keep_alive};
use graflow_core::feedback::{FeedbackError, FeedbackRequest};
use monitor::monitor;
use runtime::IoRuntime;
use shared::{Shared, Waiter};

pub use options::RedisOptions;

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
    /// `rediss://host:port/db` for TLS: see [`TlsOptions`](crate::TlsOptions)) with the default [`RedisOptions`]. Fails at once, naming the URL, when nothing answers
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
        let (queue, inner) = task_options(task, &shared.options.queue)
            .map_err(|m| fail(m).with_kind(HandlerFailure::InvalidConfig))?;
        let invocation = remote::invocation(task, ctx)?;
        let nonce = invocation.nonce;
        let inv = invocation
            .into_frame()
            .map_err(|e| {
                AttemptError::handler_source(
                    task.id(),
                    handler,
                    "could not encode the invocation",
                    e,
                )
                .with_kind(HandlerFailure::InvalidConfig)
            })?
            .into_bytes();
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
        let (asks, mut asks_rx) = tokio::sync::mpsc::unbounded_channel();
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
                    asks,
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
            .with_kind(HandlerFailure::Unavailable)
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
        let reply = self.wait_answering(task, ctx, &att, rx, &mut asks_rx).await;
        let reply = reply
            .map_err(|_| fail("the redis handler stopped while the task was waiting".to_owned()))?
            .map_err(|(kind, message)| fail(message).with_kind(kind))?;
        pending.armed = false;
        ctx.set_runner(format!(
            "worker {}, delivery {}",
            reply.worker, reply.delivery
        ));
        crate::logs::replay(&reply.logs, ctx, &reply.worker);
        match reply.kind {
            ReplyKind::Dead { reason } => Err(fail(reason)),
            // Questions never end an attempt (the dispatcher hands them on).
            ReplyKind::Ask { .. } => Err(fail(
                "the worker's question came where its outcome was expected".to_owned(),
            )),
            ReplyKind::Outcome(bytes) => {
                let limits = Limits::default().with_max_frame(bytes.len() as u64 + 64);
                let from = format!("worker {}", reply.worker);
                remote::apply_outcome_bytes(task, ctx, nonce, &bytes, &limits, &from)
            }
        }
    }
}

impl RedisHandler {
    /// Waits for the attempt's reply, answering its worker's questions for a person meanwhile:
    /// each goes to the engine ([`ExecutionContext::ask_for_task`]), and its reply onto the
    /// attempt's answers list, which the worker polls.
    async fn wait_answering(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
        att: &str,
        mut rx: oneshot::Receiver<Result<Reply, (HandlerFailure, String)>>,
        asks_rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    ) -> Result<Result<Reply, (HandlerFailure, String)>, oneshot::error::RecvError> {
        use futures_util::StreamExt as _;
        let mut asking = futures_util::stream::FuturesUnordered::new();
        let mut asked = 0usize;
        loop {
            tokio::select! {
                reply = &mut rx => return reply,
                Some((key, request)) = asks_rx.recv() => {
                    asked += 1;
                    let answer = match serde_json::from_str::<FeedbackRequest>(&request) {
                        Ok(_) if asked > MAX_ASKS => Err(FeedbackError::Invalid {
                            task: task.id().to_owned(),
                            message: format!("an attempt may ask at most {MAX_ASKS} questions"),
                        }),
                        Ok(request) => Ok(ctx.ask_for_task(&key, request)),
                        Err(e) => Err(FeedbackError::Invalid {
                            task: task.id().to_owned(),
                            message: format!("the worker's request could not be read: {e}"),
                        }),
                    };
                    asking.push(async move {
                        let reply = match answer {
                            Ok(waiting) => waiting.await,
                            Err(error) => Err(error),
                        };
                        (key, reply)
                    });
                }
                Some((key, reply)) = asking.next(), if !asking.is_empty() => {
                    let pushed = serde_json::json!({ "key": key, "reply": reply }).to_string();
                    let shared = self.shared.clone();
                    let list = shared.keys.answer(att, &key);
                    let sent = self.io.handle().spawn(async move {
                        let mut conn = shared.conn.clone();
                        redis::pipe()
                            .rpush(&list, pushed)
                            .ignore()
                            .expire(&list, ANSWERS_TTL_SECS)
                            .ignore()
                            .query_async::<()>(&mut conn)
                            .await
                    });
                    match sent.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(target: "graflow::handlers", task = %task.id(), error = %e, "cannot send the reply to a question to its worker"),
                        Err(e) => tracing::warn!(target: "graflow::handlers", task = %task.id(), error = %e, "the task sending a reply to its worker ended"),
                    }
                }
            }
        }
    }
}

/// The most questions one attempt may ask.
const MAX_ASKS: usize = 256;
/// How long an attempt's answers list lives unread.
const ANSWERS_TTL_SECS: i64 = 3600;
