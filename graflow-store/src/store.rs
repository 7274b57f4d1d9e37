//! [`Store`]: one handle on a run store, to record runs (it is a
//! [`RunRecorder`](graflow_core::record::RunRecorder)) and to read them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use graflow_core::feedback::{
    FeedbackAnswer, FeedbackAsk, FeedbackRequest, FeedbackState, FeedbackStatus,
};

use crate::db::{Pool, open};
use crate::error::{StoreError, StoreErrorKind};
use crate::feedback::{self, AnswerError, FeedbackInfo};
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

    /// Runs `work` on graflow's background runtime, where the store's connections live: the
    /// runtime of a caller (a command-line mode's, a test's) may end while the pool lives on,
    /// and a connection is tied to the runtime that opened it.
    async fn on_background<T, E, F>(
        &self,
        work: impl FnOnce(Store) -> F + Send + 'static,
    ) -> Result<T, E>
    where
        F: std::future::Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let unavailable = |why: String| {
            E::from(StoreError::new(
                &self.location().to_string(),
                StoreErrorKind::Unavailable,
                why,
            ))
        };
        let runtime =
            graflow_core::backend::background().map_err(|e| unavailable(e.to_string()))?;
        runtime
            .spawn(work(self.clone()))
            .await
            .map_err(|e| unavailable(format!("its task ended: {e}")))?
    }

    fn error(&self, what: &str, error: &sqlx::Error) -> StoreError {
        StoreError::from_sqlx(&self.location().to_string(), what, error)
    }

    /// The latest `limit` runs, newest first.
    pub async fn runs(&self, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
        self.on_background(move |store| async move { store.runs_here(limit).await })
            .await
    }

    async fn runs_here(&self, limit: u32) -> Result<Vec<RunSummary>, StoreError> {
        query::runs(self.pool().await?, limit)
            .await
            .map_err(|e| self.error("cannot read its runs", &e))
    }

    /// Run `id`, with its tasks, attempts, log lines, edges and events; `None` when the store
    /// has no such run.
    pub async fn run(&self, id: &str) -> Result<Option<RunDetail>, StoreError> {
        let id = id.to_owned();
        self.on_background(move |store| async move { store.run_here(&id).await })
            .await
    }

    async fn run_here(&self, id: &str) -> Result<Option<RunDetail>, StoreError> {
        query::run(self.pool().await?, id)
            .await
            .map_err(|e| self.error("cannot read the run", &e))
    }

    /// Deletes every run that ended (or was lost) more than `older_than` ago, with its tasks,
    /// attempts, events and log lines; how many.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.on_background(move |store| async move { store.prune_here(older_than).await })
            .await
    }

    async fn prune_here(&self, older_than: Duration) -> Result<u64, StoreError> {
        let pruned = query::prune(self.pool().await?, older_than)
            .await
            .map_err(|e| self.error("cannot delete old runs", &e))?;
        // The checkpoints this store gave runs that waited for answers go with them.
        for id in &pruned {
            if let Some(path) = self.suspend_path(id) {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(pruned.len() as u64)
    }

    /// Where run `id` writes its checkpoints (what resuming it by id reads).
    pub async fn checkpoint(&self, id: &str) -> Result<PathBuf, StoreError> {
        let id = id.to_owned();
        self.on_background(move |store| async move { store.checkpoint_here(&id).await })
            .await
    }

    async fn checkpoint_here(&self, id: &str) -> Result<PathBuf, StoreError> {
        let name = self.location().to_string();
        // What this program recorded is read back too (a run that failed a moment ago).
        let _ = self.flush().await;
        match query::checkpoint(self.pool().await?, id)
            .await
            .map_err(|e| self.error("cannot read the run", &e))?
        {
            Some(Some(path)) => Ok(PathBuf::from(path)),
            // A run that stopped to wait for an answer, checkpointed where the store says.
            Some(None) | None if self.suspend_path(id).is_some_and(|p| p.exists()) => self
                .suspend_path(id)
                .ok_or_else(|| StoreError::new(&name, StoreErrorKind::NotFound, "no checkpoint")),
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

    /// Where run `run_id` writes its checkpoint when it stops to wait for an answer and keeps
    /// no checkpoint of its own: `checkpoints/RUN_ID.ckpt` beside a SQLite store, under
    /// `$GRAFLOW_HOME` (`~/.graflow`) for PostgreSQL. `None` for a run id that is not a plain
    /// name.
    pub fn suspend_path(&self, run_id: &str) -> Option<PathBuf> {
        if run_id.is_empty()
            || run_id.len() > 128
            || !run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let dir = match self.location() {
            Location::Sqlite(path) => path.parent()?.join("checkpoints"),
            Location::Postgres(_) => match Location::default_sqlite().ok()? {
                Location::Sqlite(path) => path.parent()?.join("checkpoints"),
                Location::Postgres(_) => return None,
            },
        };
        Some(dir.join(format!("{run_id}.ckpt")))
    }

    /// The requests for feedback, newest first: the open ones (`open_only`) or all; at most
    /// `limit`.
    pub async fn feedback_requests(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<FeedbackInfo>, StoreError> {
        self.on_background(move |store| async move {
            store.feedback_requests_here(open_only, limit).await
        })
        .await
    }

    async fn feedback_requests_here(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<FeedbackInfo>, StoreError> {
        feedback::query::list(self.pool().await?, open_only, limit)
            .await
            .map_err(|e| self.error("cannot read its requests for feedback", &e))
    }

    /// Request `id`; `None` when there is none.
    pub async fn feedback_request(&self, id: &str) -> Result<Option<FeedbackInfo>, StoreError> {
        let id = id.to_owned();
        self.on_background(move |store| async move { store.feedback_request_here(&id).await })
            .await
    }

    async fn feedback_request_here(&self, id: &str) -> Result<Option<FeedbackInfo>, StoreError> {
        if !feedback::well_formed(id) {
            return Ok(None);
        }
        Ok(
            feedback::query::request(self.pool().await?, &id.to_ascii_lowercase())
                .await
                .map_err(|e| self.error("cannot read the request", &e))?
                .map(|stored| stored.info),
        )
    }

    /// Answers request `id` with `value` (JSON: a boolean for an approval, a string for a text
    /// or a selection, an array of options, any value its schema accepts for a custom request)
    /// on behalf of `by`. The answer is checked first: a refused one leaves the request open.
    /// The first valid answer wins; the task waiting for it (in any program sharing the store)
    /// gets it within a second, or its run gets it when resumed.
    ///
    /// # Errors
    /// [`AnswerError`]: no such request, answered or cancelled already, an invalid answer, or
    /// the store failed.
    pub async fn answer(
        &self,
        id: &str,
        value: serde_json::Value,
        by: &str,
    ) -> Result<FeedbackAnswer, AnswerError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.on_background(move |store| async move { store.answer_here(&id, value, &by).await })
            .await
    }

    async fn answer_here(
        &self,
        id: &str,
        value: serde_json::Value,
        by: &str,
    ) -> Result<FeedbackAnswer, AnswerError> {
        let id = &id.to_ascii_lowercase();
        let stored = self.open_request(id).await?;
        let accepts = feedback::validate::Accepts {
            kind: stored.info.kind,
            options: &stored.info.options,
            schema: stored.schema.as_deref(),
            expected: &stored.info.expected,
        };
        feedback::validate::check(&accepts, &value).map_err(|message| AnswerError::Invalid {
            id: id.to_owned(),
            message,
        })?;
        let by = answerer(by);
        let answer = FeedbackAnswer::new(value, by);
        let won = feedback::query::answer(self.pool().await?, id, &answer)
            .await
            .map_err(|e| self.error("cannot store the answer", &e))?;
        if !won {
            // Someone else was first: say who.
            self.open_request(id).await?;
            return Err(AnswerError::UnknownRequest { id: id.to_owned() });
        }
        let mut info = stored.info;
        info.status = FeedbackStatus::Answered(answer.clone());
        crate::notify::send("feedback.answered", feedback::document(&info));
        Ok(answer)
    }

    /// [`Store::answer`] with what a person typed: `yes`/`no` for an approval, the text, the
    /// option, options separated by commas (or a JSON array), JSON for a custom request.
    ///
    /// # Errors
    /// As [`Store::answer`].
    pub async fn answer_text(
        &self,
        id: &str,
        text: &str,
        by: &str,
    ) -> Result<FeedbackAnswer, AnswerError> {
        let (id, text, by) = (id.to_owned(), text.to_owned(), by.to_owned());
        self.on_background(
            move |store| async move { store.answer_text_here(&id, &text, &by).await },
        )
        .await
    }

    async fn answer_text_here(
        &self,
        id: &str,
        text: &str,
        by: &str,
    ) -> Result<FeedbackAnswer, AnswerError> {
        let id = &id.to_ascii_lowercase();
        let stored = self.open_request(id).await?;
        let value = feedback::validate::parse_text(stored.info.kind, text).map_err(|message| {
            AnswerError::Invalid {
                id: id.to_owned(),
                message: format!("{message} (expected {})", stored.info.expected),
            }
        })?;
        self.answer_here(id, value, by).await
    }

    /// Cancels request `id`: the task waiting for it fails at once, saying `reason`, and is not
    /// retried (its run fails; resumed, the task runs again and asks anew).
    ///
    /// # Errors
    /// As [`Store::answer`], but for an invalid answer.
    pub async fn cancel_feedback(
        &self,
        id: &str,
        reason: &str,
        by: &str,
    ) -> Result<(), AnswerError> {
        let (id, reason, by) = (id.to_owned(), reason.to_owned(), by.to_owned());
        self.on_background(move |store| async move {
            store.cancel_feedback_here(&id, &reason, &by).await
        })
        .await
    }

    async fn cancel_feedback_here(
        &self,
        id: &str,
        reason: &str,
        by: &str,
    ) -> Result<(), AnswerError> {
        let id = &id.to_ascii_lowercase();
        let stored = self.open_request(id).await?;
        let by = answerer(by);
        let done = feedback::query::cancel(self.pool().await?, id, reason, &by)
            .await
            .map_err(|e| self.error("cannot cancel the request", &e))?;
        if !done {
            self.open_request(id).await?;
            return Err(AnswerError::UnknownRequest { id: id.to_owned() });
        }
        let mut info = stored.info;
        info.status = FeedbackStatus::Cancelled {
            reason: reason.to_owned(),
            by,
        };
        crate::notify::send("feedback.cancelled", feedback::document(&info));
        Ok(())
    }

    /// Request `id`, if it is open; why not otherwise.
    async fn open_request(&self, id: &str) -> Result<feedback::query::Stored, AnswerError> {
        if !feedback::well_formed(id) {
            return Err(AnswerError::UnknownRequest { id: id.to_owned() });
        }
        let stored = feedback::query::request(self.pool().await?, id)
            .await
            .map_err(|e| self.error("cannot read the request", &e))?
            .ok_or_else(|| AnswerError::UnknownRequest { id: id.to_owned() })?;
        match &stored.info.status {
            FeedbackStatus::Open => Ok(stored),
            FeedbackStatus::Answered(answer) => Err(AnswerError::AlreadyAnswered {
                id: id.to_owned(),
                by: answer.by.clone(),
            }),
            FeedbackStatus::Cancelled { reason, by } => Err(AnswerError::Cancelled {
                id: id.to_owned(),
                reason: reason.clone(),
                by: by.clone(),
            }),
            _ => Err(AnswerError::UnknownRequest { id: id.to_owned() }),
        }
    }

    /// Keeps a task's request (or finds the one it made before).
    pub(crate) async fn ask(
        &self,
        run_id: &str,
        workflow: &str,
        ask: &FeedbackAsk<'_>,
    ) -> Result<FeedbackState, StoreError> {
        let owned = (
            run_id.to_owned(),
            workflow.to_owned(),
            ask.task.to_owned(),
            ask.key.to_owned(),
            ask.request.clone(),
        );
        self.on_background(move |store| async move {
            let (run_id, workflow, task, key, request) = owned;
            store
                .ask_here(&run_id, &workflow, (&task, &key, &request))
                .await
        })
        .await
    }

    async fn ask_here(
        &self,
        run_id: &str,
        workflow: &str,
        (task, key, request): (&str, &str, &FeedbackRequest),
    ) -> Result<FeedbackState, StoreError> {
        let name = self.location().to_string();
        let id = feedback::new_id()
            .map_err(|e| StoreError::new(&name, StoreErrorKind::Unavailable, e))?;
        let (state, created) = feedback::query::ask(
            self.pool().await?,
            run_id,
            workflow,
            (task, key, request),
            &id,
        )
        .await
        .map_err(|e| self.error("cannot keep the request for feedback", &e))?;
        if created {
            // A person must learn that something waits for them, tracing or not.
            let message = format!(
                "task '{}' of run {run_id} asks {:?} ({}): answer with --graflow-answer {} VALUE; --graflow-feedback lists what waits",
                crate::limits::clean(task, 256),
                crate::limits::clean(&request.prompt, 512),
                request.expected,
                state.id
            );
            tracing::info!(target: "graflow::store", request = %state.id, "{message}");
            if !tracing::dispatcher::has_been_set() {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "graflow: {message}");
            }
            if let Ok(Some(info)) = self.feedback_request_here(&state.id).await {
                crate::notify::send("feedback.created", feedback::document(&info));
            }
        }
        Ok(state)
    }

    /// Where request `id` stands.
    pub(crate) async fn feedback_state(&self, id: &str) -> Result<FeedbackState, StoreError> {
        let id = id.to_owned();
        self.on_background(move |store| async move { store.feedback_state_here(&id).await })
            .await
    }

    async fn feedback_state_here(&self, id: &str) -> Result<FeedbackState, StoreError> {
        feedback::query::state(self.pool().await?, id)
            .await
            .map_err(|e| self.error("cannot read the request", &e))?
            .ok_or_else(|| {
                StoreError::new(
                    &self.location().to_string(),
                    StoreErrorKind::NotFound,
                    format!("request {id} is no longer in the store"),
                )
            })
    }

    /// The task gave up waiting for request `id`.
    pub(crate) fn feedback_timed_out(&self, id: &str) {
        if !crate::notify::enabled() {
            return;
        }
        let store = self.clone();
        let id = id.to_owned();
        let Ok(runtime) = graflow_core::backend::background() else {
            return;
        };
        // Counted from now: the program's exit waits for it from the start.
        let held = crate::notify::Held::new();
        runtime.spawn(async move {
            if let Ok(Some(info)) = store.feedback_request_here(&id).await {
                crate::notify::send("feedback.timed_out", feedback::document(&info));
            }
            drop(held);
        });
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

/// Who answers: as given (control characters, an escape sequence's too, replaced), or the user
/// running this program.
fn answerer(by: &str) -> String {
    if by.trim().is_empty() {
        crate::host::me().user.clone()
    } else {
        let by: String = by
            .trim()
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        crate::limits::clean(&by, 256)
    }
}
