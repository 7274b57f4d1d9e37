//! Checkpoints: a run's state in a file, written atomically, from which
//! [`RunOptions::resume_from`](crate::RunOptions::resume_from) continues.
//!
//! What is kept: every node's status, attempts and run count, the scheduler's in-degrees and
//! ready set (tasks running when it was written are ready again), every result, the channel,
//! the nodes and edges added while running, pending iteration inputs and the tolerant groups'
//! progress. Results and channel values are kept in their wire form (bincode), so every value
//! of a checkpointed run must be serializable, as it must be to cross a process boundary.
//!
//! The file (format 1):
//!
//! ```text
//! "GRAFLOW-CHECKPOINT\n" | format (u32 LE) | head length (u32 LE) | body length (u64 LE)
//! | head (bincode) | body (bincode) | CRC-32 (IEEE) of head and body (u32 LE)
//! ```
//!
//! The head names the build and the workflow (name and a fingerprint of its tasks, handlers,
//! edges and groups); a checkpoint of another build or workflow is refused before its body is
//! read. A file is written to a temporary name beside the target, synced, and renamed over it:
//! a reader sees the previous checkpoint or the new one, never a part.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use graflow_protocol::EncodedValue;
use serde::{Deserialize, Serialize};

use super::scheduler::{GroupState, Scheduler, Start};
use super::{RunShared, control};
use crate::definition::{build_id, definitions};
use crate::files::FileLock;
use crate::graph::{NodeOptions, Source, Task, Workflow};
use crate::report::{Record, TaskStatus};
use crate::value::Value;

const MAGIC: &[u8; 19] = b"GRAFLOW-CHECKPOINT\n";
const FORMAT: u32 = 1;
/// The fixed part before the head: magic, format, head length, body length.
pub(crate) const PREAMBLE: usize = MAGIC.len() + 4 + 4 + 8;

/// Why a checkpoint could not be written, read or resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("could not {action} checkpoint '{}': {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not a whole checkpoint.
    #[error(
        "checkpoint '{}' is corrupt: {reason}; it cannot be resumed (start the run afresh, or resume from a copy)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// Another program runs or resumes the run of this checkpoint now: two programs running
    /// one run would run its tasks twice.
    #[error(
        "checkpoint '{}' is in use by another run ({holder}); wait until that program ends, or stop it (a program that was killed releases it)",
        path.display()
    )]
    Locked {
        /// The file.
        path: PathBuf,
        /// Who holds it: its pid and host.
        holder: String,
    },

    /// Written by another format of checkpoint.
    #[error(
        "checkpoint '{}' has format {found}; this build reads format {FORMAT}: resume it with the version of graflow that wrote it",
        path.display()
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
    },

    /// Written by another build of the program.
    #[error(
        "checkpoint '{}' was written by another build of the program (build {theirs}; this is build {ours}): its results and graph may not match this code; resume it with the binary that wrote it, or start the run afresh",
        path.display()
    )]
    OtherBuild {
        /// The file.
        path: PathBuf,
        /// The build that wrote it.
        theirs: String,
        /// This build.
        ours: String,
    },

    /// Written by a run of another workflow (or of a workflow of the same name that has
    /// changed).
    #[error(
        "checkpoint '{}' belongs to workflow '{theirs}' (fingerprint {their_fingerprint:016x}), not to workflow '{ours}' (fingerprint {our_fingerprint:016x}); resume it with the workflow it was written for",
        path.display()
    )]
    OtherWorkflow {
        /// The file.
        path: PathBuf,
        /// The workflow it belongs to.
        theirs: String,
        /// Its fingerprint.
        their_fingerprint: u64,
        /// The workflow given.
        ours: String,
        /// Its fingerprint.
        our_fingerprint: u64,
    },

    /// The checkpoint is whole but cannot be restored here (a task function or handler this
    /// program does not have).
    #[error("checkpoint '{}' cannot be restored: {reason}", path.display())]
    Restore {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    /// A value of the run could not be encoded for the checkpoint.
    #[error("could not write checkpoint '{}': {reason}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// Which value, and why.
        reason: String,
    },
}

/// When a run writes checkpoints, and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cadence {
    pub path: PathBuf,
    /// After every this many finished tasks.
    pub every: Option<u32>,
    /// When this long passed since the last one (checked as tasks finish).
    pub interval: Option<Duration>,
    /// Synced to disk before the run goes on.
    pub durable: bool,
}

/// A value in its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    type_name: String,
    bytes: Vec<u8>,
}

impl Stored {
    fn of(encoded: EncodedValue) -> Stored {
        Stored {
            type_name: encoded.type_name,
            bytes: encoded.bytes,
        }
    }

    fn value(self) -> Value {
        Value::from_encoded(EncodedValue {
            type_name: self.type_name,
            bytes: self.bytes,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    build_id: String,
    workflow: String,
    fingerprint: u64,
    run_id: String,
    cadence: Cadence,
    /// How many checkpoints this run wrote, this one included.
    sequence: u64,
    written_at_ms: u64,
    /// Written when the run ended (successfully or not), not while it ran.
    last: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct NodeState {
    status: u8,
    attempts: u32,
    runs: u32,
    tolerated: bool,
    error: Option<String>,
    start_us: Option<u64>,
    duration_us: Option<u64>,
    runner: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct AddedNode {
    function: String,
    id: String,
    handler: String,
    inputs: Vec<(String, Stored)>,
    options: NodeOptions,
    sources: Vec<Source>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    nodes: Vec<NodeState>,
    indegree: Vec<u32>,
    ready: Vec<u32>,
    results: Vec<(u32, Stored)>,
    channel: Vec<(String, Stored)>,
    added: Vec<AddedNode>,
    extra_preds: Vec<(u32, Vec<u32>)>,
    extra_succs: Vec<(u32, Vec<u32>)>,
    overrides: Vec<(u32, Vec<(String, Stored)>)>,
    groups: Vec<GroupState>,
    /// The task that ended the run early, and its message: a resume starts nothing.
    terminated: Option<(u32, String)>,
}

fn status_code(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Succeeded => 0,
        TaskStatus::Failed => 1,
        TaskStatus::Cancelled => 2,
        TaskStatus::Skipped => 3,
    }
}

fn status_of(code: u8) -> Option<TaskStatus> {
    Some(match code {
        0 => TaskStatus::Succeeded,
        1 => TaskStatus::Failed,
        2 => TaskStatus::Cancelled,
        3 => TaskStatus::Skipped,
        _ => return None,
    })
}

fn fnv(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A fingerprint of the workflow's shape: name; each task's id, function and handler; the
/// edges; the groups and their policies.
pub(crate) fn fingerprint(workflow: &Workflow) -> u64 {
    let mut hash = FNV_START;
    let mut feed = |s: &str| {
        hash = fnv(s.as_bytes(), hash);
        hash = fnv(&[0], hash);
    };
    feed(workflow.name());
    for task in workflow.tasks() {
        feed(task.id());
        feed(task.name());
        feed(task.handler());
    }
    let mut edges: Vec<(&str, &str)> = workflow.edges().collect();
    edges.sort_unstable();
    edges.dedup();
    for (a, b) in edges {
        feed(a);
        feed(b);
    }
    for (name, members, policy) in workflow.groups() {
        feed(name);
        for m in members {
            feed(m);
        }
        feed(&policy.describe());
    }
    hash
}

fn micros(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Writes a run's checkpoints as its scheduler asks.
pub(crate) struct Checkpointer {
    cadence: Cadence,
    head: Head,
    since: u32,
    last: Instant,
    /// Results already encoded, by node: a result is encoded once, not at every checkpoint.
    /// The bytes are the body's `(node, result)` entry.
    results: Vec<Option<(Value, Stored, Vec<u8>)>>,
    /// The nodes added while running, encoded once.
    added: Vec<AddedNode>,
    /// Each node's encoding, and what it was made from.
    nodes: Vec<Option<(NodeKey, Vec<u8>)>>,
    /// The length of the last body written (to size the next one).
    last_len: usize,
    /// This program's exclusive hold on the file while the run lasts.
    _lock: FileLock,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("cadence", &self.cadence)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer of the run `run_id`, holding the lock on `cadence.path` (refused while
    /// another program holds it).
    pub fn new(
        cadence: Cadence,
        workflow: &Workflow,
        run_id: &str,
        sequence: u64,
    ) -> Result<Self, CheckpointError> {
        let lock = Self::lock_for(&cadence.path)?;
        Ok(Self::with_lock(cadence, workflow, run_id, sequence, lock))
    }

    /// This program's exclusive hold on the checkpoint at `path`, or who holds it.
    pub fn lock_for(path: &Path) -> Result<FileLock, CheckpointError> {
        FileLock::acquire(path).map_err(|e| match e {
            Ok(holder) => CheckpointError::Locked {
                path: path.to_owned(),
                holder,
            },
            Err(source) => CheckpointError::Io {
                action: "lock",
                path: path.to_owned(),
                source,
            },
        })
    }

    /// [`Checkpointer::new`] with the lock taken already.
    pub fn with_lock(
        cadence: Cadence,
        workflow: &Workflow,
        run_id: &str,
        sequence: u64,
        lock: FileLock,
    ) -> Self {
        crate::files::sweep_temporaries(&cadence.path);
        Checkpointer {
            head: Head {
                build_id: build_id().to_owned(),
                workflow: workflow.name().to_owned(),
                fingerprint: fingerprint(workflow),
                run_id: run_id.to_owned(),
                cadence: cadence.clone(),
                sequence,
                written_at_ms: 0,
                last: false,
            },
            cadence,
            since: 0,
            last: Instant::now(),
            results: Vec::new(),
            added: Vec::new(),
            nodes: Vec::new(),
            last_len: 0,
            _lock: lock,
        }
    }

    /// A task finished for good: whether a checkpoint is due (`asked`: the task asked for one).
    pub fn due(&mut self, asked: bool) -> bool {
        self.since += 1;
        asked
            || self.cadence.every.is_some_and(|n| self.since >= n)
            || self
                .cadence
                .interval
                .is_some_and(|d| self.last.elapsed() >= d)
    }

    /// Writes the scheduler's current state. `last`: the run has ended.
    pub fn save(&mut self, s: &Scheduler, last: bool) -> Result<(), String> {
        self.since = 0;
        self.last = Instant::now();
        self.head.sequence = self.head.sequence.saturating_add(1);
        self.head.last = last;
        self.head.written_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let body = self.encode_body(s).map_err(|e| e.to_string())?;
        self.last_len = body.len();
        let path = &self.cadence.path;
        let encode_error = |e: bincode::error::EncodeError| {
            CheckpointError::Encode {
                path: path.clone(),
                reason: e.to_string(),
            }
            .to_string()
        };
        let config = bincode::config::standard();
        let head = bincode::serde::encode_to_vec(&self.head, config).map_err(encode_error)?;
        write_atomically(path, &head, &body, self.cadence.durable).map_err(|e| e.to_string())?;
        tracing::debug!(
            target: "graflow::engine",
            path = %path.display(),
            sequence = self.head.sequence,
            bytes = head.len() + body.len(),
            "checkpoint written"
        );
        Ok(())
    }

    /// The body's bytes. Each node's record and result are encoded again only when its record
    /// changed since the last checkpoint; the rest (in-degrees, the ready set, the channel, the
    /// added nodes' edges, groups) is small or encoded fast. A run whose group policy failed
    /// (its members' successors are reset) takes the general path.
    fn encode_body(&mut self, s: &Scheduler) -> Result<Vec<u8>, CheckpointError> {
        let path = self.cadence.path.clone();
        let config = bincode::config::standard();
        let encode_error = |e: bincode::error::EncodeError| CheckpointError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        };
        if s.groups.iter().any(|g| matches!(g.verdict, Some(Err(_)))) {
            self.refresh(s)?;
            let body = self.capture(s)?;
            return bincode::serde::encode_to_vec(&body, config).map_err(encode_error);
        }
        let shared: &RunShared = &s.shared;
        let n = s.records.len();
        self.nodes.resize_with(n, || None);
        self.results.resize_with(n, || None);
        let mut out = Vec::with_capacity(self.last_len + 256);
        put(&mut out, &(n as u64), config).map_err(encode_error)?;
        for (node, record) in s.records.iter().enumerate() {
            let state = node_ref(record);
            let key = key_of(&state);
            if self.nodes[node].as_ref().is_none_or(|(k, _)| *k != key) {
                let bytes = bincode::serde::encode_to_vec(&state, config).map_err(encode_error)?;
                self.nodes[node] = Some((key, bytes));
                // Its result changes only together with its record.
                self.results[node] = match shared.result_value(node as u32) {
                    None => None,
                    Some(value) => match self.results[node].take() {
                        Some(cached) if cached.0.same(&value) => Some(cached),
                        _ => Some(result_entry(&path, shared, node as u32, value)?),
                    },
                };
            }
            if let Some((_, bytes)) = &self.nodes[node] {
                out.extend_from_slice(bytes);
            }
        }
        put(&mut out, &s.indegree[..], config).map_err(encode_error)?;
        put(&mut out, &ready_on_resume(s), config).map_err(encode_error)?;
        let results = self.results.iter().flatten().count() as u64;
        put(&mut out, &results, config).map_err(encode_error)?;
        for (_, _, bytes) in self.results.iter().flatten() {
            out.extend_from_slice(bytes);
        }
        self.refresh_added(s)?;
        let rest = self.capture_rest(s)?;
        put(&mut out, &rest, config).map_err(encode_error)?;
        #[cfg(debug_assertions)]
        {
            // The general path must write the same bytes (tests run debug builds).
            self.refresh(s)?;
            let body = self.capture(s)?;
            let whole = bincode::serde::encode_to_vec(&body, config).map_err(encode_error)?;
            debug_assert!(whole == out, "the incremental checkpoint encoding diverged");
        }
        Ok(out)
    }

    /// Encodes what changed since the last checkpoint: new or replaced results, and the
    /// nodes added since (a node's task never changes once added).
    fn refresh(&mut self, s: &Scheduler) -> Result<(), CheckpointError> {
        let shared: &RunShared = &s.shared;
        let path = &self.cadence.path;
        let n = s.records.len();
        self.results.resize_with(n, || None);
        for node in 0..n {
            let Some(value) = shared.result_value(node as u32) else {
                self.results[node] = None;
                continue;
            };
            if let Some((cached, _, _)) = &self.results[node]
                && cached.same(&value)
            {
                continue;
            }
            self.results[node] = Some(result_entry(path, shared, node as u32, value)?);
        }
        self.refresh_added(s)
    }

    /// Encodes the nodes added since the last checkpoint.
    fn refresh_added(&mut self, s: &Scheduler) -> Result<(), CheckpointError> {
        let path = &self.cadence.path;
        for (_, node) in s.shared.dynamic.nodes.iter().skip(self.added.len()) {
            let task = &node.task;
            self.added.push(AddedNode {
                function: task.name().to_owned(),
                id: task.id().to_owned(),
                handler: task.handler().to_owned(),
                inputs: task
                    .bound_inputs()
                    .map(|(k, v)| {
                        Ok((
                            k.to_owned(),
                            encode(path, format!("input `{k}` of task '{}'", task.id()), v)?,
                        ))
                    })
                    .collect::<Result<_, CheckpointError>>()?,
                options: task.node_options(),
                sources: node.sources.clone(),
            });
        }
        Ok(())
    }

    /// The body as it is now, borrowing what `refresh` encoded.
    fn capture<'a>(&'a self, s: &'a Scheduler) -> Result<BodyRef<'a>, CheckpointError> {
        let shared: &RunShared = &s.shared;
        let results = self
            .results
            .iter()
            .enumerate()
            .filter_map(|(node, r)| r.as_ref().map(|(_, stored, _)| (node as u32, stored)))
            .collect();
        let mut ready = ready_on_resume(s);
        let mut nodes: Vec<NodeRef<'a>> = s.records.iter().map(node_ref).collect();
        let mut indegree = Cow::Borrowed(&s.indegree[..]);
        let mut groups = Cow::Borrowed(&s.groups[..]);
        // A group whose policy failed runs its failed members again on resume, and everything
        // after them (their successors ran when their failure was tolerated): all pending,
        // each waiting for its predecessors again.
        let failed_groups: Vec<usize> = s
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| matches!(g.verdict, Some(Err(_))))
            .map(|(g, _)| g)
            .collect();
        if !failed_groups.is_empty() {
            let mut again = vec![false; nodes.len()];
            let mut stack = Vec::new();
            for &g in &failed_groups {
                let state = &mut groups.to_mut()[g];
                state.verdict = None;
                for &m in &shared.workflow.group_list()[g].members {
                    if nodes[m as usize].status != status_code(TaskStatus::Failed) {
                        continue;
                    }
                    if state.done.remove(&m) {
                        state.failed = state.failed.saturating_sub(1);
                    }
                    stack.push(m);
                }
            }
            while let Some(n) = stack.pop() {
                if !std::mem::replace(&mut again[n as usize], true) {
                    stack.extend(s.succs(n));
                }
            }
            // A member that runs again counts again: out of its group's finished members.
            for (g, group) in shared.workflow.group_list().iter().enumerate() {
                for &m in &group.members {
                    if again[m as usize] && groups.as_ref()[g].done.contains(&m) {
                        let state = &mut groups.to_mut()[g];
                        state.done.remove(&m);
                        if nodes[m as usize].status == status_code(TaskStatus::Succeeded) {
                            state.succeeded = state.succeeded.saturating_sub(1);
                        } else {
                            state.failed = state.failed.saturating_sub(1);
                        }
                    }
                }
            }
            for (n, node) in nodes.iter_mut().enumerate() {
                if again[n] {
                    node.status = status_code(TaskStatus::Skipped);
                    node.tolerated = false;
                }
            }
            let done = |n: u32| {
                let node = &nodes[n as usize];
                node.status == status_code(TaskStatus::Succeeded)
                    || (node.status == status_code(TaskStatus::Failed) && node.tolerated)
            };
            let mut fresh = s.indegree.clone();
            for n in 0..nodes.len() as u32 {
                if again[n as usize] {
                    fresh[n as usize] = shared
                        .preds(n)
                        .iter()
                        .filter(|&&p| again[p as usize] || !done(p))
                        .count() as u32;
                }
            }
            ready.retain(|&r| !again[r as usize]);
            ready.extend(
                (0..nodes.len() as u32).filter(|&n| again[n as usize] && fresh[n as usize] == 0),
            );
            indegree = Cow::Owned(fresh);
        }
        let mut rest = self.capture_rest(s)?;
        rest.groups = groups;
        Ok(BodyRef {
            nodes,
            indegree,
            ready,
            results,
            rest,
        })
    }

    /// The body's fields after the results.
    fn capture_rest<'a>(&'a self, s: &'a Scheduler) -> Result<RestRef<'a>, CheckpointError> {
        let shared: &RunShared = &s.shared;
        let path = &self.cadence.path;
        let channel = shared
            .channel
            .entries()
            .into_iter()
            .map(|(key, value)| {
                let stored = encode(path, format!("channel key '{key}'"), &value)?;
                Ok((key, stored))
            })
            .collect::<Result<_, CheckpointError>>()?;
        let extra_preds = shared
            .dynamic
            .extra_preds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&k, v)| (k, v.clone()))
            .collect();
        let overrides = shared
            .dynamic
            .overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(&node, inputs)| {
                Ok((
                    node,
                    inputs
                        .iter()
                        .map(|(k, v)| {
                            Ok((
                                k.clone(),
                                encode(path, format!("iteration input `{k}`"), v)?,
                            ))
                        })
                        .collect::<Result<_, CheckpointError>>()?,
                ))
            })
            .collect::<Result<_, CheckpointError>>()?;
        Ok(RestRef {
            channel,
            added: &self.added,
            extra_preds,
            extra_succs: s.extra_succs.iter().map(|(&k, v)| (k, &v[..])).collect(),
            overrides,
            groups: Cow::Borrowed(&s.groups[..]),
            terminated: s.terminated(),
        })
    }
}

/// Appends the encoding of `value` to `out`.
fn put<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    config: bincode::config::Configuration,
) -> Result<(), bincode::error::EncodeError> {
    bincode::serde::encode_into_std_write(value, out, config).map(drop)
}

/// A result as the cache keeps it: the value, its wire form, and the body's entry for it.
fn result_entry(
    path: &Path,
    shared: &RunShared,
    node: u32,
    value: Value,
) -> Result<(Value, Stored, Vec<u8>), CheckpointError> {
    let stored = encode(
        path,
        format!("the result of task '{}'", shared.task(node).id()),
        &value,
    )?;
    let bytes = bincode::serde::encode_to_vec((node, &stored), bincode::config::standard())
        .map_err(|e| CheckpointError::Encode {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Ok((value, stored, bytes))
}

fn encode(path: &Path, what: String, value: &Value) -> Result<Stored, CheckpointError> {
    value
        .encode()
        .map(Stored::of)
        .map_err(|e| CheckpointError::Encode {
            path: path.to_owned(),
            reason: format!("{what} cannot be encoded: {e}"),
        })
}

/// [`Body`] as written: borrowed where the run already holds the data. Its fields and their
/// order are [`Body`]'s (a nested struct encodes as its fields, one after the other), so that
/// what is written reads back as a `Body`.
#[derive(Serialize)]
struct BodyRef<'a> {
    nodes: Vec<NodeRef<'a>>,
    indegree: Cow<'a, [u32]>,
    ready: Vec<u32>,
    results: Vec<(u32, &'a Stored)>,
    rest: RestRef<'a>,
}

/// The fields of [`Body`] after `results`.
#[derive(Serialize)]
struct RestRef<'a> {
    channel: Vec<(String, Stored)>,
    added: &'a [AddedNode],
    extra_preds: Vec<(u32, Vec<u32>)>,
    extra_succs: Vec<(u32, &'a [u32])>,
    overrides: Vec<(u32, Vec<(String, Stored)>)>,
    groups: Cow<'a, [GroupState]>,
    terminated: Option<(u32, &'a str)>,
}

/// Whether `r` is a failure that stopped the run (not one its group tolerated): that task runs
/// again on resume.
fn stopped_the_run(r: &Record) -> bool {
    r.status == TaskStatus::Failed && !r.tolerated
}

/// The ready set a resume starts from: tasks ready now, tasks held back by their handler's
/// limit, running tasks, and the task whose failure stopped the run.
fn ready_on_resume(s: &Scheduler) -> Vec<u32> {
    let mut ready: Vec<u32> = s.ready.iter().copied().collect();
    ready.extend(s.held_nodes());
    ready.extend(s.running_nodes());
    ready.extend(
        s.records
            .iter()
            .enumerate()
            .filter(|(_, r)| stopped_the_run(r))
            .map(|(n, _)| n as u32),
    );
    ready
}

/// A record as a checkpoint keeps it: a running task's status is provisional, and a failed one
/// runs again, so both are pending on resume; a running task's start is not counted.
fn node_ref(r: &Record) -> NodeRef<'_> {
    let running = r.status == TaskStatus::Cancelled;
    let status = if running || stopped_the_run(r) {
        TaskStatus::Skipped
    } else {
        r.status
    };
    NodeRef {
        status: status_code(status),
        attempts: r.attempts,
        runs: if running {
            r.runs.saturating_sub(1)
        } else {
            r.runs
        },
        tolerated: r.tolerated,
        error: r.error.as_deref(),
        start_us: micros(r.start),
        duration_us: micros(r.duration),
        runner: r.runner.as_deref(),
    }
}

/// What decides a node's encoding: when it is unchanged, so are its bytes, and so is its
/// result: the scheduler stores or clears a result only together with a change of its record
/// (a run starts: status and run count; it ends: status, timings; it goes back to pending for an
/// iteration or a goto, or fails: status, and its result is cleared). Debug builds check the
/// bytes against the general path at every save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeKey {
    status: u8,
    attempts: u32,
    runs: u32,
    tolerated: bool,
    start_us: Option<u64>,
    duration_us: Option<u64>,
    error: Option<u64>,
    runner: Option<u64>,
}

fn key_of(node: &NodeRef<'_>) -> NodeKey {
    let at = |s: Option<&str>| {
        s.map(|s| {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
            hasher.write(s.as_bytes());
            hasher.finish()
        })
    };
    NodeKey {
        status: node.status,
        attempts: node.attempts,
        runs: node.runs,
        tolerated: node.tolerated,
        start_us: node.start_us,
        duration_us: node.duration_us,
        error: at(node.error),
        runner: at(node.runner),
    }
}

/// [`NodeState`] as written.
#[derive(Serialize)]
struct NodeRef<'a> {
    status: u8,
    attempts: u32,
    runs: u32,
    tolerated: bool,
    error: Option<&'a str>,
    start_us: Option<u64>,
    duration_us: Option<u64>,
    runner: Option<&'a str>,
}

/// The temporary file a write of `path` goes through: `.{name}.{pid}.{n}.tmp` beside it.
/// Replaces `path` with a checkpoint of `head` and `body` (see [`crate::files::replace`]).
fn write_atomically(
    path: &Path,
    head: &[u8],
    body: &[u8],
    durable: bool,
) -> Result<(), CheckpointError> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.update(body);
    let checksum = crc.finalize();
    crate::files::replace(path, durable, |out| {
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT.to_le_bytes())?;
        out.write_all(&(head.len() as u32).to_le_bytes())?;
        out.write_all(&(body.len() as u64).to_le_bytes())?;
        out.write_all(head)?;
        out.write_all(body)?;
        out.write_all(&checksum.to_le_bytes())
    })
    .map_err(|source| CheckpointError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
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

/// A checkpoint read from its file: what the run had done when it was written.
pub struct Checkpoint {
    path: PathBuf,
    head: Head,
    body: Body,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("workflow", &self.head.workflow)
            .field("run_id", &self.head.run_id)
            .field("sequence", &self.head.sequence)
            .field("nodes", &self.body.nodes.len())
            .finish_non_exhaustive()
    }
}

/// The largest head a checkpoint may have.
const MAX_HEAD: u32 = 1 << 20;

impl Checkpoint {
    /// Reads and checks the checkpoint at `path` (whole, unchanged, of a known format). It
    /// is not compared with any workflow yet: [`RunOptions::resume_from`](crate::RunOptions::resume_from)
    /// does that.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref().to_owned();
        let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        Checkpoint::from_bytes(path, &bytes)
    }

    /// Reads and checks the checkpoint in `bytes`, read from `path` (see [`Checkpoint::load`]).
    pub(crate) fn from_bytes(path: PathBuf, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.clone(),
            reason,
        };
        if bytes.len() < PREAMBLE || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt(
                "it does not start like a graflow checkpoint".to_owned(),
            ));
        }
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let format = u32_at(MAGIC.len());
        if format != FORMAT {
            return Err(CheckpointError::Format {
                path,
                found: format,
            });
        }
        let head_len = u32_at(MAGIC.len() + 4);
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[MAGIC.len() + 8..PREAMBLE]);
        let body_len = u64::from_le_bytes(b);
        if head_len > MAX_HEAD {
            return Err(corrupt(format!("its head claims {head_len} bytes")));
        }
        let expected = (PREAMBLE as u64)
            .checked_add(u64::from(head_len))
            .and_then(|n| n.checked_add(body_len))
            .and_then(|n| n.checked_add(4));
        if expected != Some(bytes.len() as u64) {
            return Err(corrupt(format!(
                "it is {} bytes long but its lengths say {} (cut short, or appended to)",
                bytes.len(),
                expected.map_or_else(|| "more than can exist".to_owned(), |n| n.to_string())
            )));
        }
        let head_end = PREAMBLE + head_len as usize;
        let body_end = bytes.len() - 4;
        let mut checksum = [0u8; 4];
        checksum.copy_from_slice(&bytes[body_end..]);
        if crc32fast::hash(&bytes[PREAMBLE..body_end]) != u32::from_le_bytes(checksum) {
            return Err(corrupt(
                "its checksum does not match its contents (changed on disk?)".to_owned(),
            ));
        }
        // Bounded decoding: a length inside the head or the body that claims more bytes than
        // the file has is refused before anything is allocated for it (the checksum stops
        // accidents, not a forger: the format is documented).
        let head: Head = graflow_protocol::codec::decode(&bytes[PREAMBLE..head_end])
            .map_err(|e| corrupt(format!("its head cannot be read: {e}")))?;
        let body: Body = graflow_protocol::codec::decode(&bytes[head_end..body_end])
            .map_err(|e| corrupt(format!("its body cannot be read: {e}")))?;
        let checkpoint = Checkpoint {
            path: path.clone(),
            head,
            body,
        };
        checkpoint.check_shape().map_err(corrupt)?;
        Ok(checkpoint)
    }

    /// Every index in the body points at a node of it.
    fn check_shape(&self) -> Result<(), String> {
        let b = &self.body;
        let n = b.nodes.len();
        let ok = |node: &u32| (*node as usize) < n;
        let fine = b.indegree.len() == n
            && b.ready.iter().all(ok)
            && b.results.iter().all(|(node, _)| ok(node))
            && b.extra_preds
                .iter()
                .all(|(node, preds)| ok(node) && preds.iter().all(ok))
            && b.extra_succs
                .iter()
                .all(|(node, succs)| ok(node) && succs.iter().all(ok))
            && b.overrides.iter().all(|(node, _)| ok(node))
            && b.terminated.as_ref().is_none_or(|(node, _)| ok(node))
            && b.added.len() <= n
            && b.nodes.iter().all(|s| status_of(s.status).is_some())
            && b.added.iter().all(|a| {
                a.sources.iter().all(|s| match s {
                    Source::Bound(i) => (*i as usize) < a.inputs.len(),
                    Source::Result(node) => ok(node),
                    Source::Channel => true,
                })
            });
        if fine {
            Ok(())
        } else {
            Err("its contents are inconsistent (a node index out of range)".to_owned())
        }
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The workflow it belongs to.
    pub fn workflow(&self) -> &str {
        &self.head.workflow
    }

    /// The id of the run that wrote it.
    pub fn run_id(&self) -> &str {
        &self.head.run_id
    }

    /// The build of the program that wrote it.
    pub fn build_id(&self) -> &str {
        &self.head.build_id
    }

    /// How many checkpoints the run had written, this one included.
    pub fn sequence(&self) -> u64 {
        self.head.sequence
    }

    /// When it was written.
    pub fn written_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.head.written_at_ms)
    }

    /// Whether it was written when the run ended (rather than while it ran).
    pub fn is_final(&self) -> bool {
        self.head.last
    }

    /// The ids of the tasks that were done when it was written (succeeded, or failed where
    /// their group tolerated it), in node order: resuming it with `workflow` does not run them
    /// again. Refused like a resume if it does not belong to `workflow` and this build.
    pub fn completed(&self, workflow: &Workflow) -> Result<Vec<String>, CheckpointError> {
        self.check(workflow)?;
        let first_added = workflow.len();
        Ok(self
            .body
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == 0 || (s.status == 1 && s.tolerated))
            .map(|(node, _)| match workflow.tasks().get(node) {
                Some(task) => task.id().to_owned(),
                None => self.body.added[node - first_added].id.clone(),
            })
            .collect())
    }

    /// Checks that it belongs to `workflow` and this build.
    pub(crate) fn check(&self, workflow: &Workflow) -> Result<(), CheckpointError> {
        if self.head.build_id != build_id() {
            return Err(CheckpointError::OtherBuild {
                path: self.path.clone(),
                theirs: self.head.build_id.clone(),
                ours: build_id().to_owned(),
            });
        }
        let ours = fingerprint(workflow);
        let static_nodes = self.body.nodes.len() - self.body.added.len();
        if self.head.workflow != workflow.name()
            || self.head.fingerprint != ours
            || static_nodes != workflow.len()
        {
            return Err(CheckpointError::OtherWorkflow {
                path: self.path.clone(),
                theirs: self.head.workflow.clone(),
                their_fingerprint: self.head.fingerprint,
                ours: workflow.name().to_owned(),
                our_fingerprint: ours,
            });
        }
        Ok(())
    }
}

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
fn check_groups(
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn head(workflow: String, run_id: String, sequence: u64, last: bool) -> Head {
        Head {
            build_id: "build".to_owned(),
            workflow,
            fingerprint: 0x1234,
            run_id,
            cadence: Cadence {
                path: PathBuf::from("/tmp/run.checkpoint"),
                every: Some(1),
                interval: Some(Duration::from_millis(1500)),
                durable: true,
            },
            sequence,
            written_at_ms: 1_700_000_000_000,
            last,
        }
    }

    fn stored(type_name: &str, bytes: Vec<u8>) -> Stored {
        Stored {
            type_name: type_name.to_owned(),
            bytes,
        }
    }

    /// A body whose every index points at one of its `n` nodes.
    fn body(
        nodes: Vec<(u8, u32, Option<String>)>,
        picks: &[u32],
        values: Vec<Vec<u8>>,
        keys: Vec<String>,
    ) -> Body {
        let n = nodes.len() as u32;
        let pick = |i: usize| picks.get(i).map_or(0, |p| p % n.max(1));
        let nodes: Vec<NodeState> = nodes
            .into_iter()
            .map(|(status, attempts, error)| NodeState {
                status: status % 4,
                attempts,
                runs: attempts / 2,
                tolerated: status % 2 == 1,
                error,
                start_us: Some(u64::from(attempts)),
                duration_us: None,
                runner: Some("pid 42".to_owned()),
            })
            .collect();
        let some = !nodes.is_empty();
        Body {
            indegree: (0..n).map(|i| i % 3).collect(),
            ready: if some { vec![pick(0), pick(1)] } else { vec![] },
            results: if some {
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (pick(i), stored("alloc::vec::Vec<u8>", v.clone())))
                    .collect()
            } else {
                vec![]
            },
            channel: keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| (k, stored("u64", v)))
                .collect(),
            added: vec![],
            extra_preds: if some {
                vec![(pick(2), vec![pick(3)])]
            } else {
                vec![]
            },
            extra_succs: if some {
                vec![(pick(3), vec![pick(2)])]
            } else {
                vec![]
            },
            overrides: if some {
                vec![(pick(4), vec![("x".to_owned(), stored("u8", vec![7]))])]
            } else {
                vec![]
            },
            groups: vec![GroupState::default()],
            terminated: some.then(|| (pick(5), "done".to_owned())),
            nodes,
        }
    }

    fn file(head: &Head, body: &Body) -> Vec<u8> {
        file_bytes(&encoded(head), &encoded(body))
    }

    fn load(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::from_bytes(PathBuf::from("test.checkpoint"), bytes)
    }

    fn sample() -> Vec<u8> {
        file(
            &head("wf".to_owned(), "run-1".to_owned(), 3, false),
            &body(
                vec![(0, 1, None), (1, 2, Some("boom".to_owned())), (3, 0, None)],
                &[0, 1, 2, 0, 1, 2],
                vec![vec![1, 2, 3], vec![8]],
                vec!["k".to_owned(), "total".to_owned()],
            ),
        )
    }

    #[test]
    fn a_sample_checkpoint_loads() {
        let checkpoint = load(&sample()).unwrap();
        assert_eq!(checkpoint.workflow(), "wf");
        assert_eq!(checkpoint.sequence(), 3);
    }

    /// A string in the body that claims 2^40 bytes, in a file whose lengths and checksum agree
    /// (found by the `checkpoint` fuzz target): refused without allocating what it claims.
    #[test]
    fn a_body_string_claiming_a_terabyte_is_refused_without_allocating_it() {
        // One node whose `error` is Some(a string of 2^40 bytes), and nothing more.
        let mut body = vec![1u8, 0, 0, 0, 0, 1, 253];
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let head = encoded(&head("wf".to_owned(), "r".to_owned(), 1, false));
        let err = load(&file_bytes(&head, &body)).unwrap_err();
        assert!(err.to_string().contains("body cannot be read"), "{err}");
        // A head whose build id claims as much.
        let err = load(&file_bytes(&body[6..], &[])).unwrap_err();
        assert!(err.to_string().contains("head cannot be read"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// load(save(x)) == x: what a checkpoint file holds reads back as it was written (the
        /// decoded head and body encode to the very bytes they were read from).
        #[test]
        fn checkpoints_round_trip(
            workflow in "\\PC{0,12}",
            run_id in "[a-z0-9-]{0,16}",
            sequence in any::<u64>(),
            last in any::<bool>(),
            nodes in prop::collection::vec((any::<u8>(), any::<u32>(), prop::option::of("\\PC{0,8}")), 0..8),
            picks in prop::collection::vec(any::<u32>(), 6),
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..4),
            keys in prop::collection::vec("[a-z]{1,6}", 0..4),
        ) {
            let head = head(workflow, run_id, sequence, last);
            let body = body(nodes, &picks, values, keys);
            let bytes = file(&head, &body);
            let back = load(&bytes).unwrap();
            prop_assert_eq!(encoded(&back.head), encoded(&head));
            prop_assert_eq!(encoded(&back.body), encoded(&body));
            prop_assert_eq!(back.workflow(), head.workflow.as_str());
        }

        /// Arbitrary bytes, as a file and as a head and body under agreeing lengths and
        /// checksum, are refused or read, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            split in any::<usize>(),
        ) {
            let _ = load(&bytes);
            let at = split % (bytes.len() + 1);
            let _ = load(&file_bytes(&bytes[..at], &bytes[at..]));
        }

        /// A valid checkpoint cut short, with a bit flipped (checksum fixed up, as a forger
        /// would), or with a length set huge, is refused or read, never a panic.
        #[test]
        fn mutated_checkpoints_never_panic(
            cut in any::<usize>(),
            flip in any::<usize>(),
            bit in 0u8..8,
            at in any::<usize>(),
            huge in prop::sample::select(vec![u64::MAX, 1 << 60, 1 << 40, u64::from(u32::MAX)]),
        ) {
            let bytes = sample();
            let _ = load(&bytes[..cut % bytes.len()]);
            let content = &bytes[PREAMBLE..bytes.len() - 4];
            let head_len = u32::from_le_bytes(bytes[23..27].try_into().unwrap()) as usize;
            let mut flipped = content.to_vec();
            let i = flip % flipped.len();
            flipped[i] ^= 1 << bit;
            let _ = load(&file_bytes(&flipped[..head_len], &flipped[head_len..]));
            // A varint length (253 then a u64) spliced in anywhere.
            let mut long = content.to_vec();
            let i = at % long.len();
            let mut varint = vec![253u8];
            varint.extend_from_slice(&huge.to_le_bytes());
            long.splice(i..i, varint);
            let split = head_len.min(i);
            let _ = load(&file_bytes(&long[..split], &long[split..]));
            let _ = load(&file_bytes(&long[..head_len + 9], &long[head_len + 9..]));
        }
    }

    /// Writes the checkpoint target's seed corpus (`fuzz/seeds/checkpoint/`).
    #[test]
    #[ignore = "writes fuzz/seeds: run with --ignored after a change of the checkpoint format"]
    fn write_fuzz_seeds() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/checkpoint");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("three_nodes"), sample()).unwrap();
        let empty = file(
            &head("empty".to_owned(), "r".to_owned(), 1, true),
            &body(vec![], &[], vec![], vec![]),
        );
        std::fs::write(dir.join("no_nodes_final"), empty).unwrap();
    }
}
