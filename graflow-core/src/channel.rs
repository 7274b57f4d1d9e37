//! The channel: a run's shared, typed key/value store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use crate::value::{Data, Value, ValueError};

/// A typed key/value store shared by every task of a run.
///
/// Give initial values per run with [`RunOptions::channel`](crate::RunOptions::channel) or
/// [`RunOptions::param`](crate::RunOptions::param);
/// tasks read and write it through [`TaskContext::channel`](crate::TaskContext::channel); the
/// final state is in [`RunReport::channel`](crate::RunReport::channel). A task parameter that
/// names no upstream task is read from the channel key of the same name.
#[derive(Default)]
pub struct Channel {
    map: RwLock<HashMap<String, Value>>,
}

impl Channel {
    /// An empty channel.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`Channel::set`].
    pub fn with<T: Data + Clone>(self, key: impl Into<String>, value: T) -> Self {
        self.set(key, value);
        self
    }

    /// Sets `key` to `value`, replacing any previous value (of any type).
    pub fn set<T: Data + Clone>(&self, key: impl Into<String>, value: T) {
        self.set_value(key, Value::new(value));
    }

    /// Sets `key` to an already type-erased value.
    pub fn set_value(&self, key: impl Into<String>, value: Value) {
        self.write().insert(key.into(), value);
    }

    /// A copy of the value at `key`; an error if it is missing or of another type.
    pub fn get<T: Data>(&self, key: &str) -> Result<T, ValueError> {
        required(key, self.try_get(key)?)
    }

    /// A copy of the value at `key`, or `None` if it is missing; an error if it has another type.
    pub fn try_get<T: Data>(&self, key: &str) -> Result<Option<T>, ValueError> {
        typed(key, self.value(key))
    }

    /// The type-erased value at `key`.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.read().get(key).cloned()
    }

    /// Removes `key`; returns whether it was set.
    pub fn delete(&self, key: &str) -> bool {
        self.write().remove(key).is_some()
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.read().contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.read().keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// Every key and its value, sorted by key.
    pub fn entries(&self) -> Vec<(String, Value)> {
        let mut entries: Vec<(String, Value)> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// An independent copy of the current state (values are shared, not copied).
    pub fn snapshot(&self) -> Channel {
        Channel {
            map: RwLock::new(self.read().clone()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Value>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Value>> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A copy of channel key `key`'s `value` as a `T`: what `get` and `try_get` of every view of a
/// channel read.
pub(crate) fn typed<T: Data>(key: &str, value: Option<Value>) -> Result<Option<T>, ValueError> {
    match value {
        Some(value) => value.copy_as(|| format!("channel key '{key}'")).map(Some),
        None => Ok(None),
    }
}

/// `value`, or the error that channel key `key` is missing.
pub(crate) fn required<T>(key: &str, value: Option<T>) -> Result<T, ValueError> {
    value.ok_or_else(|| ValueError::ChannelKeyMissing {
        key: key.to_owned(),
    })
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.read();
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_unstable();
        f.debug_map()
            .entries(keys.into_iter().map(|k| (k, &map[k])))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_get_set_delete_keys() {
        let ch = Channel::new().with("n", 3u32).with("name", "x".to_owned());
        assert_eq!(ch.get::<u32>("n").unwrap(), 3);
        assert_eq!(ch.keys(), vec!["n".to_owned(), "name".to_owned()]);
        assert!(
            ch.get::<String>("n")
                .unwrap_err()
                .to_string()
                .contains("channel key 'n'")
        );
        assert!(ch.delete("n"));
        assert!(!ch.delete("n"));
        assert!(matches!(
            ch.get::<u32>("n"),
            Err(ValueError::ChannelKeyMissing { .. })
        ));
        assert_eq!(ch.try_get::<u32>("n").unwrap(), None);
    }
}
