//! Where a store is: `GRAFLOW_STORE` (`sqlite:PATH`, `postgres://...`, `off`), defaulting to
//! `sqlite:$GRAFLOW_HOME/runs.db` with `GRAFLOW_HOME` defaulting to `~/.graflow`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{StoreError, StoreErrorKind};

/// The environment variable that says where runs are recorded.
pub const STORE_ENV: &str = "GRAFLOW_STORE";
/// The directory of graflow's own files (the default store); `~/.graflow` when unset.
pub const HOME_ENV: &str = "GRAFLOW_HOME";
/// Set to `1` (or `true`), a store that cannot record a run fails the run instead of warning.
pub const REQUIRED_ENV: &str = "GRAFLOW_STORE_REQUIRED";

/// Where a store is.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created with its directory when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user:password@host:port/database?...`).
    Postgres(String),
}

impl Location {
    /// Reads `text` as `GRAFLOW_STORE` says: `sqlite:PATH`, `postgres://...` (or
    /// `postgresql://...`); `off` is `None`.
    pub fn parse(text: &str) -> Result<Option<Location>, StoreError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(invalid(
                    text,
                    "sqlite: needs a path (sqlite:/var/lib/graflow/runs.db)",
                ));
            }
            return Ok(Some(Location::Sqlite(PathBuf::from(path))));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Some(Location::Postgres(text.to_owned())));
        }
        Err(invalid(
            text,
            "expected sqlite:PATH, postgres://USER@HOST:PORT/DATABASE, or off",
        ))
    }

    /// Where `GRAFLOW_STORE` says (the default when unset); `None`: off.
    pub fn from_env() -> Result<Option<Location>, StoreError> {
        match std::env::var(STORE_ENV) {
            Ok(text) if !text.trim().is_empty() => Location::parse(&text),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(Some(Location::default_sqlite()?)),
            Err(std::env::VarError::NotUnicode(_)) => Err(StoreError::new(
                STORE_ENV,
                StoreErrorKind::InvalidLocation,
                format!("{STORE_ENV} is not UTF-8"),
            )),
        }
    }

    /// `$GRAFLOW_HOME/runs.db`, `GRAFLOW_HOME` defaulting to `~/.graflow`.
    pub fn default_sqlite() -> Result<Location, StoreError> {
        let home = match std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home),
            None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                Some(home) => PathBuf::from(home).join(".graflow"),
                None => {
                    return Err(StoreError::new(
                        STORE_ENV,
                        StoreErrorKind::InvalidLocation,
                        format!(
                            "neither {HOME_ENV} nor HOME is set: set {STORE_ENV}=sqlite:PATH, or {STORE_ENV}=off"
                        ),
                    ));
                }
            },
        };
        Ok(Location::Sqlite(home.join("runs.db")))
    }
}

/// How it is named in messages: the path, or the URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Location::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn invalid(text: &str, what: &str) -> StoreError {
    StoreError::new(
        &without_password(text),
        StoreErrorKind::InvalidLocation,
        format!("{STORE_ENV}: {what}"),
    )
}

/// `scheme://user:secret@host/...?password=secret` → `scheme://user:***@host/...?password=***`.
fn without_password(url: &str) -> String {
    let url = without_userinfo_password(url);
    let Some((head, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}?{}", query.join("&"))
}

fn without_userinfo_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_never_print_a_password() {
        assert_eq!(Location::parse("off").ok(), Some(None));
        assert_eq!(
            Location::parse("sqlite:/tmp/x.db").ok(),
            Some(Some(Location::Sqlite("/tmp/x.db".into())))
        );
        let pg = Location::parse("postgres://me:s3cret@db:5432/runs")
            .ok()
            .flatten();
        let shown = pg.map(|l| l.to_string()).unwrap_or_default();
        assert_eq!(shown, "postgres://me:***@db:5432/runs");
        let error = Location::parse("mysql://me:s3cret@db/x")
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| !e.contains("s3cret")));
        assert!(Location::parse("sqlite:").is_err());
        let query = Location::parse("postgres://me@db/runs?sslmode=require&password=s3cret")
            .ok()
            .flatten()
            .map(|l| l.to_string())
            .unwrap_or_default();
        assert_eq!(query, "postgres://me@db/runs?sslmode=require&password=***");
    }
}
