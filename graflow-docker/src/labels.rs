//! Labels every container of the handler carries: `graflow.managed=true`, `graflow.run=<run
//! id>`, `graflow.task=<task id>`, `graflow.owner=<uid, user namespace, host, boot id, PID and time
//! namespaces, pid, start time>` (the README's docker section lists the sweep's rules).

/// Label keys.
pub const MANAGED: &str = "graflow.managed";
/// The run id.
pub const RUN: &str = "graflow.run";
/// The task id.
pub const TASK: &str = "graflow.task";
/// The process that owns the container, as `;`-separated `key=value` fields: `uid`, `userns`
/// (user namespace inode), `host`, `boot` (boot id), `pidns` and `timens` (namespace inodes),
/// `pid` and `start` (field 22 of `/proc/<pid>/stat`).
pub const OWNER: &str = "graflow.owner";
/// Set when `auto_remove = false` asked to keep the container.
pub const KEEP: &str = "graflow.keep";
