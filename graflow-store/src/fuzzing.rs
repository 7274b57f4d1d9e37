//! What the fuzz target `store_rows` and the crate's property tests drive: a store whose
//! every column holds anything (SQLite keeps whatever a column is given: text in a time, a
//! blob in a status, a negative count, NULL where the schema says NOT NULL is refused and
//! skipped), read back with the queries `--graflow-runs` and `--graflow-run` use. Reading
//! may fail the request; it must never panic.

use crate::db::{Pool, open_memory};
use crate::read::query;

/// One value of a hostile row.
#[derive(Debug, Clone)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Cell {
    /// Cells from fuzz bytes: a tag byte, then the cell's bytes (a length byte first for text
    /// and blobs).
    pub fn decode(mut data: &[u8]) -> Vec<Cell> {
        let mut cells = Vec::new();
        while let Some((&tag, rest)) = data.split_first() {
            data = rest;
            let take = |data: &mut &[u8], n: usize| {
                let n = n.min(data.len());
                let (head, tail) = data.split_at(n);
                *data = tail;
                head.to_vec()
            };
            let cell = match tag % 5 {
                0 => Cell::Null,
                1 => {
                    let mut bytes = [0u8; 8];
                    let got = take(&mut data, 8);
                    bytes[..got.len()].copy_from_slice(&got);
                    Cell::Int(i64::from_le_bytes(bytes))
                }
                2 => {
                    let mut bytes = [0u8; 8];
                    let got = take(&mut data, 8);
                    bytes[..got.len()].copy_from_slice(&got);
                    Cell::Real(f64::from_le_bytes(bytes))
                }
                3 => {
                    let len = take(&mut data, 1).first().copied().unwrap_or(0) as usize;
                    Cell::Text(String::from_utf8_lossy(&take(&mut data, len)).into_owned())
                }
                _ => {
                    let len = take(&mut data, 1).first().copied().unwrap_or(0) as usize;
                    Cell::Blob(take(&mut data, len))
                }
            };
            cells.push(cell);
        }
        cells
    }
}

/// Every table and its columns, as the schema has them.
const TABLES: &[(&str, &[&str])] = &[
    (
        "runs",
        &[
            "id",
            "workflow",
            "fingerprint",
            "program",
            "build_id",
            "host",
            "pid",
            "process_start",
            "pid_ns",
            "user_name",
            "started_at",
            "ended_at",
            "heartbeat_at",
            "status",
            "error",
            "checkpoint",
            "resumed",
            "tasks_total",
            "tasks_succeeded",
            "tasks_failed",
            "records_lost",
        ],
    ),
    (
        "tasks",
        &[
            "run_id", "node", "id", "handler", "added_by", "status", "attempts",
        ],
    ),
    (
        "attempts",
        &[
            "run_id",
            "node",
            "try_no",
            "attempt",
            "runner",
            "queued_at",
            "started_at",
            "ended_at",
            "status",
            "error_kind",
            "error",
            "result_size",
            "result_preview",
        ],
    ),
    (
        "worker_attempts",
        &[
            "run_id",
            "task",
            "attempt",
            "runner",
            "started_at",
            "ended_at",
            "status",
            "error",
        ],
    ),
    (
        "events",
        &["run_id", "seq", "at", "node", "attempt", "kind", "detail"],
    ),
    ("logs", &["run_id", "node", "seq", "attempt", "at", "line"]),
    ("log_cuts", &["run_id", "node", "lines_cut", "bytes_cut"]),
    ("edges", &["run_id", "source", "target"]),
    (
        "feedback",
        &[
            "id",
            "run_id",
            "workflow",
            "task",
            "ask_key",
            "kind",
            "prompt",
            "options",
            "schema_json",
            "expected",
            "metadata",
            "asked_at",
            "expires_at",
            "status",
            "answer",
            "answered_by",
            "answered_at",
            "reason",
        ],
    ),
];

/// Fills every table with rows made of `cells` (each row's run id `r` unless a cell says
/// otherwise), then reads the latest runs and run `r` back.
pub fn read_hostile_rows(cells: &[Cell]) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let Ok(pool) = open_memory().await else {
            return;
        };
        let mut next = cells.iter().cycle();
        for rows in 0..3 {
            for (table, columns) in TABLES {
                insert(&pool, table, columns, rows, &mut next, !cells.is_empty()).await;
            }
        }
        let _ = query::runs(&pool, 100).await;
        let _ = query::run(&pool, "r").await;
        for cell in cells.iter().take(4) {
            if let Cell::Text(id) = cell {
                let _ = query::run(&pool, id).await;
            }
        }
        let _ = query::checkpoint(&pool, "r").await;
        let _ = crate::feedback::query::list(&pool, false, 100).await;
        let _ = crate::feedback::query::request(&pool, "r").await;
        let _ = crate::feedback::query::state(&pool, "r").await;
    });
}

async fn insert<'a>(
    pool: &Pool,
    table: &str,
    columns: &[&str],
    row: usize,
    cells: &mut impl Iterator<Item = &'a Cell>,
    any: bool,
) {
    let Pool::Sqlite(p) = pool else {
        return;
    };
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (i, _) in columns.iter().enumerate() {
        let cell = if any { cells.next().cloned() } else { None };
        // The first column is the run's id: `r` for the first row, so that run `r` has rows.
        let cell = match (i, row, cell) {
            (0, 0, _) => Cell::Text("r".to_owned()),
            (_, _, Some(cell)) => cell,
            (_, _, None) => Cell::Null,
        };
        query = match cell {
            Cell::Null => query.bind(None::<i64>),
            Cell::Int(v) => query.bind(v),
            Cell::Real(v) => query.bind(v),
            Cell::Text(v) => query.bind(v),
            Cell::Blob(v) => query.bind(v),
        };
    }
    let _ = query.execute(p).await;
}

/// An answer as a person types it, checked against a request of every kind (the kind, options
/// and schema made of the same bytes): an answer or a reason, never a panic.
pub fn answers(bytes: &[u8]) {
    use graflow_core::feedback::FeedbackKind;
    let text = String::from_utf8_lossy(bytes);
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(at, _)| at);
    let (schema, answer) = text.split_at(middle);
    let options: Vec<String> = answer.split(',').map(str::to_owned).collect();
    for kind in [
        FeedbackKind::Approval,
        FeedbackKind::Text,
        FeedbackKind::Selection,
        FeedbackKind::MultiSelection,
        FeedbackKind::Custom,
    ] {
        if let Ok(value) = crate::feedback::validate::parse_text(kind, answer) {
            let accepts = crate::feedback::validate::Accepts {
                kind,
                options: &options,
                schema: Some(schema),
                expected: "anything",
            };
            let _ = crate::feedback::validate::check(&accepts, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Cell, read_hostile_rows};
    use proptest::prelude::*;

    fn cell() -> impl Strategy<Value = Cell> {
        prop_oneof![
            Just(Cell::Null),
            any::<i64>().prop_map(Cell::Int),
            prop_oneof![
                Just(i64::MIN),
                Just(-1i64),
                Just(0),
                Just(i64::MAX),
                Just(253_402_300_800_000_000)
            ]
            .prop_map(Cell::Int),
            any::<f64>().prop_map(Cell::Real),
            ".{0,40}".prop_map(Cell::Text),
            prop_oneof![
                Just("running"),
                Just("succeeded"),
                Just("r"),
                Just("\0"),
                Just("")
            ]
            .prop_map(|s| Cell::Text(s.to_owned())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Cell::Blob),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn hostile_rows_read_back_without_a_panic(cells in proptest::collection::vec(cell(), 0..80)) {
            read_hostile_rows(&cells);
        }

        #[test]
        fn hostile_answers_are_checked_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            super::answers(&bytes);
        }
    }

    #[test]
    fn fuzz_bytes_decode_into_cells() {
        let cells = Cell::decode(&[0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 3, 2, b'h', b'i', 4, 9]);
        assert!(
            matches!(cells.as_slice(), [Cell::Null, Cell::Int(1), Cell::Text(t), Cell::Blob(_)] if t == "hi")
        );
    }
}
