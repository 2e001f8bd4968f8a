//! What the worker and the router share on the HTTP side: the JSON body extractor (every rejection
//! becomes a [`ServeError`]), bearer auth on everything but `/health`, the body limit, metrics of
//! every response, panics turned into JSON 500s, the OpenAPI document, and shutdown signals.

use crate::config::HttpLimits;
use crate::error::{ErrorType, ServeError};
use crate::metrics::HttpMetrics;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

/// The OpenAPI 3 document of both servers' routes, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Header a router puts on a slice of a client's batch: the slice's first index, so the worker's
/// errors name texts by their place in the client's batch.
pub const INPUT_OFFSET_HEADER: &str = "x-wildreward-input-offset";

/// Routes named in metrics (anything else is counted as `unmatched`, so labels stay bounded).
const ROUTES: &[&str] = &[
    "/",
    "/info",
    "/health",
    "/metrics",
    "/get_reward",
    "/score",
    "/classify",
    "/v1/classify",
    "/pooling",
    "/openapi.json",
    "/api-doc/openapi.json",
];

/// The body limit (named in 413 messages) and how long reading a body may take (408 after).
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max_bytes: usize,
    read_timeout: Duration,
}

/// Bytes of an over-limit body read and thrown away before answering 413, so a client that sends
/// the whole body before reading (most do) sees the 413 instead of a reset connection; past this
/// the connection is simply closed.
const DRAIN_AFTER_LIMIT: usize = 64 << 20;

/// A JSON request body: an over-limit body is a 413, anything that is not the expected JSON a 400
/// naming the line, column and field. At most the limit is ever held in memory.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ServeError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ServeError> {
        let limits = req.extensions().get::<BodyLimits>().copied();
        let limit = limits.map_or(usize::MAX, |l| l.max_bytes);
        let read_timeout = limits.map_or(Duration::from_secs(3600), |l| l.read_timeout);
        let too_large = || {
            ServeError::PayloadTooLarge(format!(
                "request body is over the limit of {limit} bytes (--payload-limit)"
            ))
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_AFTER_LIMIT)) {
            return Err(too_large());
        }
        let mut body = req.into_body();
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit));
        let mut total = 0usize;
        let read = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    ServeError::Malformed(format!("cannot read the request body: {e}"))
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                total = total.saturating_add(data.len());
                if total <= limit {
                    bytes.extend_from_slice(&data);
                } else if total > limit.saturating_add(DRAIN_AFTER_LIMIT) {
                    return Err(too_large());
                } else if !bytes.is_empty() {
                    bytes = Vec::new();
                }
            }
            Ok::<(), ServeError>(())
        };
        tokio::time::timeout(read_timeout, read)
            .await
            .map_err(|_| {
                ServeError::SlowClient(format!(
                    "the request body did not arrive within {} s (--read-timeout)",
                    read_timeout.as_secs_f64()
                ))
            })??;
        if total > limit {
            return Err(too_large());
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => "the body is not a valid request",
                _ => "the body is not valid JSON",
            };
            ServeError::Malformed(format!("{what}: {e}"))
        })
    }
}

/// The slice offset a router sent (0 from a client).
pub fn input_offset(headers: &HeaderMap) -> usize {
    headers
        .get(INPUT_OFFSET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Wraps a server's routes with what both servers share; `metrics` counts every response.
pub fn finish(routes: Router, limits: &HttpLimits, metrics: HttpMetrics) -> Router {
    let api_key = limits.api_key.clone();
    routes
        .route("/openapi.json", axum::routing::get(openapi))
        .route("/api-doc/openapi.json", axum::routing::get(openapi))
        .fallback(not_found)
        .layer(axum::Extension(BodyLimits {
            max_bytes: limits.max_body_bytes,
            read_timeout: limits.read_timeout,
        }))
        .layer(middleware::from_fn_with_state(
            api_key.map(Arc::<str>::from),
            require_bearer,
        ))
        .layer(CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                ServeError::Internal(format!("the server hit a bug: {what}")).into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(metrics, record))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found(req: Request) -> ServeError {
    ServeError::NotFound(format!(
        "no route {} {}; see /openapi.json",
        req.method(),
        req.uri().path()
    ))
}

/// Bearer auth on every route but `/health` (health checkers and load balancers carry no key).
async fn require_bearer(State(key): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    let Some(key) = key else {
        return next.run(req).await;
    };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match sent {
        Some(token) if same_secret(token.trim().as_bytes(), key.as_bytes()) => next.run(req).await,
        _ => ServeError::Unauthorized.into_response(),
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every response by route and status, failures by kind, and times it.
async fn record(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let route = ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("unmatched");
    let started = Instant::now();
    let response = next.run(req).await;
    metrics
        .duration
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    if let Some(ErrorType(kind)) = response.extensions().get::<ErrorType>() {
        metrics.failures.with_label_values(&[kind.as_str()]).inc();
    }
    response
}

/// Adds an `x-…-time` header in milliseconds.
pub fn set_time_header(headers: &mut HeaderMap, name: &'static str, d: Duration) {
    headers.insert(name, HeaderValue::from(d.as_millis() as u64));
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets every connection finish the
/// request it is on (as `axum::serve`'s graceful shutdown does). Unlike `axum::serve`, each request's
/// head must arrive within `header_timeout` (hyper's header read timeout, which needs a timer
/// `axum::serve` does not give it), so a client that opens connections and dribbles headers cannot
/// hold them forever; bodies have their own deadline in [`JsonBody`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; `recv` returns once all have finished.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Resolves when standard input reaches end of file: a spawned worker's parent closes the pipe to
/// stop it (and the pipe also closes when the parent dies, so no worker outlives its fleet).
pub async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("wildreward-stdin".into())
        .spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
                if n == 0 {
                    break;
                }
            }
            let _ = tx.send(());
        });
    if spawned.is_ok() {
        let _ = rx.await;
    } else {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn the_openapi_document_is_json_naming_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for route in ROUTES {
            if *route != "/api-doc/openapi.json" {
                assert!(doc["paths"].get(*route).is_some(), "{route} undocumented");
            }
        }
        for status in ["400", "401", "413", "422", "429", "503"] {
            assert!(
                doc["paths"]["/get_reward"]["post"]["responses"]
                    .get(status)
                    .is_some(),
                "/get_reward {status} undocumented"
            );
        }
    }
}
