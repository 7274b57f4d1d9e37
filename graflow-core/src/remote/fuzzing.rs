//! The fuzz entry points of the runner's output handling (see `crate::fuzzing`).

use graflow_protocol::frame::{Expected, read_encoded_outcome};
use graflow_protocol::{Limits, READY, TASK_END_MARKER};

use super::driver::ReadyScan;
use super::logs::{LogLines, LogTarget};
use super::warm::{OutcomeFrame, task_lines};

/// Cuts fuzz input into chunks: a length byte, then that many bytes (fewer at the end), again.
/// What a transport hands on comes in pieces of any size.
fn chunks(mut bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let take = usize::from(len & 0x7f).min(rest.len());
        out.push((len >> 7, &rest[..take]));
        bytes = &rest[take..];
    }
    out
}

/// A warm runner's two streams while it serves a task (`RunnerIo::read_answer`): chunks whose
/// length byte has its top bit set are protocol bytes, delimited into one outcome frame, the
/// others are log bytes, attributed to the task until its end marker. A whole frame is then
/// read as the engine reads it.
pub fn warm(bytes: &[u8]) {
    let Some((&mode, bytes)) = bytes.split_first() else {
        return;
    };
    let limits = match mode % 3 {
        0 => Limits::default(),
        1 => Limits::default().with_max_frame(4096).with_max_head(1024),
        // What a user may configure: no limit at all.
        _ => Limits::default()
            .with_max_frame(u64::MAX)
            .with_max_head(u64::MAX),
    };
    let marker = format!("{TASK_END_MARKER}{:016x}", 42).into_bytes();
    let mut logs = LogLines::new("task", LogTarget::HANDLERS, limits.max_log_line);
    let mut idle = LogLines::new("idle", LogTarget::HANDLERS, limits.max_log_line);
    let mut frame = OutcomeFrame::new(&limits);
    let mut ended = false;
    let mut whole = false;
    for (protocol, chunk) in chunks(bytes) {
        if protocol == 1 {
            match frame.feed(chunk) {
                Ok(true) => {
                    whole = true;
                    break;
                }
                Ok(false) => {}
                Err(_) => return,
            }
        } else {
            task_lines(chunk, &mut logs, &mut idle, &marker, &mut ended);
        }
    }
    logs.finish();
    idle.finish();
    let _ = frame.missing();
    if whole {
        let expected = Expected {
            nonce: 42,
            build_id: "b",
        };
        let _ = read_encoded_outcome(&mut &frame.into_bytes()[..], &limits, expected);
    }
}

/// `LogLines`: lines reassembled from chunks, cut at the limit (the first byte), only the last
/// kept. Every chunk of an odd length byte goes through `push_until` with the end marker.
pub fn logs(bytes: &[u8]) {
    let Some((&max, bytes)) = bytes.split_first() else {
        return;
    };
    let marker = format!("{TASK_END_MARKER}{:016x}", 42).into_bytes();
    let mut logs = LogLines::new("task", LogTarget::HANDLERS, usize::from(max) * 4);
    for (until, chunk) in chunks(bytes) {
        if until == 1 {
            if let Some(rest) = logs.push_until(chunk, &marker) {
                assert!(rest <= chunk.len(), "push_until points past its chunk");
            }
        } else {
            logs.push(chunk);
        }
    }
    logs.finish();
    let tail = logs.tail();
    assert!(tail.len() <= 20, "{} lines kept", tail.len());
    // 512 bytes and " [...]".
    assert!(
        tail.iter().all(|line| line.len() <= 518),
        "a kept line is long"
    );
    let _ = logs.tail_text();
}

/// `ReadyScan` (the driver waiting for a runner's READY) on the input in chunks: what it hands
/// on after READY must be exactly what follows the first READY in the whole input.
pub fn ready(bytes: &[u8]) {
    let mut scan = ReadyScan::default();
    let mut banner = LogLines::new("task", LogTarget::HANDLERS, 64);
    let mut fed = Vec::new();
    let mut after = None;
    for (_, chunk) in chunks(bytes) {
        fed.extend_from_slice(chunk);
        if let Some(rest) = scan.feed(chunk, &mut banner) {
            after = Some((fed.len(), rest));
            break;
        }
    }
    let first = fed.windows(READY.len()).position(|w| w == READY);
    match (first, after) {
        (Some(at), Some((fed_len, rest))) => {
            assert_eq!(fed_len, fed.len());
            assert_eq!(rest, &fed[at + READY.len()..], "the bytes after READY");
        }
        (None, None) => scan.end(&mut banner),
        (first, after) => panic!("READY at {first:?} in the input, the scan says {after:?}"),
    }
}
