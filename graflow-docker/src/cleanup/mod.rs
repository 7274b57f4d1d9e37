//! Container cleanup: every container is labelled with its run, task and owning process, and
//! removed however its task ends. Removal that must happen outside the task's future (the
//! future was dropped: timeout, cancellation, Ctrl-C handled by dropping the run) runs on
//! graflow's background runtime with its own deadline, and the process waits for it at exit.
//!
//! When a handler first connects it sweeps leftovers, and only those that are safe to remove:
//! a container of the same user (uid and user namespace; root too is held to its own) that
//! either has finished (exited or dead for over a minute, `sweep::GRACE`, or created and never
//! started for as long) or whose owner is *proven* dead. Proven dead means: the owner ran
//! under this boot in this PID namespace and its pid is gone, a zombie, or another process
//! (another start time). Another boot id proves nothing (hostnames are not unique across
//! machines sharing a daemon); a rebooted owner's container has exited and is swept as
//! finished. An owner in another PID namespace, on another machine, or with a label that does
//! not parse is not ours to judge: its running containers are left alone. `graflow.keep` is
//! never swept.
//!
//! `owner` is who owns a container and when that owner is proven dead, `removal` removes a
//! container however its task ends, `sweep` removes the leftovers of dead runs.

mod owner;
mod removal;
mod sweep;

pub(crate) use owner::owner;
pub(crate) use removal::Guard;
pub(crate) use sweep::sweep;
