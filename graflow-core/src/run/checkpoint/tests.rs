use proptest::prelude::*;

use std::sync::Arc;

use super::format::*;
use super::*;

fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
}

fn head(workflow: String, run_id: String, sequence: u64, last: bool) -> Head {
    Head {
        build_id: "build".to_owned(),
        workflow,
        fingerprint: 0x1234,
        run_id,
        cadence: Cadence {
            path: PathBuf::from("/tmp/run.checkpoint"),
            every: Some(1),
            interval: Some(Duration::from_millis(1500)),
            durable: true,
        },
        sequence,
        written_at_ms: 1_700_000_000_000,
        last,
    }
}

fn stored(type_name: &str, bytes: Vec<u8>) -> Stored {
    Stored {
        type_name: type_name.to_owned(),
        bytes,
    }
}

/// A body whose every index points at one of its `n` nodes.
fn body(
    nodes: Vec<(u8, u32, Option<String>)>,
    picks: &[u32],
    values: Vec<Vec<u8>>,
    keys: Vec<String>,
) -> Body {
    let n = nodes.len() as u32;
    let pick = |i: usize| picks.get(i).map_or(0, |p| p % n.max(1));
    let nodes: Vec<NodeState> = nodes
        .into_iter()
        .map(|(status, attempts, error)| NodeState {
            status: status % 4,
            attempts,
            runs: attempts / 2,
            tolerated: status % 2 == 1,
            error,
            start_us: Some(u64::from(attempts)),
            duration_us: None,
            runner: Some("pid 42".to_owned()),
        })
        .collect();
    let some = !nodes.is_empty();
    Body {
        indegree: (0..n).map(|i| i % 3).collect(),
        ready: if some { vec![pick(0), pick(1)] } else { vec![] },
        results: if some {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (pick(i), stored("alloc::vec::Vec<u8>", v.clone())))
                .collect()
        } else {
            vec![]
        },
        channel: keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| (k, stored("u64", v)))
            .collect(),
        added: vec![],
        extra_preds: if some {
            vec![(pick(2), vec![pick(3)])]
        } else {
            vec![]
        },
        extra_succs: if some {
            vec![(pick(3), vec![pick(2)])]
        } else {
            vec![]
        },
        overrides: if some {
            vec![(pick(4), vec![("x".to_owned(), stored("u8", vec![7]))])]
        } else {
            vec![]
        },
        groups: vec![GroupState::default()],
        terminated: some.then(|| (pick(5), "done".to_owned())),
        nodes,
    }
}

fn file(head: &Head, body: &Body) -> Vec<u8> {
    file_bytes(&encoded(head), &encoded(body))
}

fn load(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::from_bytes(PathBuf::from("test.checkpoint"), bytes)
}

fn sample() -> Vec<u8> {
    file(
        &head("wf".to_owned(), "run-1".to_owned(), 3, false),
        &body(
            vec![(0, 1, None), (1, 2, Some("boom".to_owned())), (3, 0, None)],
            &[0, 1, 2, 0, 1, 2],
            vec![vec![1, 2, 3], vec![8]],
            vec!["k".to_owned(), "total".to_owned()],
        ),
    )
}

#[test]
fn a_sample_checkpoint_loads() {
    let checkpoint = load(&sample()).unwrap();
    assert_eq!(checkpoint.workflow(), "wf");
    assert_eq!(checkpoint.sequence(), 3);
}

/// A string in the body that claims 2^40 bytes, in a file whose lengths and checksum agree
/// (found by the `checkpoint` fuzz target): refused without allocating what it claims.
#[test]
fn a_body_string_claiming_a_terabyte_is_refused_without_allocating_it() {
    // One node whose `error` is Some(a string of 2^40 bytes), and nothing more.
    let mut body = vec![1u8, 0, 0, 0, 0, 1, 253];
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let head = encoded(&head("wf".to_owned(), "r".to_owned(), 1, false));
    let err = load(&file_bytes(&head, &body)).unwrap_err();
    assert!(err.to_string().contains("body cannot be read"), "{err}");
    // A head whose build id claims as much.
    let err = load(&file_bytes(&body[6..], &[])).unwrap_err();
    assert!(err.to_string().contains("head cannot be read"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// load(save(x)) == x: what a checkpoint file holds reads back as it was written (the
    /// decoded head and body encode to the very bytes they were read from).
    #[test]
    fn checkpoints_round_trip(
        workflow in "\\PC{0,12}",
        run_id in "[a-z0-9-]{0,16}",
        sequence in any::<u64>(),
        last in any::<bool>(),
        nodes in prop::collection::vec((any::<u8>(), any::<u32>(), prop::option::of("\\PC{0,8}")), 0..8),
        picks in prop::collection::vec(any::<u32>(), 6),
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..4),
        keys in prop::collection::vec("[a-z]{1,6}", 0..4),
    ) {
        let head = head(workflow, run_id, sequence, last);
        let body = body(nodes, &picks, values, keys);
        let bytes = file(&head, &body);
        let back = load(&bytes).unwrap();
        prop_assert_eq!(encoded(&back.head), encoded(&head));
        prop_assert_eq!(encoded(&back.body), encoded(&body));
        prop_assert_eq!(back.workflow(), head.workflow.as_str());
    }

    /// Arbitrary bytes, as a file and as a head and body under agreeing lengths and
    /// checksum, are refused or read, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        split in any::<usize>(),
    ) {
        let _ = load(&bytes);
        let at = split % (bytes.len() + 1);
        let _ = load(&file_bytes(&bytes[..at], &bytes[at..]));
    }

    /// A valid checkpoint cut short, with a bit flipped (checksum fixed up, as a forger
    /// would), or with a length set huge, is refused or read, never a panic.
    #[test]
    fn mutated_checkpoints_never_panic(
        cut in any::<usize>(),
        flip in any::<usize>(),
        bit in 0u8..8,
        at in any::<usize>(),
        huge in prop::sample::select(vec![u64::MAX, 1 << 60, 1 << 40, u64::from(u32::MAX)]),
    ) {
        let bytes = sample();
        let _ = load(&bytes[..cut % bytes.len()]);
        let content = &bytes[PREAMBLE..bytes.len() - 4];
        let head_len = u32::from_le_bytes(bytes[23..27].try_into().unwrap()) as usize;
        let mut flipped = content.to_vec();
        let i = flip % flipped.len();
        flipped[i] ^= 1 << bit;
        let _ = load(&file_bytes(&flipped[..head_len], &flipped[head_len..]));
        // A varint length (253 then a u64) spliced in anywhere.
        let mut long = content.to_vec();
        let i = at % long.len();
        let mut varint = vec![253u8];
        varint.extend_from_slice(&huge.to_le_bytes());
        long.splice(i..i, varint);
        let split = head_len.min(i);
        let _ = load(&file_bytes(&long[..split], &long[split..]));
        let _ = load(&file_bytes(&long[..head_len + 9], &long[head_len + 9..]));
    }
}

/// Writes the checkpoint target's seed corpus (`fuzz/seeds/checkpoint/`).
#[test]
#[ignore = "writes fuzz/seeds: run with --ignored after a change of the checkpoint format"]
fn write_fuzz_seeds() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/checkpoint");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("three_nodes"), sample()).unwrap();
    let empty = file(
        &head("empty".to_owned(), "r".to_owned(), 1, true),
        &body(vec![], &[], vec![], vec![]),
    );
    std::fs::write(dir.join("no_nodes_final"), empty).unwrap();
}

#[graflow_macros::task(crate = "crate")]
fn first() -> u32 {
    5
}

#[graflow_macros::task(crate = "crate")]
fn second(first: u32) -> u32 {
    first + 1
}

/// `first` and `second`, changed by `change`, with the edge `first >> second` if `edge`.
fn two_steps(name: &str, change: impl FnOnce(Task, Task) -> (Task, Task), edge: bool) -> Workflow {
    let (a, b) = change(first::task(), second::task());
    let mut wf = Workflow::builder(name);
    let a = wf.add(a);
    let b = wf.add(b);
    if edge {
        wf.edge(a, b);
    }
    wf.build()
}

#[test]
fn the_fingerprint_follows_the_shape_and_only_the_shape() {
    let same = |a, b| (a, b);
    let base = fingerprint(&two_steps("wf", same, true));
    assert_eq!(
        fingerprint(&two_steps("wf", same, true)),
        base,
        "deterministic"
    );
    assert_ne!(
        fingerprint(&two_steps("wf", same, false)),
        base,
        "an edge less"
    );
    assert_ne!(fingerprint(&two_steps("other", same, true)), base, "a name");
    assert_ne!(
        fingerprint(&two_steps(
            "wf",
            |a, b| (a, b.with_handler("process")),
            true
        )),
        base,
        "a handler"
    );
    assert_ne!(
        fingerprint(&two_steps("wf", |a, b| (a.with_id("renamed"), b), true)),
        base,
        "a task id"
    );
    // Inputs, retries and timeouts are not the shape.
    assert_eq!(
        fingerprint(&two_steps(
            "wf",
            |a, b| (
                a.with_input("unused", 3u32)
                    .with_retry(crate::retry::RetryPolicy::retries(2)),
                b.with_timeout(Duration::from_secs(9))
            ),
            true
        )),
        base
    );
    // An edge given twice is one edge.
    let mut twice = Workflow::builder("wf");
    let a = twice.add(first::task());
    let b = twice.add(second::task());
    twice.edge(a, b).edge(a, b);
    assert_eq!(fingerprint(&twice.build()), base);
}

#[test]
fn status_codes_round_trip_and_unknown_codes_are_refused() {
    for status in [
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ] {
        assert_eq!(status_of(status_code(status)), Some(status));
    }
    let mut codes: Vec<u8> = [
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ]
    .into_iter()
    .map(status_code)
    .collect();
    codes.dedup();
    assert_eq!(codes.len(), 4, "one code per status");
    for code in 4..=u8::MAX {
        assert_eq!(status_of(code), None, "code {code}");
    }
}

/// A scheduler's state as a checkpoint reads it, without a scheduler: `first` succeeded,
/// `second` is ready.
struct Halfway {
    shared: Arc<RunShared>,
    records: Vec<Record>,
    extra_succs: rustc_hash::FxHashMap<u32, Vec<u32>>,
}

impl Progress for Halfway {
    fn shared(&self) -> &Arc<RunShared> {
        &self.shared
    }
    fn records(&self) -> &[Record] {
        &self.records
    }
    fn indegree(&self) -> &[u32] {
        &[0, 0]
    }
    fn extra_succs(&self) -> &rustc_hash::FxHashMap<u32, Vec<u32>> {
        &self.extra_succs
    }
    fn groups(&self) -> &[GroupState] {
        &[]
    }
    fn terminated(&self) -> Option<(u32, &str)> {
        None
    }
    fn succs(&self, node: u32) -> Vec<u32> {
        self.shared.graph.succs(node).to_vec()
    }
    fn ready_on_resume(&self) -> Vec<u32> {
        vec![1]
    }
}

fn shared_of(workflow: &Workflow) -> Arc<RunShared> {
    Arc::new(RunShared::new(
        Arc::from("run-7"),
        workflow.clone(),
        workflow.graph().expect("a valid workflow"),
        crate::channel::Channel::new(),
        crate::run::CpuPool::new(1),
        None,
        None,
        true,
        None,
    ))
}

/// A file of its own in the temporary directory, removed first.
fn temp_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "graflow-core-unit-{}-{name}.checkpoint",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_written_checkpoint_loads_back_and_refuses_another_workflow() {
    let wf = two_steps("wf", |a, b| (a, b), true);
    let shared = shared_of(&wf);
    shared.store_result(0, Value::new(5u32));
    shared
        .channel
        .set_value("seen".to_owned(), Value::new(1u64));
    let mut records = vec![Record::SKIPPED; 2];
    records[0].status = TaskStatus::Succeeded;
    records[0].attempts = 2;
    records[0].runs = 1;
    let halfway = Halfway {
        shared,
        records,
        extra_succs: rustc_hash::FxHashMap::default(),
    };
    let path = temp_path("written");
    let cadence = Cadence {
        path: path.clone(),
        every: Some(1),
        interval: None,
        durable: false,
    };
    let mut writer = Checkpointer::new(cadence, &wf, "run-7", 0).expect("the lock");
    writer.save(&halfway, false).expect("written");
    writer.save(&halfway, false).expect("written again");
    let mut loaded = Checkpoint::load(&path).expect("it loads");
    assert_eq!(loaded.run_id(), "run-7");
    assert_eq!(loaded.sequence(), 2, "one per save");
    assert_eq!(loaded.workflow(), "wf");
    assert!(!loaded.is_final());
    assert_eq!(loaded.completed(&wf).expect("its tasks"), vec!["first"]);
    loaded.check(&wf).expect("its own workflow");
    let other = two_steps("wf", |a, b| (a, b), false);
    assert!(matches!(
        loaded.check(&other),
        Err(CheckpointError::OtherWorkflow { .. })
    ));
    let renamed = two_steps("renamed", |a, b| (a, b), true);
    assert!(matches!(
        loaded.check(&renamed),
        Err(CheckpointError::OtherWorkflow { .. })
    ));
    // Restored into a fresh run: the result, the channel and the records as they were.
    let channel = loaded.channel();
    assert_eq!(
        channel.value("seen").and_then(|v| v.get::<u64>().ok()),
        Some(1)
    );
    let fresh = shared_of(&wf);
    let start = loaded
        .restore(&fresh, &mut |_, _| Ok(0))
        .expect("it restores");
    assert_eq!(start.records[0].status, TaskStatus::Succeeded);
    assert_eq!(start.records[0].attempts, 2);
    assert_ne!(start.records[1].status, TaskStatus::Succeeded);
    assert_eq!(start.ready, vec![1]);
    assert_eq!(
        fresh.result_value(0).and_then(|v| v.get::<u32>().ok()),
        Some(5)
    );
    // The last checkpoint says the run ended.
    writer.save(&halfway, true).expect("the last one");
    let last = Checkpoint::load(&path).expect("it loads");
    assert!(last.is_final());
    assert_eq!(last.sequence(), 3);
    drop(writer);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_second_writer_of_the_same_file_is_refused_while_the_first_holds_it() {
    let wf = two_steps("wf", |a, b| (a, b), true);
    let path = temp_path("locked");
    let cadence = Cadence {
        path: path.clone(),
        every: None,
        interval: None,
        durable: false,
    };
    let first = Checkpointer::new(cadence.clone(), &wf, "run-1", 0).expect("the lock");
    assert!(matches!(
        Checkpointer::new(cadence.clone(), &wf, "run-2", 0),
        Err(CheckpointError::Locked { .. })
    ));
    drop(first);
    Checkpointer::new(cadence, &wf, "run-3", 0).expect("free again");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_checkpoint_is_due_every_n_tasks_or_when_asked() {
    let wf = two_steps("wf", |a, b| (a, b), true);
    let path = temp_path("due");
    let cadence = Cadence {
        path: path.clone(),
        every: Some(3),
        interval: None,
        durable: false,
    };
    let mut writer = Checkpointer::new(cadence, &wf, "run", 0).expect("the lock");
    assert!(!writer.due(false));
    assert!(!writer.due(false));
    assert!(writer.due(false), "the third task");
    assert!(writer.due(true), "asked for");
    drop(writer);
    let _ = std::fs::remove_file(&path);
}
