//! The candle forward: the backbone's own ops, right-padded batches and its KV cache. It runs where
//! the packed CPU forward does not (CUDA, LoRA adapters, GGUF-quantized weights, half precision)
//! and is the reference the packed forward is tested against on the CPU.

use crate::backbone::{Backbone, KvCache};
use crate::forward::{Decode, Forward, Trunk};
use candle_core::{DType, Result, Tensor};

/// [`Forward`] on a [`Backbone`]'s candle ops.
#[derive(Debug, Clone)]
pub struct CandleForward {
    backbone: Backbone,
}

impl CandleForward {
    /// The forward of `backbone` (a clone of its tensor handles: the weights are shared).
    pub fn new(backbone: Backbone) -> Self {
        Self { backbone }
    }

    /// The backbone it runs.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }
}

impl Forward for CandleForward {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn matmul_name(&self) -> &'static str {
        self.backbone.dtype().as_str()
    }

    fn pads_rows(&self) -> bool {
        true
    }

    fn last_hidden(&self, rows: &[&[u32]]) -> Result<Tensor> {
        self.backbone.last_hidden_padded(rows)
    }

    fn trunk(&self, rows: &[&[u32]], layers: usize) -> Result<Trunk> {
        let bb = &self.backbone;
        let (ids, lengths) = bb.pad_rows(rows)?;
        let x = bb.hidden_after(&ids, &lengths, layers)?;
        let (_, l, hidden) = x.dims3()?;
        let padded: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut states = Vec::with_capacity(lengths.iter().sum::<usize>() * hidden);
        for (row, &n) in lengths.iter().enumerate() {
            states.extend_from_slice(&padded[row * l * hidden..(row * l + n) * hidden]);
        }
        Ok(Trunk {
            layer: layers,
            hidden,
            prefix: None,
            lens: lengths,
            states,
        })
    }

    fn last_hidden_from(&self, trunk: &Trunk) -> Result<Tensor> {
        let bb = &self.backbone;
        let lengths: Vec<usize> = (0..trunk.rows()).map(|i| trunk.row_len(i)).collect();
        let l = lengths.iter().copied().max().unwrap_or(1).max(1);
        let h = trunk.hidden;
        let mut padded = vec![0f32; lengths.len() * l * h];
        for (i, &n) in lengths.iter().enumerate() {
            padded[i * l * h..(i * l + n) * h].copy_from_slice(&trunk.row(i));
        }
        let x =
            Tensor::from_vec(padded, (lengths.len(), l, h), bb.device())?.to_dtype(bb.dtype())?;
        bb.forward_last_from(&x, &lengths, trunk.layer)
    }

    fn prefill<'a>(
        &'a self,
        prompt: &[u32],
        samples: usize,
        _max_new: usize,
    ) -> Result<(Box<dyn Decode + 'a>, Vec<f32>)> {
        if prompt.is_empty() || samples == 0 {
            candle_core::bail!("decoding needs a non-empty prompt and at least one sample");
        }
        let bb = &self.backbone;
        let mut cache = KvCache::new();
        let ids = Tensor::from_slice(prompt, (1, prompt.len()), bb.device())?;
        let hidden = bb.forward_cached(&ids, &mut cache)?;
        let last = hidden.narrow(1, prompt.len() - 1, 1)?;
        let logits = bb.lm_logits(&last)?.flatten_all()?;
        if samples > 1 {
            cache.expand_batch(samples)?;
        }
        let decoder = CandleDecode {
            backbone: bb,
            cache,
            samples,
        };
        Ok((Box::new(decoder), logits.to_dtype(DType::F32)?.to_vec1()?))
    }
}

/// Decoding on the candle path: the samples' shared-prompt KV cache.
struct CandleDecode<'a> {
    backbone: &'a Backbone,
    cache: KvCache,
    samples: usize,
}

impl Decode for CandleDecode<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.len() != self.samples {
            candle_core::bail!("{} tokens for {} samples", tokens.len(), self.samples);
        }
        let ids = Tensor::from_slice(tokens, (self.samples, 1), self.backbone.device())?;
        let hidden = self.backbone.forward_cached(&ids, &mut self.cache)?;
        self.backbone
            .lm_logits(&hidden)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1()
    }
}
