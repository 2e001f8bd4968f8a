//! Rewards through real workers and a real router on loopback equal the model core's `Scorer`, for
//! every client the issue names: the reference wire, `/score`, the reference's DPO client, OpenRLHF.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use wildreward_serve::QueryFormat;
use wildreward_types::template::build_text_from_history_str;
use wildreward_types::wire::{GetRewardResponse, ScoreItem, ScoreResponse};
use wildreward_types::{build_text, EmptyHistory, Message, Role};

fn direct(texts: &[String]) -> Vec<wildreward_model::Scored> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    direct_scorer().score(&refs).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_and_workers_return_the_scorers_rewards_in_order() {
    let w1 = start_worker(worker_config()).await;
    let w2 = start_worker(worker_config()).await;
    let (router, pool) = start_router(router_config(), &[&w1, &w2]).await;
    let client = reqwest::Client::new();

    // Mixed lengths, not sorted: the router splits them across both workers, each worker sorts
    // and batches its part, and the answer must still be in input order.
    let texts = mixed_texts(12);
    let want: Vec<f32> = direct(&texts).iter().map(|s| s.reward).collect();
    let r = client
        .post(format!("{}/get_reward", router.url))
        .json(&json!({ "query": texts }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: GetRewardResponse = r.json().await.unwrap();
    assert_close(&got.rewards, &want);
    assert_eq!(
        got.scores.as_deref(),
        Some(&got.rewards[..]),
        "OpenRLHF reads `scores`"
    );
    let served: Vec<u64> = pool
        .describe()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["served"].as_u64().unwrap())
        .collect();
    assert_eq!(
        served,
        vec![1, 1],
        "the batch was split across both workers"
    );

    // A worker directly answers the same.
    let r = client
        .post(format!("{}/get_reward", w1.url))
        .json(&json!({ "query": texts }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-inference-time"));
    let got: GetRewardResponse = r.json().await.unwrap();
    assert_close(&got.rewards, &want);

    // /score: the server applies the WildReward template; probabilities come back too.
    let items = vec![
        ScoreItem {
            query: "What is 2+2?".into(),
            response: "4".into(),
            history: vec![],
        },
        ScoreItem {
            query: "And times 3?".into(),
            response: "12".into(),
            history: vec![
                Message {
                    role: Role::User,
                    content: "What is 2+2?".into(),
                },
                Message {
                    role: Role::Assistant,
                    content: "4".into(),
                },
            ],
        },
    ];
    let texts: Vec<String> = items
        .iter()
        .map(|it| build_text(&it.history, &it.query, &it.response, EmptyHistory::Training))
        .collect();
    let want = direct(&texts);
    let r = client
        .post(format!("{}/score", router.url))
        .json(&json!({ "items": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: ScoreResponse = r.json().await.unwrap();
    let want_rewards: Vec<f32> = want.iter().map(|s| s.reward).collect();
    assert_close(&got.rewards, &want_rewards);
    for (g, w) in got.probs.iter().zip(&want) {
        assert_eq!(g.len(), 4, "K = 4 levels");
        assert_close(g, &w.probs);
    }
}

/// Written like the reference's DPO reward client (`remote_wild_rm.py`): texts built with
/// `build_text(query, response, history_str="")`, posted as `{"query": [...]}` in chunks of 32 on
/// concurrent threads, rewards read from `rewards` with plain JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_dpo_client_gets_the_scorers_rewards() {
    let worker = start_worker(worker_config()).await;
    let (router, _pool) = start_router(router_config(), &[&worker]).await;
    let pairs: Vec<(String, String)> = (0..34)
        .map(|i| {
            (
                format!("Question {i}: what is {i} squared?"),
                format!("It is {}.", i * i),
            )
        })
        .collect();
    let texts: Vec<String> = pairs
        .iter()
        .map(|(q, r)| build_text_from_history_str("", q, r, EmptyHistory::Inference))
        .collect();
    let url = format!("{}/get_reward", router.url);
    let mut threads = Vec::new();
    for chunk in texts.chunks(32) {
        let body = serde_json::to_vec(&json!({ "query": chunk })).unwrap();
        let url = url.clone();
        threads.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .timeout(std::time::Duration::from_secs(600))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            v["rewards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect::<Vec<f32>>()
        }));
    }
    let mut got = Vec::new();
    for t in threads {
        got.extend(t.await.unwrap());
    }
    let want: Vec<f32> = direct(&texts).iter().map(|s| s.reward).collect();
    assert_close(&got, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrlhf_queries_get_wildreward_semantics() {
    let mut cfg = worker_config();
    cfg.query_format = QueryFormat::OpenRlhf;
    cfg.empty_history = EmptyHistory::Inference;
    let worker = start_worker(cfg).await;
    let (router, _pool) = start_router(router_config(), &[&worker]).await;
    let prompts = [
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ];
    let queries = [
        format!("{}Apple.<|im_end|>", prompts[0]),
        format!("{}Blue.<|eot_id|>", prompts[1]),
    ];
    let body = json!({ "query": queries, "prompts": prompts, "labels": [null, null] });
    let r = reqwest::Client::new()
        .post(format!("{}/get_reward", router.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: GetRewardResponse = r.json().await.unwrap();
    let texts = vec![
        build_text(&[], "Name a fruit.", "Apple.", EmptyHistory::Inference),
        build_text(&[], "Name a colour.", "Blue.", EmptyHistory::Inference),
    ];
    let want: Vec<f32> = direct(&texts).iter().map(|s| s.reward).collect();
    assert_close(&got.rewards, &want);

    // Without prompts the server says what it needs.
    let r = reqwest::Client::new()
        .post(format!("{}/get_reward", router.url))
        .json(&json!({ "query": queries }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("prompts"), "{v}");
}
