use proptest::prelude::*;

use super::*;
use crate::header::parse_header;

fn encoded_value() -> impl Strategy<Value = EncodedValue> {
    ("[a-z:<>]{0,12}", prop::collection::vec(any::<u8>(), 0..32))
        .prop_map(|(type_name, bytes)| EncodedValue { type_name, bytes })
}

fn named_values() -> impl Strategy<Value = Vec<(String, EncodedValue)>> {
    prop::collection::vec(("\\PC{0,6}", encoded_value()), 0..4)
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        prop::collection::vec("\\PC{0,10}", 0..3).prop_map(|chain| Failure::Returned { chain }),
        "\\PC{0,10}".prop_map(|message| Failure::Panicked { message }),
        "\\PC{0,10}".prop_map(|message| Failure::Other { message }),
        "\\PC{0,10}".prop_map(|reason| Failure::Rejected { reason }),
    ]
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        (
            "[a-z:]{1,8}",
            "[a-z0-9]{1,6}",
            "[a-z]{0,6}",
            any::<bool>(),
            named_values(),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(function, id, handler, goto, inputs, options)| {
                Control::AddTask {
                    function,
                    id,
                    handler,
                    goto,
                    inputs,
                    options,
                }
            }),
        "[a-z]{0,6}".prop_map(|id| Control::Goto { id }),
        named_values().prop_map(|inputs| Control::NextIteration { inputs }),
        "\\PC{0,8}".prop_map(|message| Control::Terminate { message }),
        "\\PC{0,8}".prop_map(|message| Control::Cancel { message }),
        Just(Control::Checkpoint),
    ]
}

prop_compose! {
    fn invocation()(
        build_id in "[0-9a-f]{0,16}",
        nonce in any::<u64>(),
        names in ("\\PC{0,10}", "\\PC{0,6}", "\\PC{0,6}", "\\PC{0,6}"),
        attempt in any::<u32>(),
        cycle in any::<u32>(),
        inputs in named_values(),
        channel in named_values(),
        upstream in named_values(),
    ) -> Invocation {
        let (task, task_id, workflow, run_id) = names;
        Invocation {
            protocol: PROTOCOL_VERSION, build_id, nonce, task, task_id, workflow, run_id,
            attempt, cycle, inputs, channel, upstream,
        }
    }
}

prop_compose! {
    fn outcome()(
        nonce in any::<u64>(),
        result in prop_oneof![encoded_value().prop_map(Ok), failure().prop_map(Err)],
        channel_writes in prop::collection::vec(
            ("\\PC{0,6}", prop::option::of(encoded_value())), 0..4),
        control in prop::collection::vec(control(), 0..4),
        elapsed_ns in any::<u64>(),
    ) -> Outcome {
        Outcome {
            protocol: PROTOCOL_VERSION, build_id: "b".into(), nonce, result, channel_writes,
            control, elapsed_ns,
        }
    }
}

fn wire_of_outcome(outcome: &Outcome) -> Vec<u8> {
    let mut wire = Vec::new();
    outcome.write_to(&mut wire).unwrap();
    wire
}

fn wire_of_invocation(invocation: &Invocation) -> Vec<u8> {
    let mut wire = Vec::new();
    invocation.write_to(&mut wire).unwrap();
    wire
}

/// Small limits, so that hostile lengths meet them too.
fn small() -> Limits {
    Limits::default().with_max_frame(4096).with_max_head(1024)
}

/// `wire` cut short, with a bit flipped, and with each of its two length fields (and a u64
/// inside the head) set huge.
fn mutations(wire: &[u8], cut: usize, flip: usize, huge: u64) -> Vec<Vec<u8>> {
    let mut out = vec![wire[..cut % wire.len()].to_vec()];
    let mut flipped = wire.to_vec();
    flipped[flip % wire.len()] ^= 1 << (flip % 8);
    out.push(flipped);
    for at in [8, 16] {
        let mut long = wire.to_vec();
        long[at..at + 8].copy_from_slice(&huge.to_le_bytes());
        out.push(long);
    }
    let mut varint = wire.to_vec();
    let at = HEADER_LEN + flip % (wire.len() - HEADER_LEN);
    let mut claim = vec![253u8];
    claim.extend_from_slice(&huge.to_le_bytes());
    varint.splice(at..at, claim);
    out.push(varint);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invocations_round_trip(invocation in invocation()) {
        let wire = wire_of_invocation(&invocation);
        prop_assert_eq!(&invocation.clone().into_frame().unwrap().into_bytes(), &wire);
        let back = Invocation::read_from(&mut &wire[..], &Limits::default()).unwrap();
        prop_assert_eq!(back, invocation);
    }

    #[test]
    fn outcomes_round_trip(outcome in outcome()) {
        let wire = wire_of_outcome(&outcome);
        let expected = Expected { nonce: outcome.nonce, build_id: "b" };
        let mut rest = &wire[..];
        let back = read_encoded_outcome(&mut rest, &Limits::default(), expected).unwrap();
        prop_assert!(rest.is_empty(), "the frame was not read to its end");
        prop_assert_eq!(back.nonce, outcome.nonce);
        prop_assert_eq!(back.result, outcome.result);
        prop_assert_eq!(back.channel_writes, outcome.channel_writes);
        prop_assert_eq!(back.control, outcome.control);
        prop_assert_eq!(back.elapsed_ns, outcome.elapsed_ns);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let expected = Expected { nonce: 42, build_id: "b" };
        for limits in [Limits::default(), small()] {
            let _ = Invocation::read_from(&mut &bytes[..], &limits);
            let _ = read_encoded_outcome(&mut &bytes[..], &limits, expected);
            // Behind a valid tag, so that the lengths and the head are read too.
            for tag in [INVOCATION_TAG, OUTCOME_TAG] {
                let tagged = [&tag[..], &bytes].concat();
                let _ = Invocation::read_from(&mut &tagged[..], &limits);
                let _ = read_encoded_outcome(&mut &tagged[..], &limits, expected);
            }
            if let Ok(header) = <&[u8; HEADER_LEN]>::try_from(bytes.get(..HEADER_LEN).unwrap_or(&[])) {
                let _ = parse_header(header, OUTCOME_TAG, &limits);
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        invocation in invocation(),
        outcome in outcome(),
        cut in any::<usize>(),
        flip in any::<usize>(),
        huge in prop::sample::select(vec![u64::MAX, 1 << 60, 1 << 32, (1 << 28) - 100, 4097]),
    ) {
        let expected = Expected { nonce: outcome.nonce, build_id: "b" };
        for limits in [Limits::default(), small()] {
            for wire in mutations(&wire_of_invocation(&invocation), cut, flip, huge) {
                let _ = Invocation::read_from(&mut &wire[..], &limits);
            }
            for wire in mutations(&wire_of_outcome(&outcome), cut, flip, huge) {
                let _ = read_encoded_outcome(&mut &wire[..], &limits, expected);
                let _ = read_outcome(&mut &wire[..], &limits, expected, |h, r| {
                    codec::decode_from::<String>(r, h.len)
                });
            }
        }
    }
}
