//! A non-finite reward logit is an error naming the row, never a NaN reward: SmolLM2 with a head
//! whose weights hold one NaN, scored next to a head without one.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use wildreward_model::assets::{asset, SMOLLM2_GGUF};
use wildreward_model::{
    HeadKind, LoadOptions, ModelError, RewardModel, ScoreHead, Scorer, ScorerOptions,
};

fn head(hidden: usize, poison: bool) -> ScoreHead {
    let mut w = vec![0.01f32; 3 * hidden];
    if poison {
        w[hidden + 7] = f32::NAN;
    }
    let tensors = HashMap::from([(
        "score.weight".to_string(),
        Tensor::from_vec(w, (3, hidden), &Device::Cpu).unwrap(),
    )]);
    ScoreHead::from_tensors(&tensors, HeadKind::Ordinal, 3)
        .unwrap()
        .unwrap()
}

#[test]
fn a_nan_logit_is_refused_not_returned_as_a_reward() {
    let path = asset(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        SMOLLM2_GGUF,
    )
    .unwrap();
    let mut model = RewardModel::load(&path, &LoadOptions::inference()).unwrap();
    let hidden = model.config().hidden_size;
    model.set_head(head(hidden, false));
    let texts = [
        "A short text.",
        "Another one, a little longer than the first.",
    ];
    let clean = Scorer::new(model.clone(), ScorerOptions::default())
        .score(&texts)
        .unwrap();
    assert!(clean.iter().all(|s| s.reward.is_finite()));
    model.set_head(head(hidden, true));
    let err = Scorer::new(model, ScorerOptions::default())
        .score(&texts)
        .unwrap_err();
    assert!(matches!(err, ModelError::NonFinite(_)), "{err}");
    assert!(err.to_string().contains("non-finite"), "{err}");
}
