//! Our backbone and ordinal head against transformers on tiny random models of every supported family
//! (tests/fixtures/parity, made by scripts/parity/make_tiny_fixtures.py): Llama 3.1 with `llama3` RoPE
//! scaling, Mistral, Qwen2 (q/k/v biases), Qwen3 (q/k norms, explicit head_dim). Right-padded batch.

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
    let ids = Tensor::new(ids, &Device::Cpu).unwrap();
    let hidden = bb.forward(&ids, &lengths).unwrap();
    let got: Vec<Vec<f32>> = head
        .forward(&Backbone::last_token(&hidden, &lengths).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    for (row, (g, w)) in got.iter().zip(&want).enumerate() {
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a - b).abs() <= 1e-5,
                "{arch} {kernels:?} row {row}: ours {g:?} vs transformers {w:?}"
            );
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
