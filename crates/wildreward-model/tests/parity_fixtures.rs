//! Our backbone and ordinal head against transformers on tiny random models of every supported family
//! (tests/fixtures/parity, made by scripts/parity/make_tiny_fixtures.py): Llama 3.1 with `llama3` RoPE
//! scaling, Mistral, Qwen2 (q/k/v biases), Qwen3 (q/k norms, explicit head_dim). Right-padded batch,
//! and the same rows unpadded through both inference forwards (packed CPU and candle).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;
use wildreward_model::{Backbone, HeadKind, Kernels, ModelConfig, ScoreHead};

fn check(arch: &str, kernels: Kernels) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(arch);
    let cfg =
        ModelConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(expected["ids"].clone()).unwrap();
    let lengths: Vec<usize> = serde_json::from_value(expected["lengths"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).unwrap();

    let head = ScoreHead::from_tensors(&tensors, HeadKind::Ordinal, cfg.label_count().unwrap())
        .unwrap()
        .unwrap();
    let bb = Backbone::load(
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
        &cfg,
        kernels,
    )
    .unwrap();
    // The packed CPU forward (scoring's fast path) on the same rows, unpadded.
    let forward = wildreward_model::backend::select(&bb, None).unwrap();
    assert_eq!(forward.name(), "packed-cpu");
    let rows: Vec<&[u32]> = ids.iter().zip(&lengths).map(|(r, &n)| &r[..n]).collect();
    let packed: Vec<Vec<f32>> = head
        .forward(&forward.last_hidden(&rows).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    // The candle forward (the CUDA / LoRA / quantized path's code, on the CPU) on the same rows.
    let candle = wildreward_model::candle_forward::CandleForward::new(bb.clone());
    let candle: Vec<Vec<f32>> = head
        .forward(&wildreward_model::Forward::last_hidden(&candle, &rows).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    let ids = Tensor::new(ids, &Device::Cpu).unwrap();
    let hidden = bb.forward(&ids, &lengths).unwrap();
    let got: Vec<Vec<f32>> = head
        .forward(&Backbone::last_token(&hidden, &lengths).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    for (path, got) in [("padded", got), ("packed", packed), ("candle", candle)] {
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a - b).abs() <= 1e-5,
                    "{arch} {kernels:?} {path} row {row}: ours {g:?} vs transformers {w:?}"
                );
            }
        }
    }
}

#[test]
fn llama31_with_rope_scaling_matches_transformers() {
    check("llama31", Kernels::Differentiable);
    check("llama31", Kernels::Fused);
}

#[test]
fn mistral_matches_transformers() {
    check("mistral", Kernels::Differentiable);
    check("mistral", Kernels::Fused);
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2", Kernels::Differentiable);
    check("qwen2", Kernels::Fused);
}

#[test]
fn qwen3_matches_transformers() {
    check("qwen3", Kernels::Differentiable);
    check("qwen3", Kernels::Fused);
}

/// A word-level tokenizer over the fixture's vocabulary (the tiny models have none of their own).
fn write_tokenizer(path: &Path, vocab_size: usize) {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab = (0..vocab_size)
        .map(|i| (format!("t{i}"), i as u32))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("t0".into())
        .build()
        .unwrap();
    tokenizers::Tokenizer::new(model).save(path, false).unwrap();
}

#[test]
fn sharded_checkpoints_and_the_hub_cache_load_the_same_weights() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/qwen3");
    let single =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    // HF_HOME/hub/models--org--tiny/snapshots/<rev>/ with refs/main naming the revision.
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hf-home");
    let _ = std::fs::remove_dir_all(&home);
    let repo = home.join("hub/models--org--tiny-qwen3");
    let snap = repo.join("snapshots/0123abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abc").unwrap();
    std::fs::copy(src.join("config.json"), snap.join("config.json")).unwrap();
    write_tokenizer(&snap.join("tokenizer.json"), 50);
    // Two shards and their index, as `save_pretrained(max_shard_size=…)` writes them.
    let mut names: Vec<&String> = single.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        let shard: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), single[*n].clone()))
            .collect();
        candle_core::safetensors::save(&shard, snap.join(file)).unwrap();
        for n in part {
            map.insert((*n).clone(), file.into());
        }
    }
    std::fs::write(
        snap.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    std::env::set_var("HF_HOME", &home);
    let dir = wildreward_model::weights::resolve("org/tiny-qwen3").unwrap();
    assert_eq!(dir, snap);
    let ck = wildreward_model::weights::load(&dir, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(ck.tensors.len(), single.len());
    for (name, t) in &single {
        let diff = (t - &ck.tensors[name])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }
    // A shard named by the index but absent is an error naming it.
    std::fs::remove_file(snap.join("model-00002-of-00002.safetensors")).unwrap();
    let err = wildreward_model::weights::load(&dir, &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("missing"),
        "{err}"
    );
}
