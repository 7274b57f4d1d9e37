//! Running a task outside this process: the host side of the runner protocol
//! ([`graflow_protocol`]) that every out-of-process handler shares.
//!
//! | file | what |
//! |---|---|
//! | `driver.rs` | [`RemoteAttempt`]: drives one attempt over a runner's input and output; [`apply_outcome_bytes`] for an outcome that arrives whole (a queue's message) |
//! | `attempt.rs` | the invocation built from run state, the outcome applied back to it |
//! | `logs.rs` | [`LogLines`]: a runner's output lines, bounded |
//! | `pool.rs` | [`RunnerPool`]: warm runners that serve one task after another, pooled per environment |
//! | `warm.rs` | one warm runner's I/O: started, then serving jobs; outcomes delimited, log lines attributed |
//!
//! The runner side (what a process started by a handler does) is `runner.rs`.

mod attempt;
mod driver;
mod logs;
mod pool;
mod warm;

use std::sync::OnceLock;

pub use attempt::{RemoteError, invocation};
pub(crate) use attempt::{outcome_of, runner_failure};
pub use driver::{Chunk, Driven, Ended, RemoteAttempt, apply_outcome_bytes, attempt_nonce};
pub use logs::{LogLines, LogTarget};
pub use pool::{Lease, PoolOptions, REUSE_OPTION, RunnerPool};
pub use warm::{Starter, Transport};

/// An id of this program's build: the GNU build id of the executable when it has one (the
/// linker's hash of the whole binary), else a hash of its task registry (names and types).
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        if let Some(id) = std::env::current_exe()
            .ok()
            .and_then(|exe| graflow_protocol::build_id::gnu_build_id(&exe))
        {
            return id;
        }
        // FNV-1a over the registry: stable across processes of the same binary.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut defs: Vec<_> = crate::definition::definitions().collect();
        defs.sort_unstable_by_key(|d| d.name);
        for def in defs {
            let mut feed = |s: &str| {
                for b in s.bytes().chain([0]) {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                }
            };
            feed(def.name);
            feed(def.output.name());
            for param in def.params {
                feed(param.name);
                feed(param.ty.name());
            }
        }
        format!("registry-{hash:016x}")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_binary_has_a_build_id() {
        assert!(super::build_id().len() >= 16, "{}", super::build_id());
        assert_eq!(super::build_id(), super::build_id());
    }
}
