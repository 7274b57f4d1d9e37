//! Jobs of another build, handed back untouched for a worker of their build.

use std::sync::atomic::Ordering;

use graflow_core::backend::build_id;

use super::state::State;
use crate::keys::GROUP;

/// How idle a handed-back job is made: any worker's lease is shorter, so a worker of its build
/// takes it at its next claim.
const HANDED_BACK_IDLE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Gives a job of another build back, untouched: it stays pending (under this worker's name,
/// unrenewed) with its delivery count as it was before this worker read it and an idle time
/// past any lease, so that a worker of its build takes it (see [`CLAIM`], which never takes a
/// job of another build).
pub(super) async fn hand_back(state: &State, queue: &str, id: &str, delivery: u64, build: &str) {
    let mut conn = state.conn.clone();
    let handed: redis::RedisResult<redis::Value> = redis::cmd("XCLAIM")
        .arg(state.keys.queue(queue))
        .arg(GROUP)
        .arg(&state.name)
        .arg(0)
        .arg(id)
        .arg("IDLE")
        .arg(HANDED_BACK_IDLE_MS)
        .arg("RETRYCOUNT")
        .arg(delivery.saturating_sub(1))
        .arg("JUSTID")
        .query_async(&mut conn)
        .await;
    match handed {
        Ok(_) => {
            state.counts.handed_back.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, job_build = build, build_id = build_id(), "handed back a job of another build, for a worker of its build");
        }
        Err(e) => {
            tracing::warn!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, error = %e, "cannot hand back a job of another build; a worker of its build takes it after the lease");
        }
    }
}
