use proptest::prelude::*;

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
