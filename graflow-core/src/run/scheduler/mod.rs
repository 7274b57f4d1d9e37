//! The scheduler: runs every node once, after all its predecessors succeeded, as many at once as
//! the concurrency limit allows.
//!
//! The hot path is one loop over a ready queue, inside the future the caller awaits: no task is
//! spawned per node and no lock is held while a body runs. A node whose future completes on its
//! first poll (a short synchronous body on the direct handler) never leaves the loop; one that
//! waits (I/O, a timer, a body sent to the blocking pool) joins a `FuturesUnordered` and is
//! polled from the same loop. Per node that is O(1): decrement the in-degree of its successors.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, Stream};
use rustc_hash::FxHashMap as HashMap;
use tracing::Instrument;

use super::checkpoint::Checkpointer;
use super::control::{ControlError, DynNode, End, Requests, refused};
pub(crate) use super::handler::Slot;
pub(crate) use super::state::{GroupState, Progress, Start};
use super::{ExecutionContext, RunShared, TaskHandler};
use crate::definition::{AttemptError, BoxFuture, Chain, panic_message};
use crate::graph::{GroupOutcome, GroupPolicy, Task};
use crate::observe::EventKind;
use crate::report::{Record, TaskStatus};
use crate::value::Value;

mod attempt;
mod complete;
mod dynamic;
mod groups;

use attempt::{backoff, cycle_limit, run_node, try_now};
use dynamic::{free, instead_askers};

/// How many nodes the loop handles before it yields to the runtime once.
const BUDGET: u32 = 256;

/// The end of one attempt of a node: its last, or one to retry after `backoff`.
struct NodeDone {
    node: u32,
    attempts: u32,
    /// When the node's first attempt started.
    start: Instant,
    end: Instant,
    result: Result<(), AttemptError>,
    /// The attempt failed and is retried after this wait (which holds no handler slot).
    backoff: Option<std::time::Duration>,
}

/// How a run stopped without success.
pub(crate) enum Failure {
    /// A task failed after its retries.
    Task {
        node: u32,
        attempts: u32,
        error: AttemptError,
    },
    /// A parallel group's policy was not met.
    Group { group: u32, reason: String },
    /// A task cancelled the run.
    Cancelled { node: u32, message: String },
}

/// What a run did.
pub(crate) struct Ended {
    pub records: Vec<Record>,
    pub failure: Option<Failure>,
    /// The task that ended the run early as a success, and its message.
    pub terminated: Option<(u32, String)>,
    pub groups: Vec<GroupState>,
    /// Why the last checkpoint could not be written, if it could not.
    pub checkpoint_error: Option<String>,
    /// The requests tasks stopped to wait for.
    pub waiting: Vec<crate::run::WaitingRequest>,
    /// Where the last checkpoint went (a run that waits gets one even if it asked for none).
    pub checkpoint_path: Option<std::path::PathBuf>,
}

pub(crate) struct Scheduler {
    pub(crate) shared: Arc<RunShared>,
    handlers: Vec<Slot>,
    /// Per handler: its tasks in flight, and its ready tasks held back by its limit.
    running: Vec<usize>,
    held: Vec<VecDeque<u32>>,
    pub(crate) indegree: Vec<u32>,
    pub(crate) ready: VecDeque<u32>,
    inflight: FuturesUnordered<BoxFuture<'static, NodeDone>>,
    /// Some node waits for room under the engine's limit of its handler (a wake-up from the
    /// limit means: look again).
    gated: bool,
    /// Nodes waiting out a retry's backoff: each yields its node when the wait is over.
    backoffs: FuturesUnordered<BoxFuture<'static, u32>>,
    /// The next attempt of a node whose backoff ended, and when its first attempt started.
    retrying: HashMap<u32, (u32, Instant)>,
    pub(crate) records: Vec<Record>,
    failure: Option<Failure>,
    terminated: Option<(u32, String)>,
    max_concurrency: usize,
    run_start: Instant,
    /// Successors added while running (a node added after `c` precedes `c`'s successors).
    pub(crate) extra_succs: HashMap<u32, Vec<u32>>,
    pub(crate) groups: Vec<GroupState>,
    /// Nodes that asked for a task *instead* of their successors: they lead to none of them
    /// (derived from the added nodes, so a resumed run knows them too).
    instead: rustc_hash::FxHashSet<u32>,
    checkpoint: Option<Checkpointer>,
    checkpoint_error: Option<String>,
    /// The requests tasks stopped to wait for.
    waiting: Vec<crate::run::WaitingRequest>,
}

/// What a node's end does to its successors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    /// They may start (once their other predecessors are done).
    Yes,
    /// They wait (the node runs again first: an iteration, or a goto's path leads back).
    No,
    /// The node asked for a task instead of them: this node does not lead to them, and each
    /// runs only if another of its predecessors does.
    Bypass,
}

/// Runs the workflow of `shared` from `start` to completion, first failure or early end.
pub(crate) async fn run(
    shared: Arc<RunShared>,
    handlers: Vec<Slot>,
    start: Start,
    max_concurrency: usize,
    run_start: Instant,
    checkpoint: Option<Checkpointer>,
) -> Ended {
    let mut scheduler = Scheduler {
        running: vec![0; handlers.len()],
        held: (0..handlers.len()).map(|_| VecDeque::new()).collect(),
        handlers,
        indegree: start.indegree,
        ready: start.ready.into_iter().collect(),
        inflight: FuturesUnordered::new(),
        gated: false,
        backoffs: FuturesUnordered::new(),
        retrying: HashMap::default(),
        records: start.records,
        failure: None,
        terminated: start.terminated,
        max_concurrency: max_concurrency.max(1),
        run_start,
        instead: instead_askers(&shared, &start.extra_succs),
        extra_succs: start.extra_succs,
        groups: start.groups,
        checkpoint,
        checkpoint_error: None,
        waiting: Vec::new(),
        shared,
    };
    // However the run ends (its future dropped too), tasks waiting for a person stop waiting.
    let _close = CloseDesk(scheduler.shared.clone());
    scheduler.announce(0);
    std::future::poll_fn(|cx| scheduler.poll(cx)).await;
    // Whatever is still in flight, or waiting to retry, is cancelled by dropping it.
    drop(std::mem::take(&mut scheduler.inflight));
    drop(std::mem::take(&mut scheduler.backoffs));
    // A run that waits for answers must be resumable: it gets a checkpoint where its store
    // says, if it keeps none of its own.
    if !scheduler.waiting.is_empty() && scheduler.checkpoint.is_none() {
        scheduler.checkpoint = scheduler.suspend_checkpointer();
    }
    // The run's last checkpoint, however it ended (a failure's included): tasks that were
    // running are pending in it.
    scheduler.save_checkpoint(true);
    // Only a checkpoint written whole now says where to resume.
    let checkpoint_path = scheduler
        .checkpoint
        .as_ref()
        .filter(|_| scheduler.checkpoint_error.is_none())
        .map(|c| c.path().to_owned());
    Ended {
        records: scheduler.records,
        failure: scheduler.failure,
        terminated: scheduler.terminated,
        groups: scheduler.groups,
        checkpoint_error: scheduler.checkpoint_error,
        waiting: scheduler.waiting,
        checkpoint_path,
    }
}

/// Closes the run's feedback desk when dropped.
struct CloseDesk(Arc<RunShared>);

impl Drop for CloseDesk {
    fn drop(&mut self) {
        self.0.desk.close();
    }
}

impl Scheduler {
    /// A checkpointer at the path the run's store gives a run that waits, if it gives one.
    #[cold]
    fn suspend_checkpointer(&mut self) -> Option<Checkpointer> {
        let path = self.shared.record.get()?.suspend_path()?;
        if let Some(dir) = path.parent()
            && let Err(error) = std::fs::create_dir_all(dir)
        {
            tracing::error!(target: "graflow::engine", error = %error, dir = %dir.display(), "cannot make the directory of the waiting run's checkpoint");
            self.checkpoint_error = Some(format!(
                "cannot make the directory {}: {error}",
                dir.display()
            ));
            return None;
        }
        let cadence = super::checkpoint::Cadence {
            path,
            every: None,
            interval: None,
            durable: true,
        };
        match Checkpointer::new(cadence, &self.shared.workflow, &self.shared.run_id, 0) {
            Ok(checkpointer) => Some(checkpointer),
            Err(error) => {
                tracing::error!(target: "graflow::engine", error = %error, "cannot checkpoint the waiting run");
                self.checkpoint_error = Some(error.to_string());
                None
            }
        }
    }

    /// A task began to wait for a person: the run is checkpointed now (it gets a checkpoint
    /// where its store says if it keeps none), so that a program killed while it waits can be
    /// resumed by its id, the waiting task asking again and finding its answer.
    #[cold]
    fn checkpoint_waiting(&mut self) {
        if self.checkpoint.is_none() {
            self.checkpoint = self.suspend_checkpointer();
        }
        self.save_checkpoint(false);
    }

    fn slot_of(&self, node: u32) -> usize {
        match self.shared.graph.node_handler.get(node as usize) {
            Some(&h) => h as usize,
            None => self.shared.dyn_node(node).slot as usize,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut budget = BUDGET;
        loop {
            while self.failure.is_none() && self.inflight.len() < self.max_concurrency {
                let Some(node) = self.next_to_start() else {
                    break;
                };
                let h = self.slot_of(node);
                if self.running[h] >= self.handlers[h].limit {
                    self.held[h].push_back(node);
                    continue;
                }
                // The engine's limit, over all its runs.
                let permit = match &self.handlers[h].gate {
                    None => None,
                    Some(gate) => match gate.take(cx.waker()) {
                        Some(permit) => Some(permit),
                        None => {
                            self.held[h].push_back(node);
                            self.gated = true;
                            continue;
                        }
                    },
                };
                self.running[h] += 1;
                let retry = self.retrying.remove(&node);
                let record = &mut self.records[node as usize];
                if retry.is_none() {
                    record.runs = record.runs.saturating_add(1);
                }
                let cycle = record.runs;
                // Provisional: a node still marked so when the run stops was running, and is
                // reported as cancelled; `complete` overwrites it.
                record.status = TaskStatus::Cancelled;
                let (attempt, start) = retry.unwrap_or_else(|| (1, Instant::now()));
                let inline = if attempt == 1 {
                    try_now(&self.shared, &self.handlers[h], node, cycle)
                } else {
                    None
                };
                let future = match inline {
                    // Its handler ran it at once (a short synchronous body on "direct").
                    Some(done) => {
                        self.complete(done);
                        None
                    }
                    None => {
                        let attempt = run_node(
                            self.shared.clone(),
                            self.handlers[h].handler.clone(),
                            node,
                            cycle,
                            attempt,
                            start,
                        );
                        Some(match permit {
                            None => Box::pin(attempt) as BoxFuture<'static, NodeDone>,
                            // Held by the attempt: given back when it ends or is dropped.
                            Some(permit) => Box::pin(async move {
                                let done = attempt.await;
                                drop(permit);
                                done
                            }),
                        })
                    }
                };
                if let Some(mut future) = future {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(done) => {
                            // Completed on its first poll: a synchronous body ran inline.
                            self.shared
                                .task(node)
                                .record_inline_run(done.end.saturating_duration_since(done.start));
                            self.complete(done)
                        }
                        Poll::Pending => self.inflight.push(future),
                    }
                }
                budget -= 1;
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if self.failure.is_some() {
                return Poll::Ready(());
            }
            // Room made by another run's task: the nodes held back for it try again.
            if std::mem::take(&mut self.gated) && self.ungate(cx.waker()) > 0 {
                // Start them now: the wake-up is not for anything in flight.
                continue;
            }
            // Nodes whose retry backoff ended wait for their handler's slot again, first.
            let mut waited = false;
            while let Poll::Ready(Some(node)) = Pin::new(&mut self.backoffs).poll_next(cx) {
                self.ready.push_front(node);
                waited = true;
            }
            if waited {
                continue;
            }
            match Pin::new(&mut self.inflight).poll_next(cx) {
                Poll::Ready(Some(done)) => {
                    self.complete(done);
                    budget -= 1;
                    if budget == 0 {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(None)
                    if self.backoffs.is_empty() && self.idle() && !self.waits_for_room() =>
                {
                    return Poll::Ready(());
                }
                // Only backoffs left: their timers wake this task.
                Poll::Ready(None) if self.idle() => return Poll::Pending,
                Poll::Ready(None) => {}
                Poll::Pending => {
                    // A task that began to wait for a person is told through the run's desk,
                    // which wakes this task (only a run with a store can ask).
                    if self.shared.record.get().is_some() {
                        self.shared.desk.register(cx.waker());
                        if self.shared.desk.take_began_waiting() {
                            self.checkpoint_waiting();
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Moves the nodes held back by the engine's limit, as many as it has room for now, back
    /// to the ready queue (those still without room come back, and wait again).
    #[cold]
    #[inline(never)]
    fn ungate(&mut self, waker: &std::task::Waker) -> usize {
        let mut moved = 0;
        for h in 0..self.handlers.len() {
            let Some(gate) = self.handlers[h].gate.clone() else {
                continue;
            };
            // This run's own limit: nodes beyond it wait for this run's tasks (`complete`).
            let mut per_run = self.handlers[h].limit.saturating_sub(self.running[h]);
            while per_run > 0 && !self.held[h].is_empty() {
                let room = gate.room().min(per_run);
                if room == 0 {
                    // Woken again when another run's task ends (the wake-up that brought us
                    // here was used up), unless room came meanwhile.
                    self.gated = true;
                    if gate.watch(waker) {
                        continue;
                    }
                    break;
                }
                for _ in 0..room {
                    let Some(node) = self.held[h].pop_front() else {
                        break;
                    };
                    self.ready.push_back(node);
                    moved += 1;
                    per_run -= 1;
                }
            }
        }
        moved
    }

    /// Whether a node that may still start is held back (by the engine's limit, when nothing
    /// of this run is in flight: another run's task ending wakes this one).
    fn waits_for_room(&self) -> bool {
        self.failure.is_none()
            && self
                .held
                .iter()
                .flatten()
                .any(|n| self.terminated.is_none() || self.retrying.contains_key(n))
    }

    /// Whether no ready node may start now.
    fn idle(&self) -> bool {
        self.ready.is_empty()
            || self.failure.is_some()
            || (self.terminated.is_some()
                && !self.ready.iter().any(|n| self.retrying.contains_key(n)))
    }

    /// The next ready node to start: the first, or, once the run was ended early (nothing new
    /// starts), the first that is retrying (a task that was running goes on to its end).
    fn next_to_start(&mut self) -> Option<u32> {
        if self.terminated.is_none() {
            return self.ready.pop_front();
        }
        if self.retrying.is_empty() {
            return None;
        }
        if let Some(at) = self
            .ready
            .iter()
            .position(|n| self.retrying.contains_key(n))
        {
            return self.ready.remove(at);
        }
        // One held back by its handler's limit: it tries again (and is held again if it must).
        for held in &mut self.held {
            if let Some(at) = held.iter().position(|n| self.retrying.contains_key(n)) {
                return held.remove(at);
            }
        }
        None
    }

    /// The task that ended the run early, and its message.
    pub(crate) fn terminated(&self) -> Option<(u32, &str)> {
        self.terminated
            .as_ref()
            .map(|(node, message)| (*node, message.as_str()))
    }

    /// Whether the node's status counts as done for its successors.
    pub(crate) fn done(&self, node: u32) -> bool {
        let r = &self.records[node as usize];
        r.status == TaskStatus::Succeeded || (r.status == TaskStatus::Failed && r.tolerated)
    }

    /// The nodes running now.
    pub(crate) fn running_nodes(&self) -> impl Iterator<Item = u32> + '_ {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == TaskStatus::Cancelled)
            .map(|(n, _)| n as u32)
    }

    /// Nodes ready but held back by their handler's limit.
    pub(crate) fn held_nodes(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.iter().flatten().copied()
    }
}

impl Progress for Scheduler {
    fn shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    fn records(&self) -> &[Record] {
        &self.records
    }

    fn indegree(&self) -> &[u32] {
        &self.indegree
    }

    fn extra_succs(&self) -> &HashMap<u32, Vec<u32>> {
        &self.extra_succs
    }

    fn groups(&self) -> &[GroupState] {
        &self.groups
    }

    fn terminated(&self) -> Option<(u32, &str)> {
        Scheduler::terminated(self)
    }

    fn succs(&self, node: u32) -> Vec<u32> {
        Scheduler::succs(self, node)
    }

    fn ready_on_resume(&self) -> Vec<u32> {
        let mut ready: Vec<u32> = self.ready.iter().copied().collect();
        ready.extend(self.held_nodes());
        ready.extend(self.running_nodes());
        ready.extend(
            self.records
                .iter()
                .enumerate()
                .filter(|(_, r)| super::state::stopped_the_run(r))
                .map(|(n, _)| n as u32),
        );
        ready
    }
}

#[cfg(test)]
mod tests;
