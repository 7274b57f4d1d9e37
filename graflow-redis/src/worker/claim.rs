//! Takeover: the jobs of workers whose lease ran out (and those handed back by workers of
//! another build), claimed by the [`CLAIM`] script; and the removal of long-gone consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use graflow_core::backend::build_id;
use redis::aio::ConnectionManager;

use super::attempt::attempt;
use super::read::adopt_unseen;
use super::state::State;
use crate::entry::claim_reply;
use crate::keys::GROUP;
use crate::scripts::{CLAIM, REMOVE_CONSUMER};

/// Takes over the jobs of workers whose lease ran out, and those handed back by workers of
/// another build, while this one has free slots: only jobs of its own build ([`CLAIM`]).
/// Scans each queue's pending list with a cursor, from the start again once it reaches the end.
/// Now and then, also removes from the group the consumers of workers long gone.
pub(super) async fn reclaim_loop(state: Arc<State>) {
    let tick = (state.options.lease / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
    let gone_after =
        (state.options.lease * 4).clamp(Duration::from_secs(10), Duration::from_secs(600));
    let mut conn = state.conn.clone();
    let mut cursors: HashMap<String, String> = HashMap::new();
    let mut swept = Instant::now();
    let mut unsure = false;
    loop {
        tokio::time::sleep(tick).await;
        if state.is_stopping() {
            return;
        }
        if swept.elapsed() >= gone_after / 2 {
            swept = Instant::now();
            for queue in &state.options.queues {
                remove_gone_consumers(&state, &mut conn, queue, gone_after).await;
            }
        }
        for queue in &state.options.queues {
            let free = state.permits.available_permits();
            if free == 0 {
                break;
            }
            let stream = state.keys.queue(queue);
            let cursor = cursors
                .get(queue)
                .cloned()
                .unwrap_or_else(|| "-".to_owned());
            let count = free.min(64);
            let claimed: redis::RedisResult<redis::Value> = CLAIM
                .key(&stream)
                .arg(GROUP)
                .arg(&state.name)
                .arg(state.options.lease.as_millis() as u64)
                .arg(count)
                .arg(build_id())
                .arg(&cursor)
                .arg(count * 10)
                .invoke_async(&mut conn)
                .await;
            let (next, entries) = match claimed.map_err(|e| e.to_string()).and_then(claim_reply) {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::debug!(target: "graflow::handlers", worker = %state.name, error = %e, "cannot reclaim jobs");
                    cursors.remove(queue);
                    unsure = true;
                    continue;
                }
            };
            if std::mem::take(&mut unsure) {
                adopt_unseen(&state).await;
            }
            cursors.insert(queue.clone(), next);
            for (entry, delivery) in entries {
                // A job this worker still runs (its own lease lapsed while Redis was away):
                // the attempt that holds it goes on; the claim only renewed the lease.
                let mine = state.holds(queue, &entry.id);
                if mine {
                    continue;
                }
                if delivery <= 1 {
                    tracing::debug!(target: "graflow::handlers", worker = %state.name, queue, entry = %entry.id, "took a job a worker of another build handed back");
                } else {
                    state.counts.reclaimed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "graflow::handlers", worker = %state.name, queue, entry = %entry.id, delivery, "took over a job whose worker's lease ran out");
                }
                tokio::spawn(attempt(state.clone(), queue.clone(), entry, delivery, None));
            }
        }
    }
}

/// Removes from a queue's group the consumers idle for `gone_after` that hold no job: workers
/// killed long ago (one that exits cleanly removes its own). A live worker removed this way
/// loses nothing: Redis makes its consumer again when it next gets a job.
async fn remove_gone_consumers(
    state: &State,
    conn: &mut ConnectionManager,
    queue: &str,
    gone_after: Duration,
) {
    let stream = state.keys.queue(queue);
    let info: redis::RedisResult<redis::streams::StreamInfoConsumersReply> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(GROUP)
        .query_async(conn)
        .await;
    let Ok(info) = info else { return };
    for consumer in info.consumers {
        if consumer.name == state.name
            || consumer.pending > 0
            || (consumer.idle as u128) < gone_after.as_millis()
        {
            continue;
        }
        let removed: redis::RedisResult<u64> = REMOVE_CONSUMER
            .key(&stream)
            .arg(GROUP)
            .arg(&consumer.name)
            .invoke_async(conn)
            .await;
        if let Ok(1) = removed {
            tracing::info!(target: "graflow::handlers", worker = %state.name, queue, consumer = %consumer.name, idle_ms = consumer.idle, "removed the consumer of a worker gone from the group (idle, no job held)");
        }
    }
}
