//! Framing. A frame is
//!
//! ```text
//! tag (8 bytes) | head length (u64 LE) | payload length (u64 LE) | head | payload
//! ```
//!
//! The head is the message with every value replaced by its [`ValueHeader`], encoded with
//! bincode 2 (standard configuration) through serde; the payload is the values' bytes, raw, in
//! the order their headers appear in the head. Both lengths are checked against [`Limits`]
//! before anything is read.

use std::io::{Read, Write};

use crate::codec;
use crate::decoder::FrameDecoder;
use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::message::{
    Control, EncodedValue, Failure, Invocation, InvocationHead, Outcome, OutcomeHead, ValueHeader,
};
use crate::{PROTOCOL_VERSION, ProtocolError as E};

/// Written by a runner on its protocol stream as soon as it starts. Whatever precedes it on the
/// stream (a test harness's banner) is not protocol.
pub const READY: &[u8; 8] = b"GFREADY3";
/// The tag of an invocation frame.
pub const INVOCATION_TAG: &[u8; 8] = b"GFINVOK3";
/// The tag of an outcome frame.
pub const OUTCOME_TAG: &[u8; 8] = b"GFOUTCM3";

/// The length of every frame's header: tag, head length, payload length.
pub const HEADER_LEN: usize = 24;

fn header(tag: &[u8; 8], head: &[u8], payload: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + head.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload.to_le_bytes());
    out.extend_from_slice(head);
    out
}

fn headers(values: &[(String, EncodedValue)]) -> Vec<(String, ValueHeader)> {
    values
        .iter()
        .map(|(name, value)| (name.clone(), value.header()))
        .collect()
}

fn encode_head(what: &'static str, head: &impl serde::Serialize) -> Result<Vec<u8>, E> {
    codec::encode(head).map_err(|message| E::Corrupt { what, message })
}

/// A whole invocation frame, ready to send: its header and head, then its values' bytes (moved
/// out of the [`Invocation`], not copied). Made by [`Invocation::into_frame`], the one place an
/// invocation's frame is assembled; write its [`chunks`](InvocationFrame::chunks) in order, or
/// take it as one buffer with [`into_bytes`](InvocationFrame::into_bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationFrame {
    start: Vec<u8>,
    values: Vec<Vec<u8>>,
}

impl InvocationFrame {
    /// The frame's bytes, in order, in pieces (no copy).
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.start.as_slice()).chain(self.values.iter().map(Vec::as_slice))
    }

    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        self.chunks().map(<[u8]>::len).sum()
    }

    /// Never: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frame in one buffer (for a transport that sends messages, not streams).
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = self.start;
        out.reserve(self.values.iter().map(Vec::len).sum());
        for value in &self.values {
            out.extend_from_slice(value);
        }
        out
    }

    /// Writes the frame and flushes.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), ProtocolError> {
        for chunk in self.chunks() {
            out.write_all(chunk).map_err(E::write)?;
        }
        out.flush().map_err(E::write)
    }
}

impl Invocation {
    /// The whole frame of this invocation; its values' bytes are moved into it. Fails only when
    /// the head cannot be encoded.
    pub fn into_frame(self) -> Result<InvocationFrame, ProtocolError> {
        let start = self.frame_start()?;
        let values = self
            .inputs
            .into_iter()
            .chain(self.channel)
            .chain(self.upstream)
            .map(|(_, value)| value.bytes)
            .collect();
        Ok(InvocationFrame { start, values })
    }

    /// The frame's header and head; the payload is [`Invocation::payload`], in order.
    fn frame_start(&self) -> Result<Vec<u8>, ProtocolError> {
        let head = InvocationHead {
            protocol: self.protocol,
            build_id: self.build_id.clone(),
            nonce: self.nonce,
            task: self.task.clone(),
            task_id: self.task_id.clone(),
            workflow: self.workflow.clone(),
            run_id: self.run_id.clone(),
            attempt: self.attempt,
            cycle: self.cycle,
            inputs: headers(&self.inputs),
            channel: headers(&self.channel),
            upstream: headers(&self.upstream),
        };
        let payload = self.payload().map(|b| b.len() as u64).sum();
        Ok(header(
            INVOCATION_TAG,
            &encode_head("invocation head", &head)?,
            payload,
        ))
    }

    /// The values' bytes, in frame order.
    fn payload(&self) -> impl Iterator<Item = &[u8]> {
        self.inputs
            .iter()
            .chain(&self.channel)
            .chain(&self.upstream)
            .map(|(_, v)| v.bytes.as_slice())
    }

    /// Writes the whole frame: the bytes of [`Invocation::into_frame`], without giving up the
    /// invocation.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), ProtocolError> {
        out.write_all(&self.frame_start()?).map_err(E::write)?;
        for bytes in self.payload() {
            out.write_all(bytes).map_err(E::write)?;
        }
        out.flush().map_err(E::write)
    }

    /// Reads one invocation frame.
    pub fn read_from(input: &mut dyn Read, limits: &Limits) -> Result<Invocation, ProtocolError> {
        let (head, payload): (InvocationHead, u64) =
            read_head(input, INVOCATION_TAG, "invocation", limits)?;
        if head.protocol != PROTOCOL_VERSION {
            return Err(E::Version {
                ours: PROTOCOL_VERSION,
                theirs: head.protocol,
            });
        }
        let declared = head
            .inputs
            .iter()
            .chain(&head.channel)
            .chain(&head.upstream)
            .map(|(_, h)| h);
        check_payload(declared, payload)?;
        let mut read = |list: Vec<(String, ValueHeader)>| -> Result<_, E> {
            list.into_iter()
                .map(|(name, h)| Ok((name, read_value(input, h)?)))
                .collect::<Result<Vec<_>, E>>()
        };
        Ok(Invocation {
            protocol: head.protocol,
            build_id: head.build_id,
            nonce: head.nonce,
            task: head.task,
            task_id: head.task_id,
            workflow: head.workflow,
            run_id: head.run_id,
            attempt: head.attempt,
            cycle: head.cycle,
            inputs: read(head.inputs)?,
            channel: read(head.channel)?,
            upstream: read(head.upstream)?,
        })
    }
}

/// What the receiver of an outcome expects of it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The nonce of the invocation sent.
    pub nonce: u64,
    /// The sender's build id.
    pub build_id: &'a str,
}

impl Outcome {
    /// Writes the whole frame.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), ProtocolError> {
        let head = OutcomeHead {
            protocol: self.protocol,
            build_id: self.build_id.clone(),
            nonce: self.nonce,
            result: self
                .result
                .as_ref()
                .map(EncodedValue::header)
                .map_err(Clone::clone),
            channel_writes: self
                .channel_writes
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(EncodedValue::header)))
                .collect(),
            control: self
                .control
                .iter()
                .map(|c| {
                    c.clone()
                        .try_map(&mut |v| Ok::<_, std::convert::Infallible>(v.header()))
                        .unwrap_or_else(|never| match never {})
                })
                .collect(),
            elapsed_ns: self.elapsed_ns,
        };
        let blobs: Vec<&[u8]> = self
            .result
            .iter()
            .chain(self.channel_writes.iter().filter_map(|(_, v)| v.as_ref()))
            .chain(self.control.iter().flat_map(Control::values))
            .map(|v| v.bytes.as_slice())
            .collect();
        let payload = blobs.iter().map(|b| b.len() as u64).sum();
        out.write_all(&header(
            OUTCOME_TAG,
            &encode_head("outcome head", &head)?,
            payload,
        ))
        .map_err(E::write)?;
        for bytes in blobs {
            out.write_all(bytes).map_err(E::write)?;
        }
        out.flush().map_err(E::write)
    }
}

/// Reads one outcome frame, checking the head (protocol version, build id, nonce) before any
/// value is read, and decoding the result as it arrives with `decode_result` (which gets the
/// result's header and a reader of exactly its bytes). Channel writes are read as
/// [`EncodedValue`]s. The stream is left after the frame.
pub fn read_outcome<V>(
    input: &mut dyn Read,
    limits: &Limits,
    expected: Expected<'_>,
    decode_result: impl FnOnce(&ValueHeader, &mut dyn Read) -> Result<V, String>,
) -> Result<Outcome<V>, ProtocolError> {
    let (head, payload): (OutcomeHead, u64) = read_head(input, OUTCOME_TAG, "outcome", limits)?;
    if head.protocol != PROTOCOL_VERSION {
        return Err(E::Version {
            ours: PROTOCOL_VERSION,
            theirs: head.protocol,
        });
    }
    if head.build_id != expected.build_id {
        return Err(E::BuildMismatch {
            ours: expected.build_id.to_owned(),
            theirs: head.build_id,
        });
    }
    // A runner that could not read the invocation does not know its nonce and answers 0 with
    // its reason: a failure either way, so it is let through with that reason.
    let unread_rejection = head.nonce == 0 && matches!(head.result, Err(Failure::Rejected { .. }));
    if head.nonce != expected.nonce && !unread_rejection {
        return Err(E::WrongNonce {
            expected: expected.nonce,
            found: head.nonce,
        });
    }
    let declared = head
        .result
        .iter()
        .chain(head.channel_writes.iter().filter_map(|(_, h)| h.as_ref()))
        .chain(head.control.iter().flat_map(Control::values));
    check_payload(declared, payload)?;
    let result = match head.result {
        Ok(h) => {
            let mut take = Read::take(&mut *input, h.len);
            let value = decode_result(&h, &mut take).map_err(|message| E::Corrupt {
                what: "result",
                message,
            })?;
            if take.limit() > 0 {
                return Err(E::Corrupt {
                    what: "result",
                    message: format!("{} of its bytes were left unread", take.limit()),
                });
            }
            Ok(value)
        }
        Err(failure) => Err(failure),
    };
    let channel_writes = head
        .channel_writes
        .into_iter()
        .map(|(key, h)| Ok((key, h.map(|h| read_value(input, h)).transpose()?)))
        .collect::<Result<_, E>>()?;
    let control = head
        .control
        .into_iter()
        .map(|c| c.try_map(&mut |h| read_value(input, h)))
        .collect::<Result<_, E>>()?;
    Ok(Outcome {
        protocol: head.protocol,
        build_id: head.build_id,
        nonce: head.nonce,
        result,
        channel_writes,
        control,
        elapsed_ns: head.elapsed_ns,
    })
}

/// Reads an outcome whose result stays encoded (for tests and tools).
pub fn read_encoded_outcome(
    input: &mut dyn Read,
    limits: &Limits,
    expected: Expected<'_>,
) -> Result<Outcome, ProtocolError> {
    read_outcome(input, limits, expected, |h, r| {
        read_bytes(r, h.len)
            .map(|bytes| EncodedValue {
                type_name: h.type_name.clone(),
                bytes,
            })
            .map_err(|e| e.to_string())
    })
}

/// Checks that the header's lengths are within the limits; returns (head, payload) lengths.
pub fn parse_header(
    bytes: &[u8; HEADER_LEN],
    tag: &'static [u8; 8],
    limits: &Limits,
) -> Result<(u64, u64), ProtocolError> {
    if &bytes[..8] != tag {
        return Err(E::BadTag {
            expected: std::str::from_utf8(tag).unwrap_or("graflow"),
            found: String::from_utf8_lossy(&bytes[..8]).into_owned(),
        });
    }
    let field = |at: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(n)
    };
    let (head, payload) = (field(8), field(16));
    if head > limits.max_head {
        return Err(E::TooLarge {
            what: "a message head",
            len: head,
            limit: limits.max_head,
            hint: "",
        });
    }
    // Lengths whose sum overflows are too large whatever the limit (even u64::MAX).
    let total = head.checked_add(payload);
    if total.is_none_or(|total| total > limits.max_frame) {
        return Err(E::TooLarge {
            what: "a frame",
            len: total.unwrap_or(u64::MAX),
            limit: limits.max_frame,
            hint: "; raise the handler's frame limit (Limits::with_max_frame) if results this large are expected",
        });
    }
    Ok((head, payload))
}

fn read_head<H: serde::de::DeserializeOwned>(
    input: &mut dyn Read,
    tag: &'static [u8; 8],
    what: &'static str,
    limits: &Limits,
) -> Result<(H, u64), ProtocolError> {
    let mut bytes = [0u8; HEADER_LEN];
    read_exact(input, &mut bytes, "frame header")?;
    let mut decoder = FrameDecoder::new(tag, *limits);
    decoder.feed(&bytes)?;
    let (head_len, payload) = decoder.lengths().ok_or(E::Corrupt {
        what: "frame",
        message: "internal: a whole header did not give its lengths".to_owned(),
    })?;
    let head = read_bytes(input, head_len)?;
    let head = codec::decode(&head).map_err(|message| E::Corrupt {
        what: if what == "outcome" {
            "outcome head"
        } else {
            "invocation head"
        },
        message,
    })?;
    Ok((head, payload))
}

fn check_payload<'a>(
    declared: impl Iterator<Item = &'a ValueHeader>,
    payload: u64,
) -> Result<(), ProtocolError> {
    let mut sum: u64 = 0;
    for h in declared {
        sum = sum.checked_add(h.len).ok_or(E::Corrupt {
            what: "frame",
            message: "its value lengths overflow".to_owned(),
        })?;
    }
    if sum != payload {
        return Err(E::Corrupt {
            what: "frame",
            message: format!("its values take {sum} bytes but its payload is {payload} bytes"),
        });
    }
    Ok(())
}

fn read_value(input: &mut dyn Read, h: ValueHeader) -> Result<EncodedValue, ProtocolError> {
    Ok(EncodedValue {
        bytes: read_bytes(input, h.len)?,
        type_name: h.type_name,
    })
}

fn read_exact(input: &mut dyn Read, buf: &mut [u8], what: &'static str) -> Result<(), E> {
    let mut done = 0;
    while done < buf.len() {
        match input.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(E::Ended {
                    what,
                    missing: (buf.len() - done) as u64,
                });
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(E::read(e)),
        }
    }
    Ok(())
}

/// Reads exactly `len` bytes, growing the buffer as they arrive (a length that lies costs
/// nothing until the bytes come). `len` must already be checked against a limit.
fn read_bytes(input: &mut dyn Read, len: u64) -> Result<Vec<u8>, ProtocolError> {
    const STEP: u64 = 1 << 20;
    let mut out = Vec::new();
    while (out.len() as u64) < len {
        let chunk = (len - out.len() as u64).min(STEP) as usize;
        let start = out.len();
        out.resize(start + chunk, 0);
        read_exact(input, &mut out[start..], "frame payload").map_err(|e| match e {
            E::Ended { what, missing } => E::Ended {
                what,
                missing: missing + (len - (start + chunk) as u64),
            },
            other => other,
        })?;
    }
    Ok(out)
}

/// A failure outcome for `invocation`'s nonce (or 0 when it could not be read).
pub fn rejection(nonce: u64, build_id: &str, reason: String) -> Outcome {
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: build_id.to_owned(),
        nonce,
        result: Err(Failure::Rejected { reason }),
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err =
            read_encoded_outcome(&mut &garbage[..], &Limits::default(), EXPECTED).unwrap_err();
        assert!(matches!(err, E::BadTag { .. }), "{err}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

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
}
