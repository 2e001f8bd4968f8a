//! A scoring worker: binds at once (so `/health` can say 503 while the model loads, instead of the
//! reference's port that stays closed until then), loads and warms the model on its inference
//! thread, then scores `/get_reward` and `/score` through the batching queue. Shutdown drains:
//! requests already accepted are answered.

use crate::backend::ModelInfo;
use crate::backlog::Backlog;
use crate::config::{truncation_name, WorkerConfig};
use crate::error::ServeError;
use crate::http::{finish, input_offset, set_time_header, JsonBody};
use crate::infer::{Infer, Scoring};
use crate::metrics::WorkerMetrics;
use crate::query_format::{get_reward_inputs, score_inputs};
use crate::queue::{self, Loader};
use crate::vllm::{ClassificationResponse, ClassifyRequest, PoolingResponse};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wildreward_types::wire::{GetRewardRequest, GetRewardResponse, ScoreRequest, ScoreResponse};

/// The worker's shared state.
struct Worker {
    cfg: WorkerConfig,
    infer: OnceLock<Infer>,
    info: OnceLock<ModelInfo>,
    healthy: Arc<AtomicBool>,
    failure: Mutex<Option<String>>,
    backlog: Arc<Backlog>,
    metrics: WorkerMetrics,
}

impl Worker {
    fn infer(&self) -> Result<&Infer, ServeError> {
        if let Some(infer) = self.infer.get() {
            return Ok(infer);
        }
        let failure = self.failure.lock().ok().and_then(|f| f.clone());
        Err(ServeError::Unhealthy(failure.unwrap_or_else(|| {
            "the model is loading and warming up; retry shortly".into()
        })))
    }
}

/// Serves a worker on `listener` until `shutdown` resolves (then drains in-flight requests).
/// `loader` runs on the inference thread; a load or warm-up failure stops the server and is
/// returned as is (so a bad model path keeps its exit code). A panic on the inference thread
/// stops it too, after its in-flight requests were answered 503, and is returned as an error (so
/// the process exits and a fleet starts a fresh one rather than keep a worker that cannot score).
pub async fn serve(
    listener: TcpListener,
    cfg: WorkerConfig,
    loader: Loader,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let metrics = WorkerMetrics::new()?;
    let healthy = Arc::new(AtomicBool::new(false));
    let backlog = Backlog::new(cfg.max_queue);
    let (ready_tx, ready_rx) = oneshot::channel();
    let (died_tx, died_rx) = oneshot::channel::<String>();
    let parts = queue::QueueParts {
        metrics: metrics.clone(),
        healthy: healthy.clone(),
        backlog: backlog.clone(),
        died: died_tx,
    };
    let queue = queue::spawn(loader, parts, ready_tx)?;
    let worker = Arc::new(Worker {
        cfg,
        infer: OnceLock::new(),
        info: OnceLock::new(),
        healthy,
        failure: Mutex::new(None),
        backlog,
        metrics,
    });

    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let w = worker.clone();
    tokio::spawn(async move {
        let ready = match ready_rx.await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "the inference thread stopped while loading"
            )),
        };
        let ready = ready.and_then(|ready| {
            let infer = Infer::new(
                queue,
                ready.tokenizer,
                w.cfg.tokenization_workers,
                w.cfg.limits.clone(),
                w.backlog.clone(),
                w.metrics.clone(),
            )?;
            Ok((ready.info, infer))
        });
        match ready {
            Ok((info, infer)) => {
                w.metrics
                    .head_initialised
                    .set(i64::from(info.head_initialised));
                let _ = w.info.set(info);
                let _ = w.infer.set(infer);
            }
            Err(e) => {
                if let Ok(mut f) = w.failure.lock() {
                    *f = Some(format!("the model failed to load: {e:#}"));
                }
                let _ = failed_tx.send(e);
            }
        }
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
        .with_state(worker.clone());
    let app = finish(routes, &worker.cfg.limits, worker.metrics.http.clone());
    let header_timeout = worker.cfg.limits.read_timeout;

    let (stop_tx, stop_rx) = oneshot::channel::<Option<anyhow::Error>>();
    let w = worker.clone();
    tokio::spawn(async move {
        let died = async move {
            let Ok(what) = died_rx.await else {
                return std::future::pending().await;
            };
            let message = format!(
                "the inference thread panicked ({what}); its requests were answered 503 and the \
                 worker stops so that it can be restarted"
            );
            eprintln!("wildreward worker: {message}");
            if let Ok(mut f) = w.failure.lock() {
                *f = Some(message.clone());
            }
            anyhow::anyhow!(message)
        };
        tokio::select! {
            _ = shutdown => { let _ = stop_tx.send(None); }
            Ok(e) = failed_rx => { let _ = stop_tx.send(Some(e)); }
            e = died => { let _ = stop_tx.send(Some(e)); }
        }
    });
    let (err_tx, err_rx) = oneshot::channel();
    crate::http::serve(listener, app, header_timeout, async move {
        if let Ok(failure) = stop_rx.await {
            let _ = err_tx.send(failure);
        }
    })
    .await?;
    match err_rx.await {
        Ok(Some(load_error)) => Err(load_error),
        _ => Ok(()),
    }
}

async fn info(State(w): State<Arc<Worker>>) -> Json<serde_json::Value> {
    let limits = &w.cfg.limits;
    let status = if w.failure.lock().map(|f| f.is_some()).unwrap_or(false) {
        "failed"
    } else if w.infer.get().is_some() {
        "ready"
    } else {
        "loading"
    };
    Json(json!({
        "role": "worker",
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "model": w.info.get(),
        "head_initialised": w.info.get().map(|i| i.head_initialised),
        "query_format": w.cfg.query_format.name(),
        "classify_input": w.cfg.classify_input.name(),
        "classify_output": w.cfg.classify_output.name(),
        "truncation": truncation_name(w.cfg.scorer.truncation),
        "limits": {
            "max_client_batch": limits.max_client_batch,
            "max_in_flight": limits.max_in_flight,
            "max_body_bytes": limits.max_body_bytes,
            "retry_after_s": limits.retry_after_s,
            "read_timeout_s": limits.read_timeout.as_secs_f64(),
            "max_queue_seconds": w.cfg.max_queue.as_secs_f64(),
        },
        "backlog": {
            "queued_tokens": w.backlog.queued_tokens(),
            "seconds_per_token": w.backlog.seconds_per_token(),
            "expected_wait_s": w.backlog.expected_wait_s(),
        },
    }))
}

async fn health(State(w): State<Arc<Worker>>) -> Result<Json<serde_json::Value>, ServeError> {
    let infer = w.infer()?;
    if !w.healthy.load(Ordering::SeqCst) {
        // The last batch failed: only a real forward pass says whether the model recovered.
        infer.queue().health().await?;
    }
    Ok(Json(json!({"status": "ok"})))
}

async fn metrics_text(State(w): State<Arc<Worker>>) -> String {
    w.metrics.http.render()
}

async fn get_reward(
    State(w): State<Arc<Worker>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<GetRewardRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let offset = input_offset(&headers);
    let texts = get_reward_inputs(req, w.cfg.query_format, w.cfg.empty_history, offset)?;
    let scoring = w.infer()?.score("query", texts, offset).await?;
    let rewards = scoring.scored.iter().map(|s| s.reward).collect();
    Ok(with_timings(
        Json(GetRewardResponse::new(rewards)),
        &scoring,
        started,
    ))
}

async fn score(
    State(w): State<Arc<Worker>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ScoreRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let texts = score_inputs(req.items, w.cfg.empty_history);
    let scoring = w
        .infer()?
        .score("items", texts, input_offset(&headers))
        .await?;
    let (rewards, probs) = scoring
        .scored
        .iter()
        .map(|s| (s.reward, s.probs.clone()))
        .unzip();
    Ok(with_timings(
        Json(ScoreResponse { rewards, probs }),
        &scoring,
        started,
    ))
}

/// Scores vLLM's `/classify` (see [`crate::vllm`]).
async fn classify_scores(
    w: &Worker,
    headers: &HeaderMap,
    req: &ClassifyRequest,
) -> Result<(ClassificationResponse, Scoring), ServeError> {
    let offset = input_offset(headers);
    let texts = req.texts(w.cfg.classify_input, w.cfg.empty_history, offset)?;
    let scoring = w.infer()?.score("input", texts, offset).await?;
    let served = w.info.get().map(|i| i.model.as_str()).unwrap_or_default();
    let body = ClassificationResponse::new(req, served, &scoring.scored, w.cfg.classify_output);
    Ok((body, scoring))
}

async fn classify(
    State(w): State<Arc<Worker>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let (body, scoring) = classify_scores(&w, &headers, &req).await?;
    Ok(with_timings(Json(body), &scoring, started))
}

async fn pooling(
    State(w): State<Arc<Worker>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Response, ServeError> {
    let started = Instant::now();
    let (body, scoring) = classify_scores(&w, &headers, &req).await?;
    let body = PoolingResponse::from_classification(body);
    Ok(with_timings(Json(body), &scoring, started))
}

fn with_timings(body: impl IntoResponse, scoring: &Scoring, started: Instant) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    let t = &scoring.timings;
    h.insert("x-compute-tokens", HeaderValue::from(t.tokens as u64));
    set_time_header(h, "x-tokenization-time", t.tokenization);
    set_time_header(h, "x-queue-time", t.queue);
    set_time_header(h, "x-inference-time", t.inference);
    set_time_header(h, "x-total-time", started.elapsed());
    response
}
