//! Writing runs: the event path's records ([`rec`]), turned into rows ([`batch`]), written in
//! one transaction per batch ([`apply`]) by the background writer ([`writer`]), flushed at exit
//! ([`exit`]).

pub(crate) mod apply;
pub(crate) mod batch;
pub(crate) mod exit;
pub(crate) mod rec;
pub(crate) mod writer;
