//! [`RedisOptions`]: how the "redis" handler is set up.

use std::time::Duration;

use crate::connect::TlsOptions;
use crate::keys::DEFAULT_QUEUE;

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
