//! Sentence embeddings with all-MiniLM-L6-v2 (the model the reference's hindsight mining uses through
//! sentence-transformers): BERT, mean pooling over the real tokens, L2-normalised, so the cosine of
//! two sentences is the dot product of their embeddings.
//!
//! [`SentenceEmbedder`] runs the packed forward of [`minilm`]: sentences sorted by length, each batch's
//! tokens concatenated with no padding row, every linear layer one product on wildreward-model's
//! AVX-512 matmul, attention per sentence, one batch per thread. [`reference::CandleEmbedder`] keeps
//! the previous path (candle_transformers' `BertModel` over padded batches) as the reference the
//! parity tests and `examples/bench_embed.rs` compare it against.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use tokenizers::{Encoding, Tokenizer, TruncationParams};

mod minilm;
pub mod reference;

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

/// Tokens of real text per batch for each unit of `batch_size` (the unit the settings count in).
const TOKENS_PER_BATCH_UNIT: usize = 128;

/// A loaded sentence embedder on the packed forward.
pub struct SentenceEmbedder {
    dir: PathBuf,
    model: minilm::MiniLm,
    tokenizer: Tokenizer,
    batch_size: usize,
}

impl SentenceEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`; sentences are cut at
    /// `max_tokens` tokens and batched `batch_size` × 128 real tokens at a time.
    pub fn load(dir: &Path, max_tokens: usize, batch_size: usize) -> Result<Self> {
        let files = ModelFiles::open(dir)?;
        let config_text = std::fs::read_to_string(&files.config)
            .map_err(|e| files.err(format!("config.json: {e}")))?;
        let tensors = candle_core::safetensors::load(&files.weights, &candle_core::Device::Cpu)
            .map_err(|e| files.err(format!("model.safetensors: {e}")))?;
        let model = minilm::MiniLm::load(&config_text, &tensors).map_err(|e| files.err(e))?;
        if max_tokens > model.max_positions() {
            return Err(files.err(format!(
                "max_tokens {max_tokens} exceeds the model's {} positions (config.json max_position_embeddings)",
                model.max_positions()
            )));
        }
        Ok(Self {
            tokenizer: files.tokenizer(max_tokens)?,
            dir: dir.to_path_buf(),
            model,
            batch_size: batch_size.max(1),
        })
    }

    /// Embeds `texts`, returning one unit vector per text in the same order. Texts are tokenised
    /// once, sorted by length and cut into batches of about `batch_size` × 128 tokens (as many
    /// batches as keep every thread busy), each batch run on one thread with no padding.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let err = |message: String| Error::Embedder {
            path: self.dir.clone(),
            message,
        };
        let encodings = encode(&self.tokenizer, texts).map_err(err)?;
        let order = by_length(&encodings);
        let lens: Vec<usize> = order
            .iter()
            .map(|&i| encodings[i].get_ids().len())
            .collect();
        let batches = token_batches(
            &lens,
            self.batch_size * TOKENS_PER_BATCH_UNIT,
            rayon::current_num_threads(),
        );
        use rayon::prelude::*;
        let model = &self.model;
        let vectors: Vec<Vec<Vec<f32>>> = batches
            .par_iter()
            .map(|range| {
                let ids: Vec<&[u32]> = order[range.clone()]
                    .iter()
                    .map(|&i| encodings[i].get_ids())
                    .collect();
                model.embed_batch(&ids)
            })
            .collect::<std::result::Result<_, String>>()
            .map_err(err)?;
        let mut out = vec![Vec::new(); texts.len()];
        for (&i, v) in order.iter().zip(vectors.into_iter().flatten()) {
            out[i] = v;
        }
        Ok(out)
    }
}

/// The three files of a MiniLM directory, checked to exist.
struct ModelFiles {
    dir: PathBuf,
    config: PathBuf,
    tokenizer: PathBuf,
    weights: PathBuf,
}

impl ModelFiles {
    fn open(dir: &Path) -> Result<Self> {
        let file = |name: &str| {
            let p = dir.join(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(Error::Embedder {
                    path: dir.to_path_buf(),
                    message: format!(
                        "{name} not found: run scripts/fetch-assets.sh (or pass --embedder / set WILDREWARD_ASSETS)"
                    ),
                })
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config: file("config.json")?,
            tokenizer: file("tokenizer.json")?,
            weights: file("model.safetensors")?,
        })
    }

    fn err(&self, message: String) -> Error {
        Error::Embedder {
            path: self.dir.clone(),
            message,
        }
    }

    /// The tokenizer, truncating at `max_tokens` and padding nothing (the shipped one pads every
    /// sentence to 128; the forwards here skip or mask padding themselves).
    fn tokenizer(&self, max_tokens: usize) -> Result<Tokenizer> {
        let mut tokenizer = Tokenizer::from_file(&self.tokenizer)
            .map_err(|e| self.err(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| self.err(format!("tokenizer.json: {e}")))?;
        Ok(tokenizer)
    }
}

/// Each text's tokens, with `[CLS]` and `[SEP]`.
fn encode(tokenizer: &Tokenizer, texts: &[&str]) -> std::result::Result<Vec<Encoding>, String> {
    tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| format!("tokenizer: {e}"))
}

/// Indices of `encodings`, longest first (ties in input order).
fn by_length(encodings: &[Encoding]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(encodings[i].get_ids().len()), i));
    order
}

/// Consecutive ranges of `lens` (sentences sorted by length) holding about `budget` tokens each,
/// their count rounded up to a multiple of `threads` (so a call of a few batches still keeps every
/// thread busy) and their tokens evened out; never more ranges than sentences.
fn token_batches(lens: &[usize], budget: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = lens.iter().sum();
    if lens.is_empty() {
        return Vec::new();
    }
    let threads = threads.max(1);
    let count = total
        .div_ceil(budget.max(1))
        .max(1)
        .next_multiple_of(threads)
        .min(lens.len());
    let target = total.div_ceil(count);
    let mut ranges = Vec::with_capacity(count);
    let (mut start, mut filled) = (0, 0);
    for (i, &len) in lens.iter().enumerate() {
        filled += len;
        let left = lens.len() - i - 1;
        let ranges_left = count - ranges.len() - 1;
        if (filled >= target && left >= ranges_left && ranges_left > 0)
            || left == ranges_left && ranges_left > 0
        {
            ranges.push(start..i + 1);
            start = i + 1;
            filled = 0;
        }
    }
    ranges.push(start..lens.len());
    ranges
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_sentence_once_and_keep_both_threads_busy() {
        // 10 sentences, 300 tokens, budget 128: 3 batches, rounded up to 4 for 2 threads.
        let lens = [60, 50, 40, 30, 30, 30, 20, 20, 10, 10];
        let ranges = token_batches(&lens, 128, 2);
        assert_eq!(ranges.len(), 4, "{ranges:?}");
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.start, next);
            assert!(!r.is_empty());
            next = r.end;
        }
        assert_eq!(next, lens.len());
        // Fewer sentences than threads: one batch each, none empty.
        assert_eq!(token_batches(&[5], 128, 2), vec![0..1]);
        assert_eq!(
            token_batches(&[], 128, 2),
            Vec::<std::ops::Range<usize>>::new()
        );
        // One long sentence past the budget still forms a batch.
        assert_eq!(token_batches(&[500, 3], 128, 1).len(), 2);
    }
}
