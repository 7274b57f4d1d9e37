//! Writes the seed corpora of the protocol's fuzz targets (`fuzz/seeds/<target>/`) from real
//! encodings: `cargo test -p graflow-protocol --test fuzz_seeds -- --ignored`. The seeds are
//! committed; rerun this after a change of the wire format.

use std::path::PathBuf;

use graflow_protocol::frame::rejection;
use graflow_protocol::{
    Control, EncodedValue, Failure, Invocation, Outcome, PROTOCOL_VERSION, TASK_END_MARKER, codec,
};

fn value<T: serde::Serialize>(type_name: &str, v: &T) -> EncodedValue {
    EncodedValue {
        type_name: type_name.to_owned(),
        bytes: codec::encode(v).unwrap(),
    }
}

fn outcome(result: Result<EncodedValue, Failure>) -> Outcome {
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: "b".into(),
        nonce: 42,
        result,
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns: 1234,
    }
}

fn frame(outcome: &Outcome) -> Vec<u8> {
    let mut wire = Vec::new();
    outcome.write_to(&mut wire).unwrap();
    wire
}

fn outcomes() -> Vec<(&'static str, Vec<u8>)> {
    let mut full = outcome(Ok(value("u64", &7u64)));
    full.channel_writes = vec![
        ("k".into(), Some(value("alloc::string::String", &"v"))),
        ("gone".into(), None),
    ];
    full.control = vec![
        Control::AddTask {
            function: "m::f".into(),
            id: "f2".into(),
            handler: "direct".into(),
            goto: false,
            inputs: vec![("x".into(), value("u8", &5u8))],
            options: vec![0, 0, 0],
        },
        Control::NextIteration {
            inputs: vec![("n".into(), value("u32", &3u32))],
        },
        Control::Goto { id: "t".into() },
        Control::Terminate {
            message: "done".into(),
        },
        Control::Cancel {
            message: "no".into(),
        },
        Control::Checkpoint,
    ];
    vec![
        ("ok_u64", frame(&outcome(Ok(value("u64", &7u64))))),
        (
            "ok_string",
            frame(&outcome(Ok(value("alloc::string::String", &"graflow")))),
        ),
        (
            "ok_tuple",
            frame(&outcome(Ok(value(
                "(u64, Vec<String>, Option<BTreeMap<String, f64>>)",
                &(9u64, vec!["a", "b"], Some([("x", 1.5f64)])),
            )))),
        ),
        ("controls_and_channel", frame(&full)),
        (
            "returned",
            frame(&outcome(Err(Failure::Returned {
                chain: vec!["outer".into(), "inner".into()],
            }))),
        ),
        (
            "panicked",
            frame(&outcome(Err(Failure::Panicked {
                message: "boom".into(),
            }))),
        ),
        (
            "other",
            frame(&outcome(Err(Failure::Other {
                message: "io".into(),
            }))),
        ),
        (
            "rejected_nonce_0",
            frame(&rejection(0, "b", "unreadable".into())),
        ),
    ]
}

fn invocations() -> Vec<(&'static str, Vec<u8>)> {
    let base = Invocation {
        protocol: PROTOCOL_VERSION,
        build_id: "b".into(),
        nonce: 42,
        task: "m::t".into(),
        task_id: "t".into(),
        workflow: "w".into(),
        run_id: "r".into(),
        attempt: 1,
        cycle: 1,
        inputs: Vec::new(),
        channel: Vec::new(),
        upstream: Vec::new(),
    };
    let full = Invocation {
        inputs: vec![
            ("x".into(), value("u8", &7u8)),
            ("s".into(), value("alloc::string::String", &"hi")),
        ],
        channel: vec![("k".into(), value("u64", &1u64))],
        upstream: vec![("up".into(), value("Vec<u32>", &vec![1u32, 2, 3]))],
        attempt: 2,
        cycle: 3,
        ..base.clone()
    };
    [("bare", base), ("with_values", full)]
        .into_iter()
        .map(|(name, inv)| {
            let mut wire = Vec::new();
            inv.write_to(&mut wire).unwrap();
            (name, wire)
        })
        .collect()
}

fn codecs() -> Vec<(&'static str, Vec<u8>)> {
    let with_mode = |bytes: Vec<u8>| [vec![0u8], bytes].concat();
    vec![
        ("string", with_mode(codec::encode("graflow").unwrap())),
        ("bytes", with_mode(codec::encode(&vec![1u8, 2, 3]).unwrap())),
        (
            "strings",
            with_mode(codec::encode(&vec!["a", "bc"]).unwrap()),
        ),
        (
            "tuple",
            with_mode(codec::encode(&(7u64, -3i32, true, 'x')).unwrap()),
        ),
        (
            "map",
            with_mode(codec::encode(&[("k", vec![1u32, 2])]).unwrap()),
        ),
        (
            "result",
            with_mode(codec::encode(&Ok::<_, Vec<i64>>((5u16, "s"))).unwrap()),
        ),
        (
            "floats",
            with_mode(codec::encode(&vec![1.5f64, -0.0]).unwrap()),
        ),
    ]
}

/// Cuts `bytes` into the chunks of the warm and ready targets (a length byte, its top bit
/// marking protocol bytes in the warm target).
fn chunked(bytes: &[u8], protocol: bool, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.chunks(size.clamp(1, 127)) {
        out.push(piece.len() as u8 | if protocol { 0x80 } else { 0 });
        out.extend_from_slice(piece);
    }
    out
}

fn warm() -> Vec<(&'static str, Vec<u8>)> {
    let marker = format!("{TASK_END_MARKER}{:016x}\n", 42);
    let outcome = outcomes().remove(0).1;
    let answer = |mode: u8, size: usize| {
        let mut seed = vec![mode];
        seed.extend(chunked(b"task line 1\ntask ", false, 7));
        seed.extend(chunked(b"line 2\n", false, 100));
        seed.extend(chunked(marker.as_bytes(), false, 5));
        seed.extend(chunked(b"after the task\n", false, 100));
        seed.extend(chunked(&outcome, true, size));
        seed
    };
    vec![
        ("answer_default_limits", answer(0, 127)),
        ("answer_small_limits", answer(1, 10)),
        ("answer_no_limits", answer(2, 3)),
    ]
}

fn ready() -> Vec<(&'static str, Vec<u8>)> {
    let mut banner = chunked(b"running 1 test\nbanner GFREA", false, 6);
    banner.extend(chunked(b"DY3GFOUTCM3 protocol bytes", false, 4));
    vec![
        ("banner_then_ready", banner),
        ("ready_first", chunked(b"GFREADY3\x01\x02", false, 127)),
        ("no_ready", chunked(b"GFREADY GFREADY2 line\n", false, 3)),
    ]
}

fn logs() -> Vec<(&'static str, Vec<u8>)> {
    let marker = format!("{TASK_END_MARKER}{:016x}\n", 42);
    let mut seed = vec![16];
    seed.extend(chunked(b"short\nline\r\n", false, 4));
    seed.extend(chunked(&[b'x'; 300], false, 127));
    seed.extend(chunked(b"\nlast words ", false, 127));
    let mut until = chunked(marker.as_bytes(), false, 127);
    until[0] |= 0x80;
    seed.extend(until);
    vec![("lines_cut_and_marker", seed)]
}

#[test]
#[ignore = "writes fuzz/seeds: run with --ignored after a change of the wire format"]
fn write_fuzz_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let targets = [
        ("outcome", outcomes()),
        ("invocation", invocations()),
        ("codec", codecs()),
        ("warm", warm()),
        ("ready", ready()),
        ("logs", logs()),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            assert!(bytes.len() < 64 << 10, "{target}/{name} is too large");
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
