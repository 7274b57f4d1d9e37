//! [`WorkerOptions`]: how a worker is set up, and the check of its settings before it starts.

use std::time::Duration;

use crate::RedisError;
use crate::connect::TlsOptions;
use crate::keys::{DEFAULT_QUEUE, check_name};

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

    pub(super) fn check(&self) -> Result<(), RedisError> {
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
