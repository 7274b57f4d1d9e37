//! Whether a job's engine is gone: its liveness key absent for [`ENGINE_GRACE`].

use std::sync::PoisonError;
use std::time::Instant;

use super::state::State;
use crate::keys::ENGINE_GRACE;

/// Whether the engine whose liveness key is `key` is gone: the key absent now and still absent
/// [`ENGINE_GRACE`] after this worker first found it so (more than two of the engine's refresh
/// periods: an engine whose key Redis lost writes it again meanwhile). In doubt (Redis does not
/// answer), the engine lives.
pub(super) async fn engine_gone(state: &State, key: &str) -> bool {
    let mut conn = state.conn.clone();
    loop {
        let exists: redis::RedisResult<bool> =
            redis::cmd("EXISTS").arg(key).query_async(&mut conn).await;
        let waited = {
            let mut absent = state.absent.lock().unwrap_or_else(PoisonError::into_inner);
            match exists {
                Ok(true) => {
                    absent.remove(key);
                    return false;
                }
                Ok(false) => {}
                Err(_) => return false,
            }
            // An absence seen long ago, with nothing seen since, proves nothing now.
            absent.retain(|_, since| since.elapsed() < ENGINE_GRACE * 4);
            absent
                .entry(key.to_owned())
                .or_insert_with(Instant::now)
                .elapsed()
        };
        if waited >= ENGINE_GRACE {
            return true;
        }
        tokio::time::sleep(ENGINE_GRACE.saturating_sub(waited)).await;
    }
}
