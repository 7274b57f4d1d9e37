//! Pictures: `to_mermaid` and `to_dot` (groups as subgraphs, the handler on each node, hostile
//! ids escaped), the DOT output rendered by Graphviz, and a run's Gantt timeline.

use std::process::Command;
use std::time::Duration;

use graflow::prelude::*;

graflow::enable_test_runner!();

#[task]
fn download() -> u32 {
    1
}

#[task(handler = "process")]
fn clean(download: u32) -> u32 {
    download + 1
}

#[task]
async fn stats(clean: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(40)).await;
    clean * 2
}

#[task]
fn mirror(clean: u32) -> Result<u32, String> {
    Err(format!("mirror down ({clean})"))
}

#[task]
fn extra(clean: u32) -> u32 {
    clean
}

#[task]
fn publish(stats: u32) -> u32 {
    stats
}

#[task]
fn never(publish: u32) -> Result<u32, String> {
    Err(format!("never ({publish})"))
}

fn pipeline() -> Workflow {
    workflow! {
        name: "pipeline";
        download >> clean >> (stats | mirror).name("outputs").policy(best_effort) >> publish;
        clean >> (extra | publish);
    }
}

/// The text between `open` and the `close` line that ends it.
fn block<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text
        .find(open)
        .unwrap_or_else(|| panic!("no {open:?} in\n{text}"));
    let rest = &text[start..];
    let end = rest
        .find(close)
        .unwrap_or_else(|| panic!("no {close:?} after {open:?}"));
    &rest[..end]
}

fn node_name<'a>(text: &'a str, label_start: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.contains(label_start))
        .unwrap_or_else(|| panic!("no node {label_start:?} in\n{text}"));
    line.trim_start().split(['[', ' ']).next().unwrap()
}

#[test]
fn mermaid_shows_every_task_its_handler_each_group_and_each_edge_once() {
    let text = pipeline().to_mermaid();
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    let outputs = block(&text, "subgraph g0[\"outputs (best_effort)\"]", "    end");
    assert!(outputs.contains("[\"stats<br/>direct\"]"), "{text}");
    assert!(outputs.contains("[\"mirror<br/>direct\"]"), "{text}");
    // The plain group (extra | publish): publish is drawn once, in the first group it is in.
    assert_eq!(
        text.matches("[\"publish<br/>direct\"]").count(),
        1,
        "{text}"
    );
    assert!(text.contains("[\"clean<br/>process\"]"), "{text}");
    let n = |label: &str| node_name(&text, &format!("[\"{label}<br/>")).to_owned();
    for (a, b) in [
        ("download", "clean"),
        ("clean", "stats"),
        ("clean", "mirror"),
        ("stats", "publish"),
        ("mirror", "publish"),
        ("clean", "extra"),
        ("clean", "publish"),
    ] {
        let edge = format!("    {} --> {}\n", n(a), n(b));
        assert_eq!(text.matches(&edge).count(), 1, "{edge:?} in\n{text}");
    }
    assert_eq!(text.matches(" --> ").count(), 7, "{text}");
    assert_eq!(text, pipeline().to_mermaid(), "deterministic");
}

#[test]
fn dot_shows_every_task_its_handler_each_group_as_a_cluster_and_each_edge_once() {
    let text = pipeline().to_dot();
    assert!(text.starts_with("digraph \"pipeline\" {\n"), "{text}");
    assert!(text.trim_end().ends_with('}'));
    let cluster = block(&text, "subgraph cluster_0 {", "    }");
    assert!(
        cluster.contains("label=\"outputs (best_effort)\";"),
        "{text}"
    );
    assert!(cluster.contains("[label=\"stats\\ndirect\"];"), "{text}");
    assert!(cluster.contains("[label=\"mirror\\ndirect\"];"), "{text}");
    assert!(text.contains("[label=\"clean\\nprocess\"];"), "{text}");
    assert_eq!(text.matches(" -> ").count(), 7, "{text}");
    let plain = block(&text, "subgraph cluster_1 {", "    }");
    assert!(
        plain.contains("label=\"(extra | publish) (strict)\";"),
        "{text}"
    );
    assert_eq!(text, pipeline().to_dot(), "deterministic");
}

const HOSTILE: &str = "a\"];evil[\"x\n} -->\\ #quot; <b>&`;:";

fn hostile() -> Workflow {
    let mut wf = Workflow::builder("hostile \"} digraph");
    let a = wf.add(download::task().with_id(HOSTILE).with_handler("h\"}]"));
    let b = wf.add(clean::task().with_input("download", 1u32).with_id("}{"));
    let c = wf.add(extra::task().with_input("clean", 1u32).with_id("\\\""));
    wf.edge(a, b).edge(a, c);
    wf.group("g\"]; end\nsubgraph x", &[b, c], GroupPolicy::best_effort());
    wf.build()
}

#[test]
fn hostile_ids_handlers_and_group_names_cannot_break_the_structure() {
    let mermaid = hostile().to_mermaid();
    let lines: Vec<&str> = mermaid.lines().collect();
    // flowchart, subgraph, 2 members, end, 1 top node, 2 edges: one line each.
    assert_eq!(lines.len(), 8, "{mermaid}");
    assert_eq!(lines[1].matches('"').count(), 2, "{mermaid}");
    assert_eq!(lines[4], "    end");
    for line in &lines[2..4] {
        assert_eq!(line.matches('"').count(), 2, "{line}");
    }
    assert!(lines[5].starts_with("    n0[\"a#quot;];evil[#quot;x #125; --#gt;\\ #35;quot; #lt;b#gt;#amp;#96;;:<br/>h#quot;#125;]\"]"), "{}", lines[5]);
    assert_eq!(&lines[6..], ["    n0 --> n1", "    n0 --> n2"]);

    let dot = hostile().to_dot();
    assert!(
        dot.starts_with("digraph \"hostile \\\"} digraph\" {\n"),
        "{dot}"
    );
    assert!(
        dot.contains("n0 [label=\"a\\\"];evil[\\\"x\\n} -->\\\\ #quot; <b>&`;:\\nh\\\"}]\"];"),
        "{dot}"
    );
    assert!(
        dot.contains("label=\"g\\\"]; end\\nsubgraph x (best_effort)\";"),
        "{dot}"
    );
}

/// Mermaid reads a directive (`%%{init: ...}%%`) or a comment (`%%`) anywhere in its text, even
/// inside a quoted label, and a U+2028/U+2029 as a line end: an id holding them is just text.
#[test]
fn an_id_cannot_carry_a_mermaid_directive_or_a_line_break() {
    let mut wf = Workflow::builder("directive");
    let a = wf.add(
        download::task()
            .with_id("x%%{init: {'theme': 'dark', 'securityLevel': 'loose'}}%%")
            .with_handler("direct"),
    );
    let b = wf.add(
        clean::task()
            .with_input("download", 1u32)
            .with_id("line\u{2028}break\u{2029}para%%comment"),
    );
    wf.edge(a, b);
    let mermaid = wf.build().to_mermaid();
    assert!(!mermaid.contains("%%"), "{mermaid}");
    assert!(!mermaid.contains('%'), "{mermaid}");
    assert!(!mermaid.contains("{init"), "{mermaid}");
    assert!(!mermaid.contains(['\u{2028}', '\u{2029}']), "{mermaid:?}");
    assert!(
        mermaid.contains("x#37;#37;#123;init: #123;'theme': 'dark'"),
        "{mermaid}"
    );
    assert_eq!(mermaid.lines().count(), 4, "{mermaid}");
}

/// Graphviz's `dot`, or `None` (the test then says it was skipped, unless
/// `GRAFLOW_REQUIRE_GRAPHVIZ=1`, which makes a missing `dot` a failure).
fn graphviz() -> Option<&'static str> {
    if Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("dot");
    }
    assert!(
        std::env::var_os("GRAFLOW_REQUIRE_GRAPHVIZ").is_none_or(|v| v != "1"),
        "GRAFLOW_REQUIRE_GRAPHVIZ=1 but Graphviz's `dot` cannot run: `apt-get install graphviz`"
    );
    eprintln!("skipped: Graphviz's `dot` is not installed (apt-get install graphviz)");
    None
}

fn render(dot: &str) -> String {
    let dir = std::env::temp_dir().join(format!("graflow-dot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(format!("{}.dot", dot.len()));
    std::fs::write(&input, dot).unwrap();
    let out = Command::new("dot")
        .arg("-Tsvg")
        .arg(&input)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&input);
    assert!(
        out.status.success(),
        "dot refused the graph: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn graphviz_renders_the_dot_output_with_every_task_handler_and_cluster() {
    if graphviz().is_none() {
        return;
    }
    let svg = render(&pipeline().to_dot());
    assert!(svg.contains("<svg"), "{svg}");
    assert_eq!(svg.matches("class=\"cluster\"").count(), 2, "{svg}");
    assert_eq!(svg.matches("class=\"node\"").count(), 6, "{svg}");
    assert_eq!(svg.matches("class=\"edge\"").count(), 7, "{svg}");
    for text in [
        ">download<",
        ">clean<",
        ">stats<",
        ">mirror<",
        ">extra<",
        ">publish<",
        ">process<",
        ">direct<",
        ">outputs (best_effort)<",
    ] {
        assert!(svg.contains(text), "{text} in\n{svg}");
    }
    // The hostile workflow renders too, its text intact.
    let svg = render(&hostile().to_dot());
    assert_eq!(svg.matches("class=\"node\"").count(), 3, "{svg}");
    assert!(svg.contains("a&quot;];evil[&quot;x"), "{svg}");
}

#[test]
fn the_gantt_chart_has_a_section_per_handler_and_a_bar_per_task_that_ran() {
    let wf = workflow! {
        name: "gantt";
        download >> clean >> (stats | mirror).policy(best_effort) >> publish >> never;
    };
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new())
        .unwrap_err();
    let report = error.report().unwrap();
    let gantt = report.to_gantt();
    assert!(gantt.starts_with("gantt\n    title gantt (run "), "{gantt}");
    assert!(
        gantt.contains("    dateFormat x\n    axisFormat %M:%S.%L\n"),
        "{gantt}"
    );
    let sections: Vec<&str> = gantt
        .lines()
        .filter_map(|l| l.strip_prefix("    section "))
        .collect();
    assert_eq!(sections, ["direct", "process"], "{gantt}");
    let bar = |id: &str| -> (String, u128, u128) {
        let line = gantt
            .lines()
            .find(|l| l.starts_with(&format!("    \u{200b}{id} ")))
            .unwrap_or_else(|| panic!("no bar for {id} in\n{gantt}"));
        let (_, spec) = line.split_once(" :").unwrap();
        let parts: Vec<&str> = spec.split(", ").collect();
        (
            parts[0].to_owned(),
            parts[2].parse().unwrap(),
            parts[3].parse().unwrap(),
        )
    };
    let (tag, from, to) = bar("stats");
    assert_eq!(tag, "done");
    let record = report.task("stats").unwrap();
    assert_eq!(from, record.start.unwrap().as_millis());
    assert!(to - from >= 40, "{from} {to}");
    assert_eq!(bar("mirror").0, "crit");
    assert_eq!(bar("never").0, "crit");
    assert!(bar("clean").1 >= bar("download").2 - 1);
    let clean = gantt.lines().find(|l| l.contains("clean on ")).unwrap();
    assert!(clean.contains("pid"), "{clean}");
    // Every bar has a length.
    for id in ["download", "clean", "stats", "mirror", "publish", "never"] {
        let (_, from, to) = bar(id);
        assert!(to > from, "{id}");
    }
}

#[test]
fn gantt_names_cannot_break_its_lines() {
    let mut wf = Workflow::builder("g: #1;");
    wf.add(download::task().with_id("a: b; #c\nd"));
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    let gantt = report.to_gantt();
    assert_eq!(gantt.lines().count(), 6, "{gantt}");
    let bar = gantt.lines().last().unwrap();
    assert!(
        bar.starts_with("    \u{200b}a\u{ff1a} b, \u{2116}c d :done, t0, "),
        "{bar}"
    );
    assert!(
        gantt
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("    title g\u{ff1a} \u{2116}1, (run"),
        "{gantt}"
    );
}

#[test]
fn gantt_bars_named_like_gantt_statements_or_comments_stay_bars() {
    let mut wf = Workflow::builder("keywords");
    for id in [
        "title",
        "dateFormat x",
        "click",
        "%% comment",
        "a%b",
        "section s",
        "topAxis",
    ] {
        wf.add(download::task().with_id(id));
    }
    let report = WorkflowEngine::new()
        .run(&wf.build(), RunOptions::new())
        .unwrap();
    let gantt = report.to_gantt();
    let bars: Vec<&str> = gantt.lines().skip(5).collect();
    assert_eq!(bars.len(), 7, "{gantt}");
    for bar in bars {
        // Every bar starts with a zero-width space: no statement keyword starts its line.
        assert!(bar.starts_with("    \u{200b}"), "{bar:?}");
        assert!(!bar.contains('%'), "{bar:?}");
    }
    assert_eq!(gantt.lines().filter(|l| l.contains("section")).count(), 2);
    assert_eq!(gantt.matches("dateFormat").count(), 2);
}
