//! # Graflow for Rust
//!
//! Workflows whose tasks are plain Rust functions, composed into DAGs and executed through
//! pluggable execution handlers: in-process ("direct"), in a child process ("process"), in a
//! Docker container ("docker"), or any handler you register.
//!
//! ```
//! use graflow::prelude::*;
//!
//! #[task]
//! fn numbers() -> Vec<u64> {
//!     (1..=10).collect()
//! }
//!
//! #[task]
//! fn total(numbers: Vec<u64>) -> u64 {
//!     numbers.iter().sum()
//! }
//!
//! let wf = workflow! { name: "doc"; numbers >> total; };
//! let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
//! assert_eq!(report.result::<u64>("total").unwrap(), 55);
//! ```
//!
//! ## `#[task]`
//! On a sync or `async fn`. Options: `id = "..."` (default: the function's name), `handler =
//! EXPR` (default `"direct"`; a literal or any expression, evaluated when the workflow is
//! built), `retries = N`, `retry_delay = "1s"`, `retry_backoff = 2.0`, `retry_max_delay =
//! "60s"`, `retry_jitter = true`, `timeout = "30s"`, `writes = ["key"]` (channel keys the task
//! writes), `blocking = true` (never run the body inline on the scheduler). Any other `key =
//! value` (literals, arrays of literals) is the task's handler configuration, read and
//! validated by its handler.
//!
//! A parameter of type `&TaskContext` receives the context. Every other parameter is resolved
//! by name: an input bound with [`Task::with_input`], else the result of the upstream task with
//! that id, else the channel value with that key. Inputs and outputs must be
//! `Serialize + DeserializeOwned + Send + 'static`, so that any task can move out of process;
//! anything else is a compile error on the offending type. The function stays callable as a
//! plain function, and `my_fn::task()` gives a [`Task`] node for the runtime
//! [`WorkflowBuilder`].
//!
//! ## `workflow!`
//! `workflow! { name: "etl"; fetch >> clean >> (train | evaluate) >> report; fetch >> audit; }`:
//! `>>` is a sequence, `( a | b )` a parallel group, and several statements make any DAG.
//!
//! ## Handlers
//! Implement [`TaskHandler`] and register it with [`WorkflowEngine::register_handler`] or, at
//! link time, [`register_handler!`]. Programs whose tasks run out of process ("process",
//! "docker") start with [`init`] or `#[graflow::main]`; integration test files call
//! [`enable_test_runner!`].

// Every public item is documented; `pub` means reachable from outside the crate.
#![warn(unreachable_pub, missing_docs)]

pub use graflow_core::{log_target, register_program_mode};

pub use graflow_core::{
    Ask, AttemptError, BoxError, BoxFuture, Chain, Channel, Checkpoint, CheckpointError,
    ConfigValue, ControlError, CustomGroupPolicy, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_CYCLES,
    Data, DirectHandler, Error, ErrorKind, EventKind, EventStream, ExecutionContext, GroupFailure,
    GroupOutcome, GroupPolicy, GroupRecord, HandlerConfig, HandlerFailure, Iteration, NodeRef,
    Problem, ProcessHandler, ProgressBar, ReportError, Response, Result, RetryPolicy, RunCancelled,
    RunError, RunEvent, RunFailure, RunObserver, RunOptions, RunReport, RunWaiting, StreamObserver,
    Task, TaskChannel, TaskContext, TaskCounts, TaskFn, TaskHandler, TaskInfo, TaskRecord,
    TaskStatus, TimeoutPause, TypeInfo, Value, ValueError, WAITING_EXIT_CODE, WaitingRequest,
    Workflow, WorkflowBuilder, WorkflowEngine, enable_test_runner, event_stream, init, is_runner,
    program_args, register_handler, task_named, tasks,
};

/// The runner protocol, for handlers that run tasks out of process.
pub use graflow_core::protocol;

/// The backend SDK, for handlers that run tasks out of process: the attempt driver, warm
/// runner pools, queue transports, the worker side, program modes.
pub use graflow_core::backend;

/// Human feedback: what a task asks a person ([`TaskContext::approval`] and the like), the
/// answers, and why there is none.
pub use graflow_core::feedback;

/// The interface of a run store (for store authors): what `graflow::store` implements.
pub use graflow_core::record;
pub use graflow_core::register_recorder;

pub use graflow_macros::{main, task, workflow};

/// `#[graflow::async_trait]` for implementing [`TaskHandler`] (its generated code needs no
/// dependency of yours).
pub use async_trait::async_trait;

/// The built-in handlers.
pub mod handlers {
    pub use graflow_core::handlers::*;

    /// The "docker" handler (feature `docker`, on by default).
    #[cfg(feature = "docker")]
    pub use graflow_docker::DockerHandler;

    /// The "redis" handler: tasks on remote workers (feature `redis`, on by default).
    #[cfg(feature = "redis")]
    pub use graflow_redis::RedisHandler;
}

/// The "redis" handler's crate: options, errors (feature `redis`, on by default).
#[cfg(feature = "redis")]
pub use graflow_redis as redis;

/// Remote workers, for programs with a `main` of their own: `graflow::init()` already turns a
/// program started with `--graflow-worker redis://host:port/db` into a worker; a program that
/// wants to decide itself builds a [`Worker`](worker::Worker) and runs it (feature `redis`).
#[cfg(feature = "redis")]
pub mod worker {
    pub use graflow_redis::{CaptureLayer, WORKER_ENV, Worker, WorkerOptions, WorkerStats};
}

/// The "docker" handler's crate: options, labels (feature `docker`, on by default).
#[cfg(feature = "docker")]
pub use graflow_docker as docker;

/// Run history (feature `store`, on by default): every run recorded in the store
/// `GRAFLOW_STORE` names (SQLite at `$GRAFLOW_HOME/runs.db` by default, or PostgreSQL), read
/// back with [`Store`](store::Store) or a program's `--graflow-runs` / `--graflow-run ID`.
#[cfg(feature = "store")]
pub use graflow_store as store;

/// What most programs need: `use graflow::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AttemptError, Channel, Error, ExecutionContext, GroupPolicy, RunError, RunOptions,
        RunReport, Task, TaskContext, TaskHandler, Value, Workflow, WorkflowEngine, async_trait,
        register_handler, task, workflow,
    };
}

/// The Tokio graflow runs on, for async tasks that sleep or do I/O (`graflow::tokio::time::sleep`)
/// and for `#[tokio::main]`-free programs: a program needs no `tokio` dependency of its own.
pub use graflow_core::__private::tokio;

/// The `tracing` graflow logs through (targets `graflow::engine`, `graflow::handlers`,
/// `graflow::docker`), for handlers and tasks that log: `graflow::tracing::info!(...)`.
pub use graflow_core::__private::tracing;

#[doc(hidden)]
pub mod __private {
    pub use graflow_core::__private::*;
}
