//! Entry points for the fuzz targets of `fuzz/` (compiled only under `--cfg fuzzing`, which
//! cargo-fuzz passes): each drives one parser of outside text and discards the result. A
//! parser may refuse its input; it must never panic.

use graflow_core::{ConfigValue, HandlerConfig};

use crate::options::{DockerOptions, EnvVar, Volume, parse_memory};

/// A configuration value written as text: `[a,b]` a list, `true`/`false`, a whole number, a
/// number, else a string.
fn value(text: &str) -> ConfigValue {
    if let Some(list) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return ConfigValue::List(list.split(',').map(value).collect());
    }
    if let Ok(b) = text.parse::<bool>() {
        return ConfigValue::Bool(b);
    }
    if let Ok(n) = text.parse::<i64>() {
        return ConfigValue::Int(n);
    }
    if let Ok(x) = text.parse::<f64>() {
        return ConfigValue::Float(x);
    }
    ConfigValue::Str(text.to_owned())
}

/// The docker options of a task: every line `key=value` of the input is a configuration entry
/// (see [`value`]), merged over the defaults and over sandbox defaults and validated as
/// `DockerOptions::merged` does before a run; and every line as a volume, an environment entry
/// and a memory size.
pub fn options(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut config = HandlerConfig::new();
    for line in text.lines() {
        let _ = Volume::parse(line);
        if let Ok(volume) = Volume::parse(line) {
            assert_eq!(Volume::parse(&volume.bind()).as_ref(), Ok(&volume));
        }
        let _ = EnvVar::parse(line);
        let _ = parse_memory(line);
        if let Some((key, v)) = line.split_once('=') {
            config.set(key, value(v));
        }
    }
    for defaults in [
        DockerOptions::default(),
        DockerOptions::image("python:3.11-slim").with_sandbox(true),
    ] {
        if let Ok(options) = defaults.merged(&config) {
            let _ = options.resolved_env();
            let _ = options.label_map();
        }
    }
}
