//! The Redis keys one deployment uses, all under one prefix (default `graflow`), and the names
//! a user chooses (queues), validated.

use crate::RedisError;

/// The queue a task goes to when it names none (`#[task(handler = "redis", queue = "...")]`).
pub const DEFAULT_QUEUE: &str = "default";

/// The consumer group every worker of a queue reads in.
pub(crate) const GROUP: &str = "graflow-workers";

/// How long an attempt's "done" and "cancel" marks are kept (they make a late or duplicate
/// outcome, and a cancelled entry delivered later, harmless).
pub(crate) const MARK_TTL_SECS: u64 = 24 * 3600;

/// How often an engine renews its liveness key ([`Keys::engine`]).
pub(crate) const ENGINE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an engine's liveness key lives without renewal: three refresh periods.
pub(crate) const ENGINE_TTL_SECS: u64 = 6;

/// How long a worker must see an engine's liveness key absent before it takes the engine for
/// gone: more than two refresh periods, so that an engine whose key Redis lost (a restart
/// without persistence) has written it again.
pub(crate) const ENGINE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Key names.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Result<Self, RedisError> {
        check_name("key prefix", prefix)?;
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    /// The stream of a queue's invocations.
    pub(crate) fn queue(&self, queue: &str) -> String {
        format!("{}:queue:{queue}", self.prefix)
    }

    /// The dead-letter stream of a queue.
    pub(crate) fn dead(&self, queue: &str) -> String {
        format!("{}:dead:{queue}", self.prefix)
    }

    /// The sorted set of a queue's live workers (member: worker name, score: last heartbeat,
    /// in Redis's own clock).
    pub(crate) fn workers(&self, queue: &str) -> String {
        format!("{}:workers:{queue}", self.prefix)
    }

    /// The hash of a queue's live workers' builds (field: worker name, value: build id).
    pub(crate) fn builds(&self, queue: &str) -> String {
        format!("{}:builds:{queue}", self.prefix)
    }

    /// One engine's reply stream.
    pub(crate) fn replies(&self, client: &str) -> String {
        format!("{}:replies:{client}", self.prefix)
    }

    /// An engine's liveness key: renewed every [`ENGINE_REFRESH`] while the engine lives, and
    /// with each job it queues; gone [`ENGINE_TTL_SECS`] after it ends, however it ends.
    pub(crate) fn engine(&self, client: &str) -> String {
        format!("{}:engine:{client}", self.prefix)
    }

    /// Set, once, by the first outcome of an attempt.
    pub(crate) fn done(&self, attempt: &str) -> String {
        format!("{}:done:{attempt}", self.prefix)
    }

    /// Set, with the entry id, when an attempt's job is queued (a retried XADD adds no second
    /// entry).
    pub(crate) fn queued(&self, attempt: &str) -> String {
        format!("{}:queued:{attempt}", self.prefix)
    }

    /// The reply to question `key` of an attempt (a task may ask several at once), pushed by
    /// its engine, popped by the worker that asked.
    pub(crate) fn answer(&self, attempt: &str, key: &str) -> String {
        format!("{}:answer:{attempt}:{key}", self.prefix)
    }

    /// Set when the engine no longer wants an attempt (timeout, cancelled run).
    pub(crate) fn cancel(&self, attempt: &str) -> String {
        format!("{}:cancel:{attempt}", self.prefix)
    }
}

/// A queue name or prefix: 1 to 64 of `A-Z a-z 0-9 _ - .`.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), RedisError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(RedisError::Setting {
            setting: what.to_owned(),
            message: format!(
                "`{name}` is not a valid name: use 1 to 64 letters, digits, `_`, `-` or `.`"
            ),
        });
    }
    Ok(())
}

/// The URL with its password, if any, replaced by `***`: what error messages and logs show.
pub(crate) fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.rsplit_once('@')
    {
        let user = auth.split_once(':').map_or(auth, |(user, _)| user);
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// A name for this process as a worker or client: host, pid and a random part.
pub(crate) fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        random_u64() & 0xff_ffff
    )
}

/// A random number from the standard library's per-process random keys.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(check_name("queue", "gpu-1.large_x").is_ok());
        for bad in ["", "a b", "q:1", "ü", &"x".repeat(65)] {
            let error = check_name("queue", bad).unwrap_err().to_string();
            assert!(error.contains("invalid queue"), "{error}");
        }
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://alice:s3cret@h:1/0"),
            "redis://alice:***@h:1/0"
        );
        assert_eq!(redact("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
    }
}
