//! Run history for graflow: every run, its tasks' attempts (where they ran, when, how they
//! ended, a bounded preview of their results), its events and its tasks' log lines, recorded
//! in SQLite (the default, `$GRAFLOW_HOME/runs.db`) or PostgreSQL (for a team), and read back
//! as a library ([`Store::runs`], [`Store::run`], [`Store::prune`]) or with a program's
//! `--graflow-runs`, `--graflow-run ID`, `--graflow-prune DURATION` flags.
//!
//! Linking this crate (the `store` feature of `graflow`, on by default) makes every engine
//! record its runs in the store `GRAFLOW_STORE` names (`sqlite:PATH`, `postgres://...`,
//! `off`). Records are written in batches by a background writer, off the scheduler's path: a
//! store that does not answer never slows or fails a run (unless it is
//! [required](Store::required)); one warning names it and the cause, records wait in memory
//! (up to [`limits::MAX_PENDING`]) and the rest are dropped and counted.
//!
//! Modules, one way only: `limits`, `error`, `location`, `host` → `db` (pool, migrations) →
//! `write/` (`rec` → `batch` → `apply` → `writer` → `exit`) → `read/` (`model` → `liveness` →
//! `query`) → `store` (`Store`) → `recorder` (the engine's view) → `mode/` (the flags).
#![warn(unreachable_pub, missing_docs)]

mod db;
mod error;
mod feedback;
/// The entry points of the fuzz targets (`fuzz/`) and the property tests: hostile rows read
/// back. Compiled only under `--cfg fuzzing` and in the crate's tests.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
mod host;
pub mod limits;
mod location;
mod mode;
mod notify;
mod read;
mod recorder;
mod store;
mod write;

pub use error::{StoreError, StoreErrorKind};
pub use feedback::{AnswerError, FeedbackInfo};
pub use location::{HOME_ENV, Location, REQUIRED_ENV, STORE_ENV};
pub use notify::{
    ATTEMPTS as WEBHOOK_ATTEMPTS, SECRET_ENV as WEBHOOK_SECRET_ENV, WEBHOOK_ENV,
    signature as webhook_signature,
};
pub use read::liveness::LOST_AFTER;
pub use read::model::{
    AttemptDetail, EventLine, LogLine, RunDetail, RunStatus, RunSummary, TaskDetail, WorkerAttempt,
};
pub use store::Store;
pub use write::exit::EXIT_WAIT;

/// The program's default recorder: the store `GRAFLOW_STORE` names.
fn open_default() -> Option<std::sync::Arc<dyn graflow_core::record::RunRecorder>> {
    match Store::from_env() {
        Ok(store) => store.map(|s| s.recorder()),
        Err(error) => {
            write::writer::warn(&format!("{error}; runs are not recorded"));
            None
        }
    }
}

graflow_core::register_recorder!(graflow_core::record::RecorderFactory { open: open_default });

graflow_core::register_program_mode!(graflow_core::backend::ProgramMode {
    name: "run store",
    enter: mode::enter,
    flags: mode::FLAGS,
});
