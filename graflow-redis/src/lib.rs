//! The "redis" execution handler of graflow: tasks run on remote workers, which are the same
//! program started in worker mode, through Redis Streams.
//!
//! | module | what |
//! |---|---|
//! | `error.rs` | [`RedisError`] |
//! | `keys.rs` | key names under one prefix, names a user chooses, [`DEFAULT_QUEUE`] |
//! | `connect.rs` | connections (TLS, reconnecting with backoff), consumer groups, which errors a retry may cure |
//! | `scripts.rs` | the Lua scripts that make outcome + acknowledgement, dead-lettering, lease renewal and claims atomic |
//! | `entry/` | the job and reply entries, read as hostile input |
//! | `logs.rs` | an attempt's log lines, captured on the worker ([`CaptureLayer`]) and logged by the engine |
//! | `handler/` | [`RedisHandler`]: the engine side, one job per attempt, the reply dispatcher, the no-worker and lost-job monitor |
//! | `worker/` | [`Worker`]: reads jobs in a consumer group, runs them, renews leases, takes over dead workers' jobs, hands back other builds' jobs, dead-letters |
//! | `mode/` | worker mode: `--graflow-worker URL` through `graflow::init()` |
//!
//! Each module uses only modules listed above it (`tests/module_graph.rs` checks that the
//! modules, and the files of each module folder, form no cycle).
//!
//! # Semantics
//! - **At least once, first outcome wins.** A job is acknowledged (XACK) in the same Lua script
//!   that records its outcome, so an acknowledged job always has its outcome in Redis. A job
//!   can run more than once (its worker died, or lost its lease); the first outcome is the
//!   attempt's, later ones are ignored.
//! - **Leases.** A worker renews the lease of every job it holds every third of the lease (at least once a second)
//!   (XCLAIM ... JUSTID, which does not count a delivery), from a thread of its own. A job whose
//!   lease ran out is taken over (XAUTOCLAIM) by a worker with a free slot, and its delivery
//!   count goes up; a worker that finds its lease taken stops its attempt.
//! - **Dead letters.** A job delivered more than `max_deliveries` times goes, with its fields,
//!   to `<prefix>:dead:<queue>`, and its task fails with an error that names the task and the
//!   delivery count.
//! - **Timeouts and cancellation** reach the worker: the job carries the task's timeout, and a
//!   dropped attempt (timeout, cancelled run) is marked cancelled (`<prefix>:cancel:<attempt>`)
//!   and its entry deleted if no worker took it; a worker checks the marks of its running
//!   attempts every 100 ms and stops them.
//! - **Builds.** Each job names its engine's build id; a worker takes only jobs of its own
//!   build and hands any other back untouched (no delivery counted) for a worker of that build.
//!   A task fails for a build mismatch only when no live worker of its build serves its queue
//!   for the no-worker timeout; the error names both builds and how to start a worker.
//! - **Engine liveness.** A job names its engine's liveness key; a worker dead-letters, without
//!   running them, the jobs of an engine whose key stays absent for 5 s.

#![warn(unreachable_pub, missing_docs)]

mod connect;
mod entry;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod keys;
mod logs;
mod mode;
mod scripts;
mod worker;

pub use connect::{CA_CERT_ENV, CLIENT_CERT_ENV, CLIENT_KEY_ENV, TlsOptions};
pub use error::RedisError;
pub use handler::{RedisHandler, RedisOptions};
pub use keys::DEFAULT_QUEUE;
pub use logs::{ATTEMPT_SPAN, CaptureLayer};
pub use mode::WORKER_ENV;
pub use worker::{Worker, WorkerOptions, WorkerStats};

graflow_core::register_program_mode!(graflow_core::backend::ProgramMode {
    name: "redis worker",
    enter: mode::enter,
    flags: mode::FLAGS,
});
