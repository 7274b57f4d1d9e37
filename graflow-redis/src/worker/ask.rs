//! A task on a worker asks a person through its engine: the question goes on the engine's
//! reply stream (a reply of kind `ask`), the engine owns the request and pushes its reply on the
//! question's own list (`answer:ATTEMPT:KEY`), which the worker polls. The time spent asking does not count
//! against the task's timeout here (the engine pauses its own clock too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use graflow_core::backend::Asker;
use graflow_core::feedback::{AnswerFuture, FeedbackAnswer, FeedbackError, FeedbackRequest};
use redis::aio::ConnectionManager;

use crate::entry::{Reply, ReplyKind};

/// How often the worker looks for its engine's reply.
const POLL: Duration = Duration::from_millis(200);
/// How long past the request's own timeout the worker waits for its engine's reply.
const GRACE: Duration = Duration::from_secs(300);
/// The largest reply the worker reads.
const MAX_REPLY: usize = 1 << 20;

/// How long the attempt spent asking: its timeout is extended by as much.
#[derive(Default)]
pub(super) struct AskClock {
    since: Mutex<Option<Instant>>,
    paused_ms: AtomicU64,
}

impl AskClock {
    /// The time spent asking so far (a question under way counts up to now).
    pub(super) fn paused(&self) -> Duration {
        let now = self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(Duration::ZERO, |since| since.elapsed());
        Duration::from_millis(self.paused_ms.load(Ordering::Relaxed)) + now
    }

    fn start(&self) {
        *self.since.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn stop(&self) {
        if let Some(since) = self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.paused_ms.fetch_add(ms, Ordering::Relaxed);
        }
    }
}

/// Sends one attempt's questions to its engine.
pub(super) struct RedisAsker {
    pub(super) conn: ConnectionManager,
    /// The engine's reply stream.
    pub(super) stream: String,
    /// The keys' naming.
    pub(super) keys: crate::keys::Keys,
    pub(super) att: String,
    pub(super) worker: String,
    pub(super) delivery: u64,
    pub(super) clock: Arc<AskClock>,
}

impl Asker for RedisAsker {
    fn ask(&self, task: &str, key: &str, request: FeedbackRequest) -> AnswerFuture {
        let mut conn = self.conn.clone();
        let stream = self.stream.clone();
        let answers = self.keys.answer(&self.att, key);
        let clock = self.clock.clone();
        let task = task.to_owned();
        let reply = Reply {
            att: self.att.clone(),
            worker: self.worker.clone(),
            delivery: self.delivery,
            kind: ReplyKind::Ask {
                key: key.to_owned(),
                request: serde_json::to_string(&request).unwrap_or_default(),
            },
            logs: String::new(),
        };
        let key = key.to_owned();
        Box::pin(async move {
            let failed = |reason: String| FeedbackError::Unavailable {
                task: task.clone(),
                reason,
            };
            let mut add = redis::cmd("XADD");
            add.arg(&stream).arg("*");
            for (name, value) in reply.fields() {
                add.arg(name).arg(value);
            }
            let added: redis::RedisResult<String> = add.query_async(&mut conn).await;
            added.map_err(|e| failed(format!("cannot send the request to the engine: {e}")))?;
            clock.start();
            let give_up = Instant::now() + request.timeout + GRACE;
            let answer = loop {
                tokio::time::sleep(POLL).await;
                let popped: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("LPOP")
                    .arg(&answers)
                    .query_async(&mut conn)
                    .await;
                match popped {
                    Ok(Some(bytes)) => match read(&bytes, &key) {
                        Some(answer) => break answer,
                        None => continue,
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(target: "graflow::handlers", error = %e, "cannot read the engine's reply to a question yet; still waiting");
                    }
                }
                if Instant::now() > give_up {
                    break Err(failed(
                        "the engine did not reply to the request (it ended, or lost Redis)"
                            .to_owned(),
                    ));
                }
            };
            clock.stop();
            answer
        })
    }
}

/// The engine's reply to question `key`, read as hostile; `None` for one that is not (a late
/// reply to an earlier question) or that cannot be read.
pub(crate) fn read(
    bytes: &[u8],
    key: &str,
) -> Option<Result<(String, FeedbackAnswer), FeedbackError>> {
    if bytes.len() > MAX_REPLY {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Pushed {
        key: String,
        reply: Result<(String, FeedbackAnswer), FeedbackError>,
    }
    let pushed: Pushed = serde_json::from_slice(bytes).ok()?;
    (pushed.key == key).then_some(pushed.reply)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Whatever sits on the answers list: a reply or nothing, never a panic.
        #[test]
        fn hostile_replies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = super::read(&bytes, "1.0");
        }
    }

    #[test]
    fn a_reply_to_another_question_is_not_taken() {
        let reply = serde_json::json!({"key": "1.1", "reply": {"Ok": ["id", {"value": true, "by": "a", "at": {"secs_since_epoch": 1, "nanos_since_epoch": 0}}]}});
        let bytes = reply.to_string().into_bytes();
        assert!(super::read(&bytes, "1.0").is_none());
        assert!(matches!(super::read(&bytes, "1.1"), Some(Ok(_))));
    }
}
