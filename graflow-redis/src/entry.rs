//! The two kinds of stream entries: a *job* (one attempt's invocation, on a queue's stream) and
//! a *reply* (its outcome, on the engine's reply stream). Both are read as hostile input: every
//! field is checked for presence, type and size before use.

use std::collections::HashMap;

use redis::Value as RValue;

/// Version of the entry format (the `v` field).
pub(crate) const ENTRY_VERSION: &str = "1";

/// An attempt key, a reply stream key or a worker name is at most this long.
const MAX_NAME: usize = 256;
/// A task id in an entry is at most this long.
const MAX_TASK_ID: usize = 4096;
/// A reason or log text in an entry is at most this long.
const MAX_TEXT: usize = 1 << 20;

/// One attempt, as a worker reads it off a queue.
#[derive(Debug)]
pub(crate) struct Job {
    /// The attempt key: the engine's client name and the attempt's nonce.
    pub att: String,
    /// The stream the outcome goes to.
    pub reply: String,
    /// The task id (for logs and the dead-letter stream).
    pub task: String,
    /// The invocation frame (runner protocol).
    pub inv: Vec<u8>,
    /// The attempt's deadline in milliseconds from its start on the worker; 0: none.
    pub timeout_ms: u64,
    /// The handler the worker runs the task through.
    pub inner: String,
    /// The largest outcome the engine accepts, in bytes.
    pub max_out: u64,
}

impl Job {
    /// The fields of the entry, for XADD.
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("v", ENTRY_VERSION.as_bytes().to_vec()),
            ("att", self.att.as_bytes().to_vec()),
            ("reply", self.reply.as_bytes().to_vec()),
            ("task", self.task.as_bytes().to_vec()),
            ("timeout_ms", self.timeout_ms.to_string().into_bytes()),
            ("inner", self.inner.as_bytes().to_vec()),
            ("max_out", self.max_out.to_string().into_bytes()),
            ("inv", self.inv.clone()),
        ]
    }

    /// Reads a job; `Err` says what is wrong with the entry. With `Err((Some(att, reply), _))`
    /// the entry names where a refusal can be sent.
    pub fn parse(
        map: &HashMap<String, RValue>,
        max_invocation: u64,
    ) -> Result<Job, (Option<(String, String)>, String)> {
        let bare = |e: String| (None, e);
        let version = text(map, "v", 16).map_err(bare)?;
        let att = text(map, "att", MAX_NAME).map_err(bare)?;
        let reply = text(map, "reply", MAX_NAME).map_err(bare)?;
        if !reply.contains(":replies:") {
            return Err((None, format!("`reply` is not a reply stream: `{reply}`")));
        }
        let named = |e: String| (Some((att.clone(), reply.clone())), e);
        if version != ENTRY_VERSION {
            return Err(named(format!(
                "entry format version {version}, this worker reads version {ENTRY_VERSION}"
            )));
        }
        let task = text(map, "task", MAX_TASK_ID).map_err(named)?;
        let timeout_ms = number(map, "timeout_ms").map_err(named)?;
        let inner = text(map, "inner", MAX_NAME).map_err(named)?;
        let max_out = number(map, "max_out").map_err(named)?;
        let inv = bytes(map, "inv", max_invocation).map_err(named)?.to_vec();
        Ok(Job {
            att,
            reply,
            task,
            inv,
            timeout_ms,
            inner,
            max_out,
        })
    }
}

/// How an attempt ended, as a worker reports it.
#[derive(Debug)]
pub(crate) enum ReplyKind {
    /// An outcome frame (runner protocol): the task's result or failure, or a refusal.
    Outcome(Vec<u8>),
    /// The entry was delivered more times than allowed and moved to the dead-letter stream.
    Dead {
        /// Why (deliveries, the cap, the dead-letter stream).
        reason: String,
    },
}

/// One attempt's reply, as an engine reads it off its reply stream.
#[derive(Debug)]
pub(crate) struct Reply {
    pub att: String,
    pub worker: String,
    pub delivery: u64,
    pub kind: ReplyKind,
    /// The attempt's log lines (see [`crate::logs`]).
    pub logs: String,
}

impl Reply {
    /// The fields of the entry, for XADD.
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = vec![
            ("v", ENTRY_VERSION.as_bytes().to_vec()),
            ("att", self.att.as_bytes().to_vec()),
            ("worker", self.worker.as_bytes().to_vec()),
            ("delivery", self.delivery.to_string().into_bytes()),
            ("logs", self.logs.as_bytes().to_vec()),
        ];
        match &self.kind {
            ReplyKind::Outcome(bytes) => {
                fields.push(("kind", b"outcome".to_vec()));
                fields.push(("out", bytes.clone()));
            }
            ReplyKind::Dead { reason } => {
                fields.push(("kind", b"dead".to_vec()));
                fields.push(("reason", reason.as_bytes().to_vec()));
            }
        }
        fields
    }

    /// Reads a reply; `Err` says what is wrong with it. The attempt key is returned with the
    /// error when it could be read, so that the waiting attempt fails instead of waiting on.
    pub fn parse(
        map: &HashMap<String, RValue>,
        max_outcome: u64,
    ) -> Result<Reply, (Option<String>, String)> {
        let att = text(map, "att", MAX_NAME).map_err(|e| (None, e))?;
        let named = |e: String| (Some(att.clone()), e);
        let version = text(map, "v", 16).map_err(named)?;
        if version != ENTRY_VERSION {
            return Err(named(format!(
                "reply format version {version}, this engine reads version {ENTRY_VERSION}"
            )));
        }
        let worker = text(map, "worker", MAX_NAME).map_err(named)?;
        let delivery = number(map, "delivery").map_err(named)?;
        let logs = text(map, "logs", MAX_TEXT).map_err(named)?;
        let kind = match text(map, "kind", 16).map_err(named)?.as_str() {
            "outcome" => ReplyKind::Outcome(
                bytes(map, "out", max_outcome)
                    .map_err(|e| {
                        named(format!(
                            "{e} (the engine accepts outcomes of at most {max_outcome} bytes: raise it with RedisHandler::with_max_outcome)"
                        ))
                    })?
                    .to_vec(),
            ),
            "dead" => ReplyKind::Dead {
                reason: text(map, "reason", MAX_TEXT).map_err(named)?,
            },
            other => return Err(named(format!("unknown reply kind `{other}`"))),
        };
        Ok(Reply {
            att,
            worker,
            delivery,
            kind,
            logs,
        })
    }
}

/// A field's bytes, at most `max` of them.
pub(crate) fn bytes<'a>(
    map: &'a HashMap<String, RValue>,
    name: &str,
    max: u64,
) -> Result<&'a [u8], String> {
    let value = match map.get(name) {
        Some(RValue::BulkString(bytes)) => bytes.as_slice(),
        Some(RValue::SimpleString(text)) => text.as_bytes(),
        Some(_) => return Err(format!("field `{name}` is not a string")),
        None => return Err(format!("field `{name}` is missing")),
    };
    if value.len() as u64 > max {
        return Err(format!(
            "field `{name}` is {} bytes, over the limit of {max}",
            value.len()
        ));
    }
    Ok(value)
}

fn text(map: &HashMap<String, RValue>, name: &str, max: usize) -> Result<String, String> {
    let raw = bytes(map, name, max as u64)?;
    String::from_utf8(raw.to_vec()).map_err(|_| format!("field `{name}` is not UTF-8"))
}

fn number(map: &HashMap<String, RValue>, name: &str) -> Result<u64, String> {
    text(map, name, 20)?
        .parse()
        .map_err(|_| format!("field `{name}` is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: Vec<(&'static str, Vec<u8>)>) -> HashMap<String, RValue> {
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), RValue::BulkString(v)))
            .collect()
    }

    fn job() -> Job {
        Job {
            att: "c-1".to_owned(),
            reply: "graflow:replies:c".to_owned(),
            task: "t".to_owned(),
            inv: vec![1, 2, 3],
            timeout_ms: 5,
            inner: "direct".to_owned(),
            max_out: 99,
        }
    }

    #[test]
    fn a_job_round_trips_and_bad_jobs_say_why() {
        let parsed = Job::parse(&map(job().fields()), 10).unwrap();
        assert_eq!(
            (parsed.att.as_str(), parsed.inv.as_slice()),
            ("c-1", &[1u8, 2, 3][..])
        );
        assert_eq!((parsed.timeout_ms, parsed.max_out), (5, 99));

        let (named, why) = Job::parse(&map(job().fields()), 2).unwrap_err();
        assert!(
            named.is_some() && why.contains("over the limit of 2"),
            "{why}"
        );
        let mut fields = map(job().fields());
        fields.remove("att");
        let (named, why) = Job::parse(&fields, 10).unwrap_err();
        assert!(named.is_none() && why.contains("`att` is missing"), "{why}");
        let mut fields = map(job().fields());
        fields.insert("timeout_ms".to_owned(), RValue::Int(3));
        assert!(
            Job::parse(&fields, 10)
                .unwrap_err()
                .1
                .contains("not a string")
        );
        let mut fields = map(job().fields());
        fields.insert(
            "reply".to_owned(),
            RValue::BulkString(b"victim:key".to_vec()),
        );
        assert!(
            Job::parse(&fields, 10)
                .unwrap_err()
                .1
                .contains("not a reply stream")
        );
        let mut fields = map(job().fields());
        fields.insert("task".to_owned(), RValue::BulkString(vec![0xff, 0xfe]));
        assert!(Job::parse(&fields, 10).unwrap_err().1.contains("not UTF-8"));
    }

    #[test]
    fn replies_round_trip_and_oversized_outcomes_are_refused() {
        let reply = Reply {
            att: "c-1".to_owned(),
            worker: "w".to_owned(),
            delivery: 2,
            kind: ReplyKind::Outcome(vec![7; 10]),
            logs: "I\tt\thello".to_owned(),
        };
        let parsed = Reply::parse(&map(reply.fields()), 10).unwrap();
        assert_eq!(parsed.delivery, 2);
        assert!(matches!(parsed.kind, ReplyKind::Outcome(ref b) if b.len() == 10));
        let (att, why) = Reply::parse(&map(reply.fields()), 9).unwrap_err();
        assert_eq!(att.as_deref(), Some("c-1"));
        assert!(why.contains("over the limit of 9"), "{why}");
    }
}
