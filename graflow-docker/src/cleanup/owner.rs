//! Who owns a container: the identity of the process that made it (user, namespaces, host,
//! boot, pid and start time), written as its `graflow.owner` label and read back from any
//! label, and whether that owner is *proven* dead as seen from this process.

use std::collections::HashMap;

fn hostname() -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c == ';' || c == '=' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    (!host.is_empty()).then_some(host)
}

/// A boot id is a UUID: 36 characters of hex digits and dashes.
fn valid_boot_id(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim().to_ascii_lowercase();
    valid_boot_id(&id).then_some(id)
}

/// The inode of namespace `kind` of this process (`readlink /proc/self/ns/pid` is
/// `pid:[4026531836]`).
fn namespace(kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/ns/{kind}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Field 3 (state) and field 22 (start time, in clock ticks after boot, which tells a reused
/// pid apart) of `/proc/<pid>/stat`.
fn stat(pid: &str) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `/proc` shows this process's PID namespace (not the case in `unshare --pid` without
/// `--mount-proc`, or in a container given the host's `/proc`): only then does `/proc/<pid>`
/// name the process that has `pid` here.
fn proc_is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .is_ok_and(|link| link.as_os_str() == std::process::id().to_string().as_str())
}

/// Who owns a container: this process's identity when written, a label's when parsed. A field
/// that is missing or does not parse is `None`, and a `None` proves nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Owner {
    pub(super) uid: Option<u32>,
    pub(super) userns: Option<u64>,
    pub(super) host: Option<String>,
    pub(super) boot: Option<String>,
    pub(super) pidns: Option<u64>,
    pub(super) timens: Option<u64>,
    pub(super) pid: Option<u32>,
    pub(super) start: Option<u64>,
}

impl Owner {
    pub(super) fn this_process() -> Self {
        Owner {
            // SAFETY: geteuid has no preconditions and cannot fail.
            uid: Some(unsafe { libc::geteuid() }),
            userns: namespace("user"),
            host: hostname(),
            boot: boot_id(),
            pidns: namespace("pid"),
            timens: namespace("time"),
            pid: Some(std::process::id()),
            // `/proc/self` is this process whichever PID namespace `/proc` belongs to.
            start: stat("self").map(|(_, start)| start),
        }
    }

    fn label(&self) -> String {
        fn text<T: ToString>(value: &Option<T>) -> String {
            value.as_ref().map(T::to_string).unwrap_or_default()
        }
        format!(
            "uid={};userns={};host={};boot={};pidns={};timens={};pid={};start={}",
            text(&self.uid),
            text(&self.userns),
            text(&self.host),
            text(&self.boot),
            text(&self.pidns),
            text(&self.timens),
            text(&self.pid),
            text(&self.start),
        )
    }

    /// Parses a label, which is any string anyone could have written: unknown keys are
    /// ignored, a field that does not parse is `None`, and a label that names a key twice is
    /// all `None` (which value would be meant?).
    pub(super) fn parse(label: &str) -> Self {
        let mut fields = HashMap::new();
        for field in label.split(';') {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            if fields.insert(key, value).is_some() {
                return Owner::default();
            }
        }
        fn digits<T: std::str::FromStr>(value: Option<&&str>) -> Option<T> {
            let value = value?;
            // `parse` would also take a leading `+`.
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            value.parse().ok()
        }
        Owner {
            uid: digits(fields.get("uid")),
            userns: digits(fields.get("userns")),
            host: fields
                .get("host")
                .filter(|h| !h.is_empty())
                .map(|h| (*h).to_owned()),
            boot: fields
                .get("boot")
                .filter(|b| valid_boot_id(b))
                .map(|b| b.to_ascii_lowercase()),
            pidns: digits(fields.get("pidns")),
            timens: digits(fields.get("timens")),
            // Never 0 or negative: `kill` would signal a process group or everything.
            pid: digits(fields.get("pid"))
                .filter(|&pid: &u32| pid > 0 && libc::pid_t::try_from(pid).is_ok()),
            start: digits(fields.get("start")),
        }
    }

    /// Whether `self` belongs to the user `me` is: same uid in the same user namespace.
    pub(super) fn same_user(&self, me: &Owner) -> bool {
        self.uid.is_some() && self.uid == me.uid && self.userns == me.userns
    }
}

/// What this process can see of a pid of its own PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// No such process, or a zombie.
    Gone,
    /// A process that started at this time.
    Started(u64),
    /// A process, start time unknown.
    There,
}

/// Looks `pid` up in this process's PID namespace: `kill(pid, 0)` asks the kernel (no `/proc`
/// mount or `hidepid` can hide a process from it), `/proc/<pid>/stat` gives the start time
/// when `/proc` is this namespace's.
pub(super) fn look_up(pid: u32) -> Seen {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Seen::There;
    };
    if raw <= 0 {
        return Seen::There;
    }
    // SAFETY: signal 0 is never delivered; `raw > 0` names one process, never a group.
    let gone = unsafe { libc::kill(raw, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    if gone {
        return Seen::Gone;
    }
    if !proc_is_ours() {
        return Seen::There;
    }
    match stat(&pid.to_string()) {
        Some(('Z' | 'X', _)) => Seen::Gone,
        Some((_, start)) => Seen::Started(start),
        None => Seen::There,
    }
}

/// Whether `owner` is proven dead, as seen by `me` looking pids up with `look_up`. Anything
/// unknown (a field missing on either side, another PID namespace, another machine) is not
/// proof.
pub(super) fn proven_dead(owner: &Owner, me: &Owner, look_up: impl Fn(u32) -> Seen) -> bool {
    if !owner.same_user(me) {
        return false;
    }
    let (Some(theirs), Some(ours)) = (&owner.boot, &me.boot) else {
        return false;
    };
    if theirs != ours {
        // Another boot: this host rebooted, or another machine (hostnames are not unique:
        // cloned images, "localhost") shares the daemon. Not proof; a container of a rebooted
        // owner has exited and goes by the finished rule.
        return false;
    }
    if owner.pidns.is_none() || owner.pidns != me.pidns {
        return false;
    }
    let Some(pid) = owner.pid else {
        return false;
    };
    match look_up(pid) {
        Seen::Gone => true,
        // Start times are read through the time namespace's boot clock.
        Seen::Started(now) => owner.start.is_some_and(|s| s != now) && owner.timens == me.timens,
        Seen::There => false,
    }
}

/// This process as an owner label value.
pub(crate) fn owner() -> String {
    Owner::this_process().label()
}

/// Whether the process an owner label names is proven dead.
#[cfg(test)]
fn owner_is_dead(owner: &str) -> bool {
    proven_dead(&Owner::parse(owner), &Owner::this_process(), look_up)
}

/// Owners for the tests of this module and of the sweep.
#[cfg(test)]
pub(super) mod fixtures {
    use super::Owner;

    /// This process.
    pub(in crate::cleanup) fn me() -> Owner {
        Owner::this_process()
    }

    /// An owner like `me` but process `pid` started at `start`.
    pub(in crate::cleanup) fn other(pid: u32, start: u64) -> Owner {
        Owner {
            pid: Some(pid),
            start: Some(start),
            ..me()
        }
    }

    /// No process has this pid (it is above the kernel's maximum).
    pub(in crate::cleanup) const NO_SUCH_PID: u32 = 999_999_999;

    /// When this process started.
    pub(in crate::cleanup) fn me_started() -> u64 {
        me().start.expect("this process has a start time")
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{NO_SUCH_PID, me, me_started, other};
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_dead() {
        assert!(!owner_is_dead(&owner()));
        assert!(owner_is_dead(&other(NO_SUCH_PID, 1).label()));
        let me = std::process::id();
        let started = me_started();
        assert!(
            owner_is_dead(&other(me, started + 1).label()),
            "another start time is another process"
        );
        assert!(!owner_is_dead(&other(me, started).label()));
    }

    #[test]
    fn the_label_round_trips() {
        let me = me();
        assert!(me.uid.is_some() && me.boot.is_some() && me.pidns.is_some());
        assert_eq!(Owner::parse(&me.label()), me);
    }

    #[test]
    fn a_pid_reused_by_another_process_is_dead_and_one_we_cannot_date_is_not() {
        let me = me();
        let owner = other(4242, 100);
        assert!(proven_dead(&owner, &me, |_| Seen::Started(200)));
        assert!(!proven_dead(&owner, &me, |_| Seen::Started(100)));
        assert!(proven_dead(&owner, &me, |_| Seen::Gone));
        assert!(!proven_dead(&owner, &me, |_| Seen::There));
        let other_clock = Owner {
            timens: Some(1),
            ..owner.clone()
        };
        assert!(
            !proven_dead(&other_clock, &me, |_| Seen::Started(200)),
            "start times read through another time namespace differ"
        );
        assert!(proven_dead(&other_clock, &me, |_| Seen::Gone));
    }

    #[test]
    fn an_owner_in_another_pid_namespace_is_never_proven_dead() {
        let me = me();
        let owner = Owner {
            pidns: Some(1),
            ..other(NO_SUCH_PID, 1)
        };
        assert!(!proven_dead(&owner, &me, |_| Seen::Gone));
        let unknown = Owner {
            pidns: None,
            ..owner
        };
        assert!(!proven_dead(&unknown, &me, |_| Seen::Gone));
        assert!(
            !owner_is_dead(&unknown.label()),
            "an empty field proves nothing"
        );
    }

    #[test]
    fn another_boot_is_not_proof_whatever_the_hostname() {
        let me = me();
        let rebooted = Owner {
            boot: Some("00000000-0000-0000-0000-000000000000".to_owned()),
            pidns: Some(1),
            ..other(1, 1)
        };
        assert!(
            !proven_dead(&rebooted, &me, |_| Seen::Gone),
            "a machine of the same hostname may share the daemon"
        );
        let elsewhere = Owner {
            host: Some("another-machine".to_owned()),
            ..rebooted.clone()
        };
        assert!(!proven_dead(&elsewhere, &me, |_| Seen::Gone));
        let unknown_boot = Owner {
            boot: None,
            ..rebooted.clone()
        };
        assert!(!proven_dead(&unknown_boot, &me, |_| Seen::Gone));
        let me_without_boot = Owner { boot: None, ..me };
        assert!(
            !proven_dead(&rebooted, &me_without_boot, |_| Seen::Gone),
            "our boot id must be known too"
        );
    }
    #[test]
    fn hostile_labels_parse_to_nothing_that_proves_death() {
        let me = me();
        for label in [
            "",
            ";;;",
            "===",
            "garbage",
            "myhost:1:1",
            "uid=0;uid=0",
            "pid=-1",
            "pid=0",
            "pid=+5",
            "pid=99999999999999999999",
            "boot=../../etc/passwd",
            &format!("{};pid=1;pid=2", me.label()),
            &"x".repeat(100_000),
            "uid=\u{0}\u{202e};pid=\u{ff11}",
        ] {
            let owner = Owner::parse(label);
            assert!(!proven_dead(&owner, &me, |_| Seen::Gone), "{label:?}");
            assert!(!owner_is_dead(label), "{label:?}");
        }
        for pid in ["0", "-1", "+1", " 1", "2147483648", "1.0"] {
            assert_eq!(Owner::parse(&format!("pid={pid}")).pid, None, "{pid}");
        }
        assert_eq!(Owner::parse("uid=0;pidns=;start=x").uid, Some(0));
        let duplicated = Owner::parse(&format!("{};uid=0", me.label()));
        assert_eq!(duplicated, Owner::default());
    }

    #[test]
    fn our_pids_are_looked_up_in_our_namespace() {
        assert_eq!(look_up(NO_SUCH_PID), Seen::Gone);
        assert_eq!(look_up(std::process::id()), Seen::Started(me_started()));
    }
}
