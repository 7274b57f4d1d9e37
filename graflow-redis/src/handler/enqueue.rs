//! Queueing a job, once, while Redis may be restarting; and this engine's liveness key, which
//! each job names and which the handler renews while it lives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::Shared;
use crate::connect::{Backoff, retryable};
use crate::entry::Job;
use crate::keys::{ENGINE_REFRESH, ENGINE_TTL_SECS, MARK_TTL_SECS};
use crate::scripts::ENQUEUE;

/// Queues a job (once: see [`ENQUEUE`]), retrying while Redis does not answer (within the
/// reconnect window).
pub(super) async fn enqueue(
    shared: Arc<Shared>,
    queue: String,
    job: Job,
) -> Result<String, String> {
    let stream = shared.keys.queue(&queue);
    let queued = shared.keys.queued(&job.att);
    let fields = job.fields();
    let deadline = Instant::now() + shared.options.reconnect_window;
    let mut conn = shared.conn.clone();
    let mut backoff = Backoff::new();
    loop {
        let mut call = ENQUEUE.key(&stream);
        call.key(&queued)
            .key(&shared.alive)
            .arg(MARK_TTL_SECS)
            .arg(ENGINE_TTL_SECS);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_slice());
        }
        let added: redis::RedisResult<String> = call.invoke_async(&mut conn).await;
        match added {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() < deadline && retryable(&e) => {
                tracing::debug!(target: "graflow::handlers", error = %e, "queueing a job failed; retrying");
                backoff.wait().await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Renews this engine's liveness key while the handler lives: workers skip (dead-letter) the
/// jobs of an engine whose key is gone, a killed engine's included. Sooner after a failure, so
/// that a key Redis lost (a restart without persistence) is back within a refresh period.
pub(super) async fn keep_alive(shared: Arc<Shared>) {
    let mut conn = shared.conn.clone();
    loop {
        let renewed: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&shared.alive)
            .arg(1)
            .arg("EX")
            .arg(ENGINE_TTL_SECS)
            .query_async(&mut conn)
            .await;
        let next = match renewed {
            Ok(()) => ENGINE_REFRESH,
            Err(e) => {
                tracing::debug!(target: "graflow::handlers", error = %e, "cannot renew the engine's liveness key; retrying");
                Duration::from_millis(250)
            }
        };
        tokio::time::sleep(next).await;
    }
}
