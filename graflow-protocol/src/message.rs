//! The messages of the protocol. On the wire each message is a *head* (the fields below, with
//! every value replaced by its [`ValueHeader`]) followed by the values' bytes, raw: a value's
//! bytes are encoded once by the sender and decoded once by the receiver.

use serde::{Deserialize, Serialize};

/// A value in its wire form: its type's name and its bincode-2 (standard configuration, serde)
/// encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedValue {
    /// `std::any::type_name` of the encoded type (the same program on both sides).
    pub type_name: String,
    /// The encoding.
    pub bytes: Vec<u8>,
}

impl EncodedValue {
    /// The header that stands for this value in a message head.
    pub fn header(&self) -> ValueHeader {
        ValueHeader {
            type_name: self.type_name.clone(),
            len: self.bytes.len() as u64,
        }
    }
}

/// What stands for a value in a message head: its type's name and how many bytes of the frame's
/// payload it takes. The payload is the values' bytes, one after the other, in the order their
/// headers appear in the head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueHeader {
    /// `std::any::type_name` of the value's type.
    pub type_name: String,
    /// The length of its encoding.
    pub len: u64,
}

/// One attempt of one task, as sent to a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) of the sender.
    pub protocol: u32,
    /// Build id of the sender's program; the runner must be the same build.
    pub build_id: String,
    /// A number the sender chose for this attempt; the outcome must echo it.
    pub nonce: u64,
    /// Registry name of the task function (`module::path::function`).
    pub task: String,
    /// The node's id in its workflow.
    pub task_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The run's id.
    pub run_id: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Every input parameter, resolved by the sender, by parameter name.
    pub inputs: Vec<(String, EncodedValue)>,
    /// The run's channel as it was when the attempt started.
    pub channel: Vec<(String, EncodedValue)>,
    /// The direct upstream tasks' results, for a task that takes a `&TaskContext`; else empty.
    pub upstream: Vec<(String, EncodedValue)>,
}

/// What a runner sends back. `V` is the result value: [`EncodedValue`] as sent, or whatever the
/// receiver decoded it into while reading (see [`crate::frame::read_outcome`]).
#[derive(Debug)]
pub struct Outcome<V = EncodedValue> {
    /// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) of the runner.
    pub protocol: u32,
    /// Build id of the runner's program.
    pub build_id: String,
    /// The nonce of the invocation this answers.
    pub nonce: u64,
    /// The output, or why there is none.
    pub result: Result<V, Failure>,
    /// Channel keys the task set (`Some`) or deleted (`None`).
    pub channel_writes: Vec<(String, Option<EncodedValue>)>,
    /// How long the task body took in the runner, in nanoseconds.
    pub elapsed_ns: u64,
}

/// Why a runner produced no output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// The task returned an error: its message and the messages of its `source()` chain,
    /// outermost first.
    Returned {
        /// Each error of the chain, outermost first.
        chain: Vec<String>,
    },
    /// The task panicked.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// Any other error while running the task.
    Other {
        /// What went wrong.
        message: String,
    },
    /// The runner refused the invocation (protocol or build mismatch, unknown task, bad frame).
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The head of an invocation frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InvocationHead {
    pub protocol: u32,
    pub build_id: String,
    pub nonce: u64,
    pub task: String,
    pub task_id: String,
    pub workflow: String,
    pub run_id: String,
    pub attempt: u32,
    pub inputs: Vec<(String, ValueHeader)>,
    pub channel: Vec<(String, ValueHeader)>,
    pub upstream: Vec<(String, ValueHeader)>,
}

/// The head of an outcome frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OutcomeHead {
    pub protocol: u32,
    pub build_id: String,
    pub nonce: u64,
    pub result: Result<ValueHeader, Failure>,
    pub channel_writes: Vec<(String, Option<ValueHeader>)>,
    pub elapsed_ns: u64,
}
