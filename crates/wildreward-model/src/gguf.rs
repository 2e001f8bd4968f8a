//! A summary of a GGUF checkpoint's metadata and tensors, read with candle's GGUF reader: what `convert`
//! and the loaders need to know before dequantising anything, and a check that a fetched file is real.

use candle_core::quantized::gguf_file;
use std::collections::BTreeMap;
use std::path::Path;

/// Errors reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file cannot be opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid GGUF (bad magic, truncated header…).
    #[error("{path}: not a readable GGUF file: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What candle's reader said.
        message: String,
    },
    /// A metadata key the architecture needs is absent or of the wrong type.
    #[error("{path}: metadata key `{key}` is missing or not {expected}")]
    Metadata {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// The expected type.
        expected: &'static str,
    },
}

/// What a GGUF decoder checkpoint is, read from its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufSummary {
    /// `general.architecture` (e.g. `llama`).
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Transformer blocks.
    pub block_count: u32,
    /// Hidden size.
    pub embedding_length: u32,
    /// MLP inner size.
    pub feed_forward_length: u32,
    /// Attention heads.
    pub head_count: u32,
    /// Key/value heads (grouped-query attention).
    pub head_count_kv: u32,
    /// Trained context length.
    pub context_length: u32,
    /// RoPE base frequency, if set.
    pub rope_freq_base: Option<f32>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: Option<f32>,
    /// Number of tokens in `tokenizer.ggml.tokens`.
    pub vocab_size: usize,
    /// Number of BPE merges in `tokenizer.ggml.merges`.
    pub merges: usize,
    /// Tensor count by storage type (e.g. `Q4_1` → 210).
    pub tensor_types: BTreeMap<String, usize>,
    /// Whether an `output.weight` (untied LM head) is present.
    pub has_output_weight: bool,
}

impl GgufSummary {
    /// Reads the header of `path` (no tensor data is loaded).
    pub fn read(path: &Path) -> Result<Self, GgufError> {
        let p = path.display().to_string();
        let mut file = std::fs::File::open(path).map_err(|source| GgufError::Io {
            path: p.clone(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| GgufError::Invalid {
            path: p.clone(),
            message: e.to_string(),
        })?;
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| GgufError::Metadata {
                path: p.clone(),
                key: "general.architecture".into(),
                expected: "a string",
            })?;
        let u32_key = |suffix: &str| {
            let key = format!("{arch}.{suffix}");
            md.get(&key)
                .and_then(|v| v.to_u32().ok())
                .ok_or_else(|| GgufError::Metadata {
                    path: p.clone(),
                    key,
                    expected: "an unsigned integer",
                })
        };
        let f32_key = |suffix: &str| {
            md.get(&format!("{arch}.{suffix}"))
                .and_then(|v| v.to_f32().ok())
        };
        let array_len = |key: &str| {
            md.get(key)
                .and_then(|v| v.to_vec().ok())
                .map_or(0, Vec::len)
        };
        let mut tensor_types = BTreeMap::new();
        for info in content.tensor_infos.values() {
            *tensor_types
                .entry(format!("{:?}", info.ggml_dtype))
                .or_insert(0) += 1;
        }
        Ok(Self {
            name: md
                .get("general.name")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            block_count: u32_key("block_count")?,
            embedding_length: u32_key("embedding_length")?,
            feed_forward_length: u32_key("feed_forward_length")?,
            head_count: u32_key("attention.head_count")?,
            head_count_kv: u32_key("attention.head_count_kv")?,
            context_length: u32_key("context_length")?,
            rope_freq_base: f32_key("rope.freq_base"),
            rms_norm_eps: f32_key("attention.layer_norm_rms_epsilon"),
            vocab_size: array_len("tokenizer.ggml.tokens"),
            merges: array_len("tokenizer.ggml.merges"),
            has_output_weight: content.tensor_infos.contains_key("output.weight"),
            tensor_types,
            architecture: arch,
        })
    }
}
