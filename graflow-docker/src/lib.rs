//! The "docker" execution handler of graflow.
//!
//! This crate is linked by the facade's default `docker` feature. The handler itself (bollard,
//! the runner protocol, cleanup) is not written yet: until it is, a task whose handler is
//! "docker" fails validation with the list of registered handlers, and a developer can run it
//! locally with `engine.register_handler("docker", graflow::DirectHandler)`.
