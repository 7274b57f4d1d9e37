//! The two kinds of stream entries: a *job* (one attempt's invocation, on a queue's stream) and
//! a *reply* (its outcome, on the engine's reply stream). Both are read as hostile input: every
//! field is checked for presence, type and size before use.
//!
//! | file | what |
//! |---|---|
//! | `fields.rs` | the entry format's version, field limits and checked field readers |
//! | `job.rs` | [`Job`]: an attempt's invocation, on a queue's stream |
//! | `reply.rs` | [`Reply`]: an attempt's outcome, on the engine's reply stream |
//! | `raw.rs` | [`RawEntry`]: entries as a stream read (or a claim) returns them |

mod fields;
mod job;
mod raw;
mod reply;

pub(crate) use job::Job;
pub(crate) use raw::{RawEntry, claim_reply, range_reply, read_reply};
pub(crate) use reply::{Reply, ReplyKind};
