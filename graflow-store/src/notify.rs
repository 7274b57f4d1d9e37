//! Notifications of human feedback: an HTTP POST of a JSON document to the webhook
//! `GRAFLOW_FEEDBACK_WEBHOOK` names when a request is made, answered, cancelled or given up on
//! (its task stopped waiting), signed with HMAC-SHA256 when `GRAFLOW_FEEDBACK_WEBHOOK_SECRET`
//! is set, tried again on failure. A receiver that is down never affects a run: each delivery
//! is tried [`ATTEMPTS`] times, then given up with a warning. The program's exit waits for
//! deliveries under way (within the store's exit wait).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hmac::{KeyInit, Mac};

/// The webhook's URL.
pub const WEBHOOK_ENV: &str = "GRAFLOW_FEEDBACK_WEBHOOK";
/// The secret the body is signed with (`X-Graflow-Signature`).
pub const SECRET_ENV: &str = "GRAFLOW_FEEDBACK_WEBHOOK_SECRET";
/// How many times one notification is tried.
pub const ATTEMPTS: u32 = 4;
/// How long one try may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where notifications go.
struct Hook {
    url: String,
    secret: Option<Vec<u8>>,
    client: reqwest::Client,
}

fn hook() -> Option<&'static Hook> {
    static HOOK: OnceLock<Option<Hook>> = OnceLock::new();
    HOOK.get_or_init(|| {
        let url = std::env::var(WEBHOOK_ENV).ok().filter(|u| !u.trim().is_empty())?;
        let url = url.trim().to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            tracing::warn!(target: "graflow::store", "{WEBHOOK_ENV} is not an http:// or https:// URL; no feedback notifications are sent");
            return None;
        }
        let client = match reqwest::Client::builder()
            .timeout(TRY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(target: "graflow::store", "cannot make an HTTP client for {WEBHOOK_ENV}: {e}; no feedback notifications are sent");
                return None;
            }
        };
        let secret = std::env::var(SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes);
        Some(Hook {
            url,
            secret,
            client,
        })
    })
    .as_ref()
}

/// The signature of `body` sent at `timestamp`: hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deliveries under way.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static IDLE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// Whether notifications are sent at all (a webhook is configured and usable).
pub(crate) fn enabled() -> bool {
    hook().is_some()
}

/// A delivery under way, counted while it lives (the exit waits for it): for one prepared in
/// the background before it is sent.
pub(crate) struct Held(());

impl Held {
    pub(crate) fn new() -> Held {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Held(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        IDLE.1.notify_all();
    }
}

/// Sends `event` (`feedback.created`, `feedback.answered`, ...) about a request, described by
/// `document`, in the background; nothing when no webhook is configured.
pub(crate) fn send(event: &'static str, document: serde_json::Value) {
    let Some(hook) = hook() else {
        return;
    };
    let Ok(runtime) = graflow_core::backend::background() else {
        return;
    };
    let held = Held::new();
    runtime.spawn(async move {
        deliver(hook, event, document).await;
        drop(held);
    });
}

async fn deliver(hook: &Hook, event: &'static str, mut document: serde_json::Value) {
    if let Some(object) = document.as_object_mut() {
        object.insert("event".to_owned(), event.into());
    }
    let body = document.to_string();
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = hook
            .client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("user-agent", "graflow")
            .header("x-graflow-event", event)
            .header("x-graflow-timestamp", timestamp.to_string());
        if let Some(secret) = &hook.secret {
            request = request.header(
                "x-graflow-signature",
                format!("sha256={}", signature(secret, timestamp, body.as_bytes())),
            );
        }
        match request.body(body.clone()).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(target: "graflow::store", event, attempt, status = %response.status(), "the feedback webhook refused a notification")
            }
            Err(error) => {
                tracing::warn!(target: "graflow::store", event, attempt, error = %error, "the feedback webhook could not be reached")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    tracing::warn!(target: "graflow::store", event, "the feedback webhook did not take a notification after {ATTEMPTS} tries; it is dropped");
}

/// Waits until no delivery is under way, at most until `deadline` (the program's exit).
pub(crate) fn wait_idle(deadline: Instant) {
    let mut guard = IDLE.0.lock().unwrap_or_else(PoisonError::into_inner);
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        guard = match IDLE
            .1
            .wait_timeout(guard, left.min(Duration::from_millis(100)))
        {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'key', b'1.{}', hashlib.sha256).hexdigest())"
        let sig = super::signature(b"key", 1, b"{}");
        assert_eq!(
            sig,
            "1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(sig, super::signature(b"key", 2, b"{}"));
        assert_ne!(sig, super::signature(b"other", 1, b"{}"));
    }
}
