//! The store as the engine sees it: [`RunRecorder`] (a run begins, resume by id, a worker's
//! attempt) and each run's [`RunRecord`] (its events, its end).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use graflow_core::record::{
    RecordError, RecordErrorKind, RecordFuture, RecordedEvent, RemoteAttempt, RunInfo, RunRecord,
    RunRecorder,
};

use crate::store::Store;
use crate::write::rec::{Rec, RunKey, of_event};
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
                run: run.run_id.clone(),
                shared: self.shared().clone(),
                dropped: AtomicU64::new(0),
                required: self.is_required(),
            });
            // Room for the events every task has (ready, started, succeeded).
            self.shared()
                .reserve(run.workflow.tasks().len().saturating_mul(3));
            self.shared().push(Rec::Begin(key, Box::new(run)), true);
            if record.required {
                self.flush().await.map_err(RecordError::from)?;
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
    run: Arc<str>,
    shared: Arc<Shared>,
    /// Records dropped because the buffer was full.
    dropped: AtomicU64,
    required: bool,
}

impl RunRecord for Recording {
    fn event(&self, event: &RecordedEvent<'_>) {
        if let Some(rec) = of_event(self.key, event) {
            let must = matches!(rec, Rec::Run { .. });
            if !self.shared.push(rec, must) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn finish(&self) -> RecordFuture<'static, ()> {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.shared.push(
                Rec::Dropped {
                    run: self.key,
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
                let (tx, rx) = tokio::sync::oneshot::channel();
                shared.push(
                    Rec::Flush(Box::new(move |result| {
                        let _ = tx.send(result);
                    })),
                    true,
                );
                return match rx.await {
                    Ok(Ok(())) if dropped == 0 => Ok(()),
                    Ok(Ok(())) => Err(lost(
                        &shared.name,
                        &run,
                        &format!("{dropped} records were dropped (the store was too slow)"),
                    )),
                    Ok(Err(cause)) => Err(lost(&shared.name, &run, &cause)),
                    Err(_) => Err(lost(&shared.name, &run, "its writer stopped")),
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
