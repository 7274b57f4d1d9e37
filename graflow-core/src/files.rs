//! Replacing a file atomically: write a temporary file beside it, optionally sync it, rename it
//! over the target, optionally sync the directory. A reader sees the old file or the new one,
//! never half of one; temporary files a killed program left are removed by the next write.
//! Used by checkpoints and saved reports.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with what `write` writes. `durable`: the file and the rename are synced to
/// disk before this returns (they survive a power cut, not only the program's death). The
/// temporary file is removed when anything fails.
pub(crate) fn replace(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // Unique per write: two writers of one process may replace the same path.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = temporary(path, WRITES.fetch_add(1, Ordering::Relaxed));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        let mut out = BufWriter::new(&mut file);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            std::fs::File::open(directory(path))?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes the temporary files of `path` that programs killed in the middle of a write left
/// (their pid no longer runs). Best effort: a file it cannot read or remove stays.
pub(crate) fn sweep_temporaries(path: &Path) {
    let Ok(entries) = std::fs::read_dir(directory(path)) else {
        return;
    };
    let prefix = format!(".{}.", file_name(path));
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let gone = pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
        if gone && std::fs::remove_file(entry.path()).is_ok() {
            tracing::debug!(target: "graflow::engine", file = %entry.path().display(), "removed a temporary file a killed program left");
        }
    }
}

/// `.NAME.PID.N.tmp` beside `path`.
pub(crate) fn temporary(path: &Path, n: u64) -> PathBuf {
    path.with_file_name(format!(
        ".{}.{}.{n}.tmp",
        file_name(path),
        std::process::id()
    ))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned())
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// An exclusive lock on `path` for as long as a program holds it: an advisory `flock` on the
/// hidden file `.NAME.lock` beside `path`, which says who holds it (pid and host). The system
/// releases it when its holder exits, however it exits (SIGKILL included), so a lock a killed
/// program left is taken over by the next one with no stale state to clean. The lock file
/// stays (removing it would race with a program that opened it and waits); it is a few bytes.
#[derive(Debug)]
pub(crate) struct FileLock {
    /// Held open: closing it releases the lock.
    _file: std::fs::File,
}

impl FileLock {
    /// Takes the lock on `path`, or says who holds it (`Err(Ok(holder))`), or why it could not
    /// be taken (`Err(Err(io))`).
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, Result<String, std::io::Error>> {
        use std::io::{Read as _, Seek as _};
        use std::os::fd::AsRawFd as _;
        let lock = path.with_file_name(format!(".{}.lock", file_name(path)));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(Err)?;
        // SAFETY: flock on a descriptor this function owns; it touches no memory.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !taken {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Err(error));
            }
            let mut holder = String::new();
            let _ = std::io::Read::by_ref(&mut file)
                .take(256)
                .read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Ok(if holder.is_empty() {
                "another program (it has not said which yet)".to_owned()
            } else {
                // Another program's words, on one line.
                holder
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect()
            }));
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "this host".to_owned());
        let me = format!("pid {} on {host}", std::process::id());
        // Who holds it, for the next program that asks; the lock holds without it.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush());
        Ok(FileLock { _file: file })
    }
}
