//! Writing checkpoints: when one is due, capturing a running scheduler's state, encoding it and replacing the file atomically, one program at a time.

use super::{
    AddedNode, Cadence, CheckpointError, Cow, FORMAT, FileLock, GroupState, Head, Instant, MAGIC,
    Path, PoisonError, Progress, Record, RunShared, Serialize, Stored, SystemTime, TaskStatus,
    UNIX_EPOCH, Value, Workflow, build_id, fingerprint, micros, status_code, stopped_the_run,
};

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
    pub(crate) fn new(
        cadence: Cadence,
        workflow: &Workflow,
        run_id: &str,
        sequence: u64,
    ) -> Result<Self, CheckpointError> {
        let lock = Self::lock_for(&cadence.path)?;
        Ok(Self::with_lock(cadence, workflow, run_id, sequence, lock))
    }

    /// This program's exclusive hold on the checkpoint at `path`, or who holds it.
    pub(crate) fn lock_for(path: &Path) -> Result<FileLock, CheckpointError> {
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
    pub(crate) fn with_lock(
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

    /// The file it writes.
    pub(crate) fn path(&self) -> &Path {
        &self.cadence.path
    }

    /// A task finished for good: whether a checkpoint is due (`asked`: the task asked for one).
    pub(crate) fn due(&mut self, asked: bool) -> bool {
        self.since += 1;
        asked
            || self.cadence.every.is_some_and(|n| self.since >= n)
            || self
                .cadence
                .interval
                .is_some_and(|d| self.last.elapsed() >= d)
    }

    /// Writes the scheduler's current state. `last`: the run has ended.
    pub(crate) fn save(&mut self, s: &dyn Progress, last: bool) -> Result<(), String> {
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
    pub(super) fn encode_body(&mut self, s: &dyn Progress) -> Result<Vec<u8>, CheckpointError> {
        let path = self.cadence.path.clone();
        let config = bincode::config::standard();
        let encode_error = |e: bincode::error::EncodeError| CheckpointError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        };
        if s.groups().iter().any(|g| matches!(g.verdict, Some(Err(_)))) {
            self.refresh(s)?;
            let body = self.capture(s)?;
            return bincode::serde::encode_to_vec(&body, config).map_err(encode_error);
        }
        let shared: &RunShared = s.shared();
        let n = s.records().len();
        self.nodes.resize_with(n, || None);
        self.results.resize_with(n, || None);
        let mut out = Vec::with_capacity(self.last_len + 256);
        put(&mut out, &(n as u64), config).map_err(encode_error)?;
        for (node, record) in s.records().iter().enumerate() {
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
        put(&mut out, s.indegree(), config).map_err(encode_error)?;
        put(&mut out, &s.ready_on_resume(), config).map_err(encode_error)?;
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
    pub(super) fn refresh(&mut self, s: &dyn Progress) -> Result<(), CheckpointError> {
        let shared: &RunShared = s.shared();
        let path = &self.cadence.path;
        let n = s.records().len();
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
    pub(super) fn refresh_added(&mut self, s: &dyn Progress) -> Result<(), CheckpointError> {
        let path = &self.cadence.path;
        for (_, node) in s.shared().dynamic.nodes.iter().skip(self.added.len()) {
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
    pub(super) fn capture<'a>(
        &'a self,
        s: &'a dyn Progress,
    ) -> Result<BodyRef<'a>, CheckpointError> {
        let shared: &RunShared = s.shared();
        let results = self
            .results
            .iter()
            .enumerate()
            .filter_map(|(node, r)| r.as_ref().map(|(_, stored, _)| (node as u32, stored)))
            .collect();
        let mut ready = s.ready_on_resume();
        let mut nodes: Vec<NodeRef<'a>> = s.records().iter().map(node_ref).collect();
        let mut indegree = Cow::Borrowed(s.indegree());
        let mut groups = Cow::Borrowed(s.groups());
        // A group whose policy failed runs its failed members again on resume, and everything
        // after them (their successors ran when their failure was tolerated): all pending,
        // each waiting for its predecessors again.
        let failed_groups: Vec<usize> = s
            .groups()
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
            let mut fresh = s.indegree().to_vec();
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
    pub(super) fn capture_rest<'a>(
        &'a self,
        s: &'a dyn Progress,
    ) -> Result<RestRef<'a>, CheckpointError> {
        let shared: &RunShared = s.shared();
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
            extra_succs: s.extra_succs().iter().map(|(&k, v)| (k, &v[..])).collect(),
            overrides,
            groups: Cow::Borrowed(s.groups()),
            terminated: s.terminated(),
        })
    }
}

/// Appends the encoding of `value` to `out`.
pub(super) fn put<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    config: bincode::config::Configuration,
) -> Result<(), bincode::error::EncodeError> {
    bincode::serde::encode_into_std_write(value, out, config).map(drop)
}

/// A result as the cache keeps it: the value, its wire form, and the body's entry for it.
pub(super) fn result_entry(
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

pub(super) fn encode(path: &Path, what: String, value: &Value) -> Result<Stored, CheckpointError> {
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
pub(super) struct BodyRef<'a> {
    pub(super) nodes: Vec<NodeRef<'a>>,
    pub(super) indegree: Cow<'a, [u32]>,
    pub(super) ready: Vec<u32>,
    pub(super) results: Vec<(u32, &'a Stored)>,
    pub(super) rest: RestRef<'a>,
}

/// The fields of [`Body`] after `results`.
#[derive(Serialize)]
pub(super) struct RestRef<'a> {
    pub(super) channel: Vec<(String, Stored)>,
    pub(super) added: &'a [AddedNode],
    pub(super) extra_preds: Vec<(u32, Vec<u32>)>,
    pub(super) extra_succs: Vec<(u32, &'a [u32])>,
    pub(super) overrides: Vec<(u32, Vec<(String, Stored)>)>,
    pub(super) groups: Cow<'a, [GroupState]>,
    pub(super) terminated: Option<(u32, &'a str)>,
}

/// A record as a checkpoint keeps it: a running task's status is provisional, and a failed one
/// runs again, so both are pending on resume; a running task's start is not counted.
pub(super) fn node_ref(r: &Record) -> NodeRef<'_> {
    let running = r.status == TaskStatus::Cancelled;
    let status = if running || stopped_the_run(r) {
        TaskStatus::Skipped
    } else {
        r.status
    };
    NodeRef {
        status: status_code(status),
        attempts: r.attempts,
        // A run that did not end (running, or stopped to wait for an answer) does not count:
        // resumed, it is the same run (a waiting task asks its questions again under the same
        // keys, and finds their answers).
        runs: if running || r.status == TaskStatus::Waiting {
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
pub(super) struct NodeKey {
    pub(super) status: u8,
    pub(super) attempts: u32,
    pub(super) runs: u32,
    pub(super) tolerated: bool,
    pub(super) start_us: Option<u64>,
    pub(super) duration_us: Option<u64>,
    pub(super) error: Option<u64>,
    pub(super) runner: Option<u64>,
}

pub(super) fn key_of(node: &NodeRef<'_>) -> NodeKey {
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
pub(super) struct NodeRef<'a> {
    pub(super) status: u8,
    pub(super) attempts: u32,
    pub(super) runs: u32,
    pub(super) tolerated: bool,
    pub(super) error: Option<&'a str>,
    pub(super) start_us: Option<u64>,
    pub(super) duration_us: Option<u64>,
    pub(super) runner: Option<&'a str>,
}

/// The temporary file a write of `path` goes through: `.{name}.{pid}.{n}.tmp` beside it.
/// Replaces `path` with a checkpoint of `head` and `body` (see [`crate::files::replace`]).
pub(super) fn write_atomically(
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
