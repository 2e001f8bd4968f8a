//! The decoder's configuration, read from an HF `config.json` (serde, field names as HF writes them) or
//! built from a GGUF file's metadata, and the architecture family it selects.

use serde::{Deserialize, Serialize};

/// The Llama-family variants the backbone implements. They differ only in small ways: biases on the
/// q/k/v projections (Qwen2), RMS norms on q and k per head (Qwen3), the RoPE frequency schedule
/// (Llama 3.1 scaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2 / 3 / 3.1, SmolLM2, and anything else in Llama's layout.
    Llama,
    /// Mistral (Llama's layout; sliding-window attention is not applied, see [`ModelConfig`]).
    Mistral,
    /// Qwen2 / Qwen2.5: biases on q, k and v.
    Qwen2,
    /// Qwen3: RMS norm on q and k per head, no biases.
    Qwen3,
}

impl Architecture {
    /// The HF class name of the sequence-classification model of this family (what we save as).
    pub fn classification_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForSequenceClassification",
            Architecture::Mistral => "MistralForSequenceClassification",
            Architecture::Qwen2 => "Qwen2ForSequenceClassification",
            Architecture::Qwen3 => "Qwen3ForSequenceClassification",
        }
    }

    /// The HF class name of the causal LM of this family (what a trained policy is saved as).
    pub fn causal_lm_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    /// HF's `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }
}

/// RoPE scaling as HF's `rope_scaling` (only the Llama 3.1 `llama3` schedule changes frequencies here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `llama3`, `default`, …
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Overall factor.
    #[serde(default = "one")]
    pub factor: f64,
    /// Llama 3.1: wavelengths above `original / low_freq_factor` are divided by `factor`.
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    /// Llama 3.1: wavelengths below `original / high_freq_factor` are kept.
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    /// Llama 3.1: the context the model was first trained at.
    #[serde(default = "original_context")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn original_context() -> usize {
    8192
}
fn default_eps() -> f64 {
    1e-6
}

/// An HF `config.json` for a Llama-family decoder (with or without a classification head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// e.g. `["LlamaForCausalLM"]` or `["Qwen2ForSequenceClassification"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// `llama`, `mistral`, `qwen2`, `qwen3`.
    pub model_type: String,
    /// Model width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width when it is not `hidden_size / num_attention_heads` (Qwen3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// RMS norm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base (transformers < 5; see [`ModelConfig::rope_base`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// RoPE frequency scaling (transformers < 5; see [`ModelConfig::rope_scaling`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers ≥ 5 writes the RoPE base and scaling together here
    /// (`{"rope_theta", "rope_type", "factor", …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Longest context the model supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<usize>,
    /// Whether the LM head is the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (and o): explicit in Llama-style configs; implied for Qwen2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    /// Beginning-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<serde_json::Value>,
    /// End-of-sequence token(s) (Llama 3.1 lists several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    /// Padding token: its id marks padding when pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    /// Outputs of the classification head (K-1 for an ordinal RM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// HF's `problem_type` (`multi_label_classification` for the ordinal RM: BCE per threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    /// Labels of the head's outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<serde_json::Map<String, serde_json::Value>>,
    /// Ours, not HF's: `ordinal` (default: K-1 independent thresholds, the HF layout), `coral` (shared
    /// weight, ordered biases) or `scalar` (one logit, Bradley-Terry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildreward_head: Option<String>,
    /// Ours, not HF's: `true` when the saved head is a seeded random one (`wildreward convert` of a
    /// checkpoint without a head), so every later load knows it is untrained. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildreward_head_initialised: Option<bool>,
    /// Ours, only while training with LoRA (never in a saved model, where adapters are merged): the
    /// adapters' `alpha / r`, applied to every `lora_A` / `lora_B` pair the weights hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildreward_lora_scale: Option<f64>,
    /// Everything else in the file, kept so saving does not drop it.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A configuration the backbone cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `model_type` / `architectures` name something other than the Llama family.
    #[error(
        "unsupported architecture {model_type:?} (architectures {architectures:?}): supported are \
         llama, mistral, qwen2, qwen3"
    )]
    Unsupported {
        /// `model_type`.
        model_type: String,
        /// `architectures`.
        architectures: Vec<String>,
    },
    /// Sizes that do not fit together.
    #[error("inconsistent config: {0}")]
    Inconsistent(String),
}

impl ModelConfig {
    /// The architecture family, from `model_type` (or, failing that, `architectures`).
    pub fn architecture(&self) -> Result<Architecture, ConfigError> {
        let from_name = |s: &str| match s.to_ascii_lowercase().as_str() {
            "llama" => Some(Architecture::Llama),
            "mistral" => Some(Architecture::Mistral),
            "qwen2" => Some(Architecture::Qwen2),
            "qwen3" => Some(Architecture::Qwen3),
            _ => None,
        };
        from_name(&self.model_type)
            .or_else(|| {
                self.architectures.iter().find_map(|a| {
                    ["Llama", "Mistral", "Qwen2", "Qwen3"]
                        .into_iter()
                        .filter(|p| a.starts_with(p))
                        .max_by_key(|p| p.len())
                        .and_then(from_name)
                })
            })
            .ok_or_else(|| ConfigError::Unsupported {
                model_type: self.model_type.clone(),
                architectures: self.architectures.clone(),
            })
    }

    /// Checks that the sizes fit together and the architecture is supported.
    pub fn validate(&self) -> Result<Architecture, ConfigError> {
        let arch = self.architecture()?;
        let bad = |m: String| Err(ConfigError::Inconsistent(m));
        if self.num_attention_heads == 0 || self.hidden_size == 0 || self.num_hidden_layers == 0 {
            return bad("zero-sized hidden_size, heads or layers".into());
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim {} is odd (RoPE needs pairs)",
                self.head_dim()
            ));
        }
        Ok(arch)
    }

    /// The RoPE base: `rope_theta`, else `rope_parameters.rope_theta`, else 10000.
    pub fn rope_base(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.get("rope_theta")?.as_f64())
            .unwrap_or(10_000.0)
    }

    /// The RoPE scaling in effect: `rope_scaling`, else a non-default `rope_parameters`.
    pub fn rope_scaling(&self) -> Option<RopeScaling> {
        self.rope_scaling.clone().or_else(|| {
            let p = self.rope_parameters.as_ref()?;
            let kind = p.get("rope_type").or_else(|| p.get("type"))?.as_str()?;
            (kind != "default")
                .then(|| serde_json::from_value(p.clone()).ok())
                .flatten()
        })
    }

    /// Outputs of the classification head: `num_labels`, else the size of `id2label` (transformers 5
    /// writes only the latter).
    pub fn label_count(&self) -> Option<usize> {
        self.num_labels
            .or_else(|| self.id2label.as_ref().map(|m| m.len()))
    }

    /// Key/value heads.
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias
            .unwrap_or(matches!(self.architecture(), Ok(Architecture::Qwen2)))
    }

    /// The padding token id: `pad_token_id`, else the (first) EOS, else 0.
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id
            .or_else(|| self.eos_ids().first().copied())
            .unwrap_or(0)
    }

    /// The EOS token ids (one or several).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| v as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64().map(|v| v as u32))
                .collect(),
            _ => vec![],
        }
    }

    /// Reads and validates a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let cfg: ModelConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3_4B: &str = r#"{"architectures":["Qwen3ForSequenceClassification"],"model_type":"qwen3",
      "hidden_size":2560,"intermediate_size":9728,"num_hidden_layers":36,"num_attention_heads":32,
      "num_key_value_heads":8,"head_dim":128,"rms_norm_eps":1e-6,"rope_theta":1000000,
      "vocab_size":151936,"tie_word_embeddings":true,"num_labels":3,
      "problem_type":"multi_label_classification","pad_token_id":151643,"torch_dtype":"bfloat16"}"#;

    #[test]
    fn reads_a_qwen3_classifier_config_and_keeps_unknown_fields() {
        let cfg = ModelConfig::from_json(QWEN3_4B).unwrap();
        assert_eq!(cfg.architecture().unwrap(), Architecture::Qwen3);
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.num_kv_heads(), 8);
        assert!(!cfg.qkv_bias());
        assert_eq!(cfg.num_labels, Some(3));
        assert_eq!(cfg.extra["torch_dtype"], "bfloat16");
        assert_eq!(cfg.rope_base(), 1_000_000.0);
        let round: ModelConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(round, cfg);
    }

    #[test]
    fn rope_reads_both_transformers_spellings() {
        let v5 = ModelConfig::from_json(
            r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"vocab_size":100,"rope_parameters":{"rope_theta":500000.0,
            "rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192}}"#,
        )
        .unwrap();
        assert_eq!(v5.rope_base(), 500_000.0);
        assert_eq!(v5.rope_scaling().unwrap().factor, 8.0);
        let v4 = ModelConfig::from_json(
            r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"vocab_size":100,"rope_theta":500000.0,"rope_scaling":{
            "rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192}}"#,
        )
        .unwrap();
        assert_eq!(v4.rope_base(), v5.rope_base());
        assert_eq!(v4.rope_scaling(), v5.rope_scaling());
        let plain = ModelConfig::from_json(
            r#"{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"vocab_size":100,"rope_parameters":{"rope_theta":1e6,"rope_type":"default"}}"#,
        )
        .unwrap();
        assert_eq!(plain.rope_base(), 1e6);
        assert!(plain.rope_scaling().is_none());
    }

    #[test]
    fn qwen2_implies_qkv_bias_and_llama31_eos_lists_parse() {
        let cfg = ModelConfig::from_json(
            r#"{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,"eos_token_id":[7,9]}"#,
        )
        .unwrap();
        assert!(cfg.qkv_bias());
        assert_eq!(cfg.eos_ids(), vec![7, 9]);
        assert_eq!(cfg.pad_id(), 7);
    }

    #[test]
    fn unsupported_and_inconsistent_configs_are_errors() {
        let err = ModelConfig::from_json(
            r#"{"model_type":"gpt2","architectures":["GPT2LMHeadModel"],"hidden_size":64,
            "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}"#,
        )
        .unwrap_err();
        assert!(err.contains("unsupported architecture \"gpt2\""), "{err}");
        let err = ModelConfig::from_json(
            r#"{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":3,"vocab_size":100}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("not a multiple of num_key_value_heads"),
            "{err}"
        );
    }
}
