//! Reading a checkpoint file: bounded decoding, checksum, format, build id and workflow checks.

use super::{
    Body, CheckpointError, Duration, FORMAT, Head, MAGIC, PREAMBLE, Path, PathBuf, Source,
    SystemTime, UNIX_EPOCH, Workflow, build_id, fingerprint, status_of,
};

/// A checkpoint read from its file: what the run had done when it was written.
pub struct Checkpoint {
    pub(super) path: PathBuf,
    pub(super) head: Head,
    pub(super) body: Body,
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
pub(super) const MAX_HEAD: u32 = 1 << 20;

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
    pub(super) fn check_shape(&self) -> Result<(), String> {
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
