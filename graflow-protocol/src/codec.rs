//! The value encoding: bincode 2, standard configuration, through serde; and decoding that a
//! hostile length inside the bytes cannot turn into a huge allocation.
//!
//! bincode allocates a string or byte vector of the length it reads *before* reading its bytes.
//! Every decode here therefore runs with bincode's byte limit set to a bound just above the
//! number of bytes actually available, so a claimed length beyond the data is refused up front.

use std::io::Read;

use bincode::config::standard;
use bincode::de::read::Reader;
use bincode::error::DecodeError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, standard()).map_err(|e| e.to_string())
}

/// Encodes `value` as [`encode`] does, byte vectors and strings with one copy instead of one
/// serde call per byte (bincode writes the same bytes either way: a length, then the bytes).
pub fn encode_value<T: Serialize + 'static>(value: &T) -> Result<Vec<u8>, String> {
    let any = value as &dyn std::any::Any;
    if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
        return bincode::encode_to_vec(bytes, standard()).map_err(|e| e.to_string());
    }
    if let Some(text) = any.downcast_ref::<String>() {
        return bincode::encode_to_vec(text, standard()).map_err(|e| e.to_string());
    }
    encode(value)
}

/// Calls `$body` with `$cfg` bound to the standard configuration limited to the smallest of a
/// few powers of two that is at least `$len` (bincode's limit is a type-level constant).
macro_rules! with_limit_for {
    ($len:expr, |$cfg:ident| $body:expr) => {{
        let len: u64 = $len;
        if len <= 1 << 16 {
            let $cfg = standard().with_limit::<{ 1 << 16 }>();
            $body
        } else if len <= 1 << 20 {
            let $cfg = standard().with_limit::<{ 1 << 20 }>();
            $body
        } else if len <= 1 << 24 {
            let $cfg = standard().with_limit::<{ 1 << 24 }>();
            $body
        } else if len <= 1 << 28 {
            let $cfg = standard().with_limit::<{ 1 << 28 }>();
            $body
        } else if len <= 1 << 32 {
            let $cfg = standard().with_limit::<{ 1 << 32 }>();
            $body
        } else {
            let $cfg = standard().with_limit::<{ 1 << 36 }>();
            $body
        }
    }};
}

/// Decodes what [`encode`] produced; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, read) = with_limit_for!(bytes.len() as u64, |config| {
        bincode::serde::decode_from_slice::<T, _>(bytes, config)
    })
    .map_err(describe)?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing byte(s) after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// Decodes a value of exactly `len` bytes from `source`, as the bytes arrive (no copy of the
/// whole encoding is made). Reading fewer or more than `len` bytes is an error; `source` is then
/// left somewhere inside the value.
pub fn decode_from<T: DeserializeOwned + 'static>(
    source: &mut dyn Read,
    len: u64,
) -> Result<T, String> {
    use std::any::{Any, TypeId};
    let mut reader = BlobReader::new(source, len);
    // Byte vectors and strings in one read, not one serde call per byte (same wire bytes).
    let native = |value: Box<dyn Any>| {
        value
            .downcast::<T>()
            .map(|v| *v)
            .map_err(|_| "internal: a native decode of another type".to_owned())
    };
    let value = if TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
        let bytes: Vec<u8> = with_limit_for!(len, |config| {
            bincode::decode_from_reader::<Vec<u8>, _, _>(&mut reader, config)
        })
        .map_err(describe)?;
        native(Box::new(bytes))?
    } else if TypeId::of::<T>() == TypeId::of::<String>() {
        let text: String = with_limit_for!(len, |config| {
            bincode::decode_from_reader::<String, _, _>(&mut reader, config)
        })
        .map_err(describe)?;
        native(Box::new(text))?
    } else {
        with_limit_for!(len, |config| {
            bincode::serde::decode_from_reader::<T, _, _>(&mut reader, config)
        })
        .map_err(describe)?
    };
    if let Some(error) = reader.error.take() {
        return Err(error);
    }
    let left = reader.left();
    if left > 0 {
        return Err(format!(
            "the value was decoded from {} of its {len} bytes ({left} left over)",
            len - left
        ));
    }
    Ok(value)
}

fn describe(error: DecodeError) -> String {
    match error {
        DecodeError::LimitExceeded => {
            "it claims a length beyond the bytes that carry it (corrupt or hostile data)".to_owned()
        }
        DecodeError::UnexpectedEnd { .. } => "it ends before the value does".to_owned(),
        other => other.to_string(),
    }
}

/// A bincode reader over the next `len` bytes of a stream, buffered, never reading past them.
struct BlobReader<'a> {
    source: &'a mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes of the value not yet fetched from `source`.
    unfetched: u64,
    /// An I/O error met while fetching (bincode's error type cannot carry it).
    error: Option<String>,
}

impl<'a> BlobReader<'a> {
    const BUFFER: usize = 256 << 10;

    fn new(source: &'a mut dyn Read, len: u64) -> Self {
        let size = usize::try_from(len.min(Self::BUFFER as u64)).unwrap_or(Self::BUFFER);
        BlobReader {
            source,
            buf: vec![0; size.max(1)],
            pos: 0,
            end: 0,
            unfetched: len,
            error: None,
        }
    }

    fn left(&self) -> u64 {
        self.unfetched + (self.end - self.pos) as u64
    }

    /// Refills the buffer; false at the end of the value or of the stream.
    fn fill(&mut self) -> bool {
        if self.unfetched == 0 {
            return false;
        }
        let want = usize::try_from(self.unfetched.min(self.buf.len() as u64)).unwrap_or(0);
        loop {
            match self.source.read(&mut self.buf[..want]) {
                Ok(0) => {
                    self.error = Some(format!(
                        "the stream ended {} byte(s) before the end of the value",
                        self.unfetched
                    ));
                    return false;
                }
                Ok(n) => {
                    self.pos = 0;
                    self.end = n;
                    self.unfetched -= n as u64;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(format!("could not read the value: {e}"));
                    return false;
                }
            }
        }
    }
}

impl Reader for BlobReader<'_> {
    #[inline]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), DecodeError> {
        let available = self.end - self.pos;
        if bytes.len() <= available {
            bytes.copy_from_slice(&self.buf[self.pos..self.pos + bytes.len()]);
            self.pos += bytes.len();
            return Ok(());
        }
        let mut done = 0;
        while done < bytes.len() {
            if self.pos == self.end && !self.fill() {
                return Err(DecodeError::UnexpectedEnd {
                    additional: bytes.len() - done,
                });
            }
            let n = (self.end - self.pos).min(bytes.len() - done);
            bytes[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            done += n;
        }
        Ok(())
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        if self.end - self.pos < n {
            return None;
        }
        Some(&self.buf[self.pos..self.pos + n])
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_slices_and_streams() {
        let value = (String::from("graflow"), vec![7u8; 300_000], 42u64);
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<(String, Vec<u8>, u64)>(&bytes).unwrap(), value);
        let mut stream = &bytes[..];
        let back: (String, Vec<u8>, u64) = decode_from(&mut stream, bytes.len() as u64).unwrap();
        assert_eq!(back, value);
        assert!(stream.is_empty());
    }

    #[test]
    fn a_claimed_length_beyond_the_data_is_refused_without_allocating_it() {
        // A string that claims 2^60 bytes (varint tag 253 = u64 follows), then nothing.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = decode::<String>(&bytes).unwrap_err();
        assert!(err.contains("claims a length"), "{err}");
        let err = decode_from::<Vec<u8>>(&mut &bytes[..], bytes.len() as u64).unwrap_err();
        assert!(
            err.contains("claims a length") || err.contains("ends"),
            "{err}"
        );
        // 1 GiB claimed inside a 2 MiB blob.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 30).to_le_bytes());
        bytes.resize(2 << 20, 0);
        let err = decode::<String>(&bytes).unwrap_err();
        assert!(err.contains("claims a length"), "{err}");
    }

    #[test]
    fn short_and_long_blobs_are_errors() {
        let bytes = encode(&vec![1u32, 2, 3]).unwrap();
        let err = decode_from::<Vec<u32>>(&mut &bytes[..2], bytes.len() as u64).unwrap_err();
        assert!(err.contains("ended") || err.contains("ends"), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode_from::<Vec<u32>>(&mut &longer[..], longer.len() as u64).unwrap_err();
        assert!(err.contains("1 left over"), "{err}");
        assert!(
            decode::<Vec<u32>>(&longer)
                .unwrap_err()
                .contains("trailing")
        );
    }
}

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    type Mixed = (
        String,
        Vec<u8>,
        Vec<u32>,
        Option<i64>,
        BTreeMap<String, Vec<String>>,
    );

    fn mixed() -> impl Strategy<Value = Mixed> {
        (
            "\\PC{0,16}",
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u32>(), 0..16),
            any::<Option<i64>>(),
            prop::collection::btree_map(
                "[a-z]{0,4}",
                prop::collection::vec("\\PC{0,4}", 0..3),
                0..4,
            ),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn values_round_trip_through_decode_and_decode_from(value in mixed()) {
            let bytes = encode(&value).unwrap();
            prop_assert_eq!(decode::<Mixed>(&bytes).unwrap(), value.clone());
            let mut stream = &bytes[..];
            prop_assert_eq!(decode_from::<Mixed>(&mut stream, bytes.len() as u64).unwrap(), value);
            prop_assert!(stream.is_empty());
        }

        #[test]
        fn bytes_and_strings_round_trip_natively(bytes in prop::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,64}") {
            let wire = encode_value(&bytes).unwrap();
            prop_assert_eq!(&wire, &encode(&bytes).unwrap());
            prop_assert_eq!(decode_from::<Vec<u8>>(&mut &wire[..], wire.len() as u64).unwrap(), bytes);
            let wire = encode_value(&text).unwrap();
            prop_assert_eq!(&wire, &encode(&text).unwrap());
            prop_assert_eq!(decode_from::<String>(&mut &wire[..], wire.len() as u64).unwrap(), text);
        }

        /// Arbitrary bytes, told to be as long as they are or not, decode or are refused.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), delta in -8i64..8) {
            let len = (bytes.len() as u64).saturating_add_signed(delta);
            let _ = decode::<Mixed>(&bytes);
            let _ = decode::<String>(&bytes);
            let _ = decode::<Vec<String>>(&bytes);
            let _ = decode_from::<Mixed>(&mut &bytes[..], len);
            let _ = decode_from::<Vec<u8>>(&mut &bytes[..], len);
            let _ = decode_from::<String>(&mut &bytes[..], len);
        }

        /// A valid encoding with a huge length spliced in, cut short or with a bit flipped.
        #[test]
        fn mutated_values_never_panic(
            value in mixed(),
            at in any::<usize>(),
            huge in prop::sample::select(vec![u64::MAX, 1 << 60, 1 << 36, 1 << 28]),
        ) {
            let bytes = encode(&value).unwrap();
            let i = at % bytes.len();
            let mut long = bytes.clone();
            let mut claim = vec![253u8];
            claim.extend_from_slice(&huge.to_le_bytes());
            long.splice(i..i, claim);
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << (at % 8);
            for wire in [long, flipped, bytes[..i].to_vec()] {
                let _ = decode::<Mixed>(&wire);
                let _ = decode_from::<Mixed>(&mut &wire[..], wire.len() as u64);
                let _ = decode_from::<String>(&mut &wire[..], wire.len() as u64);
                let _ = decode_from::<Vec<u8>>(&mut &wire[..], wire.len() as u64);
            }
        }
    }
}
