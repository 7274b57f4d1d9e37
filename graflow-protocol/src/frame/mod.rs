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

mod feedback;
pub use feedback::{AskFrame, MAX_FEEDBACK_HEAD, ReplyFrame};

use crate::codec;
use crate::decoder::FrameDecoder;
use crate::error::ProtocolError;
use crate::header::{HEADER_LEN, INVOCATION_TAG, OUTCOME_TAG, header};
use crate::limits::Limits;
use crate::message::{
    Control, EncodedValue, Failure, Invocation, InvocationHead, Outcome, OutcomeHead, ValueHeader,
};
use crate::{PROTOCOL_VERSION, ProtocolError as E};

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
        what: match what {
            "outcome" => "outcome head",
            "invocation" => "invocation head",
            other => other,
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
mod properties;
#[cfg(test)]
mod tests;
