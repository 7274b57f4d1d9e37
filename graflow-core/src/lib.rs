//! Runtime of graflow: tasks, workflow graphs, the scheduler, contexts and execution handlers.
//!
//! Users depend on the facade crate `graflow`, which re-exports this crate's public API together
//! with the `#[task]` and `workflow!` macros. The layout is one file per concept:
//!
//! | file | concept |
//! |---|---|
//! | `task.rs` | a task's static definition and its node in a workflow |
//! | `workflow.rs` | the graph, its runtime builder and its compiled form |
//! | `scheduler.rs` | the ready-queue loop that runs a graph |
//! | `context.rs` | what handlers and task bodies see of a run |
//! | `channel.rs` | the run's typed key/value store |
//! | `value.rs` | type-erased task data |
//! | `handler.rs` | the handler trait and link-time registration |
//! | `remote/` | the host side of the runner protocol: the driver every out-of-process handler uses |
//! | `runner.rs` | the runner side: `init()`, serving one invocation |
//! | `handlers/` | one file per built-in handler |
//! | `engine.rs` | handler registry, validation, running |
//! | `report.rs` | the report of a run |
//! | `interrupt.rs` | SIGINT/SIGTERM during a run, clean-up that must finish before exit |
//! | `retry.rs`, `config.rs`, `error.rs` | retry policy, handler configuration, errors |

mod channel;
mod config;
mod context;
mod descendants;
mod engine;
mod error;
mod handler;
pub mod handlers;
pub mod interrupt;
pub mod remote;
mod report;
mod retry;
mod runner;
mod scheduler;
mod task;
mod value;
mod workflow;

/// The wire protocol between an engine and its runners (the `graflow-protocol` crate).
pub use graflow_protocol as protocol;

pub use channel::Channel;
pub use config::{ConfigValue, HandlerConfig};
pub use context::{ExecutionContext, TaskContext};
pub use engine::WorkflowEngine;
pub use error::{BoxError, Chain, Error, Result};
pub use handler::TaskHandler;
pub use handlers::{DirectHandler, ProcessHandler};
pub use report::{RunReport, TaskRecord, TaskStatus};
pub use retry::RetryPolicy;
pub use runner::{init, is_runner, runner_command};
pub use task::{BoxFuture, Param, Task, TaskDef, TaskFn, TypeInfo, task_named, tasks};
pub use value::{Data, EncodedValue, Value};
pub use workflow::{NodeRef, Workflow, WorkflowBuilder};

/// What generated code (`#[task]`, `workflow!`, `register_handler!`) reaches through, so that a
/// user's `Cargo.toml` needs only `graflow` and `serde`. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::string::String;
    pub use std::sync::{Arc, OnceLock};
    pub use std::time::Duration;
    pub use std::vec;

    pub use inventory;
    pub use serde;

    pub use crate::config::{ConfigValue, HandlerConfig};
    pub use crate::handler::HandlerRegistration;
    pub use crate::retry::RetryPolicy;
    pub use crate::runner::TestRunnerEntry;
    pub use crate::task::{Body, BodyStats, Param, TaskDef, TaskFn, TaskRegistration, TypeInfo};
    pub use crate::value::decode_from;
    pub use crate::value::spec::{ViaClone, ViaSerde, Wrap};
    pub use tokio;

    use crate::error::{BoxError, Error};

    /// `T` or `Result<T, E>` as returned by a task function.
    pub trait TaskReturn {
        type Output;
        fn into_task_result(self, task: &str) -> Result<Self::Output, Error>;
    }

    impl<T, E: Into<BoxError>> TaskReturn for Result<T, E> {
        type Output = T;
        fn into_task_result(self, task: &str) -> Result<T, Error> {
            self.map_err(|e| Error::Task {
                task: task.to_owned(),
                source: e.into(),
            })
        }
    }
}
