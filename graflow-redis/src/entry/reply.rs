//! A reply: how an attempt ended, as a worker sends it and an engine reads it.

use std::collections::HashMap;

use redis::Value as RValue;

use super::fields::{ENTRY_VERSION, MAX_NAME, MAX_TEXT, bytes, number, text};

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
    /// The task asks a person (it still runs): the engine answers on the attempt's answers
    /// list.
    Ask {
        /// Which question of the attempt.
        key: String,
        /// The request, JSON (read by the core, bounded here).
        request: String,
    },
}

/// The longest question key.
pub(crate) const MAX_ASK_KEY: usize = 64;

/// One attempt's reply, as an engine reads it off its reply stream.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) att: String,
    pub(crate) worker: String,
    pub(crate) delivery: u64,
    pub(crate) kind: ReplyKind,
    /// The attempt's log lines (see [`crate::logs`]).
    pub(crate) logs: String,
}

impl Reply {
    /// The fields of the entry, for XADD.
    pub(crate) fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
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
            ReplyKind::Ask { key, request } => {
                fields.push(("kind", b"ask".to_vec()));
                fields.push(("key", key.as_bytes().to_vec()));
                fields.push(("request", request.as_bytes().to_vec()));
            }
        }
        fields
    }

    /// Reads a reply; `Err` says what is wrong with it. The attempt key is returned with the
    /// error when it could be read, so that the waiting attempt fails instead of waiting on.
    pub(crate) fn parse(
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
            "ask" => ReplyKind::Ask {
                key: text(map, "key", MAX_ASK_KEY).map_err(named)?,
                request: text(
                    map,
                    "request",
                    usize::try_from(graflow_protocol::frame::MAX_FEEDBACK_HEAD).unwrap_or(usize::MAX),
                )
                .map_err(named)?,
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::entry::fields::testing::{fields, map};

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
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn replies_round_trip(
            att in "[a-z0-9-]{1,40}",
            worker in "\\PC{0,20}",
            delivery in any::<u64>(),
            logs in "\\PC{0,64}",
            outcome in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
            reason in "\\PC{0,32}",
            ask in any::<bool>(),
        ) {
            let kind = match outcome {
                _ if ask => ReplyKind::Ask { key: "1.0".to_owned(), request: reason },
                Some(bytes) => ReplyKind::Outcome(bytes),
                None => ReplyKind::Dead { reason },
            };
            let reply = Reply { att, worker, delivery, kind, logs };
            let back = Reply::parse(&map(reply.fields()), 256).unwrap();
            prop_assert_eq!(back.fields(), reply.fields());
        }

        /// Entries of any shape are parsed or refused, never a panic, and an outcome accepted
        /// keeps to the limit.
        #[test]
        fn arbitrary_entries_never_panic(fields in fields(), max in 0u64..64) {
            if let Ok(Reply { kind: ReplyKind::Outcome(bytes), .. }) = Reply::parse(&fields, max) {
                prop_assert!(bytes.len() as u64 <= max);
            }
        }
    }
}
