//! Sentence embeddings with all-MiniLM-L6-v2 on candle (the model the reference's hindsight mining
//! uses through sentence-transformers): BERT, mean pooling over the real tokens (padding masked out),
//! L2-normalised, so the cosine of two sentences is the dot product of their embeddings.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// Where the MiniLM files are looked for when no directory is given: `$WILDREWARD_ASSETS/all-minilm-l6-v2`,
/// else `assets/all-minilm-l6-v2` under the current directory, else under the repository this binary
/// was built from.
pub fn default_model_dir() -> PathBuf {
    const NAME: &str = "all-minilm-l6-v2";
    if let Some(dir) = std::env::var_os("WILDREWARD_ASSETS") {
        return PathBuf::from(dir).join(NAME);
    }
    let local = Path::new("assets").join(NAME);
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets")
        .join(NAME)
}

/// A loaded sentence embedder.
pub struct SentenceEmbedder {
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    batch_size: usize,
}

impl SentenceEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`; sentences are cut at
    /// `max_tokens` tokens and batched `batch_size` × 128 tokens at a time.
    pub fn load(dir: &Path, max_tokens: usize, batch_size: usize) -> Result<Self> {
        let err = |message: String| Error::Embedder {
            path: dir.to_path_buf(),
            message,
        };
        let missing = |name: &str| {
            err(format!(
                "{name} not found: run scripts/fetch-assets.sh (or pass --embedder / set WILDREWARD_ASSETS)"
            ))
        };
        let file = |name: &str| {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(missing(name))
            }
        };
        let config_text = std::fs::read_to_string(file("config.json")?)
            .map_err(|e| err(format!("config.json: {e}")))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| err(format!("config.json: {e}")))?;
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(file("model.safetensors")?, &device)
            .map_err(|e| err(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model =
            BertModel::load(vb, &config).map_err(|e| err(format!("model.safetensors: {e}")))?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| err(format!("tokenizer.json: {e}")))?;
        // The shipped tokenizer pads every sentence to 128: no padding here; batches are padded to
        // their longest sentence and the padding is masked out of the attention and the mean.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| err(format!("tokenizer.json: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            device,
            batch_size: batch_size.max(1),
        })
    }

    /// Embeds `texts`, returning one unit vector per text in the same order. Texts are tokenised
    /// once, sorted by length and batched under a token budget (`batch_size` × 128 tokens, padding
    /// included), so short sentences go in large batches and little padding is computed.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let err = |message: String| Error::Embedder {
            path: self.dir.clone(),
            message,
        };
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| err(format!("tokenizer: {e}")))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(encodings[i].get_ids().len()), i));
        let budget = self.batch_size * 128;
        let mut out = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            // The first of a batch is its longest: take as many as fit in the budget at that length.
            let longest = encodings[order[start]].get_ids().len().max(1);
            let count = (budget / longest).clamp(1, 4 * self.batch_size);
            let batch = &order[start..(start + count).min(order.len())];
            let ids: Vec<&[u32]> = batch.iter().map(|&i| encodings[i].get_ids()).collect();
            let vectors = self.embed_batch(&ids, longest).map_err(err)?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
            start += batch.len();
        }
        Ok(out)
    }

    /// Embeds token sequences padded (with id 0, masked out) to `len`.
    fn embed_batch(
        &self,
        sequences: &[&[u32]],
        len: usize,
    ) -> std::result::Result<Vec<Vec<f32>>, String> {
        let mut ids = vec![0u32; sequences.len() * len];
        let mut mask = vec![0u32; sequences.len() * len];
        for (row, seq) in sequences.iter().enumerate() {
            ids[row * len..row * len + seq.len()].copy_from_slice(seq);
            mask[row * len..row * len + seq.len()].fill(1);
        }
        let e = |x: candle_core::Error| x.to_string();
        let shape = (sequences.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device).map_err(e)?;
        let mask = Tensor::from_vec(mask, shape, &self.device).map_err(e)?;
        let types = ids.zeros_like().map_err(e)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(e)?;
        let mask = mask
            .to_dtype(DType::F32)
            .map_err(e)?
            .unsqueeze(2)
            .map_err(e)?;
        let summed = hidden.broadcast_mul(&mask).map_err(e)?.sum(1).map_err(e)?;
        let counts = mask.sum(1).map_err(e)?.clamp(1f32, f32::MAX).map_err(e)?;
        let mean = summed.broadcast_div(&counts).map_err(e)?;
        let norms = mean
            .sqr()
            .map_err(e)?
            .sum_keepdim(1)
            .map_err(e)?
            .sqrt()
            .map_err(e)?
            .clamp(1e-12f32, f32::MAX)
            .map_err(e)?;
        mean.broadcast_div(&norms)
            .map_err(e)?
            .to_vec2::<f32>()
            .map_err(e)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
