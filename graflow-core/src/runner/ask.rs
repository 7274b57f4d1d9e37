//! A runner's questions go to its host: an ask frame on the protocol output, then the host's
//! reply frame on the protocol input (PROTOCOL.md §10). The host (the engine, or a worker
//! that forwards to its engine) owns the request; the runner only waits.

use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use graflow_protocol::{AskFrame, ReplyFrame};

use crate::feedback::{AnswerFuture, FeedbackAnswer, FeedbackError, FeedbackRequest};
use crate::run::Asker;

/// The reply a host sends: the request's id and its answer, or why there is none.
pub(crate) type Reply = Result<(String, FeedbackAnswer), FeedbackError>;

/// The runner's protocol streams, shared by the serving loop (invocations, outcomes) and the
/// task's questions. Each has its own lock: a question abandoned while it waits for its reply
/// holds the input, never the output the outcome goes to.
pub(crate) struct Streams {
    pub out: Mutex<Box<dyn Write + Send>>,
    pub input: Mutex<BufReader<std::fs::File>>,
}

/// Sends a task's questions to the host over the runner's protocol streams.
pub(crate) struct PipeAsker {
    pub streams: Arc<Streams>,
}

impl Asker for PipeAsker {
    fn ask(&self, task: &str, key: &str, request: FeedbackRequest) -> AnswerFuture {
        let streams = self.streams.clone();
        let task = task.to_owned();
        let key = key.to_owned();
        Box::pin(async move {
            let unavailable = |task: &str, reason: String| FeedbackError::Unavailable {
                task: task.to_owned(),
                reason,
            };
            let exchange = {
                let task = task.clone();
                move || exchange(&streams, &task, key, &request)
            };
            // The exchange blocks on the host's reply: not on a runtime's own thread.
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle.spawn_blocking(exchange).await.unwrap_or_else(|e| {
                    Err(unavailable(
                        &task,
                        format!("the runner's question failed: {e}"),
                    ))
                }),
                Err(_) => exchange(),
            }
        })
    }
}

fn exchange(streams: &Streams, task: &str, key: String, request: &FeedbackRequest) -> Reply {
    let failed = |reason: String| FeedbackError::Unavailable {
        task: task.to_owned(),
        reason,
    };
    let request = serde_json::to_string(request)
        .map_err(|e| failed(format!("cannot encode the request: {e}")))?;
    // One question at a time: its reply is the next frame on the input.
    let mut input = streams.input.lock().unwrap_or_else(PoisonError::into_inner);
    let frame = AskFrame {
        key: key.clone(),
        request,
    };
    frame
        .write_to(&mut *streams.out.lock().unwrap_or_else(PoisonError::into_inner))
        .map_err(|e| failed(format!("cannot send the request to the handler: {e}")))?;
    let reply = ReplyFrame::read_from(&mut *input as &mut dyn Read)
        .map_err(|e| failed(format!("the handler's reply could not be read: {e}")))?;
    if reply.key != key {
        return Err(failed(format!(
            "the handler replied to question {:?}, not {key:?}",
            reply.key
        )));
    }
    serde_json::from_str::<Reply>(&reply.reply)
        .map_err(|e| failed(format!("the handler's reply could not be read: {e}")))?
}

/// Refuses every question, saying why: a warm runner's host reads outcomes back to back and
/// has no way to answer one.
pub(crate) struct Refuse(pub &'static str);

impl Asker for Refuse {
    fn ask(&self, task: &str, _key: &str, _request: FeedbackRequest) -> AnswerFuture {
        Box::pin(std::future::ready(Err(FeedbackError::Unavailable {
            task: task.to_owned(),
            reason: self.0.to_owned(),
        })))
    }
}
