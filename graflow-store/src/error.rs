//! [`StoreError`]: what went wrong with a store, which store, and a kind code can match.

use graflow_core::record::{RecordError, RecordErrorKind};

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store cannot be reached or written now (server down, file locked, disk full,
    /// directory read-only). Trying again later may pass.
    Unavailable,
    /// The file or database is not a graflow store this program can use: not a database, or
    /// damaged. Not retried.
    Corrupt,
    /// The store's schema is newer than this program's: it was refused and not written. Use a
    /// newer program, or another store.
    NewerSchema,
    /// `GRAFLOW_STORE` (or the location given in code) cannot be read.
    InvalidLocation,
    /// What was asked for is not in the store.
    NotFound,
}

/// A store could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("run store {store}: {message}")]
pub struct StoreError {
    /// The store (`sqlite:/path`, `postgres://host/db`: never a password).
    pub store: String,
    /// What went wrong, and what to do.
    pub message: String,
    /// What kind of failure it is.
    pub kind: StoreErrorKind,
}

impl StoreError {
    pub(crate) fn new(store: &str, kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            store: store.to_owned(),
            message: message.into(),
            kind,
        }
    }

    /// A driver error, classified.
    pub(crate) fn from_sqlx(store: &str, what: &str, error: &sqlx::Error) -> Self {
        let kind = match error {
            sqlx::Error::Database(db) => {
                // SQLite: "file is not a database" (26), "database disk image is malformed"
                // (11); anything else a database says is taken as passing.
                match db.code().as_deref() {
                    Some("26" | "11") => StoreErrorKind::Corrupt,
                    _ => StoreErrorKind::Unavailable,
                }
            }
            sqlx::Error::RowNotFound => StoreErrorKind::NotFound,
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Unavailable,
        };
        StoreError::new(store, kind, format!("{what}: {error}"))
    }

    /// Whether trying again later could pass.
    pub fn is_retryable(&self) -> bool {
        self.kind == StoreErrorKind::Unavailable
    }
}

impl From<StoreError> for RecordError {
    fn from(error: StoreError) -> Self {
        let kind = match error.kind {
            StoreErrorKind::Unavailable => RecordErrorKind::Unavailable,
            StoreErrorKind::NotFound => RecordErrorKind::NotFound,
            _ => RecordErrorKind::Unusable,
        };
        RecordError::new(error.store, kind, error.message)
    }
}
