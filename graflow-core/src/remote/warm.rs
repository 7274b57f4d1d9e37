//! One warm runner's I/O, on graflow's background runtime: started ([`launch`]), then serving one job
//! at a time until the pool drops it, it ends, or a job leaves it unsound ([`RunnerIo`]).
//!
//! Everything the runner sends is hostile: an outcome is delimited by its header's lengths
//! (checked against the limits before anything is buffered), a byte on the protocol stream
//! between outcomes or after one stops the runner, and its log lines are attributed to the task
//! it serves until the task's end marker (`GFEND3 <nonce>`) or a short deadline.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use graflow_protocol::{FrameDecoder, InvocationFrame, Limits, ProtocolError, Step};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::driver::{Chunk, ReadyScan};
use super::logs::{LogLines, LogTarget};

/// How long the log stream is read on for a task's last lines (its end marker) after its
/// outcome, or after the runner died.
const LINGER: Duration = Duration::from_millis(500);

/// A runner just started by a handler's transport, before it announced itself.
pub struct Transport {
    /// The runner's protocol input.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its protocol output and log stream.
    pub output: BoxStream<'static, Chunk>,
    /// Stops the runner when dropped (kills its process group, removes its container).
    pub guard: Box<dyn Send>,
    /// Names the runner in logs, errors and run reports: `pid 4242`, `container graflow-…`.
    pub name: String,
    /// Says why the runner died (exit status, out of memory): polled once, after the runner
    /// was stopped, when its output ended while it served a task or started. Runs on graflow's
    /// background runtime ([`background`](crate::backend::background)).
    pub autopsy: Option<BoxFuture<'static, Option<String>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Starts one runner of a key, on the background runtime.
pub type Starter = Box<dyn FnOnce() -> BoxFuture<'static, Result<Transport, String>> + Send>;

/// The guard of every started runner of a pool, by runner number: dropping one stops its runner.
/// Also the runners' I/O tasks, which end with the pool.
#[derive(Default)]
pub(super) struct Guards(
    Mutex<HashMap<u64, Box<dyn Send>>>,
    Mutex<Vec<tokio::task::AbortHandle>>,
);

impl Guards {
    /// Keeps the I/O task of a runner, to end it with the pool.
    fn track(&self, task: tokio::task::AbortHandle) {
        let mut tasks = lock(&self.1);
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// Ends every runner's I/O task (the pool is dropped).
    pub(super) fn abort_tasks(&self) {
        for task in lock(&self.1).drain(..) {
            task.abort();
        }
    }

    fn register(&self, id: u64, guard: Box<dyn Send>) {
        lock(&self.0).insert(id, guard);
    }

    /// Stops runner `id`, on a thread of its own (stopping may scan `/proc` or wait for the
    /// daemon: not on an I/O thread). Inline when no thread can start.
    pub(super) fn stop(&self, id: u64) {
        let Some(guard) = lock(&self.0).remove(&id) else {
            return;
        };
        // A thread that cannot start drops its closure, and so stops the runner, right here.
        let spawned = std::thread::Builder::new()
            .name("graflow-warm-stop".to_owned())
            .spawn(move || drop(guard));
        if let Err(e) = spawned {
            tracing::debug!(target: "graflow::handlers", error = %e, "stopped a warm runner inline");
        }
    }

    /// Stops runner `id` now, on this thread.
    pub(super) fn stop_now(&self, id: u64) {
        let guard = lock(&self.0).remove(&id);
        drop(guard);
    }

    /// Stops runner `id` and waits until it is stopped, on the runtime's blocking pool (not on
    /// its I/O thread): before its autopsy reaps it, so that its group is killed while its pid
    /// cannot be reused.
    async fn stop_and_wait(&self, id: u64) {
        let guard = lock(&self.0).remove(&id);
        if let Some(guard) = guard {
            let _ = tokio::task::spawn_blocking(move || drop(guard)).await;
        }
    }

    /// Stops every runner now, on this thread; how many.
    pub(super) fn stop_all(&self) -> usize {
        let all: Vec<_> = lock(&self.0).drain().collect();
        let n = all.len();
        drop(all);
        n
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One invocation for a runner: its whole frame.
pub(super) struct Job {
    pub frame: InvocationFrame,
    pub nonce: u64,
    pub limits: Limits,
    pub task: String,
    pub span: tracing::Span,
    /// The attempt whose observers see the task's output lines, when its run is observed.
    pub observed: Option<crate::run::ExecutionContext>,
    pub reply: oneshot::Sender<Served>,
}

pub(super) enum Served {
    /// A whole outcome frame (not yet checked beyond its header).
    Answer { frame: Vec<u8>, logs: LogLines },
    /// The runner's output ended before a whole outcome.
    Died { detail: String, logs: LogLines },
    /// The runner sent something that cannot be this job's outcome.
    Refused {
        error: ProtocolError,
        logs: LogLines,
    },
    /// The runner could not take the job (it had ended, or sent bytes between tasks): no task
    /// saw it, so it may go to another runner.
    NotTaken,
}

/// One outcome frame as it arrives on a runner's protocol stream: delimited by the protocol's
/// [`FrameDecoder`] (the header's lengths, checked against the limits before anything past the
/// header is kept), its bytes kept for [`apply_outcome_bytes`](super::apply_outcome_bytes).
#[derive(Debug)]
pub(super) struct OutcomeFrame {
    decoder: FrameDecoder,
    bytes: Vec<u8>,
}

impl OutcomeFrame {
    pub(super) fn new(limits: &Limits) -> Self {
        OutcomeFrame {
            decoder: FrameDecoder::outcome(*limits),
            bytes: Vec::new(),
        }
    }

    /// Takes the next bytes of the protocol stream: `Ok(true)` once the frame is whole, an error
    /// for a header beyond the limits or for bytes past the frame's end.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<bool, ProtocolError> {
        match self.decoder.feed(bytes)? {
            Step::NeedMore => {
                self.bytes.extend_from_slice(bytes);
                Ok(false)
            }
            Step::Complete { used } if used < bytes.len() => {
                Err(ProtocolError::Trailing((bytes.len() - used) as u64))
            }
            Step::Complete { .. } => {
                self.bytes.extend_from_slice(bytes);
                Ok(true)
            }
        }
    }

    /// How many bytes the frame still misses, once its header was read.
    pub(super) fn missing(&self) -> Option<u64> {
        self.decoder.missing()
    }

    /// The frame's bytes.
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The pool's handle on a started runner.
pub(super) struct Started {
    pub name: String,
    pub jobs: mpsc::Sender<Job>,
    pub alive: Arc<AtomicBool>,
}

/// Stops a runner that is registered but not yet serving, if its start is abandoned.
struct Registration<'a> {
    guards: &'a Guards,
    id: u64,
    armed: bool,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.guards.stop_now(self.id);
        }
    }
}

/// Starts a runner and waits for its READY; then its I/O runs in a task of its own.
pub(super) async fn launch(
    id: u64,
    starter: Starter,
    guards: Arc<Guards>,
    startup_timeout: Duration,
    target: LogTarget,
) -> Result<Started, String> {
    let Transport {
        input,
        output,
        guard,
        name,
        autopsy,
    } = starter().await?;
    // Read on after its end (the log stream's last lines), so it must stay ended.
    let mut output = output.fuse().boxed();
    // Registered at once: an interrupt stops runners that are still starting too.
    guards.register(id, guard);
    let mut registration = Registration {
        guards: &guards,
        id,
        armed: true,
    };
    let mut banner = LogLines::new(&name, target, Limits::default().max_log_line);
    let mut scan = ReadyScan::default();
    let ready = tokio::time::timeout(startup_timeout, async {
        loop {
            match output.next().await {
                Some(Chunk::Stdout(bytes)) => {
                    if let Some(rest) = scan.feed(&bytes, &mut banner) {
                        return Ok(rest);
                    }
                }
                Some(Chunk::Stderr(bytes)) => banner.push(&bytes),
                Some(Chunk::StdoutClosed) | None => return Err(()),
            }
        }
    })
    .await;
    let failure = match ready {
        Ok(Ok(rest)) if rest.is_empty() => None,
        Ok(Ok(rest)) => Some(format!(
            "warm runner {name} sent {} unexpected byte(s) after announcing itself; it is stopped",
            rest.len()
        )),
        Ok(Err(())) => {
            linger(&mut output, &mut banner).await;
            scan.end(&mut banner);
            registration.armed = false;
            guards.stop_and_wait(id).await;
            let why = match autopsy {
                Some(autopsy) => autopsy.await.map(|d| format!(" ({d})")).unwrap_or_default(),
                None => String::new(),
            };
            return Err(format!(
                "warm runner {name} ended{why} without answering as a task runner: call graflow::init() at the start of main or use #[graflow::main]{}",
                banner.tail_text()
            ));
        }
        Err(_) => Some(format!(
            "warm runner {name} did not answer as a task runner within {startup_timeout:?}: call graflow::init() at the start of main or use #[graflow::main]"
        )),
    };
    banner.finish();
    if let Some(message) = failure {
        return Err(format!("{message}{}", banner.tail_text()));
    }
    registration.armed = false;
    note(target, &name, "warm runner started");
    let (jobs, rx) = mpsc::channel(1);
    let alive = Arc::new(AtomicBool::new(true));
    let io = RunnerIo {
        id,
        name: name.clone(),
        input,
        output,
        autopsy,
        target,
        guards: guards.clone(),
        alive: alive.clone(),
        idle_logs: LogLines::new(&name, target, Limits::default().max_log_line),
    };
    guards.track(tokio::spawn(io.run(rx)).abort_handle());
    Ok(Started { name, jobs, alive })
}

fn note(target: LogTarget, runner: &str, what: &str) {
    target.log(
        tracing::Level::INFO,
        format_args!("{what} (runner {runner})"),
    );
}

/// Reads the log stream on until it ends or [`LINGER`] passes (the last lines of a runner that
/// ended).
async fn linger(output: &mut BoxStream<'static, Chunk>, logs: &mut LogLines) {
    let deadline = tokio::time::sleep(LINGER);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Chunk::Stderr(bytes)) => logs.push(&bytes),
                Some(_) => {}
                None => return,
            },
            () = &mut deadline => return,
        }
    }
}

/// A runner's I/O, on the background runtime.
struct RunnerIo {
    id: u64,
    name: String,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: BoxStream<'static, Chunk>,
    autopsy: Option<BoxFuture<'static, Option<String>>>,
    target: LogTarget,
    guards: Arc<Guards>,
    alive: Arc<AtomicBool>,
    /// Lines that belong to no task.
    idle_logs: LogLines,
}

impl RunnerIo {
    /// Serves jobs until the pool drops the runner, the runner ends, or a job leaves it unsound;
    /// then stops it, and tells the jobs still queued that they were not taken.
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            tokio::select! {
                chunk = self.output.next() => match chunk {
                    // Between tasks nothing but log lines may come.
                    Some(Chunk::Stderr(bytes)) => self.idle_logs.push(&bytes),
                    Some(Chunk::Stdout(_)) => {
                        note(self.target, &self.name, "warm runner wrote on its protocol stream between tasks; it is stopped");
                        break;
                    }
                    Some(Chunk::StdoutClosed) | None => {
                        note(self.target, &self.name, "warm runner ended while idle");
                        break;
                    }
                },
                job = jobs.recv() => match job {
                    None => break,
                    Some(job) => {
                        let span = job.span.clone();
                        if !self.serve(job).instrument(span).await {
                            break;
                        }
                    }
                },
            }
        }
        self.idle_logs.finish();
        self.alive.store(false, Ordering::SeqCst);
        self.guards.stop(self.id);
        jobs.close();
        while let Ok(job) = jobs.try_recv() {
            let _ = job.reply.send(Served::NotTaken);
        }
    }

    /// Serves one job; whether the runner may serve another.
    async fn serve(&mut self, job: Job) -> bool {
        let Job {
            frame,
            nonce,
            limits,
            task,
            span: _,
            observed,
            mut reply,
        } = job;
        // Anything the runner sent while idle comes first: bytes on its protocol stream, or its
        // end, make it unfit before it sees the task.
        while let Some(chunk) = self.output.next().now_or_never() {
            match chunk {
                Some(Chunk::Stderr(bytes)) => self.idle_logs.push(&bytes),
                Some(Chunk::Stdout(_) | Chunk::StdoutClosed) | None => {
                    let _ = reply.send(Served::NotTaken);
                    return false;
                }
            }
        }
        let write = async {
            for chunk in frame.chunks() {
                self.input.write_all(chunk).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let written = tokio::select! {
            written = write => written,
            () = reply.closed() => return false,
        };
        if written.is_err() {
            // Some bytes never reached it: it cannot have had the whole invocation, and no task
            // ran. Another runner may take it.
            let _ = reply.send(Served::NotTaken);
            return false;
        }
        drop(frame);
        let flushed = tokio::select! {
            flushed = self.input.flush() => flushed,
            () = reply.closed() => return false,
        };
        let mut logs = LogLines::new(&task, self.target, limits.max_log_line);
        if let Some(ctx) = &observed {
            logs = logs.observed(ctx);
        }
        let marker = format!("{}{nonce:016x}", graflow_protocol::TASK_END_MARKER).into_bytes();
        let (served, sound) = tokio::select! {
            read = self.read_answer(&limits, logs, &marker, flushed.is_err()) => read,
            () = reply.closed() => return false,
        };
        reply.send(served).is_ok() && sound
    }

    /// Reads one outcome frame and the task's log lines up to its end marker; what was served,
    /// and whether the runner may serve again.
    async fn read_answer(
        &mut self,
        limits: &Limits,
        mut logs: LogLines,
        marker: &[u8],
        unflushed: bool,
    ) -> (Served, bool) {
        let mut answer = OutcomeFrame::new(limits);
        let mut ended_lines = false;
        let refused = |mut logs: LogLines, error: ProtocolError| {
            logs.finish();
            (Served::Refused { error, logs }, false)
        };
        loop {
            match self.output.next().await {
                Some(Chunk::Stderr(bytes)) => {
                    self.task_lines(&bytes, &mut logs, marker, &mut ended_lines);
                }
                Some(Chunk::Stdout(bytes)) => match answer.feed(&bytes) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => return refused(logs, error),
                },
                Some(Chunk::StdoutClosed) | None => {
                    let mut detail = match answer.missing() {
                        Some(missing) => format!("its answer stopped {missing} byte(s) short"),
                        None if unflushed => "it closed its input".to_owned(),
                        None => "it sent no answer".to_owned(),
                    };
                    linger(&mut self.output, &mut logs).await;
                    logs.finish();
                    self.guards.stop_and_wait(self.id).await;
                    if let Some(autopsy) = self.autopsy.take()
                        && let Some(why) = autopsy.await
                    {
                        detail = format!("{why}; {detail}");
                    }
                    return (Served::Died { detail, logs }, false);
                }
            }
        }
        // The outcome is whole; the task's last lines end with its marker, written before it.
        let mut sound = true;
        if !ended_lines {
            let deadline = tokio::time::sleep(LINGER);
            tokio::pin!(deadline);
            while !ended_lines {
                tokio::select! {
                    chunk = self.output.next() => match chunk {
                        Some(Chunk::Stderr(bytes)) => {
                            self.task_lines(&bytes, &mut logs, marker, &mut ended_lines);
                        }
                        Some(Chunk::Stdout(bytes)) => {
                            return refused(logs, ProtocolError::Trailing(bytes.len() as u64));
                        }
                        Some(Chunk::StdoutClosed) | None => {
                            sound = false;
                            break;
                        }
                    },
                    () = &mut deadline => break,
                }
            }
        }
        logs.finish();
        (
            Served::Answer {
                frame: answer.into_bytes(),
                logs,
            },
            sound,
        )
    }

    /// Log bytes while a task is served: its lines until its end marker, the runner's after.
    fn task_lines(&mut self, bytes: &[u8], logs: &mut LogLines, marker: &[u8], ended: &mut bool) {
        task_lines(bytes, logs, &mut self.idle_logs, marker, ended);
    }
}

/// Log bytes while a task is served: its lines (`logs`) until its end marker, the runner's
/// (`idle`) after.
pub(super) fn task_lines(
    bytes: &[u8],
    logs: &mut LogLines,
    idle: &mut LogLines,
    marker: &[u8],
    ended: &mut bool,
) {
    if *ended {
        idle.push(bytes);
        return;
    }
    if let Some(rest) = logs.push_until(bytes, marker) {
        *ended = true;
        idle.push(&bytes[rest..]);
    }
}

#[cfg(test)]
mod properties {
    use graflow_protocol::{Outcome, PROTOCOL_VERSION};
    use proptest::prelude::*;

    use super::*;

    /// The frame's bytes are kept as they come; one byte past its end, in the same chunk or the
    /// next, is refused.
    #[test]
    fn an_outcome_frame_is_kept_whole_and_nothing_after_it() {
        let outcome = Outcome {
            protocol: PROTOCOL_VERSION,
            build_id: "b".into(),
            nonce: 42,
            result: Ok(graflow_protocol::EncodedValue {
                type_name: "u8".into(),
                bytes: vec![7; 100],
            }),
            channel_writes: Vec::new(),
            control: Vec::new(),
            elapsed_ns: 0,
        };
        let mut wire = Vec::new();
        outcome.write_to(&mut wire).unwrap();
        for size in [1, 7, 24, 25, wire.len()] {
            let mut frame = OutcomeFrame::new(&Limits::default());
            let chunks: Vec<&[u8]> = wire.chunks(size).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                assert_eq!(frame.feed(chunk).unwrap(), i + 1 == chunks.len());
            }
            assert_eq!(frame.missing(), Some(0));
            assert!(frame.feed(b"x").is_err());
            assert_eq!(frame.into_bytes(), wire);
        }
        let mut longer = wire.clone();
        longer.push(0);
        let err = OutcomeFrame::new(&Limits::default())
            .feed(&longer)
            .unwrap_err();
        assert!(matches!(err, ProtocolError::Trailing(1)), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A task's log bytes are its own until its end marker, the runner's after, however
        /// they are cut.
        #[test]
        fn log_lines_are_attributed_across_any_chunking(
            before in "[a-z \n]{0,40}",
            after in "[a-z \n]{0,40}",
            size in 1usize..16,
        ) {
            let marker = b"GFEND3 000000000000002a";
            let bytes = format!("{before}\nGFEND3 000000000000002a\n{after}");
            let mut logs = LogLines::new("t", LogTarget::HANDLERS, 1024);
            let mut idle = LogLines::new("idle", LogTarget::HANDLERS, 1024);
            let mut ended = false;
            for chunk in bytes.as_bytes().chunks(size) {
                task_lines(chunk, &mut logs, &mut idle, marker, &mut ended);
            }
            prop_assert!(ended);
            logs.finish();
            idle.finish();
            let own: Vec<String> = before.split('\n').map(str::to_owned).collect();
            prop_assert_eq!(logs.tail(), own[own.len().saturating_sub(20)..].to_vec());
        }
    }
}
