//! The reference embedder: all-MiniLM-L6-v2 through candle_transformers' `BertModel` on candle's CPU
//! matmul, over batches padded to their longest sentence (the padding masked out of the attention and
//! the mean). It was the pipeline's embedder before the packed forward of [`super::minilm`]; it stays
//! as an independent implementation for the parity tests and as the "before" of
//! `examples/bench_embed.rs`.

use super::{by_length, encode, ModelFiles, TOKENS_PER_BATCH_UNIT};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// all-MiniLM-L6-v2 on candle's `BertModel`.
pub struct CandleEmbedder {
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    batch_size: usize,
}

impl CandleEmbedder {
    /// Loads the model as [`super::SentenceEmbedder::load`] does; batches hold `batch_size` × 128
    /// tokens, padding included.
    pub fn load(dir: &Path, max_tokens: usize, batch_size: usize) -> Result<Self> {
        let files = ModelFiles::open(dir)?;
        let config_text = std::fs::read_to_string(&files.config)
            .map_err(|e| files.err(format!("config.json: {e}")))?;
        let config: Config = serde_json::from_str(&config_text)
            .map_err(|e| files.err(format!("config.json: {e}")))?;
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(&files.weights, &device)
            .map_err(|e| files.err(format!("model.safetensors: {e}")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config)
            .map_err(|e| files.err(format!("model.safetensors: {e}")))?;
        Ok(Self {
            tokenizer: files.tokenizer(max_tokens)?,
            dir: dir.to_path_buf(),
            model,
            device,
            batch_size: batch_size.max(1),
        })
    }

    /// Embeds `texts`, one unit vector per text in the same order: sorted by length, batched under a
    /// token budget (`batch_size` × 128 tokens, padding included).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let err = |message: String| Error::Embedder {
            path: self.dir.clone(),
            message,
        };
        let encodings = encode(&self.tokenizer, texts).map_err(err)?;
        let order = by_length(&encodings);
        let budget = self.batch_size * TOKENS_PER_BATCH_UNIT;
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
