//! The program's store flags: `--graflow-runs [--graflow-limit N] [--graflow-json]`,
//! `--graflow-run ID [--graflow-json]`, `--graflow-prune DURATION`: a program mode that reads
//! (or prunes) the store `GRAFLOW_STORE` names, prints, and exits.

mod render;

use std::io::Write as _;
use std::time::Duration;

use graflow_core::backend::{Flag, graflow_args};

use crate::store::Store;

/// The mode's flags.
pub(crate) const FLAGS: &[Flag] = &[
    Flag {
        name: "--graflow-runs",
        value: None,
        help: "print the latest runs recorded in the run store (GRAFLOW_STORE), newest first, and exit",
    },
    Flag {
        name: "--graflow-run",
        value: Some("RUN_ID"),
        help: "print one recorded run (its tasks, attempts, where they ran, timings, errors, log lines) and exit",
    },
    Flag {
        name: "--graflow-prune",
        value: Some("DURATION"),
        help: "delete the recorded runs that ended longer ago than DURATION (30d, 12h) and exit",
    },
    Flag {
        name: "--graflow-limit",
        value: Some("N"),
        help: "with --graflow-runs: how many runs (default 20)",
    },
    Flag {
        name: "--graflow-json",
        value: None,
        help: "with --graflow-runs or --graflow-run: print JSON",
    },
];

const EXIT_USAGE: i32 = 64;
const EXIT_UNAVAILABLE: i32 = 69;
const EXIT_NOT_FOUND: i32 = 1;

enum Ask {
    Runs { limit: u32 },
    Run(String),
    Prune(Duration),
}

/// The mode's entry: `None` when none of its flags was given.
pub(crate) fn enter() -> Option<i32> {
    let args = graflow_args();
    let ours: Vec<&(&str, String)> = args
        .iter()
        .filter(|(name, _)| FLAGS.iter().any(|f| f.name == *name))
        .collect();
    if ours.is_empty() {
        return None;
    }
    Some(match parse(&ours) {
        Ok((ask, json)) => run(ask, json),
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "error: {message}");
            EXIT_USAGE
        }
    })
}

fn parse(args: &[&(&str, String)]) -> Result<(Ask, bool), String> {
    let mut ask = None;
    let mut limit = None;
    let mut json = false;
    let set = |what: Ask, ask: &mut Option<Ask>| {
        if ask.is_some() {
            return Err("give one of --graflow-runs, --graflow-run and --graflow-prune".to_owned());
        }
        *ask = Some(what);
        Ok(())
    };
    for (name, value) in args {
        match *name {
            "--graflow-runs" => set(Ask::Runs { limit: 20 }, &mut ask)?,
            "--graflow-run" => {
                if value.is_empty() || value.len() > 128 {
                    return Err(format!("--graflow-run {value:?}: not a run id"));
                }
                set(Ask::Run(value.clone()), &mut ask)?;
            }
            "--graflow-prune" => {
                let duration = humantime::parse_duration(value).map_err(|e| {
                    format!(
                        "--graflow-prune {value:?}: not a duration ({e}); for example 30d or 12h"
                    )
                })?;
                set(Ask::Prune(duration), &mut ask)?;
            }
            "--graflow-limit" => {
                let n: u32 = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=100_000).contains(n))
                    .ok_or_else(|| {
                        format!("--graflow-limit {value:?}: a number of runs from 1 to 100000")
                    })?;
                limit = Some(n);
            }
            _ => json = true,
        }
    }
    match (ask, limit, json) {
        (None, _, _) => Err(
            "--graflow-limit and --graflow-json go with --graflow-runs or --graflow-run".to_owned(),
        ),
        (Some(Ask::Runs { .. }), Some(limit), json) => Ok((Ask::Runs { limit }, json)),
        (Some(_), Some(_), _) => Err("--graflow-limit goes with --graflow-runs".to_owned()),
        (Some(Ask::Prune(_)), None, true) => {
            Err("--graflow-json goes with --graflow-runs or --graflow-run".to_owned())
        }
        (Some(ask), None, json) => Ok((ask, json)),
    }
}

fn run(ask: Ask, json: bool) -> i32 {
    let store = match Store::from_env() {
        Ok(Some(store)) => store,
        Ok(None) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: the run store is off (GRAFLOW_STORE=off): no runs are recorded"
            );
            return EXIT_UNAVAILABLE;
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start a runtime: {error}");
            return EXIT_UNAVAILABLE;
        }
    };
    let printed = runtime.block_on(async {
        match ask {
            Ask::Runs { limit } => store
                .runs(limit)
                .await
                .map(|runs| {
                    if json {
                        to_json(&runs)
                    } else {
                        render::runs(&runs)
                    }
                })
                .map(Some),
            Ask::Run(id) => store.run(&id).await.map(|run| {
                run.map(|run| {
                    if json {
                        to_json(&run)
                    } else {
                        render::run(&run)
                    }
                })
            }),
            Ask::Prune(older) => store.prune(older).await.map(|n| {
                Some(format!(
                    "deleted {n} run(s) that ended more than {} ago\n",
                    humantime::format_duration(older)
                ))
            }),
        }
    });
    match printed {
        Ok(Some(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Ok(None) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: run store {}: no such run (--graflow-runs lists them)",
                store.location()
            );
            EXIT_NOT_FOUND
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error}");
            EXIT_UNAVAILABLE
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
