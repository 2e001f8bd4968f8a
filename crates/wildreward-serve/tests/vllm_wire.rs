//! vLLM's pooling API (`/classify`, `/pooling`), which verl's reward loop calls, on real workers
//! and a real router over the real SmolLM2 GGUF: vLLM's response shape field for field, the
//! conversation verl renders scored as the same (history, query, response) through `/score`, the
//! logits with `"activation": false`, and `--classify-output reward` putting the reward where
//! verl reads it (`data[-1].probs[-1]`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use wildreward_serve::vllm::{ClassifyInput, ClassifyOutput};

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// What verl sends: the conversation rendered by the RM tokenizer's chat template (ChatML here).
fn rendered(i: usize) -> String {
    format!(
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n\
         <|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nquestion {i} about rust?<|im_end|>\n\
         <|im_start|>assistant\nanswer {i}: borrow it.<|im_end|>\n"
    )
}

fn item(i: usize) -> Value {
    json!({
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "query": format!("question {i} about rust?"),
        "response": format!("answer {i}: borrow it."),
    })
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_answers_in_vllms_shape_with_the_scores_of_the_same_items() {
    let w1 = start_worker(worker_config()).await;
    let w2 = start_worker(worker_config()).await;
    let (router, _pool) = start_router(router_config(), &[&w1, &w2]).await;
    let n = 10;
    let items: Vec<Value> = (0..n).map(item).collect();
    let (status, scored) = post(&format!("{}/score", w1.url), &json!({ "items": items })).await;
    assert_eq!(status, 200, "{scored}");
    let inputs: Vec<String> = (0..n).map(rendered).collect();

    for base in [&w1.url, &router.url] {
        let (status, v) = post(
            &format!("{base}/classify"),
            &json!({"model": "wildreward-rm", "input": inputs}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert!(v["id"].as_str().unwrap().starts_with("classify-"), "{v}");
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "wildreward-rm");
        assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert_eq!(v["usage"]["prompt_tokens"], v["usage"]["total_tokens"]);
        assert_eq!(v["usage"]["completion_tokens"], 0);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), n);
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["index"], i);
            assert_eq!(d["num_classes"], 4);
            let probs = floats(&d["probs"]);
            assert_close(&probs, &floats(&scored["probs"][i]));
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!(d["label"], (best + 1).to_string());
        }
        // One text, as verl sends it, with the logits asked for.
        let (status, v) = post(
            &format!("{base}/classify"),
            &json!({"model": "m", "input": inputs[3], "activation": false}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["num_classes"], 3, "K-1 ordinal logits");

        // /pooling with task classify: the same numbers under `data`.
        let (status, v) = post(
            &format!("{base}/pooling"),
            &json!({"model": "m", "input": inputs, "task": "classify"}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert!(v["id"].as_str().unwrap().starts_with("pool-"));
        assert_eq!(v["data"][7]["object"], "pooling");
        assert_eq!(v["data"][7]["index"], 7);
        assert_close(&floats(&v["data"][7]["data"]), &floats(&scored["probs"][7]));
        let (status, v) = post(
            &format!("{base}/pooling"),
            &json!({"input": inputs, "task": "embed"}),
        )
        .await;
        assert_eq!(status, 422, "{v}");
    }

    // Bad input names itself and the flag that would read it.
    let (status, v) = post(
        &format!("{}/classify", router.url),
        &json!({"input": [inputs[0], "a plain text"]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let message = v["error"].as_str().unwrap();
    assert!(
        message.starts_with("input[1]: no chat markup") && message.contains("--classify-input raw"),
        "{message}"
    );
    let (status, v) = post(
        &format!("{}/classify", w1.url),
        &json!({"input": [[1, 2, 3]]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_output_reward_puts_the_reward_where_verl_reads_it() {
    let mut cfg = worker_config();
    cfg.classify_output = ClassifyOutput::Reward;
    cfg.classify_input = ClassifyInput::Raw;
    let worker = start_worker(cfg).await;
    let texts = mixed_texts(5);
    let (status, want) = post(
        &format!("{}/get_reward", worker.url),
        &json!({ "query": texts }),
    )
    .await;
    assert_eq!(status, 200);
    let want = floats(&want["rewards"]);
    for (i, text) in texts.iter().enumerate() {
        // verl: payload {"model", "input": text, "activation": false}, reward = data[-1].probs[-1].
        let (status, v) = post(
            &format!("{}/classify", worker.url),
            &json!({"model": "m", "input": text, "activation": false}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let data = v["data"].as_array().unwrap();
        let last = data.last().unwrap();
        assert_eq!(last["num_classes"], 1);
        assert!(last["label"].is_null());
        let reward = floats(&last["probs"]).pop().unwrap();
        assert!((reward - want[i]).abs() < 1e-5, "{reward} vs {}", want[i]);
        assert!((1.0..=4.0).contains(&reward));
    }
}
