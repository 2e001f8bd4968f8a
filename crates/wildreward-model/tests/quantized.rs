//! Scoring straight from a GGUF's quantized weights (`LoadOptions::quantized`) on the real
//! SmolLM2-135M-Instruct Q4_1 file (fetched by scripts/fetch-assets.sh).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;
use candle_core::Device;
use std::path::{Path, PathBuf};
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::weights::{self, unpermute_rope_rows, unpermute_rope_rows_quantized};
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions};

fn gguf() -> PathBuf {
    asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Moving a quantized weight's rows as bytes gives exactly the dequantised weight's un-permutation.
#[test]
fn quantized_q_and_k_rows_are_unpermuted_exactly() {
    let path = gguf();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut file).unwrap();
    for (name, heads) in [("blk.0.attn_q.weight", 9), ("blk.3.attn_k.weight", 3)] {
        let q = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        assert!(
            !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16),
            "{name} is not quantized"
        );
        let want = unpermute_rope_rows(&q.dequantize(&Device::Cpu).unwrap(), heads).unwrap();
        let got = unpermute_rope_rows_quantized(&q, heads, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let diff = (want - got)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name}");
    }
}

/// The quantized projections replace every layer's seven, the scorer falls back from the packed
/// forward to the padded one, and the rewards stay close to the dequantised f32 path's (candle's
/// quantized matmul also quantizes the activations, to 8 bits, so they are not equal).
#[test]
fn scoring_from_quantized_weights_stays_close_to_the_f32_path() {
    let f32_model = RewardModel::load(&gguf(), &LoadOptions::inference()).unwrap();
    let opts = LoadOptions {
        quantized: true,
        ..LoadOptions::inference()
    };
    let quantized = RewardModel::load(&gguf(), &opts).unwrap();
    assert_eq!(f32_model.forward().name(), "packed-cpu");
    assert_eq!(quantized.forward().name(), "candle");
    let tok = f32_model.tokenizer();
    let ids: Vec<Vec<u32>> = [
        "The capital of France is Paris.",
        "Rust's ownership rules let the compiler free memory without a garbage collector, and \
         borrowing lets functions use values without taking them.",
        "No.",
    ]
    .iter()
    .map(|t| tok.encode(*t, true).unwrap().get_ids().to_vec())
    .collect();
    let score = |m: RewardModel| -> Vec<f32> {
        let scorer = Scorer::new(m, ScorerOptions::default());
        scorer
            .score_ids(&ids)
            .unwrap()
            .iter()
            .map(|s| s.reward)
            .collect()
    };
    let (exact, approx) = (score(f32_model), score(quantized));
    let worst = exact
        .iter()
        .zip(&approx)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst > 0.0,
        "the quantized path gave the f32 path's rewards"
    );
    assert!(worst < 0.05, "rewards {exact:?} vs {approx:?}");
}

/// A quantized weight shaped unlike the model's, or a projection without one, is an error naming it,
/// and leaves the model as it was.
#[test]
fn mismatched_or_missing_quantized_weights_are_clear_errors() {
    let mut model = RewardModel::load(&gguf(), &LoadOptions::inference()).unwrap();
    let mut weights = weights::load_quantized_projections(&gguf(), &Device::Cpu).unwrap();
    let key = "model.layers.2.self_attn.q_proj.weight";
    let k_proj = weights["model.layers.2.self_attn.k_proj.weight"].clone();
    let q_proj = weights.insert(key.to_string(), k_proj).unwrap();
    let err = model.use_quantized(&weights).unwrap_err().to_string();
    assert!(err.contains(key) && err.contains("[192, 576]"), "{err}");
    weights.insert(key.to_string(), q_proj);
    weights.remove("model.layers.29.mlp.down_proj.weight");
    let err = model.use_quantized(&weights).unwrap_err().to_string();
    assert!(err.contains("209 of the 210"), "{err}");
    // Neither call changed a projection: the model still runs the packed f32 forward.
    assert_eq!(model.forward().name(), "packed-cpu");
}

#[test]
fn quantized_scoring_of_an_hf_directory_is_a_clear_error() {
    let dir = std::env::temp_dir().join("wildreward-quantized-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let opts = LoadOptions {
        quantized: true,
        ..LoadOptions::inference()
    };
    let err = RewardModel::load(&dir, &opts).unwrap_err().to_string();
    assert!(err.contains("needs a GGUF file"), "{err}");
    assert!(err.contains("wildreward-quantized-dir"), "{err}");
}
