//! The request side of a worker (text-embeddings-inference's `Infer`): admission in two steps —
//! one permit per text from a bounded pool (429 when it is empty, so memory stays bounded), then,
//! once tokenised, the request's tokens against the worker's [`Backlog`] (429 with the seconds
//! until it fits when the expected wait would pass `--max-queue-seconds`, so latency stays
//! bounded) — then the batching queue; results come back in input order, and a non-finite score
//! is a 500 naming the text, never a `null` in a 200.

use crate::backend::{ScoreInput, TextTokenizer};
use crate::backlog::{Backlog, TooMuchWork};
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
    backlog: Arc<Backlog>,
    metrics: WorkerMetrics,
}

impl Infer {
    /// Request side over a running queue; `threads` tokenise; `backlog` is the queue's.
    pub fn new(
        queue: QueueHandle,
        tokenizer: TextTokenizer,
        threads: usize,
        limits: HttpLimits,
        backlog: Arc<Backlog>,
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
            backlog,
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

        self.backlog
            .precheck()
            .map_err(|refused| self.refuse(refused, None))?;
        let started = Instant::now();
        let ids = self.tokenize(field, texts, offset).await?;
        let tokenization = started.elapsed();
        self.metrics
            .tokenization
            .observe(tokenization.as_secs_f64());
        let tokens: usize = ids.iter().map(Vec::len).sum();
        let mut ticket = self
            .backlog
            .admit(tokens as u64)
            .map_err(|refused| self.refuse(refused, Some(tokens)))?;

        let mut receivers = Vec::with_capacity(n);
        let mut entries = Vec::with_capacity(n);
        let enqueued = Instant::now();
        for ids in ids {
            self.metrics.input_length.observe(ids.len() as f64);
            let (reply, rx) = oneshot::channel();
            let ticket = ticket.split(ids.len() as u64);
            entries.push(Entry {
                ids,
                enqueued,
                reply,
                ticket,
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
        for (i, rx) in receivers.into_iter().enumerate() {
            let outcome = rx.await.map_err(|_| {
                ServeError::Unhealthy(
                    "the inference thread stopped before answering (this worker is restarting); \
                     retry on another worker"
                        .into(),
                )
            })??;
            timings.queue = timings.queue.max(outcome.queue_time);
            timings.inference = timings.inference.max(outcome.inference_time);
            let s = &outcome.scored;
            if !s.reward.is_finite() || s.probs.iter().chain(&s.logits).any(|p| !p.is_finite()) {
                return Err(ServeError::NonFinite(format!(
                    "{field}[{}]: the model produced a non-finite score (reward {}, probs {:?}); \
                     the checkpoint or this text's forward pass is broken",
                    i + offset,
                    s.reward,
                    s.probs
                )));
            }
            scored.push(outcome.scored);
        }
        Ok(Scoring { scored, timings })
    }

    /// The 429 for work past the bound (`tokens`: this request's, once tokenised).
    fn refuse(&self, refused: TooMuchWork, tokens: Option<usize>) -> ServeError {
        self.metrics.refused_for_work.inc();
        let this = match tokens {
            Some(t) => format!("with this request's {t}"),
            None => "before this request".into(),
        };
        ServeError::Overloaded {
            message: format!(
                "worker is busy: {} tokens queued, {this} the wait would be about {:.1} s, past \
                 the bound of {:.1} s (--max-queue-seconds); retry in {} s",
                refused.queued_tokens,
                refused.expected_wait_s,
                self.backlog.max_wait().as_secs_f64(),
                refused.retry_after_s
            ),
            retry_after_s: refused.retry_after_s,
        }
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
