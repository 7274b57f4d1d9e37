//! Restoring a checkpoint into a run: every structure checked against the workflow before the scheduler starts from it.

use super::{
    Cadence, Checkpoint, CheckpointError, Duration, GroupState, PoisonError, Record, RunShared,
    Start, Task, TaskStatus, control, definitions, status_of,
};

impl Checkpoint {
    /// The cadence the run that wrote it used (a resumed run keeps writing the same way), to
    /// the file it was read from (never to a path the file itself names).
    pub(crate) fn cadence(&self) -> Cadence {
        Cadence {
            path: self.path.clone(),
            ..self.head.cadence.clone()
        }
    }

    /// The channel as it was.
    pub(crate) fn channel(&mut self) -> crate::channel::Channel {
        let channel = crate::channel::Channel::new();
        for (key, stored) in std::mem::take(&mut self.body.channel) {
            channel.set_value(key, stored.value());
        }
        channel
    }

    /// Puts the kept results and added nodes into `shared` (a fresh run of the checkpoint's
    /// workflow) and returns where its scheduler starts. `slot_for(handler, task)` gives the
    /// index of a handler among the run's.
    pub(crate) fn restore(
        self,
        shared: &RunShared,
        slot_for: &mut dyn FnMut(&str, &str) -> Result<u32, String>,
    ) -> Result<Start, CheckpointError> {
        let path = self.path;
        let body = self.body;
        if body.groups.len() != shared.workflow.group_list().len() {
            return Err(CheckpointError::Corrupt {
                path,
                reason: format!(
                    "it has {} group(s) where the workflow has {}",
                    body.groups.len(),
                    shared.workflow.group_list().len()
                ),
            });
        }
        let restore = |reason: String| CheckpointError::Restore {
            path: path.clone(),
            reason,
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.clone(),
            reason,
        };
        for added in body.added {
            let Some(def) = definitions().find(|d| d.name == added.function) else {
                return Err(restore(format!(
                    "task '{}' (added while the run ran) is of function `{}`, which this program does not have",
                    added.id, added.function
                )));
            };
            if added.sources.len() != def.params.len() {
                return Err(corrupt(format!(
                    "added task '{}' has {} parameter source(s) but its function {} parameter(s)",
                    added.id,
                    added.sources.len(),
                    def.params.len()
                )));
            }
            if shared.index_of(&added.id).is_some() {
                return Err(corrupt(format!(
                    "added task '{}' has the id of another task of the run",
                    added.id
                )));
            }
            let slot = slot_for(&added.handler, &added.id).map_err(&restore)?;
            let inputs = added
                .inputs
                .into_iter()
                .map(|(k, v)| (k, v.value()))
                .collect();
            let task = Task::restore(def, added.id.clone(), added.handler, inputs, added.options);
            let at = shared.dynamic.nodes.push(control::DynNode {
                task,
                slot,
                sources: added.sources,
                result: std::sync::Mutex::new(None),
            });
            shared
                .dynamic
                .index
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(added.id, (shared.static_len() + at) as u32);
        }
        for (node, preds) in body.extra_preds {
            for pred in preds {
                shared.dynamic.add_pred(node, pred);
            }
        }
        for (node, inputs) in body.overrides {
            let inputs = inputs.into_iter().map(|(k, v)| (k, v.value())).collect();
            shared.dynamic.set_overrides(node, inputs);
        }
        for (node, stored) in body.results {
            shared.store_result(node, stored.value());
        }
        let records = body
            .nodes
            .into_iter()
            .map(|s| Record {
                status: status_of(s.status).unwrap_or(TaskStatus::Skipped),
                attempts: s.attempts,
                start: s.start_us.map(Duration::from_micros),
                duration: s.duration_us.map(Duration::from_micros),
                error: s.error.map(String::into_boxed_str),
                error_chain: None,
                runner: s.runner.map(String::into_boxed_str),
                runs: s.runs,
                tolerated: s.tolerated,
            })
            .collect();
        let mut ready = body.ready;
        ready.sort_unstable();
        ready.dedup();
        // The scheduler's state must agree with itself: a node waits for at most as many
        // predecessors as it has, and a node that is ready has not finished.
        let records: Vec<Record> = records;
        let done = |r: &Record| {
            r.status == TaskStatus::Succeeded || (r.status == TaskStatus::Failed && r.tolerated)
        };
        for (n, &waiting) in body.indegree.iter().enumerate() {
            let preds = shared.preds(n as u32).len();
            if waiting as usize > preds {
                return Err(corrupt(format!(
                    "node {n} waits for {waiting} predecessor(s) but has {preds}"
                )));
            }
        }
        if let Some(&n) = ready
            .iter()
            .find(|&&n| done(&records[n as usize]) || body.indegree[n as usize] != 0)
        {
            return Err(corrupt(format!(
                "node {n} is ready but has finished or still waits"
            )));
        }
        let groups = body.groups;
        check_groups(shared, &groups, &records).map_err(corrupt)?;
        Ok(Start {
            records,
            indegree: body.indegree,
            ready,
            extra_succs: body.extra_succs.into_iter().collect(),
            groups,
            terminated: body.terminated,
        })
    }
}

/// Every group's state agrees with the workflow and with the nodes' records: the members it
/// counts as finished are its own members, finished for good, and its counters count exactly
/// them (the scheduler decides verdicts from the counters, so forged ones would give wrong
/// verdicts or overflow).
pub(super) fn check_groups(
    shared: &RunShared,
    groups: &[GroupState],
    records: &[Record],
) -> Result<(), String> {
    let list = shared.workflow.group_list();
    for (g, (state, group)) in groups.iter().zip(list).enumerate() {
        let mut succeeded = 0u32;
        let mut failed = 0u32;
        for &m in &state.done {
            if shared.graph.tolerant_group(m) != Some(g as u32) {
                return Err(format!(
                    "group '{}' counts node {m} as a finished member, but it is not one of its members",
                    group.name
                ));
            }
            if state.verdict.is_some() {
                // Decided: members may have run again since (a goto), and the counters are
                // no longer read; they only have to add up.
                continue;
            }
            let record = &records[m as usize];
            match record.status {
                TaskStatus::Succeeded => succeeded += 1,
                TaskStatus::Failed if record.tolerated => failed += 1,
                status => {
                    return Err(format!(
                        "group '{}' counts member '{}' as finished, but its status is {status}",
                        group.name,
                        shared.task(m).id()
                    ));
                }
            }
        }
        if state.verdict.is_some() {
            if u64::from(state.succeeded) + u64::from(state.failed) != state.done.len() as u64 {
                return Err(format!(
                    "group '{}' says {} member(s) succeeded and {} failed, but it counts {} as finished",
                    group.name,
                    state.succeeded,
                    state.failed,
                    state.done.len()
                ));
            }
        } else if (state.succeeded, state.failed) != (succeeded, failed) {
            return Err(format!(
                "group '{}' says {} member(s) succeeded and {} failed, but the members it counts as finished are {succeeded} and {failed}",
                group.name, state.succeeded, state.failed
            ));
        }
    }
    Ok(())
}
