//! The memory a decode of hostile bytes takes stays within a bound: a small multiple of the
//! bytes that actually arrived, plus what the `Limits` allow. A counting global allocator
//! records each thread's peak of live bytes while a decode runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use graflow_protocol::frame::{Expected, read_encoded_outcome, read_outcome};
use graflow_protocol::{INVOCATION_TAG, Invocation, Limits, OUTCOME_TAG, codec};
use proptest::prelude::*;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: nothing to count while a thread's locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes live at once (above those live before) while `f` ran on this thread.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    f();
    (PEAK.with(Cell::get) - base).max(0) as usize
}

/// Small limits: a frame of at most 64 KiB, a head of at most 16 KiB.
fn limits() -> Limits {
    Limits::default()
        .with_max_frame(64 << 10)
        .with_max_head(16 << 10)
}

/// What a decode of `input` may take: 64 bytes per byte received (a head decodes into more
/// memory than it takes on the wire: an empty name is one byte there, 24 in memory), plus the
/// frame limit, plus 1 MiB for each sequence being decoded at once (serde reserves at most
/// 1 MiB for a sequence's claimed length before its elements arrive, whatever it claims: this
/// test found that a 9-byte input claiming 2^40 elements costs that 1 MiB; the types decoded
/// here nest sequences two deep), plus a little for the decoder itself.
fn bound(input: usize) -> usize {
    let limits = limits();
    64 * input + limits.max_frame as usize + (2 << 20) + (64 << 10)
}

fn decode_all(bytes: &[u8]) {
    let limits = limits();
    let expected = Expected {
        nonce: 42,
        build_id: "b",
    };
    let _ = Invocation::read_from(&mut &bytes[..], &limits);
    let _ = read_encoded_outcome(&mut &bytes[..], &limits, expected);
    let _ = read_outcome(&mut &bytes[..], &limits, expected, |h, r| {
        codec::decode_from::<(String, Vec<String>)>(r, h.len)
    });
    let _ = codec::decode::<Vec<(String, Vec<u8>)>>(bytes);
    let _ = codec::decode_from::<Vec<(String, Vec<u8>)>>(&mut &bytes[..], bytes.len() as u64);
}

/// A frame header claiming `head` and `payload` bytes, then `rest`.
fn frame(tag: &[u8; 8], head: u64, payload: u64, rest: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend_from_slice(&head.to_le_bytes());
    out.extend_from_slice(&payload.to_le_bytes());
    out.extend_from_slice(rest);
    out
}

#[test]
fn claimed_lengths_cost_nothing_until_their_bytes_arrive() {
    // The counter sees an allocation of the kind the bound is about.
    assert!(peak_of(|| drop(vec![0u8; 8 << 20])) >= 8 << 20);
    let mut huge_string = vec![253u8];
    huge_string.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let inputs = [
        frame(OUTCOME_TAG, 16 << 10, (48 << 10) - 1, &[]),
        frame(INVOCATION_TAG, 16 << 10, 0, &huge_string),
        frame(OUTCOME_TAG, 9, 1 << 40, &huge_string),
        huge_string.clone(),
    ];
    for input in inputs {
        let peak = peak_of(|| decode_all(&input));
        assert!(
            peak <= bound(input.len()),
            "{peak} bytes for a {}-byte input",
            input.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hostile_bytes_stay_within_the_bound(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        tag in prop::sample::select(vec![None, Some(INVOCATION_TAG), Some(OUTCOME_TAG)]),
        head in prop::sample::select(vec![0u64, 9, 1 << 10, 16 << 10, u64::MAX]),
        payload in prop::sample::select(vec![0u64, 1, 48 << 10, 1 << 40]),
    ) {
        let input = match tag {
            Some(tag) => frame(tag, head, payload, &bytes),
            None => bytes,
        };
        let peak = peak_of(|| decode_all(&input));
        prop_assert!(peak <= bound(input.len()), "{} bytes for a {}-byte input", peak, input.len());
    }
}
