//! Asking a person from a task: [`TaskContext::approval`], [`text`](TaskContext::text),
//! [`selection`](TaskContext::selection), [`multi_selection`](TaskContext::multi_selection)
//! and [`ask`](TaskContext::ask), each an [`Ask`] to wait for (`.wait()` in a synchronous task,
//! `.await` in an async one).

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use super::TaskContext;
use crate::feedback::{AnswerFuture, FeedbackAnswer, FeedbackError, FeedbackKind, FeedbackRequest};

/// A typed answer and who gave it, when.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Response<T> {
    /// The answer.
    pub value: T,
    /// Who answered.
    pub by: String,
    /// When.
    pub at: SystemTime,
}

/// A request for feedback being described: set its timeout and metadata, then wait for it
/// (`.wait()` in a synchronous task, `.await` in an async one; `.wait_response()` /
/// `.response().await` also say who answered and when).
#[must_use = "nothing is asked until you call .wait() or .await it"]
pub struct Ask<'a, T> {
    ctx: &'a TaskContext,
    request: FeedbackRequest,
    /// The type's name, for a refused answer's message.
    type_name: &'static str,
    _answer: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Ask<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("task", &self.ctx.task_id())
            .field("request", &self.request)
            .finish()
    }
}

impl<T: DeserializeOwned + Send + 'static> Ask<'_, T> {
    /// How long the task waits for the answer (default 10 minutes). When it passes, the task
    /// stops (return the error) and the run ends as waiting, checkpointed; resuming it after
    /// someone answered gives the task the answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request.timeout = timeout;
        self
    }

    /// Adds `key: value` to what a person answering sees (a build id, a link to a diff).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.metadata.insert(key.into(), value.into());
        self
    }

    /// Waits for the answer, blocking this thread (in a synchronous task).
    ///
    /// # Errors
    /// [`FeedbackError::TimedOut`] when nobody answered in time (return it: the run then
    /// waits), [`FeedbackError::Cancelled`], or why the request could not be made.
    pub fn wait(self) -> Result<T, FeedbackError> {
        self.wait_response().map(|response| response.value)
    }

    /// [`Ask::wait`], with who answered and when.
    ///
    /// # Errors
    /// As [`Ask::wait`].
    pub fn wait_response(self) -> Result<Response<T>, FeedbackError> {
        let task = self.ctx.task_id().to_owned();
        let type_name = self.type_name;
        let answer = block(&task, self.start())?;
        typed(&task, type_name, answer)
    }

    /// Waits for the answer (in an async task), with who answered and when.
    ///
    /// # Errors
    /// As [`Ask::wait`].
    pub async fn response(self) -> Result<Response<T>, FeedbackError> {
        let task = self.ctx.task_id().to_owned();
        let type_name = self.type_name;
        let answer = self.start().await?;
        typed(&task, type_name, answer)
    }

    fn start(self) -> AnswerFuture {
        self.ctx.access().ask(self.request)
    }
}

impl<'a, T: DeserializeOwned + Send + 'static> IntoFuture for Ask<'a, T> {
    type Output = Result<T, FeedbackError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.response().await.map(|response| response.value) })
    }
}

/// Runs `answer` to its end from synchronous code: on graflow's background runtime, this
/// thread waiting.
fn block(task: &str, answer: AnswerFuture) -> Result<(String, FeedbackAnswer), FeedbackError> {
    let handle = crate::runtime::handle().map_err(|error| FeedbackError::Unavailable {
        task: task.to_owned(),
        reason: error.to_string(),
    })?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(answer.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(FeedbackError::Unavailable {
            task: task.to_owned(),
            reason: "graflow's background runtime stopped while the task waited".to_owned(),
        })
    })
}

fn typed<T: DeserializeOwned>(
    task: &str,
    type_name: &'static str,
    (request_id, answer): (String, FeedbackAnswer),
) -> Result<Response<T>, FeedbackError> {
    match serde_json::from_value::<T>(answer.value) {
        Ok(value) => Ok(Response {
            value,
            by: answer.by,
            at: answer.at,
        }),
        Err(error) => Err(FeedbackError::WrongAnswer {
            task: task.to_owned(),
            request_id,
            expected: type_name.to_owned(),
            message: error.to_string(),
        }),
    }
}

/// Asking a person, from inside a task body.
impl TaskContext {
    /// Asks for a yes or no. `ctx.approval("Deploy v2 to production?").wait()?` in a
    /// synchronous task, `.await?` in an async one.
    pub fn approval(&self, prompt: impl Into<String>) -> Ask<'_, bool> {
        self.asking(FeedbackRequest::new(FeedbackKind::Approval, prompt))
    }

    /// Asks for a text.
    pub fn text(&self, prompt: impl Into<String>) -> Ask<'_, String> {
        self.asking(FeedbackRequest::new(FeedbackKind::Text, prompt))
    }

    /// Asks to choose one of `options`.
    pub fn selection<S: Into<String>>(
        &self,
        prompt: impl Into<String>,
        options: impl IntoIterator<Item = S>,
    ) -> Ask<'_, String> {
        self.asking(choices(FeedbackKind::Selection, prompt, options))
    }

    /// Asks to choose any number of `options` (none included).
    pub fn multi_selection<S: Into<String>>(
        &self,
        prompt: impl Into<String>,
        options: impl IntoIterator<Item = S>,
    ) -> Ask<'_, Vec<String>> {
        self.asking(choices(FeedbackKind::MultiSelection, prompt, options))
    }

    /// Asks for a value of any type `T` that has a JSON schema (`#[derive(Deserialize,
    /// JsonSchema)]`): an answer is checked against the schema when it is given, and refused,
    /// with what was expected, when it does not match (the request stays open).
    pub fn ask<T: DeserializeOwned + schemars::JsonSchema + Send + 'static>(
        &self,
        prompt: impl Into<String>,
    ) -> Ask<'_, T> {
        let mut request = FeedbackRequest::new(FeedbackKind::Custom, prompt);
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        request.schema = Some(schema.as_value().to_string());
        request.expected = format!("a JSON value of type {}", T::schema_name());
        self.asking(request)
    }

    fn asking<T>(&self, request: FeedbackRequest) -> Ask<'_, T> {
        Ask {
            ctx: self,
            request,
            type_name: std::any::type_name::<T>(),
            _answer: PhantomData,
        }
    }
}

fn choices<S: Into<String>>(
    kind: FeedbackKind,
    prompt: impl Into<String>,
    options: impl IntoIterator<Item = S>,
) -> FeedbackRequest {
    let mut request = FeedbackRequest::new(kind, prompt);
    request.options = options.into_iter().map(Into::into).collect();
    request.expected = match kind {
        FeedbackKind::MultiSelection => format!(
            "a JSON array of distinct options among: {}",
            request.options.join(", ")
        ),
        _ => format!("one of: {}", request.options.join(", ")),
    };
    request
}
