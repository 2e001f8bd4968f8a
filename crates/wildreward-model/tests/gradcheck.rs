//! Finite-difference gradient check (f64) of the whole differentiable path on tiny random models:
//! embeddings, RMS norms, q/k norms (Qwen3) or q/k/v biases (Qwen2), RoPE, grouped-query attention
//! with the causal + padding mask, softmax, the gated MLP, last-token pooling, the ordinal / CORAL /
//! scalar heads, all four losses, and the tied LM head with log-softmax (what DPO trains through).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;
use wildreward_model::{loss, Backbone, HeadKind, Kernels, ModelConfig, ScoreHead};

fn config(model_type: &str) -> ModelConfig {
    ModelConfig::from_json(&format!(
        r#"{{"model_type":"{model_type}","hidden_size":8,"intermediate_size":12,"num_hidden_layers":2,
        "num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"vocab_size":11,
        "rms_norm_eps":1e-6,"rope_theta":10000,"max_position_embeddings":16,"tie_word_embeddings":true}}"#
    ))
    .unwrap()
}

fn shapes(cfg: &ModelConfig, arch: &str) -> Vec<(String, Vec<usize>)> {
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_kv_heads() * hd);
    let mut out = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![cfg.vocab_size, h],
        ),
        ("model.norm.weight".to_string(), vec![h]),
        ("ord.weight".to_string(), vec![3, h]),
        ("coral.weight".to_string(), vec![1, h]),
        ("coral.bias".to_string(), vec![3]),
        ("scalar.weight".to_string(), vec![1, h]),
    ];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let mut add = |n: &str, s: Vec<usize>| out.push((format!("{p}.{n}"), s));
        add("input_layernorm.weight", vec![h]);
        add("post_attention_layernorm.weight", vec![h]);
        add("self_attn.q_proj.weight", vec![q, h]);
        add("self_attn.k_proj.weight", vec![kv, h]);
        add("self_attn.v_proj.weight", vec![kv, h]);
        add("self_attn.o_proj.weight", vec![h, q]);
        add("mlp.gate_proj.weight", vec![i, h]);
        add("mlp.up_proj.weight", vec![i, h]);
        add("mlp.down_proj.weight", vec![h, i]);
        if arch == "qwen2" {
            add("self_attn.q_proj.bias", vec![q]);
            add("self_attn.k_proj.bias", vec![kv]);
            add("self_attn.v_proj.bias", vec![kv]);
        }
        if arch == "qwen3" {
            add("self_attn.q_norm.weight", vec![hd]);
            add("self_attn.k_norm.weight", vec![hd]);
        }
    }
    out
}

/// f64 weights drawn from `rng` for every tensor of `shapes`: norms near 1, the rest in [−0.5, 0.5].
fn random_weights(cfg: &ModelConfig, arch: &str, rng: &mut StdRng) -> HashMap<String, Tensor> {
    shapes(cfg, arch)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let norm = name.contains("norm");
            let data: Vec<f64> = (0..n)
                .map(|_| {
                    let r = rng.random::<f64>() * 2.0 - 1.0;
                    if norm {
                        1.0 + 0.3 * r
                    } else {
                        0.5 * r
                    }
                })
                .collect();
            (name, Tensor::from_vec(data, shape, &Device::Cpu).unwrap())
        })
        .collect()
}

fn head(vars: &HashMap<String, Var>, prefix: &str, kind: HeadKind) -> ScoreHead {
    let mut t = HashMap::new();
    t.insert(
        "score.weight".to_string(),
        vars[&format!("{prefix}.weight")].as_tensor().clone(),
    );
    if let Some(b) = vars.get(&format!("{prefix}.bias")) {
        t.insert("score.bias".to_string(), b.as_tensor().clone());
    }
    ScoreHead::from_tensors(&t, kind, 3).unwrap().unwrap()
}

/// Checks every parameter's gradient on `kernels`' path; returns the loss at the weights.
fn check(arch: &str, kernels: Kernels) -> f64 {
    let cfg = config(arch);
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(11);
    let vars: HashMap<String, Var> = random_weights(&cfg, arch, &mut rng)
        .into_iter()
        .map(|(name, t)| (name, Var::from_tensor(&t).unwrap()))
        .collect();
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let bb = Backbone::load(
        VarBuilder::from_tensors(tensors, DType::F64, &dev),
        &cfg,
        kernels,
    )
    .unwrap();
    let (ord, coral, scalar) = (
        head(&vars, "ord", HeadKind::Ordinal),
        head(&vars, "coral", HeadKind::Coral),
        head(&vars, "scalar", HeadKind::Scalar),
    );
    // Three right-padded rows (pad id 0) of different lengths.
    let ids = Tensor::new(
        &[[3u32, 7, 1, 9, 4], [5, 2, 8, 0, 0], [10, 6, 0, 0, 0]],
        &dev,
    )
    .unwrap();
    let lengths = [5usize, 3, 2];
    let labels = [4u8, 2, 1];
    let loss_of = || -> Tensor {
        let hidden = bb.forward(&ids, &lengths).unwrap();
        // The reward heads read the last-token path (its last layer runs at those tokens only); the
        // LM head reads every position of the full forward.
        let pooled = bb.forward_last(&ids, &lengths).unwrap();
        let gathered = Backbone::last_token(&hidden, &lengths).unwrap();
        assert!(
            max_abs_diff(&pooled, &gathered) < 1e-12,
            "{arch}: forward_last differs from the full forward's last tokens by {}",
            max_abs_diff(&pooled, &gathered)
        );
        let z = ord.forward(&pooled).unwrap();
        let zc = coral.forward(&pooled).unwrap();
        let zs = scalar.forward(&pooled).unwrap().squeeze(1).unwrap();
        let lm = bb.lm_logits(&hidden.narrow(1, 0, 2).unwrap()).unwrap();
        let logp = candle_nn::ops::log_softmax(&lm, candle_core::D::Minus1).unwrap();
        let terms = [
            loss::ordinal_bce(&z, &labels).unwrap(),
            loss::coral(&zc, &labels).unwrap(),
            loss::corn(&z, &labels).unwrap(),
            loss::bradley_terry(&zs.narrow(0, 0, 1).unwrap(), &zs.narrow(0, 1, 1).unwrap())
                .unwrap(),
            (logp.sum_all().unwrap() * -0.01).unwrap(),
        ];
        terms[1..]
            .iter()
            .fold(terms[0].clone(), |acc, t| (acc + t).unwrap())
    };
    let total = || loss_of().to_scalar::<f64>().unwrap();
    let grads = loss_of().backward().unwrap();
    let eps = 1e-6;
    let mut checked = 0;
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let shape = var.as_tensor().shape().clone();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for _ in 0..3 {
            let i = rng.random_range(0..base.len());
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, shape.clone(), &dev).unwrap())
                    .unwrap();
                total()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), shape.clone(), &dev).unwrap())
                .unwrap();
            let analytic = g[i];
            let err = (numeric - analytic).abs() / numeric.abs().max(analytic.abs()).max(1e-3);
            assert!(
                err < 1e-5,
                "{arch} {name}[{i}]: analytic {analytic:e} vs numeric {numeric:e} (rel err {err:e})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3 * vars.len());
    total()
}

#[test]
fn gradients_match_finite_differences_llama() {
    check("llama", Kernels::Differentiable);
}

#[test]
fn gradients_match_finite_differences_qwen2_biases() {
    check("qwen2", Kernels::Differentiable);
}

#[test]
fn gradients_match_finite_differences_qwen3_qk_norm() {
    check("qwen3", Kernels::Differentiable);
}

/// candle's composed ops (the CUDA training path, no CPU nodes) pass the same check, and give the
/// loss the nodes give.
#[test]
fn composed_op_gradients_match_finite_differences_and_the_nodes() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let composed = check(arch, Kernels::Composed);
        let nodes = check(arch, Kernels::Differentiable);
        assert!(
            (composed - nodes).abs() < 1e-9 * nodes.abs().max(1.0),
            "{arch}: composed ops give loss {composed}, the nodes {nodes}"
        );
    }
}

/// max |a − b| over two f64 tensors of one shape.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The KV cache grows in place (chunks of 256 positions): decoding one token at a time past a chunk
/// boundary, after a shared prompt expanded to two samples, gives the full sequence's hidden states.
#[test]
fn cached_decoding_past_a_cache_chunk_matches_the_full_sequence() {
    let mut cfg = config("llama");
    cfg.max_position_embeddings = Some(512);
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(3);
    let bb = Backbone::load(
        VarBuilder::from_tensors(random_weights(&cfg, "llama", &mut rng), DType::F64, &dev),
        &cfg,
        Kernels::Differentiable,
    )
    .unwrap();
    let ids: Vec<u32> = (0..300).map(|_| rng.random_range(0..11)).collect();
    let full = bb
        .forward(
            &Tensor::new(ids.as_slice(), &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            &[300],
        )
        .unwrap();
    let mut cache = wildreward_model::KvCache::new();
    let prompt = 250;
    let first = bb
        .forward_cached(
            &Tensor::new(&ids[..prompt], &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            &mut cache,
        )
        .unwrap();
    let mut got = vec![first.squeeze(0).unwrap()];
    cache.expand_batch(2).unwrap();
    for &id in &ids[prompt..] {
        let step = Tensor::new(&[[id], [id]], &dev).unwrap();
        let h = bb.forward_cached(&step, &mut cache).unwrap();
        let (a, b) = (h.get(0).unwrap(), h.get(1).unwrap());
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-12, "the two samples differ by {diff}");
        got.push(a);
    }
    assert_eq!(cache.len(), 300);
    let got = Tensor::cat(&got, 0).unwrap();
    let diff = max_abs_diff(&got, &full.squeeze(0).unwrap());
    assert!(diff < 1e-10, "cached vs full: {diff}");
}
