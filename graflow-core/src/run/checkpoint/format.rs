//! The file's parts as they are encoded: head, body, node states, added nodes, stored values; status codes and the workflow fingerprint.

use super::{
    Cadence, Deserialize, Duration, EncodedValue, GroupState, NodeOptions, Serialize, Source,
    TaskStatus, Value, Workflow,
};
#[cfg(any(test, fuzzing))]
use super::{FORMAT, MAGIC, PREAMBLE};

/// A value in its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) type_name: String,
    pub(super) bytes: Vec<u8>,
}

impl Stored {
    pub(super) fn of(encoded: EncodedValue) -> Stored {
        Stored {
            type_name: encoded.type_name,
            bytes: encoded.bytes,
        }
    }

    pub(super) fn value(self) -> Value {
        Value::from_encoded(EncodedValue {
            type_name: self.type_name,
            bytes: self.bytes,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Head {
    pub(super) build_id: String,
    pub(super) workflow: String,
    pub(super) fingerprint: u64,
    pub(super) run_id: String,
    pub(super) cadence: Cadence,
    /// How many checkpoints this run wrote, this one included.
    pub(super) sequence: u64,
    pub(super) written_at_ms: u64,
    /// Written when the run ended (successfully or not), not while it ran.
    pub(super) last: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct NodeState {
    pub(super) status: u8,
    pub(super) attempts: u32,
    pub(super) runs: u32,
    pub(super) tolerated: bool,
    pub(super) error: Option<String>,
    pub(super) start_us: Option<u64>,
    pub(super) duration_us: Option<u64>,
    pub(super) runner: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct AddedNode {
    pub(super) function: String,
    pub(super) id: String,
    pub(super) handler: String,
    pub(super) inputs: Vec<(String, Stored)>,
    pub(super) options: NodeOptions,
    pub(super) sources: Vec<Source>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Body {
    pub(super) nodes: Vec<NodeState>,
    pub(super) indegree: Vec<u32>,
    pub(super) ready: Vec<u32>,
    pub(super) results: Vec<(u32, Stored)>,
    pub(super) channel: Vec<(String, Stored)>,
    pub(super) added: Vec<AddedNode>,
    pub(super) extra_preds: Vec<(u32, Vec<u32>)>,
    pub(super) extra_succs: Vec<(u32, Vec<u32>)>,
    pub(super) overrides: Vec<(u32, Vec<(String, Stored)>)>,
    pub(super) groups: Vec<GroupState>,
    /// The task that ended the run early, and its message: a resume starts nothing.
    pub(super) terminated: Option<(u32, String)>,
}

pub(super) fn status_code(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Succeeded => 0,
        TaskStatus::Failed => 1,
        TaskStatus::Cancelled => 2,
        // A waiting task runs again on resume: pending, as a skipped one.
        TaskStatus::Skipped | TaskStatus::Waiting => 3,
    }
}

pub(super) fn status_of(code: u8) -> Option<TaskStatus> {
    Some(match code {
        0 => TaskStatus::Succeeded,
        1 => TaskStatus::Failed,
        2 => TaskStatus::Cancelled,
        3 => TaskStatus::Skipped,
        _ => return None,
    })
}

/// The workflow's [`Workflow::fingerprint`]: what a checkpoint must match to be resumed.
pub(crate) fn fingerprint(workflow: &Workflow) -> u64 {
    workflow.fingerprint()
}

pub(super) fn micros(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The bytes of a checkpoint file of `head` and `body`, as `write_atomically` writes them.
#[cfg(any(test, fuzzing))]
pub(crate) fn file_bytes(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(body);
    let mut out = Vec::with_capacity(PREAMBLE + head.len() + body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(body);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out
}
