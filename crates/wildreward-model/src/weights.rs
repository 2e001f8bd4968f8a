//! Loading a checkpoint — config, named weights (HF names) and tokenizer — from an HF directory
//! (single or sharded safetensors), the hf-hub cache, or a GGUF file (dequantised, with `attn_q` /
//! `attn_k` un-permuted from GGUF's interleaved-RoPE layout to HF's half-split one); and a GGUF's
//! layer projections kept quantized, for scoring straight from them.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// Everything read from a checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model's configuration (synthesised from metadata for GGUF).
    pub config: ModelConfig,
    /// Weights by HF name, in the requested dtype.
    pub tensors: HashMap<String, Tensor>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template (Jinja), when the checkpoint carries one.
    pub chat_template: Option<String>,
    /// Where it was loaded from.
    pub source: PathBuf,
}

/// Resolves a model argument: a `.gguf` file, an HF directory, or a repo id (`org/name`) present in
/// the local hf-hub cache (`$HF_HOME`, no network).
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = PathBuf::from(spec);
    if path.exists() {
        return Ok(path);
    }
    if spec.split('/').count() == 2 && !spec.starts_with('.') {
        let repo = hf_hub::Cache::from_env().model(spec.to_string());
        if let Some(cfg) = repo.get("config.json") {
            if let Some(dir) = cfg.parent() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    Err(ModelError::Weights {
        path,
        message: "no such file or directory, and not a repo id in the local hf-hub cache".into(),
    })
}

/// Loads a checkpoint at `path` (see [`resolve`]) onto `device` with float weights in `dtype`.
pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Checkpoint> {
    if path.is_dir() {
        load_hf_dir(path, device, dtype)
    } else {
        load_gguf(path, device, dtype)
    }
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))
}

fn weights_error(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Weights {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn to_dtype(t: Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if t.dtype().is_float() {
        t.to_dtype(dtype)
    } else {
        Ok(t)
    }
}

fn load_hf_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Checkpoint> {
    let cfg_path = dir.join("config.json");
    let config = ModelConfig::from_json(&read_to_string(&cfg_path)?).map_err(|message| {
        ModelError::Config {
            path: cfg_path.clone(),
            message,
        }
    })?;
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.exists() {
        let idx: serde_json::Value =
            serde_json::from_str(&read_to_string(&index)?).map_err(|e| weights_error(&index, e))?;
        let map = idx["weight_map"]
            .as_object()
            .ok_or_else(|| weights_error(&index, "no `weight_map` object"))?;
        let names: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    let mut tensors = HashMap::new();
    for file in &files {
        if !file.exists() {
            return Err(weights_error(file, "weight file is missing"));
        }
        let loaded = candle_core::safetensors::load(file, device).map_err(|e| {
            weights_error(file, format!("unreadable safetensors (truncated?): {e}"))
        })?;
        for (name, t) in loaded {
            tensors.insert(name, to_dtype(t, dtype)?);
        }
    }
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = crate::tokenizer::from_file(&tok_path)?;
    crate::tokenizer::check_vocab(&tokenizer, config.vocab_size, &tok_path)?;
    let chat_template = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["chat_template"].as_str().map(str::to_string));
    Ok(Checkpoint {
        config,
        tensors,
        tokenizer,
        chat_template,
        source: dir.to_path_buf(),
    })
}

fn md_u32(content: &Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

fn md_f32(content: &Content, key: &str) -> Option<f32> {
    content.metadata.get(key).and_then(|v| v.to_f32().ok())
}

fn md_str<'a>(content: &'a Content, key: &str) -> Option<&'a str> {
    content
        .metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// The HF config a GGUF file's metadata describes.
fn gguf_config(path: &Path, content: &Content) -> Result<ModelConfig> {
    let bad = |message: String| ModelError::Config {
        path: path.to_path_buf(),
        message,
    };
    let arch = md_str(content, "general.architecture")
        .ok_or_else(|| bad("no general.architecture".into()))?
        .to_string();
    let req = |k: &str| {
        md_u32(content, &format!("{arch}.{k}"))
            .map(|v| v as usize)
            .ok_or_else(|| bad(format!("metadata `{arch}.{k}` is missing")))
    };
    let vocab = match content.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => req("vocab_size")?,
    };
    let heads = req("attention.head_count")?;
    let hidden = req("embedding_length")?;
    let head_dim = md_u32(content, &format!("{arch}.attention.key_length")).map(|v| v as usize);
    let mut json = serde_json::json!({
        "architectures": [format!("{}ForCausalLM", match arch.as_str() {
            "qwen2" => "Qwen2", "qwen3" => "Qwen3", "mistral" => "Mistral", _ => "Llama" })],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": req("feed_forward_length")?,
        "num_hidden_layers": req("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": md_u32(content, &format!("{arch}.attention.head_count_kv")).map_or(heads, |v| v as usize),
        "rms_norm_eps": md_f32(content, &format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
        "rope_theta": md_f32(content, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
        "vocab_size": vocab,
        "max_position_embeddings": md_u32(content, &format!("{arch}.context_length")),
        "tie_word_embeddings": !content.tensor_infos.contains_key("output.weight"),
        "bos_token_id": md_u32(content, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": md_u32(content, "tokenizer.ggml.eos_token_id"),
        "pad_token_id": md_u32(content, "tokenizer.ggml.padding_token_id"),
    });
    if let (Some(hd), Some(obj)) = (head_dim, json.as_object_mut()) {
        if hd != hidden / heads.max(1) {
            obj.insert("head_dim".into(), hd.into());
        }
    }
    ModelConfig::from_json(&json.to_string()).map_err(bad)
}

/// The HF name of a GGUF tensor, or `None` for tensors the model does not use.
fn hf_name(gguf: &str) -> Option<String> {
    let top = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's permutation of q/k rows for interleaved RoPE:
/// `w.reshape(n_head, rows/n_head/2, 2, …).swapaxes(1, 2).reshape(rows, …)`.
pub fn unpermute_rope_rows(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: usize = dims[1..].iter().product();
    w.reshape((n_head, rows / n_head / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// [`unpermute_rope_rows`] on a quantized weight, without dequantising: GGUF quantizes each row on
/// its own (blocks run along the row), so moving whole rows' bytes moves their values exactly.
pub fn unpermute_rope_rows_quantized(
    w: &QTensor,
    n_head: usize,
    device: &Device,
) -> candle_core::Result<QTensor> {
    let (rows, cols) = w.shape().dims2()?;
    let dtype = w.dtype();
    if n_head == 0 || rows % (2 * n_head) != 0 || cols % dtype.block_size() != 0 {
        candle_core::bail!(
            "a [{rows}, {cols}] {dtype:?} weight does not split into {n_head} heads of rotated rows"
        );
    }
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = w.data()?;
    if data.len() != rows * row_bytes {
        candle_core::bail!(
            "a [{rows}, {cols}] {dtype:?} weight holds {} bytes, not {}",
            data.len(),
            rows * row_bytes
        );
    }
    let half = rows / n_head / 2;
    let mut out = Vec::with_capacity(data.len());
    // Row (h, a, b) of the result, in shape (n_head, 2, half), is row (h, b, a) of the input.
    for h in 0..n_head {
        for a in 0..2 {
            for b in 0..half {
                let src = (h * half + b) * 2 + a;
                out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    qtensor_from_ggml(dtype, &out, vec![rows, cols], device)
}

/// The layer projections of a GGUF file (`q/k/v/o_proj`, `gate/up/down_proj`) as they are stored,
/// quantized, by HF weight name, `attn_q` / `attn_k` rows un-permuted as [`load`] does: what
/// [`crate::Backbone::use_quantized`] takes, to score straight from the quantized weights.
pub fn load_quantized_projections(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Arc<QTensor>>> {
    let (mut file, content, config) = open_gguf(path)?;
    let mut out = HashMap::new();
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else { continue };
        if !hf.starts_with("model.layers.") || !hf.ends_with("_proj.weight") {
            continue;
        }
        let mut q = content
            .tensor(&mut file, name, device)
            .map_err(|e| weights_error(path, format!("tensor {name}: {e} (truncated file?)")))?;
        if let Some(n) = permuted_heads(&config, &hf) {
            q = unpermute_rope_rows_quantized(&q, n, device)
                .map_err(|e| weights_error(path, format!("tensor {name}: {e}")))?;
        }
        out.insert(hf, Arc::new(q));
    }
    Ok(out)
}

/// The heads whose rows llama.cpp permuted for interleaved RoPE in the weight named `hf`: `attn_q` /
/// `attn_k` of Llama-family GGUFs (Qwen's are stored unpermuted), `None` for every other weight.
fn permuted_heads(config: &ModelConfig, hf: &str) -> Option<usize> {
    if !matches!(config.model_type.as_str(), "llama" | "mistral") {
        return None;
    }
    if hf.ends_with("q_proj.weight") {
        Some(config.num_attention_heads)
    } else if hf.ends_with("k_proj.weight") {
        Some(config.num_kv_heads())
    } else {
        None
    }
}

/// A GGUF file opened for reading its tensors, its header and the model configuration it describes.
fn open_gguf(path: &Path) -> Result<(std::fs::File, Content, ModelConfig)> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let content = Content::read(&mut file)
        .map_err(|e| weights_error(path, format!("not a readable GGUF file: {e}")))?;
    let config = gguf_config(path, &content)?;
    Ok((file, content, config))
}

fn load_gguf(path: &Path, device: &Device, dtype: DType) -> Result<Checkpoint> {
    let (mut file, content, config) = open_gguf(path)?;
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else { continue };
        let q = content
            .tensor(&mut file, name, device)
            .map_err(|e| weights_error(path, format!("tensor {name}: {e} (truncated file?)")))?;
        let mut t = q.dequantize(device)?;
        if let Some(n) = permuted_heads(&config, &hf) {
            t = unpermute_rope_rows(&t, n)?;
        }
        tensors.insert(hf, to_dtype(t, dtype)?);
    }
    let tokenizer = crate::tokenizer::from_gguf(path, &content)?;
    crate::tokenizer::check_vocab(&tokenizer, config.vocab_size, path)?;
    Ok(Checkpoint {
        config,
        tensors,
        tokenizer,
        chat_template: md_str(&content, "tokenizer.chat_template").map(str::to_string),
        source: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hf_names() {
        assert_eq!(
            hf_name("token_embd.weight").unwrap(),
            "model.embed_tokens.weight"
        );
        assert_eq!(
            hf_name("blk.12.attn_q.weight").unwrap(),
            "model.layers.12.self_attn.q_proj.weight"
        );
        assert_eq!(
            hf_name("blk.3.attn_k_norm.weight").unwrap(),
            "model.layers.3.self_attn.k_norm.weight"
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight").unwrap(),
            "model.layers.0.mlp.down_proj.weight"
        );
        assert!(hf_name("rope_freqs.weight").is_none());
    }

    #[test]
    fn unpermute_inverts_the_llama_cpp_permutation() {
        // llama.cpp's permute: w.reshape(n, 2, rows/n/2, cols).swapaxes(1, 2).reshape(rows, cols).
        let (n, rows, cols) = (3usize, 12usize, 2usize);
        let w = Tensor::arange(0f32, (rows * cols) as f32, &Device::Cpu)
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        let permuted = w
            .reshape((n, 2, rows / n / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((rows, cols))
            .unwrap();
        let back = unpermute_rope_rows(&permuted, n).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }
}
