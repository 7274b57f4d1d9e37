//! The feedback table's SQL (the same for both backends). Rows are read as hostile: a column of
//! the wrong type reads as absent, JSON that does not parse reads as empty, and a stored answer
//! that cannot be read makes the request read as cancelled, saying why.

use std::collections::BTreeMap;
use std::time::SystemTime;

use graflow_core::feedback::{
    FeedbackAnswer, FeedbackKind, FeedbackRequest, FeedbackState, FeedbackStatus,
};
use sqlx::Row;

use super::FeedbackInfo;
use crate::db::{Pool, with_pool};
use crate::limits::clean;
use crate::read::model::time_of;
use crate::write::rec::micros;

macro_rules! get {
    ($row:expr, $col:literal) => {
        $row.try_get::<Option<_>, _>($col).ok().flatten()
    };
}

const COLUMNS: &str = "id, run_id, workflow, task, kind, prompt, options, schema_json, expected, metadata, \
     asked_at, expires_at, status, answer, answered_by, answered_at, reason";

/// A row's id and status (a macro: the row type differs by backend).
macro_rules! state_of {
    ($row:expr) => {{
        let row = $row;
        let id: String = get!(row, "id").unwrap_or_default();
        FeedbackState::new(
            id,
            status_of(
                get!(row, "status"),
                get!(row, "answer"),
                get!(row, "answered_by"),
                get!(row, "answered_at"),
                get!(row, "reason"),
            ),
        )
    }};
}

/// A whole row.
macro_rules! stored_of {
    ($row:expr) => {{
        let row = $row;
        let options: Vec<String> = get!(row, "options")
            .and_then(|s: String| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let metadata: BTreeMap<String, String> = get!(row, "metadata")
            .and_then(|s: String| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let kind = get!(row, "kind")
            .and_then(|k: String| FeedbackKind::parse(&k))
            .unwrap_or(FeedbackKind::Custom);
        let state = state_of!(row);
        Stored {
            info: FeedbackInfo {
                id: state.id,
                run_id: get!(row, "run_id").unwrap_or_default(),
                workflow: get!(row, "workflow").unwrap_or_default(),
                task: get!(row, "task").unwrap_or_default(),
                kind,
                prompt: get!(row, "prompt").unwrap_or_default(),
                options,
                expected: get!(row, "expected").unwrap_or_default(),
                metadata,
                asked_at: time_of(get!(row, "asked_at")),
                expires_at: time_of(get!(row, "expires_at")),
                status: state.status,
            },
            schema: get!(row, "schema_json"),
        }
    }};
}

/// The stored row of a request, with what checking an answer needs.
pub(crate) struct Stored {
    pub info: FeedbackInfo,
    pub schema: Option<String>,
}

/// Keeps `ask` (a new row with id `new_id`), or finds the row the task made before (its wait
/// starts again: `expires_at` moves); the row's state and whether it is new.
pub(crate) async fn ask(
    pool: &Pool,
    run_id: &str,
    workflow: &str,
    (task, key, request): (&str, &str, &FeedbackRequest),
    new_id: &str,
) -> Result<(FeedbackState, bool), sqlx::Error> {
    let now = SystemTime::now();
    let expires = now.checked_add(request.timeout).unwrap_or(now);
    let options = serde_json::to_string(&request.options).unwrap_or_else(|_| "[]".to_owned());
    let metadata = serde_json::to_string(&request.metadata).unwrap_or_else(|_| "{}".to_owned());
    let sql = "INSERT INTO feedback (id, run_id, workflow, task, ask_key, kind, prompt, options, schema_json, expected, metadata, asked_at, expires_at, status) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'open') \
               ON CONFLICT (run_id, task, ask_key) DO UPDATE SET expires_at = excluded.expires_at WHERE feedback.status = 'open'";
    with_pool!(pool, p => {
        sqlx::query(sql)
            .bind(new_id)
            .bind(clean(run_id, 256))
            .bind(clean(workflow, 1024))
            .bind(clean(task, 1024))
            .bind(clean(key, 64))
            .bind(request.kind.as_str())
            .bind(clean(&request.prompt, graflow_core::feedback::MAX_PROMPT))
            .bind(clean(&options, 1 << 20))
            .bind(request.schema.as_deref().map(|s| clean(s, graflow_core::feedback::MAX_SCHEMA)))
            .bind(clean(&request.expected, 64 * 1024))
            .bind(clean(&metadata, 1 << 20))
            .bind(micros(now))
            .bind(micros(expires))
            .execute(p)
            .await?;
        let row = sqlx::query("SELECT id, status, answer, answered_by, answered_at, reason FROM feedback WHERE run_id = $1 AND task = $2 AND ask_key = $3")
            .bind(clean(run_id, 256))
            .bind(clean(task, 1024))
            .bind(clean(key, 64))
            .fetch_one(p)
            .await?;
        let state = state_of!(&row);
        let created = state.id == new_id;
        Ok((state, created))
    })
}

/// Where request `id` stands; `None` when there is no such request.
pub(crate) async fn state(pool: &Pool, id: &str) -> Result<Option<FeedbackState>, sqlx::Error> {
    with_pool!(pool, p => {
        let row = sqlx::query("SELECT id, status, answer, answered_by, answered_at, reason FROM feedback WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await?;
        Ok(row.map(|row| state_of!(&row)))
    })
}

/// Request `id`, whole.
pub(crate) async fn request(pool: &Pool, id: &str) -> Result<Option<Stored>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM feedback WHERE id = $1");
    with_pool!(pool, p => {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(p).await?;
        Ok(row.map(|row| stored_of!(&row)))
    })
}

/// The requests, newest first: the open ones only, or all; at most `limit`.
pub(crate) async fn list(
    pool: &Pool,
    open_only: bool,
    limit: u32,
) -> Result<Vec<FeedbackInfo>, sqlx::Error> {
    let filter = if open_only {
        "WHERE status = 'open'"
    } else {
        ""
    };
    let sql =
        format!("SELECT {COLUMNS} FROM feedback {filter} ORDER BY asked_at DESC, id LIMIT $1");
    with_pool!(pool, p => {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(i64::from(limit)).fetch_all(p).await?;
        Ok(rows.iter().map(|row| stored_of!(row).info).collect())
    })
}

/// Answers request `id` if it is still open: whether this answer won.
pub(crate) async fn answer(
    pool: &Pool,
    id: &str,
    answer: &FeedbackAnswer,
) -> Result<bool, sqlx::Error> {
    let json = answer.value.to_string();
    with_pool!(pool, p => {
        let done = sqlx::query("UPDATE feedback SET status = 'answered', answer = $1, answered_by = $2, answered_at = $3 WHERE id = $4 AND status = 'open'")
            .bind(json)
            .bind(clean(&answer.by, 256))
            .bind(micros(answer.at))
            .bind(id)
            .execute(p)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Cancels request `id` if it is still open: whether it was.
pub(crate) async fn cancel(
    pool: &Pool,
    id: &str,
    reason: &str,
    by: &str,
) -> Result<bool, sqlx::Error> {
    with_pool!(pool, p => {
        let done = sqlx::query("UPDATE feedback SET status = 'cancelled', reason = $1, answered_by = $2, answered_at = $3 WHERE id = $4 AND status = 'open'")
            .bind(clean(reason, 4096))
            .bind(clean(by, 256))
            .bind(micros(SystemTime::now()))
            .bind(id)
            .execute(p)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

fn status_of(
    status: Option<String>,
    answer: Option<String>,
    by: Option<String>,
    at: Option<i64>,
    reason: Option<String>,
) -> FeedbackStatus {
    let by = by.unwrap_or_default();
    match status.as_deref() {
        Some("open") => FeedbackStatus::Open,
        Some("answered") => match answer.as_deref().map(serde_json::from_str) {
            Some(Ok(value)) => {
                let mut answer = FeedbackAnswer::new(value, by);
                answer.at = time_of(at).unwrap_or(SystemTime::UNIX_EPOCH);
                FeedbackStatus::Answered(answer)
            }
            _ => FeedbackStatus::Cancelled {
                reason: "its stored answer cannot be read".to_owned(),
                by,
            },
        },
        Some("cancelled") => FeedbackStatus::Cancelled {
            reason: reason.unwrap_or_default(),
            by,
        },
        other => FeedbackStatus::Cancelled {
            reason: format!(
                "the store says its status is {other:?}, which this program does not know"
            ),
            by,
        },
    }
}
