//! Who records: this host, user, program, process and its start time; and whether a
//! recorded process is still alive (what tells a killed run from a running one).

use std::sync::OnceLock;

/// This process, as a run's row names it.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub host: String,
    pub user: String,
    pub program: String,
    pub pid: u32,
    /// When the process started (clock ticks since boot, `/proc/PID/stat` field 22), so that a
    /// reused pid is not taken for the run's process.
    pub started: Option<u64>,
    /// Its pid namespace (`pid:[4026531836]`): a pid means something only in the same one (a
    /// container on the host's network shares its host name, not its pids).
    pub pid_ns: Option<String>,
}

pub(crate) fn me() -> &'static Me {
    static ME: OnceLock<Me> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        Me {
            host: hostname(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| format!("uid {}", unsafe_free_uid())),
            program: std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "unknown".to_owned()),
            pid,
            started: process_start(pid),
            pid_ns: pid_namespace(),
        }
    })
}

fn unsafe_free_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// This process's pid namespace, as `/proc/self/ns/pid` names it.
pub(crate) fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Field 22 of `/proc/PID/stat` (after the command, which may contain spaces and parentheses).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `started` still runs on this host: `false` only
/// when it provably does not (no such pid, or a pid reused by a process started later).
pub(crate) fn alive(pid: i64, started: Option<u64>) -> bool {
    let Ok(pid) = u32::try_from(pid) else {
        return false;
    };
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid as i32, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match (started, process_start(pid)) {
        (Some(then), Some(now)) => then == now,
        _ => true,
    }
}
