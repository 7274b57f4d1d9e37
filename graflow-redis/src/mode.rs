//! Worker mode: `graflow::init()` turns the program into a worker when it was started with
//! `--graflow-worker redis://host:port/db` (or `GRAFLOW_WORKER=redis://...`).
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

use std::io::Write as _;
use std::time::Duration;

use crate::{CaptureLayer, RedisError, Worker, WorkerOptions};

/// The environment variable that starts worker mode.
pub const WORKER_ENV: &str = "GRAFLOW_WORKER";

const SETTINGS: [(&str, &str); 6] = [
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

/// Exit codes of worker mode.
const EXIT_USAGE: i32 = 64;
const EXIT_UNAVAILABLE: i32 = 69;
const EXIT_SOFTWARE: i32 = 70;

/// What `--graflow-worker` and its settings say, from `args` and `env`; `None` when not in
/// worker mode.
pub(crate) fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<(String, WorkerOptions), RedisError>> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let known = std::iter::once("--graflow-worker")
            .chain(SETTINGS.iter().map(|(flag, _)| *flag))
            .find(|flag| arg == flag || arg.starts_with(&format!("{flag}=")));
        if let Some(flag) = known {
            let value = if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
                Some(value.to_owned())
            } else {
                i += 1;
                args.get(i).cloned()
            };
            let Some(value) = value else {
                return Some(Err(setting(flag, "needs a value")));
            };
            flags.push((flag.to_owned(), value));
        }
        i += 1;
    }
    let mut urls = flags.iter().filter(|(flag, _)| flag == "--graflow-worker");
    let first = urls.next().map(|(_, url)| url.clone());
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

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn setting(what: &str, message: &str) -> RedisError {
    RedisError::Setting {
        setting: what.to_owned(),
        message: message.to_owned(),
    }
}

fn options(
    flags: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WorkerOptions, RedisError> {
    let mut options = WorkerOptions::default();
    for (flag, var) in SETTINGS {
        let given: Vec<String> = flags
            .iter()
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v.clone())
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

/// Called by `graflow::init()` (registered as a program mode): runs the worker to its end when
/// the program was started in worker mode.
pub(crate) fn enter() -> Option<i32> {
    // Only the program's `--graflow-*` arguments: its own are never read.
    let args = graflow_core::backend::graflow_args();
    let parsed = parse(&args, &|var| std::env::var(var).ok())?;
    // Programs the tasks start are not workers: the variables go, when that is sound.
    if graflow_core::backend::single_threaded() {
        // SAFETY: this process has one thread (checked just now), so no other thread can read
        // the environment while it changes, nor start meanwhile.
        unsafe {
            std::env::remove_var(WORKER_ENV);
            for (_, var) in SETTINGS {
                std::env::remove_var(var);
            }
        }
    } else if std::env::var_os(WORKER_ENV).is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "warning: graflow::init() ran after this program started threads, so {WORKER_ENV} stays in its environment and programs its tasks start inherit it (and would start as workers): call init() first in main, before any runtime starts, or use #[graflow::main]"
        );
    }
    install_logging();
    let (url, options) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // A usage error, said as the core's flag mistakes are.
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return Some(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("graflow-worker")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(target: "graflow::handlers", "cannot start the worker's runtime: {e}");
            return Some(EXIT_SOFTWARE);
        }
    };
    let result = runtime.block_on(Worker::new(url).with_options(options).run());
    runtime.shutdown_timeout(Duration::from_secs(1));
    Some(match result {
        Ok(_) => 0,
        Err(e @ (RedisError::Unreachable { .. } | RedisError::Command { .. })) => {
            tracing::error!(target: "graflow::handlers", "worker stopped: {e}");
            EXIT_UNAVAILABLE
        }
        Err(e) => {
            tracing::error!(target: "graflow::handlers", "worker stopped: {e}");
            EXIT_USAGE
        }
    })
}

/// Logs to stderr (`RUST_LOG`, default `info`) and captures each attempt's lines (info and
/// above) for its reply. A program that installed a subscriber already keeps its own.
fn install_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(filter),
        )
        .with(CaptureLayer::new().with_filter(tracing_subscriber::filter::LevelFilter::INFO));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn worker_mode_from_flags_and_environment() {
        let none = |_: &str| None;
        assert!(parse(&strings(&["--other", "x"]), &none).is_none());
        let (url, options) = parse(
            &strings(&[
                "--graflow-worker",
                "redis://h:1/0",
                "--graflow-worker-queue=gpu,cpu",
                "--graflow-worker-queue",
                "io",
                "--graflow-worker-lease",
                "1500ms",
                "--graflow-worker-concurrency=3",
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
        let (url, options) = parse(&strings(&["--graflow-worker-concurrency", "2"]), &env)
            .unwrap()
            .unwrap();
        assert_eq!(url, "redis://e:2/1");
        assert_eq!((options.max_deliveries, options.concurrency), (5, 2));

        let error = parse(
            &strings(&[
                "--graflow-worker",
                "u",
                "--graflow-worker-lease",
                "3 parsecs",
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
        assert!(
            parse(&strings(&["--graflow-worker"]), &none)
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn a_second_worker_url_or_settings_without_worker_mode_are_usage_errors() {
        let none = |_: &str| None;
        let error = parse(
            &strings(&[
                "--graflow-worker",
                "redis://:secret@h:1/0",
                "--graflow-worker=redis://h:2/0",
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
        let error = parse(&strings(&["--graflow-worker-concurrency", "4"]), &none)
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
            parse(&strings(&["--graflow-worker-concurrency", "4"]), &env)
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("rediss://user:pw@h:1/0"), "rediss://user:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn arg() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "--graflow-worker",
                "--graflow-worker-queue",
                "--graflow-worker-concurrency",
                "--graflow-worker-lease",
                "--graflow-worker-max-deliveries",
                "--graflow-worker-name",
                "--graflow-worker-prefix",
                "--graflow-worker-lease=",
                "--",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,12}",
            "[0-9.]{0,8}(ms|s|m|h|)",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_flags_never_panic(
            args in prop::collection::vec(arg(), 0..12),
            env in prop::collection::hash_map(
                prop::sample::select(SETTINGS.iter().map(|(_, var)| *var).chain([WORKER_ENV]).collect::<Vec<_>>()),
                "\\PC{0,12}",
                0..4,
            ),
        ) {
            let lookup = |var: &str| env.get(var).cloned();
            let _ = parse(&args, &lookup);
            for arg in &args {
                let _ = parse_duration(arg);
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
