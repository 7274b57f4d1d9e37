//! The processes a task started, found through `/proc`, so that none outlives the task.
//!
//! A process group is not enough: a task's subprocess may call `setsid` (or `setpgid`) and
//! leave it. The runner therefore makes itself a *child subreaper*: a descendant whose parent
//! exits is re-parented to the runner instead of to init, so every process the task started
//! stays in the runner's tree, whatever group or session it moved to. Killing that tree is what
//! the runner does when the task ends or its handler goes away, and what the "process" handler
//! does (before killing the runner's group) when a task times out or is cancelled.
//!
//! Orphaned descendants that exit stay zombies until the runner exits (reaping them would take
//! the exit statuses of the task's own children from it).

/// The environment variable that marks every process a task starts (set by the handler on the
/// runner's command, inherited by whatever the task starts): `<handler pid>:<n>`. It finds the
/// task's processes after the runner itself died (a crash): they were re-parented away from
/// its tree then. Set at the runner's start, so no process changes its own environment.
pub(crate) const TREE_ENV: &str = "GRAFLOW_TASK_TREE";

/// A new marker for a runner this process starts: `(variable value, NAME=value)`.
pub(crate) fn new_tree_marker() -> (String, String) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let value = format!(
        "{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let marker = format!("{TREE_ENV}={value}");
    (value, marker)
}

/// SIGKILLs every process of this user whose environment holds `marker` (one scan of `/proc`;
/// for after a runner died, not for every task).
pub(crate) fn kill_marked(marker: &str) {
    for pid in all_pids() {
        // Other users' environments are unreadable, and not ours to judge anyway.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == marker.as_bytes())
        {
            // SAFETY: a signal to a process that carries this task's marker.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Every process id in `/proc`.
fn all_pids() -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Makes this process the subreaper of its descendants (Linux); false where that fails.
pub(crate) fn become_subreaper() -> bool {
    // SAFETY: a plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// The live descendants of `root` (children, their children, ...): through each process's
/// `/proc/<pid>/task/<tid>/children` (which costs per descendant, not per process on the
/// machine), else from one scan of `/proc`.
pub(crate) fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    match descendants_by_children(root) {
        Some(found) => found,
        None => descendants_by_scan(root),
    }
}

/// The direct children of `pid`; `None` where the kernel has no `children` files.
fn children(pid: libc::pid_t) -> Option<Vec<libc::pid_t>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut found = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        any = true;
        found.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<libc::pid_t>().ok()),
        );
    }
    (any || !std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(found)
}

fn descendants_by_children(root: libc::pid_t) -> Option<Vec<libc::pid_t>> {
    let mut found = children(root)?;
    let mut at = 0;
    while at < found.len() && found.len() < 1 << 16 {
        let pid = found[at];
        found.extend(children(pid).unwrap_or_default());
        at += 1;
    }
    // A zombie has ended already (the children lists include them).
    found.retain(|&pid| state(pid).is_some_and(|s| s != "Z"));
    Some(found)
}

/// The state letter of `pid` (`None` when it is gone).
fn state(pid: libc::pid_t) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next().map(str::to_owned)
}

fn descendants_by_scan(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut parent_of: Vec<(libc::pid_t, libc::pid_t)> = Vec::new();
    for pid in all_pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<libc::pid_t>().ok());
        if let (Some(state), Some(ppid)) = (state, ppid)
            && state != "Z"
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(pid, ppid)| ppid == parent && pid != root)
                .map(|&(pid, _)| pid),
        );
        at += 1;
    }
    found.remove(0);
    found
}

/// Reaps every child of this process that has ended (between a warm runner's tasks, when no
/// task waits for its children's exit statuses): killed or orphaned processes would otherwise
/// stay zombies and count against a pids limit.
pub(crate) fn reap_children() {
    loop {
        // SAFETY: a non-blocking wait for any child of this process.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// Kills this process's descendants, if it has any: one `waitid` when it has no child (nor,
/// as a subreaper, any descendant), the tree's walk otherwise.
pub(crate) fn kill_own_descendants() {
    // SAFETY: an all-zero siginfo is valid; WNOWAIT leaves any exited child unreaped.
    let none = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
    };
    if !none {
        kill_descendants(std::process::id() as libc::pid_t);
    }
}

/// SIGKILLs every descendant of `root`, scanning again until none is left (a process may fork
/// while the tree is read; with `root` a subreaper its orphans stay in the tree). A signalled
/// process dies asynchronously: on a loaded machine it can outlive a few quick scans, so after
/// those the scans pause 1 ms each, until the tree is empty or 2 s have passed.
pub(crate) fn kill_descendants(root: libc::pid_t) {
    const QUICK: u32 = 16;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for round in 0.. {
        let found = descendants(root);
        if found.is_empty() || (round >= QUICK && std::time::Instant::now() >= deadline) {
            return;
        }
        for pid in found {
            // SAFETY: a signal to a process just seen in this tree.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if round >= QUICK {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_of_reading_the_tree_agree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .spawn()
            .unwrap();
        let root = child.id() as libc::pid_t;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while descendants_by_scan(root).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if let Some(mut by_children) = descendants_by_children(root) {
            let mut by_scan = descendants_by_scan(root);
            by_children.sort_unstable();
            by_scan.sort_unstable();
            assert_eq!(by_children, by_scan);
        }
        kill_descendants(root);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_childs_children_are_found_and_killed() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .unwrap();
        let root = child.id() as libc::pid_t;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while descendants(root).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchildren never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        kill_descendants(root);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !descendants(root).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchildren survived"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
