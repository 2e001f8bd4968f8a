//! The batching queue: one OS thread owns the queue and the model (the backend), and callers send it
//! commands over a channel (text-embeddings-inference's actor pattern, with its queue and backend
//! threads merged: on one device there is nothing to overlap).
//!
//! The thread works in rounds. A round takes every text waiting when it starts, sorts them longest
//! first (so rows of one batch have similar lengths and little padding), packs them into batches
//! within the token and row budgets ([`wildreward_model::scorer::plan_batches`]) and runs them,
//! answering each text as soon as its batch is done. Texts arriving meanwhile wait for the next
//! round, so none can be starved by a stream of others. Texts whose client went away are dropped
//! before their batch runs.
//!
//! Each text carries a [`Ticket`] for its tokens in the worker's [`Backlog`], given back when its
//! batch is done; every timed pass updates the backlog's seconds per token. A panic on this thread
//! (a bug in the model or a backend) is caught: the texts it held are answered 503 (their reply
//! channels close) and the worker is told on `died`, so it stops and the fleet starts a fresh one.

use crate::backend::{Backend, ModelInfo, TextTokenizer};
use crate::backlog::{Backlog, Ticket};
use crate::error::ServeError;
use crate::metrics::WorkerMetrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use wildreward_model::scorer::plan_batches;
use wildreward_model::Scored;

/// One text waiting to be scored.
pub struct Entry {
    /// Its token ids.
    pub ids: Vec<u32>,
    /// When it was queued.
    pub enqueued: Instant,
    /// Where its result goes.
    pub reply: oneshot::Sender<Result<Outcome, ServeError>>,
    /// Its tokens in the worker's backlog, given back once it is answered.
    pub ticket: Ticket,
}

/// One text's result.
#[derive(Debug)]
pub struct Outcome {
    /// The score.
    pub scored: Scored,
    /// Time from queueing to the start of its batch.
    pub queue_time: Duration,
    /// Time of its batch's forward pass.
    pub inference_time: Duration,
}

enum Command {
    Append(Vec<Entry>),
    Health(oneshot::Sender<Result<(), String>>),
}

/// What the thread reports once the model is loaded and warm.
pub struct Ready {
    /// The model's description.
    pub info: ModelInfo,
    /// The tokeniser for the request side.
    pub tokenizer: TextTokenizer,
}

/// The callers' end of the queue.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl QueueHandle {
    /// Queues texts; each gets its result on its own `reply`.
    pub fn append(&self, entries: Vec<Entry>) -> Result<(), ServeError> {
        self.tx
            .send(Command::Append(entries))
            .map_err(|_| ServeError::Unhealthy("the inference thread has stopped".into()))
    }

    /// Runs a one-token forward pass on the inference thread (after a failed batch).
    pub async fn health(&self) -> Result<(), ServeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Health(tx))
            .map_err(|_| ServeError::Unhealthy("the inference thread has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Unhealthy(format!("the model fails: {e}"))),
            Err(_) => Err(ServeError::Unhealthy(
                "the inference thread has stopped".into(),
            )),
        }
    }
}

/// Loads a backend on the inference thread (so the model never leaves it).
pub type Loader = Box<dyn FnOnce() -> anyhow::Result<Box<dyn Backend>> + Send>;

/// What the inference thread needs besides the model.
pub struct QueueParts {
    /// The worker's metrics.
    pub metrics: WorkerMetrics,
    /// Cleared when a batch fails, set again when a forward pass succeeds.
    pub healthy: Arc<AtomicBool>,
    /// Calibrated by the warm-up pass and updated by every batch.
    pub backlog: Arc<Backlog>,
    /// Told why, if the thread dies of a panic.
    pub died: oneshot::Sender<String>,
}

/// Starts the inference thread: it loads the model, warms it up at full batch (timing it to
/// calibrate the backlog), reports [`Ready`] (or the load error) on `ready`, then serves the queue
/// until every handle is dropped, or until a panic, which it reports on `parts.died`.
pub fn spawn(
    loader: Loader,
    parts: QueueParts,
    ready: oneshot::Sender<anyhow::Result<Ready>>,
) -> std::io::Result<QueueHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let QueueParts {
        metrics,
        healthy,
        backlog,
        died,
    } = parts;
    std::thread::Builder::new()
        .name("wildreward-inference".into())
        .spawn(move || {
            let mut backend = match loader() {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let started = Instant::now();
            match backend.warmup() {
                Ok(tokens) => backlog.calibrate(tokens, started.elapsed()),
                Err(e) => {
                    let _ = ready.send(Err(anyhow::anyhow!("warm-up forward pass failed: {e}")));
                    return;
                }
            }
            healthy.store(true, Ordering::SeqCst);
            let report = Ready {
                info: backend.info(),
                tokenizer: backend.tokenizer(),
            };
            if ready.send(Ok(report)).is_err() {
                return;
            }
            let actor = Actor {
                backend,
                rx,
                metrics,
                healthy: healthy.clone(),
                backlog,
                pending: Vec::new(),
                batches: 0,
            };
            // The actor (its queue, its channel, every reply sender) is dropped while unwinding,
            // so each text it held is answered 503 before the worker is told.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| actor.run()));
            if let Err(panic) = outcome {
                healthy.store(false, Ordering::SeqCst);
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                let _ = died.send(what);
            }
        })?;
    Ok(QueueHandle { tx })
}

struct Actor {
    backend: Box<dyn Backend>,
    rx: mpsc::UnboundedReceiver<Command>,
    metrics: WorkerMetrics,
    healthy: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
    pending: Vec<Entry>,
    batches: u64,
}

impl Actor {
    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.rx.blocking_recv() {
                    Some(c) => self.handle(c),
                    None => return,
                }
            }
            while let Ok(c) = self.rx.try_recv() {
                self.handle(c);
            }
            self.round();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Append(entries) => {
                self.metrics.queue_size.add(entries.len() as i64);
                self.pending.extend(entries);
            }
            Command::Health(reply) => {
                let result = self.backend.health();
                self.healthy.store(result.is_ok(), Ordering::SeqCst);
                let _ = reply.send(result);
            }
        }
    }

    /// Scores every text pending at the start of the round.
    fn round(&mut self) {
        let mut round = std::mem::take(&mut self.pending);
        if round.is_empty() {
            return;
        }
        let mut ids: Vec<Vec<u32>> = round
            .iter_mut()
            .map(|e| std::mem::take(&mut e.ids))
            .collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let (max_tokens, max_rows) = self.backend.batch_limits();
        let packed = self.backend.packs_rows();
        type Reply = (
            oneshot::Sender<Result<Outcome, ServeError>>,
            Instant,
            Ticket,
        );
        let mut replies: Vec<Option<Reply>> = round
            .into_iter()
            .map(|e| Some((e.reply, e.enqueued, e.ticket)))
            .collect();
        for batch in plan_batches(&order, &ids, max_tokens, max_rows, !packed) {
            self.metrics.queue_size.sub(batch.len() as i64);
            // Texts whose client went away (request cancelled, connection closed) are not scored.
            let live: Vec<usize> = batch
                .into_iter()
                .filter(|&i| match &replies[i] {
                    Some((reply, _, _)) if reply.is_closed() => {
                        self.metrics.dropped.inc();
                        replies[i] = None;
                        false
                    }
                    Some(_) => true,
                    None => false,
                })
                .collect();
            if live.is_empty() {
                continue;
            }
            let rows: Vec<Vec<u32>> = live.iter().map(|&i| std::mem::take(&mut ids[i])).collect();
            let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
            let real: usize = rows.iter().map(Vec::len).sum();
            self.metrics.batch_size.observe(rows.len() as f64);
            self.metrics.batch_tokens.observe(if packed {
                real as f64
            } else {
                (longest * rows.len()) as f64
            });
            self.batches += 1;
            debug_trigger::maybe_panic(self.batches);
            let started = Instant::now();
            let result = self.backend.forward(&rows);
            let inference_time = started.elapsed();
            self.metrics.inference.observe(inference_time.as_secs_f64());
            match result {
                Ok(scores) if scores.len() == live.len() => {
                    self.healthy.store(true, Ordering::SeqCst);
                    self.backlog.observe(real, inference_time);
                    for (&i, scored) in live.iter().zip(scores) {
                        if let Some((reply, enqueued, ticket)) = replies[i].take() {
                            drop(ticket);
                            let queue_time = started.saturating_duration_since(enqueued);
                            self.metrics.queue.observe(queue_time.as_secs_f64());
                            let _ = reply.send(Ok(Outcome {
                                scored,
                                queue_time,
                                inference_time,
                            }));
                        }
                    }
                }
                other => {
                    let message = match other {
                        Err(e) => format!("the model failed on a batch: {e}"),
                        Ok(s) => format!(
                            "the model returned {} scores for {} texts",
                            s.len(),
                            live.len()
                        ),
                    };
                    eprintln!("wildreward worker: {message}");
                    self.healthy.store(false, Ordering::SeqCst);
                    for &i in &live {
                        if let Some((reply, _, ticket)) = replies[i].take() {
                            drop(ticket);
                            let _ = reply.send(Err(ServeError::Backend(message.clone())));
                        }
                    }
                }
            }
        }
    }
}

/// A test-only way to make the inference thread panic, read only by debug builds (release builds
/// compile it to nothing): when the file named by `WILDREWARD_DEBUG_PANIC_FILE` exists as a batch
/// is about to run, the first worker to rename it away panics. The fleet test uses it to check that
/// a worker whose inference thread dies is restarted and loses no client request.
mod debug_trigger {
    /// The environment variable naming the trigger file.
    #[cfg(debug_assertions)]
    const VAR: &str = "WILDREWARD_DEBUG_PANIC_FILE";

    #[cfg(debug_assertions)]
    pub fn maybe_panic(batch: u64) {
        let Some(path) = std::env::var_os(VAR) else {
            return;
        };
        let claimed = std::path::PathBuf::from(&path)
            .with_extension(format!("claimed-{}-{batch}", std::process::id()));
        // Only one process wins the rename, so one worker panics once per file.
        if std::fs::rename(&path, &claimed).is_ok() {
            panic!("{VAR} asked the inference thread to panic (batch {batch})");
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn maybe_panic(_batch: u64) {}
}
