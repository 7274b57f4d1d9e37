//! The background writer: takes what the event path buffered every 100 ms (sooner when much
//! waits or someone flushes), writes it in one transaction, and keeps it (bounded) while the
//! store does not answer. One per store, on graflow's background runtime.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::apply::{apply, heartbeat, stored_tries};
use super::batch::{Batch, RunMemory, absorb};
use super::rec::{Rec, RunKey};
use crate::db::{Pool, open};
use crate::error::StoreError;
use crate::limits::MAX_PENDING;
use crate::location::Location;

/// How often buffered records are written.
const TICK: Duration = Duration::from_millis(100);
/// How many buffered records wake the writer before its tick.
const WAKE_AT: usize = 65_536;
/// How often a running run's row says its process is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(10);
/// The longest a flush waits for the writer.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_secs(30);
/// The longest wait between two attempts to reach a store that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the event path and the writer share.
pub(crate) struct Shared {
    pub(crate) location: Location,
    pub(crate) name: String,
    buffer: Mutex<Vec<Rec>>,
    /// The buffer the writer emptied last, handed back to be filled again: the event path
    /// writes into memory already mapped, and allocates nothing.
    spare: Mutex<Vec<Rec>>,
    wake: Notify,
    started: AtomicBool,
    /// Why the store did not answer last, while it does not.
    trouble: Mutex<Option<StoreError>>,
    /// Records dropped in all (buffer full, or given up on).
    pub(crate) dropped: AtomicU64,
    /// Whether dropping records for a full buffer was warned about.
    warned_full: AtomicBool,
}

impl Shared {
    pub(crate) fn new(location: Location) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            name: location.to_string(),
            location,
            buffer: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            wake: Notify::new(),
            started: AtomicBool::new(false),
            trouble: Mutex::new(None),
            dropped: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        });
        live()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&shared));
        shared
    }

    /// Hands `rec` to the writer; `false` when the buffer is full (the record is dropped).
    /// `must`: accepted even then (a run's start and end, a flush, a loss count). Only a flush
    /// and a full buffer wake the writer before its tick: a short run is not written while it
    /// runs, so the writer does not compete with it for the CPU.
    /// Whether its writer ever started (a store that recorded nothing has nothing to flush).
    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    pub(crate) fn push(self: &Arc<Self>, rec: Rec, must: bool) -> bool {
        let flush = matches!(rec, Rec::Flush(_));
        let len = {
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            if buffer.len() >= MAX_PENDING && !must {
                return false;
            }
            buffer.push(rec);
            buffer.len()
        };
        if !self.started.load(Ordering::Relaxed) {
            self.start();
        }
        if len == WAKE_AT || flush {
            self.wake.notify_one();
        }
        true
    }

    /// Makes room for `records` more, so that the event path does not grow the buffer.
    pub(crate) fn reserve(&self, records: usize) {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let room = records.min(MAX_PENDING.saturating_sub(buffer.len()));
        buffer.reserve(room);
    }

    /// Says once per program that records were dropped because the buffer was full (each
    /// run's count goes to its row).
    pub(crate) fn warn_once_dropped(&self, run: &str, count: u64) {
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            warn(&format!(
                "run store {}: {count} records of run {run} were dropped: more than {MAX_PENDING} waited for it (the count is written to the run's row; later drops are counted, not warned)",
                self.name
            ));
        }
    }

    /// Resolves once everything handed over before is written, or with why it was not; at
    /// most [`FLUSH_WAIT`] (a writer that cannot finish in that time answers as lost).
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(
            Rec::Flush(Box::new(move |result| {
                let _ = tx.send(result);
            })),
            true,
        );
        match tokio::time::timeout(FLUSH_WAIT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("its writer stopped".to_owned()),
            Err(_) => Err(format!("not written within {} s", FLUSH_WAIT.as_secs())),
        }
    }

    /// Why the store does not answer, if it does not.
    pub(crate) fn trouble(&self) -> Option<StoreError> {
        self.trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    #[cold]
    fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        match graflow_core::backend::background() {
            Ok(runtime) => {
                runtime.spawn(write_loop(Arc::downgrade(self)));
            }
            Err(error) => warn(&format!(
                "run store {}: cannot start its writer ({error}); runs are not recorded",
                self.name
            )),
        }
    }
}

/// Every store's shared state, for the flush at exit.
pub(crate) fn live() -> &'static Mutex<Vec<Weak<Shared>>> {
    static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
    &LIVE
}

/// One line on stderr through `tracing`, or written to stderr directly when the program
/// installed no subscriber (a store's trouble must not go unseen).
pub(crate) fn warn(message: &str) {
    tracing::warn!(target: "graflow::store", "{message}");
    if !tracing::dispatcher::has_been_set() {
        let _ = writeln!(std::io::stderr(), "graflow: warning: {message}");
    }
}

struct Writer {
    shared: Weak<Shared>,
    name: String,
    location: Location,
    pool: Option<Pool>,
    /// Set when the store can never be used by this program (corrupt, newer schema).
    unusable: bool,
    runs: HashMap<RunKey, RunMemory>,
    batch: Batch,
    backoff: Duration,
    next_try: Instant,
    last_beat: Instant,
    /// Records of each run dropped earlier: written to its row once the store answers.
    carry: HashMap<Arc<str>, u64>,
}

async fn write_loop(shared: Weak<Shared>) {
    let Some(strong) = shared.upgrade() else {
        return;
    };
    let mut writer = Writer {
        name: strong.name.clone(),
        location: strong.location.clone(),
        shared: shared.clone(),
        pool: None,
        unusable: false,
        runs: HashMap::new(),
        batch: Batch::default(),
        backoff: Duration::from_millis(250),
        next_try: Instant::now(),
        last_beat: Instant::now(),
        carry: HashMap::new(),
    };
    drop(strong);
    loop {
        let Some(shared) = writer.shared.upgrade() else {
            return;
        };
        let _ = tokio::time::timeout(TICK, shared.wake.notified()).await;
        let spare =
            std::mem::take(&mut *shared.spare.lock().unwrap_or_else(PoisonError::into_inner));
        let mut taken = {
            let mut buffer = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *buffer, spare)
        };
        writer.take(taken.drain(..)).await;
        // Kept for the next swap, unless it grew past what a busy run fills in a tick.
        if taken.capacity() <= 4 * WAKE_AT {
            *shared.spare.lock().unwrap_or_else(PoisonError::into_inner) = taken;
        }
        drop(shared);
        writer.write().await;
    }
}

impl Writer {
    async fn take(&mut self, records: impl Iterator<Item = Rec>) {
        for rec in records {
            if let Rec::Begin(_, info) = &rec
                && info.resumed
            {
                // Its tries continue those stored: what waits is written first (an earlier
                // run of it in this process), and the store opened if it was not yet.
                self.write().await;
                if self.pool.is_none()
                    && !self.unusable
                    && let Ok(pool) = open(&self.location).await
                {
                    self.pool = Some(pool);
                }
            }
            if let Rec::Begin(key, info) = &rec
                && info.resumed
                && let Some(pool) = &self.pool
            {
                let key = *key;
                let tries = stored_tries(pool, &info.run_id).await.unwrap_or_default();
                absorb(rec, &mut self.batch, &mut self.runs);
                if let Some(memory) = self.runs.get_mut(&key) {
                    memory.try_base = tries
                        .into_iter()
                        .filter_map(|(node, t)| {
                            Some((u32::try_from(node).ok()?, u32::try_from(t).ok()?))
                        })
                        .collect();
                }
                continue;
            }
            absorb(rec, &mut self.batch, &mut self.runs);
        }
    }

    async fn write(&mut self) {
        if self.unusable {
            // Warned once when it became unusable: what arrives since is counted, silently.
            let dropped = std::mem::take(&mut self.batch);
            if let Some(shared) = self.shared.upgrade() {
                shared.dropped.fetch_add(dropped.records, Ordering::Relaxed);
            }
            let cause = self
                .shared
                .upgrade()
                .and_then(|s| s.trouble())
                .map_or_else(|| "the store is unusable".to_owned(), |e| e.to_string());
            for flush in dropped.flushes {
                flush(Err(cause.clone()));
            }
            return;
        }
        if self.batch.is_empty() {
            self.beat().await;
            return;
        }
        if self.batch.records == 0 {
            // Only flushes wait, and nothing was recorded since the last write: nothing to open
            // the store for (a program that made an engine and ran nothing).
            for flush in std::mem::take(&mut self.batch.flushes) {
                flush(Ok(()));
            }
            return;
        }
        // Waiting for the store to answer again: only a flush tries it before its time (once:
        // a failure answers the flush, and the wait goes on).
        if Instant::now() < self.next_try && self.batch.flushes.is_empty() {
            self.bound();
            return;
        }
        if self.pool.is_none() {
            match open(&self.location).await {
                Ok(pool) => self.pool = Some(pool),
                Err(error) => {
                    self.failed(error);
                    return;
                }
            }
        }
        let Some(pool) = self.pool.clone() else {
            return;
        };
        for (run, count) in self.carry.drain() {
            *self.batch.lost.entry(run).or_default() += count;
        }
        match apply(&pool, &mut self.batch).await {
            Ok(()) => {
                let done = std::mem::take(&mut self.batch);
                for flush in done.flushes {
                    flush(Ok(()));
                }
                self.recovered();
                self.beat().await;
            }
            Err(error) => {
                let error = StoreError::from_sqlx(&self.name, "cannot write", &error);
                if !error.is_retryable() {
                    self.pool = None;
                }
                self.failed(error);
            }
        }
    }

    /// Heartbeats of the runs being written, every [`HEARTBEAT`].
    async fn beat(&mut self) {
        if self.last_beat.elapsed() < HEARTBEAT || self.runs.is_empty() {
            return;
        }
        self.last_beat = Instant::now();
        if let Some(pool) = &self.pool {
            let ids: Vec<Arc<str>> = self.runs.values().map(|m| m.id.clone()).collect();
            if let Err(error) = heartbeat(pool, &ids).await {
                self.failed(StoreError::from_sqlx(&self.name, "cannot write", &error));
            }
        }
    }

    fn failed(&mut self, error: StoreError) {
        let first = {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let mut trouble = shared
                .trouble
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let first = trouble.is_none();
            *trouble = Some(error.clone());
            first
        };
        if !error.is_retryable() {
            warn(&format!(
                "{error}; this program records no more runs there (records are dropped and counted)"
            ));
            self.unusable = true;
            self.give_up(Some(&error));
            return;
        }
        if first {
            warn(&format!(
                "{error}; runs go on, their records wait in memory (up to {MAX_PENDING}) and are written when it answers"
            ));
        }
        self.next_try = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.answer_flushes();
        self.bound();
    }

    fn recovered(&mut self) {
        self.backoff = Duration::from_millis(250);
        if let Some(shared) = self.shared.upgrade() {
            let was = shared
                .trouble
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if was.is_some() {
                tracing::info!(target: "graflow::store", store = %self.name, "the run store answers again; buffered records are written");
            }
        }
    }

    /// Answers waiting flushes with the store's trouble (it is not waited for).
    fn answer_flushes(&mut self) {
        let cause = self
            .shared
            .upgrade()
            .and_then(|s| s.trouble())
            .map_or_else(|| "the store does not answer".to_owned(), |e| e.to_string());
        for flush in self.batch.flushes.drain(..) {
            flush(Err(cause.clone()));
        }
    }

    /// Keeps the waiting batch under the bound: past it, it is dropped and counted.
    fn bound(&mut self) {
        if self.batch.records as usize > MAX_PENDING {
            self.give_up(None);
        }
    }

    /// Drops what waits, counting it (a store unusable for good, or too much waiting).
    fn give_up(&mut self, error: Option<&StoreError>) {
        let dropped = std::mem::take(&mut self.batch);
        for (run, count) in dropped.per_run {
            *self.carry.entry(run).or_default() += count;
        }
        for (run, count) in dropped.lost {
            *self.carry.entry(run).or_default() += count;
        }
        if dropped.records > 0 {
            if let Some(shared) = self.shared.upgrade() {
                shared.dropped.fetch_add(dropped.records, Ordering::Relaxed);
            }
            warn(&format!(
                "run store {}: {} records dropped ({})",
                self.name,
                dropped.records,
                error.map_or_else(|| "too many waited for it".to_owned(), ToString::to_string)
            ));
        }
        let cause = error.map_or_else(|| "records were dropped".to_owned(), ToString::to_string);
        for flush in dropped.flushes {
            flush(Err(cause.clone()));
        }
    }
}
