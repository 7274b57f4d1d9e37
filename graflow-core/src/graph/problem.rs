//! What validation finds wrong with a workflow before anything runs.

/// One problem found by validation. [`RunError::Invalid`](crate::RunError::Invalid) lists every
/// problem of a workflow together; nothing runs while there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The workflow has no task.
    #[error(
        "workflow '{workflow}' has no task: add one with workflow! {{ my_task; }} or WorkflowBuilder::add"
    )]
    EmptyWorkflow {
        /// The workflow's name.
        workflow: String,
    },

    /// Two nodes of one workflow share an id.
    #[error(
        "task id '{id}' is used twice (by `{first}` and `{second}`); give one of them another id with #[task(id = \"...\")] or Task::with_id"
    )]
    DuplicateTaskId {
        /// The shared id.
        id: String,
        /// The registry name of the first task.
        first: &'static str,
        /// The registry name of the second task.
        second: &'static str,
    },

    /// The dependencies form a cycle.
    #[error("cycle in the workflow: {}; remove one of these edges", path.join(" >> "))]
    Cycle {
        /// The task ids on the cycle, the first repeated at the end.
        path: Vec<String>,
    },

    /// A task names a handler that no one registered.
    #[error(
        "Unknown handler type: {handler}. Registered: {}. Register it with engine.register_handler() or graflow::register_handler! (used by task '{task}')",
        registered.join(", ")
    )]
    UnknownHandler {
        /// The task that asked for the handler.
        task: String,
        /// The handler name it asked for.
        handler: String,
        /// The names the engine knows.
        registered: Vec<String>,
    },

    /// Two link-time registrations claim one handler name.
    #[error(
        "handler '{handler}' (used by task '{task}') is registered more than once at link time, in {}; register the one you want with engine.register_handler(\"{handler}\", ...)",
        modules.join(" and ")
    )]
    AmbiguousHandler {
        /// The task that asked for the handler.
        task: String,
        /// The contested name.
        handler: String,
        /// The modules whose `register_handler!` claimed it.
        modules: Vec<&'static str>,
    },

    /// A link-time handler's constructor panicked when the engine was created.
    #[error(
        "handler '{handler}' (used by task '{task}') could not be created: its constructor (register_handler! in {module}) panicked: {message}"
    )]
    BrokenHandler {
        /// The task that asked for the handler.
        task: String,
        /// The handler name.
        handler: String,
        /// The module of the `register_handler!`.
        module: &'static str,
        /// The panic message.
        message: String,
    },

    /// A handler rejected a task's handler configuration.
    #[error("handler '{handler}' rejects the configuration of task '{task}': {message}")]
    InvalidConfig {
        /// The task.
        task: String,
        /// The handler.
        handler: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// An input bound with `Task::with_input` matches no parameter of the function.
    #[error(
        "task '{task}' has an input named '{input}' but its function has no such parameter (parameters: {}); fix the name given to Task::with_input",
        params.join(", ")
    )]
    UnknownInput {
        /// The task.
        task: String,
        /// The bound name.
        input: String,
        /// The function's parameter names.
        params: Vec<&'static str>,
    },

    /// A parameter has no value: no bound input, no upstream task with its name, no channel key.
    #[error("task '{task}' cannot run: parameter `{param}: {type_name}` has no value; {hint}")]
    MissingInput {
        /// The task.
        task: String,
        /// The parameter.
        param: String,
        /// The parameter's type.
        type_name: &'static str,
        /// Where the engine looked and what to do.
        hint: String,
    },

    /// A parameter's value has another type than the parameter.
    #[error(
        "task '{task}' cannot run: parameter `{param}` expects `{expected}` but {source_desc} is `{found}`; make the types agree"
    )]
    InputType {
        /// The task.
        task: String,
        /// The parameter.
        param: String,
        /// The parameter's type.
        expected: &'static str,
        /// The type of the value found.
        found: String,
        /// Where the value came from ("the result of task 'x'", "channel key 'k'", ...).
        source_desc: String,
    },

    /// A parallel group's policy cannot be met, or its members are wrong.
    #[error("group '{group}' is invalid: {message}")]
    InvalidGroup {
        /// The group's name.
        group: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A task's `max_cycles` is 0.
    #[error("task '{task}' has max_cycles = 0; it could never run: give it at least 1")]
    ZeroMaxCycles {
        /// The task.
        task: String,
    },
}

impl Problem {
    /// A configuration rejected by a handler (for
    /// [`TaskHandler::validate_task`](crate::TaskHandler::validate_task)).
    pub fn invalid_config(task: &str, handler: &str, message: impl Into<String>) -> Self {
        Problem::InvalidConfig {
            task: task.to_owned(),
            handler: handler.to_owned(),
            message: message.into(),
        }
    }
}
