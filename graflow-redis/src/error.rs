//! [`RedisError`]: what can go wrong setting up the "redis" handler or a worker.

/// An error of the "redis" handler or a worker, before any task runs (a task's own failures
/// are [`AttemptError`](graflow_core::AttemptError)s of that task).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL does not parse.
    #[error(
        "`{url}` is not a Redis URL ({source}); write it as redis://host:port/db, or rediss://host:port/db for TLS"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        #[source]
        source: redis::RedisError,
    },

    /// No Redis server answered at the URL.
    #[error(
        "cannot reach Redis at {url}: {source}; start redis-server there or pass the URL of one that runs"
    )]
    Unreachable {
        /// The URL (its password, if any, hidden).
        url: String,
        /// What the connection attempt said.
        #[source]
        source: redis::RedisError,
    },

    /// The server refused the credentials (a wrong or missing password or user).
    #[error(
        "Redis at {url} refused the credentials ({source}); check the password in the URL (redis://:password@host:port/db, or redis://user:password@host:port/db with an ACL user) against the server's requirepass or ACL"
    )]
    Credentials {
        /// The URL (its password, if any, hidden).
        url: String,
        /// What the server said.
        #[source]
        source: redis::RedisError,
    },

    /// The TLS handshake with the server failed (an untrusted or mismatched certificate, a
    /// client certificate required or refused, a server that does not speak TLS there).
    #[error(
        "the TLS handshake with Redis at {url} failed: {source}; check that the server speaks TLS on that port (--tls-port), that its certificate is signed by the CA you trust (GRAFLOW_REDIS_CA_CERT or TlsOptions::ca_cert; default: the system's roots) and names the host of the URL, and, if it requires client certificates (--tls-auth-clients), give one (GRAFLOW_REDIS_CLIENT_CERT and GRAFLOW_REDIS_CLIENT_KEY)"
    )]
    Tls {
        /// The URL (its password, if any, hidden).
        url: String,
        /// What the handshake said.
        #[source]
        source: redis::RedisError,
    },

    /// Redis answered a set-up command with an error.
    #[error("Redis at {url} refused to {what}: {source}")]
    Command {
        /// The URL (its password, if any, hidden).
        url: String,
        /// What was being set up.
        what: String,
        /// Redis's answer.
        #[source]
        source: redis::RedisError,
    },

    /// A setting is out of range or malformed (a queue name, a duration, a worker option).
    #[error("invalid {setting}: {message}")]
    Setting {
        /// Which setting.
        setting: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// The background runtime or a thread could not be started.
    #[error("cannot start the redis handler's I/O runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
