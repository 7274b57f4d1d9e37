//! Worker mode: `graflow::init()` turns the program into a worker when it was started with
//! `--graflow-worker redis://host:port/db` (or `GRAFLOW_WORKER=redis://...`): its settings are
//! read (`settings.rs`), then the worker runs here to its end, logging to stderr, and the
//! process exits with a code that says how it ended.

mod settings;

use std::io::Write as _;
use std::time::Duration;

pub(crate) use settings::FLAGS;
pub use settings::WORKER_ENV;
#[cfg(fuzzing)]
pub(crate) use settings::{parse, parse_duration};

use crate::RedisError;
use crate::logs::CaptureLayer;
use crate::worker::Worker;

/// Exit code of a usage error (`EX_USAGE`), and of a worker that stopped on a bad setting.
const EXIT_USAGE: i32 = 64;
/// Exit code of a worker that lost Redis (`EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: i32 = 69;
/// Exit code of a worker that could not start its runtime (`EX_SOFTWARE`).
const EXIT_SOFTWARE: i32 = 70;

/// Called by `graflow::init()` (registered as a program mode): runs the worker to its end when
/// the program was started in worker mode.
pub(crate) fn enter() -> Option<i32> {
    // This mode's flags, as `init()` parsed them with every other `--graflow-*` flag (the
    // program's own arguments are never read).
    let given = graflow_core::backend::graflow_args();
    let parsed = settings::parse(&given, &|var| std::env::var(var).ok())?;
    // Programs the tasks start are not workers: the variables go, when that is sound.
    if graflow_core::backend::single_threaded() {
        // SAFETY: this process has one thread (checked just now), so no other thread can read
        // the environment while it changes, nor start meanwhile.
        unsafe {
            std::env::remove_var(WORKER_ENV);
            for (_, var) in settings::SETTINGS {
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
