//! What a running worker shares between its loops and attempts: its connection, settings and
//! counters, and the table of the jobs it holds, with the way to stop the attempt that holds
//! one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use graflow_core::WorkflowEngine;
use redis::aio::ConnectionManager;
use tokio::sync::{Semaphore, oneshot};

use super::options::WorkerOptions;
use super::stats::Counters;
use crate::keys::Keys;

/// Why an attempt must stop before it ends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stop {
    /// The engine cancelled it (timeout, cancelled run).
    Cancelled,
    /// Another worker took the job over: this one's lease ran out.
    LeaseLost,
}

/// A job this worker holds (running or waiting for a run slot).
pub(super) struct Held {
    /// Which attempt holds the job (a job is held once: see `attempt`).
    pub(super) generation: u64,
    /// The attempt key, once the job is read.
    pub(super) att: Option<String>,
    /// Stops the attempt; taken when used.
    pub(super) stop: Option<oneshot::Sender<Stop>>,
}

/// Numbers the attempts of this process, so that an attempt forgets only its own hold.
pub(super) static GENERATION: AtomicU64 = AtomicU64::new(0);

/// What a running worker's loops and attempts share.
pub(super) struct State {
    /// The Redis URL, its password hidden.
    pub(super) url: String,
    /// This worker's consumer name.
    pub(super) name: String,
    pub(super) keys: Keys,
    pub(super) options: WorkerOptions,
    pub(super) conn: ConnectionManager,
    pub(super) handlers: WorkflowEngine,
    /// Run slots: one per attempt running.
    pub(super) permits: Arc<Semaphore>,
    /// Jobs held (running or waiting for a slot): at most twice the concurrency, so that the
    /// next jobs are already here when a slot frees, and no worker hoards a queue.
    pub(super) held_slots: Arc<Semaphore>,
    /// Jobs this worker holds, by entry id (ids are unique per stream; the key adds the queue).
    pub(super) held: Mutex<HashMap<(String, String), Held>>,
    /// Engines whose liveness key this worker found absent, and since when (see
    /// `engines::engine_gone`).
    pub(super) absent: Mutex<HashMap<String, Instant>>,
    /// Set on shutdown: no new attempt starts.
    pub(super) stopping: AtomicBool,
    pub(super) counts: Counters,
}

impl State {
    /// The state of a worker named `name`, connected by `conn`, before it holds any job.
    pub(super) fn new(
        url: String,
        name: String,
        keys: Keys,
        options: WorkerOptions,
        conn: ConnectionManager,
        handlers: WorkflowEngine,
    ) -> State {
        State {
            url,
            name,
            keys,
            permits: Arc::new(Semaphore::new(options.concurrency)),
            held_slots: Arc::new(Semaphore::new(options.concurrency.saturating_mul(2))),
            options,
            conn,
            handlers,
            held: Mutex::new(HashMap::new()),
            absent: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            counts: Counters::default(),
        }
    }

    /// Whether an attempt of this worker holds entry `id` of `queue`.
    pub(super) fn holds(&self, queue: &str, id: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&(queue.to_owned(), id.to_owned()))
    }

    /// Whether shutdown began.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// Stops the attempt that holds entry `id` of `queue`, if one does and can still be stopped.
pub(super) fn stop(state: &State, queue: &str, id: &str, why: Stop) {
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
pub(super) struct Release<'a> {
    pub(super) state: &'a State,
    pub(super) key: (String, String),
    pub(super) generation: u64,
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
