//! The handlers that ship with the core: one file each.

mod direct;
mod process;

pub use direct::DirectHandler;
pub use process::ProcessHandler;
