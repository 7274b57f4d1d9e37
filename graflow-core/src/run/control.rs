//! Dynamic control: what a running task may ask of its run, through its [`TaskContext`]:
//! add tasks ([`TaskContext::next_task`]), jump to a task ([`TaskContext::goto`]), run itself
//! again ([`TaskContext::next_iteration`]), end the run early ([`TaskContext::terminate`],
//! [`TaskContext::cancel`]) and ask for a checkpoint ([`TaskContext::checkpoint`]).
//!
//! A request is validated when it is made (in this process) or when the attempt's outcome
//! arrives (out of process: the runner records requests and sends them back; see
//! [`ExecutionContext::apply_control`]), and the scheduler applies the requests of an attempt
//! once it has ended: nothing a failed attempt asked for happens, except a cancel.
//!
//! The run's graph grows here: nodes added while running live in an append-only list after
//! the workflow's own, with the edges they bring. A run that asks for nothing pays one relaxed
//! atomic load per completed task.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use rustc_hash::FxHashMap as HashMap;

use graflow_protocol::{Control, EncodedValue};

use super::scheduler::Slot;
use super::{ExecutionContext, RunShared};
use crate::definition::{AttemptError, TaskContext, definitions};
use crate::graph::{NodeOptions, Problem, Source, Task};
use crate::value::{Data, Value, ValueError};

/// Why a task's request to its run was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// A task added with [`TaskContext::next_task`] failed validation.
    #[error("task '{task}' cannot add task '{added}' to the run ({} problem(s)):{}", problems.len(), Bullets(problems))]
    Invalid {
        /// The asking task.
        task: String,
        /// The id of the task it tried to add.
        added: String,
        /// What is wrong with it.
        problems: Vec<Problem>,
    },

    /// [`TaskContext::goto`] named a task the run does not have.
    #[error(
        "task '{task}' asked to go to task '{target}', which this run does not have; name a task of the workflow, or add a new one with ctx.next_task(...)"
    )]
    NoSuchTask {
        /// The asking task.
        task: String,
        /// The id it named.
        target: String,
    },

    /// Requests of one attempt that contradict each other.
    #[error("task '{task}' made conflicting requests: {message}")]
    Conflict {
        /// The asking task.
        task: String,
        /// What conflicts.
        message: String,
    },

    /// A task asked to run again past its `max_cycles`.
    #[error(
        "task '{task}' has run {runs} time(s), its max_cycles; raise it with #[task(max_cycles = N)] or Task::with_max_cycles, or stop iterating when ctx.cycle() reaches ctx.max_cycles()"
    )]
    CycleLimit {
        /// The task that would run again.
        task: String,
        /// How many times it ran.
        runs: u32,
    },

    /// A task asked to go to a task that has used up its `max_cycles`: the asking task fails
    /// (not retried), and the message names the target and its limit.
    #[error(
        "task '{task}' asked to go to task '{target}', which has run {runs} time(s), its max_cycles ({max_cycles}); raise the target's limit with #[task(max_cycles = N)] or Task::with_max_cycles, or stop going back to it"
    )]
    GotoCycleLimit {
        /// The asking task.
        task: String,
        /// The task it asked to go to.
        target: String,
        /// How many times the target ran.
        runs: u32,
        /// The target's limit.
        max_cycles: u32,
    },

    /// [`TaskContext::checkpoint`] in a run that writes no checkpoints.
    #[error(
        "task '{task}' asked for a checkpoint, but this run writes none; run it with RunOptions::new().checkpoint(path)"
    )]
    NoCheckpoints {
        /// The asking task.
        task: String,
    },

    /// A runner asked to add a task on another handler or configuration than its own.
    #[error(
        "task '{task}' (handler '{handler}') asked from out of process to add task '{added}' on {wanted}; a task added by a runner runs on the asking task's handler with its configuration (a runner must not be able to start work where it could not run itself, e.g. a sandboxed container adding a task on \"direct\"): leave the added task's handler and configuration at its function's defaults, or add it from a task that runs in this process"
    )]
    Untrusted {
        /// The asking task.
        task: String,
        /// Its handler.
        handler: String,
        /// The task it tried to add.
        added: String,
        /// What it asked for.
        wanted: String,
    },

    /// A request that arrived from a runner could not be read.
    #[error("task '{task}' sent a request its run cannot read: {message}")]
    Unreadable {
        /// The asking task.
        task: String,
        /// What is wrong with it.
        message: String,
    },
}

struct Bullets<'a>(&'a [Problem]);

impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

/// How a task ends its run early.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// As a success: nothing new starts; what runs finishes.
    Terminate(String),
    /// As a failure.
    Cancel(String),
}

/// A task added by a running task, validated.
pub(crate) struct Added {
    pub task: Task,
    /// Where each parameter comes from (decided when it was added).
    pub sources: Vec<Source>,
    /// Its handler (`None` in a runner, which cannot know the engine's handlers).
    pub slot: Option<Slot>,
    /// Whether it replaces the asking task's successors.
    pub goto: bool,
}

/// Which attempt of which run of a node asked: (cycle, attempt).
pub(crate) type Stamp = (u32, u32);

/// What one attempt of one node asked for, in the order it asked.
#[derive(Default)]
pub(crate) struct Requests {
    /// The attempt that asked: a body still running after its attempt was given up (a timed-out
    /// synchronous body) cannot add to a later attempt's requests.
    pub stamp: Stamp,
    pub added: Vec<Added>,
    /// The ids of `added`.
    pub added_ids: rustc_hash::FxHashSet<String>,
    pub goto: Option<String>,
    pub iterate: Option<Vec<(String, Value)>>,
    pub end: Option<End>,
    pub checkpoint: bool,
    /// The attempt's channel writes, in order (`None`: a deletion): the run's channel takes
    /// them when the attempt succeeds.
    pub channel: Vec<(String, Option<Value>)>,
}

/// A node added while the run runs.
pub(crate) struct DynNode {
    pub task: Task,
    pub slot: u32,
    pub sources: Vec<Source>,
    pub result: Mutex<Option<Value>>,
}

/// The part of a run's state that dynamic control changes.
#[derive(Default)]
pub(crate) struct Dynamic {
    /// Set when any attempt asked for anything: the scheduler looks at `requests` only then.
    pub asked: AtomicBool,
    requests: Mutex<HashMap<u32, Requests>>,
    /// Nodes added while running; node `static_len + i` is `nodes[i]`.
    pub nodes: boxcar::Vec<DynNode>,
    pub index: RwLock<HashMap<String, u32>>,
    /// Edges added while running, by their target: set once any exists.
    pub grown: AtomicBool,
    pub extra_preds: RwLock<HashMap<u32, Vec<u32>>>,
    /// Inputs bound for the next run of a node (iterations): set once any exists.
    pub overridden: AtomicBool,
    pub overrides: RwLock<HashMap<u32, Vec<(String, Value)>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Dynamic {
    /// Records a request of the attempt `stamp` of `node` (ignored when a later attempt has
    /// asked already: it comes from an attempt given up).
    pub fn record(&self, node: u32, stamp: Stamp, f: impl FnOnce(&mut Requests)) {
        let mut requests = lock(&self.requests);
        let entry = requests.entry(node).or_insert_with(|| Requests {
            stamp,
            ..Requests::default()
        });
        if entry.stamp > stamp {
            return;
        }
        if entry.stamp < stamp {
            *entry = Requests {
                stamp,
                ..Requests::default()
            };
        }
        f(entry);
        self.asked.store(true, Ordering::Release);
    }

    /// The requests the attempt `stamp` of `node` made, if any (the scheduler takes them once
    /// it ended; those of other attempts are dropped).
    pub fn take(&self, node: u32, stamp: Stamp) -> Option<Requests> {
        if !self.asked.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.requests)
            .remove(&node)
            .filter(|r| r.stamp == stamp)
    }

    /// The channel writes the attempt `stamp` of `node` made so far, in order.
    pub fn channel_writes<R>(
        &self,
        node: u32,
        stamp: Stamp,
        f: impl FnOnce(&[(String, Option<Value>)]) -> R,
    ) -> R {
        if !self.asked.load(Ordering::Acquire) {
            return f(&[]);
        }
        let requests = lock(&self.requests);
        match requests.get(&node) {
            Some(r) if r.stamp == stamp => f(&r.channel),
            _ => f(&[]),
        }
    }

    /// Takes the channel writes of the attempt `stamp` of `node` (a runner sends them with its
    /// outcome), leaving its other requests.
    pub fn take_channel_writes(&self, node: u32, stamp: Stamp) -> Vec<(String, Option<Value>)> {
        if !self.asked.load(Ordering::Acquire) {
            return Vec::new();
        }
        match lock(&self.requests).get_mut(&node) {
            Some(r) if r.stamp == stamp => std::mem::take(&mut r.channel),
            _ => Vec::new(),
        }
    }

    /// Whether the attempt `stamp` of `node` asked to cancel the run.
    pub fn cancels(&self, node: u32, stamp: Stamp) -> bool {
        self.asked.load(Ordering::Acquire)
            && lock(&self.requests)
                .get(&node)
                .is_some_and(|r| r.stamp == stamp && matches!(r.end, Some(End::Cancel(_))))
    }

    /// Inputs bound for `node`'s next run, by parameter name.
    pub fn override_of(&self, node: u32, param: &str) -> Option<Value> {
        if !self.overridden.load(Ordering::Acquire) {
            return None;
        }
        self.overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)?
            .iter()
            .find(|(name, _)| name == param)
            .map(|(_, v)| v.clone())
    }

    /// Drops the inputs bound for `node`'s next run (its iteration is over).
    pub fn clear_override(&self, node: u32) {
        if self.overridden.load(Ordering::Relaxed) {
            self.overrides
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&node);
        }
    }

    pub fn set_overrides(&self, node: u32, inputs: Vec<(String, Value)>) {
        self.overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node, inputs);
        self.overridden.store(true, Ordering::Release);
    }

    /// Extra predecessors of `node` (edges added while running).
    pub fn extra_preds(&self, node: u32) -> Vec<u32> {
        if !self.grown.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.extra_preds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned()
            .unwrap_or_default()
    }

    pub fn add_pred(&self, node: u32, pred: u32) {
        self.extra_preds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node)
            .or_default()
            .push(pred);
        self.grown.store(true, Ordering::Release);
    }

    pub fn node_of(&self, id: &str) -> Option<u32> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .copied()
    }
}

/// Finds the engine's handlers for tasks added while a run runs.
pub(crate) trait HandlerLookup: Send + Sync {
    /// The handler registered as `name`, or the problem (unknown, ambiguous, broken) naming
    /// `task`.
    fn lookup(&self, name: &str, task: &str) -> Result<Slot, Problem>;
}

impl RunShared {
    /// The node count of the workflow itself (nodes added while running come after).
    pub fn static_len(&self) -> usize {
        self.results.len()
    }

    /// Validates `task`, added by `node`'s running attempt: a unique id, a known handler that
    /// accepts it, every parameter resolvable (bound, the result of a task that has finished or
    /// of the asking task itself, or a channel key that is set or the asking task declares).
    fn prepare_added(&self, node: u32, task: Task, goto: bool) -> Result<Added, ControlError> {
        if self.registry.is_none() {
            // In a runner: the engine validates it when the outcome arrives.
            return Ok(Added {
                task,
                sources: Vec::new(),
                slot: None,
                goto,
            });
        }
        let asking = self.task(node).id().to_owned();
        let mut problems = Vec::new();
        let id = task.id().to_owned();
        let taken = self.index_of(&id).is_some() || self.dynamic.pending(node, &id);
        if taken {
            problems.push(Problem::DuplicateTaskId {
                id: id.clone(),
                first: "(a task already in the run)",
                second: task.name(),
            });
        }
        if task.max_cycles() == 0 {
            problems.push(Problem::ZeroMaxCycles { task: id.clone() });
        }
        let slot = match &self.registry {
            None => None,
            Some(registry) => match registry.lookup(task.handler(), &id) {
                Ok(slot) => {
                    let validated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        slot.handler.validate_task(&task)
                    }));
                    match validated {
                        Ok(Ok(())) => {}
                        Ok(Err(problem)) => problems.push(problem),
                        Err(payload) => problems.push(Problem::invalid_config(
                            &id,
                            task.handler(),
                            format!(
                                "validate_task panicked: {}",
                                crate::definition::panic_message(&*payload)
                            ),
                        )),
                    }
                    Some(slot)
                }
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
        };
        let params = task.def.params;
        for (name, _) in task.bound_inputs() {
            if !params.iter().any(|p| p.name == name) {
                problems.push(Problem::UnknownInput {
                    task: id.clone(),
                    input: name.to_owned(),
                    params: params.iter().map(|p| p.name).collect(),
                });
            }
        }
        let mut sources = Vec::with_capacity(params.len());
        for param in params {
            let source = if let Some((i, value)) = task
                .bound_inputs()
                .enumerate()
                .find(|(_, (k, _))| *k == param.name)
                .map(|(i, (_, v))| (i, v))
            {
                if !value.matches(param.ty) {
                    problems.push(Problem::InputType {
                        task: id.clone(),
                        param: param.name.to_owned(),
                        expected: param.ty.name(),
                        found: value.type_name().to_owned(),
                        source_desc: "the input bound with Task::with_input".to_owned(),
                    });
                }
                Source::Bound(i as u32)
            } else if let Some(producer) = self.index_of(param.name) {
                let ready = producer == node || self.result_value(producer).is_some();
                if ready {
                    let output = self.task(producer).def.output;
                    if output.id() != param.ty.id() {
                        problems.push(Problem::InputType {
                            task: id.clone(),
                            param: param.name.to_owned(),
                            expected: param.ty.name(),
                            found: output.name().to_owned(),
                            source_desc: format!("the result of task '{}'", param.name),
                        });
                    }
                } else {
                    problems.push(Problem::MissingInput {
                        task: id.clone(),
                        param: param.name.to_owned(),
                        type_name: param.ty.name(),
                        hint: format!(
                            "task '{}' has not finished, so its result may not exist when '{id}' runs; bind the value with Task::with_input",
                            param.name
                        ),
                    });
                }
                Source::Result(producer)
            } else {
                let declared = self.task(node).writes().any(|w| w == param.name);
                match self.channel.value(param.name) {
                    Some(value) if !value.matches(param.ty) => {
                        problems.push(Problem::InputType {
                            task: id.clone(),
                            param: param.name.to_owned(),
                            expected: param.ty.name(),
                            found: value.type_name().to_owned(),
                            source_desc: format!("channel key '{}'", param.name),
                        })
                    }
                    Some(_) => {}
                    None if declared => {}
                    None => problems.push(Problem::MissingInput {
                        task: id.clone(),
                        param: param.name.to_owned(),
                        type_name: param.ty.name(),
                        hint: format!(
                            "no task of the run has the id '{0}' and channel key '{0}' is not set; bind it with Task::with_input(\"{0}\", value)",
                            param.name
                        ),
                    }),
                }
                Source::Channel
            };
            sources.push(source);
        }
        if problems.is_empty() {
            Ok(Added {
                task,
                sources,
                slot,
                goto,
            })
        } else {
            Err(ControlError::Invalid {
                task: asking,
                added: id,
                problems,
            })
        }
    }
}

impl Dynamic {
    /// Whether `node`'s running attempt added a task of id `id` already (not yet in the
    /// graph).
    fn pending(&self, node: u32, id: &str) -> bool {
        self.asked.load(Ordering::Acquire)
            && lock(&self.requests)
                .get(&node)
                .is_some_and(|r| r.added_ids.contains(id))
    }
}

impl ExecutionContext {
    fn asking(&self) -> String {
        self.task_id().to_owned()
    }

    pub(crate) fn stamp(&self) -> Stamp {
        (self.cycle(), self.attempt())
    }

    /// Adds `task` to the run: it runs after this task, and this task's successors wait for it
    /// too; with `goto`, it runs instead of them.
    pub fn next_task(&self, task: Task, goto: bool) -> Result<(), ControlError> {
        let added = self.run.prepare_added(self.node, task, goto)?;
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            r.added_ids.insert(added.task.id().to_owned());
            r.added.push(added);
        });
        Ok(())
    }

    /// Runs task `id` next, instead of this task's successors.
    pub fn goto(&self, id: &str) -> Result<(), ControlError> {
        let known = self.run.index_of(id).is_some() || self.run.registry.is_none();
        if !known {
            return Err(ControlError::NoSuchTask {
                task: self.asking(),
                target: id.to_owned(),
            });
        }
        let mut conflict = None;
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            if r.iterate.is_some() {
                conflict = Some("goto after next_iteration; ask for one of them");
            } else {
                r.goto = Some(id.to_owned());
            }
        });
        self.conflict(conflict)
    }

    /// Runs this task again once it finished, with `inputs` bound, before its successors.
    pub fn next_iteration(&self, inputs: Vec<(String, Value)>) -> Result<(), ControlError> {
        if self.cycle() >= self.task().max_cycles() {
            return Err(ControlError::CycleLimit {
                task: self.asking(),
                runs: self.cycle(),
            });
        }
        let params = self.task().def.params;
        if let Some((name, _)) = inputs
            .iter()
            .find(|(name, _)| !params.iter().any(|p| p.name == name))
        {
            return Err(ControlError::Conflict {
                task: self.asking(),
                message: format!(
                    "next_iteration binds `{name}`, which is not a parameter of the task (parameters: {})",
                    params.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if let Some((name, value, ty)) = inputs.iter().find_map(|(name, value)| {
            let param = params.iter().find(|p| p.name == name)?;
            (!value.matches(param.ty)).then_some((name, value, param.ty))
        }) {
            return Err(ControlError::Conflict {
                task: self.asking(),
                message: format!(
                    "next_iteration binds `{name}` to a `{}`, but the parameter is a `{}`",
                    value.type_name(),
                    ty.name()
                ),
            });
        }
        let mut conflict = None;
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            if r.goto.is_some() || r.added.iter().any(|a| a.goto) {
                conflict = Some("next_iteration after a goto; ask for one of them");
            } else {
                let merged = r.iterate.get_or_insert_with(Vec::new);
                for (name, value) in inputs {
                    merged.retain(|(k, _)| *k != name);
                    merged.push((name, value));
                }
            }
        });
        self.conflict(conflict)
    }

    /// Ends the run once this task finished: as a success (`Terminate`) or a failure.
    pub(crate) fn end(&self, end: End) {
        self.run.dynamic.record(self.node, self.stamp(), |r| {
            // A cancel wins over a terminate.
            if !matches!(r.end, Some(End::Cancel(_))) {
                r.end = Some(end);
            }
        });
    }

    /// Asks for a checkpoint once this task completed.
    pub fn checkpoint(&self) -> Result<(), ControlError> {
        if !self.run.checkpoints && self.run.registry.is_some() {
            return Err(ControlError::NoCheckpoints {
                task: self.asking(),
            });
        }
        self.run
            .dynamic
            .record(self.node, self.stamp(), |r| r.checkpoint = true);
        Ok(())
    }

    fn conflict(&self, message: Option<&str>) -> Result<(), ControlError> {
        match message {
            None => Ok(()),
            Some(message) => Err(ControlError::Conflict {
                task: self.asking(),
                message: message.to_owned(),
            }),
        }
    }

    /// The requests this attempt made, taken (a runner sends them back with its outcome).
    pub(crate) fn take_requests(&self) -> Option<Requests> {
        self.run.dynamic.take(self.node, self.stamp())
    }

    /// Records a channel write of this attempt (`None`: a deletion): the run's channel takes
    /// it when the attempt succeeds.
    pub(crate) fn record_channel_write(&self, key: String, value: Option<Value>) {
        self.run
            .dynamic
            .record(self.node, self.stamp(), |r| r.channel.push((key, value)));
    }

    /// This attempt's channel writes, last write per key, in the order of their last writes
    /// (what a runner sends with its outcome); taken.
    pub(crate) fn take_channel_writes(&self) -> Vec<(String, Option<Value>)> {
        let writes = self
            .run
            .dynamic
            .take_channel_writes(self.node, self.stamp());
        let mut last: Vec<(String, Option<Value>)> = Vec::with_capacity(writes.len());
        for (key, value) in writes {
            last.retain(|(k, _)| *k != key);
            last.push((key, value));
        }
        last
    }
}

/// The longest message a runner's terminate or cancel may carry.
const MAX_MESSAGE: usize = 4096;

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" [cut]");
    }
    message
}

/// The largest encoded options of one added task.
const MAX_OPTIONS: usize = 64 << 10;

impl ExecutionContext {
    /// Applies requests that came back from a runner with its outcome, validated as if the
    /// task had made them here.
    pub(crate) fn apply_control(&self, control: Vec<Control>) -> Result<(), ControlError> {
        let unreadable = |message: String| ControlError::Unreadable {
            task: self.asking(),
            message,
        };
        let values = |inputs: Vec<(String, EncodedValue)>| -> Vec<(String, Value)> {
            inputs
                .into_iter()
                .map(|(name, encoded)| (name, Value::from_encoded(encoded)))
                .collect()
        };
        for request in control {
            match request {
                Control::AddTask {
                    function,
                    id,
                    handler,
                    goto,
                    inputs,
                    options,
                } => {
                    let def = definitions().find(|d| d.name == function).ok_or_else(|| {
                        unreadable(format!(
                            "it added a task of function `{}`, which this program does not have",
                            bounded(function.clone())
                        ))
                    })?;
                    let bytes = options;
                    if bytes.len() > MAX_OPTIONS {
                        return Err(unreadable(format!(
                            "the options of added task '{}' take {} bytes (at most {MAX_OPTIONS})",
                            bounded(id),
                            bytes.len()
                        )));
                    }
                    let (options, used): (NodeOptions, usize) = bincode::serde::decode_from_slice(
                        &bytes,
                        bincode::config::standard().with_limit::<MAX_OPTIONS>(),
                    )
                    .map_err(|e| {
                        unreadable(format!(
                            "the options of added task '{}': {e}",
                            bounded(id.clone())
                        ))
                    })?;
                    if used != bytes.len() {
                        return Err(unreadable(
                            "trailing bytes after an added task's options".to_owned(),
                        ));
                    }
                    let custom = handler != (def.handler)() || options.has_config();
                    let task = Task::restore(def, id, handler, values(inputs), options);
                    let asking = self.task();
                    let task = if !custom {
                        task.on_handler_of(asking)
                    } else if task.handler() == asking.handler()
                        && task.handler_config() == asking.handler_config()
                    {
                        task
                    } else {
                        return Err(ControlError::Untrusted {
                            task: self.asking(),
                            handler: asking.handler().to_owned(),
                            added: bounded(task.id().to_owned()),
                            // (Never the configuration itself: it may hold secrets.)
                            wanted: format!(
                                "handler '{}'{}",
                                bounded(task.handler().to_owned()),
                                if task.handler_config() == asking.handler_config() {
                                    ""
                                } else {
                                    " with a configuration of its own"
                                }
                            ),
                        });
                    };
                    self.next_task(task, goto)?;
                }
                Control::Goto { id } => self.goto(&id)?,
                Control::NextIteration { inputs } => self.next_iteration(values(inputs))?,
                Control::Terminate { message } => self.end(End::Terminate(bounded(message))),
                Control::Cancel { message } => self.end(End::Cancel(bounded(message))),
                Control::Checkpoint => self.checkpoint()?,
                _ => return Err(unreadable("a request of a newer protocol".to_owned())),
            }
        }
        Ok(())
    }

    /// This attempt's requests, taken, in wire form (a runner sends them back).
    pub(crate) fn control_to_wire(&self) -> Result<Vec<Control>, ValueError> {
        let Some(requests) = self.take_requests() else {
            return Ok(Vec::new());
        };
        let encode =
            |inputs: Vec<(String, Value)>| -> Result<Vec<(String, EncodedValue)>, ValueError> {
                inputs
                    .into_iter()
                    .map(|(name, value)| Ok((name, value.encode()?)))
                    .collect()
            };
        let mut wire = Vec::new();
        for added in requests.added {
            let task = added.task;
            let options =
                bincode::serde::encode_to_vec(task.node_options(), bincode::config::standard())
                    .map_err(|e| ValueError::Codec {
                        type_name: "graflow::NodeOptions".to_owned(),
                        message: e.to_string(),
                    })?;
            wire.push(Control::AddTask {
                function: task.name().to_owned(),
                id: task.id().to_owned(),
                handler: task.handler().to_owned(),
                goto: added.goto,
                inputs: encode(
                    task.bound_inputs()
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect(),
                )?,
                options,
            });
        }
        if let Some(id) = requests.goto {
            wire.push(Control::Goto { id });
        }
        if let Some(inputs) = requests.iterate {
            wire.push(Control::NextIteration {
                inputs: encode(inputs)?,
            });
        }
        match requests.end {
            Some(End::Terminate(message)) => wire.push(Control::Terminate { message }),
            Some(End::Cancel(message)) => wire.push(Control::Cancel { message }),
            None => {}
        }
        if requests.checkpoint {
            wire.push(Control::Checkpoint);
        }
        Ok(wire)
    }
}

fn execution(ctx: &TaskContext) -> Option<&ExecutionContext> {
    ctx.run_access().downcast_ref::<ExecutionContext>()
}

fn outside(ctx: &TaskContext) -> ControlError {
    ControlError::Unreadable {
        task: ctx.task_id().to_owned(),
        message: "this context does not belong to a run".to_owned(),
    }
}

/// Dynamic control, from inside a task body.
impl TaskContext {
    /// Adds `task` to the run. It runs after this task, and this task's successors wait for it
    /// too (so a task can fan out into tasks decided at run time, and its successors gather
    /// their results with [`TaskContext::upstream`]). It is validated now: a unique id, a known
    /// handler that accepts it, every parameter resolvable (bound with
    /// [`Task::with_input`], the result of a task that has finished or of this task, or a channel
    /// key that is set or that this task declares in `writes`). Out of process, it is validated
    /// when this attempt's outcome arrives, and a problem fails the attempt.
    ///
    /// It is added only if this attempt succeeds.
    pub fn next_task(&self, task: Task) -> Result<(), ControlError> {
        execution(self)
            .ok_or_else(|| outside(self))?
            .next_task(task, false)
    }

    /// [`TaskContext::next_task`], but `task` runs instead of this task's successors: they are
    /// skipped, unless something else leads to them.
    pub fn next_task_instead(&self, task: Task) -> Result<(), ControlError> {
        execution(self)
            .ok_or_else(|| outside(self))?
            .next_task(task, true)
    }

    /// Jumps to task `id` of the run once this task finished: it runs next (again, if it ran
    /// already), then the tasks after it, as if they had not run; this task's successors are
    /// skipped unless that path leads to them. Every run of a task counts against its
    /// `max_cycles`.
    pub fn goto(&self, id: &str) -> Result<(), ControlError> {
        execution(self).ok_or_else(|| outside(self))?.goto(id)
    }

    /// Runs this task again once this attempt succeeded, before its successors, with `name`
    /// bound to `value` (call [`Iteration::with`] for more inputs; parameters not bound keep
    /// their usual source). Every run counts against the task's `max_cycles` (`#[task(max_cycles
    /// = N)]`): past it, the task fails.
    pub fn next_iteration(&self) -> Iteration<'_> {
        Iteration {
            ctx: self,
            inputs: Vec::new(),
        }
    }

    /// Ends the run once this task finished, as a success: nothing new starts, tasks already
    /// running finish, the rest are reported skipped, and the report says why.
    pub fn terminate(&self, message: impl Into<String>) {
        if let Some(ctx) = execution(self) {
            ctx.end(End::Terminate(message.into()));
        }
    }

    /// Ends the run as a failure, whatever this attempt returns: its result is not kept, tasks
    /// running are cancelled and the run returns
    /// [`RunError::Cancelled`](crate::RunError::Cancelled) with `message`.
    pub fn cancel(&self, message: impl Into<String>) {
        if let Some(ctx) = execution(self) {
            ctx.end(End::Cancel(message.into()));
        }
    }

    /// Writes a checkpoint once this task completed (the run must have a checkpoint path:
    /// `RunOptions::new().checkpoint(path)`).
    pub fn checkpoint(&self) -> Result<(), ControlError> {
        execution(self).ok_or_else(|| outside(self))?.checkpoint()
    }
}

/// The next iteration of a task, being described: see [`TaskContext::next_iteration`].
#[must_use = "call .with(name, value) and then .request() to ask for the iteration"]
pub struct Iteration<'a> {
    ctx: &'a TaskContext,
    inputs: Vec<(String, Value)>,
}

impl fmt::Debug for Iteration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iteration")
            .field("task", &self.ctx.task_id())
            .field("inputs", &self.inputs)
            .finish()
    }
}

impl Iteration<'_> {
    /// Binds parameter `name` to `value` for the next run.
    pub fn with<T: Data + Clone>(mut self, name: impl Into<String>, value: T) -> Self {
        self.inputs.push((name.into(), Value::new(value)));
        self
    }

    /// Asks for the iteration.
    pub fn request(self) -> Result<(), ControlError> {
        execution(self.ctx)
            .ok_or_else(|| outside(self.ctx))?
            .next_iteration(self.inputs)
    }
}

/// A handler failure for a request that cannot be applied.
pub(crate) fn refused(task: &Task, error: ControlError) -> AttemptError {
    AttemptError::Control {
        task: task.id().to_owned(),
        source: Box::new(error),
    }
}
