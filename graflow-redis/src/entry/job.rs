//! A job: one attempt's invocation, as an engine queues it and a worker reads it.

use std::collections::HashMap;

use redis::Value as RValue;

use super::fields::{ENTRY_VERSION, MAX_NAME, MAX_TASK_ID, bytes, number, text};

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::entry::fields::testing::{REPLIES, fields, map};

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

        /// Entries of any shape are parsed or refused, never a panic, and what is accepted
        /// keeps to the limits and names only a reply stream under the prefix.
        #[test]
        fn arbitrary_entries_never_panic(fields in fields(), max in 0u64..64) {
            if let Ok(job) = Job::parse(&fields, max, REPLIES) {
                prop_assert!(job.inv.len() as u64 <= max);
                prop_assert!(job.reply.starts_with(REPLIES));
            }
        }
    }
}
