//! Runtime of graflow: task definitions, workflow graphs, the scheduler, contexts and execution
//! handlers.
//!
//! Users depend on the facade crate `graflow`, which re-exports this crate's public API together
//! with the `#[task]` and `workflow!` macros. Data flows one way through the layers, and each
//! module imports only the ones above it in this list (ARCHITECTURE.md has the map):
//!
//! | module | layer |
//! |---|---|
//! | `value`, `config`, `retry`, `interrupt`, `descendants`, `files`, `runtime` | data and leaves: type-erased values, handler configuration, retry policy, SIGINT/SIGTERM during a run, a task's processes, atomic files and locks, the one background runtime |
//! | `channel` | the run's key/value store |
//! | `definition/` | the macro contract: `TaskDef`, `Body`, `TaskInfo`, the `TaskContext` a body sees, `AttemptError` and its `ErrorKind` |
//! | `graph/` | `Task` nodes, the `Workflow` DAG and its builder, the compiled graph, validation `Problem`s |
//! | `report/` | what a run did: the report, its timeline |
//! | `observe/` | what happens in a run as it happens: `RunEvent`s, `RunObserver`, the event stream, the progress bar |
//! | `run/` | one run: shared state, `ExecutionContext`, the body-execution policy, the `TaskHandler` contract, control requests, checkpoints, `RunOptions`, `RunError`, the scheduler |
//! | `remote/` | the runner protocol's host side: one driver for every out-of-process handler, warm pools |
//! | `program` | the program's `--graflow-*` flags, parsed once |
//! | `runner` | the runner side: `init()`, serving invocations, `answer()` for workers |
//! | `backend` | the backend SDK: the public face of `remote`, `runner`, program modes, clean-up and the background runtime |
//! | `handlers/` | the built-in handlers, one file each |
//! | `engine/` | `WorkflowEngine`: configuration, validation, running |
//! | `error` | the top-level `Error` every layer's error converts into |

// Every public item is documented; `pub` means reachable from outside the crate.
#![warn(unreachable_pub, missing_docs)]

pub mod backend;
mod channel;
mod config;
mod definition;
mod descendants;
mod engine;
mod error;
pub mod feedback;
mod files;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod graph;
pub mod handlers;
mod interrupt;
mod observe;
mod program;
pub mod record;
mod remote;
mod report;
mod retry;
mod run;
mod runner;
mod runtime;
mod value;

/// The wire protocol between an engine and its runners (the `graflow-protocol` crate).
pub use graflow_protocol as protocol;

pub use channel::Channel;
pub use config::{ConfigValue, HandlerConfig};
pub use definition::{
    Ask, AttemptError, BoxError, BoxFuture, Chain, ErrorKind, HandlerFailure, Response,
    TaskChannel, TaskContext, TaskInfo, task_named, tasks,
};
pub use engine::{DEFAULT_MAX_CONCURRENCY, WorkflowEngine};
pub use error::{Error, Result};
pub use graph::{
    CustomGroupPolicy, GroupOutcome, GroupPolicy, NodeRef, Problem, Task, TaskFn, Workflow,
    WorkflowBuilder,
};
pub use handlers::{DirectHandler, ProcessHandler};
pub use observe::{
    EventKind, EventStream, ProgressBar, RunEvent, RunObserver, StreamObserver, event_stream,
};
pub use report::{GroupRecord, ReportError, RunReport, TaskCounts, TaskRecord, TaskStatus};
pub use retry::RetryPolicy;
pub use run::{
    Checkpoint, CheckpointError, ControlError, ExecutionContext, GroupFailure, Iteration,
    RunCancelled, RunError, RunFailure, RunOptions, RunWaiting, TaskHandler, TimeoutPause,
    WAITING_EXIT_CODE, WaitingRequest,
};

pub use definition::DEFAULT_MAX_CYCLES;
pub use program::program_args;
pub use runner::{init, is_runner};
pub use value::{Data, TypeInfo, Value, ValueError};

/// What generated code (`#[task]`, `workflow!`, `register_handler!`, `#[graflow::main]`)
/// reaches through, so that a user's `Cargo.toml` needs only `graflow` and `serde`. Not a
/// public API: it changes with the macros.
#[doc(hidden)]
pub mod __private {
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use std::time::Duration;

    pub use inventory;
    pub use serde;
    pub use tokio;
    pub use tracing;

    pub use crate::config::{ConfigValue, HandlerConfig};
    pub use crate::definition::{Body, Param, TaskDef, TaskParts, TaskRegistration, TaskReturn};
    pub use crate::retry::RetryPolicy;
    pub use crate::run::HandlerRegistration;
    pub use crate::run::{MainFailed, MainFailedOther, exit_if_waiting};
    pub use crate::runner::TestRunnerEntry;
    pub use crate::value::decode_from;
    pub use crate::value::spec::{ViaClone, ViaSerde, Wrap};
}
