//! An environment variable a task gives its container: `KEY=value`, or `KEY` to pass this
//! process's value; read from the `env` option, resolved when the container is made. Values are
//! secrets as far as this crate knows: never logged, never in a message.

/// An environment variable for the container. Values are never logged or shown in errors.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvVar {
    /// `K=V`.
    Value(String, String),
    /// `K`: the value this process has when the task starts.
    FromHost(String),
}

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvVar::Value(k, _) => write!(f, "{k}=<redacted>"),
            EnvVar::FromHost(k) => write!(f, "{k} (from the host)"),
        }
    }
}

impl EnvVar {
    /// Parses `K=V` or `K`.
    pub fn parse(spec: &str) -> Result<EnvVar, String> {
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (spec, None),
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Show the key only: the value may be a secret.
            return Err(format!(
                "environment entry with key {key:?} is not \"KEY=value\" or \"KEY\" (keys are letters, digits and _)"
            ));
        }
        Ok(match value {
            Some(v) => EnvVar::Value(key.to_owned(), v.to_owned()),
            None => EnvVar::FromHost(key.to_owned()),
        })
    }

    /// The variable's name.
    pub fn key(&self) -> &str {
        match self {
            EnvVar::Value(k, _) | EnvVar::FromHost(k) => k,
        }
    }
}

/// `vars` as the container takes them (`K=V`), host values resolved now.
pub(super) fn resolve(vars: &[EnvVar]) -> Result<Vec<String>, String> {
    vars.iter()
        .map(|var| match var {
            EnvVar::Value(k, v) => Ok(format!("{k}={v}")),
            EnvVar::FromHost(k) => std::env::var(k).map(|v| format!("{k}={v}")).map_err(|_| {
                format!("`env` passes {k} from the host, but this process has no {k} set")
            }),
        })
        .collect()
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text is an environment entry or says why not.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = EnvVar::parse(&text);
        }
    }
}
