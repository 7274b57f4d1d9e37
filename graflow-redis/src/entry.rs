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
    pub(crate) att: String,
    /// The stream the outcome goes to.
    pub(crate) reply: String,
    /// The task id (for logs and the dead-letter stream).
    pub(crate) task: String,
    /// The invocation frame (runner protocol).
    pub(crate) inv: Vec<u8>,
    /// The attempt's deadline in milliseconds from its start on the worker; 0: none.
    pub(crate) timeout_ms: u64,
    /// The handler the worker runs the task through.
    pub(crate) inner: String,
    /// The largest outcome the engine accepts, in bytes.
    pub(crate) max_out: u64,
    /// The engine's liveness key (`<prefix>:engine:<engine>`); `None` from an engine that
    /// keeps none (an older one): its jobs always run.
    pub(crate) engine: Option<String>,
    /// The engine's build id: only a worker of that build takes the job. `None` from an older
    /// engine: any worker takes it (and refuses an invocation of another build).
    pub(crate) build: Option<String>,
}

impl Job {
    /// The fields of the entry, for XADD.
    pub(crate) fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = vec![
            ("v", ENTRY_VERSION.as_bytes().to_vec()),
            ("att", self.att.as_bytes().to_vec()),
            ("reply", self.reply.as_bytes().to_vec()),
            ("task", self.task.as_bytes().to_vec()),
            ("timeout_ms", self.timeout_ms.to_string().into_bytes()),
            ("inner", self.inner.as_bytes().to_vec()),
            ("max_out", self.max_out.to_string().into_bytes()),
            ("inv", self.inv.clone()),
        ];
        if let Some(engine) = &self.engine {
            fields.push(("engine", engine.as_bytes().to_vec()));
        }
        if let Some(build) = &self.build {
            fields.push(("build", build.as_bytes().to_vec()));
        }
        fields
    }

    /// Reads a job; `Err` says what is wrong with the entry. With `Err((Some(att, reply), _))`
    /// the entry names where a refusal can be sent.
    /// `replies` is the prefix of every reply stream (`<prefix>:replies:`): a job may name only
    /// such a stream, and only an attempt of the engine that owns it (`<engine>-<nonce>`), so a
    /// hostile job can neither write elsewhere nor answer for another engine's attempts.
    pub(crate) fn parse(
        map: &HashMap<String, RValue>,
        max_invocation: u64,
        replies: &str,
    ) -> Result<Job, (Option<(String, String)>, String)> {
        let bare = |e: String| (None, e);
        let version = text(map, "v", 16).map_err(bare)?;
        let att = text(map, "att", MAX_NAME).map_err(bare)?;
        let reply = text(map, "reply", MAX_NAME).map_err(bare)?;
        let engine = reply.strip_prefix(replies).unwrap_or_default();
        if engine.is_empty() {
            return Err((
                None,
                format!("`reply` is not a reply stream under `{replies}`: `{reply}`"),
            ));
        }
        if att
            .strip_prefix(engine)
            .and_then(|rest| rest.strip_prefix('-'))
            // Exactly the form the handler writes, `<engine>-<nonce as 16 hex digits>`: an engine
            // whose name is a prefix of another's cannot claim that one's attempts.
            .is_none_or(|nonce| {
                nonce.len() != 16
                    || !nonce
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
        {
            return Err((
                None,
                format!("attempt `{att}` is not one of the engine that owns `{reply}`"),
            ));
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
        // Only the liveness key of the engine that owns the reply stream: a hostile job cannot
        // make a worker drop it by naming a key that does not exist.
        let engine = if map.contains_key("engine") {
            let key = text(map, "engine", MAX_NAME).map_err(named)?;
            let expected = format!(
                "{}engine:{engine}",
                replies.strip_suffix("replies:").unwrap_or(replies)
            );
            if key != expected {
                return Err(named(format!(
                    "`engine` is not the liveness key of the engine that owns `{reply}`: `{key}`"
                )));
            }
            Some(key)
        } else {
            None
        };
        let build = if map.contains_key("build") {
            Some(text(map, "build", MAX_NAME).map_err(named)?)
        } else {
            None
        };
        Ok(Job {
            att,
            reply,
            task,
            inv,
            timeout_ms,
            inner,
            max_out,
            engine,
            build,
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
            att: "c-00000000000000a1".to_owned(),
            reply: "graflow:replies:c".to_owned(),
            task: "t".to_owned(),
            inv: vec![1, 2, 3],
            timeout_ms: 5,
            inner: "direct".to_owned(),
            max_out: 99,
            engine: Some("graflow:engine:c".to_owned()),
            build: Some("b1".to_owned()),
        }
    }

    #[test]
    fn a_job_round_trips_and_bad_jobs_say_why() {
        let replies = "graflow:replies:";
        let parsed = Job::parse(&map(job().fields()), 10, replies).unwrap();
        assert_eq!(
            (parsed.att.as_str(), parsed.inv.as_slice()),
            ("c-00000000000000a1", &[1u8, 2, 3][..])
        );
        assert_eq!((parsed.timeout_ms, parsed.max_out), (5, 99));
        assert_eq!(parsed.engine.as_deref(), Some("graflow:engine:c"));
        assert_eq!(parsed.build.as_deref(), Some("b1"));

        let (named, why) = Job::parse(&map(job().fields()), 2, replies).unwrap_err();
        assert!(
            named.is_some() && why.contains("over the limit of 2"),
            "{why}"
        );
        let mut fields = map(job().fields());
        fields.remove("att");
        let (named, why) = Job::parse(&fields, 10, replies).unwrap_err();
        assert!(named.is_none() && why.contains("`att` is missing"), "{why}");
        let mut fields = map(job().fields());
        fields.insert("att".to_owned(), RValue::BulkString(b"victim-1".to_vec()));
        assert!(
            Job::parse(&fields, 10, replies)
                .unwrap_err()
                .1
                .contains("not one of the engine")
        );
        let mut fields = map(job().fields());
        fields.insert("timeout_ms".to_owned(), RValue::Int(3));
        assert!(
            Job::parse(&fields, 10, replies)
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
            Job::parse(&fields, 10, replies)
                .unwrap_err()
                .1
                .contains("not a reply stream")
        );
        let mut fields = map(job().fields());
        fields.insert(
            "engine".to_owned(),
            RValue::BulkString(b"graflow:engine:other".to_vec()),
        );
        assert!(
            Job::parse(&fields, 10, replies)
                .unwrap_err()
                .1
                .contains("not the liveness key")
        );
        let mut fields = map(job().fields());
        fields.remove("engine");
        assert!(Job::parse(&fields, 10, replies).unwrap().engine.is_none());
        let mut fields = map(job().fields());
        fields.insert("task".to_owned(), RValue::BulkString(vec![0xff, 0xfe]));
        assert!(
            Job::parse(&fields, 10, replies)
                .unwrap_err()
                .1
                .contains("not UTF-8")
        );
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

/// One stream entry as read off Redis: its id, and its fields or why they cannot be read (a
/// field name that is not UTF-8, a reply of the wrong shape). Parsed by hand from the raw
/// reply, so that one hostile entry makes only itself malformed, never the whole read.
#[derive(Debug)]
pub(crate) struct RawEntry {
    pub(crate) id: String,
    pub(crate) fields: Result<HashMap<String, RValue>, BadEntry>,
}

/// Why an entry's fields cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadEntry {
    /// The entry has no fields: it was deleted from the stream after it was delivered (XDEL,
    /// trimming). Nothing to run or apply; not malformed.
    Deleted,
    /// The fields are not what a graflow entry holds.
    Malformed(&'static str),
}

impl std::fmt::Display for BadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadEntry::Deleted => f.write_str("the entry has no fields (deleted from the stream)"),
            BadEntry::Malformed(why) => f.write_str(why),
        }
    }
}

fn text_of(value: &RValue) -> Option<String> {
    match value {
        RValue::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        RValue::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn items(value: RValue) -> Option<Vec<RValue>> {
    match value {
        RValue::Array(items) | RValue::Set(items) => Some(items),
        _ => None,
    }
}

/// `[id, [field, value, ...]]`; `None` when even the id cannot be read (nothing can be done
/// with such an entry, not even acknowledging it).
fn raw_entry(value: RValue) -> Option<RawEntry> {
    let mut parts = items(value)?.into_iter();
    let id = text_of(&parts.next()?)?;
    let fields = match parts.next() {
        None | Some(RValue::Nil) => Err(BadEntry::Deleted),
        Some(list) => match items(list) {
            None => Err(BadEntry::Malformed("the entry's fields are not a list")),
            Some(list) if list.len() % 2 != 0 => {
                Err(BadEntry::Malformed("the entry's fields are not pairs"))
            }
            Some(list) => {
                let mut map = HashMap::with_capacity(list.len() / 2);
                let mut pairs = list.into_iter();
                let mut bad = None;
                while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
                    match text_of(&name) {
                        Some(name) => {
                            map.insert(name, value);
                        }
                        None => {
                            bad = Some(BadEntry::Malformed("a field name is not UTF-8 text"));
                        }
                    }
                }
                bad.map_or(Ok(map), Err)
            }
        },
    };
    Some(RawEntry { id, fields })
}

/// An XREAD or XREADGROUP reply: nil (nothing within the BLOCK time), or per stream its key
/// and entries (RESP2 arrays or a RESP3 map).
pub(crate) fn read_reply(value: RValue) -> Result<Vec<(String, Vec<RawEntry>)>, String> {
    let streams: Vec<(RValue, RValue)> = match value {
        RValue::Nil => return Ok(Vec::new()),
        RValue::Map(pairs) => pairs,
        RValue::Array(list) => list
            .into_iter()
            .filter_map(|stream| {
                let mut parts = items(stream)?.into_iter();
                Some((parts.next()?, parts.next()?))
            })
            .collect(),
        other => return Err(format!("unexpected reply to a stream read: {other:?}")),
    };
    Ok(streams
        .into_iter()
        .filter_map(|(key, entries)| {
            let key = text_of(&key)?;
            let entries = items(entries)?.into_iter().filter_map(raw_entry).collect();
            Some((key, entries))
        })
        .collect())
}

/// An XRANGE reply: its entries (an entry deleted meanwhile is simply absent).
pub(crate) fn range_reply(value: RValue) -> Vec<RawEntry> {
    items(value)
        .unwrap_or_default()
        .into_iter()
        .filter_map(raw_entry)
        .collect()
}

/// A [`CLAIM`](crate::scripts::CLAIM) reply: the next start, and the entries taken with their
/// delivery counts.
pub(crate) fn claim_reply(value: RValue) -> Result<(String, Vec<(RawEntry, u64)>), String> {
    let mut parts = items(value)
        .ok_or_else(|| "unexpected reply to the claim script".to_owned())?
        .into_iter();
    let cursor = parts
        .next()
        .as_ref()
        .and_then(text_of)
        .ok_or_else(|| "the claim script gave no cursor".to_owned())?;
    let entries = parts.next().and_then(items).unwrap_or_default();
    let deliveries = parts.next().and_then(items).unwrap_or_default();
    Ok((
        cursor,
        entries
            .into_iter()
            .zip(deliveries)
            .filter_map(|(entry, delivery)| {
                let delivery = match delivery {
                    RValue::Int(n) => u64::try_from(n).ok()?,
                    _ => return None,
                };
                Some((raw_entry(entry)?, delivery))
            })
            .filter(|(entry, _)| !matches!(entry.fields, Err(BadEntry::Deleted)))
            .collect(),
    ))
}

#[cfg(test)]
mod raw_tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> RValue {
        RValue::BulkString(bytes.to_vec())
    }

    #[test]
    fn one_hostile_entry_does_not_poison_a_read() {
        let good = RValue::Array(vec![
            bulk(b"1-0"),
            RValue::Array(vec![bulk(b"v"), bulk(b"1")]),
        ]);
        let bad_name = RValue::Array(vec![
            bulk(b"2-0"),
            RValue::Array(vec![bulk(b"\xff"), bulk(b"x")]),
        ]);
        let odd = RValue::Array(vec![bulk(b"3-0"), RValue::Array(vec![bulk(b"v")])]);
        let no_id = RValue::Int(7);
        let reply = RValue::Array(vec![RValue::Array(vec![
            bulk(b"q"),
            RValue::Array(vec![good, bad_name, odd, no_id]),
        ])]);
        let streams = read_reply(reply).unwrap();
        assert_eq!(streams.len(), 1);
        let entries = &streams[0].1;
        assert_eq!(entries.len(), 3);
        assert!(entries[0].fields.is_ok());
        assert!(
            entries[1]
                .fields
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        assert!(
            entries[2]
                .fields
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("pairs")
        );
        assert!(read_reply(RValue::Nil).unwrap().is_empty());

        let claimed = RValue::Array(vec![
            bulk(b"(5-0"),
            RValue::Array(vec![
                RValue::Array(vec![
                    bulk(b"4-0"),
                    RValue::Array(vec![bulk(b"\xfe"), bulk(b"")]),
                ]),
                RValue::Array(vec![bulk(b"4-1"), RValue::Nil]),
            ]),
            RValue::Array(vec![RValue::Int(1), RValue::Int(3)]),
        ]);
        let (cursor, entries) = claim_reply(claimed).unwrap();
        assert_eq!(cursor, "(5-0");
        assert_eq!(entries.len(), 1, "a vanished entry is left out");
        assert_eq!(entries[0].1, 1);
        assert_eq!(
            entries[0].0.fields.as_ref().unwrap_err(),
            &BadEntry::Malformed("a field name is not UTF-8 text"),
            "a malformed entry is kept (it goes to the dead letters), a deleted one is not"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const REPLIES: &str = "graflow:replies:";

    fn map(fields: Vec<(&'static str, Vec<u8>)>) -> HashMap<String, RValue> {
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), RValue::BulkString(v)))
            .collect()
    }

    /// A RESP value of any shape, a few levels deep.
    fn value() -> impl Strategy<Value = RValue> {
        let leaf = prop_oneof![
            Just(RValue::Nil),
            any::<i64>().prop_map(RValue::Int),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(RValue::BulkString),
            "[a-z0-9:-]{0,12}".prop_map(RValue::SimpleString),
            prop::sample::select(vec!["v", "att", "reply", "kind", "out", "inv", "1", "0-1"])
                .prop_map(|s| RValue::BulkString(s.as_bytes().to_vec())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(RValue::Array),
                prop::collection::vec(inner.clone(), 0..4).prop_map(RValue::Set),
                prop::collection::vec((inner.clone(), inner), 0..4).prop_map(RValue::Map),
            ]
        })
    }

    /// Fields named like a job's or a reply's (or not), of any value.
    fn fields() -> impl Strategy<Value = HashMap<String, RValue>> {
        prop::collection::hash_map(
            prop_oneof![
                prop::sample::select(vec![
                    "v",
                    "att",
                    "reply",
                    "task",
                    "timeout_ms",
                    "inner",
                    "max_out",
                    "inv",
                    "worker",
                    "delivery",
                    "logs",
                    "kind",
                    "out",
                    "reason",
                ])
                .prop_map(str::to_owned),
                "\\PC{0,6}",
            ],
            value(),
            0..16,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn jobs_round_trip(
            engine in "[a-z0-9]{1,12}",
            nonce in any::<u64>(),
            task in "\\PC{0,32}",
            inv in prop::collection::vec(any::<u8>(), 0..256),
            timeout_ms in any::<u64>(),
            inner in "[a-z]{0,12}",
            max_out in any::<u64>(),
            live in any::<bool>(),
            build in prop::option::of("[0-9a-f]{0,40}"),
        ) {
            let job = Job {
                att: format!("{engine}-{nonce:016x}"),
                reply: format!("{REPLIES}{engine}"),
                task, inv, timeout_ms, inner, max_out,
                engine: live.then(|| format!("graflow:engine:{engine}")),
                build,
            };
            let back = Job::parse(&map(job.fields()), 256, REPLIES).unwrap();
            prop_assert_eq!(back.fields(), job.fields());
        }

        #[test]
        fn replies_round_trip(
            att in "[a-z0-9-]{1,40}",
            worker in "\\PC{0,20}",
            delivery in any::<u64>(),
            logs in "\\PC{0,64}",
            outcome in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
            reason in "\\PC{0,32}",
        ) {
            let kind = match outcome {
                Some(bytes) => ReplyKind::Outcome(bytes),
                None => ReplyKind::Dead { reason },
            };
            let reply = Reply { att, worker, delivery, kind, logs };
            let back = Reply::parse(&map(reply.fields()), 256).unwrap();
            prop_assert_eq!(back.fields(), reply.fields());
        }

        /// Entries of any shape are parsed or refused, never a panic, and what is accepted
        /// keeps to the limits and names only a reply stream under the prefix.
        #[test]
        fn arbitrary_entries_never_panic(fields in fields(), max in 0u64..64) {
            if let Ok(job) = Job::parse(&fields, max, REPLIES) {
                prop_assert!(job.inv.len() as u64 <= max);
                prop_assert!(job.reply.starts_with(REPLIES));
            }
            if let Ok(Reply { kind: ReplyKind::Outcome(bytes), .. }) = Reply::parse(&fields, max) {
                prop_assert!(bytes.len() as u64 <= max);
            }
        }

        /// Stream read replies of any shape, and RESP bytes of any kind, never panic.
        #[test]
        fn arbitrary_stream_replies_never_panic(
            value in value(),
            bytes in prop::collection::vec(any::<u8>(), 0..128),
        ) {
            let _ = read_reply(value.clone());
            let _ = claim_reply(value);
            if let Ok(value) = redis::parse_redis_value(&bytes) {
                let _ = read_reply(value.clone());
                let _ = claim_reply(value);
            }
        }
    }
}
