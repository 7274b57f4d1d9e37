//! [`PoolOptions`]: how a handler's warm runners are pooled, and whether a task uses them.

use std::time::Duration;

use crate::config::ConfigValue;
use crate::graph::{Problem, Task};

/// The task option that asks for a warm runner (`#[task(handler = "process", reuse = true)]`);
/// `reuse = false` asks for a fresh runner even where the handler's pool reuses by default.
pub const REUSE_OPTION: &str = "reuse";

/// How a handler's warm runners are pooled.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOptions {
    pub(super) size: usize,
    pub(super) max_idle: usize,
    pub(super) idle_timeout: Duration,
    pub(super) max_uses: u32,
    pub(super) reuse: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            size: 4,
            max_idle: 16,
            idle_timeout: Duration::from_secs(60),
            max_uses: 1000,
            reuse: false,
        }
    }
}

impl PoolOptions {
    /// Up to 4 runners per environment and 16 idle ones in all, stopped after 60 s idle or
    /// 1,000 tasks; only tasks with `reuse = true` use them.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many runners one environment (one key) may have at once, busy or idle (at least
    /// 1). A task that finds them all busy waits for one.
    pub fn with_size(mut self, size: usize) -> Self {
        self.size = size.max(1);
        self
    }

    /// How many idle runners the pool keeps in all, whatever their environments (default 16):
    /// past it, the one idle longest is stopped (tasks whose environments differ, e.g. by an
    /// `env` value, do not accumulate warm containers).
    pub fn with_max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// How long a runner may wait for its next task before it is stopped.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many tasks one runner serves before it is replaced (at least 1).
    pub fn with_max_uses(mut self, uses: u32) -> Self {
        self.max_uses = uses.max(1);
        self
    }

    /// Whether tasks without a `reuse` option use warm runners (default: no; a fresh runner
    /// per task).
    pub fn reuse_by_default(mut self, reuse: bool) -> Self {
        self.reuse = reuse;
        self
    }

    /// See [`PoolOptions::with_size`].
    pub fn size(&self) -> usize {
        self.size
    }

    /// See [`PoolOptions::with_max_idle`].
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// See [`PoolOptions::with_idle_timeout`].
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// See [`PoolOptions::with_max_uses`].
    pub fn max_uses(&self) -> u32 {
        self.max_uses
    }

    /// Whether `task` runs on a warm runner: its `reuse` option, else the pool's default. A
    /// `reuse` that is not a boolean is a problem naming the task and handler.
    pub fn reuses(&self, task: &Task) -> Result<bool, Problem> {
        match task.handler_config().get(REUSE_OPTION) {
            None => Ok(self.reuse),
            Some(ConfigValue::Bool(reuse)) => Ok(*reuse),
            Some(other) => Err(Problem::invalid_config(
                task.id(),
                task.handler(),
                format!(
                    "`{REUSE_OPTION}` must be true or false, not {} {other:?}",
                    other.kind()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::PoolOptions;
    use crate::config::ConfigValue;

    #[graflow_macros::task(crate = "crate", handler = "process")]
    fn pooled() -> u8 {
        1
    }

    #[test]
    fn limits_are_at_least_one_and_defaults_say_what_they_are() {
        let options = PoolOptions::new()
            .with_size(0)
            .with_max_uses(0)
            .with_max_idle(0)
            .with_idle_timeout(Duration::from_millis(5));
        assert_eq!(options.size(), 1);
        assert_eq!(options.max_uses(), 1);
        assert_eq!(options.max_idle(), 0);
        assert_eq!(options.idle_timeout(), Duration::from_millis(5));
        let default = PoolOptions::new();
        assert_eq!(
            (default.size(), default.max_idle(), default.max_uses()),
            (4, 16, 1_000)
        );
        assert_eq!(default.idle_timeout(), Duration::from_secs(60));
    }

    #[test]
    fn a_task_reuses_as_it_says_else_as_the_pool_says_and_a_bad_value_is_named() {
        let plain = pooled::task();
        assert!(!PoolOptions::new().reuses(&plain).unwrap());
        assert!(
            PoolOptions::new()
                .reuse_by_default(true)
                .reuses(&plain)
                .unwrap()
        );
        let fresh = pooled::task().with_config("reuse", ConfigValue::Bool(false));
        assert!(
            !PoolOptions::new()
                .reuse_by_default(true)
                .reuses(&fresh)
                .unwrap()
        );
        let warm = pooled::task().with_config("reuse", ConfigValue::Bool(true));
        assert!(PoolOptions::new().reuses(&warm).unwrap());
        let bad = pooled::task().with_config("reuse", ConfigValue::Str("yes".into()));
        let problem = PoolOptions::new().reuses(&bad).unwrap_err().to_string();
        assert!(
            problem.contains("`reuse` must be true or false"),
            "{problem}"
        );
        assert!(problem.contains("pooled"), "{problem}");
    }
}
