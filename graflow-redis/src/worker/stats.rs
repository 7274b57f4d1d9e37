//! [`WorkerStats`]: what a worker did, counted while it runs and returned when it stops.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// The live counts behind [`WorkerStats`], bumped by the worker's tasks.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) answered: AtomicU64,
    pub(super) reclaimed: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) handed_back: AtomicU64,
}

impl Counters {
    /// The counts now.
    pub(super) fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            answered: self.answered.load(Ordering::Relaxed),
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            handed_back: self.handed_back.load(Ordering::Relaxed),
        }
    }
}
