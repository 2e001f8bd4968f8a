//! Sending one request (or one part of a split batch) to a worker, with failover: a try that fails
//! for the worker's sake (connection refused or reset, timeout, 5xx, 429) is retried on another
//! worker, within a bounded number of tries and the request's deadline; a try that fails for the
//! client's sake (another 4xx, or a non-finite score) is answered as the worker answered it. A
//! worker that says 429 is not asked again for the same request; when all have, the 429 goes to
//! the client with the soonest `Retry-After` any worker gave. A worker whose connection
//! fails is taken out at once; the health checks put it back.

use super::pool::Pool;
use crate::error::{ServeError, NON_FINITE};
use crate::http::INPUT_OFFSET_HEADER;
use axum::body::Bytes;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wildreward_types::wire::ErrorBody;

/// How the router reaches its workers.
pub struct Dispatcher {
    /// The workers.
    pub pool: Arc<Pool>,
    /// Shared HTTP client (connection pool).
    pub client: reqwest::Client,
    /// Bearer token sent to workers.
    pub api_key: Option<String>,
    /// Tries per request part.
    pub max_attempts: usize,
    /// Deadline of one try.
    pub attempt_timeout: Duration,
    /// How long to wait for a worker to come back when none is healthy.
    pub no_worker_grace: Duration,
    /// `Retry-After` seconds when every try was refused as overloaded.
    pub retry_after_s: u64,
}

/// Why one try failed.
enum TryError {
    /// The worker's fault: try another.
    Retry(ServeError),
    /// The client's fault: answer with it.
    Final(ServeError),
}

impl Dispatcher {
    /// Posts `body` to `path` on workers until one answers 2xx; returns that body. A worker that
    /// answers 429 is not asked again for this request; once every healthy worker has, the 429 is
    /// passed on with the soonest `Retry-After` they gave.
    pub async fn send(
        &self,
        path: &str,
        body: Bytes,
        offset: usize,
        deadline: Instant,
    ) -> Result<Bytes, ServeError> {
        let mut tried: Vec<usize> = Vec::new();
        let mut overloaded: Vec<usize> = Vec::new();
        let mut soonest_retry: Option<u64> = None;
        let mut last: Option<ServeError> = None;
        for attempt in 0..self.max_attempts {
            let Some(i) = self.next_worker(&mut tried, &overloaded, deadline).await else {
                break;
            };
            tried.push(i);
            match self.try_once(i, path, body.clone(), offset, deadline).await {
                Ok(bytes) => return Ok(bytes),
                Err(TryError::Final(e)) => return Err(e),
                Err(TryError::Retry(ServeError::Overloaded { retry_after_s, .. })) => {
                    overloaded.push(i);
                    soonest_retry =
                        Some(soonest_retry.map_or(retry_after_s, |s| s.min(retry_after_s)));
                }
                Err(TryError::Retry(e)) => {
                    last = Some(e);
                    let pause = Duration::from_millis(25 << attempt.min(5));
                    if Instant::now() + pause >= deadline {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
        if let Some(retry_after_s) = soonest_retry {
            return Err(ServeError::Overloaded {
                message: format!(
                    "every worker tried ({}) is busy past its bound; retry in {retry_after_s} s",
                    overloaded.len()
                ),
                retry_after_s,
            });
        }
        Err(match last {
            Some(e @ ServeError::Upstream { .. }) => e,
            _ if Instant::now() >= deadline => {
                ServeError::Timeout("the request ran past --request-timeout".into())
            }
            Some(e) => ServeError::NoHealthyWorker(format!(
                "no worker could score the request after {} tries; last: {e}",
                tried.len()
            )),
            None => ServeError::NoHealthyWorker(format!(
                "no healthy worker (of {}) to send the request to",
                self.pool.slots().len()
            )),
        })
    }

    /// A healthy worker not yet tried and not `overloaded`; once all have been tried, any healthy
    /// one not overloaded; when none is healthy, waits a little for one to come back (a restarting
    /// worker) before giving up — unless some worker is merely overloaded, which is answered now.
    async fn next_worker(
        &self,
        tried: &mut Vec<usize>,
        overloaded: &[usize],
        deadline: Instant,
    ) -> Option<usize> {
        let give_up = (Instant::now() + self.no_worker_grace).min(deadline);
        loop {
            let skip: Vec<usize> = tried.iter().chain(overloaded).copied().collect();
            if let Some(i) = self.pool.pick(&skip) {
                return Some(i);
            }
            if !tried.is_empty() {
                if let Some(i) = self.pool.pick(overloaded) {
                    tried.clear();
                    return Some(i);
                }
            }
            if !overloaded.is_empty() || Instant::now() >= give_up {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_once(
        &self,
        i: usize,
        path: &str,
        body: Bytes,
        offset: usize,
        deadline: Instant,
    ) -> Result<Bytes, TryError> {
        let slot = &self.pool.slots()[i];
        let Some(url) = slot.url() else {
            return Err(TryError::Retry(ServeError::NoHealthyWorker(format!(
                "worker {i} is not listening"
            ))));
        };
        let _on_it = slot.enter();
        let attempt = |outcome: &str| {
            self.pool
                .metrics()
                .attempts
                .with_label_values(&[url.as_str(), outcome])
                .inc();
        };
        let timeout = self
            .attempt_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut request = self
            .client
            .post(format!("{url}{path}"))
            .header(CONTENT_TYPE, "application/json")
            .header(INPUT_OFFSET_HEADER, offset)
            .timeout(timeout)
            .body(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                attempt(if e.is_timeout() { "timeout" } else { "connect" });
                slot.count_failure();
                if !e.is_timeout() {
                    // Refused or reset: the worker is gone or going; the health checks decide when
                    // it is back.
                    self.pool.set_healthy(i, false, &e.to_string());
                }
                return Err(TryError::Retry(ServeError::NoHealthyWorker(format!(
                    "{url}: {e}"
                ))));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.retry_after_s);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                attempt("connect");
                slot.count_failure();
                self.pool.set_healthy(i, false, &e.to_string());
                return Err(TryError::Retry(ServeError::NoHealthyWorker(format!(
                    "{url}: the answer broke off: {e}"
                ))));
            }
        };
        if status.is_success() {
            attempt("ok");
            slot.count_served();
            return Ok(bytes);
        }
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            error: format!(
                "worker {url} answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
            error_type: "backend".into(),
        });
        let upstream = ServeError::Upstream {
            status: status.as_u16(),
            body,
        };
        if status.as_u16() == 429 {
            attempt("overloaded");
            return Err(TryError::Retry(ServeError::Overloaded {
                message: upstream.to_string(),
                retry_after_s: retry_after,
            }));
        }
        if status.is_client_error() {
            attempt("client_error");
            return Err(TryError::Final(upstream));
        }
        if upstream.error_type() == NON_FINITE {
            // The same model gives the same NaN on every worker: no use retrying.
            attempt("server_error");
            return Err(TryError::Final(upstream));
        }
        attempt("server_error");
        slot.count_failure();
        if status.as_u16() == 503 {
            self.pool.set_healthy(i, false, &upstream.to_string());
        }
        Err(TryError::Retry(upstream))
    }
}
