//! The host side of one remote attempt, shared by every handler that runs a task outside this
//! process ("process", "docker", remote workers).
//!
//! A handler starts a runner however its transport does (a child process, a container) and
//! hands the driver the runner's input and its output as a stream of [`Chunk`]s. The driver
//! writes the invocation, reads the answer as untrusted input, logs the runner's output lines,
//! enforces the start-up and attempt deadlines, and returns what happened ([`Driven`]). The
//! handler keeps only its transport and its own diagnosis (exit codes, signals, OOM, a C library
//! mismatch).
//!
//! The answer is decoded on a blocking thread as it arrives: the result's bytes go straight into
//! the task's output type (decoded once, never buffered whole), every length is checked against
//! [`Limits`] first, the outcome must echo this attempt's nonce, and any byte after the outcome
//! is an error. Memory use is bounded whatever the runner sends.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use graflow_protocol::frame::Expected;
use graflow_protocol::{ASK_TAG, AskFrame, Limits, Outcome, ProtocolError, READY, ReplyFrame};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::definition::{AttemptError, HandlerFailure};
use crate::feedback::{FeedbackError, FeedbackRequest};
use crate::graph::Task;
use crate::run::ExecutionContext;
use crate::value::Value;

use super::attempt::{self, invocation};
use super::build_id;
use super::logs::{LogLines, LogTarget};

/// A piece of a runner's output.
#[derive(Debug)]
#[non_exhaustive]
pub enum Chunk {
    /// Bytes of its protocol stream (its original stdout).
    Stdout(Vec<u8>),
    /// Bytes of its log stream (stderr, where everything the task prints goes).
    Stderr(Vec<u8>),
    /// The protocol stream ended (for transports that see it end before the log stream does).
    StdoutClosed,
}

/// How one attempt ended, for the handler to diagnose.
#[derive(Debug)]
#[non_exhaustive]
pub enum Ended {
    /// The runner answered: the outcome was applied (`Ok`), or the task's own error, panic or
    /// rejection (`Err`).
    Answered(Result<Value, AttemptError>),
    /// The output ended before the runner announced itself: it is not a runner (no `init()`),
    /// or it could not start.
    NotStarted,
    /// The runner announced itself but its output ended before a complete outcome: it died.
    Died {
        /// Where the answer stopped, when it had begun.
        detail: Option<String>,
    },
    /// The runner sent bytes that are not a valid outcome for this attempt (hostile or corrupt
    /// output); the handler must stop it.
    Refused(ProtocolError),
    /// The runner did not announce itself within the start-up timeout.
    StartupTimeout(Duration),
    /// The attempt ran longer than its deadline.
    AttemptTimeout(Duration),
}

/// What the driver saw.
#[derive(Debug)]
#[non_exhaustive]
pub struct Driven {
    /// How the attempt ended.
    pub ended: Ended,
    /// The runner's log lines (the last ones, for error messages).
    pub logs: LogLines,
    /// Writing the invocation failed (the runner closed its input early).
    pub input_error: Option<std::io::Error>,
}

impl Driven {
    /// Whether the runner announced itself.
    pub fn started(&self) -> bool {
        !matches!(self.ended, Ended::NotStarted | Ended::StartupTimeout(_))
    }

    /// The attempt's verdict: the result its runner answered, or the one diagnosis every
    /// out-of-process handler gives of a runner that did not answer. `runner` names it as a
    /// message's subject ("the task's process", "container graflow-..."); `exit` says how it
    /// ended ("exit code 1", "signal 9 (SIGKILL)"), when known. A runner that ended without
    /// announcing itself (a program without `init()`, or one killed while it started), died, or
    /// whose answer was refused is [`HandlerFailure::RunnerLost`]; one slow to start or past its
    /// deadline is [`HandlerFailure::Transient`]. Both are retried per the task's policy.
    pub fn verdict(
        self,
        task: &Task,
        runner: &str,
        exit: Option<&str>,
    ) -> Result<Value, AttemptError> {
        let fail = |kind: HandlerFailure, message: String| {
            AttemptError::handler_kind(task.id(), task.handler(), kind, message)
        };
        let tail = self.logs.tail_text();
        let exit = exit.unwrap_or("no exit status");
        match self.ended {
            Ended::Answered(result) => result,
            Ended::StartupTimeout(limit) => Err(fail(
                HandlerFailure::Transient,
                format!(
                    "{runner} did not answer as a task runner within {limit:?}: call graflow::init() at the start of main or use #[graflow::main]{tail}"
                ),
            )),
            // A program without `init()`, or one that died while starting (a signal, an OOM kill,
            // a container stopped): which one cannot be told from here, so it may be retried.
            Ended::NotStarted => Err(fail(
                HandlerFailure::RunnerLost,
                format!(
                    "{runner} ended ({exit}) without answering as a task runner: call graflow::init() at the start of main or use #[graflow::main]{tail}"
                ),
            )),
            Ended::Died { detail } => Err(fail(
                HandlerFailure::RunnerLost,
                format!(
                    "{runner} died ({exit}) before reporting a result{}{}{tail}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default(),
                    if self.input_error.is_some() {
                        " (its input closed early)"
                    } else {
                        ""
                    },
                ),
            )),
            Ended::Refused(error) => Err(fail(
                HandlerFailure::RunnerLost,
                format!("the runner's answer was refused and {runner} stopped: {error}{tail}"),
            )),
            Ended::AttemptTimeout(limit) => Err(fail(
                HandlerFailure::Transient,
                format!("{runner} ran longer than {limit:?} and was stopped{tail}"),
            )),
        }
    }
}

/// One attempt of one task in a runner.
#[derive(Clone, Debug)]
pub struct RemoteAttempt<'a> {
    task: &'a Task,
    ctx: &'a ExecutionContext,
    limits: Limits,
    startup_timeout: Duration,
    attempt_timeout: Option<Duration>,
    target: LogTarget,
}

impl<'a> RemoteAttempt<'a> {
    /// The attempt `ctx` stands for, of `task`; 30 s start-up timeout, no attempt deadline (the
    /// engine's task timeout still applies), default [`Limits`], logs to `graflow::handlers`.
    pub fn new(task: &'a Task, ctx: &'a ExecutionContext) -> Self {
        RemoteAttempt {
            task,
            ctx,
            limits: Limits::default(),
            startup_timeout: Duration::from_secs(30),
            attempt_timeout: None,
            target: LogTarget::HANDLERS,
        }
    }

    /// Bounds on what the runner may send.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long the runner may take to announce itself.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long the whole attempt may take.
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Where the runner's output lines are logged.
    pub fn log_target(mut self, target: LogTarget) -> Self {
        self.target = target;
        self
    }

    /// Runs the attempt over a started runner's `input` and `output`. Returns when the output
    /// ends, a deadline passes, or the runner's answer is refused (then the handler must stop
    /// the runner). `input` is kept open until then: a runner stops when its input closes.
    pub async fn drive<W, S>(self, mut input: W, output: S) -> Result<Driven, AttemptError>
    where
        W: AsyncWrite + Unpin + Send,
        S: Stream<Item = Chunk> + Unpin + Send,
    {
        let task = self.task;
        let handler = task.handler();
        let invocation = invocation(task, self.ctx)?;
        let nonce = invocation.nonce;
        let frame = invocation.into_frame().map_err(|e| {
            AttemptError::handler_source(task.id(), handler, "could not encode the invocation", e)
                .with_kind(HandlerFailure::InvalidConfig)
        })?;

        let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
        let (ready_tx, mut ready_rx) = oneshot::channel::<()>();
        let limits = self.limits;
        let decode = task.def.decode;
        let output_type = task.def.output.name();
        let banner = LogLines::new(task.id(), self.target, limits.max_log_line).observed(self.ctx);
        // A thread of its own (not the blocking pool, which synchronous task bodies fill): it
        // lives as long as the attempt and only ever waits for the runner's bytes.
        let (decoded_tx, mut decoder) = oneshot::channel::<Decoded>();
        // The runner's questions for a person, as they arrive before its outcome.
        let (asks_tx, mut asks_rx) = mpsc::channel::<AskFrame>(1);
        // Whether a question waits for its reply: a runner asks one at a time (§10).
        let outstanding = Arc::new(AtomicBool::new(false));
        let decoder_outstanding = outstanding.clone();
        std::thread::Builder::new()
            .name("graflow-answer".to_owned())
            .spawn(move || {
                let mut reader = ChannelReader::new(rx);
                let decoded = decode_answer(
                    &mut reader,
                    &limits,
                    nonce,
                    decode,
                    output_type,
                    banner,
                    ToHost {
                        ready: ready_tx,
                        asks: asks_tx,
                        outstanding: decoder_outstanding,
                    },
                );
                let _ = decoded_tx.send(decoded);
            })
            .map_err(|e| {
                AttemptError::handler_source(
                    task.id(),
                    handler,
                    "could not start a thread to read the runner's answer",
                    e,
                )
            })?;

        let mut logs =
            LogLines::new(task.id(), self.target, limits.max_log_line).observed(self.ctx);
        let mut output = output;
        let mut tx = Some(tx);
        let mut ready = false;
        let mut input_error = None;
        let mut written = false;
        // The input carries the invocation, then the replies to the runner's questions.
        let (replies_tx, mut replies_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let write = async {
            for chunk in frame.chunks() {
                input.write_all(chunk).await?;
            }
            input.flush().await?;
            while let Some(reply) = replies_rx.recv().await {
                input.write_all(&reply).await?;
                input.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        tokio::pin!(write);
        let mut asking = FuturesUnordered::new();
        let mut asked = 0usize;
        // While a person is asked, the attempt's clock stops: when it was stopped.
        let mut paused_at: Option<tokio::time::Instant> = None;
        let now = tokio::time::Instant::now();
        let startup_deadline = tokio::time::sleep_until(now + self.startup_timeout);
        tokio::pin!(startup_deadline);
        let mut attempt_deadline = self.attempt_timeout.map(|t| now + t);
        let attempt_sleep =
            tokio::time::sleep_until(attempt_deadline.unwrap_or(now + Duration::from_secs(1)));
        tokio::pin!(attempt_sleep);
        let mut output_done = false;
        let decoded = loop {
            tokio::select! {
                biased;
                result = &mut decoder => {
                    break result.map_err(|_| AttemptError::handler(task.id(), handler, "the thread reading the runner's answer ended without a verdict"))?;
                }
                Ok(()) = &mut ready_rx, if !ready => ready = true,
                result = &mut write, if !written => {
                    written = true;
                    input_error = result.err();
                }
                Some(frame) = asks_rx.recv() => {
                    asked += 1;
                    if asking.is_empty() {
                        paused_at = Some(tokio::time::Instant::now());
                    }
                    asking.push(self.forward(frame, asked));
                }
                Some((key, reply)) = asking.next(), if !asking.is_empty() => {
                    if let Some(at) = paused_at.take_if(|_| asking.is_empty())
                        && let Some(deadline) = attempt_deadline.as_mut()
                    {
                        *deadline += at.elapsed();
                        attempt_sleep.as_mut().reset(*deadline);
                    }
                    outstanding.store(false, Ordering::SeqCst);
                    let reply = serde_json::to_string(&reply).unwrap_or_else(|e| {
                        format!("{{\"Err\":{{\"Unavailable\":{{\"task\":\"\",\"reason\":\"the reply could not be encoded: {e}\"}}}}}}")
                    });
                    let mut bytes = Vec::new();
                    if (ReplyFrame { key, reply }).write_to(&mut bytes).is_ok() {
                        let _ = replies_tx.send(bytes);
                    }
                }
                chunk = output.next(), if !output_done => match chunk {
                    Some(Chunk::Stdout(bytes)) => {
                        if let Some(sender) = &tx
                            && sender.send(bytes).await.is_err()
                        {
                            // The decoder stopped reading: it has its verdict.
                            tx = None;
                        }
                    }
                    Some(Chunk::Stderr(bytes)) => logs.push(&bytes),
                    Some(Chunk::StdoutClosed) => tx = None,
                    None => {
                        output_done = true;
                        tx = None;
                    }
                },
                () = &mut startup_deadline, if !ready => {
                    logs.finish();
                    return Ok(Driven { ended: Ended::StartupTimeout(self.startup_timeout), logs, input_error });
                }
                () = &mut attempt_sleep, if attempt_deadline.is_some() && asking.is_empty() => {
                    logs.finish();
                    let limit = self.attempt_timeout.unwrap_or_default();
                    return Ok(Driven { ended: Ended::AttemptTimeout(limit), logs, input_error });
                }
            }
        };
        // The log stream may still hold the runner's last lines: read on briefly.
        if !output_done {
            let linger = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(linger);
            loop {
                tokio::select! {
                    chunk = output.next() => match chunk {
                        Some(Chunk::Stderr(bytes)) => logs.push(&bytes),
                        Some(_) => {}
                        None => break,
                    },
                    () = &mut linger => break,
                }
            }
        }
        logs.finish();
        let ended = match decoded {
            Decoded::NotReady => Ended::NotStarted,
            Decoded::Died(detail) => Ended::Died { detail },
            Decoded::Refused(error) => Ended::Refused(error),
            Decoded::Answered(outcome) => {
                Ended::Answered(attempt::apply(outcome, task, self.ctx, handler))
            }
        };
        Ok(Driven {
            ended,
            logs,
            input_error,
        })
    }
}

impl RemoteAttempt<'_> {
    /// Asks the engine the runner's question (the `n`th of the attempt); the reply to send
    /// back, under the question's key.
    fn forward(
        &self,
        frame: AskFrame,
        n: usize,
    ) -> impl Future<
        Output = (
            String,
            Result<(String, crate::feedback::FeedbackAnswer), FeedbackError>,
        ),
    > + Send
    + 'static {
        let task = self.task.id().to_owned();
        let AskFrame { key, request } = frame;
        let answer = if n > MAX_ASKS {
            Err(FeedbackError::Invalid {
                task,
                message: format!("an attempt may ask at most {MAX_ASKS} questions"),
            })
        } else {
            serde_json::from_str::<FeedbackRequest>(&request).map_err(|e| FeedbackError::Invalid {
                task,
                message: format!("the runner's request could not be read: {e}"),
            })
        };
        let answer = answer.map(|request| self.ctx.ask_for_task(&key, request));
        async move {
            let reply = match answer {
                Ok(waiting) => waiting.await,
                Err(error) => Err(error),
            };
            (key, reply)
        }
    }
}

/// The most questions one attempt may ask (a runner that asks more is refused them).
const MAX_ASKS: usize = 256;

/// What the decoding thread tells the attempt as the runner's stream goes: READY was seen,
/// and each question the runner asks.
struct ToHost {
    ready: oneshot::Sender<()>,
    asks: mpsc::Sender<AskFrame>,
    /// Set here when a question is handed on, cleared by the attempt once its reply is sent.
    outstanding: Arc<AtomicBool>,
}

enum Decoded {
    NotReady,
    Died(Option<String>),
    Refused(ProtocolError),
    Answered(Outcome<Value>),
}

/// Reads the runner's protocol stream: what precedes READY is logged, then exactly one outcome
/// frame, then the end of the stream.
fn decode_answer(
    reader: &mut ChannelReader,
    limits: &Limits,
    nonce: u64,
    decode: fn(&mut dyn Read, u64) -> std::result::Result<Value, String>,
    output_type: &str,
    mut banner: LogLines,
    to_host: ToHost,
) -> Decoded {
    let ToHost {
        ready,
        asks,
        outstanding,
    } = to_host;
    let mut asked = 0usize;
    let mut scan = ReadyScan::default();
    loop {
        let Some(chunk) = reader.next_chunk() else {
            scan.end(&mut banner);
            return Decoded::NotReady;
        };
        if let Some(rest) = scan.feed(&chunk, &mut banner) {
            banner.finish();
            reader.unread(rest);
            break;
        }
    }
    let _ = ready.send(());
    if reader.at_end() {
        return Decoded::Died(None);
    }
    // Questions for a person may come before the outcome.
    while reader.peek(ASK_TAG.len()) == ASK_TAG {
        match AskFrame::read_from(reader) {
            Ok(frame) => {
                asked += 1;
                // A runner asks one question at a time, at most MAX_ASKS: anything else is
                // out of protocol, and refused (the runner is stopped).
                if asked > MAX_ASKS || outstanding.swap(true, Ordering::SeqCst) {
                    return Decoded::Refused(ProtocolError::Corrupt {
                        what: "ask frame",
                        message: format!(
                            "the runner asked again before its question was answered, or more than {MAX_ASKS} questions"
                        ),
                    });
                }
                if asks.blocking_send(frame).is_err() {
                    // The attempt is over.
                    return Decoded::Died(None);
                }
            }
            Err(ProtocolError::Ended { what, missing }) => {
                return Decoded::Died(Some(format!(
                    "its question stopped inside the {what}, {missing} byte(s) short"
                )));
            }
            Err(error) => return Decoded::Refused(error),
        }
    }
    let expected = Expected {
        nonce,
        build_id: build_id(),
    };
    let outcome = graflow_protocol::read_outcome(reader, limits, expected, |header, source| {
        if header.type_name != output_type {
            return Err(format!(
                "the result is a `{}` but the task returns `{output_type}`",
                header.type_name
            ));
        }
        decode(source, header.len)
    });
    match outcome {
        Ok(outcome) => {
            let trailing = reader.drain_count(1);
            if trailing > 0 {
                return Decoded::Refused(ProtocolError::Trailing(trailing));
            }
            Decoded::Answered(outcome)
        }
        Err(ProtocolError::Ended { what, missing }) => Decoded::Died(Some(format!(
            "its answer stopped inside the {what}, {missing} byte(s) short"
        ))),
        // The stream ended while a value was being decoded: the runner died mid-answer.
        Err(error) if reader.ended => {
            Decoded::Died(Some(format!("its answer was cut short: {error}")))
        }
        Err(error) => Decoded::Refused(error),
    }
}

/// Finds READY in a runner's first protocol bytes, passing on what precedes it as log lines and
/// keeping only what may be a READY cut in two.
#[derive(Default)]
pub(super) struct ReadyScan {
    carry: Vec<u8>,
}

impl ReadyScan {
    /// Feeds the next bytes: once READY is seen, the bytes after it.
    pub(super) fn feed(&mut self, chunk: &[u8], banner: &mut LogLines) -> Option<Vec<u8>> {
        let carry = &mut self.carry;
        carry.extend_from_slice(chunk);
        if let Some(at) = carry.windows(READY.len()).position(|w| w == READY) {
            banner.push(&carry[..at]);
            return Some(carry.split_off(at + READY.len()));
        }
        let keep = READY.len() - 1;
        if carry.len() > keep {
            let cut = carry.len() - keep;
            banner.push(&carry[..cut]);
            carry.drain(..cut);
        }
        None
    }

    /// The stream ended without READY: what is held back is log too.
    pub(super) fn end(&mut self, banner: &mut LogLines) {
        banner.push(&std::mem::take(&mut self.carry));
        banner.finish();
    }
}

/// A blocking reader over chunks sent from the async side.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
            ended: false,
        }
    }

    /// The next unread bytes, or `None` at the end of the stream.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.pos < self.current.len() {
            let rest = self.current.split_off(self.pos);
            self.current.clear();
            self.pos = 0;
            return Some(rest);
        }
        if self.ended {
            return None;
        }
        match self.rx.blocking_recv() {
            Some(chunk) => Some(chunk),
            None => {
                self.ended = true;
                None
            }
        }
    }

    /// The next `n` bytes (fewer at the end of the stream), left unread.
    fn peek(&mut self, n: usize) -> Vec<u8> {
        let mut have: Vec<u8> = Vec::new();
        while have.len() < n {
            match self.next_chunk() {
                Some(chunk) => have.extend_from_slice(&chunk),
                None => break,
            }
        }
        let head = have[..have.len().min(n)].to_vec();
        self.unread(have);
        head
    }

    fn unread(&mut self, bytes: Vec<u8>) {
        self.current = bytes;
        self.pos = 0;
    }

    /// Whether the stream has nothing more (waits for the next chunk to know).
    fn at_end(&mut self) -> bool {
        while self.pos >= self.current.len() {
            match self.next_chunk() {
                Some(chunk) if chunk.is_empty() => {}
                Some(chunk) => {
                    self.unread(chunk);
                    return false;
                }
                None => return true,
            }
        }
        false
    }

    /// Reads until the end of the stream or until `at_most` bytes were seen; how many were.
    fn drain_count(&mut self, at_most: u64) -> u64 {
        let mut seen = 0u64;
        while seen < at_most {
            match self.next_chunk() {
                Some(chunk) => seen += chunk.len() as u64,
                None => break,
            }
        }
        seen
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.next_chunk() {
                Some(chunk) => self.unread(chunk),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The outcome of one attempt received whole, as bytes (by a transport that carries messages,
/// not streams: a queue, a stream entry): checked (protocol version, build id, this attempt's
/// `nonce`, every length against `limits`, no byte after the frame), its result decoded into
/// the task's output type, its channel writes applied. `runner` names the sender in errors.
pub fn apply_outcome_bytes(
    task: &Task,
    ctx: &ExecutionContext,
    nonce: u64,
    bytes: &[u8],
    limits: &Limits,
    runner: &str,
) -> Result<Value, AttemptError> {
    let handler = task.handler();
    let decode = task.def.decode;
    let output_type = task.def.output.name();
    let mut reader = bytes;
    let outcome = graflow_protocol::read_outcome(
        &mut reader,
        limits,
        Expected {
            nonce,
            build_id: build_id(),
        },
        |header, source| {
            if header.type_name != output_type {
                return Err(format!(
                    "the result is a `{}` but the task returns `{output_type}`",
                    header.type_name
                ));
            }
            decode(source, header.len)
        },
    );
    let refused = |error: ProtocolError| {
        AttemptError::handler(
            task.id(),
            handler,
            format!("the answer of {runner} was refused: {error}"),
        )
    };
    let outcome = outcome.map_err(refused)?;
    if !reader.is_empty() {
        return Err(refused(ProtocolError::Trailing(reader.len() as u64)));
    }
    attempt::apply(outcome, task, ctx, handler)
}

#[cfg(test)]
mod verdicts {
    use std::time::Duration;

    use graflow_protocol::ProtocolError;

    use super::{Driven, Ended};
    use crate::definition::{ErrorKind, HandlerFailure};
    use crate::graph::Task;
    use crate::remote::logs::{LogLines, LogTarget};
    use crate::value::Value;

    #[graflow_macros::task(crate = "crate", handler = "somewhere")]
    fn remote_one() -> u8 {
        1
    }

    fn verdict(ended: Ended, exit: Option<&str>) -> (Option<ErrorKind>, String) {
        let task: Task = remote_one::task();
        let mut logs = LogLines::new("remote_one", LogTarget::HANDLERS, 1024);
        logs.push(b"last words\n");
        let driven = Driven {
            ended,
            logs,
            input_error: None,
        };
        match driven.verdict(&task, "the runner", exit) {
            Ok(_) => (None, String::new()),
            Err(e) => (Some(e.kind()), format!("{e:#}")),
        }
    }

    fn handler(kind: HandlerFailure) -> Option<ErrorKind> {
        Some(ErrorKind::Handler(kind))
    }

    #[test]
    fn an_answer_is_the_attempts_result() {
        let (kind, _) = verdict(Ended::Answered(Ok(Value::new(1u8))), None);
        assert_eq!(kind, None);
    }

    #[test]
    fn each_way_of_not_answering_has_its_kind_and_says_what_to_do() {
        let (kind, text) = verdict(Ended::NotStarted, Some("exit code 2"));
        assert_eq!(kind, handler(HandlerFailure::RunnerLost), "{text}");
        assert!(text.contains("the runner ended (exit code 2) without answering as a task runner: call graflow::init()"), "{text}");
        assert!(text.contains("last words"), "{text}");

        let (kind, text) = verdict(
            Ended::Died {
                detail: Some("the outcome stopped after 3 bytes".to_owned()),
            },
            Some("signal 9 (SIGKILL)"),
        );
        assert_eq!(kind, handler(HandlerFailure::RunnerLost), "{text}");
        assert!(text.contains("the runner died (signal 9 (SIGKILL)) before reporting a result: the outcome stopped after 3 bytes"), "{text}");

        let (kind, text) = verdict(Ended::Refused(ProtocolError::Trailing(5)), None);
        assert_eq!(kind, handler(HandlerFailure::RunnerLost), "{text}");
        assert!(
            text.contains("the runner's answer was refused and the runner stopped"),
            "{text}"
        );

        let (kind, text) = verdict(Ended::StartupTimeout(Duration::from_secs(3)), None);
        assert_eq!(kind, handler(HandlerFailure::Transient), "{text}");
        assert!(
            text.contains("did not answer as a task runner within 3s"),
            "{text}"
        );

        let (kind, text) = verdict(Ended::AttemptTimeout(Duration::from_secs(4)), None);
        assert_eq!(kind, handler(HandlerFailure::Transient), "{text}");
        assert!(
            text.contains("the runner ran longer than 4s and was stopped"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_exit_is_said_so() {
        let (_, text) = verdict(Ended::Died { detail: None }, None);
        assert!(
            text.contains("died (no exit status) before reporting a result"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Bytes with READY (or a piece of it) here and there.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(READY.to_vec()),
                Just(READY[..5].to_vec()),
                Just(READY[3..].to_vec()),
                prop::collection::vec(any::<u8>(), 0..12),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// However the stream is cut into chunks, what the scan hands on after READY is what
        /// follows the first READY, and it holds back no more than a READY less a byte.
        #[test]
        fn ready_is_found_across_any_chunking(bytes in stream(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut scan = ReadyScan::default();
            let mut banner = LogLines::new("t", LogTarget::HANDLERS, 64);
            let mut start = 0;
            let mut found = None;
            for cut in cuts {
                if let Some(rest) = scan.feed(&bytes[start..cut], &mut banner) {
                    found = Some((cut, rest));
                    break;
                }
                prop_assert!(scan.carry.len() < READY.len());
                start = cut;
            }
            let first = bytes.windows(READY.len()).position(|w| w == READY);
            match (first, found) {
                (Some(at), Some((cut, rest))) => prop_assert_eq!(rest, bytes[at + READY.len()..cut].to_vec()),
                (None, None) => scan.end(&mut banner),
                (first, found) => prop_assert!(false, "READY at {:?}, found {:?}", first, found),
            }
        }
    }
}
