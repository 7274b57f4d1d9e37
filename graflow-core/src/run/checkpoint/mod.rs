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

use super::state::{GroupState, Progress, Start, stopped_the_run};
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

mod format;
mod load;
mod restore;
#[cfg(test)]
mod tests;
mod write;

use format::{AddedNode, Body, Head, Stored, micros, status_code, status_of};

#[cfg(fuzzing)]
pub(crate) use format::file_bytes;
pub(crate) use format::fingerprint;
pub use load::Checkpoint;
pub(crate) use write::Checkpointer;
