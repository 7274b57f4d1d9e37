//! [`TaskChannel`]: the run's channel as one attempt of a task sees it. What the attempt
//! writes is its own until it succeeds: the run's channel takes its writes then, in the order
//! they were made, and a failed attempt's writes are discarded. The same rule holds on every
//! handler (out of process, a runner sends its writes with its outcome, applied only on
//! success).

use super::access::BodyAccess;
use crate::value::{Data, Value, ValueError};

/// The run's channel as this attempt sees it: the run's values with this attempt's own writes
/// on top. Get it with [`TaskContext::channel`](crate::TaskContext::channel).
#[derive(Clone, Copy)]
pub struct TaskChannel<'a> {
    access: &'a dyn BodyAccess,
}

impl std::fmt::Debug for TaskChannel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskChannel")
            .field("keys", &self.keys())
            .finish()
    }
}

impl<'a> TaskChannel<'a> {
    pub(crate) fn new(access: &'a dyn BodyAccess) -> Self {
        TaskChannel { access }
    }

    /// Sets `key` to `value` (replacing any previous value, of any type) for this attempt,
    /// and for the run once the attempt succeeds.
    pub fn set<T: Data + Clone>(&self, key: impl Into<String>, value: T) {
        self.set_value(key, Value::new(value));
    }

    /// Sets `key` to an already type-erased value.
    pub fn set_value(&self, key: impl Into<String>, value: Value) {
        self.access.channel_write(key.into(), Some(value));
    }

    /// Removes `key` (for the run once the attempt succeeds); returns whether it was set.
    pub fn delete(&self, key: &str) -> bool {
        let was = self.contains(key);
        self.access.channel_write(key.to_owned(), None);
        was
    }

    /// A copy of the value at `key`; an error if it is missing or of another type.
    pub fn get<T: Data>(&self, key: &str) -> Result<T, ValueError> {
        crate::channel::required(key, self.try_get(key)?)
    }

    /// A copy of the value at `key`, or `None` if it is missing; an error if it has another type.
    pub fn try_get<T: Data>(&self, key: &str) -> Result<Option<T>, ValueError> {
        crate::channel::typed(key, self.value(key))
    }

    /// The type-erased value at `key`.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.access.channel_value(key)
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    /// Every key and its value, sorted by key.
    pub fn entries(&self) -> Vec<(String, Value)> {
        self.access.channel_entries()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.entries().into_iter().map(|(k, _)| k).collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

/// `entries` (sorted by key) with `writes` applied in order (`None`: deleted), sorted.
pub(crate) fn overlay(
    mut entries: Vec<(String, Value)>,
    writes: &[(String, Option<Value>)],
) -> Vec<(String, Value)> {
    for (key, write) in writes {
        match (entries.binary_search_by(|(k, _)| k.cmp(key)), write) {
            (Ok(at), Some(value)) => entries[at].1 = value.clone(),
            (Ok(at), None) => {
                entries.remove(at);
            }
            (Err(at), Some(value)) => entries.insert(at, (key.clone(), value.clone())),
            (Err(_), None) => {}
        }
    }
    entries
}
