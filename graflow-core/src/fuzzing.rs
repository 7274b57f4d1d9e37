//! Entry points for the fuzz targets of `fuzz/` (compiled only under `--cfg fuzzing`, which
//! cargo-fuzz passes): each drives one decoder of outside bytes and discards the result. A
//! decoder may refuse its input; it must never panic, and never allocate beyond its limits.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::run::Checkpoint;

pub use crate::remote::fuzzing::{logs, ready, warm};

/// `Checkpoint::load` on the bytes of a file: as they are, and with their lengths and checksum
/// made to agree with them (as anyone can: the format is documented), so that the head and the
/// body are decoded. The head's length is taken from the input's.
pub fn checkpoint(bytes: &[u8]) {
    let path = PathBuf::from("fuzz.checkpoint");
    let _ = Checkpoint::from_bytes(path.clone(), bytes);
    let preamble = crate::run::checkpoint::PREAMBLE;
    if bytes.len() < preamble {
        return;
    }
    let mut n = [0u8; 4];
    n.copy_from_slice(&bytes[preamble - 12..preamble - 8]);
    let content = &bytes[preamble..];
    let head_len = u32::from_le_bytes(n) as usize % (content.len() + 1);
    let (head, body) = content.split_at(head_len);
    let forged = crate::run::checkpoint::file_bytes(head, body);
    if let Ok(mut checkpoint) = Checkpoint::from_bytes(path, &forged) {
        let _ = (
            checkpoint.workflow(),
            checkpoint.run_id(),
            checkpoint.written_at(),
        );
        let _ = checkpoint.cadence();
        let _ = checkpoint.channel();
    }
}

/// The `--graflow-*` flag parser (`program::parse` and `program::split`) on arguments separated
/// by NUL bytes.
pub fn program_flags(bytes: &[u8]) {
    let args: Vec<OsString> = bytes
        .split(|&b| b == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    let known = crate::program::known();
    let (ours, theirs) = crate::program::split(&args, &known);
    assert_eq!(
        ours.len() + theirs.len(),
        args.len(),
        "split lost or made up arguments"
    );
    let _ = crate::program::parse(&args, &known);
}
