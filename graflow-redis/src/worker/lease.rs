//! Leases: renewed, with this worker's presence, from a thread of its own (a worker whose
//! runtime threads are all busy with task bodies still holds on to its jobs); the same thread
//! stops the attempts the engine cancelled and those whose job another worker took over.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use graflow_core::backend::build_id;
use redis::aio::ConnectionManager;
use tokio::sync::oneshot;

use super::state::{State, Stop, stop};
use crate::RedisError;
use crate::connect::connect;
use crate::keys::GROUP;
use crate::scripts::HEARTBEAT;

/// Renews leases and presence, and stops cancelled attempts, from a thread of its own.
pub(super) struct LeaseKeeper {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    pub(super) fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn start_lease_keeper(state: Arc<State>, url: &str) -> Result<LeaseKeeper, RedisError> {
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let url = url.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RedisError::Runtime)?;
    let thread = std::thread::Builder::new()
        .name("graflow-lease".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let mut conn = loop {
                    match connect(&url, Duration::from_secs(5), &state.options.tls).await {
                        Ok(conn) => break conn,
                        Err(e) => {
                            tracing::warn!(target: "graflow::handlers", error = %e, "lease keeper cannot connect; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                                _ = &mut stop_rx => return,
                            }
                        }
                    }
                };
                let renew_every = (state.options.lease / 3)
                    .clamp(Duration::from_millis(30), Duration::from_secs(1));
                let tick = renew_every.min(Duration::from_millis(100));
                let mut last_renewal: Option<Instant> = None;
                loop {
                    if last_renewal.is_none_or(|t| t.elapsed() >= renew_every) {
                        renew(&state, &mut conn).await;
                        last_renewal = Some(Instant::now());
                    }
                    stop_cancelled(&state, &mut conn).await;
                    tokio::select! {
                        () = tokio::time::sleep(tick) => {}
                        _ = &mut stop_rx => return,
                    }
                }
            });
        })
        .map_err(RedisError::Runtime)?;
    Ok(LeaseKeeper {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// One lease renewal per queue (also this worker's presence); stops attempts whose jobs
/// another worker took over.
async fn renew(state: &State, conn: &mut ConnectionManager) {
    for queue in &state.options.queues {
        let ids: Vec<String> = state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|(q, _)| q == queue)
            .map(|(_, id)| id.clone())
            .collect();
        let mut call = HEARTBEAT.key(state.keys.queue(queue));
        call.key(state.keys.workers(queue))
            .key(state.keys.builds(queue))
            .arg(GROUP)
            .arg(&state.name)
            .arg(build_id());
        for id in &ids {
            call.arg(id);
        }
        let lost: redis::RedisResult<Vec<String>> = call.invoke_async(conn).await;
        match lost {
            Ok(lost) => {
                for id in lost {
                    tracing::warn!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, "lost the lease of a job (another worker took it over); stopping its attempt");
                    stop(state, queue, &id, Stop::LeaseLost);
                }
            }
            Err(e) => {
                tracing::warn!(target: "graflow::handlers", worker = %state.name, url = %state.url, error = %e, "cannot renew leases");
            }
        }
    }
}

/// Stops the attempts the engine cancelled.
async fn stop_cancelled(state: &State, conn: &mut ConnectionManager) {
    let running: Vec<((String, String), String)> = state
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|(key, held)| held.att.clone().map(|att| (key.clone(), att)))
        .collect();
    if running.is_empty() {
        return;
    }
    let keys: Vec<String> = running
        .iter()
        .map(|(_, att)| state.keys.cancel(att))
        .collect();
    let marks: redis::RedisResult<Vec<Option<String>>> =
        redis::cmd("MGET").arg(&keys).query_async(conn).await;
    if let Ok(marks) = marks {
        for (((queue, id), _), mark) in running.iter().zip(marks) {
            if mark.is_some() {
                stop(state, queue, id, Stop::Cancelled);
            }
        }
    }
}
