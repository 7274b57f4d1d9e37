//! The engine's side of human feedback: where a task's question goes ([`Asker`]: the engine's
//! run store, or, in a runner or a worker, the way back to the engine), how the engine waits
//! for the answer ([`wait`]), and which tasks stopped to wait ([`Desk`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::feedback::{AnswerFuture, FeedbackAsk, FeedbackError, FeedbackRequest, FeedbackStatus};
use crate::record::RunRecord;

/// How often a waiting task looks for its answer in the store.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// Where the questions of a run's tasks go, when not to the engine's own store: a runner
/// process sends them to its host over the runner protocol, a queue worker over its queue
/// (`graflow-redis`). The answer comes back the same way.
pub trait Asker: Send + Sync + 'static {
    /// Asks `request` for task `task` (`key`: which of its questions it is: see
    /// [`FeedbackAsk::key`]); resolves to the request's id and its answer, or why there is none.
    fn ask(&self, task: &str, key: &str, request: FeedbackRequest) -> AnswerFuture;
}

/// A task that stopped to wait for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitingRequest {
    /// The task.
    pub task: String,
    /// The request it waits for.
    pub request_id: String,
    /// The question.
    pub prompt: String,
}

/// Which of a run's tasks stopped to wait, or had their request cancelled: neither is retried.
#[derive(Default)]
pub(crate) struct Desk {
    /// Whether any task ever stopped here (one relaxed load for a run that asks nothing).
    active: AtomicBool,
    /// A task began to wait for a person: the scheduler checkpoints the run (a program killed
    /// while it waits can be resumed), woken through `waker`.
    asked: AtomicBool,
    waker: futures_util::task::AtomicWaker,
    waiting: Mutex<FxHashMap<u32, Vec<WaitingRequest>>>,
    stopped: Mutex<FxHashSet<u32>>,
    /// Nodes whose inline attempt asked: run again where they may wait.
    rerun: Mutex<FxHashSet<u32>>,
    /// The run is over (ended, or its future dropped): nobody waits for answers any more.
    closed: AtomicBool,
}

impl Desk {
    /// `node` waits for `request`: its attempt ends, and it is not retried.
    pub(crate) fn suspend(&self, node: u32, request: WaitingRequest) {
        self.stop(node);
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node)
            .or_default()
            .push(request);
    }

    /// `node`'s body, run inline, asked a person: its attempt is run again off the scheduler's
    /// thread.
    pub(crate) fn rerun(&self, node: u32) {
        self.active.store(true, Ordering::Relaxed);
        self.rerun
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node);
    }

    /// Whether `node`'s inline attempt must run again (taken).
    pub(crate) fn take_rerun(&self, node: u32) -> bool {
        self.active.load(Ordering::Relaxed)
            && self
                .rerun
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&node)
    }

    /// The run is over: its tasks' waits end at their next look (a synchronous body blocked in
    /// `.wait()` returns, its result discarded).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// A task began to wait for a person: the scheduler is told to checkpoint the run.
    pub(crate) fn began_waiting(&self) {
        self.asked.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Whether a task began to wait since the last call (taken).
    pub(crate) fn take_began_waiting(&self) -> bool {
        self.asked.load(Ordering::Relaxed) && self.asked.swap(false, Ordering::SeqCst)
    }

    /// The scheduler's waker, for [`Desk::began_waiting`].
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// `node`'s attempt ends for a reason no retry changes (its request was cancelled).
    pub(crate) fn stop(&self, node: u32) {
        self.active.store(true, Ordering::Relaxed);
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node);
    }

    /// Whether `node`'s attempt ended for a reason no retry changes.
    pub(crate) fn stops(&self, node: u32) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        !stopped.is_empty() && stopped.contains(&node)
    }

    /// What `node` waits for, if it stopped to wait (taken: its attempt has ended).
    pub(crate) fn take_waiting(&self, node: u32) -> Option<Vec<WaitingRequest>> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        self.stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node);
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node)
    }
}

/// What the engine needs to wait for an answer in its store.
pub(crate) struct Waiter<'a> {
    pub record: Arc<dyn RunRecord>,
    pub desk: &'a Desk,
    pub run_id: &'a str,
    pub task: &'a str,
    pub key: &'a str,
}

/// What a wait ended with.
pub(crate) enum Waited {
    /// The answer, or why there is none.
    Done(Result<(String, crate::feedback::FeedbackAnswer), FeedbackError>),
    /// Nobody answered in time: the task stops and the run waits.
    TimedOut(WaitingRequest, FeedbackError),
    /// The request was cancelled.
    Cancelled(FeedbackError),
}

/// Keeps `request` in the store (or finds it there: a task asking again after a retry or a
/// resume) and waits for its answer, looking every [`POLL`], at most the request's timeout.
pub(crate) async fn wait(
    waiter: Waiter<'_>,
    request: &FeedbackRequest,
    began_waiting: impl FnOnce(),
) -> Waited {
    let Waiter {
        record,
        desk,
        run_id,
        task,
        key,
    } = waiter;
    let store_error = |error: crate::record::RecordError| match error.kind {
        crate::record::RecordErrorKind::Refused => FeedbackError::Invalid {
            task: task.to_owned(),
            message: error.message,
        },
        _ => FeedbackError::Store {
            task: task.to_owned(),
            message: error.to_string(),
        },
    };
    let ask = FeedbackAsk { task, key, request };
    let mut state = match record.ask(ask).await {
        Ok(state) => state,
        Err(error) => return Waited::Done(Err(store_error(error))),
    };
    if state.status == FeedbackStatus::Open {
        began_waiting();
    }
    let started = tokio::time::Instant::now();
    let deadline = started + request.timeout;
    let mut warned = false;
    loop {
        match state.status {
            FeedbackStatus::Answered(answer) => return Waited::Done(Ok((state.id, answer))),
            FeedbackStatus::Cancelled { reason, by } => {
                return Waited::Cancelled(FeedbackError::Cancelled {
                    task: task.to_owned(),
                    request_id: state.id,
                    reason,
                    by,
                });
            }
            FeedbackStatus::Open => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            record.feedback_timed_out(&state.id);
            let waiting = WaitingRequest {
                task: task.to_owned(),
                request_id: state.id.clone(),
                prompt: request.prompt.clone(),
            };
            let error = FeedbackError::TimedOut {
                task: task.to_owned(),
                run_id: run_id.to_owned(),
                request_id: state.id,
                prompt: request.prompt.clone(),
                waited: now.saturating_duration_since(started),
            };
            return Waited::TimedOut(waiting, error);
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
        if desk.closed.load(Ordering::SeqCst) {
            return Waited::Done(Err(FeedbackError::Unavailable {
                task: task.to_owned(),
                reason:
                    "its run is over (cancelled, or it failed meanwhile); the request stays open"
                        .to_owned(),
            }));
        }
        match record.feedback(&state.id).await {
            Ok(next) => state = next,
            Err(error) if error.is_retryable() => {
                // The store is away for now: the answer may be there once it is back.
                if !warned {
                    warned = true;
                    tracing::warn!(target: "graflow::engine", task, request = %state.id, error = %error, "cannot read the answer to a request yet; still waiting");
                }
            }
            Err(error) => return Waited::Done(Err(store_error(error))),
        }
    }
}
