//! A handler's concurrency limit across every run of an engine: a counter of tasks in flight,
//! shared by the runs' schedulers, that wakes a scheduler waiting for room when another run's
//! task ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;

/// At most `limit` tasks of one handler in flight, over all of an engine's runs.
#[derive(Debug)]
pub(crate) struct Gate {
    limit: usize,
    used: AtomicUsize,
    /// Schedulers that found no room, woken when a task ends.
    waiting: Mutex<Vec<Waker>>,
    /// `waiting.len()`, read without the lock on every release.
    waiters: AtomicUsize,
}

/// A place taken in a [`Gate`]: given back when dropped (the attempt ended, or its future was
/// dropped with its run).
#[derive(Debug)]
pub(crate) struct Permit(Arc<Gate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiters.load(Ordering::SeqCst) > 0 {
            let woken = {
                let mut waiting = self
                    .0
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // Reset under the lock: a waker registered after this lock is released counts.
                self.0.waiters.store(0, Ordering::SeqCst);
                std::mem::take(&mut *waiting)
            };
            for waker in woken {
                waker.wake();
            }
        }
    }
}

impl Gate {
    pub(crate) fn new(limit: usize) -> Arc<Gate> {
        Arc::new(Gate {
            limit: limit.max(1),
            used: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            waiters: AtomicUsize::new(0),
        })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// How many more tasks may start now.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.used.load(Ordering::SeqCst))
    }

    fn try_take(self: &Arc<Self>) -> Option<Permit> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .ok()
            .map(|_| Permit(self.clone()))
    }

    /// A place, or `None` and `waker` is woken once a task of any run ends.
    pub(crate) fn take(self: &Arc<Self>, waker: &Waker) -> Option<Permit> {
        if let Some(permit) = self.try_take() {
            return Some(permit);
        }
        self.watch(waker);
        // A place given back before the waker was registered would wake nobody: look again.
        self.try_take()
    }

    /// Has `waker` woken once a task of any run ends (each wake-up is for one look: whoever
    /// still finds no room watches again). Returns whether there is room already, looked at
    /// after registering, so that a place given back meanwhile is not missed.
    pub(crate) fn watch(&self, waker: &Waker) -> bool {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if !waiting.iter().any(|w| w.will_wake(waker)) {
                waiting.push(waker.clone());
            }
            self.waiters.store(waiting.len(), Ordering::SeqCst);
        }
        self.room() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn at_most_limit_places_and_a_waiter_is_woken_when_one_is_given_back() {
        let gate = Gate::new(2);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let a = gate.take(&waker).unwrap();
        let _b = gate.take(&waker).unwrap();
        assert!(gate.take(&waker).is_none());
        assert_eq!(gate.room(), 0);
        assert!(!flag.0.load(Ordering::SeqCst));
        drop(a);
        assert!(flag.0.load(Ordering::SeqCst), "the waiter was woken");
        assert_eq!(gate.room(), 1);
        assert!(gate.take(&waker).is_some());
    }
}
