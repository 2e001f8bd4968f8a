//! Which tensors train, and the model built around them.
//!
//! Trainable tensors become candle [`Var`]s placed in the checkpoint's tensor map *before* the model
//! is built, so the backbone and head hold the variables themselves: the optimiser's in-place
//! updates are what the next forward pass sees, and backward records gradients for exactly these
//! tensors and nothing frozen. Trainable tensors are f32 whatever the frozen backbone's dtype.

use crate::config::{LossKind, TrainMode};
use crate::error::{Result, TrainError};
use candle_core::{DType, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use wildreward_model::weights::Checkpoint;
use wildreward_model::{HeadKind, Kernels, LoadOptions, RewardModel};

/// The projections LoRA adapts (attention and MLP), as PEFT names them.
pub const LORA_TARGETS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// One trainable tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its HF name (PEFT's for LoRA adapters).
    pub name: String,
    /// The variable the model holds.
    pub var: Var,
    /// Whether AdamW's weight decay applies (not to norms, biases or other vectors).
    pub decay: bool,
}

/// A reward model with some tensors made trainable.
pub struct TrainableModel {
    /// The model (its trainable tensors are the [`Param`]s' variables).
    pub model: RewardModel,
    /// The trainable tensors, in a fixed order.
    pub params: Vec<Param>,
    /// LoRA's α / r when adapters are present.
    pub lora_scale: Option<f64>,
}

/// The head a loss trains: its kind and number of logits.
pub fn head_for(loss: LossKind, num_labels: usize) -> (HeadKind, usize) {
    match loss {
        LossKind::Ordinal => (HeadKind::Ordinal, num_labels),
        LossKind::Coral => (HeadKind::Coral, num_labels),
        LossKind::Corn => (HeadKind::Corn, num_labels),
        LossKind::Bt => (HeadKind::Scalar, 1),
    }
}

/// Whether `name` trains: reward models train their `score` head and never the LM head; policies
/// train the (untied) LM head with everything else and have no reward head.
fn is_trainable(name: &str, mode: TrainMode, layers: usize, policy: bool) -> bool {
    if name.starts_with("score.") {
        return !policy;
    }
    match mode {
        TrainMode::Head | TrainMode::Lora(_) => false,
        TrainMode::Full => name.starts_with("model.") || (policy && name.starts_with("lm_head.")),
        TrainMode::LastN(n) => {
            if name == "model.norm.weight" {
                return true;
            }
            name.strip_prefix("model.layers.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i + n.min(layers) >= layers)
        }
    }
}

/// LoRA A `[r, in]` (Kaiming-uniform as PEFT: U(±1/√in)) and B `[out, r]` (zeros: the adapted model
/// starts equal to the base).
fn lora_pair(weight: &Tensor, r: usize, rng: &mut StdRng) -> Result<(Tensor, Tensor)> {
    let (out_dim, in_dim) = weight.dims2()?;
    let bound = 1.0 / (in_dim as f64).sqrt();
    let a: Vec<f32> = (0..r * in_dim)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    let dev = weight.device();
    Ok((
        Tensor::from_vec(a, (r, in_dim), dev)?,
        Tensor::zeros((out_dim, r), DType::F32, dev)?,
    ))
}

/// Builds the trainable model: a head for `loss` (the checkpoint's own when it matches, else a new
/// one from `seed`), LoRA adapters for `lora:R`, and the tensors `mode` trains as variables.
pub fn build(
    ckpt: Checkpoint,
    mode: TrainMode,
    loss: LossKind,
    num_labels: usize,
    lora_scale: f64,
    seed: u64,
) -> Result<TrainableModel> {
    build_any(
        ckpt,
        mode,
        Some(head_for(loss, num_labels)),
        lora_scale,
        seed,
    )
}

/// Builds a trainable *policy* (a causal LM for online DPO): `mode` as for reward models, but no
/// reward head trains, and full training includes an untied LM head. `head` mode is refused.
pub fn build_policy(
    ckpt: Checkpoint,
    mode: TrainMode,
    lora_scale: f64,
    seed: u64,
) -> Result<TrainableModel> {
    if mode == TrainMode::Head {
        return Err(TrainError::input(
            "a policy has no reward head to train: use full, last-n:N or lora:R",
        ));
    }
    build_any(ckpt, mode, None, lora_scale, seed)
}

fn build_any(
    ckpt: Checkpoint,
    mode: TrainMode,
    reward_head: Option<(HeadKind, usize)>,
    lora_scale: f64,
    seed: u64,
) -> Result<TrainableModel> {
    let policy = reward_head.is_none();
    let (kind, outputs) = reward_head.unwrap_or((HeadKind::Ordinal, 3));
    let device = ckpt
        .tensors
        .values()
        .next()
        .map(|t| t.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let opts = LoadOptions {
        device,
        dtype: None,
        kernels: Kernels::Differentiable,
        head_if_missing: kind,
        outputs_if_missing: outputs,
        head_seed: seed,
        quantized: false,
    };
    let base = RewardModel::from_checkpoint(ckpt, &opts)?;
    let head = base.head();
    if !policy && (head.kind() != kind || head.outputs() != outputs) {
        return Err(TrainError::input(format!(
            "{}: the checkpoint has a {} head with {} logits; the loss needs a {} head with \
             {outputs}",
            base.source().display(),
            head.kind().name(),
            head.outputs(),
            kind.name()
        )));
    }
    let mut config = base.config().clone();
    let mut tensors: HashMap<String, Tensor> = base.tensors().clone();
    if !policy {
        let arch = config
            .architecture()
            .map_err(|e| TrainError::input(format!("{}: {e}", base.source().display())))?;
        config.architectures = vec![arch.classification_class().to_string()];
        config.num_labels = Some(outputs);
        config.wildreward_head = Some(kind.name().to_string());
        // The head trains: whatever the checkpoint said, the saved one will not be a random one.
        config.wildreward_head_initialised = None;
        tensors.extend(head.tensors());
    }

    let layers = config.num_hidden_layers;
    let mut names: Vec<String> = tensors
        .keys()
        .filter(|n| is_trainable(n, mode, layers, policy))
        .cloned()
        .collect();
    if let TrainMode::Lora(r) = mode {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x10_4A));
        for i in 0..layers {
            for target in LORA_TARGETS {
                let prefix = format!("model.layers.{i}.{target}");
                let w = tensors.get(&format!("{prefix}.weight")).ok_or_else(|| {
                    TrainError::input(format!("LoRA: no tensor {prefix}.weight in the checkpoint"))
                })?;
                let (a, b) = lora_pair(w, r, &mut rng)?;
                for (name, t) in [("lora_A", a), ("lora_B", b)] {
                    let name = format!("{prefix}.{name}.weight");
                    tensors.insert(name.clone(), t);
                    names.push(name);
                }
            }
        }
        config.wildreward_lora_scale = Some(lora_scale);
    }
    names.sort_by_key(|n| natural_key(n));
    let mut params = Vec::with_capacity(names.len());
    for name in names {
        let t = tensors[&name].clone();
        let var = Var::from_tensor(&t.to_dtype(DType::F32)?)?;
        tensors.insert(name.clone(), var.as_tensor().clone());
        let decay = t.rank() >= 2 && !name.contains("norm");
        params.push(Param { name, var, decay });
    }
    let model = RewardModel::from_checkpoint(
        Checkpoint {
            config,
            tensors,
            tokenizer: base.tokenizer().clone(),
            chat_template: base.chat_template().map(str::to_string),
            source: base.source().to_path_buf(),
        },
        &opts,
    )?;
    Ok(TrainableModel {
        model,
        params,
        lora_scale: matches!(mode, TrainMode::Lora(_)).then_some(lora_scale),
    })
}

/// Sort key that orders `layers.10` after `layers.9`.
fn natural_key(name: &str) -> Vec<(String, usize)> {
    name.split('.')
        .map(|p| match p.parse::<usize>() {
            Ok(n) => (String::new(), n),
            Err(_) => (p.to_string(), 0),
        })
        .collect()
}

impl TrainableModel {
    /// Current values of the trainable tensors by name (for resumable checkpoints).
    pub fn snapshot(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect()
    }

    /// Sets the trainable tensors from a snapshot; every one must be present with its shape.
    pub fn restore(&self, values: &HashMap<String, Tensor>) -> Result<()> {
        for p in &self.params {
            let t = values.get(&p.name).ok_or_else(|| {
                TrainError::input(format!("resume: the checkpoint lacks tensor {}", p.name))
            })?;
            p.var
                .set(&t.to_dtype(DType::F32)?.to_device(p.var.device())?)?;
        }
        Ok(())
    }

    /// The model to save: LoRA adapters merged (`W + s·B·A`, in f32, back to W's dtype) and
    /// removed, so the result is a plain HF checkpoint.
    pub fn merged(&self) -> Result<RewardModel> {
        let m = &self.model;
        let mut tensors: HashMap<String, Tensor> = m
            .tensors()
            .iter()
            .map(|(n, t)| (n.clone(), t.detach()))
            .collect();
        let mut config = m.config().clone();
        if let Some(scale) = self.lora_scale {
            let prefixes: Vec<String> = tensors
                .keys()
                .filter_map(|n| n.strip_suffix(".lora_A.weight").map(str::to_string))
                .collect();
            for prefix in prefixes {
                let take = |t: &mut HashMap<String, Tensor>, n: &str| {
                    t.remove(&format!("{prefix}.{n}"))
                        .ok_or_else(|| TrainError::Numeric(format!("LoRA: {prefix}.{n} missing")))
                };
                let a = take(&mut tensors, "lora_A.weight")?;
                let b = take(&mut tensors, "lora_B.weight")?;
                let w = take(&mut tensors, "weight")?;
                let delta = (b.matmul(&a)? * scale)?;
                let merged = (w.to_dtype(DType::F32)? + delta)?.to_dtype(w.dtype())?;
                tensors.insert(format!("{prefix}.weight"), merged);
            }
            config.wildreward_lora_scale = None;
        }
        let opts = LoadOptions {
            device: m.backbone().device().clone(),
            ..LoadOptions::inference()
        };
        Ok(RewardModel::from_checkpoint(
            Checkpoint {
                config,
                tensors,
                tokenizer: m.tokenizer().clone(),
                chat_template: m.chat_template().map(str::to_string),
                source: m.source().to_path_buf(),
            },
            &opts,
        )?)
    }
}
