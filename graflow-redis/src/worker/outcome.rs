//! Recording an attempt's outcome: its frame (within the engine's limit), written with the
//! job's acknowledgement by the [`FINISH`] script, retried while Redis does not answer.

use std::time::{Duration, Instant};

use graflow_core::backend::build_id;
use graflow_protocol::{Failure, Outcome, PROTOCOL_VERSION};

use super::state::State;
use crate::connect::{Backoff, retryable};
use crate::entry::Reply;
use crate::keys::{GROUP, MARK_TTL_SECS};
use crate::scripts::FINISH;

pub(super) fn failure(nonce: u64, message: String, started: Instant) -> Outcome {
    Outcome {
        protocol: PROTOCOL_VERSION,
        build_id: build_id().to_owned(),
        nonce,
        result: Err(Failure::Other { message }),
        channel_writes: Vec::new(),
        control: Vec::new(),
        elapsed_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
    }
}

/// The outcome's frame; a failure saying so instead when it is over the engine's limit.
pub(super) fn encode(outcome: Outcome, max_out: u64, worker: &str, started: Instant) -> Vec<u8> {
    let nonce = outcome.nonce;
    let mut bytes = Vec::new();
    let written = outcome.write_to(&mut bytes);
    let replacement = match written {
        Err(e) => Some(format!("worker {worker} could not encode the outcome: {e}")),
        Ok(()) if bytes.len() as u64 > max_out => Some(format!(
            "the outcome is {} bytes, over the engine's limit of {max_out}: return less (write large data to shared storage and return its address), or raise RedisOptions::max_outcome",
            bytes.len()
        )),
        Ok(()) => None,
    };
    if let Some(message) = replacement {
        bytes.clear();
        // A failure with a bounded message always encodes, and is far below any limit.
        let _ = failure(nonce, message, started).write_to(&mut bytes);
    }
    bytes
}

/// Records the outcome (the first only) and acknowledges the job, retrying while Redis does
/// not answer: an outcome is never dropped on a connection error.
pub(super) async fn finish(
    state: &State,
    queue: &str,
    id: &str,
    done: &str,
    reply_key: &str,
    reply: Option<&Reply>,
) {
    let mut conn = state.conn.clone();
    let mut backoff = Backoff::new();
    let give_up = Instant::now() + Duration::from_secs(600);
    let fields = reply.map(Reply::fields).unwrap_or_default();
    loop {
        let mut call = FINISH.key(state.keys.queue(queue));
        call.key(done)
            .key(reply_key)
            .arg(GROUP)
            .arg(id)
            .arg(&state.name)
            .arg(MARK_TTL_SECS)
            .arg(MARK_TTL_SECS);
        for (name, value) in &fields {
            call.arg(*name).arg(value.as_slice());
        }
        let result: redis::RedisResult<u64> = call.invoke_async(&mut conn).await;
        match result {
            Ok(code) => {
                if code & 1 == 0 && reply.is_some() {
                    tracing::info!(target: "graflow::handlers", worker = %state.name, entry = %id, "another delivery of this job answered first; this outcome is ignored");
                }
                return;
            }
            Err(e) if retryable(&e) && Instant::now() < give_up => {
                tracing::warn!(target: "graflow::handlers", worker = %state.name, entry = %id, error = %e, "cannot record an outcome yet; retrying");
                backoff.wait().await;
            }
            Err(e) => {
                tracing::error!(target: "graflow::handlers", worker = %state.name, entry = %id, error = %e, "could not record an outcome; the job will be delivered again after its lease");
                return;
            }
        }
    }
}
