//! Human feedback: a task asks a person (an approval, a text, a choice, any typed value) and
//! waits for the answer, durably.
//!
//! A task asks through its [`TaskContext`](crate::TaskContext) ([`TaskContext::approval`](crate::TaskContext::approval),
//! [`text`](crate::TaskContext::text), [`selection`](crate::TaskContext::selection),
//! [`multi_selection`](crate::TaskContext::multi_selection), [`ask`](crate::TaskContext::ask)),
//! on any handler: out of process the request travels to the engine, which owns it. The engine
//! keeps requests in its run store ([`RunRecord::ask`](crate::record::RunRecord::ask)), where
//! any program sharing the store can list and answer them. When an answer does not come within
//! the request's timeout, the task stops, the run is checkpointed and ends as waiting
//! ([`RunError::Waiting`](crate::RunError::Waiting)); resuming it gives the task the stored
//! answer without asking again.

mod error;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

pub use error::FeedbackError;

/// The longest prompt, in bytes (longer ones are cut).
pub const MAX_PROMPT: usize = 4096;
/// The most options a selection may offer.
pub const MAX_OPTIONS: usize = 256;
/// The longest option, in bytes.
pub const MAX_OPTION: usize = 256;
/// The most metadata entries of a request.
pub const MAX_METADATA: usize = 64;
/// The longest metadata key or value, in bytes.
pub const MAX_METADATA_VALUE: usize = 1024;
/// The largest answer, in bytes of JSON.
pub const MAX_ANSWER: usize = 64 * 1024;
/// The largest JSON schema of a custom request, in bytes.
pub const MAX_SCHEMA: usize = 64 * 1024;
/// The longest description of a valid answer, in bytes.
pub const MAX_EXPECTED: usize = 16 * 1024;
/// How long a task waits for an answer unless it says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a task may wait in one go (a run that must wait longer waits as a checkpoint).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request's id and its answer, or why there is none: what asking resolves to.
pub type AnswerFuture =
    Pin<Box<dyn Future<Output = Result<(String, FeedbackAnswer), FeedbackError>> + Send + 'static>>;

/// What kind of answer a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum FeedbackKind {
    /// Yes or no: the answer is a JSON boolean.
    Approval,
    /// Free text: a JSON string.
    Text,
    /// One of the request's options: a JSON string.
    Selection,
    /// Any number of distinct options: a JSON array of strings.
    MultiSelection,
    /// Any JSON value that the request's schema accepts.
    Custom,
}

impl FeedbackKind {
    /// Lower-case name, as listed and stored: `approval`, `text`, `selection`,
    /// `multi_selection`, `custom`.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Approval => "approval",
            FeedbackKind::Text => "text",
            FeedbackKind::Selection => "selection",
            FeedbackKind::MultiSelection => "multi_selection",
            FeedbackKind::Custom => "custom",
        }
    }

    /// The kind named `name` ([`FeedbackKind::as_str`]).
    pub fn parse(name: &str) -> Option<FeedbackKind> {
        Some(match name {
            "approval" => FeedbackKind::Approval,
            "text" => FeedbackKind::Text,
            "selection" => FeedbackKind::Selection,
            "multi_selection" => FeedbackKind::MultiSelection,
            "custom" => FeedbackKind::Custom,
            _ => return None,
        })
    }
}

impl std::fmt::Display for FeedbackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A question for a person, as a task asks it (and as it travels from a runner to its engine).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct FeedbackRequest {
    /// What kind of answer it wants.
    pub kind: FeedbackKind,
    /// The question.
    pub prompt: String,
    /// The choices of a selection.
    pub options: Vec<String>,
    /// The JSON schema of a custom answer.
    pub schema: Option<String>,
    /// What a valid answer is, in words (shown when an answer is refused).
    pub expected: String,
    /// Anything else a person answering should see (a build id, a link).
    pub metadata: BTreeMap<String, String>,
    /// How long the task waits for the answer before its run waits as a checkpoint.
    pub timeout: Duration,
}

impl FeedbackRequest {
    /// A request of `kind` with `prompt`, no options, the default timeout.
    pub fn new(kind: FeedbackKind, prompt: impl Into<String>) -> Self {
        let expected = match kind {
            FeedbackKind::Approval => "yes or no (true or false)".to_owned(),
            FeedbackKind::Text => "any text".to_owned(),
            FeedbackKind::Selection | FeedbackKind::MultiSelection | FeedbackKind::Custom => {
                String::new()
            }
        };
        FeedbackRequest {
            kind,
            prompt: prompt.into(),
            options: Vec::new(),
            schema: None,
            expected,
            metadata: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Checks the request's bounds: what a runner sent is checked again by the engine.
    ///
    /// # Errors
    /// What is wrong with it, in words.
    pub fn validate(&self) -> Result<(), String> {
        if self.prompt.is_empty() {
            return Err("the prompt is empty".to_owned());
        }
        if self.prompt.len() > MAX_PROMPT {
            return Err(format!(
                "the prompt has {} bytes, more than {MAX_PROMPT}",
                self.prompt.len()
            ));
        }
        let choices = matches!(
            self.kind,
            FeedbackKind::Selection | FeedbackKind::MultiSelection
        );
        if choices && self.options.is_empty() {
            return Err("a selection needs at least one option".to_owned());
        }
        if !choices && !self.options.is_empty() {
            return Err(format!("a {} request takes no options", self.kind));
        }
        if self.options.len() > MAX_OPTIONS {
            return Err(format!(
                "{} options, more than {MAX_OPTIONS}",
                self.options.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for option in &self.options {
            if option.is_empty() || option.len() > MAX_OPTION {
                return Err(format!(
                    "option {option:?} is empty or longer than {MAX_OPTION} bytes"
                ));
            }
            if !seen.insert(option) {
                return Err(format!("option {option:?} is offered twice"));
            }
        }
        match (&self.schema, self.kind) {
            (Some(schema), FeedbackKind::Custom) if schema.len() > MAX_SCHEMA => {
                return Err(format!(
                    "the answer's schema has {} bytes, more than {MAX_SCHEMA}",
                    schema.len()
                ));
            }
            (None, FeedbackKind::Custom) => {
                return Err("a custom request needs its answer's schema".to_owned());
            }
            (Some(_), kind) if kind != FeedbackKind::Custom => {
                return Err(format!("a {kind} request takes no schema"));
            }
            _ => {}
        }
        if self.expected.len() > MAX_EXPECTED {
            return Err(format!(
                "the description of a valid answer has {} bytes, more than {MAX_EXPECTED}",
                self.expected.len()
            ));
        }
        if self.metadata.len() > MAX_METADATA {
            return Err(format!(
                "{} metadata entries, more than {MAX_METADATA}",
                self.metadata.len()
            ));
        }
        if let Some((key, _)) = self
            .metadata
            .iter()
            .find(|(k, v)| k.len() > MAX_METADATA_VALUE || v.len() > MAX_METADATA_VALUE)
        {
            return Err(format!(
                "metadata entry {key:?} is longer than {MAX_METADATA_VALUE} bytes"
            ));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(format!(
                "a timeout of {} is longer than {}",
                humantime::format_duration(self.timeout),
                humantime::format_duration(MAX_TIMEOUT)
            ));
        }
        Ok(())
    }
}

/// A person's answer, as the store keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct FeedbackAnswer {
    /// The answer, as JSON (checked against the request when it was given).
    pub value: serde_json::Value,
    /// Who answered (as the answering program was told, or its user).
    pub by: String,
    /// When.
    pub at: SystemTime,
}

impl FeedbackAnswer {
    /// An answer `value` by `by`, now.
    pub fn new(value: serde_json::Value, by: impl Into<String>) -> Self {
        FeedbackAnswer {
            value,
            by: by.into(),
            at: SystemTime::now(),
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum FeedbackStatus {
    /// Nobody answered yet.
    Open,
    /// Answered: the first valid answer.
    Answered(FeedbackAnswer),
    /// Cancelled: the task that waits for it fails with [`FeedbackError::Cancelled`].
    Cancelled {
        /// Why.
        reason: String,
        /// By whom.
        by: String,
    },
}

/// A request as the store has it: its id and where it stands.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct FeedbackState {
    /// The request's id: 128 random bits, in hex.
    pub id: String,
    /// Where it stands.
    pub status: FeedbackStatus,
}

impl FeedbackState {
    /// A request `id` in `status`.
    pub fn new(id: impl Into<String>, status: FeedbackStatus) -> Self {
        FeedbackState {
            id: id.into(),
            status,
        }
    }
}

/// One request of one task of one run, as the engine hands it to its store.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FeedbackAsk<'a> {
    /// The asking task.
    pub task: &'a str,
    /// Which request of the task this is: its run (cycle) and the order in which it asked
    /// (`"1.0"`: the first request of the first run). A task that runs again (a retry, a
    /// resumed run) asks in the same order, so it finds its earlier requests and their answers.
    pub key: &'a str,
    /// The question.
    pub request: &'a FeedbackRequest,
}
