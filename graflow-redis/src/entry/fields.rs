//! The format every entry shares: its version, the limits of its fields, and the readers of a
//! field that check its presence, type and size.

use std::collections::HashMap;

use redis::Value as RValue;

/// Version of the entry format (the `v` field).
pub(crate) const ENTRY_VERSION: &str = "1";

/// An attempt key, a reply stream key or a worker name is at most this long.
pub(super) const MAX_NAME: usize = 256;
/// A task id in an entry is at most this long.
pub(super) const MAX_TASK_ID: usize = 4096;
/// A reason or log text in an entry is at most this long.
pub(super) const MAX_TEXT: usize = 1 << 20;

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

pub(super) fn text(
    map: &HashMap<String, RValue>,
    name: &str,
    max: usize,
) -> Result<String, String> {
    let raw = bytes(map, name, max as u64)?;
    String::from_utf8(raw.to_vec()).map_err(|_| format!("field `{name}` is not UTF-8"))
}

pub(super) fn number(map: &HashMap<String, RValue>, name: &str) -> Result<u64, String> {
    text(map, name, 20)?
        .parse()
        .map_err(|_| format!("field `{name}` is not a number"))
}

/// What the tests of entries share: fields as a stream read gives them, and values of any shape.
#[cfg(test)]
pub(super) mod testing {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use redis::Value as RValue;

    /// The reply stream prefix of the tests' jobs.
    pub(crate) const REPLIES: &str = "graflow:replies:";

    /// Fields as a stream read gives them.
    pub(crate) fn map(fields: Vec<(&'static str, Vec<u8>)>) -> HashMap<String, RValue> {
        fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), RValue::BulkString(v)))
            .collect()
    }

    /// A RESP value of any shape, a few levels deep.
    pub(crate) fn value() -> impl Strategy<Value = RValue> {
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
    pub(crate) fn fields() -> impl Strategy<Value = HashMap<String, RValue>> {
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
}
