//! The workflow graph: nodes, edges, the runtime builder `workflow!` expands to, and the
//! compiled form the scheduler runs (adjacency arrays, roots, parameter sources).

use std::borrow::Cow;
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::group::{Group, GroupPolicy};
use super::problem::Problem;
use super::task::{Task, TaskId};

/// A DAG of tasks. Build one with `workflow!` or [`Workflow::builder`]; run it with
/// [`WorkflowEngine`](crate::WorkflowEngine). Cloning is cheap (the graph is shared).
#[derive(Clone)]
pub struct Workflow {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    tasks: Vec<Task>,
    edges: Vec<(u32, u32)>,
    groups: Vec<Group>,
    graph: OnceLock<Arc<Graph>>,
}

/// A node added to a [`WorkflowBuilder`], for wiring edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeRef(u32);

impl NodeRef {
    /// The node's position in [`Workflow::tasks`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Builds a [`Workflow`] from data: what `workflow!` expands to, and what programs use to make
/// graphs whose shape is known only at run time (one task per file, ...).
///
/// ```
/// // (Inside graflow-core the macros reach it with `crate = "graflow_core"`; a program writes
/// // `#[graflow::task]` and `graflow::Workflow`.)
/// use graflow_core::{RunOptions, TaskContext, Workflow, WorkflowEngine};
/// use graflow_macros::task;
///
/// #[task(crate = "graflow_core")]
/// fn process(path: String) -> usize {
///     path.len()
/// }
///
/// #[task(crate = "graflow_core")]
/// fn summarize(ctx: &TaskContext) -> graflow_core::Result<usize> {
///     Ok(ctx.upstream::<usize>()?.into_iter().sum())
/// }
///
/// let paths = ["a.csv", "bb.csv"];
/// let mut wf = Workflow::builder("per-file");
/// let report = wf.add(summarize::task());
/// for (i, path) in paths.iter().enumerate() {
///     let node = wf.add(process::task().with_id(format!("process_{i}")).with_input("path", path.to_string()));
///     wf.edge(node, report);
/// }
/// let wf = wf.build();
/// let report = WorkflowEngine::new().run(&wf, RunOptions::new())?;
/// assert_eq!(report.result::<usize>("summarize")?, 11);
///
/// // workflow! takes the path too.
/// let again = graflow_macros::workflow! { crate: graflow_core; name: "again"; summarize; };
/// assert_eq!(again.name(), "again");
/// # Ok::<(), graflow_core::Error>(())
/// ```
#[derive(Debug)]
pub struct WorkflowBuilder {
    name: String,
    tasks: Vec<Task>,
    edges: Vec<(u32, u32)>,
    groups: Vec<Group>,
}

impl WorkflowBuilder {
    /// Adds a node. Ids must be unique in a workflow; that is checked when the workflow is
    /// validated, together with everything else.
    pub fn add(&mut self, task: Task) -> NodeRef {
        let index = u32::try_from(self.tasks.len()).expect("a workflow holds at most 2^32 tasks");
        self.tasks.push(task);
        NodeRef(index)
    }

    /// Adds the edge `from >> to`: `to` starts after `from` succeeded.
    pub fn edge(&mut self, from: NodeRef, to: NodeRef) -> &mut Self {
        self.edges.push((from.0, to.0));
        self
    }

    /// Adds edges between consecutive nodes: `nodes[0] >> nodes[1] >> ...`.
    pub fn chain(&mut self, nodes: &[NodeRef]) -> &mut Self {
        for pair in nodes.windows(2) {
            self.edge(pair[0], pair[1]);
        }
        self
    }

    /// Adds `from >> to` for every pair of `froms` × `tos` (a group followed by a group).
    pub fn edges(&mut self, froms: &[NodeRef], tos: &[NodeRef]) -> &mut Self {
        for &from in froms {
            for &to in tos {
                self.edge(from, to);
            }
        }
        self
    }

    /// Declares a parallel group named `name` of `members` and its policy: which member
    /// failures the run tolerates (`(b | c).policy(...)` in `workflow!`). Edges are added as
    /// usual; the group only says how its members' failures count. A node may be in several
    /// strict groups but in at most one group of another policy.
    ///
    /// ```
    /// # use graflow_core::{GroupPolicy, Workflow};
    /// # #[graflow_macros::task(crate = "graflow_core")] fn fetch(url: String) -> usize { url.len() }
    /// # #[graflow_macros::task(crate = "graflow_core")] fn merge(ctx: &graflow_core::TaskContext) -> graflow_core::Result<usize> { Ok(ctx.upstream::<usize>()?.into_iter().sum()) }
    /// let mut wf = Workflow::builder("mirrors");
    /// let sink = wf.add(merge::task());
    /// let mirrors: Vec<_> = (0..3)
    ///     .map(|i| wf.add(fetch::task().with_id(format!("mirror_{i}")).with_input("url", format!("m{i}"))))
    ///     .collect();
    /// wf.edges(&mirrors, &[sink]);
    /// wf.group("mirrors", &mirrors, GroupPolicy::at_least(2));
    /// let wf = wf.build();
    /// ```
    pub fn group(
        &mut self,
        name: impl Into<String>,
        members: &[NodeRef],
        policy: impl Into<GroupPolicy>,
    ) -> &mut Self {
        self.groups.push(Group {
            name: name.into(),
            members: members.iter().map(|m| m.0).collect(),
            policy: policy.into(),
        });
        self
    }

    /// The nodes added so far.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Finishes the workflow. Structural problems (cycles, duplicate ids, ...) are reported when
    /// it is validated or run.
    pub fn build(self) -> Workflow {
        Workflow {
            inner: Arc::new(Inner {
                name: self.name,
                tasks: self.tasks,
                edges: self.edges,
                groups: self.groups,
                graph: OnceLock::new(),
            }),
        }
    }
}

impl Workflow {
    /// A fingerprint of the workflow's shape (FNV-1a over its name; each task's id, function
    /// and handler; its edges, sorted; its groups and their policies): what a checkpoint must
    /// match to be resumed, and what a run store records to tell two shapes of one name apart.
    /// The same across builds and runs of the same shape.
    pub fn fingerprint(&self) -> u64 {
        const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;
        let mut hash = FNV_START;
        let mut feed = |s: &str| {
            for &b in s.as_bytes().iter().chain(&[0]) {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(self.name());
        for task in self.tasks() {
            feed(task.id());
            feed(task.name());
            feed(task.handler());
        }
        let mut edges: Vec<(&str, &str)> = self.edges().collect();
        edges.sort_unstable();
        edges.dedup();
        for (a, b) in edges {
            feed(a);
            feed(b);
        }
        for (name, members, policy) in self.groups() {
            feed(name);
            for m in members {
                feed(m);
            }
            feed(&policy.describe());
        }
        hash
    }

    /// A builder for a workflow named `name`.
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder {
            name: name.into(),
            tasks: Vec::new(),
            edges: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The nodes, in the order they were added.
    pub fn tasks(&self) -> &[Task] {
        &self.inner.tasks
    }

    /// The node with id `id`.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.inner.tasks.iter().find(|t| t.id() == id)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.inner.tasks.len()
    }

    /// Whether the workflow has no node.
    pub fn is_empty(&self) -> bool {
        self.inner.tasks.is_empty()
    }

    /// The edges as `(from id, to id)`, in the order they were added (duplicates included).
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner.edges.iter().map(|&(a, b)| {
            (
                self.inner.tasks[a as usize].id(),
                self.inner.tasks[b as usize].id(),
            )
        })
    }

    /// The parallel groups: name, member ids and policy, in the order they were declared.
    pub fn groups(&self) -> impl Iterator<Item = (&str, Vec<&str>, &GroupPolicy)> {
        self.inner.groups.iter().map(|g| {
            (
                g.name.as_str(),
                g.members
                    .iter()
                    .filter_map(|&m| self.inner.tasks.get(m as usize).map(Task::id))
                    .collect(),
                &g.policy,
            )
        })
    }

    pub(crate) fn group_list(&self) -> &[Group] {
        &self.inner.groups
    }

    /// The compiled graph, built on first use and shared by every run of this workflow.
    pub(crate) fn graph(&self) -> Result<Arc<Graph>, Vec<Problem>> {
        if let Some(graph) = self.inner.graph.get() {
            return Ok(graph.clone());
        }
        let graph = Arc::new(Graph::compile(
            &self.inner.tasks,
            &self.inner.edges,
            &self.inner.groups,
            self.name(),
        )?);
        Ok(self.inner.graph.get_or_init(|| graph).clone())
    }
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.inner.name)
            .field("tasks", &self.inner.tasks.len())
            .field("edges", &self.inner.edges.len())
            .finish()
    }
}

/// Where a parameter's value comes from, decided when the graph is compiled.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) enum Source {
    /// `Task::inputs[i]` of the consuming node.
    Bound(u32),
    /// The result of node `n`, an ancestor of the consumer.
    Result(u32),
    /// The channel key named like the parameter.
    Channel,
}

/// A parameter that must be in the run's initial channel (no upstream task declares it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelNeed {
    pub node: u32,
    pub param: u32,
}

/// The form of a workflow the scheduler runs: compressed adjacency arrays, in-degrees, roots,
/// pre-resolved parameter sources and the distinct handler names.
pub(crate) struct Graph {
    pub tasks_index: HashMap<TaskId, u32>,
    succ_offsets: Vec<u32>,
    succ: Vec<u32>,
    pred_offsets: Vec<u32>,
    pred: Vec<u32>,
    pub roots: Vec<u32>,
    source_offsets: Vec<u32>,
    sources: Vec<Source>,
    pub channel_needs: Vec<ChannelNeed>,
    pub handler_names: Vec<Cow<'static, str>>,
    pub node_handler: Vec<u32>,
    /// Members of groups whose policy is not strict: node → index of its group.
    pub tolerant: HashMap<u32, u32>,
}

fn csr(
    n: usize,
    edges: &[(u32, u32)],
    key: impl Fn(&(u32, u32)) -> (u32, u32),
) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n + 1];
    for e in edges {
        offsets[key(e).0 as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut targets = vec![0u32; edges.len()];
    for e in edges {
        let (from, to) = key(e);
        targets[fill[from as usize] as usize] = to;
        fill[from as usize] += 1;
    }
    (offsets, targets)
}

impl Graph {
    fn compile(
        tasks: &[Task],
        edges: &[(u32, u32)],
        groups: &[Group],
        workflow: &str,
    ) -> Result<Graph, Vec<Problem>> {
        let n = tasks.len();
        if n == 0 {
            return Err(vec![Problem::EmptyWorkflow {
                workflow: workflow.to_owned(),
            }]);
        }
        let mut problems = Vec::new();

        let mut tasks_index: HashMap<TaskId, u32> =
            HashMap::with_capacity_and_hasher(n, rustc_hash::FxBuildHasher);
        for (i, task) in tasks.iter().enumerate() {
            if let Some(&first) = tasks_index.get(&task.id) {
                problems.push(Problem::DuplicateTaskId {
                    id: task.id.to_string(),
                    first: tasks[first as usize].def.name,
                    second: task.def.name,
                });
            } else {
                tasks_index.insert(task.id.clone(), i as u32);
            }
        }

        let mut edges = edges.to_vec();
        edges.sort_unstable();
        edges.dedup();
        let (succ_offsets, succ) = csr(n, &edges, |&(a, b)| (a, b));
        let (pred_offsets, pred) = csr(n, &edges, |&(a, b)| (b, a));

        let mut graph = Graph {
            tasks_index,
            succ_offsets,
            succ,
            pred_offsets,
            pred,
            roots: Vec::new(),
            source_offsets: Vec::new(),
            sources: Vec::new(),
            channel_needs: Vec::new(),
            handler_names: Vec::new(),
            node_handler: Vec::with_capacity(n),
            tolerant: HashMap::default(),
        };
        graph.roots = (0..n as u32)
            .filter(|&i| graph.preds(i).is_empty())
            .collect();
        if let Some(path) = graph.find_cycle(tasks) {
            problems.push(Problem::Cycle { path });
            // Parameter checks need ancestry, which a cycle makes meaningless.
            return Err(problems);
        }

        let mut handler_ids: HashMap<&str, u32> = HashMap::default();
        let mut last: Option<(&str, u32)> = None;
        for task in tasks {
            let name = task.handler.as_ref();
            // Neighbouring nodes mostly share a handler: skip the hash then.
            let id = match last {
                Some((previous, id)) if previous == name => id,
                _ => {
                    let next = graph.handler_names.len() as u32;
                    let id = *handler_ids.entry(name).or_insert(next);
                    if id == next {
                        graph.handler_names.push(task.handler.clone());
                    }
                    id
                }
            };
            last = Some((name, id));
            graph.node_handler.push(id);
        }

        graph.resolve_sources(tasks, &mut problems);
        graph.check_groups(tasks, groups, &mut problems);
        for task in tasks {
            if task.max_cycles() == 0 {
                problems.push(Problem::ZeroMaxCycles {
                    task: task.id().to_owned(),
                });
            }
        }
        if problems.is_empty() {
            Ok(graph)
        } else {
            Err(problems)
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.succ_offsets.len() - 1
    }

    pub(crate) fn succs(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.succ[self.succ_offsets[n] as usize..self.succ_offsets[n + 1] as usize]
    }

    pub(crate) fn preds(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.pred[self.pred_offsets[n] as usize..self.pred_offsets[n + 1] as usize]
    }

    pub(crate) fn sources(&self, node: u32) -> &[Source] {
        let n = node as usize;
        &self.sources[self.source_offsets[n] as usize..self.source_offsets[n + 1] as usize]
    }

    pub(crate) fn index_of(&self, id: &str) -> Option<u32> {
        self.tasks_index.get(id).copied()
    }

    /// The tolerant group (policy not strict) `node` is a member of.
    pub(crate) fn tolerant_group(&self, node: u32) -> Option<u32> {
        if self.tolerant.is_empty() {
            return None;
        }
        self.tolerant.get(&node).copied()
    }

    /// Checks each group's members and policy, and notes the members of tolerant groups.
    fn check_groups(&mut self, tasks: &[Task], groups: &[Group], problems: &mut Vec<Problem>) {
        for (g, group) in groups.iter().enumerate() {
            let invalid = |message: String| Problem::InvalidGroup {
                group: group.name.clone(),
                message,
            };
            if group.members.is_empty() {
                problems.push(invalid("it has no member".to_owned()));
                continue;
            }
            if let Some(&bad) = group.members.iter().find(|&&m| m as usize >= tasks.len()) {
                problems.push(invalid(format!(
                    "member #{bad} is not a node of this workflow (a NodeRef from another builder?)"
                )));
                continue;
            }
            let count = group.members.len();
            match &group.policy {
                GroupPolicy::AtLeast(0) => problems.push(invalid(
                    "at_least(0) always passes: use GroupPolicy::best_effort()".to_owned(),
                )),
                GroupPolicy::AtLeast(n) if *n > count => problems.push(invalid(format!(
                    "at_least({n}) can never pass: the group has only {count} member(s)"
                ))),
                GroupPolicy::Critical(ids) => {
                    for id in ids {
                        if !group.members.iter().any(|&m| tasks[m as usize].id() == id) {
                            problems.push(invalid(format!(
                                "critical member '{id}' is not a member of the group (members: {})",
                                group
                                    .members
                                    .iter()
                                    .map(|&m| tasks[m as usize].id())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )));
                        }
                    }
                }
                _ => {}
            }
            if group.policy.is_strict() {
                continue;
            }
            for &member in &group.members {
                if let Some(&other) = self.tolerant.get(&member) {
                    if other != g as u32 {
                        problems.push(invalid(format!(
                            "task '{}' is also in group '{}'; a task may be in only one group whose policy is not strict",
                            tasks[member as usize].id(),
                            groups[other as usize].name
                        )));
                    }
                } else {
                    self.tolerant.insert(member, g as u32);
                }
            }
        }
    }

    /// Kahn's algorithm; when some node is never freed, walk predecessors among those nodes
    /// until one repeats: that is a cycle.
    fn find_cycle(&self, tasks: &[Task]) -> Option<Vec<String>> {
        let n = self.len();
        let mut indegree: Vec<u32> = (0..n as u32).map(|i| self.preds(i).len() as u32).collect();
        let mut queue: VecDeque<u32> = self.roots.iter().copied().collect();
        let mut seen = 0usize;
        while let Some(node) = queue.pop_front() {
            seen += 1;
            for &s in self.succs(node) {
                indegree[s as usize] -= 1;
                if indegree[s as usize] == 0 {
                    queue.push_back(s);
                }
            }
        }
        if seen == n {
            return None;
        }
        let start = (0..n).find(|&i| indegree[i] > 0)? as u32;
        let mut position: HashMap<u32, usize> = HashMap::default();
        let mut walk = vec![start];
        let mut node = start;
        loop {
            position.insert(node, walk.len() - 1);
            node = *self
                .preds(node)
                .iter()
                .find(|&&p| indegree[p as usize] > 0)?;
            if let Some(&at) = position.get(&node) {
                let mut cycle: Vec<String> = walk[at..]
                    .iter()
                    .rev()
                    .map(|&i| tasks[i as usize].id().to_owned())
                    .collect();
                cycle.push(cycle[0].clone());
                return Some(cycle);
            }
            walk.push(node);
        }
    }

    /// Nodes reachable from `starts` (the starts included).
    fn descendants(&self, starts: impl IntoIterator<Item = u32>) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<u32> = starts.into_iter().collect();
        while let Some(node) = stack.pop() {
            if !std::mem::replace(&mut seen[node as usize], true) {
                stack.extend_from_slice(self.succs(node));
            }
        }
        seen
    }

    /// Decides where every parameter comes from: a bound input, else the result of the upstream
    /// task with that id, else the channel key. A channel key must be declared by an ancestor
    /// (`writes = [...]`) or be given in the run's initial channel (checked per run).
    fn resolve_sources(&mut self, tasks: &[Task], problems: &mut Vec<Problem>) {
        let mut descendants_of: HashMap<u32, Vec<bool>> = HashMap::default();
        let mut channel_params: HashMap<&str, Vec<(u32, u32)>> = HashMap::default();
        self.source_offsets.reserve(tasks.len() + 1);
        self.source_offsets.push(0);
        for (node, task) in tasks.iter().enumerate() {
            let node = node as u32;
            let params = task.def.params;
            for (name, _) in task.inputs() {
                if !params.iter().any(|p| p.name == name) {
                    problems.push(Problem::UnknownInput {
                        task: task.id().to_owned(),
                        input: name.clone(),
                        params: params.iter().map(|p| p.name).collect(),
                    });
                }
            }
            for (pi, param) in params.iter().enumerate() {
                let source = if let Some(bound) =
                    task.inputs().iter().position(|(k, _)| k == param.name)
                {
                    let value = &task.inputs()[bound].1;
                    if !value.matches(param.ty) {
                        problems.push(Problem::InputType {
                            task: task.id().to_owned(),
                            param: param.name.to_owned(),
                            expected: param.ty.name(),
                            found: value.type_name().to_owned(),
                            source_desc: "the input bound with Task::with_input".to_owned(),
                        });
                    }
                    Source::Bound(bound as u32)
                } else if let Some(producer) = self.index_of(param.name) {
                    let upstream = self.preds(node).contains(&producer)
                        || descendants_of
                            .entry(producer)
                            .or_insert_with(|| self.descendants([producer]))
                            [node as usize];
                    if producer == node || !upstream {
                        problems.push(Problem::MissingInput {
                            task: task.id().to_owned(),
                            param: param.name.to_owned(),
                            type_name: param.ty.name(),
                            hint: format!(
                                "task '{}' exists but is not upstream of '{}', so its result may not exist yet; add `{} >> {}` to the workflow",
                                param.name,
                                task.id(),
                                param.name,
                                task.id()
                            ),
                        });
                    } else {
                        let output = tasks[producer as usize].def.output;
                        if output.id() != param.ty.id() {
                            problems.push(Problem::InputType {
                                task: task.id().to_owned(),
                                param: param.name.to_owned(),
                                expected: param.ty.name(),
                                found: output.name().to_owned(),
                                source_desc: format!("the result of task '{}'", param.name),
                            });
                        }
                    }
                    Source::Result(producer)
                } else {
                    channel_params
                        .entry(param.name)
                        .or_default()
                        .push((node, pi as u32));
                    Source::Channel
                };
                self.sources.push(source);
            }
            self.source_offsets.push(self.sources.len() as u32);
        }

        let mut needs = Vec::new();
        for (key, consumers) in channel_params {
            let writers: Vec<u32> = tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.writes().any(|w| w == key))
                .map(|(i, _)| i as u32)
                .collect();
            let below_writer = if writers.is_empty() {
                None
            } else {
                // A writer is not its own source; only strict descendants are covered.
                let strict =
                    self.descendants(writers.iter().flat_map(|&w| self.succs(w).iter().copied()));
                Some(strict)
            };
            for (node, param) in consumers {
                let covered = below_writer.as_ref().is_some_and(|d| d[node as usize]);
                if !covered {
                    needs.push(ChannelNeed { node, param });
                }
            }
        }
        needs.sort_unstable_by_key(|n| (n.node, n.param));
        self.channel_needs = needs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_lists_successors_and_predecessors() {
        let edges = [(0, 1), (0, 2), (1, 3), (2, 3)];
        let (off, succ) = csr(4, &edges, |&(a, b)| (a, b));
        assert_eq!(&succ[off[0] as usize..off[1] as usize], &[1, 2]);
        let (off, pred) = csr(4, &edges, |&(a, b)| (b, a));
        assert_eq!(&pred[off[3] as usize..off[4] as usize], &[1, 2]);
    }
}
