//! The program's own flags: `--graflow-list`, `--graflow-graph mermaid|dot`,
//! `--graflow-validate`, `--graflow-progress`, `--graflow-help`, and those of the modes backends
//! register (`--graflow-worker URL` and its settings).
//!
//! Read by [`init`](crate::init) (so only by programs that call it, or use `#[graflow::main]`),
//! and only arguments that begin with `--graflow-` (with their values), before a `--`. The
//! program's other arguments are never read; [`program_args`] returns them without ours, for the
//! program's own parser.

use std::ffi::OsString;
use std::io::Write;
use std::sync::OnceLock;

use crate::graph::Workflow;

/// Every flag begins with this.
pub(crate) const PREFIX: &str = "--graflow-";

/// One `--graflow-*` flag, for parsing and for `--graflow-help`.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// `--graflow-...`
    pub name: &'static str,
    /// What its value is (`URL`), or `None` for a flag without one. Several words take as many
    /// values (`ID VALUE`): the mode sees one entry of the flag per value, in order.
    pub value: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

const CORE_FLAGS: &[Flag] = &[
    Flag {
        name: "--graflow-list",
        value: None,
        help: "print the tasks of the first workflow the program runs (id, function, handler, options) and exit without running it",
    },
    Flag {
        name: "--graflow-graph",
        value: Some("mermaid|dot"),
        help: "print the graph of the first workflow the program runs (Mermaid or Graphviz DOT) and exit without running it",
    },
    Flag {
        name: "--graflow-validate",
        value: None,
        help: "validate the first workflow the program runs (handlers, parameters, groups) and exit without running it: 0 when valid, 1 with its problems",
    },
    Flag {
        name: "--graflow-progress",
        value: None,
        help: "draw a progress bar of every run on stderr, when stderr is a terminal",
    },
    Flag {
        name: "--graflow-resume",
        value: Some("RUN_ID"),
        help: "resume the run of this id from its checkpoint, as the run store recorded it, instead of starting the program's first run afresh (the run must have written checkpoints)",
    },
    Flag {
        name: "--graflow-help",
        value: None,
        help: "print these flags and exit",
    },
];

/// Another way a graflow program can be started, registered by a backend crate (a queue
/// worker: `--graflow-worker redis://...`). [`init`](crate::init) asks each registered mode,
/// after the runner check and before `main` goes on: `enter` returns `None` when the process
/// was not started in its mode, else it runs the mode to its end and returns the exit code.
/// `flags` are the mode's `--graflow-*` flags: [`init`](crate::init) parses them with every
/// other flag, once, and the mode reads their values through [`graflow_args`].
#[derive(Debug)]
pub struct ProgramMode {
    /// The mode's name, for messages.
    pub name: &'static str,
    /// `None` when the process was not started in this mode; else runs the mode to its end and
    /// gives the process's exit code.
    pub enter: fn() -> Option<i32>,
    /// The mode's `--graflow-*` flags.
    pub flags: &'static [Flag],
}

inventory::collect!(ProgramMode);

/// What a describe flag asks for instead of running the first workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Describe {
    List,
    Mermaid,
    Dot,
    Validate,
}

/// What the program's flags say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProgramFlags {
    pub describe: Option<Describe>,
    pub progress: bool,
    pub help: bool,
    /// `--graflow-resume ID`: the run the program's first run continues.
    pub resume: Option<String>,
    /// The flags of the registered modes, with their values, in the order given (a flag
    /// without a value has an empty one): what each mode reads ([`graflow_args`]).
    pub modes: Vec<(&'static str, String)>,
}

static FLAGS: OnceLock<ProgramFlags> = OnceLock::new();

/// What the flags said, once [`init`](crate::init) read them (the defaults otherwise).
pub(crate) fn flags() -> &'static ProgramFlags {
    static NONE: ProgramFlags = ProgramFlags {
        describe: None,
        progress: false,
        help: false,
        resume: None,
        modes: Vec::new(),
    };
    FLAGS.get().unwrap_or(&NONE)
}

/// The `--graflow-*` arguments of `args` (flags and their values, in order), and the others.
/// Everything from a `--` on belongs to the program (a `--` is never a flag's value). An
/// argument with our prefix that is not UTF-8 is ours too (and then unknown, a usage error).
pub(crate) fn split(args: &[OsString], known: &[Flag]) -> (Vec<String>, Vec<OsString>) {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            theirs.push(arg.clone());
            theirs.extend(iter.cloned());
            break;
        }
        if !arg.as_encoded_bytes().starts_with(PREFIX.as_bytes()) {
            theirs.push(arg.clone());
            continue;
        }
        let text = arg.to_string_lossy().into_owned();
        // `--flag=value` carries its first value.
        let (name, inline) = match text.split_once('=') {
            Some((name, _)) => (name, 1),
            None => (text.as_str(), 0),
        };
        let values = known
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.value)
            .map_or(0, |what| what.split_whitespace().count())
            .saturating_sub(inline);
        ours.push(text);
        for _ in 0..values {
            match iter.next_if(|v| *v != "--") {
                Some(value) => ours.push(value.to_string_lossy().into_owned()),
                None => break,
            }
        }
    }
    (ours, theirs)
}

/// The flags every part of the program understands: the core's and the registered modes'.
pub(crate) fn known() -> Vec<Flag> {
    let mut known = CORE_FLAGS.to_vec();
    for mode in inventory::iter::<ProgramMode> {
        known.extend_from_slice(mode.flags);
    }
    known
}

/// Parses the `--graflow-*` arguments among `args` (the program's, without its name).
pub(crate) fn parse(args: &[OsString], known: &[Flag]) -> Result<ProgramFlags, String> {
    let (ours, _) = split(args, known);
    let mut flags = ProgramFlags::default();
    let mut iter = ours.into_iter();
    let describe = |flags: &mut ProgramFlags, what: Describe, flag: &str| {
        if flags.describe.is_some_and(|d| d != what) {
            return Err(format!(
                "{flag}: only one of --graflow-list, --graflow-graph and --graflow-validate at a time"
            ));
        }
        flags.describe = Some(what);
        Ok(())
    };
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let Some(flag) = known.iter().find(|f| f.name == name) else {
            return Err(format!(
                "unknown flag {name} (every --graflow- argument is read by graflow; --graflow-help lists them)"
            ));
        };
        let value = match (flag.value, inline) {
            (None, Some(_)) => return Err(format!("{name} takes no value")),
            (None, None) => None,
            (Some(_), Some(value)) => Some(value),
            (Some(what), None) => match iter.next() {
                Some(value) => Some(value),
                None => return Err(format!("{name} needs a value: {name} {what}")),
            },
        };
        // A flag of several values: the others follow, each its own entry for the mode. None
        // may be a flag of ours (a forgotten value would make the next flag one).
        if let Some(what) = flag.value
            && what.split_whitespace().count() > 1
        {
            let first = value.unwrap_or_default();
            let mut values = vec![first];
            for _ in 1..what.split_whitespace().count() {
                match iter.next() {
                    Some(value) => values.push(value),
                    None => return Err(format!("{name} needs {what}: {name} {what}")),
                }
            }
            if let Some(flag) = values.iter().find(|v| v.starts_with(PREFIX)) {
                return Err(format!(
                    "{name} needs {what}, but {flag} came where a value goes: {name} {what}"
                ));
            }
            flags
                .modes
                .extend(values.into_iter().map(|v| (flag.name, v)));
            continue;
        }
        match (name.as_str(), value.as_deref()) {
            ("--graflow-list", _) => describe(&mut flags, Describe::List, &name)?,
            ("--graflow-validate", _) => describe(&mut flags, Describe::Validate, &name)?,
            ("--graflow-graph", Some("mermaid")) => {
                describe(&mut flags, Describe::Mermaid, &name)?;
            }
            ("--graflow-graph", Some("dot")) => describe(&mut flags, Describe::Dot, &name)?,
            ("--graflow-graph", Some(other)) => {
                return Err(format!(
                    "--graflow-graph {other}: the formats are `mermaid` and `dot`"
                ));
            }
            ("--graflow-progress", _) => flags.progress = true,
            ("--graflow-resume", Some(id)) => {
                if flags.resume.is_some() {
                    return Err(
                        "--graflow-resume: given twice; a program resumes one run".to_owned()
                    );
                }
                if id.is_empty()
                    || id.len() > 128
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "--graflow-resume {id:?}: not a run id (the id --graflow-runs lists)"
                    ));
                }
                flags.resume = Some(id.to_owned());
            }
            ("--graflow-help", _) => flags.help = true,
            // A mode's flag: the mode reads it.
            _ => flags.modes.push((flag.name, value.unwrap_or_default())),
        }
    }
    Ok(flags)
}

/// The run `--graflow-resume` names, the first time this is asked (the program's first run);
/// `None` afterwards.
pub(crate) fn take_resume_flag() -> Option<String> {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let id = flags().resume.clone()?;
    (!TAKEN.swap(true, std::sync::atomic::Ordering::Relaxed)).then_some(id)
}

/// Exit code of a usage error (`EX_USAGE`).
const EXIT_USAGE: i32 = 64;

/// Called by [`init`](crate::init): reads the flags; prints help or a usage error and exits
/// when they say so.
pub(crate) fn read_flags() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let known = known();
    match parse(&args, &known) {
        Ok(flags) => {
            if flags.help {
                let _ = std::io::stdout().write_all(help(&known).as_bytes());
                std::process::exit(0);
            }
            let _ = FLAGS.set(flags);
        }
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "error: {message}");
            std::process::exit(EXIT_USAGE);
        }
    }
}

fn help(known: &[Flag]) -> String {
    let rows: Vec<(String, &str)> = known
        .iter()
        .map(|f| {
            let name = match f.value {
                Some(value) => format!("{} {value}", f.name),
                None => f.name.to_owned(),
            };
            (name, f.help)
        })
        .collect();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut text = String::from("graflow flags (the program's other arguments are its own):\n");
    for (name, help) in rows {
        text.push_str(&format!("  {name:<width$}  {help}\n"));
    }
    text
}

/// The flags of the registered modes the program was started with (before a `--`), each with
/// its value, in the order given, as [`init`](crate::init) parsed them with every other flag
/// (`--flag value` or `--flag=value`; a flag given twice is there twice; a flag without a value
/// has an empty one): what a mode a backend registers reads, and nothing else. Empty until
/// `init` read the flags, which it does before it asks the modes.
#[doc(hidden)]
pub fn graflow_args() -> Vec<(&'static str, String)> {
    flags().modes.clone()
}

/// The program's arguments (its name first) without graflow's (`--graflow-*` flags and their
/// values): hand them to the program's own parser, e.g. `Cli::parse_from(graflow::program_args())`
/// with clap, which would otherwise refuse `--graflow-graph dot`.
pub fn program_args() -> Vec<OsString> {
    let mut args = std::env::args_os();
    let name = args.next();
    let rest: Vec<OsString> = args.collect();
    name.into_iter().chain(split(&rest, &known()).1).collect()
}

/// The text `--graflow-list` prints: one line per task with its handler and options.
pub(crate) fn list(workflow: &Workflow) -> String {
    let mut text = format!(
        "workflow '{}': {} task(s)\n",
        crate::report::one_line(workflow.name()),
        workflow.len()
    );
    let rows: Vec<[String; 4]> = workflow
        .tasks()
        .iter()
        .map(|task| {
            let mut options = Vec::new();
            let retry = task.retry_policy();
            if retry.max_attempts() > 1 {
                options.push(format!("retries={}", retry.max_attempts() - 1));
            }
            if let Some(timeout) = task.timeout() {
                options.push(format!("timeout={timeout:?}"));
            }
            if task.max_cycles() != crate::definition::DEFAULT_MAX_CYCLES {
                options.push(format!("max_cycles={}", task.max_cycles()));
            }
            for (key, value) in task.handler_config().iter() {
                options.push(format!("{key}={value}"));
            }
            let inputs: Vec<&str> = task.bound_inputs().map(|(name, _)| name).collect();
            if !inputs.is_empty() {
                options.push(format!("inputs=[{}]", inputs.join(",")));
            }
            [
                task.id().to_owned(),
                task.name().to_owned(),
                task.handler().to_owned(),
                options.join(" "),
            ]
        })
        .collect();
    text.push_str(&crate::report::table(
        ["TASK", "FUNCTION", "HANDLER", "OPTIONS"],
        &rows,
        4,
    ));
    text
}

/// Prints `text` on stdout and exits with `code`: what a describe flag does instead of a run.
pub(crate) fn print_and_exit(text: &str, code: i32) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_graflow_arguments_are_read() {
        let args = os(&[
            "--graflow-graph",
            "dot",
            "--output",
            "x",
            "--graflow-progress",
            "--",
            "--graflow-list",
        ]);
        let (ours, theirs) = split(&args, CORE_FLAGS);
        assert_eq!(ours, ["--graflow-graph", "dot", "--graflow-progress"]);
        assert_eq!(theirs, os(&["--output", "x", "--", "--graflow-list"]));
        let flags = parse(&args, CORE_FLAGS).unwrap();
        assert_eq!(flags.describe, Some(Describe::Dot));
        assert!(flags.progress);
        assert_eq!(
            parse(&os(&["--graflow-graph=mermaid"]), CORE_FLAGS)
                .unwrap()
                .describe,
            Some(Describe::Mermaid)
        );
        assert_eq!(
            parse(&os(&["-v", "file"]), CORE_FLAGS).unwrap(),
            ProgramFlags::default()
        );
    }

    #[test]
    fn a_double_dash_is_never_a_value_and_what_follows_it_is_the_programs() {
        let args = os(&["--graflow-graph", "--", "--graflow-list", "--out"]);
        let (ours, theirs) = split(&args, CORE_FLAGS);
        assert_eq!(ours, ["--graflow-graph"]);
        assert_eq!(theirs, os(&["--", "--graflow-list", "--out"]));
        let error = parse(&args, CORE_FLAGS).unwrap_err();
        assert!(error.contains("--graflow-graph needs a value"), "{error}");
    }

    #[test]
    fn a_graflow_argument_that_is_not_utf8_is_a_usage_error() {
        use std::os::unix::ffi::OsStringExt;
        let mut bytes = b"--graflow-lis".to_vec();
        bytes.extend([0xff, b't']);
        let args = vec![OsString::from_vec(bytes), OsString::from("mine")];
        let (ours, theirs) = split(&args, CORE_FLAGS);
        assert_eq!(ours.len(), 1);
        assert_eq!(theirs, os(&["mine"]));
        let error = parse(&args, CORE_FLAGS).unwrap_err();
        assert!(error.contains("unknown flag --graflow-lis"), "{error}");
    }

    #[test]
    fn a_modes_flags_are_parsed_with_the_others_and_kept_in_order() {
        let mut known = CORE_FLAGS.to_vec();
        known.extend([
            Flag {
                name: "--graflow-mode",
                value: Some("URL"),
                help: "",
            },
            Flag {
                name: "--graflow-mode-queue",
                value: Some("Q"),
                help: "",
            },
            Flag {
                name: "--graflow-mode-switch",
                value: None,
                help: "",
            },
        ]);
        let args = os(&[
            "--graflow-mode-queue=a,b",
            "--graflow-progress",
            "--graflow-mode",
            "redis://h/0",
            "mine",
            "--graflow-mode-switch",
            "--graflow-mode-queue",
            "c",
            "--",
            "--graflow-mode-queue",
            "d",
        ]);
        let flags = parse(&args, &known).unwrap();
        assert!(flags.progress);
        assert_eq!(
            flags.modes,
            [
                ("--graflow-mode-queue", "a,b".to_owned()),
                ("--graflow-mode", "redis://h/0".to_owned()),
                ("--graflow-mode-switch", String::new()),
                ("--graflow-mode-queue", "c".to_owned()),
            ]
        );
        let error = parse(&os(&["--graflow-mode"]), &known).unwrap_err();
        assert!(
            error.contains("--graflow-mode needs a value: --graflow-mode URL"),
            "{error}"
        );
        let error = parse(&os(&["--graflow-mode-switch=1"]), &known).unwrap_err();
        assert!(error.contains("takes no value"), "{error}");
    }

    #[test]
    fn a_flag_of_two_values_takes_both_and_never_a_flag_for_one() {
        let mut known = CORE_FLAGS.to_vec();
        known.extend([
            Flag {
                name: "--graflow-answer",
                value: Some("ID VALUE"),
                help: "",
            },
            Flag {
                name: "--graflow-by",
                value: Some("NAME"),
                help: "",
            },
        ]);
        for args in [
            &["--graflow-answer", "abc", "yes", "mine"][..],
            &["--graflow-answer=abc", "yes", "mine"][..],
        ] {
            let (ours, theirs) = split(&os(args), &known);
            assert_eq!(ours.len(), args.len() - 1, "{args:?}");
            assert_eq!(theirs, os(&["mine"]));
            let flags = parse(&os(args), &known).unwrap();
            assert_eq!(
                flags.modes,
                [
                    ("--graflow-answer", "abc".to_owned()),
                    ("--graflow-answer", "yes".to_owned()),
                ]
            );
        }
        // A forgotten value: the next flag is not taken for it.
        let error = parse(
            &os(&["--graflow-answer", "abc", "--graflow-by", "bob"]),
            &known,
        )
        .unwrap_err();
        assert!(
            error.contains("--graflow-by came where a value goes"),
            "{error}"
        );
        let error = parse(&os(&["--graflow-answer", "abc"]), &known).unwrap_err();
        assert!(error.contains("needs ID VALUE"), "{error}");
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for (args, expected) in [
            (&["--graflow-lsit"][..], "unknown flag --graflow-lsit"),
            (&["--graflow-graph"][..], "needs a value"),
            (&["--graflow-graph", "png"][..], "`mermaid` and `dot`"),
            (&["--graflow-list=yes"][..], "takes no value"),
            (&["--graflow-list", "--graflow-validate"][..], "only one of"),
        ] {
            let error = parse(&os(args), CORE_FLAGS).unwrap_err();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}

#[cfg(test)]
mod properties {
    use std::os::unix::ffi::OsStringExt;

    use proptest::prelude::*;

    use super::*;

    fn arg() -> impl Strategy<Value = OsString> {
        prop_oneof![
            prop::sample::select(vec![
                "--graflow-list",
                "--graflow-graph",
                "--graflow-graph=dot",
                "--graflow-graph=",
                "--graflow-validate",
                "--graflow-progress",
                "--graflow-help",
                "--graflow-",
                "--",
                "dot",
                "mermaid",
            ])
            .prop_map(OsString::from),
            "\\PC{0,12}".prop_map(OsString::from),
            prop::collection::vec(any::<u8>(), 0..12)
                .prop_map(|bytes| OsString::from_vec([b"--graflow-".to_vec(), bytes].concat())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any arguments are split into ours and the program's, losing none, and parsed or
        /// refused with a usage message, never a panic.
        #[test]
        fn arbitrary_arguments_never_panic(args in prop::collection::vec(arg(), 0..10)) {
            let known = known();
            let (ours, theirs) = split(&args, &known);
            prop_assert_eq!(ours.len() + theirs.len(), args.len());
            if let Err(message) = parse(&args, &known) {
                prop_assert!(!message.is_empty());
            }
        }
    }
}
