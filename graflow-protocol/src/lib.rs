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
//! | [`frame`] | framing: writing and reading frames, the [`READY`] marker |
//! | [`decoder`] | [`FrameDecoder`]: where a frame ends on a stream, I/O-free, bounded by [`Limits`] |
//! | [`limits`] | [`Limits`]: how large a frame, a head or a log line may be; bounded decoding |
//! | [`build_id`] | the GNU build id of an executable |
//! | [`text`] | cutting a peer's text to a byte budget on a character boundary: [`truncate_utf8`] |
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
pub mod limits;
pub mod message;
pub mod text;

pub use decoder::{FrameDecoder, Step};
pub use error::ProtocolError;
pub use frame::{Expected, INVOCATION_TAG, InvocationFrame, OUTCOME_TAG, READY, read_outcome};
pub use limits::Limits;
pub use message::{Control, EncodedValue, Failure, Invocation, Outcome, ValueHeader};
pub use text::truncate_utf8;

/// Bumped on any incompatible change of the messages or the framing.
pub const PROTOCOL_VERSION: u32 = 3;

/// The environment variable that makes a process started from a graflow program a runner. The
/// runner removes it from its own environment before the task runs, so that programs the task
/// starts are not runners.
pub const RUNNER_ENV: &str = "GRAFLOW_RUNNER";

/// Names the process that started a runner, so that only that runner acts as one (the
/// programs its task starts inherit [`RUNNER_ENV`] too): the starting process's pid (a runner
/// answers only when its parent has that pid), or `container` (a runner answers only as the
/// container's first process, or the first under its init). Absent: any process with
/// [`RUNNER_ENV`] is a runner.
pub const RUNNER_PARENT_ENV: &str = "GRAFLOW_RUNNER_PARENT";

/// The value of [`RUNNER_ENV`] that starts a *warm* runner: it answers invocations one after
/// another, each outcome right after its invocation, until its input ends (`PROTOCOL.md` §9).
/// Any other value starts a runner that answers exactly one invocation.
pub const SERVE_MODE: &str = "serve";

/// What a warm runner writes on its log stream when a task's output ends, before its outcome,
/// followed by the invocation's nonce in 16 lowercase hex digits and a newline: the host
/// attributes the lines before it to that task (`PROTOCOL.md` §9).
pub const TASK_END_MARKER: &str = "GFEND3 ";
