use super::*;
use crate::header::parse_header;

fn value(type_name: &str, bytes: &[u8]) -> EncodedValue {
    EncodedValue {
        type_name: type_name.to_owned(),
        bytes: bytes.to_vec(),
    }
}

fn invocation() -> Invocation {
    Invocation {
        protocol: PROTOCOL_VERSION,
        build_id: "b".into(),
        nonce: 99,
        task: "m::t".into(),
        task_id: "t".into(),
        workflow: "w".into(),
        run_id: "r".into(),
        attempt: 2,
        cycle: 1,
        inputs: vec![("x".into(), value("u8", &[7]))],
        channel: vec![("k".into(), value("alloc::string::String", &[1, b'a']))],
        upstream: vec![],
    }
}

#[test]
fn invocations_round_trip() {
    let mut wire = Vec::new();
    invocation().write_to(&mut wire).unwrap();
    let back = Invocation::read_from(&mut &wire[..], &Limits::default()).unwrap();
    assert_eq!(back, invocation());
}

#[test]
fn the_frame_is_what_write_to_writes() {
    let mut wire = Vec::new();
    invocation().write_to(&mut wire).unwrap();
    let frame = invocation().into_frame().unwrap();
    assert_eq!(frame.len(), wire.len());
    assert_eq!(frame.chunks().collect::<Vec<_>>().concat(), wire);
    let mut written = Vec::new();
    frame.write_to(&mut written).unwrap();
    assert_eq!(written, wire);
    assert_eq!(frame.into_bytes(), wire);
}

/// PROTOCOL.md §8, byte for byte.
#[test]
fn the_worked_example_of_the_specification() {
    let hex = |outcome: Outcome| {
        let mut wire = Vec::new();
        outcome.write_to(&mut wire).unwrap();
        wire.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let ok = Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: "b".into(),
        nonce: 0x2a,
        result: Ok(value("u64", &[7])),
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns: 5,
    };
    assert_eq!(
        hex(ok),
        "47464f5554434d33\
         0d00000000000000\
         0100000000000000\
         0301622a000375363401000005\
         07"
    );
    assert_eq!(
        hex(rejection(0x2a, "b", "no".into())),
        "47464f5554434d33\
         0c00000000000000\
         0000000000000000\
         0301622a0103026e6f000000"
    );
}

fn outcome() -> Outcome {
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: "b".into(),
        nonce: 99,
        result: Ok(value("u64", &codec::encode(&7u64).unwrap())),
        channel_writes: vec![("k".into(), Some(value("u8", &[1]))), ("gone".into(), None)],
        control: vec![
            Control::NextIteration {
                inputs: vec![("n".into(), value("u8", &[5]))],
            },
            Control::Terminate {
                message: "done".into(),
            },
        ],
        elapsed_ns: 5,
    }
}

const EXPECTED: Expected<'static> = Expected {
    nonce: 99,
    build_id: "b",
};

#[test]
fn outcomes_round_trip_and_decode_the_result_once() {
    let mut wire = Vec::new();
    outcome().write_to(&mut wire).unwrap();
    let back = read_outcome(&mut &wire[..], &Limits::default(), EXPECTED, |h, r| {
        assert_eq!(h.type_name, "u64");
        codec::decode_from::<u64>(r, h.len)
    })
    .unwrap();
    assert_eq!(back.result, Ok(7));
    assert_eq!(back.channel_writes, outcome().channel_writes);
    assert_eq!(back.control, outcome().control);
}

#[test]
fn another_nonce_or_build_is_refused_before_any_value_is_read() {
    let mut wire = Vec::new();
    outcome().write_to(&mut wire).unwrap();
    let other = Expected {
        nonce: 1,
        ..EXPECTED
    };
    let err = read_encoded_outcome(&mut &wire[..], &Limits::default(), other).unwrap_err();
    assert!(matches!(err, E::WrongNonce { .. }), "{err}");
    let other = Expected {
        build_id: "c",
        ..EXPECTED
    };
    let err = read_encoded_outcome(&mut &wire[..], &Limits::default(), other).unwrap_err();
    assert!(matches!(err, E::BuildMismatch { .. }), "{err}");
}

#[test]
fn lengths_beyond_the_limits_are_refused_before_reading() {
    let mut wire = OUTCOME_TAG.to_vec();
    wire.extend_from_slice(&10u64.to_le_bytes());
    wire.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let err = read_encoded_outcome(&mut &wire[..], &Limits::default(), EXPECTED).unwrap_err();
    assert!(
        matches!(
            err,
            E::TooLarge {
                what: "a frame",
                ..
            }
        ),
        "{err}"
    );
    let mut wire = OUTCOME_TAG.to_vec();
    wire.extend_from_slice(&(u64::MAX).to_le_bytes());
    wire.extend_from_slice(&0u64.to_le_bytes());
    let err = read_encoded_outcome(&mut &wire[..], &Limits::default(), EXPECTED).unwrap_err();
    assert!(matches!(err, E::TooLarge { .. }), "{err}");
}

/// Found by the `warm` fuzz target: with the limits raised to u64::MAX, a head and a
/// payload length whose sum overflows passed the check (the sum saturated), and the
/// warm runner's frame splitter then overflowed adding them.
#[test]
fn lengths_whose_sum_overflows_are_refused_even_without_limits() {
    let limits = Limits::default()
        .with_max_frame(u64::MAX)
        .with_max_head(u64::MAX);
    let mut header = OUTCOME_TAG.to_vec();
    header.extend_from_slice(&0x01f7u64.to_le_bytes());
    header.extend_from_slice(&u64::MAX.to_le_bytes());
    let header: [u8; HEADER_LEN] = header.try_into().unwrap();
    let err = parse_header(&header, OUTCOME_TAG, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            E::TooLarge {
                what: "a frame",
                ..
            }
        ),
        "{err}"
    );
    let err = read_encoded_outcome(&mut &header[..], &limits, EXPECTED).unwrap_err();
    assert!(matches!(err, E::TooLarge { .. }), "{err}");
}

#[test]
fn a_payload_that_disagrees_with_its_headers_or_ends_early_is_corrupt() {
    let mut wire = Vec::new();
    outcome().write_to(&mut wire).unwrap();
    // Announce one more payload byte than the values take.
    let mut lying = wire.clone();
    let payload = u64::from_le_bytes(lying[16..24].try_into().unwrap()) + 1;
    lying[16..24].copy_from_slice(&payload.to_le_bytes());
    let err = read_encoded_outcome(&mut &lying[..], &Limits::default(), EXPECTED).unwrap_err();
    assert!(matches!(err, E::Corrupt { .. }), "{err}");
    let err = read_encoded_outcome(&mut &wire[..wire.len() - 1], &Limits::default(), EXPECTED)
        .unwrap_err();
    assert!(matches!(err, E::Ended { .. }), "{err}");
    let err =
        read_encoded_outcome(&mut &b"garbage!"[..], &Limits::default(), EXPECTED).unwrap_err();
    assert!(matches!(err, E::Ended { .. }), "{err}");
    let mut garbage = b"GFOUTCM1".to_vec();
    garbage.extend_from_slice(&[0; 16]);
    let err = read_encoded_outcome(&mut &garbage[..], &Limits::default(), EXPECTED).unwrap_err();
    assert!(matches!(err, E::BadTag { .. }), "{err}");
}
