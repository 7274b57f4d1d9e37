//! The store as the engine sees it: [`RunRecorder`] (a run begins, resume by id, a worker's
//! attempt) and each run's [`RunRecord`] (its events, its end).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use graflow_core::feedback::{FeedbackAsk, FeedbackState};
use graflow_core::record::{
    RecordError, RecordErrorKind, RecordFuture, RecordedEvent, RemoteAttempt, RunInfo, RunRecord,
    RunRecorder,
};

use crate::store::Store;
use crate::write::rec::{Rec, RunKey, RunWhat, micros, of_event};
use crate::write::writer::Shared;

impl RunRecorder for Store {
    fn describe(&self) -> String {
        self.location().to_string()
    }

    fn begin(&self, run: RunInfo) -> RecordFuture<'_, Arc<dyn RunRecord>> {
        Box::pin(async move {
            let key = RunKey::next();
            let record = Arc::new(Recording {
                key,
                store: self.clone(),
                workflow: run.workflow.name().to_owned(),
                run: run.run_id.clone(),
                shared: self.shared().clone(),
                dropped: AtomicU64::new(0),
                required: self.is_required(),
            });
            // Room for the events every task has (ready, started, succeeded).
            self.shared()
                .reserve(run.workflow.tasks().len().saturating_mul(3));
            self.shared().push(Rec::Begin(key, Box::new(run)), true);
            if record.required
                && let Err(error) = self.flush().await
            {
                // Not run: its row, when the store answers later, says so instead of
                // "running".
                self.shared().push(
                    Rec::Run {
                        run: key,
                        at: micros(std::time::SystemTime::now()),
                        what: RunWhat::Abandoned {
                            reason: Box::from(
                                format!("not run: its store could not record its start ({error})")
                                    .as_str(),
                            ),
                        },
                    },
                    true,
                );
                return Err(RecordError::from(error));
            }
            Ok(record as Arc<dyn RunRecord>)
        })
    }

    fn checkpoint_of<'a>(&'a self, run_id: &'a str) -> RecordFuture<'a, PathBuf> {
        Box::pin(async move { self.checkpoint(run_id).await.map_err(RecordError::from) })
    }

    fn remote_attempt(&self, attempt: RemoteAttempt) {
        self.shared().push(Rec::Remote(Box::new(attempt)), false);
    }
}

/// One run's records.
struct Recording {
    key: RunKey,
    /// For the requests for feedback, written at once.
    store: Store,
    workflow: String,
    run: Arc<str>,
    shared: Arc<Shared>,
    /// Records dropped because the buffer was full.
    dropped: AtomicU64,
    required: bool,
}

impl RunRecord for Recording {
    fn event(&self, event: &RecordedEvent<'_>) {
        if let Some(rec) = of_event(self.key, event) {
            // A run's start and end, and added tasks (later records name them), are never dropped.
            let must = matches!(
                rec,
                Rec::Run { .. }
                    | Rec::Task {
                        what: crate::write::rec::TaskWhat::Added(_),
                        ..
                    }
            );
            if !self.shared.push(rec, must) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn flush(&self) -> RecordFuture<'static, ()> {
        let shared = self.shared.clone();
        let run = self.run.clone();
        Box::pin(async move {
            match shared.flush().await {
                Ok(()) => Ok(()),
                Err(cause) => Err(lost(&shared.name, &run, &cause)),
            }
        })
    }

    fn ask<'a>(&'a self, ask: FeedbackAsk<'a>) -> RecordFuture<'a, FeedbackState> {
        Box::pin(async move {
            if let Err(message) = crate::feedback::validate::check_request(ask.request) {
                return Err(RecordError::new(
                    &self.shared.name,
                    RecordErrorKind::Refused,
                    message,
                ));
            }
            // The run's own records first: a run that waits is one a person can find, even if
            // its program is killed while it waits.
            if let Err(cause) = self.shared.flush().await {
                tracing::warn!(target: "graflow::store", run = %self.run, error = %cause, "the run's records are not all written before it waits");
            }
            self.store
                .ask(&self.run, &self.workflow, &ask)
                .await
                .map_err(RecordError::from)
        })
    }

    fn feedback<'a>(&'a self, id: &'a str) -> RecordFuture<'a, FeedbackState> {
        Box::pin(async move {
            self.store
                .feedback_state(id)
                .await
                .map_err(RecordError::from)
        })
    }

    fn feedback_timed_out(&self, id: &str) {
        self.store.feedback_timed_out(id);
    }

    fn suspend_path(&self) -> Option<PathBuf> {
        self.store.suspend_path(&self.run)
    }

    fn finish(&self) -> RecordFuture<'static, ()> {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.shared.push(
                Rec::Dropped {
                    run: self.run.clone(),
                    count: dropped,
                },
                true,
            );
        }
        let shared = self.shared.clone();
        let run = self.run.clone();
        let required = self.required;
        Box::pin(async move {
            if required {
                return match shared.flush().await {
                    Ok(()) if dropped == 0 => Ok(()),
                    Ok(()) => Err(lost(
                        &shared.name,
                        &run,
                        &format!("{dropped} records were dropped (the store was too slow)"),
                    )),
                    Err(cause) => Err(lost(&shared.name, &run, &cause)),
                };
            }
            if dropped > 0 {
                shared.warn_once_dropped(&run, dropped);
            }
            Ok(())
        })
    }
}

fn lost(store: &str, run: &str, cause: &str) -> RecordError {
    RecordError::new(
        store,
        RecordErrorKind::Lost,
        format!("the record of run {run} is incomplete: {cause}"),
    )
}
