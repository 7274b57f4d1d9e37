//! The sweep a handler makes when it first connects: the leftover containers of dead runs,
//! those it is safe to remove (see the `cleanup` module's documentation for which).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};

use super::owner::{Owner, Seen, look_up, proven_dead};
use super::removal::remove;
use crate::daemon::Daemon;
use crate::labels::{KEEP, MANAGED, OWNER, RUN, TASK};

/// How long a container must have been finished (or created and never started) before a
/// sweeper that cannot prove its owner dead removes it: its owner may still be reading its
/// exit status, or starting it.
const GRACE: Duration = Duration::from_secs(60);

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
pub(crate) async fn sweep(docker: &Daemon) -> Result<usize, String> {
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
    use super::super::owner::fixtures::{NO_SUCH_PID, me, other};
    use super::*;

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
}
