//! The monitor: fails the attempts of a queue no live worker of this build served for the
//! no-worker timeout, those whose job vanished from Redis, and all of them when Redis stays
//! unreachable that long.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use graflow_core::backend as remote;

use super::shared::{Shared, fail_waiters};
use crate::connect::ensure_group;
use crate::scripts::{LIVE_WORKERS, LOST};
use graflow_core::HandlerFailure;

/// A worker counts as live when it renewed its presence within this time.
const WORKER_TTL: Duration = Duration::from_secs(5);

/// Once a second: fails the attempts of a queue no live worker served for the no-worker
/// timeout, and those whose job vanished from Redis without an outcome.
pub(super) async fn monitor(shared: Arc<Shared>) {
    let tick = (shared.options.no_worker_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut unserved_since: HashMap<String, Instant> = HashMap::new();
    let mut conn = shared.conn.clone();
    let mut known_groups: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        // Redis gone for good must not leave attempts waiting forever: after the same wait as
        // for a missing worker, every waiting attempt fails, naming the URL. (A restart within
        // it delivers the outcomes: with AOF nothing is lost.)
        let any_waiting = !shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if any_waiting {
            let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            match ping {
                Ok(_) => unreachable_since = None,
                Err(e) => {
                    let since = *unreachable_since.get_or_insert(now);
                    if now.duration_since(since) >= shared.options.no_worker_timeout {
                        fail_waiters(
                            &shared,
                            |_| true,
                            HandlerFailure::Unavailable,
                            &format!(
                                "lost contact with Redis at {} for {:?} ({e}); check that it runs, then run the workflow again",
                                shared.url, shared.options.no_worker_timeout
                            ),
                        );
                        unreachable_since = None;
                    }
                    continue;
                }
            }
        }
        let (queues, suspects) = {
            let mut waiting = shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut queues: Vec<String> = waiting.values().map(|w| w.queue.clone()).collect();
            queues.sort_unstable();
            queues.dedup();
            let mut suspects = Vec::new();
            for (att, waiter) in waiting.iter_mut() {
                if suspects.len() == 256 {
                    break;
                }
                if let Some(entry) = &waiter.entry
                    && now.duration_since(waiter.since) > Duration::from_secs(3)
                    && now.duration_since(waiter.checked) > Duration::from_secs(5)
                {
                    waiter.checked = now;
                    suspects.push((att.clone(), waiter.queue.clone(), entry.clone()));
                }
            }
            (queues, suspects)
        };
        unserved_since.retain(|q, _| queues.contains(q));
        for queue in queues {
            // A queue's group exists before any job waits on it long: XPENDING-based leases
            // need it, and a worker that starts later reads from the stream's beginning.
            if !known_groups.contains(&queue)
                && ensure_group(&mut conn, &shared.url, &shared.keys.queue(&queue))
                    .await
                    .is_ok()
            {
                known_groups.insert(queue.clone());
            }
            let live: redis::RedisResult<Vec<String>> = LIVE_WORKERS
                .key(shared.keys.workers(&queue))
                .key(shared.keys.builds(&queue))
                .arg(WORKER_TTL.as_millis() as u64)
                .arg(remote::build_id())
                .invoke_async(&mut conn)
                .await;
            match live {
                Ok(live) => {
                    let count = |i: usize| live.get(i).and_then(|n| n.parse::<u64>().ok());
                    if count(1).unwrap_or(0) > 0 {
                        unserved_since.remove(&queue);
                        continue;
                    }
                    let since = *unserved_since.entry(queue.clone()).or_insert(now);
                    if now.duration_since(since) >= shared.options.no_worker_timeout {
                        fail_queue(&shared, &queue, live.get(2..).unwrap_or_default());
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "graflow::handlers", error = %e, "cannot count live workers");
                }
            }
        }
        for (att, queue, entry) in suspects {
            let lost: redis::RedisResult<u64> = LOST
                .key(shared.keys.queue(&queue))
                .key(shared.keys.done(&att))
                .arg(&entry)
                .invoke_async(&mut conn)
                .await;
            if let Ok(1) = lost {
                let waiter = shared
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&att);
                if let Some(waiter) = waiter {
                    let _ = waiter.tx.send(Err((HandlerFailure::RunnerLost, format!(
                        "its job {entry} vanished from `{}` at {} without an outcome (was Redis restarted without persistence, or the stream deleted?); the attempt may be retried",
                        shared.keys.queue(&queue),
                        shared.url
                    ))));
                }
            }
        }
    }
}

/// Fails the attempts waiting on `queue`, which no live worker of this build served for the
/// no-worker timeout; `others`: the builds of the live workers there.
fn fail_queue(shared: &Shared, queue: &str, others: &[String]) {
    let start = format!(
        "`<your program> --graflow-worker {} --graflow-worker-queue {queue}`",
        shared.url
    );
    let message = if others.is_empty() {
        format!(
            "no live worker has served queue `{queue}` at {} for {:?}; start one: {start}",
            shared.url, shared.options.no_worker_timeout
        )
    } else {
        format!(
            "no live worker of this build has served queue `{queue}` at {} for {:?}: the job needs build {}, and the live workers there are of build {} (another build of this program cannot run this build's tasks); start a worker of this build, this same binary: {start}",
            shared.url,
            shared.options.no_worker_timeout,
            remote::build_id(),
            others.join(", ")
        )
    };
    fail_waiters(
        shared,
        |w| w.queue == queue,
        HandlerFailure::Unavailable,
        &message,
    );
}
