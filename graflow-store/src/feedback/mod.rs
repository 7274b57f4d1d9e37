//! Human feedback in the store: the requests tasks make ([`FeedbackInfo`]), answered at most
//! once ([`Store::answer`](crate::Store::answer)), cancelled
//! ([`Store::cancel_feedback`](crate::Store::cancel_feedback)), listed
//! ([`Store::feedback_requests`](crate::Store::feedback_requests)), and the notifications sent
//! when one is made, answered or given up on (`notify`).

pub(crate) mod query;
pub(crate) mod validate;

use std::collections::BTreeMap;
use std::time::SystemTime;

use graflow_core::feedback::{FeedbackKind, FeedbackStatus};

use crate::error::StoreError;

/// A request for feedback as the store has it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FeedbackInfo {
    /// Its id (128 random bits, in hex): what answering names.
    pub id: String,
    /// The run of the asking task.
    pub run_id: String,
    /// Its workflow.
    pub workflow: String,
    /// The asking task.
    pub task: String,
    /// What kind of answer it wants.
    pub kind: FeedbackKind,
    /// The question.
    pub prompt: String,
    /// The choices of a selection.
    pub options: Vec<String>,
    /// What a valid answer is, in words.
    pub expected: String,
    /// What else the task said about it.
    pub metadata: BTreeMap<String, String>,
    /// When it was asked (first).
    pub asked_at: Option<SystemTime>,
    /// When the task stops waiting for it (its last wait); an answer given later is taken by
    /// the resumed run.
    pub expires_at: Option<SystemTime>,
    /// Where it stands.
    pub status: FeedbackStatus,
}

impl FeedbackInfo {
    /// `open`, `answered` or `cancelled`.
    pub fn status_name(&self) -> &'static str {
        status_name(&self.status)
    }
}

pub(crate) fn status_name(status: &FeedbackStatus) -> &'static str {
    match status {
        FeedbackStatus::Open => "open",
        FeedbackStatus::Answered(_) => "answered",
        _ => "cancelled",
    }
}

/// Why an answer (or a cancel) was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The store has no request of that id.
    #[error("no request {id} (--graflow-feedback lists the open ones)")]
    UnknownRequest {
        /// The id given.
        id: String,
    },
    /// Someone answered first; the first valid answer wins.
    #[error("request {id} was already answered by {by}")]
    AlreadyAnswered {
        /// The request.
        id: String,
        /// Who answered.
        by: String,
    },
    /// The request was cancelled.
    #[error("request {id} was cancelled by {by}: {reason}")]
    Cancelled {
        /// The request.
        id: String,
        /// Why.
        reason: String,
        /// By whom.
        by: String,
    },
    /// The answer is not one the request accepts; the request stays open.
    #[error("request {id} refuses this answer: {message}")]
    Invalid {
        /// The request.
        id: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AnswerError {
    /// Whether trying again later could pass (the store failed for now).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AnswerError::Store(e) if e.is_retryable())
    }
}

/// A new request id: 128 random bits from the operating system, in hex.
pub(crate) fn new_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes for a request id: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` looks like a request id (32 hex digits): anything else is refused before the
/// store is asked.
pub(crate) fn well_formed(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A request as a notification (and `--graflow-feedback --graflow-json`) shows it.
pub(crate) fn document(info: &FeedbackInfo) -> serde_json::Value {
    let time = |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_millis(t).to_string());
    let mut doc = serde_json::json!({
        "id": info.id,
        "run_id": info.run_id,
        "workflow": info.workflow,
        "task": info.task,
        "kind": info.kind.as_str(),
        "prompt": info.prompt,
        "options": info.options,
        "expected": info.expected,
        "metadata": info.metadata,
        "asked_at": time(info.asked_at),
        "expires_at": time(info.expires_at),
        "status": info.status_name(),
    });
    if let Some(object) = doc.as_object_mut() {
        match &info.status {
            FeedbackStatus::Answered(answer) => {
                object.insert("answer".to_owned(), answer.value.clone());
                object.insert("answered_by".to_owned(), answer.by.clone().into());
                object.insert("answered_at".to_owned(), time(Some(answer.at)).into());
            }
            FeedbackStatus::Cancelled { reason, by } => {
                object.insert("reason".to_owned(), reason.clone().into());
                object.insert("cancelled_by".to_owned(), by.clone().into());
            }
            _ => {}
        }
    }
    doc
}
