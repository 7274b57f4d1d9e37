//! A frame's fixed-size header (`tag | head length | payload length`), its tags, and the check
//! of its lengths against [`Limits`]: what every reader of frames ([`FrameDecoder`](crate::FrameDecoder))
//! and writer ([`frame`](crate::frame)) shares.

use crate::error::ProtocolError as E;
use crate::limits::Limits;

/// Written by a runner on its protocol stream as soon as it starts. Whatever precedes it on the
/// stream (a test harness's banner) is not protocol.
pub const READY: &[u8; 8] = b"GFREADY3";
/// The tag of an invocation frame.
pub const INVOCATION_TAG: &[u8; 8] = b"GFINVOK3";
/// The tag of an outcome frame.
pub const OUTCOME_TAG: &[u8; 8] = b"GFOUTCM3";
/// The tag of a feedback request, runner → host (§10).
pub const ASK_TAG: &[u8; 8] = b"GFASKRQ3";
/// The tag of the reply to a feedback request, host → runner (§10).
pub const REPLY_TAG: &[u8; 8] = b"GFREPLY3";

/// The length of every frame's header: tag, head length, payload length.
pub const HEADER_LEN: usize = 24;

pub(crate) fn header(tag: &[u8; 8], head: &[u8], payload: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + head.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload.to_le_bytes());
    out.extend_from_slice(head);
    out
}

/// Checks that the header's lengths are within the limits; returns (head, payload) lengths.
pub fn parse_header(
    bytes: &[u8; HEADER_LEN],
    tag: &'static [u8; 8],
    limits: &Limits,
) -> Result<(u64, u64), E> {
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
