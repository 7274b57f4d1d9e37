//! Dead letters: a job moved, with its fields and the reason, to `<prefix>:dead:<queue>` by the
//! [`DEAD_LETTER`] script, and its engine told why.

use std::sync::atomic::Ordering;

use super::state::State;
use crate::connect::{Backoff, retryable};
use crate::entry::{Job, Reply, ReplyKind};
use crate::keys::{GROUP, MARK_TTL_SECS};
use crate::scripts::DEAD_LETTER;

/// Moves `job` to the dead letters for `reason`, and tells its engine why (a dead reply).
pub(super) async fn bury(
    state: &State,
    queue: &str,
    id: &str,
    delivery: u64,
    reason: String,
    done: &str,
    job: &Job,
) {
    let reply = Reply {
        att: job.att.clone(),
        worker: state.name.clone(),
        delivery,
        kind: ReplyKind::Dead {
            reason: reason.clone(),
        },
        logs: String::new(),
    };
    dead_letter(
        state,
        queue,
        id,
        delivery,
        &reason,
        done,
        &job.reply,
        Some(&reply),
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn dead_letter(
    state: &State,
    queue: &str,
    id: &str,
    delivery: u64,
    reason: &str,
    done: &str,
    reply_key: &str,
    reply: Option<&Reply>,
) {
    let mut conn = state.conn.clone();
    let mut backoff = Backoff::new();
    let fields = reply.map(Reply::fields).unwrap_or_default();
    for _ in 0..20 {
        let mut call = DEAD_LETTER.key(state.keys.queue(queue));
        call.key(state.keys.dead(queue))
            .key(done)
            .key(reply_key)
            .arg(GROUP)
            .arg(id)
            .arg(&state.name)
            .arg(MARK_TTL_SECS)
            .arg(MARK_TTL_SECS)
            .arg(delivery)
            .arg(reason)
            .arg(state.options.dead_letter_cap);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_slice());
        }
        let result: redis::RedisResult<u64> = call.invoke_async(&mut conn).await;
        match result {
            Ok(_) => {
                state.counts.dead_lettered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if retryable(&e) => backoff.wait().await,
            Err(e) => {
                tracing::error!(target: "graflow::handlers", worker = %state.name, entry = %id, error = %e, "could not dead-letter a job");
                return;
            }
        }
    }
    tracing::error!(target: "graflow::handlers", worker = %state.name, entry = %id, "could not dead-letter a job: Redis did not answer; it stays pending and is taken over again after the lease");
}
