//! [`Store`]: one handle on a run store, to record runs (it is a
//! [`RunRecorder`](graflow_core::record::RunRecorder)) and to read them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::db::{Pool, open};
use crate::error::{StoreError, StoreErrorKind};
use crate::location::{Location, REQUIRED_ENV};
use crate::read::model::{RunDetail, RunSummary};
use crate::read::query;
use crate::write::exit;
use crate::write::writer::Shared;

/// A run store: where runs are recorded, and read back.
///
/// Made without touching the database: the writer opens it with the first run, the reader with
/// the first read; a store that does not answer never fails a run (unless it is
/// [required](Store::required)).
///
/// ```no_run
/// # async fn f() -> Result<(), graflow_store::StoreError> {
/// use graflow_store::{Location, Store};
/// let store = Store::new(Location::parse("sqlite:/tmp/runs.db")?.expect("not off"));
/// for run in store.runs(50).await? {
///     println!("{} {} {}", run.id, run.workflow, run.status);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    reader: OnceCell<Pool>,
    required: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", self.location())
            .field("required", &self.inner.required)
            .finish()
    }
}

impl Store {
    /// The store at `location` (opened when first used). Required when
    /// `GRAFLOW_STORE_REQUIRED` is `1` or `true`.
    pub fn new(location: Location) -> Store {
        let required =
            std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        Store::with(location, required)
    }

    fn with(location: Location, required: bool) -> Store {
        exit::arm();
        Store {
            inner: Arc::new(Inner {
                shared: Shared::new(location),
                reader: OnceCell::new(),
                required,
            }),
        }
    }

    /// The store `GRAFLOW_STORE` names (`sqlite:$GRAFLOW_HOME/runs.db` when unset); `None` when
    /// it says `off`.
    pub fn from_env() -> Result<Option<Store>, StoreError> {
        Ok(Location::from_env()?.map(Store::new))
    }

    /// This store, made mandatory (`true`): a run it cannot record fails
    /// ([`RunError::Record`](graflow_core::RunError::Record)), before it starts when its start
    /// cannot be written, at its end when the rest cannot. Not mandatory (the default), a run
    /// goes on whatever the store does, and one warning says what was lost.
    pub fn required(self, required: bool) -> Store {
        Store::with(self.location().clone(), required)
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.inner.shared.location
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn is_required(&self) -> bool {
        self.inner.required
    }

    /// This store as an engine's recorder: `engine.set_recorder(Some(store.recorder()))`.
    pub fn recorder(&self) -> Arc<dyn graflow_core::record::RunRecorder> {
        Arc::new(self.clone())
    }

    async fn pool(&self) -> Result<&Pool, StoreError> {
        self.inner
            .reader
            .get_or_try_init(|| open(self.location()))
            .await
    }

    fn error(&self, what: &str, error: &sqlx::Error) -> StoreError {
        StoreError::from_sqlx(&self.location().to_string(), what, error)
    }

    /// The latest `limit` runs, newest first.
    pub async fn runs(&self, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
        query::runs(self.pool().await?, limit)
            .await
            .map_err(|e| self.error("cannot read its runs", &e))
    }

    /// Run `id`, with its tasks, attempts, log lines, edges and events; `None` when the store
    /// has no such run.
    pub async fn run(&self, id: &str) -> Result<Option<RunDetail>, StoreError> {
        query::run(self.pool().await?, id)
            .await
            .map_err(|e| self.error("cannot read the run", &e))
    }

    /// Deletes every run that ended (or was lost) more than `older_than` ago, with its tasks,
    /// attempts, events and log lines; how many.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, StoreError> {
        query::prune(self.pool().await?, older_than)
            .await
            .map_err(|e| self.error("cannot delete old runs", &e))
    }

    /// Where run `id` writes its checkpoints (what resuming it by id reads).
    pub async fn checkpoint(&self, id: &str) -> Result<PathBuf, StoreError> {
        let name = self.location().to_string();
        // What this program recorded is read back too (a run that failed a moment ago).
        let _ = self.flush().await;
        match query::checkpoint(self.pool().await?, id)
            .await
            .map_err(|e| self.error("cannot read the run", &e))?
        {
            Some(Some(path)) => Ok(PathBuf::from(path)),
            Some(None) => Err(StoreError::new(
                &name,
                StoreErrorKind::NotFound,
                format!(
                    "run {id} wrote no checkpoint, so it cannot be resumed: give its runs RunOptions::checkpoint(path)"
                ),
            )),
            None => Err(StoreError::new(
                &name,
                StoreErrorKind::NotFound,
                format!("no run {id} (--graflow-runs lists the runs it has)"),
            )),
        }
    }

    /// Waits until everything recorded so far is written; the store's error when it cannot be
    /// (it is not waited for then).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.shared().flush().await.map_err(|cause| {
            StoreError::new(
                &self.location().to_string(),
                StoreErrorKind::Unavailable,
                cause,
            )
        })
    }

    /// The newest schema version this program writes.
    pub fn schema_version() -> i64 {
        crate::db::schema_version()
    }
}
