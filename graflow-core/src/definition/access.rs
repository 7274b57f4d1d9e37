//! [`BodyAccess`]: what the run gives a task body, as the definition layer sees it. The run
//! layer implements it; [`TaskContext`](crate::TaskContext) and
//! [`TaskChannel`](crate::TaskChannel) are views over it, so that a definition needs to know
//! nothing of runs.

use crate::definition::AttemptError;
use crate::value::{Value, ValueError};

/// What the run gives a body: implemented by the run layer's execution context.
pub(crate) trait BodyAccess: Send + Sync {
    fn task_id(&self) -> &str;
    fn run_id(&self) -> &str;
    fn attempt(&self) -> u32;
    fn cycle(&self) -> u32;
    fn max_cycles(&self) -> u32;
    /// The value of channel key `key` as this attempt sees it (its own writes first).
    fn channel_value(&self, key: &str) -> Option<Value>;
    /// Every channel entry as this attempt sees it, sorted by key.
    fn channel_entries(&self) -> Vec<(String, Value)>;
    /// Records a write of this attempt (`None`: a deletion), applied to the run's channel
    /// when the attempt succeeds.
    fn channel_write(&self, key: String, value: Option<Value>);
    /// The stored result of task `id`.
    fn result(&self, id: &str) -> Result<Value, ValueError>;
    /// The ids of the direct upstream tasks, in graph order.
    fn upstream_ids(&self) -> Vec<&str>;
    /// The results of the direct upstream tasks, in the order of `upstream_ids`.
    fn upstream(&self) -> Result<Vec<(&str, Value)>, ValueError>;
    /// The value of input parameter `index` and the parameter's name.
    fn input(&self, index: usize) -> Result<(Value, &'static str), AttemptError>;
    /// Asks a person (the run's engine owns the request): the request's id and its answer.
    fn ask(&self, request: crate::feedback::FeedbackRequest) -> crate::feedback::AnswerFuture;
    /// The run's side of the context (for the run layer's own methods on `TaskContext`).
    fn as_any(&self) -> &dyn std::any::Any;
}
