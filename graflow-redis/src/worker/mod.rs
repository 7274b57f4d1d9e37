//! [`Worker`]: the worker side. Reads jobs from its queues in the consumer group, runs each
//! through a handler registered in it (by default "direct", in this process), renews the lease
//! of every job it holds, takes over the jobs of dead workers, and records each outcome once.
//!
//! | file | what |
//! |---|---|
//! | `options.rs` | [`WorkerOptions`] and their check |
//! | `stats.rs` | [`WorkerStats`] and the counters behind them |
//! | `state.rs` | what the loops share: the jobs held, and how to stop an attempt |
//! | `engines.rs` | whether a job's engine is gone |
//! | `outcome.rs` | an outcome's frame, recorded with the acknowledgement |
//! | `dead_letter.rs` | jobs moved to the dead-letter stream |
//! | `hand_back.rs` | jobs of another build, handed back for a worker of that build |
//! | `attempt.rs` | one job: checked, run, its outcome recorded |
//! | `read.rs` | the consumer-group read loop, and the jobs a lost read gave this worker |
//! | `claim.rs` | takeover of jobs whose lease ran out, removal of gone consumers |
//! | `lease.rs` | the lease keeper thread: renewals, presence, stopping cancelled attempts |
//! | `mod.rs` | [`Worker`]: its handlers, start (connections, groups, loops) and shutdown |
//!
//! Each file uses only files listed above it (`tests/module_graph.rs` checks that they form
//! no cycle).

mod ask;
#[cfg(fuzzing)]
pub(crate) use ask::read as read_ask_reply;
mod attempt;
mod claim;
mod dead_letter;
mod engines;
mod hand_back;
mod lease;
mod options;
mod outcome;
mod read;
mod state;
mod stats;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use graflow_core::backend::build_id;
use graflow_core::{TaskHandler, WorkflowEngine};

pub use options::WorkerOptions;
pub use stats::WorkerStats;

use crate::RedisError;
use crate::connect::{connect, ensure_group};
use crate::keys::{GROUP, Keys, process_name, redact};
use crate::scripts::REMOVE_CONSUMER;
use state::State;

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
        let state = Arc::new(State::new(
            redact(&self.url),
            name,
            keys,
            self.options,
            conn,
            self.handlers,
        ));
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
        let lease_keeper = lease::start_lease_keeper(state.clone(), &self.url)?;
        let reader = tokio::spawn(read::read_loop(state.clone(), blocking));
        let reclaimer = tokio::spawn(claim::reclaim_loop(state.clone()));
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
        let stats = state.counts.snapshot();
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
