//! `bench/report.py`, which turns `bench/compare.sh`'s measurements into BENCHMARKS.md and the
//! per-task cost chart, on measurements written here: every ratio uses Graflow 0.2's fastest
//! form, a missed target is shown as missed (never hidden), and the chart is drawn from the
//! data. The chart needs matplotlib (Debian's `python3-matplotlib`: the README's test command
//! installs it; `GRAFLOW_REQUIRE_MATPLOTLIB=1` makes its absence a failure).

use std::path::{Path, PathBuf};
use std::process::Command;

fn report_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/report.py")
}

/// A directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "graflow-bench-report-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// One measurement, as graflow-bench and graflow_py.py print it.
fn row(side: &str, workload: &str, n: u64, seconds: f64, extra: &str) -> String {
    format!(
        "{{\"side\":\"{side}\",\"workload\":\"{workload}\",\"n\":{n},\"seconds\":{seconds},\"per_item_us\":{},\"max_rss_kb\":40000{extra}}}",
        seconds * 1e6 / n as f64
    )
}

/// A Python interpreter: the one that imports matplotlib when `chart` (Debian's, which
/// `python3-matplotlib` installs for, may not be the first `python3` on PATH), or `None`.
fn python(chart: bool) -> Option<&'static str> {
    let candidates = ["/usr/bin/python3", "python3"];
    let works = |python: &str, check: &str| {
        Command::new(python)
            .args(["-c", check])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let check = if chart { "import matplotlib" } else { "pass" };
    if let Some(found) = candidates.into_iter().find(|p| works(p, check)) {
        return Some(found);
    }
    assert!(
        std::env::var_os("GRAFLOW_REQUIRE_MATPLOTLIB").is_none_or(|v| v != "1"),
        "GRAFLOW_REQUIRE_MATPLOTLIB=1 but no python3 here {}: \
         `bash scripts/debian-package.sh python3:matplotlib python3-matplotlib`",
        if chart { "imports matplotlib" } else { "runs" }
    );
    eprintln!("skipped: no python3 with matplotlib here (apt-get install python3-matplotlib)");
    None
}

/// Runs report.py on `rows`; returns the markdown.
fn report(name: &str, rows: &[String], svg: Option<&Path>) -> Option<String> {
    let python = python(svg.is_some())?;
    let dir = scratch(name);
    let results = dir.join("results.jsonl");
    let machine = dir.join("machine.txt");
    std::fs::write(&results, rows.join("\n") + "\n").expect("write the results");
    std::fs::write(&machine, "cpu: a test\n").expect("write the machine");
    let mut command = Command::new(python);
    command.arg(report_py()).arg(&results).arg(&machine);
    if let Some(svg) = svg {
        command.arg("--svg").arg(svg);
    }
    let out = command.output().expect("python runs");
    assert!(
        out.status.success(),
        "report.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&results);
    let _ = std::fs::remove_file(&machine);
    Some(String::from_utf8(out.stdout).expect("markdown is UTF-8"))
}

/// The targets table's line that starts with `target`: (met, measured).
fn target<'a>(markdown: &'a str, target: &str) -> (&'a str, &'a str) {
    let line = markdown
        .lines()
        .find(|l| l.starts_with(&format!("| {target}")))
        .unwrap_or_else(|| panic!("no target {target:?} in\n{markdown}"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    (cells[2], cells[3])
}

fn table_row<'a>(markdown: &'a str, start: &str) -> &'a str {
    markdown
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no row {start:?} in\n{markdown}"))
}

/// A run where graflow-rs is 50× Graflow's faster chain form at N = 100 (400× its slower one)
/// and 400× at N = 1,000; its 100k chain costs 3× the 1k chain per task.
fn chain_rows() -> Vec<String> {
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push(row(
            "graflow-rs",
            "chain",
            100,
            0.0001,
            ",\"run_seconds\":0.00008",
        ));
        rows.push(row(
            "graflow-rs",
            "chain",
            1_000,
            0.0005,
            ",\"run_seconds\":0.0004",
        ));
        rows.push(row(
            "graflow-rs",
            "chain",
            100_000,
            0.15,
            ",\"run_seconds\":0.1",
        ));
        rows.push(row(
            "graflow-py",
            "chain",
            100,
            0.04,
            ",\"run_seconds\":0.03,\"form\":\"pairwise\"",
        ));
        rows.push(row(
            "graflow-py",
            "chain",
            100,
            0.005,
            ",\"run_seconds\":0.004,\"form\":\"reduce\"",
        ));
        rows.push(row(
            "graflow-py",
            "chain",
            1_000,
            0.2,
            ",\"run_seconds\":0.16,\"form\":\"pairwise\"",
        ));
    }
    rows.push(row(
        "graflow-rs",
        "chain",
        1_000_000,
        1.0,
        ",\"run_seconds\":0.7",
    ));
    rows
}

#[test]
fn ratios_use_graflows_fastest_form_and_misses_are_shown() {
    let Some(markdown) = report("chain", &chain_rows(), None) else {
        return;
    };
    // N = 100: against the faster form (reduce: 5 ms), not the slower (40 ms).
    let hundred = table_row(&markdown, "| linear chain | 100 |");
    assert!(
        hundred.contains("5.00 ms (reduce)"),
        "the fastest form, named: {hundred}"
    );
    assert!(
        hundred.contains("50× (**under 100×**)"),
        "a ratio under the target says so: {hundred}"
    );
    assert!(
        !hundred.contains("400×"),
        "the slower form is not the ratio: {hundred}"
    );
    let thousand = table_row(&markdown, "| linear chain | 1,000 |");
    assert!(
        thousand.contains("400×") && !thousand.contains("under"),
        "{thousand}"
    );
    // Both forms are listed, each with its own medians.
    assert!(markdown.contains("| linear chain | 100 | pairwise | 3 | 40.00 ms | 30.00 ms |"));
    assert!(markdown.contains("| linear chain | 100 | reduce | 3 | 5.00 ms | 4.00 ms |"));

    let (met, measured) = target(&markdown, "≥ 100× Graflow 0.2's best");
    assert_eq!(met, "**no**", "{measured}");
    assert!(
        measured.contains("linear chain 100, total, 50.0×")
            && measured.contains("under 100× on 2 of 4 rows"),
        "the slowest row and how many missed: {measured}"
    );
    let (met, measured) = target(&markdown, "100k chain: per-task cost ≤ 2 × the 1k chain's");
    assert_eq!(met, "**no**", "{measured}");
    assert!(measured.starts_with("3.00×"), "{measured}");

    // The scaling table reaches 10⁶, with the memory per task there.
    assert!(table_row(&markdown, "| 1,000,000 |").contains("1.000 µs"));
    assert!(
        markdown.contains("chain: 39 MiB peak RSS, 41 bytes per task"),
        "{markdown}"
    );
}

#[test]
fn parallel_efficiency_is_checked_against_ninety_percent() {
    let rows = |ours: f64| {
        let mut rows = Vec::new();
        for _ in 0..3 {
            rows.push(row("graflow-rs", "parallel", 64, 0.4, &format!(
                ",\"run_seconds\":0.4,\"cores\":2,\"work_seconds\":0.64,\"unit_seconds\":0.01,\"efficiency\":{ours}"
            )));
            for (form, efficiency) in [("threads", 0.45), ("direct", 0.5)] {
                rows.push(row("graflow-py", "parallel", 64, 0.7, &format!(
                    ",\"run_seconds\":0.7,\"form\":\"{form}\",\"cores\":2,\"work_seconds\":0.64,\"unit_seconds\":0.01,\"efficiency\":{efficiency}"
                )));
            }
        }
        rows
    };
    let name = "64 CPU-bound tasks ≥ 90% parallel efficiency";
    let Some(missed) = report("parallel-missed", &rows(0.85), None) else {
        return;
    };
    assert_eq!(
        target(&missed, name),
        ("**no**", "85.0%; Graflow 0.2 50.0% (direct)")
    );
    let met = report("parallel-met", &rows(0.95), None).expect("python ran before");
    assert_eq!(
        target(&met, name),
        ("yes", "95.0%; Graflow 0.2 50.0% (direct)")
    );
    assert!(
        table_row(&met, "| 64 | Graflow 0.2 | threads | 3 | 2 |")
            .ends_with("| 45.0% | 45.0–45.0% |"),
        "{met}"
    );
}

#[test]
fn the_spread_failed_graflow_runs_and_odd_rows_are_reported_not_hidden() {
    let parallel = |efficiency: f64| {
        row(
            "graflow-rs",
            "parallel",
            64,
            0.4,
            &format!(
                ",\"run_seconds\":0.4,\"cores\":2,\"work_seconds\":0.64,\"unit_seconds\":0.01,\"efficiency\":{efficiency}"
            ),
        )
    };
    let mut rows = vec![parallel(0.52), parallel(0.97), parallel(1.14)];
    // A truncated parallel row, a handler no slower than a plain call, and Redis rows where
    // every Graflow run failed.
    rows.push(row("graflow-rs", "parallel", 64, 0.4, ""));
    rows.push(row("graflow-rs", "call", 1_000_000, 0.1, ""));
    rows.push(row("graflow-rs", "handler", 1_000_000, 0.1, ""));
    rows.push(row("graflow-py", "call", 1_000_000, 0.1, ""));
    rows.push(row("graflow-py", "handler", 10_000, 0.2, ""));
    for _ in 0..2 {
        rows.push(row("graflow-rs", "redis", 1_000, 0.12, ",\"workers\":2"));
        rows.push("{\"side\":\"graflow-py\",\"workload\":\"redis-failed\",\"n\":1000,\"workers\":2,\"error\":\"Barrier wait timeout\"}".to_owned());
    }
    let Some(markdown) = report("odd", &rows, None) else {
        return;
    };
    assert!(
        table_row(&markdown, "| 64 | graflow-rs |").ends_with("| 97.0% | 52.0–114.0% |"),
        "the spread of a load-sensitive figure is shown: {markdown}"
    );
    assert_eq!(
        target(
            &markdown,
            "≥ 100× Graflow 0.2's best, every row both sides run on Redis"
        ),
        (
            "**no**",
            "not measured: every Graflow 0.2 Redis run failed or none ran"
        )
    );
    assert!(markdown.contains("failed 2 of 2 runs: Barrier wait timeout"));
}

#[test]
fn the_chart_is_drawn_from_the_measurements() {
    let dir = scratch("chart");
    let svg = dir.join("chart.svg");
    let mut rows = chain_rows();
    for n in [100, 1_000] {
        rows.push(row("graflow-rs", "fanout", n, n as f64 * 2e-6, ""));
        rows.push(row(
            "graflow-py",
            "fanout",
            n,
            n as f64 * 1e-4,
            ",\"form\":\"direct\"",
        ));
    }
    if report("chart", &rows, Some(&svg)).is_none() {
        return;
    }
    let drawn = std::fs::read_to_string(&svg).expect("report.py wrote the chart");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(drawn.contains("<svg"), "an SVG file");
    for label in [
        "graflow-rs: linear chain",
        "graflow-rs: fan-out / fan-in",
        "Graflow 0.2 (fastest form): linear chain",
        "Graflow 0.2 (fastest form): fan-out / fan-in",
        "tasks in the workflow (N)",
        "time per task, build + run (µs)",
    ] {
        assert!(drawn.contains(label), "the chart shows {label:?}");
    }
    // Log-log: powers of ten on both axes (matplotlib writes 10 and the exponent apart).
    assert!(
        drawn.matches(">10<").count() >= 4,
        "decade tick labels on both axes"
    );
}
