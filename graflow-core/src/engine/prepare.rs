//! Validation before anything runs: the graph, every handler name and the handler's view of its tasks, the parameters the initial channel must give; and the lookup of handlers (with their limits) for tasks added while running.

use super::{
    Arc, AssertUnwindSafe, BTreeMap, Channel, Cow, Gate, HandlerLookup, Prepared, Problem,
    Registered, RunError, Slot, Workflow, WorkflowEngine, panic_message,
};

impl WorkflowEngine {
    /// Validation: the graph's structure, every handler name, every handler's view of its
    /// tasks' configuration, and the parameters the initial channel must provide. Every
    /// problem is collected.
    pub(super) fn prepare(
        &self,
        workflow: &Workflow,
        channel: &Channel,
    ) -> Result<Prepared, RunError> {
        self.prepare_with(workflow, Some(channel))
    }

    /// [`Self::prepare`]; without a channel, parameters fed from the channel are not checked.
    pub(super) fn prepare_with(
        &self,
        workflow: &Workflow,
        channel: Option<&Channel>,
    ) -> Result<Prepared, RunError> {
        if crate::runner::uninitialised_runner() {
            return Err(RunError::RunnerNotInitialised);
        }
        let invalid = |problems| RunError::Invalid {
            workflow: workflow.name().to_owned(),
            problems,
        };
        let graph = workflow.graph().map_err(invalid)?;
        let tasks = workflow.tasks();
        let mut problems = Vec::new();

        let lookup = self.lookup();
        let mut handlers: Vec<Option<Slot>> = Vec::with_capacity(graph.handler_names.len());
        for (h, name) in graph.handler_names.iter().enumerate() {
            let node = graph
                .node_handler
                .iter()
                .position(|&x| x as usize == h)
                .unwrap_or(0);
            handlers.push(match lookup.lookup(name, tasks[node].id()) {
                Ok(slot) => Some(slot),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            });
        }

        for (node, task) in tasks.iter().enumerate() {
            if let Some(slot) = &handlers[graph.node_handler[node] as usize] {
                match std::panic::catch_unwind(AssertUnwindSafe(|| {
                    slot.handler.validate_task(task)
                })) {
                    Ok(Ok(())) => {}
                    Ok(Err(problem)) => problems.push(problem),
                    Err(payload) => problems.push(Problem::invalid_config(
                        task.id(),
                        task.handler(),
                        format!("validate_task panicked: {}", panic_message(&*payload)),
                    )),
                }
            }
        }

        let empty = Channel::new();
        let (needs, channel) = match channel {
            Some(channel) => (&graph.channel_needs[..], channel),
            None => (&[][..], &empty),
        };
        for need in needs {
            let task = &tasks[need.node as usize];
            let param = &task.def.params[need.param as usize];
            match channel.value(param.name) {
                None => problems.push(Problem::MissingInput {
                    task: task.id().to_owned(),
                    param: param.name.to_owned(),
                    type_name: param.ty.name(),
                    hint: format!(
                        "no upstream task has the id '{0}' or declares #[task(writes = [\"{0}\"])], and the run's initial channel has no key '{0}'; pass it with RunOptions::new().param(\"{0}\", value)",
                        param.name
                    ),
                }),
                Some(value) if !value.matches(param.ty) => problems.push(Problem::InputType {
                    task: task.id().to_owned(),
                    param: param.name.to_owned(),
                    expected: param.ty.name(),
                    found: value.type_name().to_owned(),
                    source_desc: format!("key '{}' of the run's initial channel", param.name),
                }),
                Some(_) => {}
            }
        }

        if problems.is_empty() {
            let handlers: Vec<Slot> = handlers.into_iter().flatten().collect();
            Ok((graph, handlers))
        } else {
            Err(invalid(problems))
        }
    }
}

/// The engine's handlers, as a run looks them up.
pub(super) struct Lookup {
    pub(super) handlers: Arc<BTreeMap<String, Registered>>,
    pub(super) limits: Arc<BTreeMap<String, usize>>,
    pub(super) per_run: Arc<BTreeMap<String, usize>>,
    pub(super) gates: Gates,
}

/// Per handler with a limit, the gate every run of the engine (and of its clones) shares.
pub(super) type Gates = Arc<std::sync::Mutex<BTreeMap<String, Arc<Gate>>>>;

impl Lookup {
    /// The engine's gate of handler `name`, made anew when its limit changed (runs already
    /// going keep the one they have).
    pub(super) fn gate(&self, name: &str, limit: usize) -> Arc<Gate> {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match gates.get(name) {
            Some(gate) if gate.limit() == limit => gate.clone(),
            _ => {
                let gate = Gate::new(limit);
                gates.insert(name.to_owned(), gate.clone());
                gate
            }
        }
    }

    pub(super) fn limit(&self, name: &str) -> Option<usize> {
        if let Some(&limit) = self.limits.get(name) {
            return Some(limit);
        }
        match self.handlers.get(name) {
            Some(Registered::Handler(entry)) => entry.handler.concurrency_limit().map(|l| l.max(1)),
            _ => None,
        }
    }
}

impl HandlerLookup for Lookup {
    fn lookup(&self, name: &str, task: &str) -> Result<Slot, Problem> {
        match self.handlers.get(name) {
            Some(Registered::Handler(entry)) => Ok(Slot {
                name: Cow::Owned(name.to_owned()),
                handler: entry.handler.clone(),
                direct: entry.direct,
                limit: self.per_run.get(name).copied().unwrap_or(usize::MAX),
                gate: self.limit(name).map(|limit| self.gate(name, limit)),
            }),
            Some(Registered::Ambiguous(modules)) => Err(Problem::AmbiguousHandler {
                task: task.to_owned(),
                handler: name.to_owned(),
                modules: modules.clone(),
            }),
            Some(Registered::Broken { module, message }) => Err(Problem::BrokenHandler {
                task: task.to_owned(),
                handler: name.to_owned(),
                module,
                message: message.clone(),
            }),
            None => Err(Problem::UnknownHandler {
                task: task.to_owned(),
                handler: name.to_owned(),
                registered: self.handlers.keys().cloned().collect(),
            }),
        }
    }
}
