//! [`FrameDecoder`]: where a frame ends, found from its header alone, I/O-free. Fed the bytes
//! of a stream as they come, in pieces of any size, it says whether the frame is whole yet, and
//! where it ends in the last piece; it refuses a header beyond the [`Limits`] before a byte past
//! it is taken, and keeps nothing but the header (a caller that wants the frame's bytes keeps
//! them). Every reader of frames goes through it: [`read_outcome`](crate::read_outcome) and
//! [`Invocation::read_from`](crate::Invocation::read_from) for the header of the frame they
//! read, a host delimiting a warm runner's outcomes on its output stream for the whole frame.

use crate::error::ProtocolError;
use crate::header::{HEADER_LEN, OUTCOME_TAG, parse_header};
use crate::limits::Limits;

/// What the bytes fed so far make of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every byte fed belongs to the frame, which is not whole yet.
    NeedMore,
    /// The frame is whole: it ends `used` bytes into the last bytes fed (any after are not
    /// part of it).
    Complete {
        /// How many of the last bytes fed belong to the frame.
        used: usize,
    },
}

/// Delimits one frame of a given tag on a stream, bounded by [`Limits`]; see the module.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    tag: &'static [u8; 8],
    limits: Limits,
    header: [u8; HEADER_LEN],
    /// Header bytes held so far.
    have: usize,
    /// The head and payload lengths, once the header was read.
    lengths: Option<(u64, u64)>,
    /// Bytes of the head and payload still to come, once the header was read.
    left: u64,
}

impl FrameDecoder {
    /// A decoder of one frame tagged `tag`.
    pub fn new(tag: &'static [u8; 8], limits: Limits) -> Self {
        FrameDecoder {
            tag,
            limits,
            header: [0; HEADER_LEN],
            have: 0,
            lengths: None,
            left: 0,
        }
    }

    /// A decoder of one outcome frame.
    pub fn outcome(limits: Limits) -> Self {
        Self::new(OUTCOME_TAG, limits)
    }

    /// Takes the next bytes of the stream. An error for a header of another tag or beyond the
    /// limits (or whose frame this process could not address), and for any byte fed once the
    /// frame was whole ([`ProtocolError::Trailing`]).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Step, ProtocolError> {
        let fed = bytes.len();
        if self.lengths.is_none() {
            let take = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < HEADER_LEN {
                return Ok(Step::NeedMore);
            }
            let (head, payload) = parse_header(&self.header, self.tag, &self.limits)?;
            // Within max_frame (parse_header checked the sum); a frame this process could not
            // address (a limit raised past memory) is too large all the same.
            let whole = head
                .checked_add(payload)
                .and_then(|len| len.checked_add(HEADER_LEN as u64))
                .filter(|&len| usize::try_from(len).is_ok());
            if whole.is_none() {
                return Err(ProtocolError::TooLarge {
                    what: "a frame",
                    len: head.saturating_add(payload),
                    limit: self.limits.max_frame,
                    hint: "",
                });
            }
            self.lengths = Some((head, payload));
            self.left = head + payload;
        } else if self.left == 0 {
            return match fed {
                0 => Ok(Step::Complete { used: 0 }),
                _ => Err(ProtocolError::Trailing(fed as u64)),
            };
        }
        let take = usize::try_from(self.left).map_or(bytes.len(), |left| left.min(bytes.len()));
        self.left -= take as u64;
        if self.left > 0 {
            return Ok(Step::NeedMore);
        }
        Ok(Step::Complete {
            used: fed - (bytes.len() - take),
        })
    }

    /// The head and payload lengths, once the header was read.
    pub fn lengths(&self) -> Option<(u64, u64)> {
        self.lengths
    }

    /// How many bytes the frame still misses, once its header was read.
    pub fn missing(&self) -> Option<u64> {
        self.lengths.map(|_| self.left)
    }

    /// Whether the frame is whole.
    pub fn is_complete(&self) -> bool {
        self.lengths.is_some() && self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncodedValue, Outcome, PROTOCOL_VERSION};

    pub(super) fn frame(result: Vec<u8>) -> Vec<u8> {
        let outcome = Outcome {
            protocol: PROTOCOL_VERSION,
            build_id: "b".into(),
            nonce: 42,
            result: Ok(EncodedValue {
                type_name: "u8".into(),
                bytes: result,
            }),
            channel_writes: Vec::new(),
            control: Vec::new(),
            elapsed_ns: 0,
        };
        let mut wire = Vec::new();
        outcome.write_to(&mut wire).unwrap();
        wire
    }

    #[test]
    fn a_frame_fed_whole_with_more_says_where_it_ends() {
        let wire = frame(vec![1, 2, 3]);
        let mut more = wire.clone();
        more.extend_from_slice(b"xyz");
        let mut decoder = FrameDecoder::outcome(Limits::default());
        assert_eq!(
            decoder.feed(&more).unwrap(),
            Step::Complete { used: wire.len() }
        );
        assert!(decoder.is_complete());
        assert_eq!(decoder.missing(), Some(0));
        let err = decoder.feed(b"x").unwrap_err();
        assert!(matches!(err, ProtocolError::Trailing(1)), "{err}");
    }

    #[test]
    fn a_header_of_another_tag_or_beyond_the_limits_is_refused() {
        let mut decoder = FrameDecoder::outcome(Limits::default());
        let err = decoder.feed(&[0u8; HEADER_LEN]).unwrap_err();
        assert!(matches!(err, ProtocolError::BadTag { .. }), "{err}");
        let mut header = OUTCOME_TAG.to_vec();
        header.extend_from_slice(&10u64.to_le_bytes());
        header.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = FrameDecoder::outcome(Limits::default())
            .feed(&header)
            .unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
    }

    /// Found by the `warm` fuzz target: under limits raised to u64::MAX, a header whose head
    /// and payload lengths overflow when added panicked the splitter; now it is refused.
    #[test]
    fn a_header_whose_lengths_overflow_is_refused_not_a_panic() {
        let limits = Limits::default()
            .with_max_frame(u64::MAX)
            .with_max_head(u64::MAX);
        for (head, payload) in [(0x01f7, u64::MAX), (u64::MAX, 1), (u64::MAX - 8, 0)] {
            let mut header = OUTCOME_TAG.to_vec();
            header.extend_from_slice(&u64::to_le_bytes(head));
            header.extend_from_slice(&u64::to_le_bytes(payload));
            let err = FrameDecoder::outcome(limits).feed(&header).unwrap_err();
            assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::tests::frame;
    use super::*;

    fn limits() -> impl Strategy<Value = Limits> {
        prop::sample::select(vec![
            Limits::default(),
            Limits::default().with_max_frame(256).with_max_head(64),
            Limits::default()
                .with_max_frame(u64::MAX)
                .with_max_head(u64::MAX),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A frame in chunks of any size is whole exactly at its last byte, whatever follows it
        /// in that chunk; a byte more is refused.
        #[test]
        fn a_frame_is_delimited_across_any_chunking(
            result in prop::collection::vec(any::<u8>(), 0..200),
            size in 1usize..64,
            extra in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let wire = frame(result);
            let mut stream = wire.clone();
            stream.extend_from_slice(&extra);
            let mut decoder = FrameDecoder::outcome(Limits::default());
            let mut at = 0;
            let mut end = None;
            for chunk in stream.chunks(size) {
                match decoder.feed(chunk).unwrap() {
                    Step::NeedMore => {
                        prop_assert!(decoder.missing().is_none_or(|m| m > 0));
                        at += chunk.len();
                    }
                    Step::Complete { used } => {
                        end = Some(at + used);
                        break;
                    }
                }
            }
            prop_assert_eq!(end, Some(wire.len()));
            prop_assert_eq!(decoder.missing(), Some(0));
            prop_assert!(decoder.feed(b"x").is_err());
        }

        /// Bytes of any kind, under any limits, are delimited or refused, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(
            limits in limits(),
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
            head in any::<u64>(),
            payload in any::<u64>(),
        ) {
            let mut header = OUTCOME_TAG.to_vec();
            header.extend_from_slice(&head.to_le_bytes());
            header.extend_from_slice(&payload.to_le_bytes());
            for first in [header, Vec::new()] {
                let mut decoder = FrameDecoder::outcome(limits);
                for chunk in std::iter::once(&first).chain(&chunks) {
                    match decoder.feed(chunk) {
                        Ok(Step::Complete { used }) => {
                            prop_assert!(used <= chunk.len());
                            break;
                        }
                        Err(_) => break,
                        Ok(Step::NeedMore) => {}
                    }
                }
                let _ = (decoder.missing(), decoder.lengths());
            }
        }
    }
}
