//! Pictures of a workflow: [`Workflow::to_mermaid`] and [`Workflow::to_dot`]. Each node shows
//! its task id and handler; groups are subgraphs; edges appear once.
//!
//! Ids, handler and group names are the user's strings, so they are escaped for each language
//! and nodes get generated names (`n0`, `n1`, ...): no id can change the structure of the text.
//! A task in several groups (plain groups may overlap) is drawn in the first one declared.

use std::collections::HashSet;
use std::fmt::Write as _;

use rustc_hash::FxHashMap as HashMap;

use super::Workflow;

/// A workflow laid out for drawing: nodes per group, top-level nodes, unique edges.
struct Layout<'a> {
    /// Per group drawn: its label and its node indices.
    groups: Vec<(String, Vec<usize>)>,
    top: Vec<usize>,
    edges: Vec<(usize, usize)>,
    labels: Vec<(&'a str, &'a str)>,
}

impl Workflow {
    fn layout(&self) -> Layout<'_> {
        let tasks = self.tasks();
        let mut index: HashMap<&str, usize> = HashMap::default();
        for (i, task) in tasks.iter().enumerate() {
            index.entry(task.id()).or_insert(i);
        }
        let mut placed = vec![false; tasks.len()];
        let mut groups = Vec::new();
        for (name, members, policy) in self.groups() {
            let mine: Vec<usize> = members
                .iter()
                .filter_map(|id| index.get(id).copied())
                .filter(|&i| !std::mem::replace(&mut placed[i], true))
                .collect();
            if !mine.is_empty() {
                groups.push((format!("{name} ({})", policy.describe()), mine));
            }
        }
        let top = (0..tasks.len()).filter(|&i| !placed[i]).collect();
        let mut seen = HashSet::new();
        let edges = self
            .edges()
            .filter_map(|(a, b)| Some((*index.get(a)?, *index.get(b)?)))
            .filter(|edge| seen.insert(*edge))
            .collect();
        Layout {
            groups,
            top,
            edges,
            labels: tasks.iter().map(|t| (t.id(), t.handler())).collect(),
        }
    }

    /// The workflow as a Mermaid flowchart: a node per task (its id and handler), groups as
    /// subgraphs labelled with their policy, an arrow per dependency. Paste it into a Markdown
    /// file on GitHub or GitLab, or <https://mermaid.live>.
    ///
    /// ```
    /// # use graflow_core::Workflow;
    /// # #[graflow_macros::task(crate = "graflow_core")] fn a() -> u32 { 1 }
    /// # #[graflow_macros::task(crate = "graflow_core")] fn b(a: u32) -> u32 { a }
    /// let mut wf = Workflow::builder("pipeline");
    /// let (x, y) = (wf.add(a::task()), wf.add(b::task().with_handler("process")));
    /// wf.edge(x, y);
    /// let text = wf.build().to_mermaid();
    /// assert!(text.starts_with("flowchart TD\n"));
    /// assert!(text.contains(r#"n1["b<br/>process"]"#) && text.contains("n0 --> n1"));
    /// ```
    pub fn to_mermaid(&self) -> String {
        self.draw(&Syntax {
            header: "flowchart TD\n".to_owned(),
            group_open: |g, label| format!("    subgraph g{g}[\"{}\"]\n", mermaid_text(label)),
            group_close: "    end\n",
            node: |i, id, handler| {
                format!(
                    "n{i}[\"{}<br/>{}\"]",
                    mermaid_text(id),
                    mermaid_text(handler)
                )
            },
            edge: |a, b| format!("    n{a} --> n{b}\n"),
            footer: "",
        })
    }

    /// The workflow as a Graphviz DOT digraph: a box per task (its id and handler), groups as
    /// clusters labelled with their policy, an arrow per dependency. Render it with
    /// `dot -Tsvg flow.dot > flow.svg`.
    ///
    /// ```
    /// # use graflow_core::Workflow;
    /// # #[graflow_macros::task(crate = "graflow_core")] fn a() -> u32 { 1 }
    /// let mut wf = Workflow::builder("pipeline");
    /// wf.add(a::task());
    /// let text = wf.build().to_dot();
    /// assert!(text.starts_with("digraph \"pipeline\" {\n"));
    /// assert!(text.contains(r#"n0 [label="a\ndirect"];"#));
    /// ```
    pub fn to_dot(&self) -> String {
        self.draw(&Syntax {
            header: format!(
                "digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box, style=rounded];\n",
                dot_text(self.name())
            ),
            group_open: |g, label| {
                format!(
                    "    subgraph cluster_{g} {{\n        label=\"{}\";\n        style=dashed;\n",
                    dot_text(label)
                )
            },
            group_close: "    }\n",
            node: |i, id, handler| {
                format!("n{i} [label=\"{}\\n{}\"];", dot_text(id), dot_text(handler))
            },
            edge: |a, b| format!("    n{a} -> n{b};\n"),
            footer: "}\n",
        })
    }

    /// The layout in one language: groups with their nodes, then the other nodes, then edges.
    fn draw(&self, syntax: &Syntax) -> String {
        let layout = self.layout();
        let node = |out: &mut String, indent: &str, i: usize| {
            let (id, handler) = layout.labels[i];
            let _ = writeln!(out, "{indent}{}", (syntax.node)(i, id, handler));
        };
        let mut out = syntax.header.clone();
        for (g, (label, members)) in layout.groups.iter().enumerate() {
            out.push_str(&(syntax.group_open)(g, label));
            for &i in members {
                node(&mut out, "        ", i);
            }
            out.push_str(syntax.group_close);
        }
        for &i in &layout.top {
            node(&mut out, "    ", i);
        }
        for &(a, b) in &layout.edges {
            out.push_str(&(syntax.edge)(a, b));
        }
        out.push_str(syntax.footer);
        out
    }
}

/// How one language writes each part of a picture (user strings already escaped by it).
struct Syntax {
    header: String,
    group_open: fn(usize, &str) -> String,
    group_close: &'static str,
    /// A node's statement, without indentation or line end.
    node: fn(usize, &str, &str) -> String,
    edge: fn(usize, usize) -> String,
    footer: &'static str,
}

/// Whether `c` breaks a line somewhere: a control character, or U+2028/U+2029 (which
/// JavaScript, and so Mermaid, reads as line ends).
fn breaks_lines(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Text for a Mermaid quoted label: characters Mermaid or HTML would read become entity codes
/// (`#quot;`, `#35;`, ...), line breaks a space. Mermaid finds a directive (`%%{init: ...}%%`)
/// or a comment (`%%`) anywhere in the text, even inside quotes, so `%`, `{` and `}` are
/// entity codes too.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            '%' => out.push_str("#37;"),
            '{' => out.push_str("#123;"),
            '}' => out.push_str("#125;"),
            c if breaks_lines(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text for a DOT double-quoted string: `"` and `\` escaped, a newline as `\n`, other control
/// characters a space.
fn dot_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if breaks_lines(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
