//! Tolerant parallel groups: counting their members as they finish, and the verdict once decided.

use super::{Failure, GroupOutcome, GroupPolicy, Scheduler, TaskStatus};

impl Scheduler {
    /// A member of a tolerant group finished: the group's verdict, once decided.
    #[inline]
    pub(super) fn member_finished(&mut self, node: u32) {
        if let Some(g) = self.shared.graph.tolerant_group(node) {
            self.group_member_finished(g, node);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn group_member_finished(&mut self, g: u32, node: u32) {
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
    pub(super) fn outcome_of(&self, g: u32) -> GroupOutcome<'_> {
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
}
