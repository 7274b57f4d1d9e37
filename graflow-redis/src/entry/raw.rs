//! Stream entries as Redis sends them (XREADGROUP, XRANGE, the claim script), read by hand so
//! that one hostile entry makes only itself malformed, never the whole read.

use std::collections::HashMap;

use redis::Value as RValue;

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

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use crate::entry::fields::testing::value;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

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
}
