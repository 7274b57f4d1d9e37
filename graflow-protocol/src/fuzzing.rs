//! Entry points for the fuzz targets of `fuzz/` (compiled only under `--cfg fuzzing`, which
//! cargo-fuzz passes): each drives one decoder of outside bytes and discards the result. A
//! decoder may refuse its input; it must never panic, and never allocate beyond its limits.

use std::collections::BTreeMap;

use crate::codec;
use crate::decoder::{FrameDecoder, Step};
use crate::frame::{self, Expected};
use crate::header::{self, HEADER_LEN, INVOCATION_TAG, OUTCOME_TAG};
use crate::limits::Limits;
use crate::message::{Invocation, Outcome};

/// What the seeds of the outcome target were written for.
pub const EXPECTED: Expected<'static> = Expected {
    nonce: 42,
    build_id: "b",
};

/// The default limits and small ones, so that both sides of every limit check are reached.
fn limits() -> [Limits; 2] {
    [
        Limits::default(),
        Limits::default()
            .with_max_frame(4096)
            .with_max_head(1024)
            .with_max_log_line(64),
    ]
}

/// `frame::read_outcome` (the engine reading a runner's answer), with the result kept encoded
/// and decoded as a few types, and `parse_header` on the first 24 bytes. An outcome that reads
/// is written again and must read back the same.
pub fn outcome(bytes: &[u8]) {
    if let Ok(header) = <&[u8; HEADER_LEN]>::try_from(bytes.get(..HEADER_LEN).unwrap_or(&[])) {
        for limits in limits() {
            let _ = header::parse_header(header, OUTCOME_TAG, &limits);
            let _ = header::parse_header(header, INVOCATION_TAG, &limits);
        }
    }
    for limits in limits() {
        // The frame's end, fed in two pieces: where `read_outcome` stops, or refused.
        let mut decoder = FrameDecoder::outcome(limits);
        let (a, b) = bytes.split_at(bytes.len() / 2);
        if let Ok(Step::NeedMore) = decoder.feed(a) {
            let _ = decoder.feed(b);
        }
        if let Ok(read) = frame::read_encoded_outcome(&mut &bytes[..], &limits, EXPECTED) {
            let mut wire = Vec::new();
            read.write_to(&mut wire)
                .expect("an outcome that was read can be written");
            let again = frame::read_encoded_outcome(&mut &wire[..], &limits, EXPECTED)
                .expect("an outcome written again reads back");
            assert_same_outcome(&read, &again);
        }
        let _ = frame::read_outcome(&mut &bytes[..], &limits, EXPECTED, |h, r| {
            codec::decode_from::<String>(r, h.len)
        });
        let _ = frame::read_outcome(&mut &bytes[..], &limits, EXPECTED, |h, r| {
            codec::decode_from::<(u64, Vec<String>, Option<BTreeMap<String, f64>>)>(r, h.len)
        });
    }
}

fn assert_same_outcome(a: &Outcome, b: &Outcome) {
    assert_eq!(a.protocol, b.protocol);
    assert_eq!(a.build_id, b.build_id);
    assert_eq!(a.nonce, b.nonce);
    assert_eq!(a.result, b.result);
    assert_eq!(a.channel_writes, b.channel_writes);
    assert_eq!(a.control, b.control);
    assert_eq!(a.elapsed_ns, b.elapsed_ns);
}

/// `Invocation::read_from` (a runner reading what the engine sent). An invocation that reads
/// is written again and must read back the same.
pub fn invocation(bytes: &[u8]) {
    for limits in limits() {
        if let Ok(read) = Invocation::read_from(&mut &bytes[..], &limits) {
            let mut wire = Vec::new();
            read.write_to(&mut wire)
                .expect("an invocation that was read can be written");
            let again = Invocation::read_from(&mut &wire[..], &limits)
                .expect("an invocation written again reads back");
            assert_eq!(read, again);
        }
    }
}

/// `codec::decode` and `codec::decode_from` as several types; the first byte says how many
/// bytes `decode_from` is told the value takes (exactly, fewer, more).
pub fn codec(bytes: &[u8]) {
    let Some((&mode, bytes)) = bytes.split_first() else {
        return;
    };
    let len = match mode % 3 {
        0 => bytes.len() as u64,
        1 => (bytes.len() as u64).saturating_sub(u64::from(mode >> 2)),
        _ => bytes.len() as u64 + u64::from(mode >> 2),
    };
    macro_rules! both {
        ($($t:ty),*) => {$(
            if let Ok(value) = codec::decode::<$t>(bytes) {
                let again = codec::encode(&value).expect("a decoded value encodes");
                assert_eq!(codec::decode::<$t>(&again).ok(), Some(value));
            }
            let _ = codec::decode_from::<$t>(&mut &bytes[..], len);
        )*};
    }
    both!(
        String,
        Vec<u8>,
        Vec<String>,
        (u64, i32, bool, char),
        Option<Vec<(String, Vec<u8>)>>,
        BTreeMap<String, Vec<u32>>,
        Result<(u16, String), Vec<i64>>
    );
    // Floats: NaN is not equal to itself, so no round trip here.
    let _ = codec::decode::<(f64, f32)>(bytes);
    let _ = codec::decode_from::<Vec<f64>>(&mut &bytes[..], len);
}

/// The feedback frames (§10) read from hostile bytes, as a host reads a runner's question and a
/// runner its host's reply: a frame or an error, never a panic, nothing read past the limit.
pub fn feedback_frames(bytes: &[u8]) {
    let _ = crate::AskFrame::read_from(&mut &bytes[..]);
    let _ = crate::ReplyFrame::read_from(&mut &bytes[..]);
    let mut tagged = crate::ASK_TAG.to_vec();
    tagged.extend_from_slice(bytes);
    let _ = crate::AskFrame::read_from(&mut tagged.as_slice());
}
