//! Connections: a [`ConnectionManager`] per use (commands, blocking reads), each reconnecting
//! with exponential backoff after Redis restarts or the network drops; the first connection
//! fails fast, naming the URL, with advice for what failed (nothing listening, the
//! credentials, the TLS handshake). `rediss://` URLs connect with TLS (rustls), verified
//! against the system's roots or the CA of [`TlsOptions`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::RedisError;
use crate::keys::redact;

/// The environment variable naming a PEM file of the CA certificate(s) that sign the Redis
/// server's certificate (`rediss://` URLs), when [`TlsOptions::ca_cert`] is not set.
pub const CA_CERT_ENV: &str = "GRAFLOW_REDIS_CA_CERT";
/// The environment variable naming a PEM client certificate (chain), for servers that require
/// one (`--tls-auth-clients yes`), when [`TlsOptions::client_cert`] is not set.
pub const CLIENT_CERT_ENV: &str = "GRAFLOW_REDIS_CLIENT_CERT";
/// The environment variable naming the PEM private key of the client certificate, when
/// [`TlsOptions::client_key`] is not set.
pub const CLIENT_KEY_ENV: &str = "GRAFLOW_REDIS_CLIENT_KEY";

/// TLS settings for `rediss://` URLs, on an engine ([`RedisOptions::tls`](crate::RedisOptions))
/// or a worker ([`WorkerOptions::tls`](crate::WorkerOptions)). Each file left unset is taken
/// from its environment variable ([`CA_CERT_ENV`], [`CLIENT_CERT_ENV`], [`CLIENT_KEY_ENV`]), so
/// a worker in worker mode is configured by its environment. Without a CA, the server's
/// certificate is checked against the system's roots; a client certificate and its key come
/// together (mutual TLS). Ignored for `redis://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the CA certificate(s) the server's certificate must chain to (instead of the
    /// system's roots).
    pub ca_cert: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// No files: the system's roots, no client certificate (unless the environment says so).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the CA certificate file.
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Sets the client certificate and its key (mutual TLS).
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(cert.into());
        self.client_key = Some(key.into());
        self
    }

    /// The certificates to connect with: each file from the options, else its environment
    /// variable, read.
    fn certificates(&self) -> Result<redis::TlsCertificates, RedisError> {
        let pick = |set: &Option<PathBuf>, env: &str| {
            set.clone()
                .or_else(|| {
                    std::env::var_os(env)
                        .filter(|v| !v.is_empty())
                        .map(PathBuf::from)
                })
                .map(|path| (path, env.to_owned()))
        };
        let read = |(path, env): (PathBuf, String)| {
            std::fs::read(&path).map_err(|e| RedisError::Setting {
                setting: format!("TLS file ({env} or TlsOptions)"),
                message: format!("cannot read {}: {e}", path.display()),
            })
        };
        let ca = pick(&self.ca_cert, CA_CERT_ENV).map(read).transpose()?;
        let cert = pick(&self.client_cert, CLIENT_CERT_ENV);
        let key = pick(&self.client_key, CLIENT_KEY_ENV);
        let client_tls = match (cert, key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            (Some((path, _)), None) | (None, Some((path, _))) => {
                return Err(RedisError::Setting {
                    setting: "TLS client certificate".to_owned(),
                    message: format!(
                        "{} is given without its pair: set both the client certificate ({CLIENT_CERT_ENV}) and its key ({CLIENT_KEY_ENV}), or neither",
                        path.display()
                    ),
                });
            }
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert: ca,
        })
    }
}

/// Whether a URL asks for TLS.
fn is_tls(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
}

/// The error for a first connection that failed, with advice for what failed.
fn failed(url: &str, source: redis::RedisError) -> RedisError {
    let url = redact(url);
    if source.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(source.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        return RedisError::Credentials { url, source };
    }
    if source.is_connection_refusal() || source.is_timeout() || !is_tls(&url) {
        return RedisError::Unreachable { url, source };
    }
    RedisError::Tls { url, source }
}

/// Reads a PEM file's certificates, to check a CA file before connecting: a file that holds
/// none gives a clear setting error instead of a handshake failure.
fn check_pem(path: &Path) -> Result<(), RedisError> {
    let text = std::fs::read(path).map_err(|e| RedisError::Setting {
        setting: "TLS file".to_owned(),
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(RedisError::Setting {
            setting: "TLS file".to_owned(),
            message: format!("{} is not a PEM file", path.display()),
        });
    }
    Ok(())
}

/// How long the first connection may take before [`RedisError::Unreachable`].
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to `url`. `response_timeout` bounds each command (a blocking read needs more
/// than its own BLOCK time); `tls` applies to `rediss://` URLs.
pub(crate) async fn connect(
    url: &str,
    response_timeout: Duration,
    tls: &TlsOptions,
) -> Result<ConnectionManager, RedisError> {
    let bad_url = |source: redis::RedisError| RedisError::BadUrl {
        url: redact(url),
        source,
    };
    // No Nagle delay on small commands; and a connection whose sent bytes stay unacknowledged
    // for 10 s (a partition, a frozen host: TCP would retry for many minutes) is closed, so
    // that the manager reconnects instead of timing out every command on a dead socket.
    let info = redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(bad_url)?
        .set_tcp_settings(
            redis::io::tcp::TcpSettings::default()
                .set_nodelay(true)
                .set_user_timeout(Duration::from_secs(10)),
        );
    let client = if is_tls(url) {
        for path in [&tls.ca_cert, &tls.client_cert, &tls.client_key]
            .into_iter()
            .flatten()
        {
            check_pem(path)?;
        }
        redis::Client::build_with_tls(info, tls.certificates()?).map_err(|source| {
            RedisError::Setting {
                setting: "TLS certificates".to_owned(),
                message: format!(
                    "cannot use them for {}: {source} (each file must be PEM: the CA and client certificates as CERTIFICATE blocks, the key as a PRIVATE KEY block)",
                    redact(url)
                ),
            }
        })?
    } else {
        redis::Client::open(info).map_err(bad_url)?
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2));
    let tcp = match client.get_connection_info().addr() {
        redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    };
    let connecting = ConnectionManager::new_with_config(client, config);
    match tokio::time::timeout(CONNECT_TIMEOUT * 3, connecting).await {
        Ok(Ok(manager)) => Ok(manager),
        // A TLS handshake nobody answers times out like a server that is not there: a server
        // that accepts the connection but not the handshake is a plain (non-TLS) port.
        Ok(Err(source)) if source.is_timeout() && tcp.is_some() => {
            let (host, port) = tcp.unwrap_or_default();
            let accepts = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            .is_ok_and(|c| c.is_ok());
            if accepts {
                Err(RedisError::Tls {
                    url: redact(url),
                    source: redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no TLS handshake",
                        format!(
                            "{host}:{port} accepts connections but did not answer the TLS handshake within {CONNECT_TIMEOUT:?} (a plain, non-TLS port? then write redis://)"
                        ),
                    )),
                })
            } else {
                Err(failed(url, source))
            }
        }
        Ok(Err(source)) => Err(failed(url, source)),
        Err(_) => Err(RedisError::Unreachable {
            url: redact(url),
            source: redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer",
                format!("nothing answered within {:?}", CONNECT_TIMEOUT * 3),
            )),
        }),
    }
}

/// Creates a queue's consumer group (and its stream) unless it exists. The group starts at the
/// beginning of the stream: invocations queued before any worker started are served.
pub(crate) async fn ensure_group(
    conn: &mut ConnectionManager,
    url: &str,
    stream: &str,
) -> Result<(), RedisError> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(crate::keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(source) => Err(RedisError::Command {
            url: redact(url),
            what: format!("create the consumer group of `{stream}`"),
            source,
        }),
    }
}

/// Whether a command may succeed if tried again (Redis restarting, the connection dropped).
pub(crate) fn retryable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_connection_refusal()
        || matches!(error.code(), Some("LOADING" | "TRYAGAIN" | "BUSY"))
}

/// Exponential backoff for retry loops: 50 ms doubling to 2 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(50))
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
}
