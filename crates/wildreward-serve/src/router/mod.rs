//! The router: the same endpoints as a worker, in front of several. It admits work (bounded, 429
//! beyond), splits a big batch into parts across the healthy workers, sends each part with failover
//! ([`dispatch`]), and puts the answers back together in input order. It never answers 200 with an
//! error in the body, which is what the reference router does when a worker fails.

pub mod dispatch;
pub mod pool;

use crate::config::RouterConfig;
use crate::error::ServeError;
use crate::http::{finish, set_time_header, JsonBody};
use crate::vllm::{ClassificationResponse, ClassifyRequest, PoolingResponse};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dispatch::Dispatcher;
use pool::Pool;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wildreward_types::wire::{GetRewardRequest, GetRewardResponse, ScoreRequest, ScoreResponse};

/// Contiguous parts of a batch of `n` over at most `workers` workers: none smaller than
/// `min_split` (unless it is the whole batch), none larger than `max_part` (which may need more
/// parts than workers), sizes differing by at most one.
fn split_ranges(n: usize, min_split: usize, workers: usize, max_part: usize) -> Vec<Range<usize>> {
    let parts = n
        .div_ceil(min_split.max(1))
        .clamp(1, workers.max(1))
        .max(n.div_ceil(max_part.max(1)));
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|k| {
            let len = base + usize::from(k < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

struct RouterState {
    cfg: RouterConfig,
    dispatcher: Arc<Dispatcher>,
    permits: Arc<Semaphore>,
}

/// Serves the router on `listener` over `pool` until `shutdown` resolves, then drains in-flight
/// requests (they may still fail over between workers while draining).
pub async fn serve(
    listener: TcpListener,
    cfg: RouterConfig,
    pool: Arc<Pool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(256)
        // Below the workers' header timeout, so a pooled connection is dropped here before a worker
        // closes it as idle (a request racing that close would look like a dead worker).
        .pool_idle_timeout((cfg.limits.read_timeout / 2).max(Duration::from_secs(1)))
        .build()?;
    let checks = tokio::spawn(
        pool.clone()
            .health_checks(client.clone(), cfg.health_interval),
    );
    let dispatcher = Arc::new(Dispatcher {
        pool: pool.clone(),
        client,
        api_key: cfg.limits.api_key.clone(),
        max_attempts: cfg.max_attempts,
        attempt_timeout: cfg.attempt_timeout,
        no_worker_grace: (cfg.health_interval * 3).max(Duration::from_secs(2)),
        retry_after_s: cfg.limits.retry_after_s,
    });
    let state = Arc::new(RouterState {
        permits: Arc::new(Semaphore::new(cfg.limits.max_in_flight)),
        cfg,
        dispatcher,
    });
    let routes = Router::new()
        .route("/", get(info))
        .route("/info", get(info))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/get_reward", post(get_reward))
        .route("/score", post(score))
        .route("/classify", post(classify))
        .route("/v1/classify", post(classify))
        .route("/pooling", post(pooling))
        .with_state(state.clone());
    let app = finish(routes, &state.cfg.limits, pool.metrics().http.clone());
    let served = crate::http::serve(listener, app, state.cfg.limits.read_timeout, shutdown).await;
    checks.abort();
    Ok(served?)
}

async fn info(State(r): State<Arc<RouterState>>) -> Json<serde_json::Value> {
    let pool = &r.dispatcher.pool;
    let limits = &r.cfg.limits;
    Json(json!({
        "role": "router",
        "version": env!("CARGO_PKG_VERSION"),
        "policy": pool.policy().name(),
        "workers": pool.describe(),
        "healthy_workers": pool.healthy_count(),
        "max_attempts": r.cfg.max_attempts,
        "request_timeout_s": r.cfg.request_timeout.as_secs_f64(),
        "min_split": r.cfg.min_split,
        "limits": {
            "max_client_batch": limits.max_client_batch,
            "max_in_flight": limits.max_in_flight,
            "max_body_bytes": limits.max_body_bytes,
        },
    }))
}

async fn health(State(r): State<Arc<RouterState>>) -> Result<Json<serde_json::Value>, ServeError> {
    let pool = &r.dispatcher.pool;
    match pool.healthy_count() {
        0 => Err(ServeError::NoHealthyWorker(format!(
            "none of the {} workers is healthy",
            pool.slots().len()
        ))),
        k => Ok(Json(
            json!({"status": "ok", "healthy_workers": k, "workers": pool.slots().len()}),
        )),
    }
}

async fn metrics_text(State(r): State<Arc<RouterState>>) -> String {
    r.dispatcher.pool.metrics().http.render()
}

async fn get_reward(
    State(r): State<Arc<RouterState>>,
    JsonBody(req): JsonBody<GetRewardRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let n = req.query.len();
    for (name, len) in [
        ("prompts", req.prompts.as_ref().map(Vec::len)),
        ("labels", req.labels.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|&len| len != n) {
            return Err(ServeError::Validation(format!(
                "{len} {name} for {n} queries: send one per query"
            )));
        }
    }
    let _permits = r.admit("query", n)?;
    let parts: Vec<(usize, GetRewardRequest)> = r
        .split(n)
        .into_iter()
        .map(|range| {
            let part = GetRewardRequest {
                query: req.query[range.clone()].to_vec(),
                prompts: req.prompts.as_ref().map(|p| p[range.clone()].to_vec()),
                labels: req.labels.as_ref().map(|l| l[range.clone()].to_vec()),
            };
            (range.start, part)
        })
        .collect();
    let answers: Vec<GetRewardResponse> = r.scatter("/get_reward", parts).await?;
    let mut rewards = Vec::with_capacity(n);
    for a in answers {
        rewards.extend(a.rewards);
    }
    check_count(rewards.len(), n)?;
    Ok(timed(Json(GetRewardResponse::new(rewards)), started))
}

async fn score(
    State(r): State<Arc<RouterState>>,
    JsonBody(req): JsonBody<ScoreRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let n = req.items.len();
    let _permits = r.admit("items", n)?;
    let parts: Vec<(usize, ScoreRequest)> = r
        .split(n)
        .into_iter()
        .map(|range| {
            let part = ScoreRequest {
                items: req.items[range.clone()].to_vec(),
            };
            (range.start, part)
        })
        .collect();
    let answers: Vec<ScoreResponse> = r.scatter("/score", parts).await?;
    let mut out = ScoreResponse {
        rewards: Vec::with_capacity(n),
        probs: Vec::with_capacity(n),
    };
    for a in answers {
        out.rewards.extend(a.rewards);
        out.probs.extend(a.probs);
    }
    check_count(out.rewards.len(), n)?;
    check_count(out.probs.len(), n)?;
    Ok(timed(Json(out), started))
}

/// The parts of a `/classify` or `/pooling` request, each with its first index.
fn classify_parts(
    r: &RouterState,
    req: &ClassifyRequest,
) -> Result<(usize, Vec<(usize, ClassifyRequest)>), ServeError> {
    let inputs = req.inputs()?;
    let parts = r
        .split(inputs.len())
        .into_iter()
        .map(|range| (range.start, req.part(&inputs[range])))
        .collect();
    Ok((inputs.len(), parts))
}

async fn classify(
    State(r): State<Arc<RouterState>>,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let n = req.inputs()?.len();
    let _permits = r.admit("input", n)?;
    let (_, parts) = classify_parts(&r, &req)?;
    let answers: Vec<ClassificationResponse> = r.scatter("/classify", parts).await?;
    let merged = ClassificationResponse::merge(answers)
        .ok_or_else(|| ServeError::Internal("no part was answered".into()))?;
    check_count(merged.data.len(), n)?;
    Ok(timed(Json(merged), started))
}

async fn pooling(
    State(r): State<Arc<RouterState>>,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let n = req.inputs()?.len();
    let _permits = r.admit("input", n)?;
    let (_, parts) = classify_parts(&r, &req)?;
    let answers: Vec<PoolingResponse> = r.scatter("/pooling", parts).await?;
    let merged = PoolingResponse::merge(answers)
        .ok_or_else(|| ServeError::Internal("no part was answered".into()))?;
    check_count(merged.data.len(), n)?;
    Ok(timed(Json(merged), started))
}

impl RouterState {
    /// Checks the batch size and takes one permit per text (429 when the router is full).
    fn admit(
        &self,
        field: &str,
        n: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ServeError> {
        let limits = &self.cfg.limits;
        if n == 0 {
            return Err(ServeError::Validation(format!(
                "`{field}` is empty: send at least one text"
            )));
        }
        if n > limits.max_client_batch {
            return Err(ServeError::TooManyInputs(format!(
                "{n} texts in one request; the limit is {} (--max-client-batch)",
                limits.max_client_batch
            )));
        }
        u32::try_from(n)
            .ok()
            .and_then(|k| self.permits.clone().try_acquire_many_owned(k).ok())
            .ok_or_else(|| ServeError::Overloaded {
                message: format!(
                    "router is at its limit of {} texts in flight; retry later",
                    limits.max_in_flight
                ),
                retry_after_s: limits.retry_after_s,
            })
    }

    /// Contiguous parts of a batch of `n`: one per idle worker, none smaller than `min_split`
    /// (unless it is the whole batch), none larger than `max_part`.
    ///
    /// Only idle workers count: under load each part is admitted or refused by its own worker's
    /// backlog, and a request needs all of its parts, so split requests would hold part of the
    /// fleet's room while their other parts are refused, and under a flood almost none would get
    /// through whole (measured: 1 request in 90 s). When no worker is idle a batch goes whole to
    /// one worker (split only past `max_part`).
    fn split(&self, n: usize) -> Vec<Range<usize>> {
        let idle = self.dispatcher.pool.idle_count().max(1);
        split_ranges(n, self.cfg.min_split, idle, self.cfg.max_part)
    }

    /// Sends every part (concurrently, each with failover) and returns the answers in part order;
    /// the first failure fails the request (the other parts are cancelled).
    async fn scatter<Req: Serialize, Resp: DeserializeOwned + Send + 'static>(
        &self,
        path: &'static str,
        parts: Vec<(usize, Req)>,
    ) -> Result<Vec<Resp>, ServeError> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let mut tasks = tokio::task::JoinSet::new();
        let count = parts.len();
        for (k, (offset, part)) in parts.into_iter().enumerate() {
            let body =
                Bytes::from(serde_json::to_vec(&part).map_err(|e| {
                    ServeError::Internal(format!("cannot encode a request part: {e}"))
                })?);
            let dispatcher = self.dispatcher.clone();
            tasks.spawn(async move {
                let answer = dispatcher.send(path, body, offset, deadline).await;
                (k, answer)
            });
        }
        let mut answers: Vec<Option<Resp>> = (0..count).map(|_| None).collect();
        let all = async {
            while let Some(joined) = tasks.join_next().await {
                let (k, answer) = joined
                    .map_err(|e| ServeError::Internal(format!("a request part failed: {e}")))?;
                let bytes = answer?;
                let parsed = serde_json::from_slice(&bytes).map_err(|e| {
                    ServeError::Backend(format!(
                        "a worker answered with a body that is not a response: {e}"
                    ))
                })?;
                answers[k] = Some(parsed);
            }
            Ok::<(), ServeError>(())
        };
        tokio::time::timeout_at(deadline, all)
            .await
            .map_err(|_| ServeError::Timeout("the request ran past --request-timeout".into()))??;
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| ServeError::Internal("a request part got no answer".into())))
            .collect()
    }
}

fn check_count(got: usize, want: usize) -> Result<(), ServeError> {
    if got == want {
        Ok(())
    } else {
        Err(ServeError::Backend(format!(
            "workers returned {got} scores for {want} inputs"
        )))
    }
}

fn timed(body: impl IntoResponse, started: Instant) -> Response {
    let mut response = body.into_response();
    set_time_header(response.headers_mut(), "x-total-time", started.elapsed());
    response
        .headers_mut()
        .insert("x-served-by", HeaderValue::from_static("wildreward-router"));
    response
}

#[cfg(test)]
mod tests {
    use super::split_ranges;

    fn sizes(n: usize, min_split: usize, workers: usize, max_part: usize) -> Vec<usize> {
        let parts = split_ranges(n, min_split, workers, max_part);
        let mut next = 0;
        for r in &parts {
            assert_eq!(r.start, next, "contiguous");
            next = r.end;
        }
        assert_eq!(next, n, "covers the batch");
        parts.iter().map(|r| r.len()).collect()
    }

    #[test]
    fn batches_split_over_idle_workers_within_the_part_bounds() {
        assert_eq!(sizes(16, 4, 2, 1024), [8, 8], "two idle workers");
        assert_eq!(sizes(16, 4, 1, 1024), [16], "none idle: whole");
        assert_eq!(
            sizes(16, 4, 8, 1024),
            [4, 4, 4, 4],
            "no part under min_split"
        );
        assert_eq!(sizes(3, 4, 8, 1024), [3], "small batches stay whole");
        assert_eq!(sizes(10, 4, 3, 1024), [4, 3, 3]);
        assert_eq!(sizes(10, 4, 1, 4), [4, 3, 3], "max_part forces parts");
        assert_eq!(
            sizes(1, 4, 0, 1024),
            [1],
            "no worker counted: still one part"
        );
    }
}
