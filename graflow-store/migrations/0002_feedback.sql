-- Human feedback, schema 2: the requests tasks make, each answered at most once. The same SQL
-- for SQLite and PostgreSQL; times are microseconds since the Unix epoch (UTC).
CREATE TABLE feedback (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    workflow    TEXT NOT NULL,
    task        TEXT NOT NULL,
    ask_key     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    options     TEXT NOT NULL,
    schema_json TEXT,
    expected    TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    asked_at    BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    status      TEXT NOT NULL,
    answer      TEXT,
    answered_by TEXT,
    answered_at BIGINT,
    reason      TEXT,
    UNIQUE (run_id, task, ask_key)
);
CREATE INDEX feedback_by_status ON feedback (status, asked_at);
