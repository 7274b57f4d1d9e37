//! Entry points for the fuzz targets of `fuzz/` (compiled only under `--cfg fuzzing`, which
//! cargo-fuzz passes): each drives one decoder of outside bytes and discards the result. A
//! decoder may refuse its input; it must never panic, and never allocate beyond its limits.

use std::collections::HashMap;

use redis::Value as RValue;

use crate::entry::{Job, RawEntry, Reply, claim_reply, read_reply};

/// The reply stream prefix the seeds' jobs name (`graflow:replies:<engine>`).
pub const REPLIES: &str = "graflow:replies:";

/// Stream entries as a server sends them: the first byte chooses how the rest is read. Even: a
/// RESP reply (`redis::parse_redis_value`) read as an XREADGROUP reply, then as an XAUTOCLAIM
/// reply. Odd: the fields of one entry, names and values separated by NUL bytes. Every entry
/// whose fields read is parsed as a job and as a reply.
pub fn entries(bytes: &[u8]) {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(value) = redis::parse_redis_value(rest) else {
            return;
        };
        if let Ok(streams) = read_reply(value.clone()) {
            for (_, entries) in streams {
                entries.iter().for_each(parse_entry);
            }
        }
        if let Ok((_, entries)) = claim_reply(value) {
            entries.iter().for_each(|(entry, _)| parse_entry(entry));
        }
    } else {
        let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
        let map: HashMap<String, RValue> = parts
            .chunks_exact(2)
            .map(|pair| {
                (
                    String::from_utf8_lossy(pair[0]).into_owned(),
                    RValue::BulkString(pair[1].to_vec()),
                )
            })
            .collect();
        parse_entry(&RawEntry {
            id: "0-1".to_owned(),
            fields: Ok(map),
        });
    }
}

fn parse_entry(entry: &RawEntry) {
    let Ok(fields) = &entry.fields else {
        return;
    };
    for max in [1 << 20, 16] {
        if let Ok(job) = Job::parse(fields, max, REPLIES) {
            assert!(job.inv.len() as u64 <= max, "an invocation over the limit");
            assert!(job.reply.starts_with(REPLIES), "a reply stream elsewhere");
        }
        if let Ok(reply) = Reply::parse(fields, max) {
            assert!(reply.att.len() <= 256, "an attempt key over the limit");
        }
    }
}

/// Worker mode's reading of its flags (`mode::parse`, with `parse_duration`) on words separated
/// by NUL bytes, read as pairs of a flag and its value (as graflow's flag parser hands them
/// over; a pair whose flag is not one of worker mode's is left out); `NAME=value` words after a
/// lone `--env` are its environment.
pub fn worker_flags(bytes: &[u8]) {
    let words: Vec<String> = bytes
        .split(|&b| b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let (args, env) = match words.iter().position(|w| w == "--env") {
        Some(at) => (&words[..at], &words[at + 1..]),
        None => (&words[..], &[][..]),
    };
    let given: Vec<(&str, String)> = args
        .chunks(2)
        .filter_map(|pair| {
            let flag = crate::mode::FLAGS.iter().find(|f| f.name == pair[0])?;
            Some((flag.name, pair.get(1).cloned().unwrap_or_default()))
        })
        .collect();
    let env: HashMap<&str, &str> = env.iter().filter_map(|kv| kv.split_once('=')).collect();
    let lookup = |name: &str| env.get(name).map(|v| (*v).to_owned());
    let _ = crate::mode::parse(&given, &lookup);
    let _ = crate::mode::parse(&given, &|_: &str| None);
    for word in &words {
        let _ = crate::mode::parse_duration(word);
    }
}

/// What a worker reads off its attempt's answers list (its engine's replies to the task's
/// questions), read as hostile: a reply or nothing, never a panic.
pub fn ask_replies(bytes: &[u8]) {
    let _ = crate::worker::read_ask_reply(bytes, "1.0");
}
