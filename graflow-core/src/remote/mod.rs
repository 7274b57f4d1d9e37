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
#[cfg(fuzzing)]
pub(crate) mod fuzzing;
mod logs;
mod pool;
mod warm;

pub use attempt::{RemoteError, invocation};
pub(crate) use attempt::{outcome_of, runner_failure};
pub use driver::{Chunk, Driven, Ended, RemoteAttempt, apply_outcome_bytes};
pub use logs::{LogLines, LogTarget};
pub use pool::{Lease, PoolOptions, REUSE_OPTION, RunnerPool};
pub use warm::{Starter, Transport};

pub(crate) use crate::definition::build_id;

#[cfg(test)]
mod tests {
    #[test]
    fn this_binary_has_a_build_id() {
        assert!(super::build_id().len() >= 16, "{}", super::build_id());
        assert_eq!(super::build_id(), super::build_id());
    }
}
