//! The end of an attempt: storing its result, retrying, failing or cancelling the run, freeing successors, checkpoints when due.

use super::{
    AttemptError, Chain, End, EventKind, Failure, Instant, NodeDone, Release, Scheduler,
    TaskStatus, backoff, free,
};

impl Scheduler {
    pub(super) fn complete(&mut self, done: NodeDone) {
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
        // What a task that stopped to wait (or whose request was cancelled) left at the desk.
        let waits = self.shared.desk.take_waiting(node);
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
                self.shared.task_succeeded(
                    node,
                    done.attempts,
                    done.end.saturating_duration_since(done.start),
                );
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
            Err(error) if waits.is_some() => {
                // Its requests for feedback are not yet answered: it runs again on resume.
                let stamp = (self.records[node as usize].runs, done.attempts);
                self.shared.dynamic.take(node, stamp);
                self.waiting(node, done.attempts, waits.unwrap_or_default(), &error);
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
    pub(super) fn wait_to_retry(
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
    pub(super) fn failed(&mut self, node: u32, attempts: u32, error: AttemptError) {
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
                kind: Some(error.kind()),
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

    /// `node` stopped to wait for `requests`: it holds nothing, its successors wait, and the
    /// run ends as waiting once nothing else can run.
    #[cold]
    #[inline(never)]
    pub(super) fn waiting(
        &mut self,
        node: u32,
        attempts: u32,
        requests: Vec<crate::run::WaitingRequest>,
        error: &AttemptError,
    ) {
        self.shared.clear_result(node);
        let record = &mut self.records[node as usize];
        record.status = TaskStatus::Waiting;
        record.attempts = attempts;
        record.error = Some(Chain(error).to_string().into_boxed_str());
        record.error_chain = None;
        self.shared
            .task_event(node, attempts, || EventKind::TaskWaiting {
                requests: requests.iter().map(|r| r.request_id.clone()).collect(),
                error: Chain(error).to_string(),
            });
        tracing::info!(
            target: "graflow::engine",
            task = %self.shared.task(node).id(),
            requests = requests.len(),
            "task waits for an answer"
        );
        self.waiting.extend(requests);
    }

    #[cold]
    #[inline(never)]
    pub(super) fn cancelled(&mut self, node: u32, message: String) {
        self.shared.clear_result(node);
        let record = &mut self.records[node as usize];
        record.status = TaskStatus::Failed;
        record.error = Some(format!("cancelled the run: {message}").into_boxed_str());
        record.error_chain = None;
        let attempts = record.attempts;
        self.shared
            .task_event(node, attempts, || EventKind::TaskFailed {
                error: format!("cancelled the run: {message}"),
                kind: None,
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
    pub(super) fn release(&mut self, node: u32) {
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
    pub(super) fn bypass(&mut self, node: u32) {
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
    pub(super) fn led(&self, node: u32) -> bool {
        self.shared
            .preds(node)
            .iter()
            .any(|&p| self.done(p) && !self.instead.contains(&p))
    }

    /// Tells the run's observers that the nodes queued from `from` on are ready.
    #[inline]
    pub(super) fn announce(&self, from: usize) {
        if self.shared.is_watched() {
            self.announce_ready(from);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn announce_ready(&self, from: usize) {
        for &node in self.ready.range(from.min(self.ready.len())..) {
            self.shared.task_event(node, 0, || EventKind::TaskReady);
        }
    }

    /// A node finished for good (succeeded, or failed in a tolerant group): counts checkpoint
    /// triggers.
    pub(super) fn completed(&mut self, asked: bool) {
        if let Some(checkpoint) = &mut self.checkpoint
            && checkpoint.due(asked)
        {
            self.save_checkpoint(false);
        }
    }

    /// Writes a checkpoint of the current state, if the run keeps them. `last`: the run ended.
    #[cold]
    #[inline(never)]
    pub(super) fn save_checkpoint(&mut self, last: bool) {
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
}
