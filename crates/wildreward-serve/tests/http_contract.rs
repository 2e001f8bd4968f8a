//! The HTTP contract on real loopback servers: readiness, every bad input's status code (on the
//! worker and through the router), auth, metrics, the OpenAPI document, and a server that still
//! answers afterwards.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use wildreward_model::Truncation;

const KEY: &str = "s3cret-key";

async fn post(url: &str, body: impl Into<reqwest::Body>, key: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_until_the_model_is_warm() {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let opts = scorer_options();
    let inner = loader(opts);
    let gated: wildreward_serve::queue::Loader = Box::new(move || {
        wait.recv().unwrap();
        inner()
    });
    let server = start_worker_with(worker_config(), gated).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "unhealthy");
    let (status, _) = post(
        &format!("{}/get_reward", server.url),
        r#"{"query":["hi"]}"#,
        None,
    )
    .await;
    assert_eq!(status, 503, "no scoring before the model is warm");
    let info: Value = client
        .get(&server.url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"], "loading");
    release.send(()).unwrap();
    wait_healthy(&server.url).await;
    let info: Value = client
        .get(&server.url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["status"], "ready");
    assert_eq!(info["model"]["k"], 4);
    assert_eq!(info["model"]["dtype"], "f32");
    assert_eq!(info["model"]["device"], "cpu");
}

/// Every bad input gets its own 4xx with a JSON `{"error", "error_type"}`, on a worker and through
/// the router in front of it, and the server still scores afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_4xx_and_the_server_still_answers() {
    let mut cfg = worker_config();
    cfg.scorer.truncation = Truncation::Error;
    cfg.limits.api_key = Some(KEY.into());
    cfg.limits.max_client_batch = 64;
    cfg.limits.max_in_flight = 256;
    let worker = start_worker(cfg).await;
    let mut rcfg = router_config();
    rcfg.limits.api_key = Some(KEY.into());
    rcfg.limits.max_client_batch = 64;
    let (router, _pool) = start_router(rcfg, &[&worker]).await;

    let ten_mb = format!(r#"{{"query":["{}"]}}"#, "a".repeat(10 << 20));
    let long_text = "word ".repeat(100_000);
    let too_many = json!({ "query": vec!["hi"; 65] }).to_string();
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        (
            "invalid JSON",
            r#"{"query": ["a",]"#.into(),
            Some(KEY),
            400,
            "malformed",
        ),
        (
            "wrong types",
            r#"{"query": "a single string"}"#.into(),
            Some(KEY),
            400,
            "malformed",
        ),
        (
            "wrong element type",
            r#"{"query": [1, 2]}"#.into(),
            Some(KEY),
            400,
            "malformed",
        ),
        (
            "missing field",
            r#"{"texts": ["a"]}"#.into(),
            Some(KEY),
            400,
            "malformed",
        ),
        (
            "empty list",
            r#"{"query": []}"#.into(),
            Some(KEY),
            422,
            "validation",
        ),
        (
            "empty text",
            r#"{"query": ["ok", ""]}"#.into(),
            Some(KEY),
            422,
            "validation",
        ),
        ("10 MB body", ten_mb, Some(KEY), 413, "payload_too_large"),
        (
            "too many inputs",
            too_many,
            Some(KEY),
            413,
            "too_many_inputs",
        ),
        (
            "100k-token text",
            json!({ "query": ["ok", long_text] }).to_string(),
            Some(KEY),
            422,
            "validation",
        ),
        (
            "missing auth",
            r#"{"query": ["a"]}"#.into(),
            None,
            401,
            "unauthorized",
        ),
        (
            "wrong auth",
            r#"{"query": ["a"]}"#.into(),
            Some("nope"),
            401,
            "unauthorized",
        ),
    ];
    for base in [&worker.url, &router.url] {
        for (what, body, key, status, kind) in &cases {
            let (got, v) = post(&format!("{base}/get_reward"), body.clone(), *key).await;
            assert_eq!(got, *status, "{what} on {base}: {v}");
            assert_eq!(v["error_type"], *kind, "{what} on {base}: {v}");
            assert!(!v["error"].as_str().unwrap().is_empty());
        }
        // Errors name the text: the over-long one is query[1] on both (the router passes the
        // index of a part's first text down to its worker).
        let (_, v) = post(
            &format!("{base}/get_reward"),
            json!({ "query": ["ok", "word ".repeat(100_000)] }).to_string(),
            Some(KEY),
        )
        .await;
        assert!(
            v["error"].as_str().unwrap().starts_with("query[1] has"),
            "{v}"
        );

        let client = reqwest::Client::new();
        // /health needs no key, the rest does.
        let r = client.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        for path in ["/", "/metrics", "/openapi.json"] {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} without a key");
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} with the key");
        }
        // Still scoring after all that.
        let (status, v) = post(
            &format!("{base}/get_reward"),
            r#"{"query": ["still here"]}"#,
            Some(KEY),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["rewards"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_failures_and_batches() {
    let worker = start_worker(worker_config()).await;
    let (router, _pool) = start_router(router_config(), &[&worker]).await;
    let (status, _) = post(
        &format!("{}/get_reward", router.url),
        r#"{"query": ["a b c", "d"]}"#,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &format!("{}/get_reward", router.url),
        r#"{"query": []}"#,
        None,
    )
    .await;
    assert_eq!(status, 422);
    let text = |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let w = text(format!("{}/metrics", worker.url)).await;
    for needle in [
        r#"wildreward_request_count{route="/get_reward",status="200"} 1"#,
        "wildreward_batch_next_size_count 1",
        "wildreward_batch_next_tokens_bucket",
        "wildreward_queue_duration_seconds_bucket",
        "wildreward_tokenization_duration_seconds_bucket",
        "wildreward_inference_duration_seconds_bucket",
        "wildreward_in_flight 0",
    ] {
        assert!(w.contains(needle), "worker metrics lack {needle}:\n{w}");
    }
    let r = text(format!("{}/metrics", router.url)).await;
    for needle in [
        r#"wildreward_request_count{route="/get_reward",status="200"} 1"#,
        r#"wildreward_request_count{route="/get_reward",status="422"} 1"#,
        r#"wildreward_request_failure{error_type="validation"} 1"#,
        "wildreward_router_healthy_workers 1",
        r#"wildreward_router_attempts{outcome="ok""#,
    ] {
        assert!(r.contains(needle), "router metrics lack {needle}:\n{r}");
    }
    let doc: Value = reqwest::get(format!("{}/openapi.json", router.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/get_reward"]["post"]["responses"]["429"].is_object());
    // Unknown routes are JSON 404s too.
    let r = reqwest::get(format!("{}/nope", worker.url)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error_type"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_with_no_worker_left_says_503_not_200() {
    let worker = start_worker(worker_config()).await;
    let mut cfg = router_config();
    cfg.health_interval = Duration::from_millis(50);
    let (router, pool) = start_router(cfg, &[&worker]).await;
    drop(worker); // graceful stop: the port closes
    for _ in 0..100 {
        if pool.healthy_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, v) = post(
        &format!("{}/get_reward", router.url),
        r#"{"query": ["a"]}"#,
        None,
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error_type"], "no_healthy_worker");
    let r = reqwest::get(format!("{}/health", router.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}
