//! A runner's output lines: reassembled from chunks, logged with the task id, the last few kept
//! for error messages. Nothing here grows with what the runner sends: a line longer than the
//! limit is cut (and says so), and only the last lines are kept.

use std::collections::VecDeque;

use graflow_protocol::text::truncate_in_place;

use crate::run::ExecutionContext;

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A [`LogTarget`](crate::backend::LogTarget) logging to the `tracing` target `$name` (a string
/// literal): `graflow_core::log_target!("graflow::docker")`.
#[macro_export]
macro_rules! log_target {
    ($name:literal) => {
        $crate::backend::LogTarget::new($name, {
            fn log(level: $crate::__private::tracing::Level, message: ::std::fmt::Arguments<'_>) {
                use $crate::__private::tracing::{self, Level};
                match level {
                    Level::ERROR => tracing::error!(target: $name, "{}", message),
                    Level::WARN => tracing::warn!(target: $name, "{}", message),
                    Level::INFO => tracing::info!(target: $name, "{}", message),
                    Level::DEBUG => tracing::debug!(target: $name, "{}", message),
                    _ => tracing::trace!(target: $name, "{}", message),
                }
            }
            log
        })
    };
}

/// Where a handler's runner output lines and warm-runner notes are logged: the handler's own
/// `tracing` target (a target must be known at compile time, so it is a function that logs one
/// message at a level there). Make one with [`log_target!`](crate::log_target):
///
/// ```
/// let target: graflow_core::backend::LogTarget = graflow_core::log_target!("my_backend");
/// target.log(tracing::Level::INFO, format_args!("[task] a line of its output"));
/// ```
#[derive(Clone, Copy)]
pub struct LogTarget {
    name: &'static str,
    log: fn(tracing::Level, std::fmt::Arguments<'_>),
}

impl LogTarget {
    /// `graflow::handlers`, where the built-in handlers log.
    pub const HANDLERS: LogTarget = log_target!("graflow::handlers");

    /// A target named `name` that `log` writes to ([`log_target!`](crate::log_target) makes
    /// both).
    pub const fn new(name: &'static str, log: fn(tracing::Level, std::fmt::Arguments<'_>)) -> Self {
        LogTarget { name, log }
    }

    /// The target's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Logs `message` at `level`.
    pub fn log(&self, level: tracing::Level, message: std::fmt::Arguments<'_>) {
        (self.log)(level, message)
    }
}

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogTarget({})", self.name)
    }
}

impl PartialEq for LogTarget {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Reassembles output arriving in arbitrary chunks into lines, logs each line prefixed with the
/// task id, and keeps the last lines for error messages.
#[derive(Debug)]
pub struct LogLines {
    task: String,
    target: LogTarget,
    max_line: usize,
    partial: Vec<u8>,
    /// Bytes of the current line dropped because it exceeded `max_line`.
    cut: u64,
    tail: VecDeque<String>,
    /// The attempt whose observers see each line, when the run is observed.
    observed: Option<ExecutionContext>,
}

impl LogLines {
    const TAIL: usize = 20;
    /// The longest line kept for an error message.
    const TAIL_LINE: usize = 512;

    /// Lines of task `task`, logged to `target`, each at most `max_line` bytes.
    pub fn new(task: &str, target: LogTarget, max_line: usize) -> Self {
        LogLines {
            task: task.to_owned(),
            target,
            max_line: max_line.max(64),
            partial: Vec::new(),
            cut: 0,
            tail: VecDeque::new(),
            observed: None,
        }
    }

    /// Also hands each line to the observers of `ctx`'s run, as the output of its attempt
    /// ([`ExecutionContext::runner_output`]); nothing when the run has none.
    #[must_use]
    pub fn observed(mut self, ctx: &ExecutionContext) -> Self {
        self.observed = ctx.is_observed().then(|| ctx.clone());
        self
    }

    /// Feeds a chunk; every complete line is logged.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.append(&bytes[..end]);
                    let line = std::mem::take(&mut self.partial);
                    self.emit(&line);
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.append(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// Feeds a chunk until a line that ends with `marker`: the lines before it are logged, and
    /// so is what precedes the marker on its line; the marker itself is not. Returns where
    /// the bytes after the marker's line begin in `bytes`, once it was seen (`None`: not yet,
    /// everything was taken).
    pub fn push_until(&mut self, bytes: &[u8], marker: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.append(rest);
                return None;
            };
            self.append(&rest[..end]);
            at += end + 1;
            let mut line = std::mem::take(&mut self.partial);
            if let Some(start) = find(&line, marker) {
                line.truncate(start);
                if !line.is_empty() || self.cut > 0 {
                    self.emit(&line);
                }
                return Some(at);
            }
            self.emit(&line);
        }
        None
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max_line.saturating_sub(self.partial.len());
        let keep = bytes.len().min(room);
        self.partial.extend_from_slice(&bytes[..keep]);
        self.cut += (bytes.len() - keep) as u64;
    }

    /// Logs what is left of an unterminated last line.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() || self.cut > 0 {
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
        let text = String::from_utf8_lossy(line);
        let mut text = text.trim_end_matches('\r').to_owned();
        if self.cut > 0 {
            text.push_str(&format!(" [... {} byte(s) cut]", self.cut));
            self.cut = 0;
        }
        self.target.log(
            tracing::Level::INFO,
            format_args!("[{}] {}", self.task, text),
        );
        if let Some(ctx) = &self.observed {
            ctx.runner_output(&text);
        }
        if self.tail.len() == Self::TAIL {
            self.tail.pop_front();
        }
        if truncate_in_place(&mut text, Self::TAIL_LINE) > 0 {
            text.push_str(" [...]");
        }
        self.tail.push_back(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_reassembled_and_long_ones_cut() {
        let mut logs = LogLines::new("t", LogTarget::HANDLERS, 64);
        logs.push(b"hel");
        logs.push(b"lo\nwor");
        logs.push(&[b'x'; 1000]);
        logs.push(b"\nlast");
        logs.finish();
        let tail = logs.tail();
        assert_eq!(tail[0], "hello");
        assert!(
            tail[1].starts_with("wor") && tail[1].ends_with("byte(s) cut]"),
            "{tail:?}"
        );
        assert!(tail[1].contains("[... 939 byte(s) cut]"), "{tail:?}");
        assert_eq!(tail[2], "last");
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let mut logs = LogLines::new("t", LogTarget::HANDLERS, 1024);
        for i in 0..1000 {
            logs.push(format!("line {i}\n").as_bytes());
        }
        let tail = logs.tail();
        assert_eq!(tail.len(), 20);
        assert_eq!(tail[19], "line 999");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Output in chunks of any size keeps within its bounds: a partial line at most the line
        /// limit, at most 20 lines kept, each at most 512 bytes and " [...]".
        #[test]
        fn lines_stay_bounded(
            max_line in 0usize..200,
            chunks in prop::collection::vec((any::<bool>(), prop::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'G'), any::<u8>()], 0..300)), 0..16),
        ) {
            let mut logs = LogLines::new("t", LogTarget::HANDLERS, max_line);
            for (until, chunk) in &chunks {
                if *until {
                    if let Some(rest) = logs.push_until(chunk, b"GFEND3 ") {
                        prop_assert!(rest <= chunk.len());
                    }
                } else {
                    logs.push(chunk);
                }
                prop_assert!(logs.partial.len() <= max_line.max(64));
            }
            logs.finish();
            let tail = logs.tail();
            prop_assert!(tail.len() <= LogLines::TAIL);
            prop_assert!(tail.iter().all(|l| l.len() <= LogLines::TAIL_LINE + 6), "{:?}", tail);
        }
    }
}
