//! Reading runs back: the [`model`] readers get, the [`query`]s that make it, and the
//! [`liveness`] judgement that tells a killed run from a running one.

pub(crate) mod liveness;
pub(crate) mod model;
pub(crate) mod query;
