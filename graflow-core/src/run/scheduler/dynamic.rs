//! Applying what an attempt asked of its run: added nodes and edges, gotos (re-arming a target and what follows it), iterations.

use super::{
    AttemptError, ControlError, DynNode, End, EventKind, HashMap, Record, Release, Requests,
    RunShared, Scheduler, Slot, Task, TaskStatus, VecDeque, cycle_limit, refused,
};

impl Scheduler {
    /// Applies what `node`'s successful attempt asked for. `Ok(release)`: what becomes of its
    /// successors; `Err`: the node fails with it.
    #[cold]
    #[inline(never)]
    pub(super) fn apply(&mut self, node: u32, requests: Requests) -> Result<Release, AttemptError> {
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
    pub(super) fn slot_index(&mut self, slot: Slot) -> u32 {
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
            successors: self.extra_succs.get(&new).map_or_else(Vec::new, |succs| {
                succs
                    .iter()
                    .map(|&s| shared.task(s).id().to_owned())
                    .collect()
            }),
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
    pub(super) fn rearm_set(&self, asking: u32, target: u32) -> Result<Vec<bool>, ControlError> {
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
    pub(super) fn rearm(&mut self, target: u32, set: &[bool]) {
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
pub(super) fn instead_askers(
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
pub(super) fn free(indegree: &mut [u32], ready: &mut VecDeque<u32>, next: u32) {
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
