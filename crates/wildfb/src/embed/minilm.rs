//! The packed MiniLM (BERT encoder) forward: the tokens of a batch's sentences concatenated into one
//! `[tokens, hidden]` matrix with no padding row, every linear layer one product over all of them on
//! wildreward-kernels' AVX-512 matmul ([`wildreward_kernels::dense`]), the query, key and value
//! projections fused into one, residuals added inside the output products, attention per sentence
//! and head over that sentence's tokens only, then erf GELU, post-norm layer norms, mean pooling over
//! the real tokens and L2 normalisation, all in f32. Single-threaded per batch: the caller runs one
//! batch per thread.

use candle_core::Tensor;
use serde::Deserialize;
use std::collections::HashMap;
use wildreward_kernels::dense::{
    add_bias, gelu_erf, layer_norm, matmul_into, softmax_rows, MatRef,
};

/// The fields of a BERT `config.json` this forward reads.
#[derive(Debug, Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    layer_norm_eps: f64,
    hidden_act: String,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

/// One encoder layer's weights, each a row-major `[out, in]` matrix as PyTorch stores it.
struct Layer {
    /// Query, key and value stacked: `[3 · hidden, hidden]`.
    qkv: Vec<f32>,
    qkv_bias: Vec<f32>,
    out: Vec<f32>,
    out_bias: Vec<f32>,
    attn_norm: (Vec<f32>, Vec<f32>),
    up: Vec<f32>,
    up_bias: Vec<f32>,
    down: Vec<f32>,
    down_bias: Vec<f32>,
    out_norm: (Vec<f32>, Vec<f32>),
}

/// all-MiniLM-L6-v2 (or any absolute-position BERT with erf GELU) as flat f32 weights.
pub(super) struct MiniLm {
    hidden: usize,
    heads: usize,
    intermediate: usize,
    eps: f32,
    vocab: usize,
    max_positions: usize,
    words: Vec<f32>,
    positions: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
}

/// A tensor of `tensors` as flat f32, checked to have `shape`.
fn weight(
    tensors: &HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, String> {
    let t = tensors
        .get(name)
        .ok_or_else(|| format!("model.safetensors: tensor {name} missing"))?;
    if t.dims() != shape {
        return Err(format!(
            "model.safetensors: tensor {name} has shape {:?}, config.json implies {shape:?}",
            t.dims()
        ));
    }
    t.to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| format!("model.safetensors: tensor {name}: {e}"))
}

impl MiniLm {
    /// The model `config_text` describes, its weights from `tensors` (Hugging Face BERT names without
    /// a `bert.` prefix, as sentence-transformers exports them), every shape checked against the config.
    pub(super) fn load(
        config_text: &str,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self, String> {
        let c: BertConfig =
            serde_json::from_str(config_text).map_err(|e| format!("config.json: {e}"))?;
        if c.hidden_act != "gelu" {
            return Err(format!(
                "config.json: hidden_act {:?} is not supported (the packed forward runs BERT's erf \"gelu\")",
                c.hidden_act
            ));
        }
        if c.position_embedding_type != "absolute" {
            return Err(format!(
                "config.json: position_embedding_type {:?} is not supported (only \"absolute\")",
                c.position_embedding_type
            ));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            ));
        }
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let rows_of = |name: &str| {
            tensors
                .get(name)
                .and_then(|t| t.dims().first().copied())
                .ok_or(format!("model.safetensors: tensor {name} missing"))
        };
        let words = rows_of("embeddings.word_embeddings.weight")?;
        let norm = |prefix: &str| -> Result<(Vec<f32>, Vec<f32>), String> {
            Ok((
                weight(tensors, &format!("{prefix}.weight"), &[h])?,
                weight(tensors, &format!("{prefix}.bias"), &[h])?,
            ))
        };
        let token_types = weight(
            tensors,
            "embeddings.token_type_embeddings.weight",
            &[rows_of("embeddings.token_type_embeddings.weight")?, h],
        )?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let w = |name: &str, shape: &[usize]| weight(tensors, &format!("{p}.{name}"), shape);
            let mut qkv = Vec::with_capacity(3 * h * h);
            let mut qkv_bias = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                qkv.extend(w(&format!("attention.self.{part}.weight"), &[h, h])?);
                qkv_bias.extend(w(&format!("attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv,
                qkv_bias,
                out: w("attention.output.dense.weight", &[h, h])?,
                out_bias: w("attention.output.dense.bias", &[h])?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: w("intermediate.dense.weight", &[i, h])?,
                up_bias: w("intermediate.dense.bias", &[i])?,
                down: w("output.dense.weight", &[h, i])?,
                down_bias: w("output.dense.bias", &[h])?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Self {
            hidden: h,
            heads: c.num_attention_heads,
            intermediate: i,
            eps: c.layer_norm_eps as f32,
            vocab: words,
            max_positions: c.max_position_embeddings,
            words: weight(tensors, "embeddings.word_embeddings.weight", &[words, h])?,
            positions: weight(
                tensors,
                "embeddings.position_embeddings.weight",
                &[c.max_position_embeddings, h],
            )?,
            // Every sentence is segment 0.
            token_type: token_types
                .get(..h)
                .map(<[f32]>::to_vec)
                .ok_or("model.safetensors: embeddings.token_type_embeddings.weight has no rows")?,
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
        })
    }

    /// The longest sentence (in tokens) the position table covers.
    pub(super) fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The unit-length mean-pooled embedding of each of `sentences` (token ids with `[CLS]` and
    /// `[SEP]`), computed together on the calling thread.
    pub(super) fn embed_batch(&self, sentences: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let h = self.hidden;
        let tokens: usize = sentences.iter().map(|s| s.len()).sum();
        let mut x = vec![0f32; tokens * h];
        let mut row = 0;
        for (n, s) in sentences.iter().enumerate() {
            if s.len() > self.max_positions {
                return Err(format!(
                    "sentence {n} has {} tokens; the model takes at most {}",
                    s.len(),
                    self.max_positions
                ));
            }
            for (pos, &id) in s.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(format!(
                        "token id {id} is outside the model's vocabulary of {} (tokenizer.json does not match model.safetensors)",
                        self.vocab
                    ));
                }
                let dst = &mut x[row * h..(row + 1) * h];
                let word = &self.words[id * h..(id + 1) * h];
                let position = &self.positions[pos * h..(pos + 1) * h];
                for (((d, w), p), t) in dst.iter_mut().zip(word).zip(position).zip(&self.token_type)
                {
                    *d = w + p + t;
                }
                row += 1;
            }
        }
        layer_norm(&mut x, &self.embed_norm.0, &self.embed_norm.1, self.eps);
        let mut work = Work::new(tokens, h, self.intermediate, sentences);
        for layer in &self.layers {
            self.layer_forward(layer, &mut x, &mut work, sentences);
        }
        Ok(pool(&x, h, sentences))
    }

    /// One post-norm encoder layer over the packed tokens `x`, in place.
    fn layer_forward(&self, layer: &Layer, x: &mut [f32], w: &mut Work, sentences: &[&[u32]]) {
        let (h, t) = (self.hidden, w.tokens);
        // Queries, keys and values of every token: [t, 3h].
        matmul_into(
            &mut w.qkv,
            3 * h,
            MatRef::rows(x, t, h, h),
            MatRef::transposed(&layer.qkv, 3 * h, h, h),
            1.0,
            false,
        );
        add_bias(&mut w.qkv, &layer.qkv_bias);
        self.attention(w, sentences);
        // Output projection onto the residual, then the norm: [t, h].
        w.residual.copy_from_slice(x);
        matmul_into(
            &mut w.residual,
            h,
            MatRef::rows(&w.context, t, h, h),
            MatRef::transposed(&layer.out, h, h, h),
            1.0,
            true,
        );
        add_bias(&mut w.residual, &layer.out_bias);
        layer_norm(
            &mut w.residual,
            &layer.attn_norm.0,
            &layer.attn_norm.1,
            self.eps,
        );
        // MLP: [t, i] then back onto the residual.
        let i = self.intermediate;
        matmul_into(
            &mut w.up,
            i,
            MatRef::rows(&w.residual, t, h, h),
            MatRef::transposed(&layer.up, i, h, h),
            1.0,
            false,
        );
        add_bias(&mut w.up, &layer.up_bias);
        gelu_erf(&mut w.up);
        x.copy_from_slice(&w.residual);
        matmul_into(
            x,
            h,
            MatRef::rows(&w.up, t, i, i),
            MatRef::transposed(&layer.down, h, i, i),
            1.0,
            true,
        );
        add_bias(x, &layer.down_bias);
        layer_norm(x, &layer.out_norm.0, &layer.out_norm.1, self.eps);
    }

    /// Bidirectional attention of each sentence over its own tokens, head by head, from `w.qkv`
    /// into `w.context` (`[t, h]`, heads side by side).
    fn attention(&self, w: &mut Work, sentences: &[&[u32]]) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut start = 0;
        for s in sentences {
            let n = s.len();
            if n == 0 {
                continue;
            }
            let rows = &w.qkv[start * 3 * h..(start + n) * 3 * h];
            let scores = &mut w.scores[..n * n];
            for head in 0..self.heads {
                let q = &rows[head * d..];
                let k = &rows[h + head * d..];
                let v = &rows[2 * h + head * d..];
                // scores = q kᵀ / √d: [n, n].
                matmul_into(
                    scores,
                    n,
                    MatRef::rows(q, n, d, 3 * h),
                    MatRef::transposed(k, n, d, 3 * h),
                    scale,
                    false,
                );
                softmax_rows(scores, n);
                // context[:, head] = p v: [n, d] into the head's columns.
                matmul_into(
                    &mut w.context[start * h + head * d..],
                    h,
                    MatRef::rows(scores, n, n, n),
                    MatRef::rows(v, n, d, 3 * h),
                    1.0,
                    false,
                );
            }
            start += n;
        }
    }
}

/// The buffers of one batch's forward, reused across layers.
struct Work {
    tokens: usize,
    qkv: Vec<f32>,
    context: Vec<f32>,
    residual: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
}

impl Work {
    fn new(tokens: usize, hidden: usize, intermediate: usize, sentences: &[&[u32]]) -> Self {
        let longest = sentences.iter().map(|s| s.len()).max().unwrap_or(0);
        Self {
            tokens,
            qkv: vec![0.0; tokens * 3 * hidden],
            context: vec![0.0; tokens * hidden],
            residual: vec![0.0; tokens * hidden],
            up: vec![0.0; tokens * intermediate],
            scores: vec![0.0; longest * longest],
        }
    }
}

/// The mean of each sentence's rows of `x`, scaled to unit length (a zero vector stays zero).
fn pool(x: &[f32], h: usize, sentences: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(sentences.len());
    let mut start = 0;
    for s in sentences {
        let mut mean = vec![0f32; h];
        for row in x[start * h..(start + s.len()) * h].chunks_exact(h) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        let count = s.len().max(1) as f32;
        mean.iter_mut().for_each(|m| *m /= count);
        let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
        mean.iter_mut().for_each(|m| *m /= norm);
        out.push(mean);
        start += s.len();
    }
    out
}
