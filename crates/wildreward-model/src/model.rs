//! The reward model: a backbone, a reward head on the last real token, and the tokenizer, loaded
//! from any checkpoint [`crate::weights`] reads.

use crate::backbone::Backbone;
use crate::backend;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::forward::Forward;
use crate::head::{HeadKind, ScoreHead};
use crate::nn::Kernels;
use crate::precision::Precision;
use crate::weights::{self, Checkpoint};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;
use wildreward_kernels::Bf16Kernel;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where the weights go.
    pub device: Device,
    /// Backbone dtype; `None` follows [`LoadOptions::resolved_dtype`]. The head is always f32.
    pub dtype: Option<DType>,
    /// Differentiable kernels (training) or fused ones (scoring, generation).
    pub kernels: Kernels,
    /// The head to create when the checkpoint has none (a GGUF or a causal LM).
    pub head_if_missing: HeadKind,
    /// Its logits (K-1 for ordinal heads) when the config does not say.
    pub outputs_if_missing: usize,
    /// Seed of a created head.
    pub head_seed: u64,
    /// Score straight from a GGUF file's quantized weights: the layer projections multiply by them
    /// with candle's quantized matmul (inference only, f32 activations, the padded forward) instead
    /// of by their dequantised f32 copies. Only for a GGUF path.
    pub quantized: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            kernels: Kernels::Differentiable,
            head_if_missing: HeadKind::Ordinal,
            outputs_if_missing: 3,
            head_seed: 0,
            quantized: false,
        }
    }
}

impl LoadOptions {
    /// Options for inference: fused kernels.
    pub fn inference() -> Self {
        Self {
            kernels: Kernels::Fused,
            ..Self::default()
        }
    }

    /// The dtype the backbone will use on this device: `dtype`, else f32 on CPU (exact; the
    /// commands ask for bf16 there with [`Precision`]'s `auto`) and bf16 on CUDA.
    pub fn resolved_dtype(&self) -> DType {
        self.dtype.unwrap_or_else(|| {
            if self.device.is_cpu() {
                DType::F32
            } else {
                Precision::Auto.resolve(&self.device)
            }
        })
    }
}

/// A loaded reward model.
#[derive(Debug, Clone)]
pub struct RewardModel {
    config: ModelConfig,
    backbone: Backbone,
    /// The inference forward over the backbone's weights, chosen once ([`backend::select`]).
    forward: Arc<dyn Forward>,
    head: ScoreHead,
    tokenizer: Tokenizer,
    chat_template: Option<String>,
    tensors: HashMap<String, Tensor>,
    head_initialised: bool,
    source: PathBuf,
}

impl RewardModel {
    /// Loads the checkpoint at `path` (an HF directory, a GGUF file, or a cached hub repo id).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let path = weights::resolve(&path.to_string_lossy())?;
        if opts.quantized && (path.is_dir() || opts.resolved_dtype() != DType::F32) {
            return Err(ModelError::Weights {
                path,
                message: "quantized scoring needs a GGUF file and f32 activations".into(),
            });
        }
        // bf16 on the CPU: f32 tensors (norms, embeddings, the reference path) and a bf16 copy of
        // every projection for the packed forward's bf16 kernel.
        let cpu_bf16 = opts.device.is_cpu()
            && opts.resolved_dtype() == DType::BF16
            && opts.kernels == Kernels::Fused;
        let dtype = if cpu_bf16 {
            DType::F32
        } else {
            opts.resolved_dtype()
        };
        let ckpt = weights::load(&path, &opts.device, dtype)?;
        let mut model = Self::from_checkpoint(ckpt, opts)?;
        if opts.quantized {
            let quantized = weights::load_quantized_projections(&path, &opts.device)?;
            model
                .use_quantized(&quantized)
                .map_err(|e| ModelError::Weights {
                    path,
                    message: e.to_string(),
                })?;
        }
        Ok(model)
    }

    /// Builds the model from a loaded checkpoint (or one whose tensors were made trainable).
    pub fn from_checkpoint(ckpt: Checkpoint, opts: &LoadOptions) -> Result<Self> {
        let Checkpoint {
            config,
            tensors,
            tokenizer,
            chat_template,
            source,
        } = ckpt;
        let kind = config
            .wildreward_head
            .as_deref()
            .and_then(HeadKind::parse)
            .unwrap_or(if config.label_count() == Some(1) {
                HeadKind::Scalar
            } else {
                HeadKind::Ordinal
            });
        // Only a classifier's config declares its head (causal-LM configs may carry default labels).
        let declared = config.label_count().filter(|&n| {
            n > 0
                && config
                    .architectures
                    .iter()
                    .any(|a| a.ends_with("Classification"))
        });
        let outputs = declared.unwrap_or(if kind == HeadKind::Scalar {
            1
        } else {
            opts.outputs_if_missing
        });
        let weights_err = |e: candle_core::Error| ModelError::Weights {
            path: source.clone(),
            message: e.to_string(),
        };
        // A head saved from a random initialisation (`convert`) says so in its config.
        let marked_untrained = config.wildreward_head_initialised == Some(true);
        let (head, head_initialised) =
            match ScoreHead::from_tensors(&tensors, kind, outputs).map_err(weights_err)? {
                Some(h) => (h, marked_untrained),
                None => {
                    let kind = if declared.is_some() {
                        kind
                    } else {
                        opts.head_if_missing
                    };
                    let h = ScoreHead::random(
                        kind,
                        outputs,
                        config.hidden_size,
                        opts.head_seed,
                        &opts.device,
                    )?;
                    (h, true)
                }
            };
        let dtype = tensors
            .get("model.embed_tokens.weight")
            .map(Tensor::dtype)
            .unwrap_or(opts.resolved_dtype());
        let vb = VarBuilder::from_tensors(tensors.clone(), dtype, &opts.device);
        let backbone = Backbone::load(vb, &config, opts.kernels).map_err(weights_err)?;
        // bf16 on the CPU: f32 tensors (norms, embeddings, the reference path) and a bf16 copy of
        // every projection for the packed forward's bf16 kernel, whichever way the model came.
        let bf16 = if opts.device.is_cpu()
            && dtype == DType::F32
            && opts.resolved_dtype() == DType::BF16
            && opts.kernels == Kernels::Fused
        {
            Some(Bf16Kernel::detect().map_err(|e| weights_err(candle_core::Error::msg(e)))?)
        } else {
            None
        };
        let forward = backend::select(&backbone, bf16).map_err(weights_err)?;
        Ok(Self {
            config,
            backbone,
            forward,
            head,
            tokenizer,
            chat_template,
            tensors,
            head_initialised,
            source,
        })
    }

    /// Makes every layer projection multiply by its quantized weight in `quantized` (by HF weight
    /// name, as [`weights::load_quantized_projections`] gives them) from now on: scoring from
    /// quantized weights. Fails, changing nothing, unless all of them are there, each shaped as the
    /// model's.
    pub fn use_quantized(
        &mut self,
        quantized: &HashMap<String, Arc<QTensor>>,
    ) -> candle_core::Result<()> {
        self.backbone.use_quantized(quantized)?;
        self.forward = backend::select(&self.backbone, None)?;
        Ok(())
    }

    /// Mixed-precision training of the projections on `kernel` (`None`: exact f32): see
    /// [`Backbone::use_bf16_training`].
    pub fn use_bf16_training(&mut self, kernel: Option<Bf16Kernel>) {
        self.backbone.use_bf16_training(kernel)
    }

    /// Makes the packed CPU forward multiply every projection by a bf16 copy of its weight with
    /// `kernel` (what loading with bf16 on a CPU does; again after in-place updates, since the
    /// copies do not follow them). Fails where the packed forward cannot run.
    pub fn use_bf16_matmul(&mut self, kernel: Bf16Kernel) -> candle_core::Result<()> {
        self.forward = backend::select(&self.backbone, Some(kernel))?;
        Ok(())
    }

    /// The inference forward scoring and generation run on.
    pub fn forward(&self) -> &dyn Forward {
        self.forward.as_ref()
    }

    /// An inference forward over this model's current weights for a training loop: the fused
    /// kernels over detached handles of the same storage (so optimiser updates are seen and nothing
    /// it runs is recorded for backward), `bf16` as in [`RewardModel::use_bf16_matmul`].
    pub fn inference_forward(
        &self,
        bf16: Option<Bf16Kernel>,
    ) -> candle_core::Result<Arc<dyn Forward>> {
        backend::select(&self.inference_backbone()?, bf16)
    }

    /// The backbone of [`RewardModel::inference_forward`]: fused kernels over detached handles of
    /// this model's weights (for a caller that re-selects its forward after updates).
    pub fn inference_backbone(&self) -> candle_core::Result<Backbone> {
        let tensors = self
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.detach()))
            .collect();
        let bb = &self.backbone;
        let vb = VarBuilder::from_tensors(tensors, bb.dtype(), bb.device());
        Backbone::load(vb, &self.config, Kernels::Fused)
    }

    /// Reward logits `[batch, outputs]` (f32) for a right-padded batch with `lengths` real tokens.
    pub fn logits(&self, ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        self.head
            .forward(&self.backbone.forward_last(ids, lengths)?)
    }

    /// Reward logits `[rows, outputs]` (f32) for unpadded rows of token ids, on the model's
    /// [`Forward`] (packed on the CPU where it runs, else one right-padded candle batch).
    pub fn logits_of_rows(&self, rows: &[&[u32]]) -> candle_core::Result<Tensor> {
        self.head.forward(&self.forward.last_hidden(rows)?)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The decoder.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The reward head.
    pub fn head(&self) -> &ScoreHead {
        &self.head
    }

    /// Replaces the head (training a fresh head, or loading a trained one).
    pub fn set_head(&mut self, head: ScoreHead) {
        self.head = head;
        self.head_initialised = false;
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, when the checkpoint carries one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The backbone's weights by HF name (sharing storage with the model: trained in place).
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// True when the head is not a trained one: the checkpoint had no head and a seeded random one
    /// was created, or its `config.json` marks the head as such (`wildreward_head_initialised`).
    pub fn head_was_initialised(&self) -> bool {
        self.head_initialised
    }

    /// Where the model was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The padding id used to right-pad batches.
    pub fn pad_id(&self) -> u32 {
        self.config.pad_id()
    }
}
