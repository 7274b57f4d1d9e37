//! Cancellation: an attempt the engine drops (timeout, cancelled run) is marked cancelled in
//! Redis, and its job deleted if no worker took it yet.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::shared::Shared;
use crate::keys::MARK_TTL_SECS;

/// Fails the attempt and takes its job back when the engine drops it (timeout, cancelled run):
/// marks it cancelled (a worker that holds it stops it; one that gets it later skips it) and
/// deletes its entry if no worker took it yet.
pub(super) struct Pending {
    pub(super) shared: Arc<Shared>,
    pub(super) io: tokio::runtime::Handle,
    pub(super) att: String,
    pub(super) queue: String,
    pub(super) entry: Option<String>,
    pub(super) armed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let entry = self
            .shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.att)
            .and_then(|w| w.entry)
            .or_else(|| self.entry.take());
        let shared = self.shared.clone();
        let att = std::mem::take(&mut self.att);
        let stream = shared.keys.queue(&self.queue);
        shared.cancels.fetch_add(1, Ordering::SeqCst);
        self.io.spawn(async move {
            let mut conn = shared.conn.clone();
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(shared.keys.cancel(&att))
                .arg(1)
                .arg("EX")
                .arg(MARK_TTL_SECS)
                .ignore();
            if let Some(entry) = &entry {
                pipe.cmd("XDEL").arg(&stream).arg(entry).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(target: "graflow::handlers", attempt = %att, error = %e, "could not mark a dropped attempt cancelled in Redis; a worker may still run it (its outcome will be ignored)");
            } else {
                tracing::debug!(target: "graflow::handlers", attempt = %att, "attempt cancelled");
            }
            shared.cancels.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
