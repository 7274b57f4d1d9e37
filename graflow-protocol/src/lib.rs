//! The graflow runner protocol: how one task invocation travels from an engine to a *runner* (a
//! process of the same program: a child process, the program inside a container, a remote
//! worker) and how its outcome comes back.
//!
//! This crate is a leaf: it knows nothing of tasks, workflows or handlers, only of the bytes on
//! the wire. The normative description, precise enough to write a runner in another language,
//! is `PROTOCOL.md` in this crate's folder; this documentation summarises it.
//!
//! | module | what |
//! |---|---|
//! | [`message`] | the messages: [`Invocation`], [`Outcome`], [`Failure`], [`EncodedValue`] |
//! | [`header`] | a frame's header and tags, the [`READY`] marker, its lengths checked against [`Limits`] |
//! | [`decoder`] | [`FrameDecoder`]: where a frame ends on a stream, I/O-free, bounded by [`Limits`] |
//! | [`frame`] | framing: writing and reading invocation and outcome frames |
//! | [`limits`] | [`Limits`]: how large a frame, a head or a log line may be; bounded decoding |
//! | [`build_id`] | the GNU build id of an executable |
//! | [`text`] | cutting a peer's text to a byte budget on a character boundary: [`truncate_utf8`] |
//! | [`runner`] | how a process is started as a runner: [`RUNNER_ENV`], serve mode, the task-end marker |
//! | [`error`] | [`ProtocolError`] |
//!
//! Everything a runner sends is treated as hostile input: every length is checked against
//! [`Limits`] before anything is allocated, decoding is bounded, and an outcome counts only when
//! it echoes the nonce of the invocation it answers.

// Every public item is documented; `pub` means reachable from outside the crate.
#![warn(unreachable_pub, missing_docs)]

pub mod build_id;
pub mod codec;
pub mod decoder;
pub mod error;
pub mod frame;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod limits;
pub mod message;
pub mod runner;
pub mod text;

pub use decoder::{FrameDecoder, Step};
pub use error::ProtocolError;
pub use frame::{AskFrame, Expected, InvocationFrame, ReplyFrame, read_outcome};
pub use header::{ASK_TAG, HEADER_LEN, INVOCATION_TAG, OUTCOME_TAG, READY, REPLY_TAG};
pub use limits::Limits;
pub use message::{
    Control, EncodedValue, Failure, Invocation, Outcome, PROTOCOL_VERSION, ValueHeader,
};
pub use runner::{RUNNER_ENV, RUNNER_PARENT_ENV, SERVE_MODE, TASK_END_MARKER};
pub use text::truncate_utf8;
