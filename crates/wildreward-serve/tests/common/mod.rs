//! Real servers on loopback (ephemeral ports) over the real SmolLM2 GGUF, loaded once per test binary.
#![allow(clippy::unwrap_used, dead_code)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions};
use wildreward_serve::metrics::RouterMetrics;
use wildreward_serve::queue::Loader;
use wildreward_serve::{Backend, CandleBackend, DeviceSpec, Pool, RouterConfig, WorkerConfig};

/// Short limits keep the forward passes cheap on CI's 2 cores.
pub const MAX_LENGTH: usize = 48;

pub fn model() -> RewardModel {
    static MODEL: OnceLock<RewardModel> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let path = asset(&root, SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
            RewardModel::load(&path, &LoadOptions::inference()).unwrap()
        })
        .clone()
}

pub fn scorer_options() -> ScorerOptions {
    ScorerOptions {
        max_length: MAX_LENGTH,
        max_batch_tokens: 512,
        max_batch_size: 8,
        ..ScorerOptions::default()
    }
}

/// The model core's scorer with the workers' options: what the servers must agree with.
pub fn direct_scorer() -> Scorer {
    Scorer::new(model(), scorer_options())
}

pub fn worker_config() -> WorkerConfig {
    let mut cfg = WorkerConfig::new("SmolLM2 (shared in-process)".into(), DeviceSpec::Cpu);
    cfg.scorer = scorer_options();
    cfg.tokenization_workers = 1;
    // Backpressure by work depends on the CPU's speed: only the tests about it set a real bound.
    cfg.max_queue = Duration::from_secs(600);
    cfg
}

pub fn loader(opts: ScorerOptions) -> Loader {
    Box::new(move || {
        Ok(Box::new(CandleBackend::new(model(), opts, DeviceSpec::Cpu)) as Box<dyn Backend>)
    })
}

/// A running server: its base URL; dropping it stops the server (gracefully).
pub struct Server {
    pub url: String,
    pub _stop: oneshot::Sender<()>,
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

pub async fn start_worker_with(cfg: WorkerConfig, loader: Loader) -> Server {
    let (l, url) = listener().await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = wildreward_serve::worker::serve(l, cfg, loader, shutdown).await {
            eprintln!("worker stopped: {e:#}");
        }
    });
    Server { url, _stop: stop }
}

pub async fn start_worker(cfg: WorkerConfig) -> Server {
    let opts = cfg.scorer.clone();
    let server = start_worker_with(cfg, loader(opts)).await;
    wait_healthy(&server.url).await;
    server
}

pub async fn start_router(cfg: RouterConfig, workers: &[&Server]) -> (Server, Arc<Pool>) {
    let urls: Vec<String> = workers.iter().map(|w| w.url.clone()).collect();
    let pool = Arc::new(Pool::new(&urls, cfg.policy, RouterMetrics::new().unwrap()).unwrap());
    let (l, url) = listener().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let p = pool.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        wildreward_serve::router::serve(l, cfg, p, shutdown)
            .await
            .unwrap();
    });
    let server = Server { url, _stop: stop };
    // Healthy once every worker has passed a health check.
    for _ in 0..200 {
        if pool.healthy_count() == workers.len() {
            return (server, pool);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("router never saw its workers healthy");
}

pub fn router_config() -> RouterConfig {
    RouterConfig {
        health_interval: Duration::from_millis(100),
        min_split: 4,
        ..RouterConfig::default()
    }
}

pub async fn wait_healthy(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{url}/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became healthy");
}

/// Texts of mixed lengths (a few tokens to past MAX_LENGTH, so some are truncated).
pub fn mixed_texts(n: usize) -> Vec<String> {
    let words = "the user asked about rust lifetimes and the assistant explained borrowing with a small example";
    let words: Vec<&str> = words.split(' ').collect();
    (0..n)
        .map(|i| {
            let len = 1 + (i * 7) % 40;
            (0..len)
                .map(|k| words[(i + k) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

pub fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "text {i}: server {g} vs scorer {w}");
    }
}
