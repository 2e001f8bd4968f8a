//! The request side of a worker (text-embeddings-inference's `Infer`): admission (one permit per
//! text from a bounded pool, 429 when it is empty, so queued work and memory stay bounded),
//! tokenisation on a small thread pool, then the batching queue; results come back in input order.

use crate::backend::{ScoreInput, TextTokenizer};
use crate::config::HttpLimits;
use crate::error::ServeError;
use crate::metrics::WorkerMetrics;
use crate::queue::{Entry, QueueHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};
use wildreward_model::Scored;

/// Where a request's time went (sent back as `x-*-time` headers).
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Tokenising all its texts.
    pub tokenization: Duration,
    /// The longest wait of one of its texts in the queue.
    pub queue: Duration,
    /// The longest forward pass one of its texts was in.
    pub inference: Duration,
    /// Tokens scored.
    pub tokens: usize,
}

/// A scored request.
#[derive(Debug)]
pub struct Scoring {
    /// One score per text, in input order.
    pub scored: Vec<Scored>,
    /// Where the time went.
    pub timings: Timings,
}

/// Admission, tokenisation and queueing for one worker.
pub struct Infer {
    queue: QueueHandle,
    tokenizer: TextTokenizer,
    pool: rayon::ThreadPool,
    threads: usize,
    permits: Arc<Semaphore>,
    limits: HttpLimits,
    metrics: WorkerMetrics,
}

impl Infer {
    /// Request side over a running queue; `threads` tokenise.
    pub fn new(
        queue: QueueHandle,
        tokenizer: TextTokenizer,
        threads: usize,
        limits: HttpLimits,
        metrics: WorkerMetrics,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("wildreward-tokenize-{i}"))
            .build()?;
        Ok(Self {
            queue,
            tokenizer,
            pool,
            threads,
            permits: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
            metrics,
        })
    }

    /// The queue (for health probes).
    pub fn queue(&self) -> &QueueHandle {
        &self.queue
    }

    /// Scores `texts` (ready-made texts, or turns: [`ScoreInput`]). `field` and `offset` name
    /// texts in errors (`query[12]`): a router sends a slice of a client's batch with the slice's
    /// offset, so errors point into the client's batch.
    pub async fn score(
        &self,
        field: &str,
        texts: Vec<ScoreInput>,
        offset: usize,
    ) -> Result<Scoring, ServeError> {
        let n = texts.len();
        if n == 0 {
            return Err(ServeError::Validation(format!(
                "`{field}` is empty: send at least one text"
            )));
        }
        if n > self.limits.max_client_batch {
            return Err(ServeError::TooManyInputs(format!(
                "{n} texts in one request; the limit is {} (--max-client-batch)",
                self.limits.max_client_batch
            )));
        }
        if let Some(i) = texts.iter().position(ScoreInput::is_empty) {
            return Err(ServeError::Validation(format!(
                "{field}[{}] is empty",
                i + offset
            )));
        }
        let permits = u32::try_from(n)
            .ok()
            .and_then(|k| self.permits.clone().try_acquire_many_owned(k).ok())
            .ok_or_else(|| ServeError::Overloaded {
                message: format!(
                    "worker is at its limit of {} texts in flight; retry later",
                    self.limits.max_in_flight
                ),
                retry_after_s: self.limits.retry_after_s,
            })?;
        self.metrics.in_flight.add(n as i64);
        let _in_flight = InFlight {
            metrics: &self.metrics,
            n,
            _permits: permits,
        };

        let started = Instant::now();
        let ids = self.tokenize(field, texts, offset).await?;
        let tokenization = started.elapsed();
        self.metrics
            .tokenization
            .observe(tokenization.as_secs_f64());
        let tokens = ids.iter().map(Vec::len).sum();

        let mut receivers = Vec::with_capacity(n);
        let mut entries = Vec::with_capacity(n);
        let enqueued = Instant::now();
        for ids in ids {
            self.metrics.input_length.observe(ids.len() as f64);
            let (reply, rx) = oneshot::channel();
            entries.push(Entry {
                ids,
                enqueued,
                reply,
            });
            receivers.push(rx);
        }
        self.queue.append(entries)?;
        let mut timings = Timings {
            tokenization,
            tokens,
            ..Timings::default()
        };
        let mut scored = Vec::with_capacity(n);
        for rx in receivers {
            let outcome = rx.await.map_err(|_| {
                ServeError::Unhealthy("the inference thread stopped before answering".into())
            })??;
            timings.queue = timings.queue.max(outcome.queue_time);
            timings.inference = timings.inference.max(outcome.inference_time);
            scored.push(outcome.scored);
        }
        Ok(Scoring { scored, timings })
    }

    /// Tokenises on the pool, split into one part per thread; ids in input order.
    async fn tokenize(
        &self,
        field: &str,
        texts: Vec<ScoreInput>,
        offset: usize,
    ) -> Result<Vec<Vec<u32>>, ServeError> {
        let part = texts.len().div_ceil(self.threads).max(1);
        let mut parts = Vec::new();
        let mut texts = texts.into_iter();
        let mut start = 0;
        loop {
            let chunk: Vec<ScoreInput> = texts.by_ref().take(part).collect();
            if chunk.is_empty() {
                break;
            }
            let (tx, rx) = oneshot::channel();
            let tokenizer = self.tokenizer.clone();
            let first = start + offset;
            let field = field.to_string();
            start += chunk.len();
            self.pool.spawn(move || {
                let result: Result<Vec<Vec<u32>>, ServeError> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        tokenizer.encode_input(text).map_err(|e| {
                            ServeError::Validation(format!("{field}[{}]{e}", first + i))
                        })
                    })
                    .collect();
                let _ = tx.send(result);
            });
            parts.push(rx);
        }
        let mut ids = Vec::new();
        for rx in parts {
            let part = rx.await.map_err(|_| {
                ServeError::Internal("a tokenisation thread stopped before answering".into())
            })??;
            ids.extend(part);
        }
        Ok(ids)
    }
}

/// Keeps the in-flight gauge and the admission permits for the life of a request.
struct InFlight<'a> {
    metrics: &'a WorkerMetrics,
    n: usize,
    _permits: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.sub(self.n as i64);
    }
}
