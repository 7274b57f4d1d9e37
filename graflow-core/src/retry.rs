//! Retry policy: how many times a failed attempt is tried again, and how long to wait.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff: attempt `n + 1` waits `initial * factor^(n - 1)`, capped at `max`,
/// optionally with jitter (a uniform draw between half and the whole delay).
///
/// The defaults are Graflow's: no retry, 1 s initial delay, factor 2, at most 60 s, no jitter.
/// In `#[task]`: `retries = 3, retry_delay = "200ms", retry_backoff = 2.0,
/// retry_max_delay = "10s", retry_jitter = true`. In code, start from [`RetryPolicy::retries`]
/// or [`RetryPolicy::DEFAULT`] and chain the `with_*` builders:
///
/// ```
/// use std::time::Duration;
/// use graflow_core::RetryPolicy;
///
/// let policy = RetryPolicy::retries(3)
///     .with_initial_delay(Duration::from_millis(200))
///     .with_max_delay(Duration::from_secs(10))
///     .with_jitter(true);
/// assert_eq!(policy.max_attempts(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `retries + 1` attempts at most).
    pub retries: u32,
    /// Delay before the first retry.
    pub initial_delay: Duration,
    /// Multiplier applied to the delay after each retry (at least 1).
    pub factor: f64,
    /// Upper bound of any delay.
    pub max_delay: Duration,
    /// Randomise each delay between half and all of it, so retries of parallel tasks spread out.
    pub jitter: bool,
}

impl RetryPolicy {
    /// No retry, Graflow's backoff defaults.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        retries: 0,
        initial_delay: Duration::from_secs(1),
        factor: 2.0,
        max_delay: Duration::from_secs(60),
        jitter: false,
    };

    /// Up to `retries` retries after the first attempt, with the default backoff.
    pub const fn retries(retries: u32) -> Self {
        RetryPolicy {
            retries,
            ..Self::DEFAULT
        }
    }

    /// Sets the number of retries after the first attempt.
    pub const fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the delay before the first retry.
    pub const fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the multiplier applied to the delay after each retry (below 1, or not finite,
    /// counts as 1).
    pub const fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the upper bound of any delay.
    pub const fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Randomises each delay between half and all of it.
    pub const fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The most attempts this policy allows.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The wait before the attempt after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        let secs = self.initial_delay.as_secs_f64() * factor.powi(exponent);
        let capped = secs.min(self.max_delay.as_secs_f64()).max(0.0);
        let delay = Duration::try_from_secs_f64(capped).unwrap_or(self.max_delay);
        if self.jitter {
            delay.mul_f64(0.5 + 0.5 * unit_random())
        } else {
            delay
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A uniform number in [0, 1) from the standard library's per-process random keys.
fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_capped() {
        let p = RetryPolicy {
            retries: 5,
            initial_delay: Duration::from_millis(100),
            factor: 3.0,
            max_delay: Duration::from_millis(500),
            jitter: false,
        };
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(300));
        assert_eq!(p.delay_after(3), Duration::from_millis(500));
        assert_eq!(p.max_attempts(), 6);
    }

    #[test]
    fn jitter_stays_between_half_and_whole() {
        let p = RetryPolicy {
            jitter: true,
            initial_delay: Duration::from_millis(100),
            ..RetryPolicy::DEFAULT
        };
        for _ in 0..100 {
            let d = p.delay_after(1);
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
    }
}
