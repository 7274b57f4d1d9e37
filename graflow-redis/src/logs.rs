//! An attempt's log lines, from the worker back to the engine.
//!
//! On a worker, every attempt runs inside a span named [`ATTEMPT_SPAN`] whose `att` field is
//! the attempt key. [`CaptureLayer`] (installed by worker mode, or by a program that runs
//! [`Worker`](crate::Worker) under its own subscriber) copies each `tracing` event inside
//! such a span into that attempt's [`Sink`]: the task's own `tracing` events, and the output
//! lines of an inner "process" or "docker" handler, which it logs as events. The reply carries
//! the last lines; the engine logs them under `graflow::handlers`, tagged with the task and the
//! worker. What a task body writes with `println!` stays in the worker's own output (the worker
//! runs many tasks in one process; use `tracing`, or an inner "process" handler, whose child's
//! output is captured line by line).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use graflow_protocol::text::truncate_in_place;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span an attempt runs in on a worker.
pub const ATTEMPT_SPAN: &str = "graflow_remote_attempt";

/// At most this many lines travel back per attempt (the last ones).
pub(crate) const MAX_LINES: usize = 200;
/// Each line is cut to this many bytes.
pub(crate) const MAX_LINE: usize = 2048;

/// The lines of one attempt.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    lines: Mutex<(VecDeque<String>, u64)>,
}

impl Sink {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.0.len() == MAX_LINES {
            lines.0.pop_front();
            lines.1 += 1;
        }
        lines.0.push_back(line);
    }

    /// The lines as the reply carries them: `LEVEL \t target \t message`, one per line.
    pub(crate) fn text(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::new();
        if lines.1 > 0 {
            let _ = writeln!(
                text,
                "W\tgraflow::handlers\t[{} earlier line(s) of this attempt dropped]",
                lines.1
            );
        }
        for line in &lines.0 {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

fn sinks() -> &'static Mutex<HashMap<String, Arc<Sink>>> {
    static SINKS: std::sync::OnceLock<Mutex<HashMap<String, Arc<Sink>>>> =
        std::sync::OnceLock::new();
    SINKS.get_or_init(Default::default)
}

/// Collects the lines of attempt `att` until dropped.
pub(crate) struct Capture {
    att: String,
    pub sink: Arc<Sink>,
}

impl Capture {
    pub(crate) fn new(att: &str) -> Self {
        let sink = Arc::new(Sink::default());
        sinks()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(att.to_owned(), sink.clone());
        Capture {
            att: att.to_owned(),
            sink,
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        sinks()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.att);
    }
}

/// The `tracing` layer that copies events inside an attempt's span to its sink.
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct CaptureLayer;

impl CaptureLayer {
    /// A new layer: `tracing_subscriber::registry().with(CaptureLayer::new())`.
    pub fn new() -> Self {
        CaptureLayer
    }
}

struct AttField(Option<String>);

impl Visit for AttField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "att" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "att" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// An event as one line: its message, then its other fields.
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != ATTEMPT_SPAN {
            return;
        }
        let mut att = AttField(None);
        attrs.record(&mut att);
        let Some(att) = att.0 else { return };
        let sink = sinks()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&att)
            .cloned();
        if let (Some(sink), Some(span)) = (sink, ctx.span(id)) {
            span.extensions_mut().insert(sink);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let extensions = span.extensions();
            if let Some(sink) = extensions.get::<Arc<Sink>>() {
                let mut line = Line(String::new());
                event.record(&mut line);
                let mut text = line.0.replace(['\n', '\r', '\t'], " ");
                if truncate_in_place(&mut text, MAX_LINE) > 0 {
                    text.push_str(" [cut]");
                }
                let level = match *event.metadata().level() {
                    Level::ERROR => 'E',
                    Level::WARN => 'W',
                    Level::INFO => 'I',
                    Level::DEBUG => 'D',
                    Level::TRACE => 'T',
                };
                sink.push(format!("{level}\t{}\t{text}", event.metadata().target()));
                return;
            }
        }
    }
}

/// Logs the lines a worker sent back for the task of `ctx`, under `graflow::handlers`, and hands
/// each to the run's observers. The text is hostile input: at most [`MAX_LINES`] + 1 lines of at
/// most [`MAX_LINE`] bytes are logged.
pub(crate) fn replay(text: &str, ctx: &graflow_core::ExecutionContext, worker: &str) {
    let task = ctx.task_id();
    for raw in text.lines().take(MAX_LINES + 1) {
        let mut parts = raw.splitn(3, '\t');
        let (level, target, message) = match (parts.next(), parts.next(), parts.next()) {
            (Some(level), Some(target), Some(message)) => (level, target, message),
            _ => ("I", "", raw),
        };
        let mut message = message.to_owned();
        // A little over the limit passes whole (what on_event cut, plus its marker).
        if message.len() > MAX_LINE + 16 {
            truncate_in_place(&mut message, MAX_LINE);
        }
        let target: String = target.chars().take(128).collect();
        ctx.runner_output(&message);
        match level {
            "E" => {
                tracing::error!(target: "graflow::handlers", task = %task, worker = %worker, origin = %target, "{message}");
            }
            "W" => {
                tracing::warn!(target: "graflow::handlers", task = %task, worker = %worker, origin = %target, "{message}");
            }
            "D" | "T" => {
                tracing::debug!(target: "graflow::handlers", task = %task, worker = %worker, origin = %target, "{message}");
            }
            _ => {
                tracing::info!(target: "graflow::handlers", task = %task, worker = %worker, origin = %target, "{message}")
            }
        }
    }
}
