//! What can go wrong on the wire.

/// An error reading or writing a frame. Every variant describes the peer's bytes, never trusts
/// them: lengths and names are reported, contents are not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The stream failed.
    #[error("could not {action} the protocol stream: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside the {what} ({missing} more byte(s) were announced)")]
    Ended {
        /// Which part of the frame.
        what: &'static str,
        /// How many bytes were still due.
        missing: u64,
    },
    /// The frame does not start with the expected tag.
    #[error("expected a {expected} frame, found {found:?}")]
    BadTag {
        /// The tag that was expected.
        expected: &'static str,
        /// What was there instead (lossy text).
        found: String,
    },
    /// A length exceeds its limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes{hint}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The limit.
        limit: u64,
        /// What the user can do.
        hint: &'static str,
    },
    /// The bytes do not decode.
    #[error("the {what} is corrupt: {message}")]
    Corrupt {
        /// What did not decode.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The peer speaks another protocol version.
    #[error(
        "the peer speaks protocol version {theirs}, this program {ours}; run the same build on both sides"
    )]
    Version {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The peer is another build of the program.
    #[error(
        "the runner is another build of this program (build id {theirs}, ours {ours}); rebuild, and give the handler the binary that is running"
    )]
    BuildMismatch {
        /// Ours.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// The outcome answers another invocation than the one this attempt sent.
    #[error(
        "the outcome answers another invocation (nonce {found:#018x}, this attempt's is {expected:#018x}): it does not come from the runner this attempt started"
    )]
    WrongNonce {
        /// This attempt's nonce.
        expected: u64,
        /// The outcome's.
        found: u64,
    },
    /// Bytes followed the one frame the stream may carry.
    #[error("{0} unexpected byte(s) followed the outcome: a runner sends exactly one outcome")]
    Trailing(u64),
}

impl ProtocolError {
    pub(crate) fn read(source: std::io::Error) -> Self {
        ProtocolError::Io {
            action: "read",
            source,
        }
    }

    pub(crate) fn write(source: std::io::Error) -> Self {
        ProtocolError::Io {
            action: "write",
            source,
        }
    }
}
