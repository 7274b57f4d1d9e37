//! Reading runs: the latest, one whole, deleting old ones, a run's checkpoint. Every row is
//! read as hostile: a value of the wrong type or out of range fails only this request, or
//! reads as absent.

use std::time::{Duration, SystemTime};

// AssertSqlSafe: the only SQL built at run time is made of this file's constants.
use sqlx::{AssertSqlSafe, Row};

use super::liveness::judge;
use super::model::{
    AttemptDetail, EventLine, LogLine, RunDetail, RunStatus, RunSummary, TaskDetail, WorkerAttempt,
    time_of,
};
use crate::db::{Pool, with_pool};
use crate::write::rec::micros;

const RUN_COLUMNS: &str = "id, workflow, status, started_at, ended_at, heartbeat_at, host, pid, process_start, pid_ns, \
     tasks_total, tasks_succeeded, tasks_failed, error, checkpoint, records_lost, program, fingerprint, build_id, user_name, resumed";

/// Reads a column, `None` when it is NULL or of another type.
macro_rules! get {
    ($row:expr, $col:literal) => {
        $row.try_get::<Option<_>, _>($col).ok().flatten()
    };
}

fn count(value: Option<i64>) -> u64 {
    value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

/// A run's summary and the columns only its detail shows.
macro_rules! summary_of {
    ($row:expr) => {{
        let row = $row;
        let status: String = get!(row, "status").unwrap_or_default();
        let host: String = get!(row, "host").unwrap_or_default();
        let pid: i64 = get!(row, "pid").unwrap_or(0);
        let started: Option<i64> = get!(row, "started_at");
        let ended: Option<i64> = get!(row, "ended_at");
        let pid_ns: Option<String> = get!(row, "pid_ns");
        let status = judge(
            &status,
            (&host, pid_ns.as_deref()),
            pid,
            get!(row, "process_start"),
            get!(row, "heartbeat_at"),
        );
        let ended = if status == RunStatus::Running || status == RunStatus::Lost {
            None
        } else {
            ended
        };
        let duration_ms = match (started, ended) {
            (Some(s), Some(e)) => u64::try_from(e.saturating_sub(s) / 1000).ok(),
            (Some(s), None) if status == RunStatus::Running => {
                u64::try_from(micros(SystemTime::now()).saturating_sub(s) / 1000).ok()
            }
            _ => None,
        };
        (
            RunSummary {
                id: get!(row, "id").unwrap_or_default(),
                workflow: get!(row, "workflow").unwrap_or_default(),
                status,
                started_at: time_of(started),
                ended_at: time_of(ended),
                duration_ms,
                tasks_total: count(get!(row, "tasks_total")),
                tasks_succeeded: count(get!(row, "tasks_succeeded")),
                tasks_failed: count(get!(row, "tasks_failed")),
                error: get!(row, "error"),
                program: get!(row, "program").unwrap_or_default(),
                host,
                pid,
                checkpoint: get!(row, "checkpoint"),
                records_lost: count(get!(row, "records_lost")),
            },
            (
                get!(row, "fingerprint").unwrap_or_else(String::new),
                get!(row, "build_id").unwrap_or_else(String::new),
                get!(row, "user_name").unwrap_or_else(String::new),
                count(get!(row, "resumed")),
            ),
        )
    }};
}

/// The latest `limit` runs, newest first.
pub(crate) async fn runs(pool: &Pool, limit: u32) -> Result<Vec<RunSummary>, sqlx::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id LIMIT $1");
    with_pool!(pool, p => {
        let rows = sqlx::query(AssertSqlSafe(sql.as_str())).bind(i64::from(limit)).fetch_all(p).await?;
        Ok(rows.iter().map(|row| summary_of!(row).0).collect())
    })
}

/// Run `id` with everything recorded of it.
#[allow(clippy::too_many_lines)]
pub(crate) async fn run(pool: &Pool, id: &str) -> Result<Option<RunDetail>, sqlx::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
    with_pool!(pool, p => {
        let Some(row) = sqlx::query(AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(p).await? else {
            return Ok(None);
        };
        let (summary, (fingerprint, build_id, user, resumed)) = summary_of!(&row);
        let mut tasks: Vec<(i64, TaskDetail)> = Vec::new();
        for row in sqlx::query("SELECT node, id, handler, added_by, status, attempts FROM tasks WHERE run_id = $1 ORDER BY node")
            .bind(id).fetch_all(p).await?
        {
            let node: i64 = get!(row, "node").unwrap_or(-1);
            tasks.push((node, TaskDetail {
                id: get!(row, "id").unwrap_or_default(),
                handler: get!(row, "handler").unwrap_or_default(),
                status: get!(row, "status").unwrap_or_default(),
                attempts: count(get!(row, "attempts")),
                added_by: get!(row, "added_by"),
                tries: Vec::new(),
                worker_attempts: Vec::new(),
                logs: Vec::new(),
                logs_cut: (0, 0),
            }));
        }
        let index = |node: i64, tasks: &[(i64, TaskDetail)]| tasks.binary_search_by_key(&node, |(n, _)| *n).ok();
        for row in sqlx::query("SELECT node, attempt, runner, queued_at, started_at, ended_at, status, error_kind, error, result_size, result_preview FROM attempts WHERE run_id = $1 ORDER BY node, try_no")
            .bind(id).fetch_all(p).await?
        {
            let Some(i) = index(get!(row, "node").unwrap_or(-1), &tasks) else { continue };
            tasks[i].1.tries.push(AttemptDetail {
                attempt: count(get!(row, "attempt")),
                runner: get!(row, "runner"),
                queued_at: time_of(get!(row, "queued_at")),
                started_at: time_of(get!(row, "started_at")),
                ended_at: time_of(get!(row, "ended_at")),
                status: get!(row, "status").unwrap_or_default(),
                error_kind: get!(row, "error_kind"),
                error: get!(row, "error"),
                result_size: get!(row, "result_size").and_then(|s: i64| u64::try_from(s).ok()),
                result_preview: get!(row, "result_preview"),
            });
        }
        for row in sqlx::query("SELECT task, attempt, runner, started_at, ended_at, status, error FROM worker_attempts WHERE run_id = $1 ORDER BY started_at")
            .bind(id).fetch_all(p).await?
        {
            let task: String = get!(row, "task").unwrap_or_default();
            let Some(detail) = tasks.iter_mut().find(|(_, t)| t.id == task) else { continue };
            detail.1.worker_attempts.push(WorkerAttempt {
                attempt: count(get!(row, "attempt")),
                runner: get!(row, "runner").unwrap_or_default(),
                started_at: time_of(get!(row, "started_at")),
                ended_at: time_of(get!(row, "ended_at")),
                status: get!(row, "status").unwrap_or_default(),
                error: get!(row, "error"),
            });
        }
        for row in sqlx::query("SELECT node, attempt, at, line FROM logs WHERE run_id = $1 ORDER BY node, seq")
            .bind(id).fetch_all(p).await?
        {
            let Some(i) = index(get!(row, "node").unwrap_or(-1), &tasks) else { continue };
            tasks[i].1.logs.push(LogLine {
                attempt: count(get!(row, "attempt")),
                at: time_of(get!(row, "at")),
                line: get!(row, "line").unwrap_or_default(),
            });
        }
        for row in sqlx::query("SELECT node, lines_cut, bytes_cut FROM log_cuts WHERE run_id = $1")
            .bind(id).fetch_all(p).await?
        {
            let Some(i) = index(get!(row, "node").unwrap_or(-1), &tasks) else { continue };
            tasks[i].1.logs_cut = (count(get!(row, "lines_cut")), count(get!(row, "bytes_cut")));
        }
        let edges = sqlx::query("SELECT source, target FROM edges WHERE run_id = $1")
            .bind(id).fetch_all(p).await?
            .iter()
            .map(|row| (get!(row, "source").unwrap_or_default(), get!(row, "target").unwrap_or_default()))
            .collect();
        let events = sqlx::query("SELECT at, node, attempt, kind, detail FROM events WHERE run_id = $1 ORDER BY at, seq")
            .bind(id).fetch_all(p).await?
            .iter()
            .map(|row| EventLine {
                at: time_of(get!(row, "at")),
                task: get!(row, "node").and_then(|n: i64| index(n, &tasks)).map(|i| tasks[i].1.id.clone()),
                attempt: count(get!(row, "attempt")),
                kind: get!(row, "kind").unwrap_or_default(),
                detail: get!(row, "detail"),
            })
            .collect();
        Ok(Some(RunDetail {
            summary,
            fingerprint,
            build_id,
            user,
            resumed,
            tasks: tasks.into_iter().map(|(_, t)| t).collect(),
            edges,
            events,
        }))
    })
}

/// Deletes the runs that ended (or were lost) more than `older_than` ago, with everything
/// recorded of them (their requests for feedback too); their ids.
pub(crate) async fn prune(pool: &Pool, older_than: Duration) -> Result<Vec<String>, sqlx::Error> {
    let cutoff = micros(SystemTime::now())
        .saturating_sub(i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX));
    // A running run that has not written since the cutoff is lost (the cutoff is older than
    // the heartbeat's period for any duration worth pruning).
    let lost_cutoff = cutoff.min(
        micros(SystemTime::now())
            - i64::try_from(super::liveness::LOST_AFTER.as_micros()).unwrap_or(0),
    );
    with_pool!(pool, p => {
        let mut tx = p.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE ((status NOT IN ('running', 'waiting') AND COALESCE(ended_at, started_at) < $1) \
             OR (status = 'running' AND heartbeat_at < $2)) \
             AND id NOT IN (SELECT run_id FROM feedback WHERE status = 'open')",
        )
        .bind(cutoff)
        .bind(lost_cutoff)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            for table in ["tasks", "edges", "attempts", "worker_attempts", "events", "logs", "log_cuts", "feedback"] {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE run_id = $1"))).bind(id).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM runs WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        // Rows of no run (a worker's attempts of a run recorded elsewhere, records of a run
        // whose start was lost) go with the runs of their age.
        for (table, time) in [("worker_attempts", "ended_at"), ("events", "at"), ("logs", "at")] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE {time} < $1 AND run_id NOT IN (SELECT id FROM runs)"
            )))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    })
}

/// Where run `id` writes its checkpoints: `Ok(None)` when it is not in the store,
/// `Ok(Some(None))` when it writes none.
pub(crate) async fn checkpoint(
    pool: &Pool,
    id: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    with_pool!(pool, p => {
        let row = sqlx::query("SELECT checkpoint FROM runs WHERE id = $1").bind(id).fetch_optional(p).await?;
        Ok(row.map(|row| get!(row, "checkpoint")))
    })
}
