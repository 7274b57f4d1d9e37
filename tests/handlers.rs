//! Handlers: resolution by name at validation, custom handlers registered at run time and at
//! link time, replacing a handler, choosing one by an expression, handler configuration.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use graflow::prelude::*;
use graflow::{AttemptError, ConfigValue, DirectHandler, Problem};

/// Records which tasks it ran, then runs them in-process.
#[derive(Default)]
struct Recorder {
    ran: Mutex<Vec<String>>,
}

#[async_trait]
impl TaskHandler for Recorder {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        self.ran.lock().unwrap().push(task.id().to_owned());
        task.run(ctx).await
    }
}

/// What [`Linked`] ran: (run id, task id). Tests run in parallel, so each looks only at its
/// own run.
static LINKED_RAN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The ids of the tasks [`Linked`] ran in run `run_id`.
fn linked_ran(run_id: &str) -> Vec<String> {
    let ran = LINKED_RAN.lock().unwrap();
    ran.iter()
        .filter(|(run, _)| run == run_id)
        .map(|(_, task)| task.clone())
        .collect()
}

/// Registered at link time below.
struct Linked;

#[async_trait]
impl TaskHandler for Linked {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        LINKED_RAN
            .lock()
            .unwrap()
            .push((ctx.run_id().to_owned(), task.id().to_owned()));
        task.run(ctx).await
    }
}

graflow::register_handler!("linked", || Linked);

#[task]
fn plain() -> u32 {
    20
}

#[task(handler = "recorder")]
fn recorded(plain: u32) -> u32 {
    plain + 1
}

#[task(handler = "linked")]
async fn linked_task(recorded: u32) -> u32 {
    recorded * 2
}

#[tokio::test]
async fn runtime_and_link_time_handlers_mix_with_direct_tasks() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let mut engine = WorkflowEngine::new();
    assert!(
        engine.handler_names().contains(&"linked"),
        "{:?}",
        engine.handler_names()
    );
    engine.register_handler_arc("recorder", recorder.clone());
    let wf = workflow! { plain >> recorded >> linked_task; };
    let report = engine.execute(&wf, RunOptions::new()).await.unwrap();
    assert_eq!(report.result::<u32>("linked_task").unwrap(), 42);
    assert_eq!(*recorder.ran.lock().unwrap(), vec!["recorded".to_owned()]);
    assert_eq!(linked_ran(report.run_id()), ["linked_task"]);
    let handlers: Vec<(&str, &str)> = report.tasks().map(|t| (t.id, t.handler)).collect();
    assert_eq!(
        handlers,
        [
            ("plain", "direct"),
            ("recorded", "recorder"),
            ("linked_task", "linked")
        ]
    );
}

#[cfg(feature = "docker")]
#[test]
fn docker_is_registered_in_a_program_that_depends_on_graflow_alone() {
    // This file never names graflow-docker: its registration survives linking only because
    // the facade keeps the crate referenced.
    assert!(WorkflowEngine::new().handler_names().contains(&"docker"));
}

#[task(handler = "my_handler")]
fn orphan() -> u8 {
    0
}

#[test]
fn an_unknown_handler_is_reported_before_any_task_runs() {
    let wf = workflow! { plain >> orphan; };
    let engine = WorkflowEngine::new();
    // The built-in handlers and this file's link-time registrations, whatever else is linked
    // in (docker, with the feature of that name).
    let registered = engine.handler_names();
    for name in ["direct", "process", "linked", "dup"] {
        assert!(registered.contains(&name), "{name} in {registered:?}");
    }
    let err = engine.run(&wf, RunOptions::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("Unknown handler type: my_handler. Registered: {}. Register it with engine.register_handler() or graflow::register_handler! (used by task 'orphan')", registered.join(", "))),
        "{msg}"
    );
    assert!(matches!(&err.problems()[0], Problem::UnknownHandler { .. }));
    assert!(err.report().is_none(), "nothing ran");
}

#[task(handler = "docker", image = "python:3.11-slim", volumes = ["/data:/data:ro"], env = ["API_KEY"])]
fn containerised() -> String {
    "ran".to_owned()
}

#[test]
fn replacing_docker_with_direct_runs_a_docker_workflow_locally() {
    let mut engine = WorkflowEngine::new();
    engine.register_handler("docker", DirectHandler);
    let report = engine
        .run(&workflow! { containerised; }, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<String>("containerised").unwrap(), "ran");
    assert_eq!(report.task("containerised").unwrap().handler, "docker");
}

static PRODUCTION: AtomicBool = AtomicBool::new(false);

#[task(handler = if PRODUCTION.load(Ordering::SeqCst) { "recorder" } else { "direct" })]
fn adaptive() -> u8 {
    7
}

#[test]
fn a_handler_chosen_by_an_expression_is_evaluated_when_the_workflow_is_built() {
    assert_eq!(workflow! { adaptive; }.tasks()[0].handler(), "direct");
    PRODUCTION.store(true, Ordering::SeqCst);
    let wf = workflow! { adaptive; };
    PRODUCTION.store(false, Ordering::SeqCst);
    assert_eq!(wf.tasks()[0].handler(), "recorder");
    let engine = WorkflowEngine::new().with_handler("recorder", Recorder::default());
    let report = engine.run(&wf, RunOptions::new()).unwrap();
    assert_eq!(report.task("adaptive").unwrap().handler, "recorder");
    assert_eq!(report.result::<u8>("adaptive").unwrap(), 7);
}

/// Checks its configuration, and only runs tasks whose `image` it accepts.
struct Picky;

#[async_trait]
impl TaskHandler for Picky {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        task.run(ctx).await
    }

    fn validate_task(&self, task: &Task) -> Result<(), Problem> {
        let config = task.handler_config();
        let unknown = config.unknown_keys(&["image", "volumes", "env"]);
        if !unknown.is_empty() {
            return Err(Problem::invalid_config(
                task.id(),
                task.handler(),
                format!("unknown option(s) {unknown:?}; valid: image, volumes, env"),
            ));
        }
        match config.get_str("image") {
            Some(_) => Ok(()),
            None => Err(Problem::invalid_config(
                task.id(),
                task.handler(),
                "`image` is required",
            )),
        }
    }
}

#[task(handler = "picky", imgae = "typo", retries = 1)]
fn misconfigured() -> u8 {
    0
}

#[test]
fn handler_configuration_reaches_the_handler_and_is_validated_first() {
    let task = containerised::task();
    let config = task.handler_config();
    assert_eq!(config.get_str("image"), Some("python:3.11-slim"));
    assert_eq!(
        config.get("volumes"),
        Some(&ConfigValue::List(vec![ConfigValue::Str(
            "/data:/data:ro".into()
        )]))
    );
    assert_eq!(
        config.get("env").unwrap().as_str_list().unwrap(),
        vec!["API_KEY"]
    );
    assert!(!config.contains("handler") && !config.contains("retries"));

    let engine = WorkflowEngine::new().with_handler("picky", Picky);
    let err = engine
        .run(&workflow! { misconfigured; }, RunOptions::new())
        .unwrap_err();
    assert_eq!(
        err.problems()[0].to_string(),
        "handler 'picky' rejects the configuration of task 'misconfigured': unknown option(s) [\"imgae\"]; valid: image, volumes, env"
    );
    // Configuration set in code counts too.
    let mut wf = Workflow::builder("configured");
    wf.add(
        misconfigured::task()
            .with_config("image", "alpine")
            .with_handler("picky"),
    );
    let err = engine.run(&wf.build(), RunOptions::new()).unwrap_err();
    assert!(err.to_string().contains("imgae"), "{err}");
}

/// Panics in the handler itself.
struct Broken;

#[async_trait]
impl TaskHandler for Broken {
    async fn execute_task(
        &self,
        _task: &Task,
        _ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        panic!("handler bug")
    }
}

#[test]
fn a_handler_that_panics_fails_the_task_by_name() {
    let wf = {
        let mut wf = Workflow::builder("broken");
        wf.add(plain::task().with_handler("broken"));
        wf.build()
    };
    let err = WorkflowEngine::new()
        .with_handler("broken", Broken)
        .run(&wf, RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "handler 'broken' could not run task 'plain': the handler panicked: handler bug"
        ),
        "{err}"
    );
}

/// A handler that returns an output of the wrong type is caught at the boundary.
struct WrongType;

#[async_trait]
impl TaskHandler for WrongType {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        let _ = (task, ctx);
        Ok(Value::new("not a number".to_owned()))
    }
}

#[test]
fn a_result_of_the_wrong_type_is_rejected() {
    let mut wf = Workflow::builder("wrong");
    wf.add(plain::task().with_handler("wrong"));
    let err = WorkflowEngine::new()
        .with_handler("wrong", WrongType)
        .run(&wf.build(), RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("handler 'wrong' returned a `alloc::string::String` for task 'plain', whose function returns `u32`"),
        "{err}"
    );
    assert!(
        matches!(err.cause(), Some(AttemptError::WrongOutput { .. })),
        "{err:?}"
    );
    assert_eq!(err.failure().map(|f| f.attempts), Some(1), "not retried");
}

#[test]
fn a_runtime_registration_replaces_a_link_time_one() {
    let mut engine = WorkflowEngine::new();
    let recorder = std::sync::Arc::new(Recorder::default());
    engine.register_handler_arc("linked", recorder.clone());
    let mut wf = Workflow::builder("replaced");
    wf.add(plain::task().with_handler("linked"));
    let report = engine.run(&wf.build(), RunOptions::new()).unwrap();
    assert!(
        linked_ran(report.run_id()).is_empty(),
        "the link-time handler ran"
    );
    assert_eq!(*recorder.ran.lock().unwrap(), vec!["plain".to_owned()]);
}

/// Two link-time registrations of one name: neither is picked silently.
struct DupA;
struct DupB;

#[async_trait]
impl TaskHandler for DupA {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        task.run(ctx).await
    }
}

#[async_trait]
impl TaskHandler for DupB {
    async fn execute_task(
        &self,
        task: &Task,
        ctx: &ExecutionContext,
    ) -> Result<Value, AttemptError> {
        task.run(ctx).await
    }
}

graflow::register_handler!("dup", || DupA);

mod elsewhere {
    graflow::register_handler!("dup", || super::DupB);
}

#[test]
fn a_name_registered_twice_at_link_time_is_reported_with_both_places() {
    let mut wf = Workflow::builder("dup");
    wf.add(plain::task().with_handler("dup"));
    let wf = wf.build();
    let err = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("handler 'dup' (used by task 'plain') is registered more than once at link time, in handlers and handlers::elsewhere; register the one you want with engine.register_handler(\"dup\", ...)"),
        "{err}"
    );
    // Registering one at run time settles it.
    let report = WorkflowEngine::new()
        .with_handler("dup", DupA)
        .run(&wf, RunOptions::new())
        .unwrap();
    assert_eq!(report.result::<u32>("plain").unwrap(), 20);
}
