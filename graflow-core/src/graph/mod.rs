//! The graph: [`Task`] nodes (a definition plus this node's options), the [`Workflow`] DAG and
//! its builder, the compiled [`Graph`] the scheduler walks, and the [`Problem`]s validation
//! finds.

mod group;
mod problem;
mod render;
mod task;
mod workflow;

pub use group::{CustomGroupPolicy, GroupOutcome, GroupPolicy};
pub use problem::Problem;
pub(crate) use task::NodeOptions;
pub use task::{Task, TaskFn};
pub(crate) use workflow::{Graph, Source};
pub use workflow::{NodeRef, Workflow, WorkflowBuilder};
