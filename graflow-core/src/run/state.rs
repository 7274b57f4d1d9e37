//! The scheduler's state as data: where a run starts ([`Start`]: fresh, or what a checkpoint
//! kept), the tolerant groups' progress, and the view of a running scheduler a checkpoint is
//! written from ([`Progress`]). Below both the scheduler and the checkpoint, so that neither
//! needs the other's internals.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use super::RunShared;
use crate::report::{Record, TaskStatus};

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
    pub(crate) fn fresh(shared: &RunShared) -> Start {
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

/// What a checkpoint reads of a running scheduler.
pub(crate) trait Progress {
    /// The run.
    fn shared(&self) -> &Arc<RunShared>;
    /// Every node's record.
    fn records(&self) -> &[Record];
    /// Every node's in-degree.
    fn indegree(&self) -> &[u32];
    /// Successors added while running.
    fn extra_succs(&self) -> &HashMap<u32, Vec<u32>>;
    /// The tolerant groups' progress.
    fn groups(&self) -> &[GroupState];
    /// The task that ended the run early, and its message.
    fn terminated(&self) -> Option<(u32, &str)>;
    /// The successors of `node`, its workflow's and those added while running.
    fn succs(&self, node: u32) -> Vec<u32>;
    /// The ready set a resume starts from: tasks ready now, tasks held back by their handler's
    /// limit, running tasks, and the task whose failure stopped the run.
    fn ready_on_resume(&self) -> Vec<u32>;
}

/// Whether `r` is a failure that stopped the run (not one its group tolerated): that task runs
/// again on resume.
pub(crate) fn stopped_the_run(r: &Record) -> bool {
    (r.status == TaskStatus::Failed && !r.tolerated) || r.status == TaskStatus::Waiting
}
