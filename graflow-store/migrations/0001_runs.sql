-- Run history, schema 1: the same SQL for SQLite and PostgreSQL. Times are microseconds since
-- the Unix epoch (UTC). An applied migration is never edited, only followed by a new one.
CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    program         TEXT NOT NULL,
    build_id        TEXT NOT NULL,
    host            TEXT NOT NULL,
    pid             BIGINT NOT NULL,
    process_start   BIGINT,
    pid_ns          TEXT,
    user_name       TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    heartbeat_at    BIGINT NOT NULL,
    status          TEXT NOT NULL,
    error           TEXT,
    checkpoint      TEXT,
    resumed         BIGINT NOT NULL DEFAULT 0,
    tasks_total     BIGINT NOT NULL DEFAULT 0,
    tasks_succeeded BIGINT NOT NULL DEFAULT 0,
    tasks_failed    BIGINT NOT NULL DEFAULT 0,
    records_lost    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_start ON runs (started_at DESC);

CREATE TABLE tasks (
    run_id   TEXT NOT NULL,
    node     BIGINT NOT NULL,
    id       TEXT NOT NULL,
    handler  TEXT NOT NULL,
    added_by TEXT,
    status   TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, node)
);

CREATE TABLE edges (
    run_id TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX edges_by_run ON edges (run_id);

CREATE TABLE attempts (
    run_id         TEXT NOT NULL,
    node           BIGINT NOT NULL,
    try_no         BIGINT NOT NULL,
    attempt        BIGINT NOT NULL,
    runner         TEXT,
    queued_at      BIGINT,
    started_at     BIGINT,
    ended_at       BIGINT,
    status         TEXT NOT NULL,
    error_kind     TEXT,
    error          TEXT,
    result_size    BIGINT,
    result_preview TEXT,
    PRIMARY KEY (run_id, node, try_no)
);

CREATE TABLE worker_attempts (
    run_id     TEXT NOT NULL,
    task       TEXT NOT NULL,
    attempt    BIGINT NOT NULL,
    runner     TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at   BIGINT NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT
);
CREATE INDEX worker_attempts_by_run ON worker_attempts (run_id);

CREATE TABLE events (
    run_id  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    node    BIGINT,
    attempt BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX events_by_run ON events (run_id, seq);

CREATE TABLE logs (
    run_id  TEXT NOT NULL,
    node    BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    line    TEXT NOT NULL
);
CREATE INDEX logs_by_run ON logs (run_id, node, seq);

CREATE TABLE log_cuts (
    run_id     TEXT NOT NULL,
    node       BIGINT NOT NULL,
    lines_cut  BIGINT NOT NULL,
    bytes_cut  BIGINT NOT NULL,
    PRIMARY KEY (run_id, node)
);
