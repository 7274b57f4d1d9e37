//! The messages of the protocol. On the wire each message is a *head* (the fields below, with
//! every value replaced by its [`ValueHeader`]) followed by the values' bytes, raw: a value's
//! bytes are encoded once by the sender and decoded once by the receiver.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change of the messages or the framing.
pub const PROTOCOL_VERSION: u32 = 3;

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
    /// [`PROTOCOL_VERSION`] of the sender.
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
    /// Which run of the task this is, from 1 (iterations and gotos run a task again).
    pub cycle: u32,
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
    /// [`PROTOCOL_VERSION`] of the runner.
    pub protocol: u32,
    /// Build id of the runner's program.
    pub build_id: String,
    /// The nonce of the invocation this answers.
    pub nonce: u64,
    /// The output, or why there is none.
    pub result: Result<V, Failure>,
    /// Channel keys the task set (`Some`) or deleted (`None`).
    pub channel_writes: Vec<(String, Option<EncodedValue>)>,
    /// What the task asked of its run (dynamic tasks, iterations, an early end, a
    /// checkpoint), in the order it asked. The engine validates and applies them.
    pub control: Vec<Control>,
    /// How long the task body took in the runner, in nanoseconds.
    pub elapsed_ns: u64,
}

/// A request a task made of its run, sent back with its outcome. `V` is how values travel:
/// [`EncodedValue`] in a message, [`ValueHeader`] in its head (the bytes follow in the payload,
/// after the channel writes').
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Control<V = EncodedValue> {
    /// Add a task to the run, after the asking task (or, with `goto`, instead of its
    /// successors).
    AddTask {
        /// Registry name of the task function.
        function: String,
        /// The new node's id.
        id: String,
        /// Its handler.
        handler: String,
        /// Whether the asking task's successors are skipped.
        goto: bool,
        /// Inputs bound to the new node, by parameter name.
        inputs: Vec<(String, V)>,
        /// The node's other options (configuration, retry, timeout, writes, max cycles), in the
        /// engine's own encoding; opaque to the protocol.
        options: Vec<u8>,
    },
    /// Run the existing task `id` next, instead of the asking task's successors.
    Goto {
        /// The task to run.
        id: String,
    },
    /// Run the asking task again, with these inputs bound, before its successors.
    NextIteration {
        /// Inputs bound for the next run, by parameter name.
        inputs: Vec<(String, V)>,
    },
    /// End the run early as a success: nothing new starts.
    Terminate {
        /// Why.
        message: String,
    },
    /// End the run early as a failure.
    Cancel {
        /// Why.
        message: String,
    },
    /// Write a checkpoint once the asking task completed.
    Checkpoint,
}

impl<V> Control<V> {
    /// The values this request carries, in wire order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        let inputs: &[(String, V)] = match self {
            Control::AddTask { inputs, .. } | Control::NextIteration { inputs } => inputs,
            _ => &[],
        };
        inputs.iter().map(|(_, v)| v)
    }

    /// The same request with each value converted by `f` (in wire order).
    pub fn try_map<W, E>(self, f: &mut impl FnMut(V) -> Result<W, E>) -> Result<Control<W>, E> {
        let mut inputs = |inputs: Vec<(String, V)>| -> Result<Vec<(String, W)>, E> {
            inputs
                .into_iter()
                .map(|(name, v)| Ok((name, f(v)?)))
                .collect()
        };
        Ok(match self {
            Control::AddTask {
                function,
                id,
                handler,
                goto,
                inputs: values,
                options,
            } => Control::AddTask {
                function,
                id,
                handler,
                goto,
                inputs: inputs(values)?,
                options,
            },
            Control::Goto { id } => Control::Goto { id },
            Control::NextIteration { inputs: values } => Control::NextIteration {
                inputs: inputs(values)?,
            },
            Control::Terminate { message } => Control::Terminate { message },
            Control::Cancel { message } => Control::Cancel { message },
            Control::Checkpoint => Control::Checkpoint,
        })
    }
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
    pub cycle: u32,
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
    pub control: Vec<Control<ValueHeader>>,
    pub elapsed_ns: u64,
}
