//! How much a peer may send: every length read from the wire is checked against these before
//! anything is allocated for it.

/// Bounds on what is read from a peer. The defaults fit the documented 50 MB results with
/// headroom; raise [`Limits::max_frame`] for larger ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest frame (head and payload together), in bytes. Default 256 MiB.
    pub max_frame: u64,
    /// The largest message head (names, ids, value headers, failure messages), in bytes.
    /// Default 1 MiB (a head decodes into more memory than it takes on the wire).
    pub max_head: u64,
    /// The longest log line passed on; longer lines are cut (and say so). Default 16 KiB.
    pub max_log_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 256 << 20,
            max_head: 1 << 20,
            max_log_line: 16 << 10,
        }
    }
}

impl Limits {
    /// These limits with another frame limit.
    pub fn with_max_frame(mut self, bytes: u64) -> Self {
        self.max_frame = bytes;
        self
    }

    /// These limits with another head limit.
    pub fn with_max_head(mut self, bytes: u64) -> Self {
        self.max_head = bytes;
        self
    }

    /// These limits with another log line limit.
    pub fn with_max_log_line(mut self, bytes: usize) -> Self {
        self.max_log_line = bytes.max(64);
        self
    }
}
