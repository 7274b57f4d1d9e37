//! Writing one [`Batch`] in one transaction: multi-row inserts and upserts, the same SQL on
//! both backends.

use sqlx::QueryBuilder;

use super::batch::Batch;
use super::rec::micros;
use crate::db::{Pool, with_pool};
use crate::host::me;
use crate::limits::{MAX_ERROR, MAX_NAME, clean};

/// Rows per statement (SQLite allows 32,766 parameters; the widest row has 13).
const CHUNK: usize = 1_000;

/// Writes `batch`; nothing of it when this fails.
#[allow(clippy::too_many_lines)]
pub(crate) async fn apply(pool: &Pool, batch: &mut Batch) -> Result<(), sqlx::Error> {
    let me = me();
    let now = micros(std::time::SystemTime::now());
    with_pool!(pool, p => {
        let mut tx = p.begin().await?;
        for run in &batch.begins {
            sqlx::query(
                "INSERT INTO runs (id, workflow, fingerprint, program, build_id, host, pid, process_start, user_name, started_at, heartbeat_at, status, checkpoint, resumed, tasks_total, pid_ns) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'running', $12, $13, $14, $15) \
                 ON CONFLICT (id) DO UPDATE SET program = excluded.program, build_id = excluded.build_id, host = excluded.host, pid = excluded.pid, \
                 process_start = excluded.process_start, pid_ns = excluded.pid_ns, user_name = excluded.user_name, heartbeat_at = excluded.heartbeat_at, status = 'running', \
                 ended_at = NULL, error = NULL, checkpoint = COALESCE(excluded.checkpoint, runs.checkpoint), resumed = runs.resumed + 1",
            )
            .bind(&*run.id)
            .bind(&run.workflow)
            .bind(&run.fingerprint)
            .bind(clean(&me.program, MAX_NAME))
            .bind(&run.build_id)
            .bind(clean(&me.host, MAX_NAME))
            .bind(i64::from(me.pid))
            .bind(me.started.map(|s| s as i64))
            .bind(clean(&me.user, MAX_NAME))
            .bind(run.started_at)
            .bind(now)
            .bind(run.checkpoint.as_deref())
            .bind(i64::from(run.resumed))
            .bind(run.tasks)
            .bind(me.pid_ns.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        for chunk in batch.new_tasks.chunks(CHUNK) {
            let mut q = QueryBuilder::new("INSERT INTO tasks (run_id, node, id, handler, added_by, status, attempts) ");
            q.push_values(chunk, |mut b, (run, node, t)| {
                b.push_bind(&**run).push_bind(*node).push_bind(&t.id).push_bind(&t.handler)
                    .push_bind(t.added_by.as_deref()).push_bind(t.status).push_bind(t.attempts);
            });
            q.push(" ON CONFLICT (run_id, node) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in batch.edges.chunks(CHUNK) {
            let mut q = QueryBuilder::new("INSERT INTO edges (run_id, source, target) ");
            q.push_values(chunk, |mut b, (run, a, z)| {
                b.push_bind(&**run).push_bind(a).push_bind(z);
            });
            q.build().execute(&mut *tx).await?;
        }
        let statuses: Vec<_> = batch.task_status.iter().collect();
        for chunk in statuses.chunks(CHUNK) {
            let mut q = QueryBuilder::new("INSERT INTO tasks (run_id, node, id, handler, added_by, status, attempts) ");
            q.push_values(chunk, |mut b, ((run, node), t)| {
                b.push_bind(&**run).push_bind(i64::from(*node)).push_bind(&t.id).push_bind(&t.handler)
                    .push_bind(t.added_by.as_deref()).push_bind(t.status).push_bind(t.attempts);
            });
            q.push(" ON CONFLICT (run_id, node) DO UPDATE SET status = excluded.status, attempts = CASE WHEN excluded.attempts > 0 THEN excluded.attempts ELSE tasks.attempts END");
            q.build().execute(&mut *tx).await?;
        }
        let attempts: Vec<_> = batch.attempts.iter().collect();
        for chunk in attempts.chunks(CHUNK) {
            let mut q = QueryBuilder::new("INSERT INTO attempts (run_id, node, try_no, attempt, runner, queued_at, started_at, ended_at, status, error_kind, error, result_size, result_preview) ");
            q.push_values(chunk, |mut b, ((run, node, try_no), a)| {
                b.push_bind(&**run).push_bind(i64::from(*node)).push_bind(i64::from(*try_no)).push_bind(a.attempt)
                    .push_bind(a.runner.as_deref()).push_bind(a.queued_at).push_bind(a.started_at).push_bind(a.ended_at)
                    .push_bind(a.status.unwrap_or("running")).push_bind(a.error_kind).push_bind(a.error.as_deref())
                    .push_bind(a.result_size).push_bind(a.result_preview.as_deref());
            });
            q.push(" ON CONFLICT (run_id, node, try_no) DO UPDATE SET attempt = excluded.attempt, \
                    runner = COALESCE(excluded.runner, attempts.runner), queued_at = COALESCE(excluded.queued_at, attempts.queued_at), \
                    started_at = COALESCE(excluded.started_at, attempts.started_at), ended_at = COALESCE(excluded.ended_at, attempts.ended_at), \
                    status = CASE WHEN excluded.ended_at IS NULL AND attempts.ended_at IS NOT NULL THEN attempts.status ELSE excluded.status END, \
                    error_kind = COALESCE(excluded.error_kind, attempts.error_kind), error = COALESCE(excluded.error, attempts.error), \
                    result_size = COALESCE(excluded.result_size, attempts.result_size), result_preview = COALESCE(excluded.result_preview, attempts.result_preview)");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in batch.events.chunks(CHUNK) {
            let mut q = QueryBuilder::new("INSERT INTO events (run_id, seq, at, node, attempt, kind, detail) ");
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&*e.run).push_bind(e.seq).push_bind(e.at).push_bind(e.node)
                    .push_bind(e.attempt).push_bind(e.kind).push_bind(e.detail.as_deref());
            });
            q.build().execute(&mut *tx).await?;
        }
        for chunk in batch.logs.chunks(CHUNK) {
            let mut q = QueryBuilder::new("INSERT INTO logs (run_id, node, seq, attempt, at, line) ");
            q.push_values(chunk, |mut b, l| {
                b.push_bind(&*l.run).push_bind(l.node).push_bind(l.seq).push_bind(l.attempt)
                    .push_bind(l.at).push_bind(&l.line);
            });
            q.build().execute(&mut *tx).await?;
        }
        for ((run, node), (lines, bytes)) in &batch.cuts {
            sqlx::query(
                "INSERT INTO log_cuts (run_id, node, lines_cut, bytes_cut) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, node) DO UPDATE SET lines_cut = log_cuts.lines_cut + excluded.lines_cut, bytes_cut = log_cuts.bytes_cut + excluded.bytes_cut",
            )
            .bind(&**run).bind(i64::from(*node)).bind(*lines).bind(*bytes)
            .execute(&mut *tx).await?;
        }
        for r in &batch.remote {
            sqlx::query(
                "INSERT INTO worker_attempts (run_id, task, attempt, runner, started_at, ended_at, status, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(clean(&r.run_id, MAX_NAME)).bind(clean(&r.task, MAX_NAME)).bind(i64::from(r.attempt))
            .bind(clean(&r.runner, MAX_NAME)).bind(micros(r.started_at)).bind(micros(r.ended_at))
            .bind(if r.succeeded { "succeeded" } else { "failed" })
            .bind(r.error.as_deref().map(|e| clean(e, MAX_ERROR)))
            .execute(&mut *tx).await?;
        }
        for end in &batch.ends {
            sqlx::query(
                "UPDATE runs SET status = $2, ended_at = $3, error = $4, heartbeat_at = $3, \
                 tasks_succeeded = CASE WHEN $5 >= 0 THEN $5 ELSE tasks_succeeded END, \
                 tasks_failed = CASE WHEN $6 >= 0 THEN $6 ELSE tasks_failed END, \
                 tasks_total = CASE WHEN $7 >= 0 THEN $7 ELSE tasks_total END WHERE id = $1",
            )
            .bind(&*end.id).bind(end.status).bind(end.ended_at).bind(end.error.as_deref())
            .bind(end.succeeded).bind(end.failed).bind(end.total)
            .execute(&mut *tx).await?;
        }
        for (run, count) in &batch.lost {
            sqlx::query("UPDATE runs SET records_lost = records_lost + $2 WHERE id = $1")
                .bind(&**run).bind(i64::try_from(*count).unwrap_or(i64::MAX))
                .execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// The highest try of each task of resumed run `run` already stored.
pub(crate) async fn stored_tries(pool: &Pool, run: &str) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    with_pool!(pool, p => {
        sqlx::query_as("SELECT node, MAX(try_no) FROM attempts WHERE run_id = $1 GROUP BY node")
            .bind(run)
            .fetch_all(p)
            .await
    })
}

/// Tells readers the runs `ids` are alive (their process writes them).
pub(crate) async fn heartbeat(pool: &Pool, ids: &[std::sync::Arc<str>]) -> Result<(), sqlx::Error> {
    let now = micros(std::time::SystemTime::now());
    with_pool!(pool, p => {
        for id in ids {
            sqlx::query("UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'running'")
                .bind(now)
                .bind(&**id)
                .execute(p)
                .await?;
        }
        Ok(())
    })
}
