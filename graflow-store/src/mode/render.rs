//! What `--graflow-runs` and `--graflow-run ID` print without `--graflow-json`: plain tables,
//! every cell on one line (line breaks and control characters escaped).

use std::fmt::Write as _;

use crate::read::model::{RunDetail, RunSummary, format_time};

/// A cell's text on one line, at most `max` characters.
fn cell(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn when(at: Option<std::time::SystemTime>) -> String {
    at.and_then(format_time).map_or_else(
        || "-".to_owned(),
        |t| t.chars().take(19).collect::<String>().replace('T', " "),
    )
}

fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{} min", ms / 60_000),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(text.chars().count());
            line.push_str(text);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The runs, newest first.
pub(crate) fn runs(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "no runs recorded yet\n".to_owned();
    }
    let mut rows = vec![
        [
            "ID",
            "WORKFLOW",
            "STATUS",
            "STARTED (UTC)",
            "DURATION",
            "SUCCEEDED",
            "FAILED",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for run in runs {
        rows.push(vec![
            cell(&run.id, 40),
            cell(&run.workflow, 40),
            run.status.to_string(),
            when(run.started_at),
            duration(run.duration_ms),
            format!("{}/{}", run.tasks_succeeded, run.tasks_total),
            run.tasks_failed.to_string(),
        ]);
    }
    table(&rows)
}

/// One run: what it was, its tasks with their attempts, its log lines.
pub(crate) fn run(run: &RunDetail) -> String {
    let s = &run.summary;
    let mut out = String::new();
    let _ = writeln!(out, "run        {}", cell(&s.id, 80));
    let _ = writeln!(
        out,
        "workflow   {} (fingerprint {})",
        cell(&s.workflow, 80),
        cell(&run.fingerprint, 20)
    );
    let _ = writeln!(out, "status     {}", s.status);
    let _ = writeln!(
        out,
        "started    {}   ended {}   duration {}",
        when(s.started_at),
        when(s.ended_at),
        duration(s.duration_ms)
    );
    let _ = writeln!(
        out,
        "program    {} (build {}) pid {} on {} as {}",
        cell(&s.program, 60),
        cell(&run.build_id, 40),
        s.pid,
        cell(&s.host, 60),
        cell(&run.user, 40)
    );
    if let Some(path) = &s.checkpoint {
        let _ = writeln!(out, "checkpoint {}", cell(path, 200));
    }
    if let Some(error) = &s.error {
        let _ = writeln!(out, "error      {}", cell(error, 400));
    }
    if s.records_lost > 0 {
        let _ = writeln!(out, "lost       {} records were not stored", s.records_lost);
    }
    out.push('\n');
    let mut rows = vec![
        [
            "TASK",
            "HANDLER",
            "STATUS",
            "ATTEMPT",
            "WHERE",
            "STARTED (UTC)",
            "TOOK",
            "ERROR",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for task in &run.tasks {
        if task.tries.is_empty() {
            rows.push(vec![
                cell(&task.id, 40),
                cell(&task.handler, 20),
                cell(&task.status, 20),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ]);
        }
        for t in &task.tries {
            let took = match (t.started_at, t.ended_at) {
                (Some(a), Some(b)) => {
                    duration(b.duration_since(a).ok().map(|d| d.as_millis() as u64))
                }
                _ => "-".to_owned(),
            };
            rows.push(vec![
                cell(&task.id, 40),
                cell(&task.handler, 20),
                cell(&t.status, 20),
                t.attempt.to_string(),
                cell(t.runner.as_deref().unwrap_or("-"), 40),
                when(t.started_at),
                took,
                cell(t.error.as_deref().unwrap_or(""), 120),
            ]);
        }
        for w in &task.worker_attempts {
            rows.push(vec![
                cell(&task.id, 40),
                cell(&task.handler, 20),
                cell(&w.status, 20),
                w.attempt.to_string(),
                cell(&w.runner, 40),
                when(w.started_at),
                "-".into(),
                cell(w.error.as_deref().unwrap_or(""), 120),
            ]);
        }
    }
    out.push_str(&table(&rows));
    for task in &run.tasks {
        if task.logs.is_empty() && task.logs_cut.0 == 0 {
            continue;
        }
        let _ = writeln!(out, "\nlog of {}:", cell(&task.id, 80));
        for line in &task.logs {
            let _ = writeln!(out, "  [{}] {}", line.attempt, cell(&line.line, 4096));
        }
        if task.logs_cut.0 > 0 {
            let _ = writeln!(
                out,
                "  ... {} more lines ({} bytes) not stored",
                task.logs_cut.0, task.logs_cut.1
            );
        }
    }
    out
}

/// `--graflow-feedback`: one line per request, then how to answer.
pub(crate) fn feedback(requests: &[crate::feedback::FeedbackInfo]) -> String {
    if requests.is_empty() {
        return "no requests for feedback wait for an answer\n".to_owned();
    }
    let mut rows = vec![
        [
            "ID", "RUN", "TASK", "KIND", "PROMPT", "OPTIONS", "ASKED", "EXPIRES", "STATUS",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in requests {
        rows.push(vec![
            r.id.clone(),
            cell(&r.run_id, 24),
            cell(&r.task, 32),
            r.kind.as_str().to_owned(),
            cell(&r.prompt, 60),
            cell(&r.options.join(", "), 40),
            when(r.asked_at),
            when(r.expires_at),
            r.status_name().to_owned(),
        ]);
    }
    let mut out = table(&rows);
    out.push_str("answer one with: PROGRAM --graflow-answer ID VALUE (yes/no, a text, an option, options separated by commas, or JSON)\n");
    out
}
