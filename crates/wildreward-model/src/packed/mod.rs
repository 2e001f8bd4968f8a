//! The packed f32 CPU forward: the scorer's fast path.
//!
//! The padded path pads every row of a batch to the longest one and runs candle one op at a time, each
//! op allocating its output, with a `[batch, heads, len, len]` score tensor per layer. Here the rows
//! of a batch are concatenated into one `[tokens, hidden]` matrix instead (no padding at all: the
//! projections and the MLP see only real tokens), every projection is one large gemm call into a
//! buffer reused across layers (the residual adds fused into the output projections), and attention
//! ([`attention`]) runs per (row, block of queries, key/value group) over the causal part only, in
//! parallel, the group's query heads stacked instead of repeating its keys and values. Only the last token's state is kept at the end: it is all a reward
//! head reads.
//!
//! It gives the numbers of the differentiable path (tested against transformers on every supported
//! family and against the padded path on SmolLM2). It runs when the weights are f32 on the CPU and
//! carry no LoRA adapter nor quantized copy ([`crate::backbone::Backbone::decoder_weights`] hands
//! them out only then); [`crate::backend::select`] picks the candle forward otherwise.
//!
//! The arithmetic is `wildreward-kernels`' (products, row ops, attention on slices): `ops` hands
//! each kernel its weights and buffers, `layers` walks the blocks, `prefix` holds a shared prefix's
//! keys and values, [`decode`] the KV-cache decoding steps.

use crate::decoder_weights::DecoderWeights;
use crate::forward::{Decode, Forward, Trunk};
use candle_core::{Device, Result, Tensor};
use decode::PackedDecoder;
use wildreward_kernels::Bf16Kernel;

pub mod decode;
mod layers;
mod ops;
mod prefix;

/// [`Forward`] on the packed CPU kernels, over the decoder's weights as plain data.
#[derive(Debug, Clone)]
pub struct PackedCpu {
    weights: DecoderWeights,
}

impl PackedCpu {
    /// The packed forward of `weights` (f32 on the CPU), its projections multiplied by bf16 copies
    /// on `bf16` when given.
    pub fn new(mut weights: DecoderWeights, bf16: Option<Bf16Kernel>) -> Result<Self> {
        if !weights.is_f32_cpu() {
            candle_core::bail!("the packed forward needs f32 weights on the CPU");
        }
        if weights.layers.is_empty() {
            candle_core::bail!("the model has no layers");
        }
        if let Some(kernel) = bf16 {
            weights.pack_bf16(kernel)?;
        }
        Ok(Self { weights })
    }

    /// The weights it reads.
    pub fn weights(&self) -> &DecoderWeights {
        &self.weights
    }
}

impl Forward for PackedCpu {
    fn name(&self) -> &'static str {
        "packed-cpu"
    }

    fn matmul_name(&self) -> &'static str {
        self.weights.bf16_kernel().map_or("f32", Bf16Kernel::name)
    }

    fn pads_rows(&self) -> bool {
        false
    }

    fn last_hidden(&self, rows: &[&[u32]]) -> Result<Tensor> {
        last_hidden(&self.weights, rows)
    }

    fn trunk(&self, rows: &[&[u32]], layers: usize) -> Result<Trunk> {
        trunk(&self.weights, rows, layers)
    }

    fn last_hidden_from(&self, trunk: &Trunk) -> Result<Tensor> {
        last_hidden_from(&self.weights, trunk)
    }

    fn prefill<'a>(
        &'a self,
        prompt: &[u32],
        samples: usize,
        max_new: usize,
    ) -> Result<(Box<dyn Decode + 'a>, Vec<f32>)> {
        let (decoder, logits) = PackedDecoder::prefill(&self.weights, prompt, samples, max_new)?;
        Ok((Box::new(decoder), logits))
    }
}

impl Decode for PackedDecoder<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        PackedDecoder::step(self, tokens)
    }
}

/// The final-norm hidden state at each row's last token, `[rows, hidden]`, for unpadded `rows` of
/// token ids; what [`crate::Backbone::forward`] followed by [`crate::Backbone::last_token`] gives for the same rows
/// padded into one batch.
///
/// When the rows open with the same tokens (every WildReward text opens with the same template
/// header, and the answers to one prompt share the prompt too), that prefix runs once and each row
/// runs only its own tokens, attending to the prefix's cached keys and values.
pub fn last_hidden(backbone: &DecoderWeights, rows: &[&[u32]]) -> Result<Tensor> {
    let h = backbone.dims.hidden;
    let shared = prefix::shared_len(rows);
    let out = if shared >= prefix::MIN_SHARED {
        let mut pre = layers::shared_prefix(backbone, &rows[0][..shared])?;
        let own: Vec<&[u32]> = rows.iter().map(|r| &r[shared..]).collect();
        layers::run_rows(backbone, &own, Some(&mut pre), |_, _| {})?
    } else {
        layers::last_states(backbone, rows, |_, _| {})?
    };
    Tensor::from_vec(out, (rows.len(), h), &Device::Cpu)
}

/// [`Forward::trunk`] on the packed kernels: a prefix shared by every row runs once (as in
/// [`last_hidden`]), the rows' own tokens attend to its keys and values.
pub fn trunk(weights: &DecoderWeights, rows: &[&[u32]], layers: usize) -> Result<Trunk> {
    use layers::{walk, Entry, Exit};
    let shared = prefix::shared_len(rows);
    let shared = if shared >= prefix::MIN_SHARED {
        shared
    } else {
        0
    };
    let own: Vec<&[u32]> = rows.iter().map(|r| &r[shared..]).collect();
    let (states, prefix) = if shared > 0 {
        let head: &[u32] = &rows[0][..shared];
        let (mut pre, prefix_states) =
            layers::prefix_walk(weights, Entry::Ids(&[head]), Exit::After(layers))?;
        let states = walk(
            weights,
            Entry::Ids(&own),
            Some(&mut pre),
            Exit::After(layers),
            |_, _| {},
        )?;
        (states, Some((shared, prefix_states)))
    } else {
        let states = walk(
            weights,
            Entry::Ids(&own),
            None,
            Exit::After(layers),
            |_, _| {},
        )?;
        (states, None)
    };
    Ok(Trunk {
        layer: layers,
        hidden: weights.dims.hidden,
        prefix,
        lens: own.iter().map(|r| r.len()).collect(),
        states,
    })
}

/// [`Forward::last_hidden_from`] on the packed kernels: the prefix (if the trunk has one) runs
/// the remaining blocks once, then the rows' own tokens.
pub fn last_hidden_from(weights: &DecoderWeights, trunk: &Trunk) -> Result<Tensor> {
    use layers::{walk, Entry, Exit};
    if trunk.hidden != weights.dims.hidden {
        candle_core::bail!(
            "a trunk of width {} for a model of width {}",
            trunk.hidden,
            weights.dims.hidden
        );
    }
    let rows = Entry::States {
        lens: &trunk.lens,
        x: &trunk.states,
        layer: trunk.layer,
    };
    let out = match &trunk.prefix {
        Some((len, states)) => {
            let head_len = [*len];
            let head = Entry::States {
                lens: &head_len,
                x: states,
                layer: trunk.layer,
            };
            let (mut pre, _) = layers::prefix_walk(weights, head, Exit::LastTokens)?;
            walk(weights, rows, Some(&mut pre), Exit::LastTokens, |_, _| {})?
        }
        None => walk(weights, rows, None, Exit::LastTokens, |_, _| {})?,
    };
    Tensor::from_vec(out, (trunk.rows(), weights.dims.hidden), &Device::Cpu)
}
