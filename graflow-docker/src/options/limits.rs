//! The resources a container may use: memory sizes (`memory = "512m"`), CPU shares
//! (`cpus = 1.5`, in Docker's nanocpus), GPU requests, and the limits `sandbox = true` sets
//! when the task does not.

use std::ops::RangeInclusive;

/// Docker's smallest memory limit: 6 MiB.
pub(crate) const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The `cpus` a task may ask for: from Docker's smallest share to a bound far above any host
/// (the daemon also refuses more CPUs than its host has).
pub(crate) const CPUS: RangeInclusive<f64> = 0.01..=1024.0;

/// The memory limit of `sandbox = true` when neither the task nor the handler sets `memory`.
pub(crate) const SANDBOX_MEMORY: i64 = 512 * 1024 * 1024;

/// The CPU limit of `sandbox = true` when neither the task nor the handler sets `cpus`.
pub(crate) const SANDBOX_CPUS: f64 = 1.0;

/// GPUs to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Gpus {
    /// All GPUs.
    All,
    /// This many.
    Count(u32),
}

/// Parses `"512m"`, `"2g"`, `"1024k"`, `"1000000"` (bytes).
pub(crate) fn parse_memory(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => t.split_at(at),
        None => (t.as_str(), ""),
    };
    let scale: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "memory {text:?}: use a number with b, k, m or g, e.g. \"512m\""
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("memory {text:?}: use a number with b, k, m or g, e.g. \"512m\""))?;
    let bytes = value * scale;
    if bytes >= i64::MAX as f64 {
        return Err(format!(
            "memory {text:?} is too large: a limit is at most 8 EiB (8589934591g)"
        ));
    }
    if bytes < MIN_MEMORY as f64 {
        return Err(format!(
            "memory {text:?}: Docker needs at least 6 MiB (\"6m\")"
        ));
    }
    Ok(bytes as i64)
}

/// `cpus` in the nanocpus Docker takes, computed without saturating.
pub(crate) fn nano_cpus(cpus: f64) -> Result<i64, String> {
    if !CPUS.contains(&cpus) {
        return Err(format!(
            "`cpus` is {cpus}, outside {} to {} (fractions allowed, e.g. 1.5)",
            CPUS.start(),
            CPUS.end()
        ));
    }
    let nanos = (cpus * 1e9).round();
    if nanos >= 1.0 && nanos < i64::MAX as f64 {
        Ok(nanos as i64)
    } else {
        Err(format!("`cpus` {cpus} has no nanocpu equivalent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanocpus_are_exact() {
        assert_eq!(nano_cpus(1.5), Ok(1_500_000_000));
        assert_eq!(nano_cpus(0.01), Ok(10_000_000));
        assert_eq!(nano_cpus(1024.0), Ok(1_024_000_000_000));
        assert!(nano_cpus(f64::INFINITY).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn memory_reads_back(mebibytes in 6i64..1 << 20) {
            prop_assert_eq!(parse_memory(&format!("{mebibytes}m")), Ok(mebibytes << 20));
            prop_assert_eq!(parse_memory(&format!("{}", mebibytes << 20)), Ok(mebibytes << 20));
        }

        /// Any text is a memory size of at least the minimum, or says why not.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            if let Ok(bytes) = parse_memory(&text) {
                prop_assert!(bytes >= MIN_MEMORY);
            }
        }
    }
}
