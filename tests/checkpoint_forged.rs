//! Checkpoints forged to pass the checksum (the format is documented, so anyone can recompute
//! it) but with contents that do not hold together: resume refuses them with a clear error and
//! never panics, never runs a finished task again, never skips one silently.

use std::path::PathBuf;
use std::sync::Mutex;

use graflow::prelude::*;
use graflow::{CheckpointError, TaskStatus};

mod common;

graflow::enable_test_runner!();

/// The format, as `graflow-core/src/run/checkpoint.rs` documents it.
mod forge {
    use serde::{Deserialize, Serialize};
    use std::path::PathBuf;
    use std::time::Duration;

    pub const MAGIC: &[u8; 19] = b"GRAFLOW-CHECKPOINT\n";

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Cadence {
        pub path: PathBuf,
        pub every: Option<u32>,
        pub interval: Option<Duration>,
        pub durable: bool,
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Stored {
        pub type_name: String,
        pub bytes: Vec<u8>,
    }
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Head {
        pub build_id: String,
        pub workflow: String,
        pub fingerprint: u64,
        pub run_id: String,
        pub cadence: Cadence,
        pub sequence: u64,
        pub written_at_ms: u64,
        pub last: bool,
    }
    #[derive(Debug, Serialize, Deserialize)]
    pub struct NodeState {
        pub status: u8,
        pub attempts: u32,
        pub runs: u32,
        pub tolerated: bool,
        pub error: Option<String>,
        pub start_us: Option<u64>,
        pub duration_us: Option<u64>,
        pub runner: Option<String>,
    }
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub struct NodeOptions {
        pub config: Option<()>,
        pub retry: Option<()>,
        pub timeout: Option<Option<Duration>>,
        pub writes: Vec<String>,
        pub max_cycles: Option<u32>,
    }
    #[derive(Debug, Clone, Copy, Serialize, Deserialize)]
    pub enum Source {
        Bound(u32),
        Result(u32),
        Channel,
    }
    #[derive(Debug, Serialize, Deserialize)]
    pub struct AddedNode {
        pub function: String,
        pub id: String,
        pub handler: String,
        pub inputs: Vec<(String, Stored)>,
        pub options: NodeOptions,
        pub sources: Vec<Source>,
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct GroupState {
        pub done: Vec<u32>,
        pub succeeded: u32,
        pub failed: u32,
        pub verdict: Option<Result<String, String>>,
    }
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Body {
        pub nodes: Vec<NodeState>,
        pub indegree: Vec<u32>,
        pub ready: Vec<u32>,
        pub results: Vec<(u32, Stored)>,
        pub channel: Vec<(String, Stored)>,
        pub added: Vec<AddedNode>,
        pub extra_preds: Vec<(u32, Vec<u32>)>,
        pub extra_succs: Vec<(u32, Vec<u32>)>,
        pub overrides: Vec<(u32, Vec<(String, Stored)>)>,
        pub groups: Vec<GroupState>,
        pub terminated: Option<(u32, String)>,
    }

    pub fn read(path: &std::path::Path) -> (Head, Body) {
        let bytes = std::fs::read(path).unwrap();
        let p = MAGIC.len() + 16;
        let head_len =
            u32::from_le_bytes(bytes[MAGIC.len() + 4..MAGIC.len() + 8].try_into().unwrap())
                as usize;
        let head: Head = graflow::protocol::codec::decode(&bytes[p..p + head_len]).unwrap();
        let body: Body =
            graflow::protocol::codec::decode(&bytes[p + head_len..bytes.len() - 4]).unwrap();
        (head, body)
    }

    pub fn write(path: &std::path::Path, head: &Head, body: &Body) {
        let head = graflow::protocol::codec::encode(head).unwrap();
        let body = graflow::protocol::codec::encode(body).unwrap();
        let mut out = MAGIC.to_vec();
        out.extend(1u32.to_le_bytes());
        out.extend((head.len() as u32).to_le_bytes());
        out.extend((body.len() as u64).to_le_bytes());
        out.extend(&head);
        out.extend(&body);
        let sum = super::common::crc32(&[&head[..], &body[..]].concat());
        out.extend(sum.to_le_bytes());
        std::fs::write(path, out).unwrap();
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graflow-forged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[task]
fn fan_one(ctx: &TaskContext) -> graflow::Result<u32> {
    ctx.next_task(
        needs_text::task()
            .with_id("added_0")
            .with_input("text", "a b".to_owned()),
    )?;
    Ok(0)
}

#[task]
fn needs_text(text: String) -> usize {
    text.len()
}

/// Fails the first time in each run id (so a forged checkpoint's run resumes it).
#[task]
fn fails_once_then_ok(ctx: &TaskContext) -> Result<u32, String> {
    static SEEN_RUNS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut seen = SEEN_RUNS.lock().unwrap();
    if seen.iter().any(|r| r == ctx.run_id()) {
        Ok(5)
    } else {
        seen.push(ctx.run_id().to_owned());
        Err("first".to_owned())
    }
}

/// `fan_one` adds `added_0`; `fails_once_then_ok` fails, so the run stops with a checkpoint.
fn forged_base(name: &str) -> (Workflow, PathBuf, forge::Head, forge::Body) {
    let wf = workflow! { name: "forged"; fan_one >> fails_once_then_ok; };
    let path = temp(name);
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new().checkpoint(&path))
        .unwrap_err();
    assert_eq!(error.failure().unwrap().task, "fails_once_then_ok");
    let (head, body) = forge::read(&path);
    (wf, path, head, body)
}

fn resume(wf: &Workflow, path: &PathBuf) -> Result<RunReport, RunError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        WorkflowEngine::new().run(wf, RunOptions::new().resume_from(path))
    }))
    .expect("resume never panics")
}

fn assert_corrupt(result: Result<RunReport, RunError>, words: &str) {
    match result {
        Err(RunError::Checkpoint(CheckpointError::Corrupt { reason, .. })) => {
            assert!(reason.contains(words), "{reason}");
        }
        other => panic!("expected a corrupt checkpoint, got {other:?}"),
    }
}

#[test]
fn the_unforged_base_resumes() {
    let (wf, path, head, body) = forged_base("base.ckpt");
    forge::write(&path, &head, &body);
    let report = resume(&wf, &path).unwrap();
    assert_eq!(report.result::<u32>("fails_once_then_ok").unwrap(), 5);
    assert_eq!(report.task("fan_one").unwrap().runs, 1);
}

#[test]
fn huge_counters_saturate_instead_of_overflowing() {
    let (wf, path, mut head, mut body) = forged_base("counters.ckpt");
    body.nodes[1].runs = u32::MAX;
    head.sequence = u64::MAX;
    forge::write(&path, &head, &body);
    let report = resume(&wf, &path).unwrap();
    assert_eq!(report.task("fails_once_then_ok").unwrap().runs, u32::MAX);
    assert_eq!(
        graflow::Checkpoint::load(&path).unwrap().sequence(),
        u64::MAX
    );
}

#[test]
fn a_finished_task_put_back_in_the_ready_set_is_refused() {
    let (wf, path, head, mut body) = forged_base("ready.ckpt");
    body.ready.push(0);
    forge::write(&path, &head, &body);
    assert_corrupt(
        resume(&wf, &path),
        "is ready but has finished or still waits",
    );
}

#[test]
fn a_task_waiting_for_more_predecessors_than_it_has_is_refused() {
    let (wf, path, head, mut body) = forged_base("indegree.ckpt");
    body.ready.clear();
    body.indegree[1] = 7;
    forge::write(&path, &head, &body);
    // (Its predecessors: fan_one, and added_0, which fan_one added before it.)
    assert_corrupt(resume(&wf, &path), "waits for 7 predecessor(s) but has 2");
}

#[test]
fn an_added_task_without_its_parameter_sources_or_with_a_taken_id_is_refused() {
    let (wf, path, head, mut body) = forged_base("sources.ckpt");
    body.added[0].sources.clear();
    forge::write(&path, &head, &body);
    assert_corrupt(
        resume(&wf, &path),
        "has 0 parameter source(s) but its function 1",
    );

    let (wf, path, head, mut body) = forged_base("duplicate.ckpt");
    body.added[0].id = "fan_one".to_owned();
    forge::write(&path, &head, &body);
    assert_corrupt(resume(&wf, &path), "has the id of another task of the run");
}

#[test]
fn a_forged_checkpoint_cannot_redirect_where_the_resumed_run_writes() {
    let (wf, path, mut head, body) = forged_base("redirect.ckpt");
    let elsewhere = temp("elsewhere.ckpt");
    head.cadence.path = elsewhere.clone();
    forge::write(&path, &head, &body);
    resume(&wf, &path).unwrap();
    assert!(!elsewhere.exists());
    assert!(graflow::Checkpoint::load(&path).unwrap().is_final());
    let done = graflow::Checkpoint::load(&path)
        .unwrap()
        .completed(&wf)
        .unwrap();
    assert_eq!(done.len(), 3);
    let _ = TaskStatus::Succeeded;
}

#[task]
fn member_ok() -> u32 {
    1
}

#[task]
fn member_broken() -> Result<u32, String> {
    Err("broken on purpose".to_owned())
}

/// A best-effort group (one member fails, tolerated), then a task that fails once: the run
/// stops with a checkpoint whose group state counts both members.
fn forged_group(name: &str) -> (Workflow, PathBuf, forge::Head, forge::Body) {
    let wf = workflow! {
        name: "forged-group";
        fan_one >> (member_ok | member_broken).policy(best_effort) >> fails_once_then_ok;
    };
    let path = temp(name);
    let error = WorkflowEngine::new()
        .run(&wf, RunOptions::new().checkpoint(&path))
        .unwrap_err();
    assert_eq!(error.failure().unwrap().task, "fails_once_then_ok");
    let (head, body) = forge::read(&path);
    assert_eq!(body.groups.len(), 1);
    assert_eq!((body.groups[0].succeeded, body.groups[0].failed), (1, 1));
    (wf, path, head, body)
}

#[test]
fn the_unforged_group_checkpoint_resumes() {
    let (wf, path, head, body) = forged_group("group-base.ckpt");
    forge::write(&path, &head, &body);
    let report = resume(&wf, &path).unwrap();
    assert_eq!(report.result::<u32>("fails_once_then_ok").unwrap(), 5);
    assert_eq!(report.task("member_ok").unwrap().runs, 1);
}

#[test]
fn group_counters_that_disagree_with_its_finished_members_are_refused() {
    // Counters recomputed near u32::MAX used to overflow when the next member finished (a
    // panic in debug builds) or decide a wrong verdict.
    let (wf, path, head, mut body) = forged_group("group-counters.ckpt");
    body.groups[0].succeeded = u32::MAX;
    forge::write(&path, &head, &body);
    assert_corrupt(
        resume(&wf, &path),
        "says 4294967295 member(s) succeeded and 1 failed, but it counts 2 as finished",
    );
    // The same while the group is undecided (its counters decide its verdict).
    body.groups[0].verdict = None;
    forge::write(&path, &head, &body);
    assert_corrupt(
        resume(&wf, &path),
        "says 4294967295 member(s) succeeded and 1 failed, but the members it counts as finished are 1 and 1",
    );
}

#[test]
fn a_group_that_counts_a_task_outside_it_or_an_unfinished_member_is_refused() {
    let (wf, path, head, mut body) = forged_group("group-outsider.ckpt");
    // Node 0 is fan_one, not a member.
    body.groups[0].done.push(0);
    forge::write(&path, &head, &body);
    assert_corrupt(resume(&wf, &path), "counts node 0 as a finished member");

    let (wf, path, head, mut body) = forged_group("group-unfinished.ckpt");
    // member_ok put back to pending, but still counted as done by its group.
    let member = body.groups[0].done[0] as usize;
    body.nodes[member].status = 3;
    body.groups[0].verdict = None;
    forge::write(&path, &head, &body);
    assert_corrupt(resume(&wf, &path), "as finished, but its status is");
}
