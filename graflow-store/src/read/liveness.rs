//! Whether a run recorded as running still runs: its owner is provably gone when its process
//! is gone from this host, or when it has not written for [`LOST_AFTER`].

use std::time::{Duration, SystemTime};

use super::model::{RunStatus, time_of};
use crate::host::{alive, me};

/// A running run whose program has not written its heartbeat (every 10 s) for this long is
/// shown as `lost`, wherever it ran.
pub const LOST_AFTER: Duration = Duration::from_secs(60);

/// What a run's row says it is, judged: `running` becomes `lost` once its owner is gone.
pub(crate) fn judge(
    status: &str,
    (host, pid_ns): (&str, Option<&str>),
    pid: i64,
    process_start: Option<i64>,
    heartbeat_at: Option<i64>,
) -> RunStatus {
    let status = RunStatus::parse(status);
    if status != RunStatus::Running {
        return status;
    }
    // Its pid means something here only on this host and in this pid namespace.
    let here = host == me().host && pid_ns.is_some() && pid_ns == me().pid_ns.as_deref();
    if here && !alive(pid, process_start.and_then(|s| u64::try_from(s).ok())) {
        return RunStatus::Lost;
    }
    // A heartbeat from the future (the writer's clock ahead of this one) is a live one.
    let silent = match time_of(heartbeat_at) {
        None => true,
        Some(beat) => SystemTime::now()
            .duration_since(beat)
            .is_ok_and(|since| since > LOST_AFTER),
    };
    if silent {
        RunStatus::Lost
    } else {
        RunStatus::Running
    }
}
