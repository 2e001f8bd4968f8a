//! Overload, broken models and slow clients on real loopback servers over the real SmolLM2 GGUF:
//! work past `--max-queue-seconds` is refused with 429 + a Retry-After from the backlog; a panic
//! on the inference thread answers its requests 503 and stops the worker, and a router in front
//! loses none of them; a non-finite score is a 500 naming the text (not retried by the router);
//! a client that sends its head or body too slowly is cut off.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wildreward_model::Scored;
use wildreward_serve::backend::TextTokenizer;
use wildreward_serve::queue::Loader;
use wildreward_serve::{Backend, CandleBackend, DeviceSpec, ModelInfo};

/// The real backend, with a switch that makes its scores NaN and a forward pass that panics.
struct Faulty {
    inner: CandleBackend,
    forwards: Arc<AtomicUsize>,
    panic_at: usize,
    nan: Arc<AtomicBool>,
}

impl Backend for Faulty {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }
    fn tokenizer(&self) -> TextTokenizer {
        self.inner.tokenizer()
    }
    fn batch_limits(&self) -> (usize, usize) {
        self.inner.batch_limits()
    }
    fn packs_rows(&self) -> bool {
        self.inner.packs_rows()
    }
    fn forward(&mut self, rows: &[Vec<u32>]) -> Result<Vec<Scored>, String> {
        let k = self.forwards.fetch_add(1, Ordering::SeqCst) + 1;
        assert_ne!(k, self.panic_at, "test backend: forward pass {k} panics");
        let mut scores = self.inner.forward(rows)?;
        if self.nan.load(Ordering::SeqCst) {
            scores[0].reward = f32::NAN;
        }
        Ok(scores)
    }
    fn warmup(&mut self) -> Result<usize, String> {
        self.inner.warmup()
    }
}

struct Switches {
    forwards: Arc<AtomicUsize>,
    nan: Arc<AtomicBool>,
}

fn faulty(panic_at: usize) -> (Loader, Switches) {
    let forwards = Arc::new(AtomicUsize::new(0));
    let nan = Arc::new(AtomicBool::new(false));
    let switches = Switches {
        forwards: forwards.clone(),
        nan: nan.clone(),
    };
    let loader: Loader = Box::new(move || {
        let inner = CandleBackend::new(model(), scorer_options(), DeviceSpec::Cpu);
        Ok(Box::new(Faulty {
            inner,
            forwards,
            panic_at,
            nan,
        }) as Box<dyn Backend>)
    });
    (loader, switches)
}

/// A worker whose `serve` result is kept (a panic must stop it with an error).
async fn start_kept(
    cfg: wildreward_serve::WorkerConfig,
    loader: Loader,
) -> (Server, oneshot::Receiver<anyhow::Result<()>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let _ = done_tx.send(wildreward_serve::worker::serve(l, cfg, loader, shutdown).await);
    });
    wait_healthy(&url).await;
    (Server { url, _stop: stop }, done_rx)
}

async fn post(url: &str, body: &Value) -> (u16, Option<u64>, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_past_the_queue_bound_gets_429_with_a_retry_after_from_the_backlog() {
    let mut cfg = worker_config();
    cfg.max_queue = Duration::from_millis(300);
    cfg.limits.max_client_batch = 64;
    let worker = start_worker(cfg).await;
    let body = json!({ "query": mixed_texts(32) });
    let url = format!("{}/get_reward", worker.url);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { post(&url, &body).await })
        })
        .collect();
    let mut ok = 0;
    let mut refused = Vec::new();
    for c in calls {
        let (status, retry, v) = c.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(v["error_type"], "overloaded");
                let message = v["error"].as_str().unwrap();
                assert!(message.contains("--max-queue-seconds"), "{message}");
                refused.push(retry.unwrap());
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert!(
        ok >= 1 && !refused.is_empty(),
        "200s {ok}, 429s {refused:?}"
    );
    // Retry-After is whole seconds, at least 1, and no more than the whole backlog would take.
    assert!(
        refused.iter().all(|&s| (1..=10).contains(&s)),
        "{refused:?}"
    );

    let client = reqwest::Client::new();
    let info: Value = client
        .get(&worker.url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["backlog"]["queued_tokens"], 0,
        "every ticket was given back"
    );
    assert!(info["backlog"]["seconds_per_token"].as_f64().unwrap() > 0.0);
    assert_eq!(info["limits"]["max_queue_seconds"], 0.3);
    let metrics = client
        .get(format!("{}/metrics", worker.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "wildreward_queue_refused_for_work"),
        refused.len() as f64
    );
    // Idle again: the same request is admitted.
    assert_eq!(post(&url, &body).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_inference_thread_answers_503_and_stops_the_worker() {
    let (loader, switches) = faulty(2);
    let (worker, done) = start_kept(worker_config(), loader).await;
    let url = format!("{}/get_reward", worker.url);
    let one = json!({ "query": ["a first text"] });
    assert_eq!(post(&url, &one).await.0, 200);
    // The next batch panics: every request the worker accepted is answered, 503 (one that
    // connects after it began to stop is refused at connect, which a client retries elsewhere).
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .json(&json!({ "query": [format!("text {i}")] }))
                    .send()
                    .await
            })
        })
        .collect();
    let mut answered = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.status(), 503);
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error_type"], "unhealthy", "{v}");
                answered += 1;
            }
            Err(e) => assert!(e.is_connect(), "an accepted request was dropped: {e}"),
        }
    }
    assert!(answered >= 1);
    assert!(switches.forwards.load(Ordering::SeqCst) >= 2);
    let stopped = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .expect("the worker stops after its inference thread panicked")
        .unwrap();
    let e = stopped.unwrap_err();
    assert!(format!("{e:#}").contains("panicked"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_loses_no_request_when_a_workers_inference_thread_panics() {
    let (loader, _switches) = faulty(1);
    let (doomed, done) = start_kept(worker_config(), loader).await;
    let healthy = start_worker(worker_config()).await;
    let mut rcfg = router_config();
    rcfg.min_split = 64; // one part per request, so each goes to one worker
    let (router, _pool) = start_router(rcfg, &[&doomed, &healthy]).await;
    let url = format!("{}/get_reward", router.url);
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                post(
                    &url,
                    &json!({ "query": [format!("client {i} asks"), "ok"] }),
                )
                .await
            })
        })
        .collect();
    for c in calls {
        let (status, _, v) = c.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["rewards"].as_array().unwrap().len(), 2);
    }
    let stopped = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .unwrap()
        .unwrap();
    assert!(stopped.is_err(), "the panicked worker stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_finite_score_is_a_500_naming_the_text_and_is_not_retried() {
    let (loader, switches) = faulty(usize::MAX);
    let (worker, _done) = start_kept(worker_config(), loader).await;
    let (router, _pool) = start_router(router_config(), &[&worker]).await;
    switches.nan.store(true, Ordering::SeqCst);
    let body = json!({ "query": ["a text the broken model scores as NaN"] });
    for base in [&worker.url, &router.url] {
        let (status, _, v) = post(&format!("{base}/get_reward"), &body).await;
        assert_eq!(status, 500, "{v}");
        assert_eq!(v["error_type"], "non_finite");
        assert!(
            v["error"].as_str().unwrap().starts_with("query[0]: "),
            "{v}"
        );
    }
    let metrics = reqwest::get(format!("{}/metrics", router.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tries: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("wildreward_router_attempts{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(tries, 1.0, "the router tried once:\n{metrics}");
    switches.nan.store(false, Ordering::SeqCst);
    assert_eq!(
        post(&format!("{}/get_reward", worker.url), &body).await.0,
        200
    );
}

/// Writes `head` and waits for the server to answer or hang up; returns what it sent and when.
fn stall(addr: &str, head: &str) -> (String, Duration) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).to_string(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_after_the_read_timeout() {
    let mut cfg = worker_config();
    cfg.limits.read_timeout = Duration::from_secs(1);
    let worker = start_worker(cfg).await;
    let addr = worker.url.strip_prefix("http://").unwrap().to_string();
    let a = addr.clone();
    let (answer, took) = tokio::task::spawn_blocking(move || {
        stall(
            &a,
            "POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{\"query\": [",
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slow_client"), "{answer}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (answer, took) = tokio::task::spawn_blocking(move || {
        stall(&addr, "POST /get_reward HTTP/1.1\r\nHost: x\r\n")
    })
    .await
    .unwrap();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        took < Duration::from_secs(10),
        "the half-sent head was cut off after {took:?}"
    );
    // And a normal client is still served.
    let (status, _, _) = post(
        &format!("{}/get_reward", worker.url),
        &json!({ "query": ["hello"] }),
    )
    .await;
    assert_eq!(status, 200);
}
