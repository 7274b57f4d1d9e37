//! Contexts: what a handler sees of a run ([`ExecutionContext`]) and what a task body sees
//! ([`TaskContext`]), over the state one run shares between its tasks.

use std::sync::{Arc, Mutex, PoisonError};

use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::handler::TaskHandler;
use crate::task::Task;
use crate::value::{Data, Value};
use crate::workflow::{Graph, Source, Workflow};

/// The state one run shares between its tasks.
pub(crate) struct RunShared {
    pub run_id: Arc<str>,
    pub workflow: Workflow,
    pub graph: Arc<Graph>,
    pub handlers: Vec<Arc<dyn TaskHandler>>,
    pub results: Box<[Mutex<Option<Value>>]>,
    pub channel: Channel,
    /// In a runner process: the results of the task's direct upstream tasks, as the handler
    /// sent them (the graph there has the one task only). `None` in a normal run.
    pub upstream: Option<Vec<(String, Value)>>,
}

impl RunShared {
    pub fn task(&self, node: u32) -> &Task {
        &self.workflow.tasks()[node as usize]
    }

    fn slot(&self, node: u32) -> std::sync::MutexGuard<'_, Option<Value>> {
        self.results[node as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn result_value(&self, node: u32) -> Option<Value> {
        self.slot(node).clone()
    }

    pub fn has_result(&self, node: u32) -> bool {
        self.slot(node).is_some()
    }

    pub fn clear_result(&self, node: u32) {
        *self.slot(node) = None;
    }

    fn node_of(&self, id: &str) -> Result<u32> {
        self.graph.index_of(id).ok_or_else(|| Error::NoSuchResult {
            task: id.to_owned(),
            reason: format!(
                "workflow '{}' has no task with that id",
                self.workflow.name()
            ),
        })
    }

    fn copy_result<T: Data>(&self, node: u32) -> Result<T> {
        let id = self.task(node).id();
        match self.result_value(node) {
            Some(value) => value.copy_as(|| format!("the result of task '{id}'")),
            None => Err(Error::NoSuchResult {
                task: id.to_owned(),
                reason: "it has not completed (yet); only upstream tasks are sure to have results"
                    .to_owned(),
            }),
        }
    }
}

/// What a handler sees of the run while it executes one attempt of one task.
#[derive(Clone)]
pub struct ExecutionContext {
    run: Arc<RunShared>,
    node: u32,
    attempt: u32,
}

impl ExecutionContext {
    pub(crate) fn new(run: Arc<RunShared>, node: u32, attempt: u32) -> Self {
        ExecutionContext { run, node, attempt }
    }

    /// A context for running `task` outside any workflow run: to test a handler in isolation
    /// (`handler.execute_task(ctx.task(), &ctx)`), or to call `task.run(&ctx)` directly. The
    /// task's parameters must be bound with [`Task::with_input`]; its channel starts empty.
    pub fn for_task(task: Task) -> Result<ExecutionContext> {
        Self::standalone(
            "standalone".to_owned(),
            "standalone".to_owned(),
            task,
            Channel::new(),
            None,
            1,
        )
    }

    /// A one-task run: what a runner process and [`ExecutionContext::for_task`] execute in.
    pub(crate) fn standalone(
        workflow: String,
        run_id: String,
        task: Task,
        channel: Channel,
        upstream: Option<Vec<(String, Value)>>,
        attempt: u32,
    ) -> Result<ExecutionContext> {
        let mut builder = Workflow::builder(workflow);
        builder.add(task);
        let workflow = builder.build();
        let graph = workflow.graph().map_err(|problems| Error::Invalid {
            workflow: workflow.name().to_owned(),
            problems,
        })?;
        let run = Arc::new(RunShared {
            run_id: Arc::from(run_id),
            workflow,
            graph,
            handlers: Vec::new(),
            results: vec![Mutex::new(None)].into_boxed_slice(),
            channel,
            upstream,
        });
        Ok(ExecutionContext::new(run, 0, attempt))
    }

    /// The task this context executes.
    pub fn task(&self) -> &Task {
        self.run.task(self.node)
    }

    /// The run's id (also in every log line of the run).
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// The workflow's name.
    pub fn workflow_name(&self) -> &str {
        self.run.workflow.name()
    }

    /// The id of the task being executed.
    pub fn task_id(&self) -> &str {
        self.run.task(self.node).id()
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's channel.
    pub fn channel(&self) -> &Channel {
        &self.run.channel
    }

    /// Stores the result of task `id`. The value must have the task function's output type.
    pub fn set_result(&self, id: &str, value: Value) -> Result<()> {
        let own = self.run.task(self.node);
        let node = if own.id() == id {
            self.node
        } else {
            self.run.node_of(id)?
        };
        let task = self.run.task(node);
        let expected = task.def.output;
        if !value.matches(expected) {
            return Err(Error::TypeMismatch {
                what: format!(
                    "the result set by handler '{}' for task '{id}'",
                    own.handler()
                ),
                expected: expected.name(),
                found: value.type_name().to_owned(),
            });
        }
        *self.run.slot(node) = Some(value);
        Ok(())
    }

    /// A copy of the result of task `id`.
    pub fn get_result<T: Data>(&self, id: &str) -> Result<T> {
        let node = self.run.node_of(id)?;
        self.run.copy_result(node)
    }

    /// The type-erased result of task `id`, if it has one.
    pub fn result_value(&self, id: &str) -> Option<Value> {
        self.run
            .graph
            .index_of(id)
            .and_then(|n| self.run.result_value(n))
    }

    /// Whether the task being executed has a stored result.
    pub(crate) fn has_own_result(&self) -> bool {
        self.run.has_result(self.node)
    }

    /// The value of input parameter `index` of `task` (the task this context executes): its
    /// bound input, the result of the upstream task of that name, or the channel key.
    pub(crate) fn input_value(&self, task: &Task, index: usize) -> Result<Value> {
        let run = &self.run;
        let param = &task.def.params[index];
        let missing = |hint: String| Error::MissingInput {
            task: task.id().to_owned(),
            param: param.name.to_owned(),
            type_name: param.ty.name(),
            hint,
        };
        match run.graph.sources(self.node)[index] {
            Source::Bound(i) => Ok(task.inputs()[i as usize].1.clone()),
            Source::Result(producer) => run.result_value(producer).ok_or_else(|| {
                missing(format!("upstream task '{}' stored no result", param.name))
            }),
            Source::Channel => run.channel.value(param.name).ok_or_else(|| {
                missing(format!(
                    "channel key '{}' is not set: no upstream task wrote it, and the run's initial channel does not have it",
                    param.name
                ))
            }),
        }
    }

    /// The context the task body sees; `task` must be the task this context executes.
    pub(crate) fn task_context(&self, task: &Task) -> Result<&TaskContext> {
        let own = self.run.task(self.node);
        if !std::ptr::eq(own, task) && own.id() != task.id() {
            return Err(Error::handler(
                task.id(),
                own.handler(),
                format!(
                    "task.run() was given the context of task '{}'; pass the ExecutionContext the engine gave for this task",
                    own.id()
                ),
            ));
        }
        Ok(TaskContext::from_exec(self))
    }
}

/// What a task body sees: declare a parameter of type `&TaskContext` to get it.
#[repr(transparent)]
pub struct TaskContext {
    exec: ExecutionContext,
}

impl TaskContext {
    /// A view of `exec` as the task sees it (no copy: the types share one layout).
    fn from_exec(exec: &ExecutionContext) -> &TaskContext {
        // SAFETY: TaskContext is #[repr(transparent)] over ExecutionContext.
        unsafe { &*(exec as *const ExecutionContext as *const TaskContext) }
    }

    /// An owned copy, for a body that runs on another thread.
    pub(crate) fn to_owned_context(&self) -> TaskContext {
        TaskContext {
            exec: self.exec.clone(),
        }
    }
}

impl TaskContext {
    /// The id of this task.
    pub fn task_id(&self) -> &str {
        self.exec.task_id()
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        self.exec.run_id()
    }

    /// The attempt number, from 1 (higher on retries).
    pub fn attempt(&self) -> u32 {
        self.exec.attempt
    }

    /// The run's channel: read and write typed values shared by all tasks of the run.
    pub fn channel(&self) -> &Channel {
        self.exec.channel()
    }

    /// A copy of the result of task `id` (an upstream task, to be sure it exists; out of
    /// process, only the direct upstream tasks' results are there).
    pub fn result<T: Data>(&self, id: &str) -> Result<T> {
        if let Some(upstream) = &self.exec.run.upstream {
            return match upstream.iter().find(|(up, _)| up == id) {
                Some((_, value)) => value.copy_as(|| format!("the result of task '{id}'")),
                None => Err(Error::NoSuchResult {
                    task: id.to_owned(),
                    reason:
                        "out of process, a task sees only the results of its direct upstream tasks"
                            .to_owned(),
                }),
            };
        }
        self.exec.get_result(id)
    }

    /// The ids of the direct upstream tasks, in graph order.
    pub fn upstream_ids(&self) -> Vec<&str> {
        let run = &self.exec.run;
        match &run.upstream {
            Some(upstream) => upstream.iter().map(|(id, _)| id.as_str()).collect(),
            None => run
                .graph
                .preds(self.exec.node)
                .iter()
                .map(|&p| run.task(p).id())
                .collect(),
        }
    }

    /// Copies of the results of all direct upstream tasks, in the order of
    /// [`TaskContext::upstream_ids`] (e.g. a sink summing a parallel group).
    pub fn upstream<T: Data>(&self) -> Result<Vec<T>> {
        let run = &self.exec.run;
        match &run.upstream {
            Some(upstream) => upstream
                .iter()
                .map(|(id, value)| value.copy_as(|| format!("the result of task '{id}'")))
                .collect(),
            None => run
                .graph
                .preds(self.exec.node)
                .iter()
                .map(|&p| run.copy_result(p))
                .collect(),
        }
    }

    /// The direct upstream results, type-erased, for a handler sending this task elsewhere.
    pub(crate) fn upstream_values(exec: &ExecutionContext) -> Vec<(String, Value)> {
        let run = &exec.run;
        run.graph
            .preds(exec.node)
            .iter()
            .filter_map(|&p| Some((run.task(p).id().to_owned(), run.result_value(p)?)))
            .collect()
    }

    /// Resolves input parameter `index` of this task (generated code calls this).
    #[doc(hidden)]
    pub fn __input<T: Data>(&self, index: usize) -> Result<T> {
        let task = self.exec.run.task(self.exec.node);
        let value = self.exec.input_value(task, index)?;
        let param = &task.def.params[index];
        value.copy_as(|| {
            format!(
                "the value of parameter `{}` of task '{}'",
                param.name,
                task.id()
            )
        })
    }
}
