//! A progress bar on stderr, drawn only when stderr is a terminal: tasks done out of the total,
//! the tasks running now, and an estimate of the time left.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressDrawTarget, ProgressStyle};

use super::{EventKind, RunEvent, RunObserver};

/// How many running tasks the bar names before it says "+N more".
const NAMED: usize = 3;

/// The progress of each run on a terminal's stderr (one bar per run), as an observer:
/// `engine.add_observer(ProgressBar::stderr())`, or start the program with `--graflow-progress`.
///
/// When stderr is not a terminal (a pipe, a file, CI logs) it draws nothing and keeps no state.
#[derive(Debug, Clone)]
pub struct ProgressBar {
    /// One bar per run in progress, by run id; `None` when stderr is not a terminal.
    inner: Option<Arc<Mutex<Bars>>>,
}

type Bars = HashMap<Arc<str>, Bar>;

#[derive(Debug)]
struct Bar {
    drawn: indicatif::ProgressBar,
    /// Tasks known to the run (the workflow's, then those added while it runs).
    total: u64,
    /// Tasks a resumed run's checkpoint had done.
    done_before: u64,
    finished: HashSet<String>,
    running: BTreeSet<String>,
}

impl ProgressBar {
    /// A progress bar on stderr, if stderr is a terminal; else an observer that does nothing.
    pub fn stderr() -> Self {
        ProgressBar {
            inner: std::io::stderr()
                .is_terminal()
                .then(|| Arc::new(Mutex::new(HashMap::new()))),
        }
    }

    /// Whether it draws (stderr is a terminal).
    pub fn is_drawing(&self) -> bool {
        self.inner.is_some()
    }
}

impl Bar {
    fn new(tasks: usize) -> Bar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(tasks as u64),
            ProgressDrawTarget::stderr(),
        );
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar {
            drawn: bar,
            total: tasks as u64,
            done_before: 0,
            finished: HashSet::new(),
            running: BTreeSet::new(),
        }
    }

    fn message(&self) {
        let mut names: Vec<&str> = self
            .running
            .iter()
            .take(NAMED)
            .map(String::as_str)
            .collect();
        let more = self.running.len().saturating_sub(NAMED);
        let text = if names.is_empty() {
            String::new()
        } else {
            let more = if more > 0 {
                format!(" +{more} more")
            } else {
                String::new()
            };
            names.sort_unstable();
            format!("running: {}{more}", names.join(", "))
        };
        self.drawn.set_message(text);
    }
}

impl RunObserver for ProgressBar {
    fn on_event(&self, event: &RunEvent) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut bars = inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let EventKind::RunStarted { tasks, done, .. } = event.kind {
            let mut bar = Bar::new(tasks);
            bar.done_before = done as u64;
            bar.drawn.set_position(bar.done_before);
            bars.insert(event.run_id.clone(), bar);
            return;
        }
        if let EventKind::RunFinished { .. } | EventKind::RunAbandoned { .. } = event.kind {
            if let Some(bar) = bars.remove(&event.run_id) {
                bar.drawn.finish_and_clear();
            }
            return;
        }
        let (Some(bar), Some(task)) = (bars.get_mut(&event.run_id), &event.task) else {
            return;
        };
        match &event.kind {
            EventKind::TaskAdded { .. } => {
                bar.total += 1;
                bar.drawn.set_length(bar.total);
            }
            EventKind::TaskStarted => {
                bar.running.insert(task.clone());
            }
            EventKind::TaskRetrying { .. }
            | EventKind::TaskCancelled
            | EventKind::TaskWaiting { .. } => {
                bar.running.remove(task);
            }
            EventKind::TaskSucceeded { .. } | EventKind::TaskFailed { .. } => {
                bar.running.remove(task);
                if bar.finished.insert(task.clone()) {
                    let done = (bar.done_before + bar.finished.len() as u64).min(bar.total);
                    bar.drawn.set_position(done);
                }
            }
            _ => return,
        }
        bar.message();
    }
}
