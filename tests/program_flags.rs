//! The program's own flags, from the outside: this test is a graflow program (`harness =
//! false`, `#[graflow::main]`) that runs itself as a child with flags and checks what the child
//! printed, its exit code, whether its workflow ran, and which arguments its own parser got.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use graflow::prelude::*;

mod common;

/// Set in the child: the directory it reports into.
const CHILD: &str = "GRAFLOW_FLAGS_TEST_DIR";
/// Set in the child: a handler name for `fetch` (to make the workflow invalid).
const HANDLER: &str = "GRAFLOW_FLAGS_TEST_HANDLER";
/// Set in the child: `wide` (six tasks at once) or `long` (a task that runs until the test
/// interrupts the program), instead of the usual workflow.
const MODE: &str = "GRAFLOW_FLAGS_TEST_MODE";

#[task]
async fn nap(i: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(900)).await;
    i
}

#[task]
async fn forever() -> u32 {
    tokio::time::sleep(Duration::from_secs(600)).await;
    0
}

/// The child's run in `MODE`, with an observer that appends each event to `events.txt`.
fn child_mode(dir: &Path, mode: &str) {
    use std::io::Write as _;
    let wf = if mode == "hostile" {
        let mut builder = Workflow::builder("hostile\nname");
        builder.add(fetch::task().with_id("fetch\nleft  fake-row"));
        builder.add(fetch::task().with_id("%%{init: {'theme': 'dark'}}%%"));
        builder.build()
    } else if mode == "wide" {
        let mut builder = Workflow::builder("wide");
        for i in 0..6u32 {
            builder.add(nap::task().with_id(format!("nap_{i}")).with_input("i", i));
        }
        builder.build()
    } else {
        workflow! { name: "long"; fetch >> forever; }
    };
    let file = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.txt"))
            .unwrap(),
    );
    let mut engine = WorkflowEngine::new();
    engine.add_observer(move |e: &graflow::RunEvent| {
        let mut file = file.lock().unwrap();
        let _ = writeln!(file, "{:?} {:?} {:?}", e.task, e.attempt, e.kind);
        let _ = file.flush();
    });
    let report = engine.run(&wf, RunOptions::new()).unwrap();
    std::fs::write(dir.join("ran.txt"), report.run_id()).unwrap();
}

#[task(handler = "process", retries = 2)]
fn fetch() -> u32 {
    eprintln!("fetching");
    3
}

#[task]
fn left(fetch: u32) -> u32 {
    fetch + 1
}

#[task]
fn right(fetch: u32) -> u32 {
    fetch + 2
}

#[task]
async fn join(left: u32, right: u32) -> u32 {
    // Long enough for a progress bar to draw.
    tokio::time::sleep(Duration::from_millis(600)).await;
    left + right
}

/// The child: records the arguments its own parser would get, runs the workflow, records that
/// it ran.
fn child(dir: &Path) {
    let args: Vec<String> = graflow::program_args()
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::fs::write(dir.join("args.txt"), args.join("\n")).unwrap();
    if let Ok(mode) = std::env::var(MODE)
        && !mode.is_empty()
    {
        child_mode(dir, &mode);
        return;
    }
    let wf = match std::env::var(HANDLER) {
        Ok(handler) => {
            let mut builder = Workflow::builder("flags");
            builder.add(fetch::task().with_handler(handler));
            builder.build()
        }
        Err(_) => workflow! { name: "flags"; fetch >> (left | right).name("sides") >> join; },
    };
    let report = WorkflowEngine::new().run(&wf, RunOptions::new()).unwrap();
    std::fs::write(
        dir.join("ran.txt"),
        report.result::<u32>("join").unwrap().to_string(),
    )
    .unwrap();
}

struct Child {
    dir: PathBuf,
}

impl Child {
    fn new(name: &str) -> Child {
        let dir = std::env::temp_dir().join(format!("graflow-flags-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Child { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(std::env::current_exe().unwrap());
        common::default_signals(&mut command);
        command
            .args(args)
            .env(CHILD, &self.dir)
            .env_remove(HANDLER)
            .env_remove(MODE)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ran(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("ran.txt")).ok()
    }

    fn args(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("args.txt"))
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn list_prints_the_tasks_and_runs_nothing() {
    let child = Child::new("list");
    let out = child.run(&["--out", "x.txt", "--graflow-list", "-v"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("workflow 'flags': 4 task(s)"), "{stdout}");
    let fetch = stdout.lines().find(|l| l.starts_with("fetch")).unwrap();
    assert!(
        fetch.contains("process") && fetch.contains("retries=2"),
        "{fetch}"
    );
    for id in ["left", "right", "join"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(id) && l.contains("direct")),
            "{stdout}"
        );
    }
    assert_eq!(child.ran(), None, "the workflow ran");
    assert_eq!(child.args(), ["--out", "x.txt", "-v"]);
}

fn graph_prints_dot_or_mermaid() {
    let child = Child::new("graph");
    let out = child.run(&["--graflow-graph", "dot"]);
    let dot = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{dot}{}", text(&out.stderr));
    assert!(dot.trim_start().starts_with("digraph"), "{dot}");
    assert!(
        dot.contains("fetch") && dot.contains("process") && dot.contains("sides"),
        "{dot}"
    );
    let out = child.run(&["--graflow-graph=mermaid"]);
    let mermaid = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{mermaid}");
    assert!(
        mermaid.contains("flowchart") || mermaid.contains("graph"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("join") && mermaid.contains("subgraph"),
        "{mermaid}"
    );
    assert_eq!(child.ran(), None);
}

fn validate_exits_0_when_valid_and_1_with_the_problems() {
    let child = Child::new("validate");
    let out = child.run(&["--graflow-validate"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("workflow 'flags' is valid: 4 task(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("direct") && stdout.contains("process"),
        "{stdout}"
    );
    let out = child
        .command(&["--graflow-validate"])
        .env(HANDLER, "no-such-handler")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("no-such-handler"), "{stdout}");
    assert_eq!(child.ran(), None);
}

fn mistakes_in_graflow_flags_are_usage_errors() {
    let child = Child::new("mistakes");
    for (args, expected) in [
        (&["--graflow-lsit"][..], "unknown flag --graflow-lsit"),
        (&["--graflow-graph", "png"][..], "`mermaid` and `dot`"),
        (&["--graflow-graph"][..], "needs a value"),
        (&["--graflow-list", "--graflow-validate"][..], "only one of"),
    ] {
        let out = child.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(child.ran(), None);
    }
    // Worker flags that cannot mean anything: a second server, or settings without worker
    // mode (they would be ignored while main runs).
    if cfg!(feature = "redis") {
        for (args, expected) in [
            (
                &[
                    "--graflow-worker",
                    "redis://:hunter2@127.0.0.1:1/0",
                    "--graflow-worker",
                    "redis://127.0.0.1:2/0",
                ][..],
                "given twice",
            ),
            (
                &["--graflow-worker-concurrency", "4"][..],
                "not started as a worker",
            ),
        ] {
            let out = child
                .command(args)
                .env_remove("GRAFLOW_WORKER")
                .output()
                .unwrap();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
            assert!(
                !stderr.contains("hunter2"),
                "a password was printed: {stderr}"
            );
            assert_eq!(child.ran(), None);
        }
    }
}

/// Ids are the user's strings: in `--graflow-list` an id with a line break stays in its row,
/// and in `--graflow-graph mermaid` an id cannot carry a directive.
fn hostile_ids_stay_text_in_the_list_and_the_graph() {
    let child = Child::new("hostile");
    let out = child
        .command(&["--graflow-list"])
        .env(MODE, "hostile")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // The title, the header, one row per task.
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.contains("fetch\\nleft  fake-row"), "{stdout}");
    let out = child
        .command(&["--graflow-graph", "mermaid"])
        .env(MODE, "hostile")
        .output()
        .unwrap();
    let mermaid = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{mermaid}");
    assert!(!mermaid.contains('%'), "{mermaid}");
    assert_eq!(child.ran(), None);
}

fn help_lists_every_flag_including_the_workers() {
    let child = Child::new("help");
    let out = child.run(&["--graflow-help"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let mut flags = vec![
        "--graflow-list",
        "--graflow-graph mermaid|dot",
        "--graflow-validate",
        "--graflow-progress",
    ];
    // The worker's flags come with the backend that registers worker mode.
    if cfg!(feature = "redis") {
        flags.extend([
            "--graflow-worker URL",
            "--graflow-worker-queue Q",
            "--graflow-worker-concurrency N",
        ]);
    }
    for flag in flags {
        assert!(stdout.contains(flag), "{flag}: {stdout}");
    }
    assert_eq!(child.ran(), None);
}

fn the_programs_own_arguments_are_never_read() {
    let child = Child::new("own");
    let own = [
        "--list",
        "--graph",
        "dot",
        "--validate",
        "--queue",
        "q",
        "--concurrency",
        "3",
        "--",
        "--graflow-list",
    ];
    let out = child.run(&own);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(child.ran().as_deref(), Some("9"));
    assert_eq!(child.args(), own);
}

/// `script` (util-linux) runs the child on a pseudo-terminal.
fn on_a_terminal(child: &Child, args: &str) -> String {
    on_a_terminal_in(child, args, None)
}

fn on_a_terminal_in(child: &Child, args: &str, mode: Option<&str>) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("'{}' {args}", exe.display()))
        .arg("/dev/null")
        .env(CHILD, &child.dir)
        .env_remove(HANDLER)
        .env(MODE, mode.unwrap_or(""))
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs a program on a terminal");
    assert!(out.status.success(), "{}", text(&out.stdout));
    text(&out.stdout)
}

fn progress_is_drawn_on_a_terminal_only_and_only_when_asked() {
    let child = Child::new("progress");
    let drawn = on_a_terminal(&child, "--graflow-progress");
    assert_eq!(child.ran().as_deref(), Some("9"));
    assert!(drawn.contains("/4 tasks"), "{drawn:?}");
    assert!(drawn.contains("running: join"), "{drawn:?}");
    assert!(drawn.contains("ETA"), "{drawn:?}");
    let not_asked = on_a_terminal(&child, "");
    assert!(!not_asked.contains("tasks, ETA"), "{not_asked:?}");
    // stderr a pipe: nothing is drawn.
    let out = child.run(&["--graflow-progress"]);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("tasks, ETA"), "{stderr:?}");
    // Six tasks at once: three by name, then how many more; the bar is cleared at the end
    // (its last output erases the line).
    let wide = on_a_terminal_in(&child, "--graflow-progress", Some("wide"));
    assert!(wide.contains("/6 tasks"), "{wide:?}");
    assert!(
        wide.contains("running: nap_0, nap_1, nap_2 +3 more"),
        "{wide:?}"
    );
    let last_frame = wide.rfind("/6 tasks").unwrap();
    assert!(
        wide[last_frame..].contains("\u{1b}[2K"),
        "{:?}",
        &wide[last_frame..]
    );
}

fn ctrl_c_cancels_the_running_task_and_abandons_the_run_for_observers() {
    let child = Child::new("ctrl-c");
    let mut running = child
        .command(&[])
        .env(MODE, "long")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = child.dir.join("events.txt");
    let started = || {
        std::fs::read_to_string(&events)
            .is_ok_and(|t| t.contains("Some(\"forever\") 1 TaskStarted"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !started() {
        assert!(
            std::time::Instant::now() < deadline,
            "the long task never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to our own, not yet reaped, child.
    assert_eq!(
        unsafe { libc::kill(running.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = running.wait().unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(text.contains("Some(\"forever\") 1 TaskCancelled"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("None 0 RunAbandoned") && last.contains("signal 2"),
        "{text}"
    );
    assert_eq!(child.ran(), None);
}

#[graflow::main]
fn main() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let tests: [(&str, fn()); 9] = [
        (
            "hostile_ids_stay_text_in_the_list_and_the_graph",
            hostile_ids_stay_text_in_the_list_and_the_graph,
        ),
        (
            "list_prints_the_tasks_and_runs_nothing",
            list_prints_the_tasks_and_runs_nothing,
        ),
        ("graph_prints_dot_or_mermaid", graph_prints_dot_or_mermaid),
        (
            "validate_exits_0_when_valid_and_1_with_the_problems",
            validate_exits_0_when_valid_and_1_with_the_problems,
        ),
        (
            "mistakes_in_graflow_flags_are_usage_errors",
            mistakes_in_graflow_flags_are_usage_errors,
        ),
        (
            "help_lists_every_flag_including_the_workers",
            help_lists_every_flag_including_the_workers,
        ),
        (
            "the_programs_own_arguments_are_never_read",
            the_programs_own_arguments_are_never_read,
        ),
        (
            "progress_is_drawn_on_a_terminal_only_and_only_when_asked",
            progress_is_drawn_on_a_terminal_only_and_only_when_asked,
        ),
        (
            "ctrl_c_cancels_the_running_task_and_abandons_the_run_for_observers",
            ctrl_c_cancels_the_running_task_and_abandons_the_run_for_observers,
        ),
    ];
    // `cargo test --test program_flags -- NAME` runs the tests whose name contains NAME.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut ran = 0;
    for (name, test) in tests {
        if filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())) {
            eprintln!("test {name} ...");
            test();
            eprintln!("test {name} ... ok");
            ran += 1;
        }
    }
    eprintln!("program_flags: {ran} test(s) passed");
}
