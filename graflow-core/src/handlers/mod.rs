//! The handlers that ship with the core: one file each.

mod direct;
mod process;

pub use direct::DirectHandler;
pub use process::ProcessHandler;

/// How the "process" and "docker" handlers pool warm runners.
pub use crate::remote::PoolOptions;
