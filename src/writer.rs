//! The event writer: one task that takes events from a bounded queue and commits them in
//! batches, so many requests share one durable commit (group commit). A request is
//! answered only after the commit that holds its event, which is what makes a 202 durable.
//! A full queue is refused at once (the caller answers 503) rather than waited on.

use crate::storage::EncodedEvent;
use crate::metrics::Metrics;
use crate::storage::Store;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// At most this many events go into one transaction, to bound commit latency.
pub const MAX_BATCH: usize = 4096;
/// Under load, a batch smaller than this waits up to `LINGER` for more events: each
/// commit costs a sync to disk and a hand-off to a storage thread, so on a small machine
/// fewer, larger commits leave more CPU for serving requests. At low load the wait
/// adds at most `LINGER` to a request's latency.
const FULL_ENOUGH: usize = 256;
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

struct Pending {
    events: Vec<EncodedEvent>,
    ack: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Pending>,
    capacity: usize,
    last_commit_failed: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: answer 503 with Retry-After.
    Overloaded,
    /// The writer has stopped (shutdown in progress).
    Closed,
}

/// Resolves when the events are durable (`true`) or storage refused them (`false`).
pub struct Receipt(oneshot::Receiver<bool>);

impl Receipt {
    pub async fn durable(self) -> bool {
        self.0.await.unwrap_or(false)
    }
}

impl EventWriter {
    pub fn spawn(store: Arc<dyn Store>, capacity: usize, metrics: Arc<Metrics>) -> (EventWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let last_commit_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = tokio::spawn(run(store, rx, metrics, last_commit_failed.clone()));
        (EventWriter { tx, capacity, last_commit_failed }, handle)
    }

    /// Queues the events of one request; they are committed together.
    pub fn submit(&self, events: Vec<EncodedEvent>) -> Result<Receipt, SubmitError> {
        let (ack, rx) = oneshot::channel();
        match self.tx.try_send(Pending { events, ack }) {
            Ok(()) => Ok(Receipt(rx)),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the most recent commit failed: events cannot be made durable right now.
    /// Cleared by the next successful commit.
    pub fn is_failing(&self) -> bool {
        self.last_commit_failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    metrics: Arc<Metrics>,
    last_commit_failed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut pending: Vec<Pending> = Vec::with_capacity(256);
    // recv() returns None only once every sender is gone and the queue is empty, so a
    // shutdown drains everything that was accepted.
    while let Some(first) = rx.recv().await {
        let mut count = first.events.len();
        pending.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while count < MAX_BATCH {
            let next = match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if count < FULL_ENOUGH && pending.len() > 1 => {
                    tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                }
                Err(mpsc::error::TryRecvError::Empty) => None,
            };
            match next {
                Some(p) => {
                    count += p.events.len();
                    pending.push(p);
                }
                None => break,
            }
        }
        let events: Vec<EncodedEvent> = pending.iter_mut().flat_map(|p| std::mem::take(&mut p.events)).collect();
        let n = events.len() as u64;
        let started = Instant::now();
        let ok = match store.insert_events(events).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), events = n, "event batch was not stored");
                false
            }
        };
        metrics.observe_commit(started.elapsed().as_secs_f64());
        last_commit_failed.store(!ok, std::sync::atomic::Ordering::Relaxed);
        if ok {
            metrics.batches_committed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metrics.events_ingested.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        } else {
            metrics.batches_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for p in pending.drain(..) {
            let _ = p.ack.send(ok);
        }
    }
    tracing::info!("event writer drained and stopped");
}
