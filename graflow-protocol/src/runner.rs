//! How a process is started as a runner, and how a warm runner marks where a task's output
//! ends: the environment contract between an engine and the processes it starts.

/// The environment variable that makes a process started from a graflow program a runner. The
/// runner removes it from its own environment before the task runs, so that programs the task
/// starts are not runners.
pub const RUNNER_ENV: &str = "GRAFLOW_RUNNER";

/// Names the process that started a runner, so that only that runner acts as one (the
/// programs its task starts inherit [`RUNNER_ENV`] too): the starting process's pid (a runner
/// answers only when its parent has that pid), or `container` (a runner answers only as the
/// container's first process, or the first under its init). Absent: any process with
/// [`RUNNER_ENV`] is a runner.
pub const RUNNER_PARENT_ENV: &str = "GRAFLOW_RUNNER_PARENT";

/// The value of [`RUNNER_ENV`] that starts a *warm* runner: it answers invocations one after
/// another, each outcome right after its invocation, until its input ends (`PROTOCOL.md` §9).
/// Any other value starts a runner that answers exactly one invocation.
pub const SERVE_MODE: &str = "serve";

/// What a warm runner writes on its log stream when a task's output ends, before its outcome,
/// followed by the invocation's nonce in 16 lowercase hex digits and a newline: the host
/// attributes the lines before it to that task (`PROTOCOL.md` §9).
pub const TASK_END_MARKER: &str = "GFEND3 ";
