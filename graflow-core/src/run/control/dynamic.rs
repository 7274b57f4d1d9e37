//! The nodes and edges a run gains while it runs: an append-only list after the workflow's own, read without a lock on the hot path, and how a requested task is checked and added.

use super::{
    Added, AtomicBool, ControlError, DynNode, End, HashMap, Mutex, MutexGuard, Ordering,
    PoisonError, Problem, Requests, RunShared, RwLock, Slot, Source, Stamp, Task, Value,
};

/// The part of a run's state that dynamic control changes.
#[derive(Default)]
pub(crate) struct Dynamic {
    /// Set when any attempt asked for anything: the scheduler looks at `requests` only then.
    pub asked: AtomicBool,
    pub(super) requests: Mutex<HashMap<u32, Requests>>,
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Dynamic {
    /// Records a request of the attempt `stamp` of `node` (ignored when a later attempt has
    /// asked already: it comes from an attempt given up).
    pub(crate) fn record(&self, node: u32, stamp: Stamp, f: impl FnOnce(&mut Requests)) {
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
    pub(crate) fn take(&self, node: u32, stamp: Stamp) -> Option<Requests> {
        if !self.asked.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.requests)
            .remove(&node)
            .filter(|r| r.stamp == stamp)
    }

    /// The channel writes the attempt `stamp` of `node` made so far, in order.
    pub(crate) fn channel_writes<R>(
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
    pub(crate) fn take_channel_writes(
        &self,
        node: u32,
        stamp: Stamp,
    ) -> Vec<(String, Option<Value>)> {
        if !self.asked.load(Ordering::Acquire) {
            return Vec::new();
        }
        match lock(&self.requests).get_mut(&node) {
            Some(r) if r.stamp == stamp => std::mem::take(&mut r.channel),
            _ => Vec::new(),
        }
    }

    /// Whether the attempt `stamp` of `node` asked to cancel the run.
    pub(crate) fn cancels(&self, node: u32, stamp: Stamp) -> bool {
        self.asked.load(Ordering::Acquire)
            && lock(&self.requests)
                .get(&node)
                .is_some_and(|r| r.stamp == stamp && matches!(r.end, Some(End::Cancel(_))))
    }

    /// Inputs bound for `node`'s next run, by parameter name.
    pub(crate) fn override_of(&self, node: u32, param: &str) -> Option<Value> {
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
    pub(crate) fn clear_override(&self, node: u32) {
        if self.overridden.load(Ordering::Relaxed) {
            self.overrides
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&node);
        }
    }

    pub(crate) fn set_overrides(&self, node: u32, inputs: Vec<(String, Value)>) {
        self.overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node, inputs);
        self.overridden.store(true, Ordering::Release);
    }

    /// Extra predecessors of `node` (edges added while running).
    pub(crate) fn extra_preds(&self, node: u32) -> Vec<u32> {
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

    pub(crate) fn add_pred(&self, node: u32, pred: u32) {
        self.extra_preds
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node)
            .or_default()
            .push(pred);
        self.grown.store(true, Ordering::Release);
    }

    pub(crate) fn node_of(&self, id: &str) -> Option<u32> {
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
    pub(crate) fn static_len(&self) -> usize {
        self.results.len()
    }

    /// Validates `task`, added by `node`'s running attempt: a unique id, a known handler that
    /// accepts it, every parameter resolvable (bound, the result of a task that has finished or
    /// of the asking task itself, or a channel key that is set or the asking task declares).
    pub(super) fn prepare_added(
        &self,
        node: u32,
        task: Task,
        goto: bool,
    ) -> Result<Added, ControlError> {
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
    pub(super) fn pending(&self, node: u32, id: &str) -> bool {
        self.asked.load(Ordering::Acquire)
            && lock(&self.requests)
                .get(&node)
                .is_some_and(|r| r.added_ids.contains(id))
    }
}
