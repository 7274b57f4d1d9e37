//! The handlers that ship with the core: one file each.

mod direct;

pub use direct::DirectHandler;
