//! Container cleanup: every container is labelled with its run, task and owning process, and
//! removed however its task ends. Removal that must happen outside the task's future (the
//! future was dropped: timeout, cancellation, Ctrl-C handled by dropping the run) runs on a
//! thread of its own with its own deadline, and the process waits for it at exit.
//!
//! When a handler first connects it sweeps leftovers, and only those that are safe to remove:
//! a container of the same user (uid and user namespace; root too is held to its own) that
//! either has finished (exited or dead for over [`GRACE`], or created and never started for
//! over [`GRACE`]) or whose owner is *proven* dead. Proven dead means: the owner ran under this
//! boot in this PID namespace and its pid is gone, a zombie, or another process (another start
//! time). Another boot id proves nothing (hostnames are not unique across machines sharing a
//! daemon); a rebooted owner's container has exited and is swept as finished.
//! An owner in another PID namespace, on another machine, or with a label that does not parse
//! is not ours to judge: its running containers are left alone. `graflow.keep` is never swept.

use std::collections::HashMap;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};

// The client with its address and the bound on control calls, under the name the code below
// has always used for the client.
use crate::daemon::Daemon as Docker;

/// Label keys.
pub const MANAGED: &str = "graflow.managed";
/// The run id.
pub const RUN: &str = "graflow.run";
/// The task id.
pub const TASK: &str = "graflow.task";
/// The process that owns the container, as `;`-separated `key=value` fields: `uid`, `userns`
/// (user namespace inode), `host`, `boot` (boot id), `pidns` and `timens` (namespace inodes),
/// `pid` and `start` (field 22 of `/proc/<pid>/stat`).
pub const OWNER: &str = "graflow.owner";
/// Set when `auto_remove = false` asked to keep the container.
pub const KEEP: &str = "graflow.keep";

/// How long a detached removal may take.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(20);

/// How long a container must have been finished (or created and never started) before a
/// sweeper that cannot prove its owner dead removes it: its owner may still be reading its
/// exit status, or starting it.
pub const GRACE: Duration = Duration::from_secs(60);

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
struct Owner {
    uid: Option<u32>,
    userns: Option<u64>,
    host: Option<String>,
    boot: Option<String>,
    pidns: Option<u64>,
    timens: Option<u64>,
    pid: Option<u32>,
    start: Option<u64>,
}

impl Owner {
    fn this_process() -> Self {
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
    fn parse(label: &str) -> Self {
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
    fn same_user(&self, me: &Owner) -> bool {
        self.uid.is_some() && self.uid == me.uid && self.userns == me.userns
    }
}

/// What this process can see of a pid of its own PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
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
fn look_up(pid: u32) -> Seen {
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
fn proven_dead(owner: &Owner, me: &Owner, look_up: impl Fn(u32) -> Seen) -> bool {
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
pub fn owner() -> String {
    Owner::this_process().label()
}

/// Whether the process an owner label names is proven dead.
#[cfg(test)]
fn owner_is_dead(owner: &str) -> bool {
    proven_dead(&Owner::parse(owner), &Owner::this_process(), look_up)
}

/// Waits at process exit for detached removals (graflow's clean-up registry counts them).
extern "C" fn wait_for_removals() {
    graflow_core::interrupt::wait_for_cleanups(REMOVAL_DEADLINE);
}

/// Force-removes `container` on a thread of its own, outside any (possibly cancelled) future.
pub fn remove_detached(docker: Docker, container: String) {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        unsafe { libc::atexit(wait_for_removals) };
    });
    let pending = graflow_core::interrupt::cleanup_started();
    let name = container.clone();
    let spawned = std::thread::Builder::new()
        .name("graflow-docker-cleanup".to_owned())
        .spawn(move || {
            let removal = async {
                tokio::time::timeout(REMOVAL_DEADLINE, remove(&docker, &container)).await
            };
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => match runtime.block_on(removal) {
                    Ok(Ok(())) => tracing::debug!(target: "graflow::docker", %container, "container removed"),
                    Ok(Err(e)) => tracing::warn!(target: "graflow::docker", %container, "could not remove the container: {e}; `docker rm -f {container}` removes it"),
                    Err(_) => tracing::warn!(target: "graflow::docker", %container, "removing the container took over {REMOVAL_DEADLINE:?}; `docker rm -f {container}` removes it"),
                },
                Err(e) => tracing::warn!(target: "graflow::docker", %container, "no runtime to remove the container: {e}"),
            }
            drop(pending);
        });
    if spawned.is_err() {
        tracing::warn!(target: "graflow::docker", container = %name, "could not start a cleanup thread; the next engine start sweeps the container");
    }
}

/// Force-removes a container (killing it if it runs); a container already gone is fine.
pub async fn remove(docker: &Docker, container: &str) -> Result<(), String> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    let removal = docker.remove_container(container, Some(options));
    match docker
        .call(|| format!("removing container {container}"), removal)
        .await?
    {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        // "removal already in progress": the daemon's own (an auto-removed container killed by
        // this request) or another caller's. Done only once it is gone: a program that exits
        // right after must not leave it listed.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => {
            docker
                .call(
                    || format!("waiting for the removal of container {container}"),
                    gone(docker, container),
                )
                .await
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Returns once inspecting `container` says it does not exist (any other answer: asks again).
async fn gone(docker: &Docker, container: &str) {
    loop {
        let inspect = docker.inspect_container(container, None::<InspectContainerOptions>);
        if let Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) = inspect.await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes the container when dropped, unless disarmed (the task removed it itself).
pub struct Guard {
    docker: Docker,
    container: Option<String>,
}

impl Guard {
    /// Guards `container`.
    pub fn new(docker: Docker, container: String) -> Self {
        Guard {
            docker,
            container: Some(container),
        }
    }

    /// The container was removed (or is to be kept): nothing left to do.
    pub fn disarm(&mut self) {
        self.container = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            tracing::debug!(target: "graflow::docker", %container, "task ended early; removing its container");
            remove_detached(self.docker.clone(), container);
        }
    }
}

/// Seconds since the epoch of a Docker timestamp (RFC 3339, `2024-05-01T12:00:00.123456789Z`);
/// `None` for anything else, and for Docker's zero time (`0001-01-01T00:00:00Z`).
fn unix_seconds(time: &str) -> Option<i64> {
    let b = time.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if year < 1970 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut rest = &time[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let r = rest.as_bytes();
            if r.len() != 6 || r[3] != b':' {
                return None;
            }
            let hh: i64 = rest[1..3].parse().ok()?;
            let mm: i64 = rest[4..6].parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Why a container of `me`'s user may be removed, if it may: `owner` is its owner label,
/// `finished` whether it is done running (exited, dead, or created and never started), `since`
/// when it finished (or was created), in seconds since the epoch, and `now` the time.
fn removable(
    owner: &Owner,
    finished: bool,
    since: Option<i64>,
    now: i64,
    me: &Owner,
    look_up: impl Fn(u32) -> Seen,
) -> Option<&'static str> {
    if !owner.same_user(me) {
        return None;
    }
    if proven_dead(owner, me, look_up) {
        return Some("its owner is dead");
    }
    let grace = GRACE.as_secs() as i64;
    (finished && since.is_some_and(|t| now.saturating_sub(t) > grace))
        .then_some("it finished and its owner did not remove it")
}

/// Removes leftover containers (see the module documentation for which).
pub async fn sweep(docker: &Docker) -> Result<usize, String> {
    let me = Owner::this_process();
    let filters = HashMap::from([("label".to_owned(), vec![format!("{MANAGED}=true")])]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let mut removed = 0;
    let listing = docker.list_containers(Some(options));
    let listed = docker
        .call(|| "listing containers for the sweep".to_owned(), listing)
        .await?
        .map_err(|e| e.to_string())?;
    for container in listed {
        let labels = container.labels.unwrap_or_default();
        if labels.contains_key(KEEP) {
            continue;
        }
        let Some(id) = container.id else { continue };
        let owner = Owner::parse(labels.get(OWNER).map_or("", String::as_str));
        if !owner.same_user(&me) {
            continue;
        }
        let (finished, since) = match container.state {
            Some(ContainerSummaryStateEnum::CREATED) => (true, container.created),
            Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => {
                let inspect = docker.inspect_container(&id, None::<InspectContainerOptions>);
                let finished_at = docker
                    .call(
                        || format!("inspecting container {id} for the sweep"),
                        inspect,
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|c| c.state)
                    .and_then(|s| s.finished_at)
                    .and_then(|t| unix_seconds(&t));
                (true, finished_at)
            }
            _ => (false, None),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let Some(reason) = removable(&owner, finished, since, now, &me, look_up) else {
            continue;
        };
        if let Err(e) = remove(docker, &id).await {
            tracing::warn!(target: "graflow::docker", container = %id, "could not remove a leftover container ({reason}): {e}");
            continue;
        }
        removed += 1;
        tracing::info!(
            target: "graflow::docker",
            container = %id,
            run = labels.get(RUN).map(String::as_str).unwrap_or(""),
            task = labels.get(TASK).map(String::as_str).unwrap_or(""),
            "removed a leftover container: {reason}"
        );
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent force-removals of one auto-removed, running container: some get 409
    /// ("removal already in progress"); every one returns only once the container is gone.
    /// Needs a daemon with python:3.11-slim (`graflow-docker/scripts/setup.sh`); skipped
    /// without one unless `GRAFLOW_REQUIRE_DOCKER=1`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_removal_in_progress_is_waited_for() {
        let address = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let docker = match Docker::connect(&address, Duration::from_secs(10), "test").await {
            Ok(docker) => docker,
            Err(e) => {
                assert!(
                    std::env::var_os("GRAFLOW_REQUIRE_DOCKER").is_none_or(|v| v != "1"),
                    "GRAFLOW_REQUIRE_DOCKER=1 but {e}"
                );
                eprintln!("skipped: {e}");
                return;
            }
        };
        for round in 0..3 {
            let name = format!("graflow-removal-race-{}-{round}", std::process::id());
            let body = bollard::models::ContainerCreateBody {
                image: Some("python:3.11-slim".to_owned()),
                cmd: Some(vec!["sleep".to_owned(), "60".to_owned()]),
                host_config: Some(bollard::models::HostConfig {
                    auto_remove: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
                .name(&name)
                .build();
            docker
                .create_container(Some(options), body)
                .await
                .expect("create the container");
            docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .expect("start the container");
            let removals: Vec<_> = (0..4)
                .map(|_| {
                    let (docker, name) = (docker.clone(), name.clone());
                    tokio::spawn(async move {
                        remove(&docker, &name).await.expect("removed");
                        docker
                            .inspect_container(&name, None::<InspectContainerOptions>)
                            .await
                    })
                })
                .collect();
            for removal in removals {
                let after = removal.await.expect("the removal task ran");
                assert!(
                    matches!(
                        after,
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 404,
                            ..
                        })
                    ),
                    "remove() returned while the container still existed: {after:?}"
                );
            }
        }
    }

    fn me() -> Owner {
        Owner::this_process()
    }

    /// An owner like `me` but process `pid` started at `start`.
    fn other(pid: u32, start: u64) -> Owner {
        Owner {
            pid: Some(pid),
            start: Some(start),
            ..me()
        }
    }

    /// No process has this pid (it is above the kernel's maximum).
    const NO_SUCH_PID: u32 = 999_999_999;

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

    fn me_started() -> u64 {
        me().start.expect("this process has a start time")
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
    fn another_user_is_never_swept_even_by_root() {
        let me = me();
        let uid = me.uid.unwrap();
        for owner in [
            Owner {
                uid: Some(uid.wrapping_add(1)),
                ..other(NO_SUCH_PID, 1)
            },
            Owner {
                userns: Some(1),
                ..other(NO_SUCH_PID, 1)
            },
            Owner {
                uid: None,
                ..other(NO_SUCH_PID, 1)
            },
        ] {
            assert!(!proven_dead(&owner, &me, |_| Seen::Gone), "{owner:?}");
            assert_eq!(
                removable(&owner, true, Some(0), 1_000_000, &me, |_| Seen::Gone),
                None
            );
        }
        let root = Owner {
            uid: Some(0),
            ..me.clone()
        };
        let user = Owner {
            uid: Some(1000),
            ..other(NO_SUCH_PID, 1)
        };
        assert_eq!(
            removable(&user, true, Some(0), 1_000_000, &root, |_| Seen::Gone),
            None
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
    fn a_label_with_our_uid_but_garbage_elsewhere_is_swept_only_once_finished_long_enough() {
        let me = me();
        let owner = Owner {
            boot: None,
            pid: None,
            ..me.clone()
        };
        let now = 1_000_000;
        let grace = GRACE.as_secs() as i64;
        let gone = |_| Seen::Gone;
        assert_eq!(removable(&owner, false, None, now, &me, gone), None);
        assert_eq!(removable(&owner, true, None, now, &me, gone), None);
        assert_eq!(removable(&owner, true, Some(now - 5), now, &me, gone), None);
        assert!(removable(&owner, true, Some(now - grace - 1), now, &me, gone).is_some());
        assert_eq!(
            removable(&owner, false, Some(now - grace - 1), now, &me, gone),
            None,
            "running"
        );
        let dead = other(NO_SUCH_PID, 1);
        assert_eq!(
            removable(&dead, false, None, now, &me, look_up),
            Some("its owner is dead")
        );
    }

    #[test]
    fn docker_timestamps_parse() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_seconds("2024-02-29T12:34:56.123456789Z"),
            Some(1_709_210_096)
        );
        assert_eq!(
            unix_seconds("2024-02-29T14:34:56+02:00"),
            Some(1_709_210_096)
        );
        assert_eq!(
            unix_seconds("0001-01-01T00:00:00Z"),
            None,
            "Docker's zero time"
        );
        for bad in [
            "",
            "2024",
            "2024-02-29",
            "2024-02-29T12:34:56",
            "2024-13-01T00:00:00Z",
            "2024-02-29T12:34:56.5Zjunk",
            "２０２４-02-29T12:34:56Z",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn our_pids_are_looked_up_in_our_namespace() {
        assert_eq!(look_up(NO_SUCH_PID), Seen::Gone);
        assert_eq!(look_up(std::process::id()), Seen::Started(me_started()));
    }
}
