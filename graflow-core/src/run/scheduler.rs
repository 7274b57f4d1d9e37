//! The scheduler: runs every node once, after all its predecessors succeeded, as many at once as
//! the concurrency limit allows.
//!
//! The hot path is one loop over a ready queue, inside the future the caller awaits: no task is
//! spawned per node and no lock is held while a body runs. A node whose future completes on its
//! first poll (a short synchronous body on the direct handler) never leaves the loop; one that
//! waits (I/O, a timer, a body sent to the blocking pool) joins a `FuturesUnordered` and is
//! polled from the same loop. Per node that is O(1): decrement the in-degree of its successors.

use std::borrow::Cow;
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
use super::{ExecutionContext, RunShared, TaskHandler};
use crate::definition::{AttemptError, BoxFuture, Chain, panic_message};
use crate::graph::{GroupOutcome, GroupPolicy, Task};
use crate::observe::EventKind;
use crate::report::{Record, TaskStatus};
use crate::value::Value;

/// How many nodes the loop handles before it yields to the runtime once.
const BUDGET: u32 = 256;

/// A handler as the scheduler uses it: one per distinct handler name of the run.
pub(crate) struct Slot {
    /// The name it is registered under.
    pub name: Cow<'static, str>,
    pub handler: Arc<dyn TaskHandler>,
    /// The built-in direct handler: short synchronous bodies run inline, without a future.
    pub direct: bool,
    /// How many of its tasks may be in flight at once in this run.
    pub limit: usize,
    /// How many may be in flight at once over all the engine's runs (`None`: no limit).
    pub gate: Option<Arc<super::gate::Gate>>,
}

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

/// A tolerant group's progress (groups whose policy is strict are not tracked).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct GroupState {
    /// Members that finished for good.
    pub done: rustc_hash::FxHashSet<u32>,
    pub succeeded: u32,
    pub failed: u32,
    pub verdict: Option<Result<String, String>>,
}

/// Where a run starts: nothing done yet, or the state a checkpoint kept.
pub(crate) struct Start {
    pub records: Vec<Record>,
    pub indegree: Vec<u32>,
    pub ready: Vec<u32>,
    pub extra_succs: HashMap<u32, Vec<u32>>,
    pub groups: Vec<GroupState>,
    /// The run was ended early already: nothing starts.
    pub terminated: Option<(u32, String)>,
}

impl Start {
    /// A fresh run of `shared`'s workflow.
    pub fn fresh(shared: &RunShared) -> Start {
        let graph = &shared.graph;
        let n = graph.len();
        Start {
            records: vec![Record::SKIPPED; n],
            indegree: (0..n as u32).map(|i| graph.preds(i).len() as u32).collect(),
            ready: graph.roots.clone(),
            extra_succs: HashMap::default(),
            groups: vec![GroupState::default(); shared.workflow.group_list().len()],
            terminated: None,
        }
    }
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
        shared,
    };
    scheduler.announce(0);
    std::future::poll_fn(|cx| scheduler.poll(cx)).await;
    // Whatever is still in flight, or waiting to retry, is cancelled by dropping it.
    drop(std::mem::take(&mut scheduler.inflight));
    drop(std::mem::take(&mut scheduler.backoffs));
    // The run's last checkpoint, however it ended (a failure's included): tasks that were
    // running are pending in it.
    scheduler.save_checkpoint(true);
    Ended {
        records: scheduler.records,
        failure: scheduler.failure,
        terminated: scheduler.terminated,
        groups: scheduler.groups,
        checkpoint_error: scheduler.checkpoint_error,
    }
}

impl Scheduler {
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
                Poll::Pending => return Poll::Pending,
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

    fn complete(&mut self, done: NodeDone) {
        let node = done.node;
        let h = self.slot_of(node);
        self.running[h] -= 1;
        if let Some(next) = self.held[h].pop_front() {
            self.ready.push_front(next);
        }
        if let Some(delay) = done.backoff {
            self.wait_to_retry(node, done.attempts + 1, done.start, delay);
            return;
        }
        let before = self.ready.len();
        let record = &mut self.records[node as usize];
        record.attempts = done.attempts;
        record.start = Some(done.start.saturating_duration_since(self.run_start));
        record.duration = Some(done.end.saturating_duration_since(done.start));
        match done.result {
            Ok(()) => {
                record.status = TaskStatus::Succeeded;
                record.error = None;
                record.error_chain = None;
                record.tolerated = false;
                let mut release = Release::Yes;
                let mut checkpoint = false;
                let mut iterates = false;
                let stamp = (self.records[node as usize].runs, done.attempts);
                if let Some(requests) = self.shared.dynamic.take(node, stamp) {
                    checkpoint = requests.checkpoint;
                    iterates = requests.iterate.is_some();
                    match self.apply(node, requests) {
                        Ok(go_on) => release = go_on,
                        Err(error) => {
                            self.shared.clear_result(node);
                            self.failed(node, done.attempts, error);
                            return;
                        }
                    }
                }
                if iterates {
                    // Pending again: it has no result until its next run ends (a checkpoint
                    // written meanwhile has it as pending, with its run count).
                    self.records[node as usize].status = TaskStatus::Skipped;
                    self.shared.clear_result(node);
                } else {
                    // The inputs of an iteration are for that run only.
                    self.shared.dynamic.clear_override(node);
                }
                if self.failure.is_some() {
                    return;
                }
                self.shared
                    .task_event(node, done.attempts, || EventKind::TaskSucceeded {
                        duration: done.end.saturating_duration_since(done.start),
                    });
                if release != Release::Bypass && !self.instead.is_empty() {
                    // It asked for a task instead of its successors in an earlier run, not
                    // in this one.
                    self.instead.remove(&node);
                }
                match release {
                    Release::Yes => self.release(node),
                    Release::Bypass => self.bypass(node),
                    Release::No => {}
                }
                self.announce(before);
                if !iterates {
                    self.member_finished(node);
                }
                self.completed(checkpoint);
            }
            Err(error) => {
                // A cancel stands whatever the attempt returned; nothing else it asked for does.
                let stamp = (self.records[node as usize].runs, done.attempts);
                if let Some(requests) = self.shared.dynamic.take(node, stamp)
                    && let Some(End::Cancel(message)) = requests.end
                {
                    self.cancelled(node, message);
                    return;
                }
                self.failed(node, done.attempts, error);
            }
        }
    }

    /// `node` waits `delay` before its attempt `attempt`, holding no slot of its handler (it
    /// stays "running" for the run: a checkpoint written meanwhile has it pending).
    #[cold]
    #[inline(never)]
    fn wait_to_retry(
        &mut self,
        node: u32,
        attempt: u32,
        start: Instant,
        delay: std::time::Duration,
    ) {
        self.retrying.insert(node, (attempt, start));
        self.backoffs.push(Box::pin(backoff(
            self.shared.clone(),
            node,
            attempt - 1,
            delay,
        )));
    }

    /// `node`'s last attempt failed (or what it asked for was refused).
    #[cold]
    #[inline(never)]
    fn failed(&mut self, node: u32, attempts: u32, error: AttemptError) {
        // A failed task has no result, not even one of an earlier run.
        self.shared.clear_result(node);
        let record = &mut self.records[node as usize];
        record.status = TaskStatus::Failed;
        record.attempts = attempts;
        record.error = Some(Chain(&error).to_string().into_boxed_str());
        record.error_chain = Some(
            Chain(&error)
                .links()
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
        );
        let group = self.shared.graph.tolerant_group(node);
        let tolerated = group.is_some() && self.failure.is_none();
        self.shared
            .task_event(node, attempts, || EventKind::TaskFailed {
                error: Chain(&error).to_string(),
                tolerated,
            });
        if let Some(group) = group
            && tolerated
        {
            let record = &mut self.records[node as usize];
            record.tolerated = true;
            tracing::warn!(
                target: "graflow::engine",
                task = %self.shared.task(node).id(),
                group = %self.shared.workflow.group_list()[group as usize].name,
                attempts,
                error = %Chain(&error),
                "task failed; its group's policy decides"
            );
            let before = self.ready.len();
            self.release(node);
            self.announce(before);
            self.member_finished(node);
            self.completed(false);
            return;
        }
        if self.failure.is_none() {
            tracing::error!(
                target: "graflow::engine",
                task = %self.shared.task(node).id(),
                attempts,
                error = %Chain(&error),
                "task failed; stopping the run"
            );
            self.failure = Some(Failure::Task {
                node,
                attempts,
                error,
            });
        }
    }

    #[cold]
    #[inline(never)]
    fn cancelled(&mut self, node: u32, message: String) {
        self.shared.clear_result(node);
        let record = &mut self.records[node as usize];
        record.status = TaskStatus::Failed;
        record.error = Some(format!("cancelled the run: {message}").into_boxed_str());
        record.error_chain = None;
        let attempts = record.attempts;
        self.shared
            .task_event(node, attempts, || EventKind::TaskFailed {
                error: format!("cancelled the run: {message}"),
                tolerated: false,
            });
        if self.failure.is_none() {
            tracing::warn!(
                target: "graflow::engine",
                task = %self.shared.task(node).id(),
                message = %message,
                "a task cancelled the run"
            );
            self.failure = Some(Failure::Cancelled { node, message });
        }
    }

    /// Frees the successors of `node`.
    fn release(&mut self, node: u32) {
        let shared = &self.shared;
        if (node as usize) < shared.static_len() {
            for &next in shared.graph.succs(node) {
                free(&mut self.indegree, &mut self.ready, next);
            }
        }
        if !self.extra_succs.is_empty()
            && let Some(succs) = self.extra_succs.get(&node)
        {
            for &next in succs {
                free(&mut self.indegree, &mut self.ready, next);
            }
        }
    }

    /// `node` asked for a task instead of its successors: each of them stops waiting for it,
    /// and one that waits for nothing more runs if another of its predecessors led to it, or
    /// is skipped otherwise (and then leads to none of its own successors either).
    #[cold]
    #[inline(never)]
    fn bypass(&mut self, node: u32) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for next in self.succs(n) {
                let pending = &mut self.indegree[next as usize];
                if *pending == 0 {
                    continue;
                }
                *pending -= 1;
                if *pending == 0 {
                    if self.led(next) {
                        self.ready.push_back(next);
                    } else {
                        stack.push(next);
                    }
                }
            }
        }
    }

    /// Whether a predecessor of `node` (all of which are through) led to it: it finished for
    /// good and did not ask for a task instead of its successors.
    fn led(&self, node: u32) -> bool {
        self.shared
            .preds(node)
            .iter()
            .any(|&p| self.done(p) && !self.instead.contains(&p))
    }

    /// Tells the run's observers that the nodes queued from `from` on are ready.
    #[inline]
    fn announce(&self, from: usize) {
        if self.shared.observers.is_some() {
            self.announce_ready(from);
        }
    }

    #[cold]
    #[inline(never)]
    fn announce_ready(&self, from: usize) {
        for &node in self.ready.range(from.min(self.ready.len())..) {
            self.shared.task_event(node, 0, || EventKind::TaskReady);
        }
    }

    /// A node finished for good (succeeded, or failed in a tolerant group): counts checkpoint
    /// triggers.
    fn completed(&mut self, asked: bool) {
        if let Some(checkpoint) = &mut self.checkpoint
            && checkpoint.due(asked)
        {
            self.save_checkpoint(false);
        }
    }

    /// Writes a checkpoint of the current state, if the run keeps them. `last`: the run ended.
    #[cold]
    #[inline(never)]
    fn save_checkpoint(&mut self, last: bool) {
        let Some(mut checkpoint) = self.checkpoint.take() else {
            return;
        };
        match checkpoint.save(self, last) {
            Ok(()) => self.checkpoint_error = None,
            Err(error) => {
                tracing::error!(target: "graflow::engine", error = %error, "could not write a checkpoint");
                self.checkpoint_error = Some(error);
            }
        }
        self.checkpoint = Some(checkpoint);
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

    /// A member of a tolerant group finished: the group's verdict, once decided.
    #[inline]
    fn member_finished(&mut self, node: u32) {
        if let Some(g) = self.shared.graph.tolerant_group(node) {
            self.group_member_finished(g, node);
        }
    }

    #[cold]
    #[inline(never)]
    fn group_member_finished(&mut self, g: u32, node: u32) {
        let succeeded = self.records[node as usize].status == TaskStatus::Succeeded;
        let state = &mut self.groups[g as usize];
        if state.verdict.is_some() || !state.done.insert(node) {
            return;
        }
        if succeeded {
            state.succeeded += 1;
        } else {
            state.failed += 1;
        }
        let group = &self.shared.workflow.group_list()[g as usize];
        let members = group.members.len() as u32;
        let pending = members.saturating_sub(state.succeeded + state.failed);
        // Counters decide whether the group might be decided; the outcome (O(members)) is
        // built only then.
        let maybe_decided = pending == 0
            || match &group.policy {
                GroupPolicy::AtLeast(n) => ((state.succeeded + pending) as usize) < *n,
                GroupPolicy::Critical(ids) => {
                    !succeeded && ids.iter().any(|c| c == self.shared.task(node).id())
                }
                _ => false,
            };
        if !maybe_decided {
            return;
        }
        let verdict = {
            let outcome = self.outcome_of(g);
            if outcome.pending() == 0 {
                Some(group.policy.verdict(&outcome))
            } else {
                group.policy.doomed(&outcome).map(Err)
            }
        };
        let Some(verdict) = verdict else {
            return;
        };
        tracing::info!(
            target: "graflow::engine",
            group = %group.name,
            policy = %group.policy.describe(),
            passed = verdict.is_ok(),
            reason = %match &verdict { Ok(why) | Err(why) => why },
            "group decided"
        );
        if let Err(reason) = &verdict
            && self.failure.is_none()
        {
            self.failure = Some(Failure::Group {
                group: g,
                reason: reason.clone(),
            });
            self.groups[g as usize].verdict = Some(verdict);
            return;
        }
        self.groups[g as usize].verdict = Some(verdict);
    }

    /// What the members of group `g` did so far.
    fn outcome_of(&self, g: u32) -> GroupOutcome<'_> {
        let group = &self.shared.workflow.group_list()[g as usize];
        let state = &self.groups[g as usize];
        let mut outcome = GroupOutcome {
            group: &group.name,
            members: group.members.len(),
            succeeded: Vec::new(),
            failed: Vec::new(),
        };
        for &m in &group.members {
            if !state.done.contains(&m) {
                continue;
            }
            let record = &self.records[m as usize];
            let id = self.shared.task(m).id();
            match record.status {
                TaskStatus::Succeeded => outcome.succeeded.push(id),
                _ => outcome
                    .failed
                    .push((id, record.error.as_deref().unwrap_or("failed"))),
            }
        }
        outcome
    }

    /// Applies what `node`'s successful attempt asked for. `Ok(release)`: what becomes of its
    /// successors; `Err`: the node fails with it.
    #[cold]
    #[inline(never)]
    fn apply(&mut self, node: u32, requests: Requests) -> Result<Release, AttemptError> {
        let shared = self.shared.clone();
        let task = shared.task(node);
        match requests.end {
            Some(End::Cancel(message)) => {
                self.cancelled(node, message);
                return Ok(Release::No);
            }
            Some(End::Terminate(message)) => {
                tracing::info!(
                    target: "graflow::engine",
                    task = %task.id(),
                    message = %message,
                    "a task ended the run early"
                );
                self.terminated = Some((node, message));
            }
            None => {}
        }
        let runs = self.records[node as usize].runs;
        if requests.iterate.is_some() && runs >= task.max_cycles() {
            return Err(cycle_limit(task, runs));
        }
        let target = match &requests.goto {
            None => None,
            Some(id) => match shared.index_of(id) {
                Some(t) => Some(t),
                None => {
                    return Err(refused(
                        task,
                        ControlError::NoSuchTask {
                            task: task.id().to_owned(),
                            target: id.clone(),
                        },
                    ));
                }
            },
        };
        let rearm = match target {
            None => None,
            Some(t) => {
                let runs = self.records[t as usize].runs;
                let target_task = shared.task(t);
                if runs >= target_task.max_cycles() {
                    return Err(refused(
                        task,
                        ControlError::GotoCycleLimit {
                            task: task.id().to_owned(),
                            target: target_task.id().to_owned(),
                            runs,
                            max_cycles: target_task.max_cycles(),
                        },
                    ));
                }
                Some((t, self.rearm_set(node, t).map_err(|e| refused(task, e))?))
            }
        };
        let mut release = Release::Yes;
        for added in requests.added {
            let Some(slot) = added.slot else {
                return Err(AttemptError::handler(
                    task.id(),
                    task.handler(),
                    "a task added out of process reached the scheduler unvalidated (a bug of graflow)",
                ));
            };
            if added.goto {
                release = Release::Bypass;
                self.instead.insert(node);
            }
            let slot = self.slot_index(slot);
            let new = self.add_node(node, added.task, added.sources, slot, added.goto);
            self.ready.push_back(new);
        }
        if let Some(inputs) = requests.iterate {
            shared.dynamic.set_overrides(node, inputs);
            self.ready.push_back(node);
            release = Release::No;
        }
        if let Some((t, set)) = rearm {
            self.rearm(t, &set);
            release = Release::No;
        }
        // The attempt succeeded and what it asked for holds: its channel writes are the run's.
        for (key, write) in requests.channel {
            match write {
                Some(value) => shared.channel.set_value(key, value),
                None => {
                    shared.channel.delete(&key);
                }
            }
        }
        Ok(release)
    }

    /// The index of `slot`'s handler among the run's, added if the run has none of its name.
    fn slot_index(&mut self, slot: Slot) -> u32 {
        if let Some(i) = self.handlers.iter().position(|s| s.name == slot.name) {
            return i as u32;
        }
        self.handlers.push(slot);
        self.running.push(0);
        self.held.push(VecDeque::new());
        (self.handlers.len() - 1) as u32
    }

    /// Appends a node after `parent`; unless `instead`, `parent`'s successors wait for it too.
    pub(crate) fn add_node(
        &mut self,
        parent: u32,
        task: Task,
        sources: Vec<crate::graph::Source>,
        slot: u32,
        instead: bool,
    ) -> u32 {
        let shared = self.shared.clone();
        let id = task.id().to_owned();
        let at = shared.dynamic.nodes.push(DynNode {
            task,
            slot,
            sources,
            result: std::sync::Mutex::new(None),
        });
        let new = (shared.static_len() + at) as u32;
        shared
            .dynamic
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), new);
        shared.dynamic.add_pred(new, parent);
        self.records.push(Record::SKIPPED);
        self.indegree.push(0);
        if !instead {
            let succs = self.succs(parent);
            for &s in &succs {
                shared.dynamic.add_pred(s, new);
                self.indegree[s as usize] += 1;
            }
            self.extra_succs.insert(new, succs);
        }
        tracing::info!(
            target: "graflow::engine",
            task = %id,
            added_by = %shared.task(parent).id(),
            "task added to the run"
        );
        shared.task_event(new, 0, || EventKind::TaskAdded {
            by: shared.task(parent).id().to_owned(),
        });
        new
    }

    /// Every successor of `node`, edges added while running included.
    pub(crate) fn succs(&self, node: u32) -> Vec<u32> {
        let mut succs = if (node as usize) < self.shared.static_len() {
            self.shared.graph.succs(node).to_vec()
        } else {
            Vec::new()
        };
        if let Some(extra) = self.extra_succs.get(&node) {
            succs.extend_from_slice(extra);
        }
        succs
    }

    /// `target` and everything after it, which a goto from `asking` runs again; refused while
    /// one of them runs or waits to start.
    fn rearm_set(&self, asking: u32, target: u32) -> Result<Vec<bool>, ControlError> {
        let mut set = vec![false; self.records.len()];
        let mut stack = vec![target];
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut set[n as usize], true) {
                stack.extend(self.succs(n));
            }
        }
        let waiting: Vec<u32> = self
            .ready
            .iter()
            .chain(self.held.iter().flatten())
            .copied()
            .collect();
        let busy = self
            .running_nodes()
            .chain(waiting)
            .find(|&n| n != asking && set[n as usize]);
        if let Some(busy) = busy {
            return Err(ControlError::Conflict {
                task: self.shared.task(asking).id().to_owned(),
                message: format!(
                    "goto '{}' would run task '{}' again, which is running or about to run; a goto may only lead to tasks that are not",
                    self.shared.task(target).id(),
                    self.shared.task(busy).id()
                ),
            });
        }
        Ok(set)
    }

    /// Runs `target` next, and everything after it again once its predecessors are done.
    #[cold]
    #[inline(never)]
    fn rearm(&mut self, target: u32, set: &[bool]) {
        for (n, &again) in set.iter().enumerate() {
            if again {
                let node = n as u32;
                let record = &mut self.records[n];
                let was_ok = record.status == TaskStatus::Succeeded;
                record.status = TaskStatus::Skipped;
                record.tolerated = false;
                // Pending again: no result until it runs again.
                self.shared.clear_result(node);
                self.shared.dynamic.clear_override(node);
                // A member that runs again counts again, while its group is undecided.
                if let Some(g) = self.shared.graph.tolerant_group(node) {
                    let state = &mut self.groups[g as usize];
                    if state.verdict.is_none() && state.done.remove(&node) {
                        if was_ok {
                            state.succeeded -= 1;
                        } else {
                            state.failed -= 1;
                        }
                    }
                }
            }
        }
        for (n, &again) in set.iter().enumerate() {
            if again {
                let preds = self.shared.preds(n as u32);
                self.indegree[n] = preds
                    .iter()
                    .filter(|&&p| set[p as usize] || !self.done(p))
                    .count() as u32;
            }
        }
        self.indegree[target as usize] = 0;
        self.ready.push_back(target);
        tracing::info!(
            target: "graflow::engine",
            task = %self.shared.task(target).id(),
            again = set.iter().filter(|&&x| x).count(),
            "goto: the task runs next"
        );
    }
}

/// The nodes that asked for a task instead of their successors: the parents of the added
/// nodes that have no successors of their own (a task added with `next_task` always has an
/// entry in `extra_succs`, one added instead has none).
fn instead_askers(
    shared: &RunShared,
    extra_succs: &HashMap<u32, Vec<u32>>,
) -> rustc_hash::FxHashSet<u32> {
    let mut askers = rustc_hash::FxHashSet::default();
    let first = shared.static_len() as u32;
    for at in 0..shared.dynamic.nodes.count() as u32 {
        let added = first + at;
        if !extra_succs.contains_key(&added) {
            askers.extend(shared.dynamic.extra_preds(added));
        }
    }
    askers
}

/// One predecessor of `next` is done: `next` is ready when that was the last one. A node
/// already at 0 (started by a goto before all its predecessors were done) is not queued again.
#[inline]
fn free(indegree: &mut [u32], ready: &mut VecDeque<u32>, next: u32) {
    let pending = &mut indegree[next as usize];
    match *pending {
        0 => {}
        1 => {
            *pending = 0;
            ready.push_back(next);
        }
        _ => *pending -= 1,
    }
}

fn cycle_limit(task: &Task, runs: u32) -> AttemptError {
    refused(
        task,
        ControlError::CycleLimit {
            task: task.id().to_owned(),
            runs,
        },
    )
}

/// The first attempt through the handler's `try_execute_now`, when it takes it: `Ok` with the
/// node's end, or `Err` with the start and error when a retry is due. `None`: await instead.
fn try_now(shared: &Arc<RunShared>, slot: &Slot, node: u32, cycle: u32) -> Option<NodeDone> {
    let task = shared.task(node);
    if !slot.direct || task.timeout().is_some() {
        return None;
    }
    let body = task.inline_body()?;
    let ctx = ExecutionContext::new(shared.clone(), node, 1, cycle);
    let span = attempt_span(task, 1);
    let entered = span.enter();
    shared.task_event(node, 1, || EventKind::TaskStarted);
    let start = Instant::now();
    // (A body's panic is caught inside; nothing else here can panic.)
    let result = task
        .run_inline(body, &ctx)
        .map(|output| store(shared, node, output));
    let end = Instant::now();
    drop(entered);
    task.record_inline_run(end.saturating_duration_since(start));
    tracing::debug!(
        target: "graflow::handlers",
        task = %task.id(),
        handler = %task.handler(),
        attempt = 1,
        elapsed_us = end.saturating_duration_since(start).as_micros() as u64,
        ok = result.is_ok(),
        inline = true,
        "attempt finished"
    );
    Some(attempt_done(shared, node, cycle, 1, start, end, result))
}

/// The end of attempt `attempt` of `node`: to retry after a backoff when it failed, may be
/// retried and attempts are left (what it asked for is dropped then), else final.
fn attempt_done(
    shared: &RunShared,
    node: u32,
    cycle: u32,
    attempt: u32,
    start: Instant,
    end: Instant,
    result: Result<(), AttemptError>,
) -> NodeDone {
    let task = shared.task(node);
    let policy = task.retry_policy();
    let backoff = match &result {
        Err(error)
            if attempt < policy.max_attempts()
                && error.is_retryable()
                && !shared.dynamic.cancels(node, (cycle, attempt)) =>
        {
            // What the failed attempt asked for is dropped.
            shared.dynamic.take(node, (cycle, attempt));
            let delay = policy.delay_after(attempt);
            log_retry(task, attempt, error, delay);
            shared.task_event(node, attempt, || EventKind::TaskRetrying {
                error: Chain(error).to_string(),
                delay,
            });
            shared.clear_result(node);
            Some(delay)
        }
        _ => None,
    };
    NodeDone {
        node,
        attempts: attempt,
        start,
        end,
        result,
        backoff,
    }
}

/// Waits out a retry's backoff; says which node may retry now. Dropped when the run stops:
/// observers then hear that the task was cancelled.
async fn backoff(
    shared: Arc<RunShared>,
    node: u32,
    attempt: u32,
    delay: std::time::Duration,
) -> u32 {
    let mut guard = CancelGuard {
        shared: &shared,
        node,
        attempt,
        armed: shared.observers.is_some(),
    };
    tokio::time::sleep(delay).await;
    guard.armed = false;
    node
}

/// The span of one attempt, a child of the run's: what `tracing-opentelemetry` exports as the
/// attempt's span (named after the task), with the task, its handler and the attempt as fields
/// (the attempt as an `i64`: exporters record unsigned integers as text).
#[inline]
fn attempt_span(task: &Task, attempt: u32) -> tracing::Span {
    tracing::info_span!(
        target: "graflow::engine",
        "task",
        task = %task.id(),
        handler = %task.handler(),
        attempt = i64::from(attempt),
        otel.name = %task.id(),
    )
}

/// Tells observers that a task was cancelled when its future is dropped before it ended (the
/// run stopped during an attempt or a backoff wait, with the attempt it was at); disarmed when
/// the task ends. Armed only when the run is observed.
struct CancelGuard<'a> {
    shared: &'a RunShared,
    node: u32,
    attempt: u32,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .task_event(self.node, self.attempt, || EventKind::TaskCancelled);
        }
    }
}

fn log_retry(task: &Task, attempt: u32, error: &AttemptError, delay: std::time::Duration) {
    tracing::warn!(
        target: "graflow::engine",
        task = %task.id(),
        handler = %task.handler(),
        attempt,
        retry_in_ms = delay.as_millis() as u64,
        error = %Chain(error),
        "attempt failed; retrying"
    );
}

/// Runs attempt `attempt` of one node (its first started at `start`).
async fn run_node(
    shared: Arc<RunShared>,
    handler: Arc<dyn TaskHandler>,
    node: u32,
    cycle: u32,
    attempt: u32,
    start: Instant,
) -> NodeDone {
    let task = shared.task(node);
    let mut guard = CancelGuard {
        shared: &shared,
        node,
        attempt,
        armed: shared.observers.is_some(),
    };
    let mut ctx = ExecutionContext::new(shared.clone(), node, attempt, cycle);
    if task.timeout().is_some() {
        ctx = ctx.with_timeout_clock();
    }
    let attempt_start = if attempt == 1 { start } else { Instant::now() };
    shared.task_event(node, attempt, || EventKind::TaskStarted);
    let result = attempt_once(handler.as_ref(), task, &ctx)
        .instrument(attempt_span(task, attempt))
        .await
        .map(|output| store(&shared, node, output));
    // (Fields are evaluated only when the event is enabled: no clock read otherwise.)
    tracing::debug!(
        target: "graflow::handlers",
        task = %task.id(),
        handler = %task.handler(),
        attempt,
        elapsed_us = attempt_start.elapsed().as_micros() as u64,
        ok = result.is_ok(),
        "attempt finished"
    );
    guard.armed = false;
    attempt_done(&shared, node, cycle, attempt, start, Instant::now(), result)
}

/// Stores a checked output as the node's result.
fn store(shared: &RunShared, node: u32, output: Value) {
    shared.store_result(node, output);
}

/// `Ok` if `output` has the type of the task function's output, as a handler must return.
fn checked(task: &Task, output: Value) -> Result<Value, AttemptError> {
    let expected = task.def.output;
    if output.matches(expected) {
        Ok(output)
    } else {
        Err(AttemptError::WrongOutput {
            task: task.id().to_owned(),
            handler: task.handler().to_owned(),
            expected: expected.name(),
            found: output.type_name().to_owned(),
        })
    }
}

fn handler_panicked(task: &Task, payload: &(dyn std::any::Any + Send)) -> AttemptError {
    AttemptError::handler(
        task.id(),
        task.handler(),
        format!("the handler panicked: {}", panic_message(payload)),
    )
}

/// Ends when the task has run for `limit`, not counting the time the clock was paused (the
/// attempt waited for capacity: see [`ExecutionContext::pause_timeout`]).
async fn deadline(limit: std::time::Duration, clock: Option<tokio::sync::watch::Receiver<u32>>) {
    let Some(mut paused) = clock else {
        return tokio::time::sleep(limit).await;
    };
    let mut left = limit;
    loop {
        while *paused.borrow_and_update() > 0 {
            if paused.changed().await.is_err() {
                // The context is gone: nothing can pause it any more.
                break;
            }
        }
        let running = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(left) => return,
            changed = paused.changed() => {
                left = left.saturating_sub(running.elapsed());
                if changed.is_err() {
                    return tokio::time::sleep(left).await;
                }
            }
        }
    }
}

/// One attempt: the handler, under the task's timeout, with panics caught, and the check that
/// the handler's output has the task's output type.
async fn attempt_once(
    handler: &dyn TaskHandler,
    task: &Task,
    ctx: &ExecutionContext,
) -> Result<Value, AttemptError> {
    // A hand-written impl may panic before it even returns its future.
    let future =
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.execute_task(task, ctx))) {
            Ok(future) => future,
            Err(payload) => return Err(handler_panicked(task, &*payload)),
        };
    let execution = AssertUnwindSafe(future).catch_unwind();
    let outcome = match task.timeout() {
        Some(limit) => {
            tokio::select! {
                biased;
                outcome = execution => outcome,
                () = deadline(limit, ctx.timeout_clock()) => {
                    return Err(AttemptError::TimedOut {
                        task: task.id().to_owned(),
                        handler: task.handler().to_owned(),
                        timeout: limit,
                    });
                }
            }
        }
        None => execution.await,
    };
    match outcome {
        Ok(result) => result.and_then(|output| checked(task, output)),
        Err(payload) => Err(handler_panicked(task, &*payload)),
    }
}
