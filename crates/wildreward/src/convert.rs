//! `wildreward convert`: any checkpoint the model crate reads (GGUF, HF directory, hub cache) written
//! as an HF reward-model directory (`*ForSequenceClassification` layout).

use serde::Serialize;
use std::path::{Path, PathBuf};
use wildreward_model::{checkpoint, HeadKind, LoadOptions, RewardModel};

/// What `convert` did, printed as JSON.
#[derive(Debug, Serialize)]
pub struct ConvertReport {
    /// The source checkpoint.
    pub source: PathBuf,
    /// The directory written.
    pub out: PathBuf,
    /// HF class written into config.json.
    pub architecture: String,
    /// Outputs of the head (K-1).
    pub num_labels: usize,
    /// Whether the source had no head and a seeded random one was created.
    pub head_initialised: bool,
    /// Number of tensors written.
    pub tensors: usize,
}

/// Converts `model` into an HF directory at `out` with a head of `num_labels` outputs when the source
/// has none (seeded by `seed`).
pub fn run(
    model: &Path,
    out: &Path,
    num_labels: usize,
    seed: u64,
) -> anyhow::Result<ConvertReport> {
    let opts = LoadOptions {
        head_if_missing: if num_labels == 1 {
            HeadKind::Scalar
        } else {
            HeadKind::Ordinal
        },
        outputs_if_missing: num_labels,
        head_seed: seed,
        ..LoadOptions::inference()
    };
    let m = RewardModel::load(model, &opts)?;
    if m.head_was_initialised() {
        eprintln!(
            "wildreward: {} has no reward head: created a random {}-output head (seed {seed}); train it \
             before trusting its rewards",
            model.display(),
            num_labels
        );
    }
    checkpoint::save(&m, out)?;
    let cfg = checkpoint::classification_config(&m)?;
    Ok(ConvertReport {
        source: model.to_path_buf(),
        out: out.to_path_buf(),
        architecture: cfg["architectures"][0]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        num_labels: m.head().outputs(),
        head_initialised: m.head_was_initialised(),
        tensors: checkpoint::classification_tensors(&m).len(),
    })
}
