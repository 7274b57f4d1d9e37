//! The reply dispatcher: reads the handler's reply stream and hands each reply to the attempt
//! waiting for it.

use std::sync::{Arc, PoisonError};

use redis::aio::ConnectionManager;

use super::shared::Shared;
use crate::connect::Backoff;
use crate::entry::{RawEntry, Reply, ReplyKind, read_reply};
use graflow_core::HandlerFailure;

/// Reads this handler's reply stream and hands each reply to the attempt waiting for it.
pub(super) async fn dispatch(shared: Arc<Shared>, mut blocking: ConnectionManager) {
    let mut last = "0-0".to_owned();
    let mut backoff = Backoff::new();
    let mut conn = shared.conn.clone();
    loop {
        // Small batches: each reply may be up to `max_outcome` bytes.
        let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(32)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&shared.replies)
            .arg(&last)
            .query_async(&mut blocking)
            .await;
        let read = match read {
            Ok(read) => {
                backoff.reset();
                read
            }
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", url = %shared.url, error = %e, "cannot read the reply stream; retrying");
                backoff.wait().await;
                continue;
            }
        };
        let streams = match read_reply(read) {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", url = %shared.url, "unreadable reply to XREAD: {e}");
                backoff.wait().await;
                continue;
            }
        };
        let mut ids = Vec::new();
        for (_, entries) in streams {
            for entry in entries {
                last.clone_from(&entry.id);
                ids.push(entry.id.clone());
                deliver(&shared, entry);
            }
        }
        if !ids.is_empty() {
            let deleted: redis::RedisResult<()> = redis::cmd("XDEL")
                .arg(&shared.replies)
                .arg(&ids)
                .query_async(&mut conn)
                .await;
            if let Err(e) = deleted {
                tracing::debug!(target: "graflow::handlers", error = %e, "could not delete read replies (they expire with the stream)");
            }
        }
    }
}

fn deliver(shared: &Shared, entry: RawEntry) {
    let parsed = match &entry.fields {
        Ok(map) => Reply::parse(map, shared.options.max_outcome),
        Err(why) => Err((None, why.to_string())),
    };
    let (att, result) = match parsed {
        // A question: the attempt still runs, and keeps waiting for its outcome.
        Ok(Reply {
            att,
            kind: ReplyKind::Ask { key, request },
            ..
        }) => {
            if let Some(waiter) = shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&att)
            {
                let _ = waiter.asks.send((key, request));
            }
            return;
        }
        Ok(reply) => (reply.att.clone(), Ok(reply)),
        Err((Some(att), why)) => (
            att,
            Err((
                HandlerFailure::Transient,
                format!("the worker's reply is malformed: {why}"),
            )),
        ),
        Err((None, why)) => {
            shared
                .malformed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(target: "graflow::handlers", stream = %shared.replies, "skipped a malformed reply: {why}");
            return;
        }
    };
    let waiter = shared
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&att);
    match waiter {
        Some(waiter) => {
            let _ = waiter.tx.send(result);
        }
        None => {
            tracing::debug!(target: "graflow::handlers", attempt = %att, "ignored a reply for an attempt no longer waiting (a late or duplicate outcome)");
        }
    }
}
