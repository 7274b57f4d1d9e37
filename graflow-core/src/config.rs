//! Handler configuration: the `key = value` options of `#[task]` that the engine does not use
//! itself, kept for the task's handler to read and validate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One configuration value: a literal or a list of literals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConfigValue {
    /// A string literal.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// An array of literals.
    List(Vec<ConfigValue>),
}

impl ConfigValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ConfigValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            ConfigValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ConfigValue::Int(i) => Some(*i as f64),
            ConfigValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ConfigValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[ConfigValue]> {
        match self {
            ConfigValue::List(items) => Some(items),
            _ => None,
        }
    }

    /// The strings of a list of strings (a single string counts as a list of one).
    pub fn as_str_list(&self) -> Option<Vec<&str>> {
        match self {
            ConfigValue::Str(s) => Some(vec![s]),
            ConfigValue::List(items) => items.iter().map(ConfigValue::as_str).collect(),
            _ => None,
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigValue::Str(_) => "a string",
            ConfigValue::Int(_) => "an integer",
            ConfigValue::Float(_) => "a float",
            ConfigValue::Bool(_) => "a boolean",
            ConfigValue::List(_) => "a list",
        }
    }
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Str(s) => write!(f, "{s:?}"),
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::Float(x) => write!(f, "{x}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
            ConfigValue::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

macro_rules! config_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {$(
        impl From<$t> for ConfigValue {
            fn from(v: $t) -> Self {
                ConfigValue::$variant($conv(v))
            }
        }
    )*};
}

config_from! {
    &str => Str(str::to_owned),
    String => Str(std::convert::identity),
    i64 => Int(std::convert::identity),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    f64 => Float(std::convert::identity),
    bool => Bool(std::convert::identity),
}

impl<T: Into<ConfigValue>> From<Vec<T>> for ConfigValue {
    fn from(items: Vec<T>) -> Self {
        ConfigValue::List(items.into_iter().map(Into::into).collect())
    }
}

/// A task's handler configuration, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandlerConfig {
    entries: BTreeMap<String, ConfigValue>,
}

impl HandlerConfig {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`, replacing any previous value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<ConfigValue>) {
        self.entries.insert(key.into(), value.into());
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&ConfigValue> {
        self.entries.get(key)
    }

    /// The string at `key`, if it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(ConfigValue::as_str)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<ConfigValue> {
        self.entries.remove(key)
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ConfigValue)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys that are not in `allowed`: a handler's `validate_task` uses it to reject typos.
    pub fn unknown_keys<'a>(&'a self, allowed: &[&str]) -> Vec<&'a str> {
        self.keys().filter(|k| !allowed.contains(k)).collect()
    }
}

impl<K: Into<String>, V: Into<ConfigValue>> FromIterator<(K, V)> for HandlerConfig {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut config = HandlerConfig::new();
        for (k, v) in iter {
            config.set(k, v);
        }
        config
    }
}
