//! One attempt: a job checked (malformed, of another build, already answered, delivered too
//! often, of a gone engine), run through the handler it names with its timeout and stop
//! signals, and its outcome recorded.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use graflow_core::backend::build_id;
use graflow_protocol::frame::rejection;
use graflow_protocol::{Invocation, Limits};
use tokio::sync::oneshot;

use super::ask::{AskClock, RedisAsker};
use tracing::Instrument;

use super::dead_letter::{bury, dead_letter};
use super::engines::engine_gone;
use super::hand_back::hand_back;
use super::outcome::{encode, failure, finish};
use super::state::{GENERATION, Held, Release, State, Stop};
use crate::entry::{Job, RawEntry, Reply, ReplyKind};
use crate::keys::ENGINE_GRACE;
use crate::logs::{ATTEMPT_SPAN, Capture};

/// The task options that are the "redis" handler's own: the inner handler does not see them.
const BACKEND_OPTIONS: &[&str] = &["queue", "worker_handler"];

/// One job: checked, run (or refused, or dead-lettered), its outcome recorded.
pub(super) async fn attempt(
    state: Arc<State>,
    queue: String,
    entry: RawEntry,
    delivery: u64,
    held_slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let RawEntry { id, fields } = entry;
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let key = (queue.clone(), id.clone());
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    {
        let mut held = state.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.contains_key(&key) {
            // Already held by a running attempt of this worker: that one goes on.
            return;
        }
        held.insert(
            key.clone(),
            Held {
                generation,
                att: None,
                stop: Some(stop_tx),
            },
        );
    }
    let _release = Release {
        state: &state,
        key: key.clone(),
        generation,
    };
    // A job waits here for a run slot, its lease renewed meanwhile (a reclaimed job, read
    // with a free run slot, holds no held slot: it needs none to wait).
    let _held_slot = held_slot;
    let Ok(_permit) = state.permits.clone().acquire_owned().await else {
        return;
    };
    // Stopping: start nothing new; the job goes to another worker once its lease runs out.
    if state.is_stopping() {
        return;
    }
    let parsed = match &fields {
        Ok(fields) => Job::parse(
            fields,
            state.options.max_invocation,
            &state.keys.replies(""),
        ),
        Err(why) => Err((None, why.to_string())),
    };
    let job = match parsed {
        Ok(job) => job,
        Err((named, why)) => {
            state.counts.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "graflow::handlers", worker = %state.name, queue, entry = %id, "skipped a malformed job (moved to the dead-letter stream): {why}");
            let reply = named.as_ref().map(|(att, _)| Reply {
                att: att.clone(),
                worker: state.name.clone(),
                delivery,
                kind: ReplyKind::Dead {
                    reason: format!("worker {} could not read the job: {why}", state.name),
                },
                logs: String::new(),
            });
            let (done, reply_key) = match &named {
                Some((att, reply)) => (state.keys.done(att), reply.clone()),
                None => (
                    state.keys.done(&format!("malformed-{id}")),
                    state.keys.dead(&queue),
                ),
            };
            dead_letter(
                &state,
                &queue,
                &id,
                delivery,
                &format!("malformed: {why}"),
                &done,
                &reply_key,
                reply.as_ref(),
            )
            .await;
            return;
        }
    };
    if let Some(build) = &job.build
        && build != build_id()
    {
        hand_back(&state, &queue, &id, delivery, build).await;
        return;
    }
    let done = state.keys.done(&job.att);
    if let Some(held) = state
        .held
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&key)
    {
        held.att = Some(job.att.clone());
    }
    // A redelivered job may have been answered already, or cancelled: acknowledge only. (A
    // first delivery cancelled meanwhile is stopped by the cancel check within 100 ms.)
    let marks: redis::RedisResult<u64> = if delivery > 1 {
        let mut conn = state.conn.clone();
        redis::cmd("EXISTS")
            .arg(&done)
            .arg(state.keys.cancel(&job.att))
            .query_async(&mut conn)
            .await
    } else {
        Ok(0)
    };
    if let Ok(n) = marks
        && n > 0
    {
        tracing::debug!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, "job already answered or cancelled; acknowledged without running");
        finish(&state, &queue, &id, &done, &job.reply, None).await;
        return;
    }

    if delivery > state.options.max_deliveries {
        let reason = format!(
            "its job was delivered {delivery} times, over the cap of {} (max_deliveries): each worker that took it died or lost its lease before answering (does the task crash its process, or run out of memory?); the job is in the dead-letter stream `{}` (source id {id})",
            state.options.max_deliveries,
            state.keys.dead(&queue)
        );
        tracing::error!(target: "graflow::handlers", worker = %state.name, task = %job.task, queue, entry = %id, delivery, "job dead-lettered");
        bury(&state, &queue, &id, delivery, reason, &done, &job).await;
        return;
    }

    if let Some(engine) = &job.engine
        && engine_gone(&state, engine).await
    {
        let reason = format!(
            "its engine is gone: its liveness key `{engine}` was absent for {ENGINE_GRACE:?} (the engine ended or was killed with its job queued, or lost Redis for that long); nobody waits for the outcome, so worker {} did not run it; the job is in the dead-letter stream `{}` (source id {id})",
            state.name,
            state.keys.dead(&queue)
        );
        tracing::warn!(target: "graflow::handlers", worker = %state.name, task = %job.task, queue, entry = %id, engine, "the job's engine is gone; dead-lettered without running");
        bury(&state, &queue, &id, delivery, reason, &done, &job).await;
        return;
    }

    let started = Instant::now();
    let limits = Limits::default()
        .with_max_frame(state.options.max_invocation)
        .with_max_head(state.options.max_invocation);
    let outcome = match Invocation::read_from(&mut job.inv.as_slice(), &limits) {
        Err(e) => rejection(0, build_id(), format!("unreadable invocation: {e}")),
        Ok(invocation) => {
            let nonce = invocation.nonce;
            let recorded = (
                invocation.run_id.clone(),
                invocation.attempt,
                SystemTime::now(),
            );
            match state.handlers.handler(&job.inner) {
                None => rejection(
                    nonce,
                    build_id(),
                    format!(
                        "worker {} has no handler \"{}\" (it has: {}); register it on the worker (Worker::with_handler) or link its crate",
                        state.name,
                        job.inner,
                        state.handlers.handler_names().join(", ")
                    ),
                ),
                Some(handler) => {
                    let capture = Capture::new(&job.att);
                    let span = tracing::info_span!(
                        target: "graflow::handlers",
                        ATTEMPT_SPAN,
                        att = %job.att,
                        task = %job.task,
                        delivery
                    );
                    tracing::debug!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, delivery, "running");
                    // The task's questions go to its engine, through the reply stream.
                    let clock = Arc::new(AskClock::default());
                    let asker = RedisAsker {
                        conn: state.conn.clone(),
                        stream: job.reply.clone(),
                        keys: state.keys.clone(),
                        att: job.att.clone(),
                        worker: state.name.clone(),
                        delivery,
                        clock: clock.clone(),
                    };
                    let run = graflow_core::backend::answer_asking(
                        invocation,
                        &*handler,
                        BACKEND_OPTIONS,
                        Some(Arc::new(asker)),
                    )
                    .instrument(span);
                    // The task's timeout, not counting the time it spent asking a person.
                    let deadline = async {
                        if job.timeout_ms == 0 {
                            std::future::pending::<()>().await;
                        }
                        let timeout = Duration::from_millis(job.timeout_ms);
                        loop {
                            let due = timeout + clock.paused();
                            match due.checked_sub(started.elapsed()) {
                                Some(left) if !left.is_zero() => {
                                    tokio::time::sleep(left.max(Duration::from_millis(100))).await;
                                }
                                _ => break,
                            }
                        }
                    };
                    tokio::pin!(run);
                    tokio::pin!(deadline);
                    let mut stop_open = true;
                    let outcome = loop {
                        tokio::select! {
                            outcome = &mut run => break outcome,
                            () = &mut deadline => {
                                tracing::info!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, "attempt reached the task's timeout; stopped");
                                break failure(nonce, format!(
                                    "worker {} stopped the attempt after {:?}, the task's timeout",
                                    state.name,
                                    Duration::from_millis(job.timeout_ms)
                                ), started);
                            }
                            why = &mut stop_rx, if stop_open => match why {
                                Ok(Stop::Cancelled) => {
                                    state.counts.cancelled.fetch_add(1, Ordering::Relaxed);
                                    tracing::info!(target: "graflow::handlers", worker = %state.name, task = %job.task, entry = %id, "attempt cancelled by the engine; stopped");
                                    finish(&state, &queue, &id, &done, &job.reply, None).await;
                                    return;
                                }
                                // Another worker runs it now: leave the job to it.
                                Ok(Stop::LeaseLost) => return,
                                // Nobody can stop it any more: it runs to its end.
                                Err(_) => stop_open = false,
                            },
                        }
                    };
                    let logs = capture.sink.text();
                    drop(capture);
                    record(&state, &job, recorded, &outcome);
                    let bytes = encode(outcome, job.max_out, &state.name, started);
                    let reply = Reply {
                        att: job.att.clone(),
                        worker: state.name.clone(),
                        delivery,
                        kind: ReplyKind::Outcome(bytes),
                        logs,
                    };
                    finish(&state, &queue, &id, &done, &job.reply, Some(&reply)).await;
                    state.counts.answered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    let bytes = encode(outcome, job.max_out, &state.name, started);
    let reply = Reply {
        att: job.att.clone(),
        worker: state.name.clone(),
        delivery,
        kind: ReplyKind::Outcome(bytes),
        logs: String::new(),
    };
    finish(&state, &queue, &id, &done, &job.reply, Some(&reply)).await;
    state.counts.answered.fetch_add(1, Ordering::Relaxed);
}

/// Records the attempt in the worker's run store, if it has one (`GRAFLOW_STORE`): the
/// engine records the attempt too; this adds which worker ran it, and when.
fn record(
    state: &State,
    job: &Job,
    (run_id, attempt, started): (String, u32, SystemTime),
    outcome: &graflow_protocol::Outcome,
) {
    if let Some(recorder) = graflow_core::record::default_recorder() {
        let error = outcome.result.as_ref().err().map(|f| format!("{f:?}"));
        recorder.remote_attempt(graflow_core::record::RemoteAttempt::new(
            run_id,
            job.task.clone(),
            attempt,
            format!("worker {} (pid {})", state.name, std::process::id()),
            started,
            SystemTime::now(),
            error,
        ));
    }
}
