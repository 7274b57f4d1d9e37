//! Build ids: a runner must be the same build of the program as the engine that sends it work.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The `NT_GNU_BUILD_ID` note of a 64-bit little-endian ELF file (the linker's hash of the whole
/// binary), as lowercase hex; `None` for other files or when there is none.
pub fn gnu_build_id(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
    let phoff = u64_at(&header, 32);
    let phentsize = usize::from(u16_at(&header, 54));
    let phnum = usize::from(u16_at(&header, 56));
    if phentsize < 56 || phnum > 512 {
        return None;
    }
    file.seek(SeekFrom::Start(phoff)).ok()?;
    let mut table = vec![0u8; phentsize * phnum];
    file.read_exact(&mut table).ok()?;
    for entry in table.chunks_exact(phentsize) {
        const PT_NOTE: u32 = 4;
        if u32_at(entry, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(entry, 8), u64_at(entry, 32));
        if size > 1 << 16 {
            continue;
        }
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut notes = vec![0u8; size as usize];
        file.read_exact(&mut notes).ok()?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32_at(&notes, at) as usize;
            let descsz = u32_at(&notes, at + 4) as usize;
            let kind = u32_at(&notes, at + 8);
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if next > notes.len() {
                break;
            }
            const NT_GNU_BUILD_ID: u32 = 3;
            if kind == NT_GNU_BUILD_ID && &notes[name_at..name_at + namesz] == b"GNU\0" {
                return Some(
                    notes[desc_at..desc_at + descsz]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                );
            }
            at = next;
        }
    }
    None
}
