//! A task as a node of a workflow: a function's definition plus this node's id, handler,
//! handler configuration, retry policy, timeout and bound inputs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigValue, HandlerConfig};
use crate::definition::{TaskDef, TaskInfo};
use crate::retry::RetryPolicy;
use crate::value::{Data, Value};

/// Implemented by the marker type `#[task]` puts next to each task function, so that
/// `workflow!` and programs can name the task by the function's path.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a graflow task",
    label = "not a #[task] function",
    note = "annotate the function with #[graflow::task]"
)]
pub trait TaskFn {
    /// The static definition (generated code; see [`TaskFn::info`]).
    #[doc(hidden)]
    fn definition() -> &'static TaskDef;

    /// What the program knows of the function.
    fn info() -> TaskInfo {
        Self::definition().info()
    }

    /// A new workflow node for the function.
    fn task() -> Task {
        Task::from_def(Self::definition())
    }
}

impl TaskInfo {
    /// A new workflow node for this function, with the options of its `#[task]` attribute.
    pub fn task(&self) -> Task {
        Task::from_def(self.def)
    }
}

/// A task as a node of a workflow: a function plus this node's id, handler, handler
/// configuration, retry policy, timeout and bound inputs.
///
/// Get one with `my_fn::task()` (the path of any `#[task]` function), adjust it with the
/// `with_*` methods, and add it with [`WorkflowBuilder::add`](crate::WorkflowBuilder::add).
#[derive(Clone)]
pub struct Task {
    pub(crate) id: TaskId,
    pub(crate) def: &'static TaskDef,
    pub(crate) handler: Cow<'static, str>,
    /// What this node changes from its function's `#[task]` options; most nodes change
    /// nothing, and a node stays small (graphs of 100k nodes are common).
    custom: Option<Box<Custom>>,
}

#[derive(Clone, Default)]
struct Custom {
    config: Option<HandlerConfig>,
    retry: Option<RetryPolicy>,
    timeout: Option<Option<Duration>>,
    inputs: Vec<(String, Value)>,
    writes: Vec<String>,
    max_cycles: Option<u32>,
}

impl Task {
    /// A node for `def`, with the options of its `#[task]` attribute (the handler expression is
    /// evaluated now).
    #[doc(hidden)]
    pub fn from_def(def: &'static TaskDef) -> Self {
        Task {
            id: TaskId::Static(def.id),
            def,
            handler: (def.handler)(),
            custom: None,
        }
    }

    fn custom_mut(&mut self) -> &mut Custom {
        self.custom.get_or_insert_with(Box::default)
    }

    /// The node's id (unique in its workflow): what results are stored under and what
    /// downstream parameters name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name of the handler that runs this node.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// The handler configuration: the `key = value` options of `#[task]` that are not engine
    /// options, plus any set with [`Task::with_config`].
    pub fn handler_config(&self) -> &HandlerConfig {
        match self.custom.as_ref().and_then(|c| c.config.as_ref()) {
            Some(config) => config,
            None => self.def.default_config(),
        }
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        self.custom
            .as_ref()
            .and_then(|c| c.retry.as_ref())
            .unwrap_or(&self.def.retry)
    }

    /// The timeout of one attempt.
    pub fn timeout(&self) -> Option<Duration> {
        match self.custom.as_ref().and_then(|c| c.timeout) {
            Some(timeout) => timeout,
            None => self.def.timeout,
        }
    }

    /// How many times this node may run in one run: its first run, plus every
    /// [`next_iteration`](crate::TaskContext::next_iteration) and every
    /// [`goto`](crate::TaskContext::goto) back to it (`#[task(max_cycles = N)]`, default
    /// [`DEFAULT_MAX_CYCLES`](crate::definition::DEFAULT_MAX_CYCLES)).
    pub fn max_cycles(&self) -> u32 {
        self.custom
            .as_ref()
            .and_then(|c| c.max_cycles)
            .unwrap_or(self.def.max_cycles)
    }

    /// What the program knows of the node's function.
    pub fn info(&self) -> TaskInfo {
        self.def.info()
    }

    /// The registry name of the function (`module::path::function`).
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// Channel keys this task declares it writes (`writes = [...]` and [`Task::with_write`]).
    pub fn writes(&self) -> impl Iterator<Item = &str> {
        let extra = self.custom.as_ref().map_or(&[][..], |c| &c.writes[..]);
        self.def
            .writes
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
    }

    /// Inputs bound to this node with [`Task::with_input`].
    pub fn bound_inputs(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.inputs().iter().map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn inputs(&self) -> &[(String, Value)] {
        self.custom.as_ref().map_or(&[][..], |c| &c.inputs[..])
    }

    /// Replaces the bound inputs (a runner binds every input it was sent).
    pub(crate) fn set_inputs(&mut self, inputs: Vec<(String, Value)>) {
        self.custom_mut().inputs = inputs;
    }

    /// Sets the id (e.g. one node per file: `process::task().with_id(format!("process_{i}"))`).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = TaskId::Shared(Arc::from(id.into()));
        self
    }

    /// Sets the handler name.
    pub fn with_handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = Cow::Owned(handler.into());
        self
    }

    /// Sets one handler configuration key.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<ConfigValue>) -> Self {
        let defaults = self.def.default_config();
        self.custom_mut()
            .config
            .get_or_insert_with(|| defaults.clone())
            .set(key, value);
        self
    }

    /// Removes handler configuration keys (a worker hands its inner handler the task without
    /// the options meant for the queue backend).
    pub fn without_config(mut self, keys: &[&str]) -> Self {
        if keys.iter().any(|key| self.handler_config().contains(key)) {
            let defaults = self.def.default_config();
            let config = self
                .custom_mut()
                .config
                .get_or_insert_with(|| defaults.clone());
            for key in keys {
                config.remove(key);
            }
        }
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.custom_mut().retry = Some(policy);
        self
    }

    /// Sets (or with `None` removes) the timeout of one attempt.
    pub fn with_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.custom_mut().timeout = Some(timeout.into());
        self
    }

    /// Sets how many times this node may run in one run (see [`Task::max_cycles`]).
    pub fn with_max_cycles(mut self, max_cycles: u32) -> Self {
        self.custom_mut().max_cycles = Some(max_cycles);
        self
    }

    /// Binds parameter `name` to `value` for this node; a bound value wins over upstream results
    /// and the channel.
    pub fn with_input<T: Data + Clone>(mut self, name: impl Into<String>, value: T) -> Self {
        let name = name.into();
        let inputs = &mut self.custom_mut().inputs;
        inputs.retain(|(k, _)| *k != name);
        inputs.push((name, Value::new(value)));
        self
    }

    /// Declares that this node writes channel key `key`, so that downstream parameters named
    /// `key` pass validation.
    pub fn with_write(mut self, key: impl Into<String>) -> Self {
        self.custom_mut().writes.push(key.into());
        self
    }
}

/// A node's options beyond its function, id, handler and bound inputs: what a checkpoint keeps
/// and a runner sends back of a task it added.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeOptions {
    config: Option<HandlerConfig>,
    retry: Option<RetryPolicy>,
    timeout: Option<Option<Duration>>,
    writes: Vec<String>,
    max_cycles: Option<u32>,
}

impl NodeOptions {
    /// Whether the node sets handler configuration of its own.
    pub(crate) fn has_config(&self) -> bool {
        self.config.is_some()
    }
}

impl Task {
    /// Runs this node on `handler` with exactly `config`.
    pub(crate) fn on_handler_of(mut self, other: &Task) -> Task {
        self.handler.clone_from(&other.handler);
        self.custom_mut().config = Some(other.handler_config().clone());
        self
    }

    /// What this node changes of its function's options, inputs aside.
    pub(crate) fn node_options(&self) -> NodeOptions {
        match &self.custom {
            None => NodeOptions::default(),
            Some(c) => NodeOptions {
                config: c.config.clone(),
                retry: c.retry,
                timeout: c.timeout,
                writes: c.writes.clone(),
                max_cycles: c.max_cycles,
            },
        }
    }

    /// A node of `def` with these id, handler, inputs and options.
    pub(crate) fn restore(
        def: &'static TaskDef,
        id: String,
        handler: String,
        inputs: Vec<(String, Value)>,
        options: NodeOptions,
    ) -> Task {
        let mut task = Task::from_def(def).with_id(id);
        if task.handler() != handler {
            task = task.with_handler(handler);
        }
        let custom = Custom {
            config: options.config,
            retry: options.retry,
            timeout: options.timeout,
            inputs,
            writes: options.writes,
            max_cycles: options.max_cycles,
        };
        task.custom = Some(Box::new(custom));
        task
    }
}

/// A node's id: the function's default id needs no allocation (a graph of 100k nodes makes
/// 100k of them); one set with [`Task::with_id`] is shared by the node's clones and the graph.
#[derive(Clone, Debug)]
pub(crate) enum TaskId {
    Static(&'static str),
    Shared(Arc<str>),
}

impl std::ops::Deref for TaskId {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            TaskId::Static(id) => id,
            TaskId::Shared(id) => id,
        }
    }
}

impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        self
    }
}

impl PartialEq for TaskId {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for TaskId {}

impl std::hash::Hash for TaskId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("function", &self.def.name)
            .field("handler", &self.handler)
            .field("config", self.handler_config())
            .field("retry", self.retry_policy())
            .field("timeout", &self.timeout())
            .field("max_cycles", &self.max_cycles())
            .field("inputs", &self.inputs())
            .finish()
    }
}
