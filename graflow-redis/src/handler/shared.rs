//! What the handler's background tasks and its attempts share: the connection, and the
//! attempts waiting for their replies.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use super::options::RedisOptions;
use crate::entry::Reply;
use crate::keys::Keys;
use graflow_core::HandlerFailure;

/// What the handler's tasks and attempts share.
pub(super) struct Shared {
    pub(super) url: String,
    pub(super) keys: Keys,
    pub(super) client: String,
    pub(super) replies: String,
    /// This engine's liveness key (see [`keep_alive`]).
    pub(super) alive: String,
    pub(super) conn: ConnectionManager,
    pub(super) options: RedisOptions,
    pub(super) waiting: Mutex<HashMap<String, Waiter>>,
    pub(super) malformed: std::sync::atomic::AtomicU64,
    /// Cancellations spawned and not yet sent (the runtime waits for them when dropped).
    pub(super) cancels: Arc<AtomicUsize>,
}

/// An attempt waiting for its reply.
pub(super) struct Waiter {
    pub(super) queue: String,
    pub(super) entry: Option<String>,
    pub(super) since: Instant,
    pub(super) checked: Instant,
    /// The reply, or why the attempt failed without one and of what kind.
    pub(super) tx: oneshot::Sender<Result<Reply, (HandlerFailure, String)>>,
    /// The task's questions for a person (key, request), as its worker sends them.
    pub(super) asks: tokio::sync::mpsc::UnboundedSender<(String, String)>,
}

/// Fails the waiting attempts `which` selects with `message`, a failure of `kind`.
pub(super) fn fail_waiters(
    shared: &Shared,
    which: impl Fn(&Waiter) -> bool,
    kind: HandlerFailure,
    message: &str,
) {
    let failed: Vec<Waiter> = {
        let mut waiting = shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let atts: Vec<String> = waiting
            .iter()
            .filter(|(_, w)| which(w))
            .map(|(att, _)| att.clone())
            .collect();
        atts.iter().filter_map(|att| waiting.remove(att)).collect()
    };
    for waiter in failed {
        let _ = waiter.tx.send(Err((kind, message.to_owned())));
    }
}
