//! The database: one pool of either backend, opened and migrated (a newer schema refused before
//! anything is written). The same SQL runs on both: [`with_pool!`] expands a body once per
//! backend.

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{StoreError, StoreErrorKind};
use crate::location::Location;

/// The schema's migrations, embedded in the binary (`migrations/`, the same SQL for both).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a writer waits for another's lock on a SQLite file before it gives up (the
/// records stay buffered and are tried again).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening or borrowing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open store's connections.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the pool of either backend (the body is compiled for each).
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::db::Pool::Sqlite($p) => $body,
            $crate::db::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// The newest schema version this program knows.
pub(crate) fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Opens the store at `location` and brings its schema up to date; a store of a newer schema
/// is refused without being written.
pub(crate) async fn open(location: &Location) -> Result<Pool, StoreError> {
    let name = location.to_string();
    // Programs that open one SQLite file at once open and migrate it one at a time: switching
    // a new file to WAL takes a lock that a busy timeout does not wait for, and each migration
    // is one program's (PostgreSQL's migrations hold an advisory lock of their own).
    let mut held = None;
    let pool = match location {
        Location::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::new(
                        &name,
                        StoreErrorKind::Unavailable,
                        format!("cannot create its directory {}: {e}", dir.display()),
                    )
                })?;
            }
            held = lock_beside(path).await;
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(BUSY_TIMEOUT);
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(CONNECT_TIMEOUT + BUSY_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| StoreError::from_sqlx(&name, "cannot open it", &e))?;
            Pool::Sqlite(pool)
        }
        Location::Postgres(url) => {
            let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
                StoreError::new(
                    &name,
                    StoreErrorKind::InvalidLocation,
                    format!("not a PostgreSQL URL: {e}"),
                )
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(CONNECT_TIMEOUT)
                // A statement or lock that hangs fails its batch (tried again later) instead of
                // stalling the writer.
                .connect_with(
                    options
                        .application_name("graflow")
                        .options([("statement_timeout", "30s"), ("lock_timeout", "10s")]),
                )
                .await
                .map_err(|e| StoreError::from_sqlx(&name, "cannot connect", &e))?;
            Pool::Postgres(pool)
        }
    };
    refuse_newer(&pool, &name).await?;
    with_pool!(&pool, p => MIGRATOR.run(p).await).map_err(|e| match e {
        MigrateError::VersionMissing(version) => newer(&name, version),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            StoreError::from_sqlx(&name, "cannot migrate its schema", &e)
        }
        other => StoreError::new(
            &name,
            StoreErrorKind::Corrupt,
            format!("cannot migrate its schema: {other}"),
        ),
    })?;
    // Opened and migrated: the next program may.
    drop(held);
    Ok(pool)
}

/// An exclusive `flock` on `PATH.lock` beside the SQLite file, held while the file is opened
/// and migrated; `None` when the lock file cannot be made (a read-only directory: opening fails
/// anyway, or the file is migrated already).
async fn lock_beside(path: &std::path::Path) -> Option<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::PathBuf::from(name))
        .ok()?;
    // Another program migrating takes well under a second; a lock held longer (a stuck
    // program) is not waited for: migrating then fails or finds the schema done.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        use std::os::fd::AsRawFd as _;
        // SAFETY: the descriptor is open for the duration of the call; the lock goes with it.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Some(file);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private SQLite database in memory, migrated: for the fuzz target and property tests.
#[cfg(any(fuzzing, test))]
pub(crate) async fn open_memory() -> Result<Pool, StoreError> {
    let name = "sqlite::memory:";
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().in_memory(true))
        .await
        .map_err(|e| StoreError::from_sqlx(name, "cannot open it", &e))?;
    let pool = Pool::Sqlite(pool);
    with_pool!(&pool, p => MIGRATOR.run(p).await)
        .map_err(|e| StoreError::new(name, StoreErrorKind::Corrupt, e.to_string()))?;
    Ok(pool)
}

/// Refuses a store whose newest applied migration this program does not know.
async fn refuse_newer(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let newest: Result<Option<i64>, sqlx::Error> = with_pool!(pool, p => {
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(p)
            .await
    });
    match newest {
        Ok(Some(version)) if version > schema_version() => Err(newer(name, version)),
        Ok(_) => Ok(()),
        // No migrations table yet: a new store (or not a database, which migrating says).
        Err(sqlx::Error::Database(e)) if is_missing_table(e.message()) => Ok(()),
        Err(e) => Err(StoreError::from_sqlx(
            name,
            "cannot read its schema version",
            &e,
        )),
    }
}

fn is_missing_table(message: &str) -> bool {
    message.contains("no such table") || message.contains("does not exist")
}

fn newer(name: &str, version: i64) -> StoreError {
    StoreError::new(
        name,
        StoreErrorKind::NewerSchema,
        format!(
            "its schema (version {version}) is newer than this program's (version {}); it was not written: use a newer graflow, or another store (GRAFLOW_STORE)",
            schema_version()
        ),
    )
}
