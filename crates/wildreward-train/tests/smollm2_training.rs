//! Training on the real SmolLM2-135M-Instruct weights with small real samples (fixtures/SOURCE.md):
//! every mode and loss lowers the loss, every trainable tensor gets a gradient, LoRA merged on save
//! scores like LoRA at run time, and the saved directory loads as a reward model.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::weights::{self, Checkpoint};
use wildreward_model::{LoadOptions, RewardModel};
use wildreward_train::data::{read_split, Encoder};
use wildreward_train::forward::{logits, loss_of};
use wildreward_train::params::{build, TrainableModel};
use wildreward_train::{train, LossKind, TrainConfig, TrainMode, TrainRun};
use wildreward_types::EmptyHistory;

fn gguf() -> PathBuf {
    asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn ckpt() -> Checkpoint {
    static CKPT: OnceLock<Checkpoint> = OnceLock::new();
    CKPT.get_or_init(|| weights::load(&gguf(), &Device::Cpu, DType::F32).unwrap())
        .clone()
}

fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A short run on the fixture whose test split is the training split itself (in-sample loss), so
/// "the loss went down" is measured on the same examples before and after.
fn short_run(mode: TrainMode, loss: LossKind, steps: usize, lr: f64) -> (f64, f64) {
    let name = if loss == LossKind::Bt {
        "pairs"
    } else {
        "wildfb"
    };
    let data = tempfile::tempdir().unwrap();
    let src = fixtures(name).join("train.jsonl");
    std::fs::copy(&src, data.path().join("train.jsonl")).unwrap();
    std::fs::copy(&src, data.path().join("test.jsonl")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        train: mode,
        loss,
        max_steps: steps,
        max_length: 256,
        batch_size: 3,
        train_limit: 6,
        eval_limit: 6,
        lr,
        warmup_ratio: 0.0,
        seed: 3,
        ..TrainConfig::default()
    };
    let report = train(&TrainRun {
        model: gguf(),
        data: data.path().to_path_buf(),
        out: out.path().join("rm"),
        config,
        resume: false,
        progress: false,
        feature_cache: None,
    })
    .unwrap();
    let metrics = std::fs::read_to_string(out.path().join("rm/metrics.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let start = evals.iter().find(|v| v["type"] == "start").unwrap();
    let before = start["initial_eval"]["loss"].as_f64().unwrap();
    let after = report.final_eval["loss"].as_f64().unwrap();
    // The saved directory is a loadable reward model with the trained head kind.
    let saved = RewardModel::load(&out.path().join("rm"), &LoadOptions::inference()).unwrap();
    assert_eq!(
        saved.head().kind(),
        wildreward_train::params::head_for(loss, 3).0
    );
    assert!(!out.path().join("rm/.model.partial").exists());
    (before, after)
}

#[test]
fn every_loss_lowers_the_loss_with_the_head() {
    for loss in [LossKind::Ordinal, LossKind::Corn, LossKind::Bt] {
        let (before, after) = short_run(TrainMode::Head, loss, 12, 1e-3);
        assert!(after < before * 0.95, "{loss:?}: {before} -> {after}");
    }
}

#[test]
fn a_coral_run_is_refused_before_training_because_transformers_cannot_load_it() {
    let config = TrainConfig {
        loss: LossKind::Coral,
        ..TrainConfig::default()
    };
    let e = config.validate().unwrap_err().to_string();
    assert!(
        e.contains("CORAL") && e.contains("transformers") && e.contains("corn"),
        "{e}"
    );
}

#[test]
fn every_mode_lowers_the_loss() {
    for (mode, steps, lr) in [
        (TrainMode::LastN(2), 4, 1e-4),
        (TrainMode::Lora(4), 4, 1e-3),
        (TrainMode::Full, 2, 3e-5),
    ] {
        let (before, after) = short_run(mode, LossKind::Ordinal, steps, lr);
        assert!(after < before, "{mode}: {before} -> {after}");
    }
}

fn trainable(mode: TrainMode) -> (TrainableModel, Vec<wildreward_train::data::Encoded>) {
    let tm = build(ckpt(), mode, LossKind::Ordinal, 3, 2.0, 1).unwrap();
    let examples = read_split(&fixtures("wildfb/train.jsonl"), false, 2).unwrap();
    let enc = Encoder::new(tm.model.tokenizer(), 256, EmptyHistory::Training);
    let encoded = examples.iter().map(|e| enc.encode(e).unwrap()).collect();
    (tm, encoded)
}

fn grads(tm: &TrainableModel, encoded: &[wildreward_train::data::Encoded]) -> Vec<(String, f32)> {
    let z = logits(tm, encoded, &[0, 1], None).unwrap();
    let store = loss_of(LossKind::Ordinal, &z, encoded, &[0, 1])
        .unwrap()
        .backward()
        .unwrap();
    tm.params
        .iter()
        .map(|p| {
            let g = store
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {}", p.name));
            (
                p.name.clone(),
                g.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_trainable_tensor_receives_a_nonzero_gradient() {
    let (tm, enc) = trainable(TrainMode::Full);
    // Every backbone tensor and the head (SmolLM2: 30 layers × 9 + embeddings + norm + score).
    assert_eq!(tm.params.len(), 30 * 9 + 3);
    for (name, g) in grads(&tm, &enc) {
        assert!(g > 0.0 && g.is_finite(), "{name}: {g}");
    }
    let (tm, enc) = trainable(TrainMode::LastN(2));
    assert_eq!(tm.params.len(), 2 * 9 + 2);
    for (name, g) in grads(&tm, &enc) {
        assert!(g > 0.0, "{name}: {g}");
    }
    // LoRA: B starts at zero, so A's gradient is zero until B moves (as in PEFT); B's is not.
    let (tm, enc) = trainable(TrainMode::Lora(2));
    assert_eq!(tm.params.len(), 30 * 7 * 2 + 1);
    for (name, g) in grads(&tm, &enc) {
        if !name.contains("lora_A") {
            assert!(g > 0.0, "{name}: {g}");
        }
    }
    for p in tm.params.iter().filter(|p| p.name.contains("lora_B")) {
        p.var
            .set(&(p.var.as_tensor().ones_like().unwrap() * 0.01).unwrap())
            .unwrap();
    }
    for (name, g) in grads(&tm, &enc) {
        assert!(g > 0.0, "{name}: {g}");
    }
}

#[test]
fn lora_merged_on_save_scores_like_lora_at_run_time() {
    let (tm, enc) = trainable(TrainMode::Lora(4));
    let mut seed = 0u32;
    for p in tm.params.iter().filter(|p| p.name.contains("lora_B")) {
        let n = p.var.elem_count();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.02 - 0.01
            })
            .collect();
        p.var
            .set(&Tensor::from_vec(data, p.var.shape(), &Device::Cpu).unwrap())
            .unwrap();
    }
    let runtime = logits(&tm, &enc, &[0, 1], None).unwrap();
    let base = build(ckpt(), TrainMode::Head, LossKind::Ordinal, 3, 2.0, 1).unwrap();
    let unadapted = logits(&base, &enc, &[0, 1], None).unwrap();
    let moved = (&runtime - &unadapted)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(
        moved.to_scalar::<f32>().unwrap() > 1e-3,
        "the adapters must change the output"
    );

    let merged = tm.merged().unwrap();
    assert!(merged.tensors().keys().all(|k| !k.contains("lora")));
    let dir = tempfile::tempdir().unwrap();
    wildreward_model::checkpoint::save_into(&merged, dir.path()).unwrap();
    let loaded = RewardModel::load(dir.path(), &LoadOptions::inference()).unwrap();
    let seqs: Vec<&[u32]> = enc.iter().map(|e| e.ids.as_slice()).collect();
    let (ids, lengths) = wildreward_train::forward::pad(&seqs, 2, &Device::Cpu).unwrap();
    let saved = loaded.logits(&ids, &lengths).unwrap();
    let diff = (&runtime - &saved)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "{diff}");
}

/// Logits of examples 0 and 1 and each trainable tensor's gradient, with or without the frozen
/// part's cache.
fn logits_and_grads(
    tm: &TrainableModel,
    encoded: &[wildreward_train::data::Encoded],
    cache: Option<&wildreward_train::forward::FeatureCache>,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let z = logits(tm, encoded, &[0, 1], cache).unwrap();
    let store = loss_of(LossKind::Ordinal, &z, encoded, &[0, 1])
        .unwrap()
        .backward()
        .unwrap();
    let grads = tm
        .params
        .iter()
        .map(|p| {
            store
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {}", p.name))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    (z.flatten_all().unwrap().to_vec1().unwrap(), grads)
}

#[test]
fn last_n_training_on_the_cached_trunk_matches_the_full_forward() {
    use wildreward_train::forward::{caches_features, FeatureCache};
    let mode = TrainMode::LastN(2);
    assert!(caches_features(mode));
    let (tm, enc) = trainable(mode);
    // The trained blocks move away from the loaded weights first: the cache must hold only the
    // frozen blocks' output, so both paths still agree afterwards.
    for p in tm
        .params
        .iter()
        .filter(|p| p.name.contains("layers.29.mlp"))
    {
        let t = p.var.as_tensor();
        p.var.set(&((t * 1.05).unwrap() + 1e-3).unwrap()).unwrap();
    }
    let cache = FeatureCache::build(&tm, mode, &enc, None, |_| {}).unwrap();
    let (z_full, g_full) = logits_and_grads(&tm, &enc, None);
    let (z_cached, g_cached) = logits_and_grads(&tm, &enc, Some(&cache));
    for (a, b) in z_full.iter().zip(&z_cached) {
        assert!((a - b).abs() < 1e-3, "logit {a} vs {b}");
    }
    for (p, (gf, gc)) in tm.params.iter().zip(g_full.iter().zip(&g_cached)) {
        let scale = gf.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let worst = gf
            .iter()
            .zip(gc)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-2 * scale,
            "{}: max |Δgrad| {worst} vs max |grad| {scale}",
            p.name
        );
    }
}
