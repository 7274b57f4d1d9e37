//! The program's store flags: `--graflow-runs [--graflow-limit N] [--graflow-json]`,
//! `--graflow-run ID [--graflow-json]`, `--graflow-prune DURATION`, and human feedback's
//! `--graflow-feedback [--graflow-all] [--graflow-json]`, `--graflow-answer ID VALUE
//! [--graflow-by NAME]`, `--graflow-cancel-feedback ID [--graflow-by NAME]`: a program mode
//! that reads (or writes) the store `GRAFLOW_STORE` names, prints, and exits.

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
        name: "--graflow-feedback",
        value: None,
        help: "list the requests for feedback that wait for an answer (id, run, task, kind, prompt, options, asked, expires) and exit",
    },
    Flag {
        name: "--graflow-all",
        value: None,
        help: "with --graflow-feedback: the answered and cancelled requests too",
    },
    Flag {
        name: "--graflow-answer",
        value: Some("ID VALUE"),
        help: "answer request ID (yes/no, a text, an option, options separated by commas, or JSON) and exit: 0 when taken, 1 with the reason when refused",
    },
    Flag {
        name: "--graflow-cancel-feedback",
        value: Some("ID"),
        help: "cancel request ID (the task waiting for it fails) and exit",
    },
    Flag {
        name: "--graflow-by",
        value: Some("NAME"),
        help: "with --graflow-answer or --graflow-cancel-feedback: who answers (default: the user)",
    },
    Flag {
        name: "--graflow-limit",
        value: Some("N"),
        help: "with --graflow-runs: how many runs (default 20); with --graflow-feedback: how many requests (default 50)",
    },
    Flag {
        name: "--graflow-json",
        value: None,
        help: "with --graflow-runs, --graflow-run or --graflow-feedback: print JSON",
    },
];

const EXIT_USAGE: i32 = 64;
const EXIT_UNAVAILABLE: i32 = 69;
const EXIT_NOT_FOUND: i32 = 1;

enum Ask {
    Runs { limit: u32 },
    Run(String),
    Prune(Duration),
    Feedback { limit: u32, all: bool },
    Answer { id: String, value: String },
    Cancel(String),
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
        Ok(parsed) => run(parsed),
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "error: {message}");
            EXIT_USAGE
        }
    })
}

/// What was asked, whether as JSON, and on whose behalf.
struct Parsed {
    ask: Ask,
    json: bool,
    by: String,
}

fn parse(args: &[&(&str, String)]) -> Result<Parsed, String> {
    let mut ask = None;
    let mut limit = None;
    let mut json = false;
    let mut all = false;
    let mut by = None;
    let set = |what: Ask, ask: &mut Option<Ask>| {
        if ask.is_some() {
            return Err("give one of --graflow-runs, --graflow-run, --graflow-prune, --graflow-feedback, --graflow-answer and --graflow-cancel-feedback".to_owned());
        }
        *ask = Some(what);
        Ok(())
    };
    let mut args = args.iter().peekable();
    while let Some((name, value)) = args.next() {
        match *name {
            "--graflow-feedback" => set(
                Ask::Feedback {
                    limit: 50,
                    all: false,
                },
                &mut ask,
            )?,
            "--graflow-all" => all = true,
            "--graflow-answer" => {
                // Its second value follows as an entry of its own.
                let answer = match args.next_if(|(n, _)| *n == "--graflow-answer") {
                    Some((_, answer)) => answer.clone(),
                    None => return Err("--graflow-answer needs ID VALUE".to_owned()),
                };
                set(
                    Ask::Answer {
                        id: request_id(value),
                        value: answer,
                    },
                    &mut ask,
                )?;
            }
            "--graflow-cancel-feedback" => set(Ask::Cancel(request_id(value)), &mut ask)?,
            "--graflow-by" => {
                if value.trim().is_empty() || value.len() > 256 {
                    return Err(format!("--graflow-by {value:?}: a name of 1 to 256 bytes"));
                }
                by = Some(value.clone());
            }
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
                        format!("--graflow-limit {value:?}: a number from 1 to 100000")
                    })?;
                limit = Some(n);
            }
            _ => json = true,
        }
    }
    if all && !matches!(ask, Some(Ask::Feedback { .. })) {
        return Err("--graflow-all goes with --graflow-feedback".to_owned());
    }
    if by.is_some() && !matches!(ask, Some(Ask::Answer { .. } | Ask::Cancel(_))) {
        return Err(
            "--graflow-by goes with --graflow-answer or --graflow-cancel-feedback".to_owned(),
        );
    }
    let by = by.unwrap_or_default();
    let ask = match (ask, limit, json) {
        (None, _, _) => {
            return Err(
                "--graflow-limit and --graflow-json go with --graflow-runs, --graflow-run or --graflow-feedback".to_owned(),
            );
        }
        (Some(Ask::Runs { .. }), Some(limit), _) => Ask::Runs { limit },
        (Some(Ask::Feedback { .. }), limit, _) => Ask::Feedback {
            limit: limit.unwrap_or(50),
            all,
        },
        (Some(_), Some(_), _) => {
            return Err(
                "--graflow-limit goes with --graflow-runs or --graflow-feedback".to_owned(),
            );
        }
        (Some(Ask::Prune(_) | Ask::Answer { .. } | Ask::Cancel(_)), None, true) => {
            return Err(
                "--graflow-json goes with --graflow-runs, --graflow-run or --graflow-feedback"
                    .to_owned(),
            );
        }
        (Some(ask), None, _) => ask,
    };
    Ok(Parsed { ask, json, by })
}

/// A request id as given (one that is not 32 hex digits is an unknown request, exit 1; a
/// long one is cut, it cannot be an id anyway).
fn request_id(value: &str) -> String {
    crate::limits::clean(value, 64)
}

fn run(parsed: Parsed) -> i32 {
    let Parsed { ask, json, by } = parsed;
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
            Ask::Runs { limit } => Ok(store
                .runs(limit)
                .await
                .map(|runs| {
                    if json {
                        to_json(&runs)
                    } else {
                        render::runs(&runs)
                    }
                })
                .map(Some)),
            Ask::Run(id) => Ok(store.run(&id).await.map(|run| {
                run.map(|run| {
                    if json {
                        to_json(&run)
                    } else {
                        render::run(&run)
                    }
                })
            })),
            Ask::Prune(older) => Ok(store.prune(older).await.map(|n| {
                Some(format!(
                    "deleted {n} run(s) that ended more than {} ago\n",
                    humantime::format_duration(older)
                ))
            })),
            Ask::Feedback { limit, all } => Ok(store
                .feedback_requests(!all, limit)
                .await
                .map(|requests| {
                    if json {
                        let docs: Vec<serde_json::Value> =
                            requests.iter().map(crate::feedback::document).collect();
                        to_json(&docs)
                    } else {
                        render::feedback(&requests)
                    }
                })
                .map(Some)),
            Ask::Answer { id, value } => {
                Err(store.answer_text(&id, &value, &by).await.map(|answer| {
                    format!("request {id} answered {} by {}\n", answer.value, answer.by)
                }))
            }
            Ask::Cancel(id) => Err(store
                .cancel_feedback(&id, "cancelled with --graflow-cancel-feedback", &by)
                .await
                .map(|()| format!("request {id} cancelled\n"))),
        }
    });
    // An answer or a cancel has exits of its own.
    let printed = match printed {
        Ok(printed) => printed,
        Err(done) => return answered(done),
    };
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

/// The exit of `--graflow-answer` and `--graflow-cancel-feedback`: 0 when taken, 1 with the
/// reason when refused, 69 when the store failed.
fn answered(result: Result<String, crate::feedback::AnswerError>) -> i32 {
    match result {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            0
        }
        Err(crate::feedback::AnswerError::Store(error)) => {
            let _ = writeln!(std::io::stderr(), "error: {error}");
            EXIT_UNAVAILABLE
        }
        Err(refused) => {
            let _ = writeln!(std::io::stderr(), "error: {refused}");
            EXIT_NOT_FOUND
        }
    }
}
