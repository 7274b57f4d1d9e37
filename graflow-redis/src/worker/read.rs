//! The consumer-group read loop: new jobs (XREADGROUP), as many as there are free slots, and
//! the jobs a read whose answer was lost gave this worker.

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::StreamPendingCountReply;

use super::attempt::attempt;
use super::state::State;
use crate::connect::{Backoff, ensure_group};
use crate::entry::{range_reply, read_reply};
use crate::keys::GROUP;

/// Reads new jobs, as many at a time as there are free slots.
pub(super) async fn read_loop(state: Arc<State>, mut blocking: ConnectionManager) {
    let streams: Vec<String> = state
        .options
        .queues
        .iter()
        .map(|q| state.keys.queue(q))
        .collect();
    let queue_of: HashMap<String, String> = streams
        .iter()
        .cloned()
        .zip(state.options.queues.iter().cloned())
        .collect();
    let mut backoff = Backoff::new();
    // A read failed (a response timeout, a dropped connection): Redis may have carried it out
    // all the same, giving this worker jobs whose answer never came.
    let mut unsure = false;
    loop {
        // Wait until fewer than twice the concurrency jobs are held, then ask for as many as
        // that leaves room for. Each job takes its held slot and then a run slot; one read
        // beyond the run slots waits, its lease renewed.
        let Ok(first) = state.held_slots.clone().acquire_owned().await else {
            return;
        };
        let mut held = vec![first];
        while held.len() < 256 {
            match state.held_slots.clone().try_acquire_owned() {
                Ok(slot) => held.push(slot),
                Err(_) => break,
            }
        }
        // COUNT applies to each stream: split it, so that the reply fits the slots.
        let count = (held.len() / streams.len()).max(1);
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(&state.name)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&streams);
        for _ in &streams {
            read.arg(">");
        }
        let reply: redis::RedisResult<redis::Value> = read.query_async(&mut blocking).await;
        let reply = match reply {
            Ok(reply) => {
                backoff.reset();
                if std::mem::take(&mut unsure) {
                    // This answer on the same connection comes after every earlier read's:
                    // whatever those gave this worker is pending under its name now.
                    adopt_unseen(&state).await;
                }
                reply
            }
            Err(e) => {
                unsure = true;
                if e.code() == Some("NOGROUP") {
                    // Redis lost the group (restarted without persistence): make it again.
                    let mut conn = state.conn.clone();
                    for stream in &streams {
                        let _ = ensure_group(&mut conn, &state.url, stream).await;
                    }
                } else {
                    tracing::warn!(target: "graflow::handlers", worker = %state.name, url = %state.url, error = %e, "cannot read jobs; retrying");
                }
                backoff.wait().await;
                continue;
            }
        };
        let streams_read = match read_reply(reply) {
            Ok(streams_read) => streams_read,
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", worker = %state.name, "unreadable reply to XREADGROUP: {e}");
                continue;
            }
        };
        for (key, entries) in streams_read {
            let Some(queue) = queue_of.get(&key) else {
                continue;
            };
            for entry in entries {
                let slot = held.pop();
                tokio::spawn(attempt(state.clone(), queue.clone(), entry, 1, slot));
            }
        }
    }
}

/// Runs the jobs pending under this worker's name that no attempt of it holds: a read (or a
/// claim) whose answer was lost to a response timeout, while Redis was frozen or slow, gave
/// them to this worker, which never saw them. Without this they would wait for the lease to
/// run out.
pub(super) async fn adopt_unseen(state: &Arc<State>) {
    let mut conn = state.conn.clone();
    for queue in &state.options.queues {
        let stream = state.keys.queue(queue);
        let pending: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1024)
            .arg(&state.name)
            .query_async(&mut conn)
            .await;
        let pending = match pending {
            Ok(pending) => pending,
            Err(e) => {
                tracing::debug!(target: "graflow::handlers", worker = %state.name, error = %e, "cannot list this worker's pending jobs");
                continue;
            }
        };
        for p in pending.ids {
            let held = state.holds(queue, &p.id);
            if held {
                continue;
            }
            let range: redis::RedisResult<redis::Value> = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&p.id)
                .arg(&p.id)
                .query_async(&mut conn)
                .await;
            let Ok(range) = range else { continue };
            let delivery = p.times_delivered as u64;
            let entries = range_reply(range);
            if entries.is_empty() {
                // Deleted meanwhile (its attempt was cancelled): nothing to run.
                let _: redis::RedisResult<()> = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&p.id)
                    .query_async(&mut conn)
                    .await;
            }
            for entry in entries {
                tracing::info!(target: "graflow::handlers", worker = %state.name, queue, entry = %entry.id, delivery, "took up a job given to this worker by a read whose answer was lost");
                tokio::spawn(attempt(state.clone(), queue.clone(), entry, delivery, None));
            }
        }
    }
}
