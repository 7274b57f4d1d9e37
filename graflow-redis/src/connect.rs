//! Connections: a [`ConnectionManager`] per use (commands, blocking reads), each reconnecting
//! with exponential backoff after Redis restarts or the network drops; the first connection
//! fails fast, naming the URL.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::RedisError;
use crate::keys::redact;

/// How long the first connection may take before [`RedisError::Unreachable`].
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to `url`. `response_timeout` bounds each command (a blocking read needs more
/// than its own BLOCK time).
pub(crate) async fn connect(
    url: &str,
    response_timeout: Duration,
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
    let client = redis::Client::open(info).map_err(bad_url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2));
    let connecting = ConnectionManager::new_with_config(client, config);
    match tokio::time::timeout(CONNECT_TIMEOUT * 3, connecting).await {
        Ok(Ok(manager)) => Ok(manager),
        Ok(Err(source)) => Err(RedisError::Unreachable {
            url: redact(url),
            source,
        }),
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

/// Exponential backoff for retry loops: 50 ms doubling to 2 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Self {
        Backoff(Duration::from_millis(50))
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(2));
    }

    pub fn reset(&mut self) {
        self.0 = Duration::from_millis(50);
    }
}
