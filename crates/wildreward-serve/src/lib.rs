//! `wildreward serve`: scoring workers and a failover router in front of them, laid out like
//! text-embeddings-inference (router / core / backends):
//!
//! - HTTP ([`http`], [`worker`], [`router`]): the reference's `/get_reward` wire (and OpenRLHF's),
//!   vLLM's `/classify` and `/pooling` ([`vllm`], what verl's reward loop calls), a structured `/score`, `/health`, `/` info, Prometheus `/metrics`, an OpenAPI document, bearer
//!   auth, a body limit; every error a real status code from one enum ([`error::ServeError`]).
//! - Core ([`infer`], [`queue`], [`backlog`]): admission bounded per text and by work (the
//!   expected wait, queued tokens × measured seconds per token, within `--max-queue-seconds`;
//!   429 + `Retry-After` beyond), tokenisation on a small pool, and one inference thread that owns
//!   the queue and the model and forms token-budgeted batches sorted by length (a panic there
//!   stops the worker, so a fleet restarts it).
//! - Backends ([`backend`]): a trait with the model core's `Scorer` behind it (CPU f32, CUDA bf16 by default).
//! - Router ([`router`]) and fleet ([`fleet`]): round-robin or least-in-flight over healthy workers,
//!   active health checks, retries on another worker, big batches split across workers, graceful
//!   drain, and spawned workers restarted when they die.
//!
//! Dependencies and why: `wildreward-model` scores, `wildreward-types` has the wire types and the
//! RM template; `candle-core` names devices and dtypes; `axum` (on `tokio`) serves HTTP and
//! `tower-http` turns panics into JSON 500s; `reqwest` is the router's client to its workers;
//! `rayon` is the tokenisation thread pool; `prometheus` keeps a metrics registry per server;
//! `serde` / `serde_json` read and write the bodies; `thiserror` / `anyhow` carry errors.

pub mod backend;
pub mod backlog;
pub mod config;
pub mod error;
pub mod fleet;
pub mod http;
pub mod infer;
pub mod metrics;
pub mod query_format;
pub mod queue;
pub mod router;
pub mod vllm;
pub mod worker;

pub use backend::{Backend, CandleBackend, ModelInfo};
pub use config::{DeviceSpec, HttpLimits, Policy, QueryFormat, RouterConfig, WorkerConfig};
pub use error::ServeError;
pub use fleet::WorkerLauncher;
pub use router::pool::Pool;

use anyhow::Context;
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Where a server listens.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Address to bind (127.0.0.1 unless told otherwise).
    pub host: String,
    /// Port (0 picks a free one; the chosen one is printed).
    pub port: u16,
}

/// Binds and prints `<role>: listening on http://addr` on stdout (the fleet reads its workers'
/// line to learn their ports, and `--port 0` users learn theirs).
async fn bind(listen: &Listen, role: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", listen.host, listen.port))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "wildreward serve {role}: {}http://{addr}",
        fleet::LISTENING
    )?;
    out.flush()?;
    Ok(listener)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs one scoring worker until Ctrl-C / SIGTERM (or end of stdin with `exit_on_stdin_eof`, as
/// spawned workers run), draining in-flight requests before it returns.
pub fn run_worker(
    cfg: WorkerConfig,
    listen: Listen,
    exit_on_stdin_eof: bool,
) -> anyhow::Result<()> {
    cfg.validate()?;
    runtime()?.block_on(async move {
        let listener = bind(&listen, "worker").await?;
        let model_cfg = cfg.clone();
        let loader: queue::Loader = Box::new(move || {
            let backend = CandleBackend::load(&model_cfg)?;
            Ok(Box::new(backend) as Box<dyn Backend>)
        });
        let shutdown = async move {
            if exit_on_stdin_eof {
                tokio::select! {
                    _ = http::shutdown_signal() => {}
                    _ = http::stdin_closed() => {}
                }
            } else {
                http::shutdown_signal().await;
            }
        };
        worker::serve(listener, cfg, loader, shutdown).await
    })
}

/// Runs a router over workers started elsewhere until Ctrl-C / SIGTERM, then drains.
pub fn run_router(cfg: RouterConfig, worker_urls: &[String], listen: Listen) -> anyhow::Result<()> {
    cfg.validate()?;
    let metrics = metrics::RouterMetrics::new()?;
    let pool = Arc::new(Pool::new(worker_urls, cfg.policy, metrics)?);
    runtime()?.block_on(async move {
        let listener = bind(&listen, "router").await?;
        router::serve(listener, cfg, pool, http::shutdown_signal()).await
    })
}

/// Spawns `workers` workers with `launcher` and runs a router in front of them until Ctrl-C /
/// SIGTERM; then drains the router and stops the workers.
pub fn run_fleet(
    launcher: WorkerLauncher,
    workers: usize,
    cfg: RouterConfig,
    listen: Listen,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let metrics = metrics::RouterMetrics::new()?;
    let pool = Arc::new(Pool::spawned(workers, cfg.policy, metrics));
    runtime()?.block_on(async move {
        let listener = bind(&listen, "router").await?;
        fleet::run(
            launcher,
            workers,
            listener,
            cfg,
            pool,
            http::shutdown_signal(),
        )
        .await
    })
}
