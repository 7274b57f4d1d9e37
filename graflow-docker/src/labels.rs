//! Labels every container of the handler carries: `graflow.managed=true`, `graflow.run=<run
//! id>`, `graflow.task=<task id>`, `graflow.owner=<uid, user namespace, host, boot id, PID and time
//! namespaces, pid, start time>` (the README's docker section lists the sweep's rules). With
//! them, `docker ps --filter label=graflow.run=<run id>` finds a run's containers, and the sweep
//! finds the leftovers of dead runs.

/// `true` on every container the handler creates: the sweep looks only at these.
pub const MANAGED: &str = "graflow.managed";
/// The id of the run the container serves (`warm` for warm containers, which serve many).
pub const RUN: &str = "graflow.run";
/// The id of the task the container runs (`warm-env-N` for the warm containers of one
/// environment).
pub const TASK: &str = "graflow.task";
/// The process that owns the container, as `;`-separated `key=value` fields: `uid`, `userns`
/// (user namespace inode), `host`, `boot` (boot id), `pidns` and `timens` (namespace inodes),
/// `pid` and `start` (field 22 of `/proc/<pid>/stat`). The sweep removes a running container
/// only when this owner is proven dead.
pub const OWNER: &str = "graflow.owner";
/// Set when `auto_remove = false` asked to keep the container: the sweep never removes it.
pub const KEEP: &str = "graflow.keep";
