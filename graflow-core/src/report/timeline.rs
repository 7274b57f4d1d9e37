//! A run's timeline: [`RunReport::to_gantt`], a Mermaid Gantt chart of what ran where and when.

use std::fmt::Write as _;
use std::time::Duration;

use super::{RunReport, TaskStatus};

impl RunReport {
    /// The run as a Mermaid Gantt chart: a section per handler, a bar per task that started
    /// (from its start to its end, retries included; its id, where it ran, its attempts and
    /// runs when more than one), marked `done` when it succeeded, `crit` when it failed. The
    /// axis is the time since the run started (`mm:ss.ms`). A task has a bar once one of its
    /// runs ended: one that never started, or was cancelled in its first run, has none.
    /// Every bar starts with a zero-width space, so that no task id is read as a Gantt
    /// statement (`title`, `section`, `click`...); `:`, `;`, `#` and `%` in names are replaced.
    ///
    /// ```
    /// # use graflow_core::{RunOptions, Workflow, WorkflowEngine};
    /// # #[graflow_macros::task(crate = "graflow_core")] fn hello() -> u32 { 1 }
    /// let mut wf = Workflow::builder("timeline");
    /// wf.add(hello::task());
    /// let report = WorkflowEngine::new().run(&wf.build(), RunOptions::new())?;
    /// let gantt = report.to_gantt();
    /// assert!(gantt.starts_with("gantt\n"));
    /// assert!(gantt.contains("    section direct\n    \u{200b}hello :done, t0, "));
    /// # Ok::<(), graflow_core::RunError>(())
    /// ```
    pub fn to_gantt(&self) -> String {
        let mut out = String::from("gantt\n");
        let _ = writeln!(
            out,
            "    title {}",
            gantt_text(&format!(
                "{} (run {}, {} in {:.1} ms)",
                self.workflow(),
                self.run_id,
                if self.failed { "failed" } else { "succeeded" },
                self.elapsed.as_secs_f64() * 1e3
            ))
        );
        out.push_str("    dateFormat x\n    axisFormat %M:%S.%L\n");
        // Sections in the order their handlers first appear.
        let mut sections: Vec<(&str, Vec<String>)> = Vec::new();
        for (n, t) in self.tasks().enumerate() {
            // A task sent back by a goto that did not run again is pending (skipped): its
            // earlier run is not this run's outcome.
            let Some(start) = t.start.filter(|_| t.status != TaskStatus::Skipped) else {
                continue;
            };
            let from = start.as_millis();
            // Mermaid draws nothing for an empty bar: at least 1 ms.
            let to = (start + t.duration.unwrap_or(Duration::ZERO))
                .as_millis()
                .max(from + 1);
            let tag = match t.status {
                TaskStatus::Succeeded => "done",
                TaskStatus::Failed => "crit",
                TaskStatus::Cancelled | TaskStatus::Skipped | TaskStatus::Waiting => "active",
            };
            let mut name = t.id.to_owned();
            if let Some(runner) = t.runner {
                name.push_str(&format!(" on {runner}"));
            }
            if t.attempts > 1 {
                name.push_str(&format!(", {} attempts", t.attempts));
            }
            if t.runs > 1 {
                name.push_str(&format!(", {} runs", t.runs));
            }
            // A zero-width space first: a bar named `title`, `dateFormat`, `click`... would
            // otherwise be read as that statement.
            let bar = format!(
                "    \u{200b}{} :{tag}, t{n}, {from}, {to}",
                gantt_text(&name)
            );
            match sections.iter_mut().find(|(h, _)| *h == t.handler) {
                Some((_, bars)) => bars.push(bar),
                None => sections.push((t.handler, vec![bar])),
            }
        }
        for (handler, bars) in sections {
            let _ = writeln!(out, "    section {}", gantt_text(handler));
            for bar in bars {
                out.push_str(&bar);
                out.push('\n');
            }
        }
        out
    }
}

/// Text for a Gantt title, section or bar name: one line, without the `:`, `;`, `#` and `%`
/// that Mermaid reads as syntax or comments (a full-width colon, a comma, a numero sign and a
/// full-width percent sign stand in for them).
fn gantt_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ':' => '\u{ff1a}',
            ';' => ',',
            '#' => '\u{2116}',
            '%' => '\u{ff05}',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}
