//! The feedback frames (§10 of PROTOCOL.md): while a task runs, its runner may ask the host a
//! question for a person ([`AskFrame`], runner → host, tag `GFASKRQ3`) and waits for the host's
//! [`ReplyFrame`] (host → runner, tag `GFREPLY3`) with the same key. Both carry their message
//! as JSON text in the head (the protocol does not interpret it: the core does, bounded), and
//! no payload.

use std::io::{Read, Write};

use super::{encode_head, read_head};
use crate::error::ProtocolError as E;
use crate::header::{ASK_TAG, REPLY_TAG, header};
use crate::limits::Limits;

/// The largest head of a feedback frame: a request or a reply, JSON, with room to spare.
pub const MAX_FEEDBACK_HEAD: u64 = 1 << 20;

/// A task's question, runner → host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AskFrame {
    /// Which question of the attempt this is (the reply names it).
    pub key: String,
    /// The question, JSON (the core's `FeedbackRequest`).
    pub request: String,
}

/// The host's reply to an [`AskFrame`], host → runner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplyFrame {
    /// The key of the question.
    pub key: String,
    /// The reply, JSON (the core's answer or the reason there is none).
    pub reply: String,
}

fn limits() -> Limits {
    Limits::default()
        .with_max_head(MAX_FEEDBACK_HEAD)
        .with_max_frame(MAX_FEEDBACK_HEAD)
}

fn write(
    out: &mut dyn Write,
    tag: &[u8; 8],
    what: &'static str,
    head: &impl serde::Serialize,
) -> Result<(), E> {
    let head = encode_head(what, head)?;
    if head.len() as u64 > MAX_FEEDBACK_HEAD {
        return Err(E::TooLarge {
            what,
            len: head.len() as u64,
            limit: MAX_FEEDBACK_HEAD,
            hint: "",
        });
    }
    out.write_all(&header(tag, &head, 0)).map_err(E::write)?;
    out.flush().map_err(E::write)
}

fn read<H: serde::de::DeserializeOwned>(
    input: &mut dyn Read,
    tag: &'static [u8; 8],
    what: &'static str,
) -> Result<H, E> {
    let (head, payload) = read_head(input, tag, what, &limits())?;
    if payload != 0 {
        return Err(E::Corrupt {
            what,
            message: format!(
                "a feedback frame carries no payload, this one declares {payload} byte(s)"
            ),
        });
    }
    Ok(head)
}

impl AskFrame {
    /// Writes the frame and flushes.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), E> {
        write(out, ASK_TAG, "ask frame", self)
    }

    /// Reads one ask frame (bounded by [`MAX_FEEDBACK_HEAD`]).
    pub fn read_from(input: &mut dyn Read) -> Result<AskFrame, E> {
        read(input, ASK_TAG, "ask frame")
    }
}

impl ReplyFrame {
    /// Writes the frame and flushes.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<(), E> {
        write(out, REPLY_TAG, "reply frame", self)
    }

    /// Reads one reply frame (bounded by [`MAX_FEEDBACK_HEAD`]).
    pub fn read_from(input: &mut dyn Read) -> Result<ReplyFrame, E> {
        read(input, REPLY_TAG, "reply frame")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        let ask = AskFrame {
            key: "1.0".into(),
            request: "{\"prompt\":\"deploy?\"}".into(),
        };
        let mut bytes = Vec::new();
        ask.write_to(&mut bytes).unwrap();
        assert_eq!(&bytes[..8], ASK_TAG);
        assert_eq!(AskFrame::read_from(&mut bytes.as_slice()).unwrap(), ask);
        let reply = ReplyFrame {
            key: "1.0".into(),
            reply: "{}".into(),
        };
        let mut bytes = Vec::new();
        reply.write_to(&mut bytes).unwrap();
        assert_eq!(ReplyFrame::read_from(&mut bytes.as_slice()).unwrap(), reply);
        // One is not the other.
        assert!(AskFrame::read_from(&mut bytes.as_slice()).is_err());
    }

    #[test]
    fn an_oversized_head_is_refused_before_it_is_read() {
        let mut bytes = header(ASK_TAG, &[], 0);
        bytes[8..16].copy_from_slice(&(MAX_FEEDBACK_HEAD + 1).to_le_bytes());
        let error = AskFrame::read_from(&mut bytes.as_slice()).unwrap_err();
        assert!(matches!(error, E::TooLarge { .. }), "{error}");
    }

    proptest! {
        /// Any bytes: an error or a frame, never a panic, and never more read than declared.
        #[test]
        fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = AskFrame::read_from(&mut bytes.as_slice());
            let _ = ReplyFrame::read_from(&mut bytes.as_slice());
            let mut tagged = ASK_TAG.to_vec();
            tagged.extend_from_slice(&bytes);
            let _ = AskFrame::read_from(&mut tagged.as_slice());
        }
    }
}
