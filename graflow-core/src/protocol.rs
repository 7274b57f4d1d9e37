//! The runner protocol: how one task invocation travels to another process running this same
//! binary (a child process, a container, a remote worker) and how its outcome comes back.
//!
//! The runner (see [`crate::init`]) reads one [`Invocation`] frame from its stdin and writes
//! [`READY`], then one [`Outcome`] frame, on its *original* stdout; before running the task it
//! points file descriptor 1 at stderr, so whatever the task prints can never corrupt the
//! protocol. Payloads travel only in these frames (bincode 2 over serde), never in argv or the
//! environment; the environment carries only [`RUNNER_ENV`], the marker that makes a process a
//! runner.
//!
//! A frame is an 8-byte tag, a little-endian `u64` length and the encoded message.

use std::io::Read;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::context::ExecutionContext;
use crate::error::{BoxError, Chain, Error, Result};
use crate::task::Task;
use crate::value::{EncodedValue, Value, decode, encode};

/// Bumped on any incompatible change of the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// The environment variable that makes a process started from this binary a task runner.
pub const RUNNER_ENV: &str = "GRAFLOW_RUNNER";

/// Written by the runner on its protocol stream as soon as it starts.
pub const READY: &[u8; 8] = b"GFREADY1";
const INVOCATION_TAG: &[u8; 8] = b"GFINVOK1";
const OUTCOME_TAG: &[u8; 8] = b"GFOUTCM1";
/// Frames larger than this are refused (a corrupt length, not a real payload).
const MAX_FRAME: u64 = 16 << 30;

/// One attempt of one task, as sent to a runner.
#[derive(Debug, Serialize, Deserialize)]
pub struct Invocation {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// [`build_id`] of the sender's binary; the runner must be the same build.
    pub build_id: String,
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
    /// The direct upstream tasks' results, for a task that takes a `&TaskContext` (its
    /// `upstream()` and `result()`); empty otherwise.
    pub upstream: Vec<(String, EncodedValue)>,
}

/// What a runner sends back.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// [`PROTOCOL_VERSION`] of the runner.
    pub protocol: u32,
    /// [`build_id`] of the runner's binary.
    pub build_id: String,
    /// The encoded output, or why there is none.
    pub result: std::result::Result<EncodedValue, Failure>,
    /// Channel keys the task set (`Some`) or deleted (`None`).
    pub channel_writes: Vec<(String, Option<EncodedValue>)>,
    /// How long the task body took in the runner, in nanoseconds.
    pub elapsed_ns: u64,
}

/// Why a runner produced no output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Failure {
    /// The task returned an error: its message and the messages of its `source()` chain.
    Returned {
        /// Each error of the chain, outermost first.
        chain: Vec<String>,
    },
    /// The task panicked.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// Any other error while running the task (its display, with causes).
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

/// An error that crossed a process boundary: its message and the chain of its causes.
#[derive(Debug)]
pub struct RemoteError {
    message: String,
    source: Option<Box<RemoteError>>,
}

impl RemoteError {
    fn from_chain(chain: &[String]) -> Self {
        let mut error: Option<RemoteError> = None;
        for message in chain.iter().rev() {
            error = Some(RemoteError {
                message: message.clone(),
                source: error.map(Box::new),
            });
        }
        error.unwrap_or(RemoteError {
            message: "an error without a message".to_owned(),
            source: None,
        })
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn frame(tag: &[u8; 8], message: &impl Serialize) -> std::result::Result<Vec<u8>, String> {
    let body = encode(message)?;
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads one frame with `tag` from `reader`.
pub(crate) fn read_frame<T: serde::de::DeserializeOwned>(
    reader: &mut impl Read,
    tag: &[u8; 8],
) -> std::result::Result<T, String> {
    let mut header = [0u8; 16];
    reader
        .read_exact(&mut header)
        .map_err(|e| format!("could not read the frame header: {e}"))?;
    parse_header(&header, tag).and_then(|len| {
        let mut body = vec![0u8; len];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("the frame ended early: {e}"))?;
        decode(&body)
    })
}

fn parse_header(header: &[u8], tag: &[u8; 8]) -> std::result::Result<usize, String> {
    if header.len() < 16 || &header[..8] != tag {
        return Err(format!(
            "expected a {} frame, found {:?}",
            String::from_utf8_lossy(tag),
            String::from_utf8_lossy(&header[..header.len().min(8)])
        ));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[8..16]);
    let len = u64::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes refused (limit {MAX_FRAME})"));
    }
    usize::try_from(len).map_err(|_| format!("frame of {len} bytes does not fit in memory"))
}

impl Invocation {
    /// The invocation of `task` for the attempt `ctx` stands for: its inputs resolved and
    /// encoded, and a snapshot of the run's channel.
    pub fn for_task(task: &Task, ctx: &ExecutionContext) -> Result<Invocation> {
        let mut inputs = Vec::with_capacity(task.def.params.len());
        for (index, param) in task.def.params.iter().enumerate() {
            let value = ctx.input_value(task, index)?;
            inputs.push((param.name.to_owned(), value.encode()?));
        }
        Ok(Invocation {
            protocol: PROTOCOL_VERSION,
            build_id: build_id().to_owned(),
            task: task.name().to_owned(),
            task_id: task.id().to_owned(),
            workflow: ctx.workflow_name().to_owned(),
            run_id: ctx.run_id().to_owned(),
            attempt: ctx.attempt(),
            inputs,
            channel: encode_channel(ctx.channel())?,
            upstream: if task.def.context {
                crate::context::TaskContext::upstream_values(ctx)
                    .into_iter()
                    .map(|(id, value)| Ok((id, value.encode()?)))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            },
        })
    }

    /// The frame to write on the runner's stdin.
    pub fn to_frame(&self) -> Result<Vec<u8>> {
        frame(INVOCATION_TAG, self).map_err(|message| Error::Codec {
            type_name: "graflow::protocol::Invocation".to_owned(),
            message,
        })
    }
}

pub(crate) fn encode_channel(channel: &Channel) -> Result<Vec<(String, EncodedValue)>> {
    channel
        .entries()
        .into_iter()
        .map(|(key, value)| Ok((key, value.encode()?)))
        .collect()
}

impl Outcome {
    pub(crate) fn to_frame(&self) -> std::result::Result<Vec<u8>, String> {
        frame(OUTCOME_TAG, self)
    }

    /// Applies the outcome to the run: stores the result and merges the channel writes, or
    /// turns the failure into the error of this attempt. `handler` names the handler in errors.
    pub fn apply(self, task: &Task, ctx: &ExecutionContext, handler: &str) -> Result<()> {
        let id = task.id();
        if self.protocol != PROTOCOL_VERSION {
            return Err(Error::handler(
                id,
                handler,
                format!(
                    "the runner speaks protocol version {} but this program speaks {PROTOCOL_VERSION}; run the same build on both sides",
                    self.protocol
                ),
            ));
        }
        if self.build_id != build_id() {
            return Err(build_mismatch(id, handler, &self.build_id));
        }
        match self.result {
            Ok(encoded) => {
                let value = (task.def.decode)(&encoded.bytes).map_err(|message| {
                    Error::handler(
                        id,
                        handler,
                        format!(
                            "could not decode the task's result (`{}`): {message}",
                            encoded.type_name
                        ),
                    )
                })?;
                for (key, write) in self.channel_writes {
                    match write {
                        Some(encoded) => ctx.channel().set_value(key, Value::from_encoded(encoded)),
                        None => {
                            ctx.channel().delete(&key);
                        }
                    }
                }
                ctx.set_result(id, value)
            }
            Err(Failure::Returned { chain }) => Err(Error::Task {
                task: id.to_owned(),
                source: Box::new(RemoteError::from_chain(&chain)) as BoxError,
            }),
            Err(Failure::Panicked { message }) => Err(Error::Panicked {
                task: id.to_owned(),
                message,
            }),
            Err(Failure::Other { message }) => Err(Error::handler(id, handler, message)),
            Err(Failure::Rejected { reason }) => Err(Error::handler(
                id,
                handler,
                format!("the runner refused the task: {reason}"),
            )),
        }
    }

    /// The outcome of running a task in this process: what a runner sends back.
    pub(crate) fn from_result(
        result: Result<Value>,
        channel_writes: Vec<(String, Option<EncodedValue>)>,
        elapsed_ns: u64,
    ) -> Outcome {
        let result = match result.and_then(|value| value.encode()) {
            Ok(encoded) => Ok(encoded),
            Err(Error::Task { source, .. }) => {
                let mut chain = vec![source.to_string()];
                let mut next = source.source();
                while let Some(cause) = next {
                    chain.push(cause.to_string());
                    next = cause.source();
                }
                Err(Failure::Returned { chain })
            }
            Err(Error::Panicked { message, .. }) => Err(Failure::Panicked { message }),
            Err(other) => Err(Failure::Other {
                message: Chain(&other).to_string(),
            }),
        };
        Outcome {
            protocol: PROTOCOL_VERSION,
            build_id: build_id().to_owned(),
            result,
            channel_writes,
            elapsed_ns,
        }
    }

    pub(crate) fn rejected(reason: String) -> Outcome {
        Outcome {
            protocol: PROTOCOL_VERSION,
            build_id: build_id().to_owned(),
            result: Err(Failure::Rejected { reason }),
            channel_writes: Vec::new(),
            elapsed_ns: 0,
        }
    }
}

pub(crate) fn build_mismatch(task: &str, handler: &str, theirs: &str) -> Error {
    Error::handler(
        task,
        handler,
        format!(
            "the runner is another build of this program (build id {theirs}, ours {}); rebuild, and give the handler the binary that is running",
            build_id()
        ),
    )
}

/// What a runner's protocol stream (its stdout) held: the bytes printed before the runner
/// started (passed on as output), whether it announced itself, and the outcome frame.
#[derive(Debug, Default)]
pub struct OutputDecoder {
    ready: bool,
    /// Before READY: the tail that may hold a partial READY tag. After: the outcome frame.
    buffer: Vec<u8>,
}

impl OutputDecoder {
    /// A decoder that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes read from the stream; returns bytes that were printed before the runner
    /// started (e.g. a test harness's banner), to be logged.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.ready {
            self.buffer.extend_from_slice(bytes);
            return Vec::new();
        }
        self.buffer.extend_from_slice(bytes);
        if let Some(at) = self.buffer.windows(READY.len()).position(|w| w == READY) {
            let before: Vec<u8> = self.buffer[..at].to_vec();
            self.buffer.drain(..at + READY.len());
            self.ready = true;
            return before;
        }
        // Keep only what may be the start of a READY tag.
        let keep = READY.len() - 1;
        if self.buffer.len() > keep {
            let cut = self.buffer.len() - keep;
            self.buffer.drain(..cut).collect()
        } else {
            Vec::new()
        }
    }

    /// Whether the runner announced itself.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The outcome, once the stream ended. `None` if the runner never started or sent no
    /// complete frame (it died); `Some(Err)` if the frame is corrupt.
    pub fn finish(self) -> Option<std::result::Result<Outcome, String>> {
        if !self.ready || self.buffer.len() < 16 {
            return None;
        }
        let len = match parse_header(&self.buffer[..16], OUTCOME_TAG) {
            Ok(len) => len,
            Err(e) => return Some(Err(e)),
        };
        if self.buffer.len() < 16 + len {
            return None;
        }
        Some(decode(&self.buffer[16..16 + len]))
    }
}

/// Where a runner's output lines are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// `graflow::handlers`
    Handlers,
    /// `graflow::docker`
    Docker,
}

/// Reassembles a runner's output (arriving in arbitrary chunks) into lines, logs each line
/// prefixed with the task id, and keeps the last lines for error messages.
#[derive(Debug)]
pub struct LogLines {
    task: String,
    target: LogTarget,
    partial: Vec<u8>,
    tail: std::collections::VecDeque<String>,
}

impl LogLines {
    const TAIL: usize = 20;

    /// Lines of task `task`, logged to `target`.
    pub fn new(task: &str, target: LogTarget) -> Self {
        LogLines {
            task: task.to_owned(),
            target,
            partial: Vec::new(),
            tail: std::collections::VecDeque::new(),
        }
    }

    /// Feeds a chunk; every complete line is logged.
    pub fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
    }

    /// Logs what is left of an unterminated last line.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line);
        }
    }

    /// The last lines seen (at most 20), oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// The last lines, indented, for an error message ("" when there are none).
    pub fn tail_text(&self) -> String {
        if self.tail.is_empty() {
            return String::new();
        }
        let lines: Vec<String> = self.tail.iter().map(|l| format!("    {l}")).collect();
        format!("; its last output lines:\n{}", lines.join("\n"))
    }

    fn emit(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        match self.target {
            LogTarget::Handlers => {
                tracing::info!(target: "graflow::handlers", "[{}] {}", self.task, line)
            }
            LogTarget::Docker => {
                tracing::info!(target: "graflow::docker", "[{}] {}", self.task, line)
            }
        }
        if self.tail.len() == Self::TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }
}

/// An id of this program's build: the GNU build id of the executable when it has one (the
/// linker's hash of the whole binary), else a hash of its task registry (names and types).
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        if let Some(id) = std::env::current_exe()
            .ok()
            .and_then(|exe| gnu_build_id(&exe))
        {
            return id.iter().map(|b| format!("{b:02x}")).collect();
        }
        // FNV-1a over the registry: stable across processes of the same binary.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for def in crate::task::tasks() {
            let mut feed = |s: &str| {
                for b in s.bytes().chain([0]) {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                }
            };
            feed(def.name);
            feed(def.output.name());
            for param in def.params {
                feed(param.name);
                feed(param.ty.name());
            }
        }
        format!("registry-{hash:016x}")
    })
}

/// The `NT_GNU_BUILD_ID` note of a 64-bit little-endian ELF file.
fn gnu_build_id(path: &std::path::Path) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let phoff = u64_at(&header, 32);
    let phentsize = usize::from(u16_at(&header, 54));
    let phnum = usize::from(u16_at(&header, 56));
    if phentsize < 56 || phnum > 512 {
        return None;
    }
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(phoff)).ok()?;
    let mut table = vec![0u8; phentsize * phnum];
    file.read_exact(&mut table).ok()?;
    for entry in table.chunks_exact(phentsize) {
        const PT_NOTE: u32 = 4;
        if u32_at(entry, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(entry, 8), u64_at(entry, 32));
        if size > 1 << 16 {
            continue;
        }
        file.seek(std::io::SeekFrom::Start(offset)).ok()?;
        let mut notes = vec![0u8; size as usize];
        file.read_exact(&mut notes).ok()?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32_at(&notes, at) as usize;
            let descsz = u32_at(&notes, at + 4) as usize;
            let kind = u32_at(&notes, at + 8);
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if next > notes.len() {
                break;
            }
            const NT_GNU_BUILD_ID: u32 = 3;
            if kind == NT_GNU_BUILD_ID && &notes[name_at..name_at + namesz] == b"GNU\0" {
                return Some(notes[desc_at..desc_at + descsz].to_vec());
            }
            at = next;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoder_passes_on_what_precedes_ready_and_reads_the_frame() {
        let outcome = Outcome::rejected("because".to_owned());
        let mut stream = b"running 1 test\n".to_vec();
        stream.extend_from_slice(READY);
        stream.extend_from_slice(&outcome.to_frame().unwrap());
        let mut decoder = OutputDecoder::new();
        let mut passed = Vec::new();
        // Feed in awkward pieces, splitting the READY tag.
        for chunk in stream.chunks(5) {
            passed.extend(decoder.push(chunk));
        }
        assert!(decoder.is_ready());
        assert_eq!(passed, b"running 1 test\n");
        let back = decoder.finish().unwrap().unwrap();
        assert!(matches!(back.result, Err(Failure::Rejected { reason }) if reason == "because"));
    }

    #[test]
    fn no_ready_or_a_cut_frame_is_no_outcome() {
        let mut decoder = OutputDecoder::new();
        decoder.push(b"hello world, no runner here");
        assert!(!decoder.is_ready());
        assert!(decoder.finish().is_none());
        let mut decoder = OutputDecoder::new();
        let frame = Outcome::rejected("x".to_owned()).to_frame().unwrap();
        decoder.push(READY);
        decoder.push(&frame[..frame.len() - 1]);
        assert!(decoder.finish().is_none());
    }

    #[test]
    fn this_binary_has_a_build_id() {
        assert!(build_id().len() >= 16, "{}", build_id());
        assert_eq!(build_id(), build_id());
    }
}
