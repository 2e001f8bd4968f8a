//! Saving a reward model as an HF directory that `transformers` loads as
//! `{Llama,Mistral,Qwen2,Qwen3}ForSequenceClassification`: `config.json` (with `num_labels`,
//! `problem_type`, `pad_token_id`), `model.safetensors` (HF tensor names) and the tokenizer files.
//!
//! Only heads transformers can load are saved: ordinal and CORN (`score.weight` `[K-1, hidden]`, no
//! bias; `wildreward_head` tells our loader to read CORN's logits as conditionals) and scalar. A
//! CORAL head is refused ([`CORAL_NOT_SAVED`]). A seeded random head is saved with
//! `"wildreward_head_initialised": true`, which every load reads back.
//!
//! The directory is written under a temporary name and renamed into place, so a crash never leaves
//! something that looks like a finished checkpoint.

use crate::error::{ModelError, Result};
use crate::head::HeadKind;
use crate::model::RewardModel;
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a CORAL head is not saved: transformers could not load it.
pub const CORAL_NOT_SAVED: &str = "a CORAL head (one shared weight [1, hidden] and K-1 biases) is \
     not saved: transformers' *ForSequenceClassification has `score = Linear(hidden, num_labels, \
     bias=False)`, so loading it fails on score.weight's size and would drop the biases; train an \
     `ordinal` or `corn` head, which transformers loads";

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| ModelError::io(path, e))
}

/// The `config.json` a saved reward model carries.
pub fn classification_config(model: &RewardModel) -> Result<serde_json::Value> {
    let mut cfg = model.config().clone();
    let arch = cfg.architecture().map_err(|e| ModelError::Config {
        path: model.source().to_path_buf(),
        message: e.to_string(),
    })?;
    let kind = model.head().kind();
    if kind == HeadKind::Coral {
        return Err(ModelError::Config {
            path: model.source().to_path_buf(),
            message: CORAL_NOT_SAVED.into(),
        });
    }
    let n = model.head().outputs();
    cfg.architectures = vec![arch.classification_class().to_string()];
    cfg.num_labels = Some(n);
    cfg.problem_type = Some(
        if kind == HeadKind::Scalar {
            "regression"
        } else {
            "multi_label_classification"
        }
        .into(),
    );
    cfg.pad_token_id = Some(model.pad_id());
    cfg.id2label = Some(
        (0..n)
            .map(|i| (i.to_string(), format!("LABEL_{i}").into()))
            .collect(),
    );
    cfg.extra.insert(
        "label2id".into(),
        (0..n)
            .map(|i| (format!("LABEL_{i}"), i.into()))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    cfg.extra.insert(
        "torch_dtype".into(),
        dtype_name(model.backbone().dtype()).into(),
    );
    cfg.wildreward_head = (kind != HeadKind::Ordinal).then(|| kind.name().to_string());
    cfg.wildreward_head_initialised = model.head_was_initialised().then_some(true);
    serde_json::to_value(&cfg).map_err(|e| ModelError::Config {
        path: model.source().to_path_buf(),
        message: e.to_string(),
    })
}

/// The tensors a saved reward model holds: the backbone (without any LM head) and the score head.
pub fn classification_tensors(model: &RewardModel) -> HashMap<String, Tensor> {
    let mut out: HashMap<String, Tensor> = model
        .tensors()
        .iter()
        .filter(|(name, _)| name.starts_with("model."))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    out.extend(model.head().tensors());
    out
}

fn tokenizer_config(model: &RewardModel) -> serde_json::Value {
    let tok = model.tokenizer();
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
    let first = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|x| x.as_u64()).map(|x| x as u32),
        _ => None,
    };
    let cfg = model.config();
    let mut out = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": name(Some(model.pad_id())),
        "eos_token": name(first(&cfg.eos_token_id)),
        "bos_token": name(first(&cfg.bos_token_id)),
        "model_max_length": cfg.max_position_embeddings.unwrap_or(4096),
        "clean_up_tokenization_spaces": false,
    });
    if let (Some(t), Some(o)) = (model.chat_template(), out.as_object_mut()) {
        o.insert("chat_template".into(), t.into());
    }
    out
}

/// Which HF class a saved directory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `*ForSequenceClassification`: the backbone and the reward head (a reward model).
    Classification,
    /// `*ForCausalLM`: the backbone and the LM head when untied (a policy, e.g. after online DPO).
    CausalLm,
}

/// The `config.json` and tensors of a causal LM: the model's own configuration without our
/// training-only fields, and every tensor but the reward head.
fn causal_lm(model: &RewardModel) -> Result<(serde_json::Value, HashMap<String, Tensor>)> {
    let mut cfg = model.config().clone();
    cfg.wildreward_head = None;
    cfg.wildreward_lora_scale = None;
    if let Ok(arch) = cfg.architecture() {
        cfg.architectures = vec![arch.causal_lm_class().to_string()];
    }
    cfg.extra.insert(
        "torch_dtype".into(),
        dtype_name(model.backbone().dtype()).into(),
    );
    let value = serde_json::to_value(&cfg).map_err(|e| ModelError::Config {
        path: model.source().to_path_buf(),
        message: e.to_string(),
    })?;
    let tensors = model
        .tensors()
        .iter()
        .filter(|(name, _)| name.starts_with("model.") || name.starts_with("lm_head."))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    Ok((value, tensors))
}

/// Writes the model's files (config, weights, tokenizer) into the existing, empty directory `tmp`.
fn write_files(model: &RewardModel, tmp: &Path, layout: Layout) -> Result<()> {
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    let (config, tensors) = match layout {
        Layout::Classification => (classification_config(model)?, classification_tensors(model)),
        Layout::CausalLm => causal_lm(model)?,
    };
    write(&tmp.join("config.json"), &pretty(&config))?;
    let weights = tmp.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(|e| ModelError::Weights {
        path: weights.clone(),
        message: e.to_string(),
    })?;
    let tok = tmp.join("tokenizer.json");
    model
        .tokenizer()
        .save(&tok, false)
        .map_err(|e| ModelError::Tokenizer {
            path: tok.clone(),
            message: e.to_string(),
        })?;
    write(
        &tmp.join("tokenizer_config.json"),
        &pretty(&tokenizer_config(model)),
    )
}

/// A fresh, empty staging directory.
fn fresh_dir(tmp: &Path) -> Result<()> {
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| ModelError::io(tmp, e))?;
    }
    std::fs::create_dir_all(tmp).map_err(|e| ModelError::io(tmp, e))
}

/// Saves `model` into `dir` (replacing a previous save there only once the new one is complete).
pub fn save(model: &RewardModel, dir: &Path) -> Result<()> {
    save_as(model, dir, Layout::Classification)
}

/// Saves `model` into `dir` in the given layout, replacing a previous save only once complete.
pub fn save_as(model: &RewardModel, dir: &Path, layout: Layout) -> Result<()> {
    if layout == Layout::Classification {
        // A head that cannot be saved is refused before anything is written.
        classification_config(model)?;
    }
    let tmp = sibling(dir, "partial");
    fresh_dir(&tmp)?;
    write_files(model, &tmp, layout)?;
    if dir.exists() {
        let old = sibling(dir, "old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
        std::fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
    } else {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))?;
    }
    Ok(())
}

/// Saves `model`'s files into `dir`, a directory that also holds other things (a trainer's metrics
/// and checkpoints). Files are staged in `dir/.model.partial` and moved in with `config.json`
/// last: a directory with a `config.json` from this function holds a complete model. An older
/// `config.json` is removed first, so a crash half-way never pairs it with new weights.
pub fn save_into(model: &RewardModel, dir: &Path) -> Result<()> {
    classification_config(model)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let tmp = dir.join(".model.partial");
    fresh_dir(&tmp)?;
    write_files(model, &tmp, Layout::Classification)?;
    let config = dir.join("config.json");
    if config.exists() {
        std::fs::remove_file(&config).map_err(|e| ModelError::io(&config, e))?;
    }
    for name in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
    ] {
        let to = dir.join(name);
        std::fs::rename(tmp.join(name), &to).map_err(|e| ModelError::io(&to, e))?;
    }
    std::fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}
