//! Worker mode's settings: its flags (parsed by graflow's own flag parser, with every other
//! `--graflow-*` flag) and their environment variables, read into a URL and [`WorkerOptions`].
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--graflow-worker URL` | `GRAFLOW_WORKER` | (worker mode off) |
//! | `--graflow-worker-queue Q` (repeat, or `a,b`) | `GRAFLOW_WORKER_QUEUES` | `default` |
//! | `--graflow-worker-concurrency N` | `GRAFLOW_WORKER_CONCURRENCY` | CPUs |
//! | `--graflow-worker-lease DURATION` | `GRAFLOW_WORKER_LEASE` | `30s` |
//! | `--graflow-worker-max-deliveries N` | `GRAFLOW_WORKER_MAX_DELIVERIES` | `3` |
//! | `--graflow-worker-name NAME` | `GRAFLOW_WORKER_NAME` | host-pid-random |
//! | `--graflow-worker-prefix P` | `GRAFLOW_WORKER_PREFIX` | `graflow` |
//!
//! Flags win over the environment. Durations: `250ms`, `30s`, `2m`, `1h`. A `rediss://` URL
//! connects with TLS, set up by `GRAFLOW_REDIS_CA_CERT`, `GRAFLOW_REDIS_CLIENT_CERT` and
//! `GRAFLOW_REDIS_CLIENT_KEY` (see [`TlsOptions`](crate::TlsOptions)).

use std::time::Duration;

use crate::RedisError;
use crate::keys::redact;
use crate::worker::WorkerOptions;

/// The environment variable that starts worker mode.
pub const WORKER_ENV: &str = "GRAFLOW_WORKER";

/// The settings of worker mode: each flag and its environment variable.
pub(super) const SETTINGS: [(&str, &str); 6] = [
    ("--graflow-worker-queue", "GRAFLOW_WORKER_QUEUES"),
    ("--graflow-worker-concurrency", "GRAFLOW_WORKER_CONCURRENCY"),
    ("--graflow-worker-lease", "GRAFLOW_WORKER_LEASE"),
    (
        "--graflow-worker-max-deliveries",
        "GRAFLOW_WORKER_MAX_DELIVERIES",
    ),
    ("--graflow-worker-name", "GRAFLOW_WORKER_NAME"),
    ("--graflow-worker-prefix", "GRAFLOW_WORKER_PREFIX"),
];

/// The flags of worker mode, for `graflow::init()` (which refuses unknown `--graflow-*` flags)
/// and `--graflow-help`.
pub(crate) const FLAGS: &[graflow_core::backend::Flag] = &[
    flag(
        "--graflow-worker",
        "URL",
        "run as a Redis worker of that server (redis://host:port/db) instead of main",
    ),
    flag(
        "--graflow-worker-queue",
        "Q",
        "worker: a queue it serves (repeat, or a,b; default `default`)",
    ),
    flag(
        "--graflow-worker-concurrency",
        "N",
        "worker: attempts at once (default: CPUs)",
    ),
    flag(
        "--graflow-worker-lease",
        "DURATION",
        "worker: idle time after which another worker takes a job over (default 30s)",
    ),
    flag(
        "--graflow-worker-max-deliveries",
        "N",
        "worker: deliveries before the dead-letter stream (default 3)",
    ),
    flag(
        "--graflow-worker-name",
        "NAME",
        "worker: its name (default host-pid-random)",
    ),
    flag(
        "--graflow-worker-prefix",
        "P",
        "worker: key prefix (default `graflow`)",
    ),
];

const fn flag(
    name: &'static str,
    value: &'static str,
    help: &'static str,
) -> graflow_core::backend::Flag {
    graflow_core::backend::Flag {
        name,
        value: Some(value),
        help,
    }
}

/// What `--graflow-worker` and its settings say, from `given` (the mode flags and their values,
/// in order, as graflow's flag parser read them: [`graflow_args`]) and `env`; `None` when not in
/// worker mode.
///
/// [`graflow_args`]: graflow_core::backend::graflow_args
pub(crate) fn parse(
    given: &[(&str, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<(String, WorkerOptions), RedisError>> {
    // Only this mode's flags (another mode's are that mode's).
    let flags: Vec<(&str, &str)> = given
        .iter()
        .filter(|(flag, _)| FLAGS.iter().any(|known| known.name == *flag))
        .map(|(flag, value)| (*flag, value.as_str()))
        .collect();
    let mut urls = flags.iter().filter(|(flag, _)| *flag == "--graflow-worker");
    let first = urls.next().map(|(_, url)| (*url).to_owned());
    if let Some((_, second)) = urls.next() {
        return Some(Err(setting(
            "--graflow-worker",
            &format!(
                "given twice (`{}` and `{}`): a worker serves one Redis server; start one worker per server",
                redact(first.as_deref().unwrap_or_default()),
                redact(second)
            ),
        )));
    }
    let Some(url) = first.or_else(|| env(WORKER_ENV)) else {
        // Settings without the mode would be ignored silently while main runs.
        return flags.first().map(|(flag, _)| {
            Err(setting(
                flag,
                "is a worker setting, but the program was not started as a worker: add --graflow-worker URL (or set GRAFLOW_WORKER), or drop the setting",
            ))
        });
    };
    Some(options(&flags, env).map(|options| (url, options)))
}

fn setting(what: &str, message: &str) -> RedisError {
    RedisError::Setting {
        setting: what.to_owned(),
        message: message.to_owned(),
    }
}

fn options(
    flags: &[(&str, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WorkerOptions, RedisError> {
    let mut options = WorkerOptions::default();
    for (flag, var) in SETTINGS {
        let given: Vec<String> = flags
            .iter()
            .filter(|(f, _)| *f == flag)
            .map(|(_, v)| (*v).to_owned())
            .collect();
        let values = if given.is_empty() {
            match env(var) {
                Some(value) => vec![value],
                None => continue,
            }
        } else {
            given
        };
        let last = values.last().cloned().unwrap_or_default();
        let number = |text: &str| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| setting(flag, &format!("`{text}` is not a whole number")))
        };
        match flag {
            "--graflow-worker-queue" => {
                options.queues = values
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--graflow-worker-concurrency" => {
                options.concurrency = usize::try_from(number(&last)?).unwrap_or(usize::MAX);
            }
            "--graflow-worker-lease" => {
                options.lease = parse_duration(&last).map_err(|m| setting(flag, &m))?;
            }
            "--graflow-worker-max-deliveries" => options.max_deliveries = number(&last)?,
            "--graflow-worker-name" => options.name = Some(last),
            "--graflow-worker-prefix" => options.prefix = last,
            _ => {}
        }
    }
    Ok(options)
}

/// `250ms`, `30s`, `2m`, `1h`, or a number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (write 250ms, 30s, 2m or 1h)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (write ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags and values as graflow's flag parser hands them over.
    fn given(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs
            .iter()
            .map(|(flag, value)| (*flag, (*value).to_owned()))
            .collect()
    }

    #[test]
    fn worker_mode_from_flags_and_environment() {
        let none = |_: &str| None;
        assert!(parse(&given(&[("--graflow-other", "x")]), &none).is_none());
        let (url, options) = parse(
            &given(&[
                ("--graflow-worker", "redis://h:1/0"),
                ("--graflow-worker-queue", "gpu,cpu"),
                ("--graflow-worker-queue", "io"),
                ("--graflow-worker-lease", "1500ms"),
                ("--graflow-worker-concurrency", "3"),
            ]),
            &none,
        )
        .unwrap()
        .unwrap();
        assert_eq!(url, "redis://h:1/0");
        assert_eq!(options.queues, ["gpu", "cpu", "io"]);
        assert_eq!(options.lease, Duration::from_millis(1500));
        assert_eq!(options.concurrency, 3);

        let env = |var: &str| match var {
            "GRAFLOW_WORKER" => Some("redis://e:2/1".to_owned()),
            "GRAFLOW_WORKER_MAX_DELIVERIES" => Some("5".to_owned()),
            "GRAFLOW_WORKER_CONCURRENCY" => Some("8".to_owned()),
            _ => None,
        };
        let (url, options) = parse(&given(&[("--graflow-worker-concurrency", "2")]), &env)
            .unwrap()
            .unwrap();
        assert_eq!(url, "redis://e:2/1");
        assert_eq!((options.max_deliveries, options.concurrency), (5, 2));

        let error = parse(
            &given(&[
                ("--graflow-worker", "u"),
                ("--graflow-worker-lease", "3 parsecs"),
            ]),
            &none,
        )
        .unwrap()
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--graflow-worker-lease") && error.contains("unknown unit"),
            "{error}"
        );
    }

    #[test]
    fn a_second_worker_url_or_settings_without_worker_mode_are_usage_errors() {
        let none = |_: &str| None;
        let error = parse(
            &given(&[
                ("--graflow-worker", "redis://:secret@h:1/0"),
                ("--graflow-worker", "redis://h:2/0"),
            ]),
            &none,
        )
        .unwrap()
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("given twice") && error.contains("redis://h:2/0"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
        let error = parse(&given(&[("--graflow-worker-concurrency", "4")]), &none)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--graflow-worker-concurrency")
                && error.contains("not started as a worker"),
            "{error}"
        );
        // With GRAFLOW_WORKER set, the same setting is the worker's.
        let env = |var: &str| (var == WORKER_ENV).then(|| "redis://e:2/1".to_owned());
        assert!(
            parse(&given(&[("--graflow-worker-concurrency", "4")]), &env)
                .unwrap()
                .is_ok()
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A flag (worker mode's, another mode's) with a value, as graflow's flag parser hands it
    /// over.
    fn flag() -> impl Strategy<Value = (&'static str, String)> {
        let names: Vec<&'static str> = FLAGS
            .iter()
            .map(|f| f.name)
            .chain(["--graflow-other"])
            .collect();
        (
            prop::sample::select(names),
            prop_oneof!["\\PC{0,12}", "[0-9.]{0,8}(ms|s|m|h|)"],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_flags_never_panic(
            given in prop::collection::vec(flag(), 0..12),
            env in prop::collection::hash_map(
                prop::sample::select(SETTINGS.iter().map(|(_, var)| *var).chain([WORKER_ENV]).collect::<Vec<_>>()),
                "\\PC{0,12}",
                0..4,
            ),
        ) {
            let lookup = |var: &str| env.get(var).cloned();
            let _ = parse(&given, &lookup);
            for (_, value) in &given {
                let _ = parse_duration(value);
            }
        }

        #[test]
        fn durations_read_back(millis in 0u64..1 << 40) {
            let read = parse_duration(&format!("{millis}ms")).unwrap();
            // Through seconds as a float: within a microsecond.
            prop_assert!(read.abs_diff(Duration::from_millis(millis)) <= Duration::from_micros(1));
            prop_assert_eq!(parse_duration(&format!(" {millis} ")), Ok(Duration::from_secs(millis)));
        }
    }
}
